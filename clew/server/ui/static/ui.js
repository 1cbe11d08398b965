// Small behaviours shared by clew's pages. Pages work without this file; it adds the
// selection helpers on the runs table and fetches slow verdicts (audit chain, model digest)
// after the page has been shown. Text from the server is inserted with textContent only.
"use strict";

(function () {
  function badge(text, kind) {
    const span = document.createElement("span");
    span.className = "badge " + kind;
    span.textContent = text;
    return span;
  }

  function replaceWith(element, ...children) {
    element.replaceChildren(...children);
  }

  async function fetchJSON(url) {
    const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
    const body = await response.json();
    if (!response.ok) {
      throw new Error(body.error || body.detail || response.statusText);
    }
    return body;
  }

  function setUpRunSelection() {
    const table = document.getElementById("runs-table");
    const button = document.getElementById("compare-button");
    if (!table || !button) return;
    const boxes = () => Array.from(table.querySelectorAll("input.run-select"));
    const update = () => {
      const chosen = boxes().filter((box) => box.checked).length;
      button.disabled = chosen < 1;
      button.textContent = chosen > 1 ? "Compare " + chosen + " runs" : "Compare selected";
    };
    table.addEventListener("change", update);
    const all = document.getElementById("select-all");
    if (all) {
      all.addEventListener("change", () => {
        boxes().forEach((box) => { box.checked = all.checked; });
        update();
      });
    }
    update();
  }

  function setUpParamToggle() {
    const toggle = document.getElementById("only-different");
    const table = document.getElementById("params-table");
    if (!toggle || !table) return;
    toggle.addEventListener("change", () => {
      table.classList.toggle("only-different", toggle.checked);
    });
  }

  async function showChainStatus() {
    const target = document.getElementById("chain-status");
    if (!target) return;
    try {
      const result = await fetchJSON(target.dataset.src);
      if (result.ok) {
        replaceWith(target, badge("chain verified", "status-approved"),
          document.createTextNode(" all " + result.checked + " entries link and hash correctly, and all " +
            result.rows_checked + " records match them"));
      } else {
        replaceWith(target, badge(result.altered_records ? "records altered" : "chain broken", "status-rejected"),
          document.createTextNode(" at entry #" + result.broken_seq + ": " + result.reason));
      }
    } catch (error) {
      replaceWith(target, badge("not verified", "status-pending"), document.createTextNode(" " + error.message));
    }
  }

  async function showIntegrity() {
    const target = document.getElementById("integrity");
    if (!target) return;
    try {
      const result = await fetchJSON(target.dataset.src);
      replaceWith(target,
        result.ok ? badge("digest verified", "status-approved") : badge("digest mismatch", "status-rejected"),
        document.createTextNode(" " + result.reason));
    } catch (error) {
      replaceWith(target, badge("not verified", "status-pending"), document.createTextNode(" " + error.message));
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    setUpRunSelection();
    setUpParamToggle();
    showChainStatus();
    showIntegrity();
  });
})();
