// The dashboard: fetches /console/dashboard.json every 2 s and redraws numbers and charts
// (the same geometry as qcare_ingest/dashboard_data.py chart_path and nice_ceiling).
"use strict";
(() => {
  const POLL_MS = 2000;
  const HOUR = 3600;
  const WIDTH = 720;
  const HEIGHT = 160;
  const CHARTS = {
    depth: { title: "Queue depth", unit: "messages", series: [["main", "Main queue"], ["delay", "Delay queues"], ["dead", "Dead-letter queue"]] },
    rate: { title: "Throughput", unit: "per second", series: [["accepted", "Accepted per second"], ["applied", "Applied per second"]] },
    lag: { title: "End-to-end lag", unit: "seconds", series: [["lag_p50", "Lag p50"], ["lag_p99", "Lag p99"]] },
  };
  if (!document.getElementById("dash-health")) return;

  function number(value) {
    if (value === null || value === undefined) return "unavailable";
    return Number.isInteger(value) ? String(value) : String(Number(value.toPrecision(3)));
  }

  function niceCeiling(value) {
    if (value <= 1) return 1;
    const power = Math.pow(10, Math.floor(Math.log10(value)));
    for (const step of [1, 2, 2.5, 5, 10]) if (value <= step * power) return step * power;
    return 10 * power;
  }

  function path(times, values, end, top) {
    const parts = [];
    let down = false;
    for (let i = 0; i < times.length; i++) {
      const v = values[i];
      const t = times[i];
      if (v === null || t < end - HOUR) { down = false; continue; }
      const x = WIDTH * (1 - (end - t) / HOUR);
      const y = HEIGHT * (1 - Math.min(v, top) / top);
      parts.push((down ? "L" : "M") + x.toFixed(1) + " " + y.toFixed(1));
      down = true;
    }
    return parts.join(" ");
  }

  function setText(id, text) {
    const el = document.getElementById(id);
    if (el && el.textContent !== text) el.textContent = text;
  }

  function health(id, value) {
    const el = document.getElementById(id);
    if (!el) return;
    const text = value ? "ok" : value === false ? "unavailable" : "not sampled yet";
    if (el.textContent !== text) el.textContent = text; // a live region: only news is announced
    el.className = value ? "ok" : "down";
  }

  function drawQueues(queues) {
    const body = document.querySelector("#dash-queues tbody");
    for (const q of queues) {
      let row = body.querySelector(`tr[data-queue="${CSS.escape(q.queue)}"]`);
      if (!row) {
        row = document.createElement("tr");
        row.dataset.queue = q.queue;
        const th = document.createElement("th");
        th.scope = "row";
        th.textContent = q.queue + " (" + q.role + ")";
        row.append(th);
        for (const field of ["messages", "consumers"]) {
          const td = document.createElement("td");
          td.dataset.field = field;
          row.append(td);
        }
        body.append(row);
      }
      for (const field of ["messages", "consumers"]) {
        const td = row.querySelector(`td[data-field="${field}"]`);
        const text = number(q[field]);
        if (td.textContent !== text) td.textContent = text;
      }
    }
  }

  function drawChart(key, spec, series) {
    const figure = document.getElementById("chart-" + key);
    if (!figure) return;
    const times = series.t;
    const known = [];
    for (const [name] of spec.series) for (const v of series[name]) if (v !== null) known.push(v);
    const top = niceCeiling(known.length ? Math.max(...known) : 0);
    const end = times.length ? times[times.length - 1] : 0;
    const summary = [];
    for (const [name, label] of spec.series) {
      const el = figure.querySelector(`path[data-series="${name}"]`);
      if (el) el.setAttribute("d", path(times, series[name], end, top));
      const values = series[name].filter((v) => v !== null);
      const latest = values.length ? values[values.length - 1] : null;
      const highest = values.length ? Math.max(...values) : null;
      summary.push(`${label}: now ${number(latest)}, highest ${number(highest)}`);
    }
    figure.querySelector("[data-top]").textContent = number(top);
    figure.querySelector("desc").textContent =
      `${spec.title} over the last hour (${spec.unit}). ${summary.join("; ")}.`;
  }

  function draw(data) {
    setText("dash-at", data.at || "no sample yet");
    health("dash-broker", data.broker);
    health("dash-database", data.database);
    drawQueues(data.queues);
    for (const id of ["accepted_per_s", "applied_per_s", "lag_p50_s", "lag_p99_s"]) setText(id, number(data[id]));
    for (const [key, spec] of Object.entries(CHARTS)) drawChart(key, spec, data.series);
  }

  async function poll() {
    if (document.hidden) {
      // a background tab asks nothing (and, with X-Console-Poll, polling never keeps
      // the session alive: the idle timeout fires on an unattended dashboard)
      window.setTimeout(poll, POLL_MS);
      return;
    }
    try {
      const response = await fetch("/console/dashboard.json", { headers: { Accept: "application/json", "X-Console-Poll": "1" }, credentials: "same-origin" });
      if (response.ok && (response.headers.get("Content-Type") || "").startsWith("application/json")) {
        draw(await response.json());
      } else if (response.redirected) {
        // the session ended: the JSON's place was taken by the sign-in page
        setText("dash-at", "session ended: reload the page to sign in again");
        return;
      }
    } catch (e) {
      // the gateway is away for a moment: keep the last numbers, try again
    }
    window.setTimeout(poll, POLL_MS);
  }
  window.setTimeout(poll, POLL_MS);
})();
