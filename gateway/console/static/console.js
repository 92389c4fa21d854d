// qcare-ingest console: small progressive enhancements only (the pages work without it).
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  // a form with data-confirm asks before it is sent
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }
});
