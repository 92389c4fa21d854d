// The dead-letter outcome page: polls its JSON until every message has its outcome.
"use strict";
(() => {
  const POLL_MS = 2000;
  const GIVE_UP_MS = 15 * 60 * 1000;
  const table = document.getElementById("outcomes");
  if (!table || table.dataset.final === "true") return;
  const state = document.getElementById("outcome-state");
  const started = Date.now();

  function cell(row, index) {
    return row.cells[index];
  }

  function update(data) {
    const rows = new Map();
    for (const row of table.tBodies[0].rows) rows.set(row.dataset.msgId, row);
    for (const o of data.outcomes) {
      let row = rows.get(o.msg_id);
      if (!row) continue;
      const status = cell(row, 1);
      if (status.dataset.status !== o.status) {
        status.dataset.status = o.status;
        status.className = "status-" + o.status;
        status.textContent = o.label;
      }
      cell(row, 2).textContent = o.error || "";
    }
  }

  async function poll() {
    try {
      // X-Console-Poll: a script's poll, which must not renew the session (idle timeout)
      const response = await fetch(table.dataset.poll, {
        headers: { Accept: "application/json", "X-Console-Poll": "1" },
        credentials: "same-origin",
      });
      if (response.ok && (response.headers.get("Content-Type") || "").startsWith("application/json")) {
        const data = await response.json();
        update(data);
        if (data.final) {
          table.dataset.final = "true";
          state.textContent = "Every message has its outcome.";
          return;
        }
      } else if (response.redirected) {
        state.textContent = "The session ended: reload the page to sign in again.";
        return;
      }
    } catch (e) {
      // network hiccup: try again next time
    }
    if (Date.now() - started > GIVE_UP_MS) {
      state.textContent = "Still waiting after 15 minutes; reload the page to look again.";
      return;
    }
    window.setTimeout(poll, POLL_MS);
  }
  window.setTimeout(poll, POLL_MS);
})();
