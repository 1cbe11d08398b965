// The lineage explorer: a layered drawing of a directed graph, in plain SVG.
//
// Layout follows the Sugiyama recipe, kept small:
//   1. ignore the edges that close a cycle (found by depth-first search);
//   2. give each node a layer: one more than its deepest predecessor, so data flows left to
//      right; sources are then pulled right, next to their first consumer;
//   3. order each layer to reduce crossings: a few sweeps placing every node at the mean
//      position (barycentre) of its neighbours in the layer before or after;
//   4. wrap layers taller than MAX_ROWS into side-by-side columns, so a dataset read by
//      300 runs stays readable instead of becoming a 15,000-pixel column.
// Interaction: drag to pan, wheel to zoom, click a node for its facts, "Expand" fetches
// its neighbours and merges them in. Names are set with textContent, never parsed as HTML.
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const NODE_WIDTH = 190;
  const NODE_HEIGHT = 40;
  const ROW_GAP = 14;
  const LAYER_GAP = 90;
  const COLUMN_GAP = 24;
  const MAX_ROWS = 24;
  const SWEEPS = 8;
  const LABEL_CHARS = 24;
  // A trace step's outcome -> the node's class and its mark.
  const VERDICTS = {
    verified: ["verified", "✓ verified"],
    not_checkable: ["unchecked", "? not checkable"],
    failed: ["unverified", "✗ failed"],
  };
  const ARTIFACT_TYPES = ["dataset", "model", "code", "environment", "feature_group", "feature_set",
    "data_source", "endpoint", "report", "file", "directory", "diff"];

  function svgElement(name, attributes) {
    const element = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attributes || {})) {
      element.setAttribute(key, String(value));
    }
    return element;
  }

  function category(node) {
    if (node.kind === "run") return "run";
    if (node.kind === "prediction") return "prediction";
    if (node.kind === "context") return "context";
    return ARTIFACT_TYPES.includes(node.type) ? node.type : "artifact";
  }

  function shorten(text, limit) {
    return text.length > limit ? text.slice(0, limit - 1) + "…" : text;
  }

  // ---- layout ---------------------------------------------------------------------------

  function adjacency(ids, edges) {
    const out = new Map(ids.map((id) => [id, []]));
    const into = new Map(ids.map((id) => [id, []]));
    for (const edge of edges) {
      out.get(edge.source).push(edge.target);
      into.get(edge.target).push(edge.source);
    }
    return { out, into };
  }

  // Edges that close a cycle, found by an iterative depth-first search.
  function backEdges(ids, out) {
    const state = new Map();
    const back = new Set();
    for (const root of ids) {
      if (state.has(root)) continue;
      const stack = [[root, 0]];
      state.set(root, "open");
      while (stack.length) {
        const top = stack[stack.length - 1];
        const [node, index] = top;
        const next = out.get(node)[index];
        if (next === undefined) {
          state.set(node, "done");
          stack.pop();
          continue;
        }
        top[1] += 1;
        if (state.get(next) === "open") back.add(node + ">" + next);
        else if (!state.has(next)) {
          state.set(next, "open");
          stack.push([next, 0]);
        }
      }
    }
    return back;
  }

  function assignLayers(ids, edges) {
    const back = backEdges(ids, adjacency(ids, edges).out);
    const forward = edges.filter((e) => !back.has(e.source + ">" + e.target) && e.source !== e.target);
    const { out, into } = adjacency(ids, forward);
    const waiting = new Map(ids.map((id) => [id, into.get(id).length]));
    const layer = new Map();
    const queue = ids.filter((id) => waiting.get(id) === 0);
    for (const id of queue) layer.set(id, 0);
    while (queue.length) {
      const id = queue.shift();
      for (const next of out.get(id)) {
        layer.set(next, Math.max(layer.get(next) || 0, layer.get(id) + 1));
        waiting.set(next, waiting.get(next) - 1);
        if (waiting.get(next) === 0) queue.push(next);
      }
    }
    for (const id of ids) {
      if (into.get(id).length === 0 && out.get(id).length > 0) {
        layer.set(id, Math.min(...out.get(id).map((next) => layer.get(next))) - 1);
      }
    }
    return { layer, out, into };
  }

  function orderLayers(ids, nodes, layer, out, into) {
    const count = Math.max(0, ...ids.map((id) => layer.get(id))) + 1;
    const layers = Array.from({ length: count }, () => []);
    for (const id of ids) layers[layer.get(id)].push(id);
    const byName = (a, b) => {
      const x = nodes.get(a);
      const y = nodes.get(b);
      return category(x).localeCompare(category(y)) || x.name.localeCompare(y.name) || a.localeCompare(b);
    };
    layers.forEach((ids_) => ids_.sort(byName));
    const position = new Map();
    const remember = () => layers.forEach((ids_) => ids_.forEach((id, index) => position.set(id, index)));
    remember();
    const barycentre = (id, neighbours) => {
      const known = neighbours.get(id).filter((n) => position.has(n));
      if (!known.length) return position.get(id);
      return known.reduce((sum, n) => sum + position.get(n), 0) / known.length;
    };
    for (let sweep = 0; sweep < SWEEPS; sweep += 1) {
      const downward = sweep % 2 === 0;
      const sequence = downward ? layers.slice(1) : layers.slice(0, -1).reverse();
      for (const ids_ of sequence) {
        const key = new Map(ids_.map((id) => [id, barycentre(id, downward ? into : out)]));
        ids_.sort((a, b) => key.get(a) - key.get(b) || byName(a, b));
        ids_.forEach((id, index) => position.set(id, index));
      }
    }
    return layers;
  }

  // Coordinates: layers left to right, each wrapped into columns of at most MAX_ROWS.
  function place(layers) {
    const at = new Map();
    const tallest = Math.min(MAX_ROWS, Math.max(1, ...layers.map((ids) => ids.length)));
    const fullHeight = tallest * (NODE_HEIGHT + ROW_GAP);
    let x = 0;
    for (const ids of layers) {
      if (!ids.length) continue;
      const columns = Math.ceil(ids.length / MAX_ROWS);
      const rows = Math.ceil(ids.length / columns);
      const top = (fullHeight - rows * (NODE_HEIGHT + ROW_GAP)) / 2;
      ids.forEach((id, index) => {
        const column = Math.floor(index / rows);
        const row = index % rows;
        at.set(id, { x: x + column * (NODE_WIDTH + COLUMN_GAP), y: top + row * (NODE_HEIGHT + ROW_GAP) });
      });
      x += columns * (NODE_WIDTH + COLUMN_GAP) - COLUMN_GAP + LAYER_GAP;
    }
    return at;
  }

  function layout(nodes, edges) {
    const ids = Array.from(nodes.keys());
    const { layer, out, into } = assignLayers(ids, edges);
    return place(orderLayers(ids, nodes, layer, out, into));
  }

  // ---- the explorer ---------------------------------------------------------------------

  class Explorer {
    constructor(svg) {
      this.svg = svg;
      this.shell = svg.closest(".graph-shell");
      this.status = this.shell.querySelector(".graph-status");
      this.panel = document.getElementById("node-panel");
      this.legend = document.getElementById("legend");
      this.nodes = new Map();
      this.edges = new Map();
      this.start = null;
      this.selected = null;
      this.showContexts = false;
      this.view = { x: 20, y: 20, k: 1 };
      this.positions = new Map();
      this.viewport = svgElement("g", { class: "viewport" });
      this.svg.appendChild(this.definitions());
      this.svg.appendChild(this.viewport);
      this.bindControls();
      this.bindPanZoom();
    }

    definitions() {
      const defs = svgElement("defs");
      const marker = svgElement("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" });
      marker.appendChild(svgElement("path", { d: "M0,0 L10,5 L0,10 z", class: "arrow-head" }));
      defs.appendChild(marker);
      return defs;
    }

    async load(url, merge) {
      this.status.textContent = "loading…";
      let payload;
      try {
        const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
        payload = await response.json();
        if (!response.ok) throw new Error(payload.error || response.statusText);
      } catch (error) {
        this.status.textContent = "could not load the graph: " + error.message;
        this.status.classList.add("problem");
        return;
      }
      if (!merge) this.start = payload.start;
      for (const node of payload.nodes) this.nodes.set(node.id, node);
      for (const edge of payload.edges) this.edges.set(edge.source + ">" + edge.target + ">" + edge.association, edge);
      this.draw(!merge);
      const shown = this.visibleNodes().size;
      this.status.textContent = shown + " nodes, " + this.visibleEdges(this.visibleNodes()).length + " edges" +
        (payload.truncated ? " (truncated: choose a smaller depth)" : "");
    }

    visibleNodes() {
      const shown = new Map();
      for (const [id, node] of this.nodes) {
        if (this.showContexts || node.kind !== "context" || id === this.start) shown.set(id, node);
      }
      return shown;
    }

    visibleEdges(shown) {
      return Array.from(this.edges.values()).filter((e) => shown.has(e.source) && shown.has(e.target));
    }

    draw(fit) {
      const shown = this.visibleNodes();
      const edges = this.visibleEdges(shown);
      this.positions = layout(shown, edges);
      this.viewport.replaceChildren();
      const edgeLayer = svgElement("g", { class: "edges" });
      const nodeLayer = svgElement("g", { class: "nodes" });
      for (const edge of edges) edgeLayer.appendChild(this.edgeElement(edge));
      for (const [id, node] of shown) nodeLayer.appendChild(this.nodeElement(id, node));
      this.viewport.append(edgeLayer, nodeLayer);
      this.drawLegend(shown);
      if (fit) this.fit();
      else this.applyView();
      if (this.selected && shown.has(this.selected)) this.select(this.selected);
    }

    edgeElement(edge) {
      const from = this.positions.get(edge.source);
      const to = this.positions.get(edge.target);
      const x1 = from.x + NODE_WIDTH;
      const y1 = from.y + NODE_HEIGHT / 2;
      const x2 = to.x;
      const y2 = to.y + NODE_HEIGHT / 2;
      const bend = Math.max(40, Math.abs(x2 - x1) / 2);
      const path = svgElement("path", {
        d: "M" + x1 + "," + y1 + " C" + (x1 + bend) + "," + y1 + " " + (x2 - bend) + "," + y2 + " " + x2 + "," + y2,
        class: "edge edge-" + edge.association,
        "marker-end": "url(#arrow)",
      });
      path.dataset.source = edge.source;
      path.dataset.target = edge.target;
      const title = svgElement("title");
      title.textContent = edge.association;
      path.appendChild(title);
      return path;
    }

    nodeElement(id, node) {
      const at = this.positions.get(id);
      const verdict = node.outcome === undefined ? "" : " " + VERDICTS[node.outcome][0];
      const group = svgElement("g", {
        class: "node cat-" + category(node) + (id === this.start ? " start" : "") + verdict,
        transform: "translate(" + at.x + "," + at.y + ")",
        tabindex: 0,
        role: "button",
      });
      group.dataset.id = id;
      group.setAttribute("aria-label", node.type + " " + node.name);
      group.appendChild(svgElement("rect", { width: NODE_WIDTH, height: NODE_HEIGHT, rx: 6 }));
      const kind = svgElement("text", { x: 10, y: 15, class: "node-type" });
      kind.textContent = node.kind === "run" ? "run · " + node.type : node.type;
      const name = svgElement("text", { x: 10, y: 31, class: "node-name" });
      name.textContent = shorten(node.name, LABEL_CHARS);
      const title = svgElement("title");
      title.textContent = node.ref;
      group.append(title, kind, name);
      if (verdict) {
        const mark = svgElement("text", { x: NODE_WIDTH - 10, y: 16, class: "verdict", "text-anchor": "end" });
        mark.textContent = VERDICTS[node.outcome][1];
        group.appendChild(mark);
      }
      group.addEventListener("click", (event) => {
        event.stopPropagation();
        this.select(id);
      });
      group.addEventListener("keydown", (event) => {
        if (event.key === "Enter" || event.key === " ") {
          event.preventDefault();
          this.select(id);
        }
      });
      return group;
    }

    drawLegend(shown) {
      const present = Array.from(new Set(Array.from(shown.values()).map(category))).sort();
      this.legend.replaceChildren(...present.map((name) => {
        const item = document.createElement("span");
        item.className = "legend-item cat-" + name;
        const swatch = document.createElement("span");
        swatch.className = "legend-swatch";
        const label = document.createElement("span");
        label.textContent = name.replace("_", " ");
        item.append(swatch, label);
        return item;
      }));
    }

    select(id) {
      this.selected = id;
      const node = this.nodes.get(id);
      this.viewport.querySelectorAll(".node").forEach((element) => {
        element.classList.toggle("selected", element.dataset.id === id);
      });
      this.viewport.querySelectorAll(".edge").forEach((element) => {
        element.classList.toggle("linked", element.dataset.source === id || element.dataset.target === id);
      });
      this.panel.hidden = false;
      this.panel.querySelector(".node-title").textContent = node.name;
      const facts = this.panel.querySelector(".node-facts");
      const rows = [["kind", node.kind], ["type", node.type], ["ref", node.ref]];
      if (node.outcome !== undefined) rows.push(["trace", node.outcome.replace("_", " ")]);
      if (node.digest) rows.push(["digest", node.digest]);
      for (const [term, value] of Object.entries(node.facts || {})) {
        if (value === null || value === undefined) continue;
        rows.push([term, typeof value === "object" ? JSON.stringify(value) : String(value)]);
      }
      facts.replaceChildren(...rows.flatMap(([term, value]) => {
        const dt = document.createElement("dt");
        dt.textContent = term;
        const dd = document.createElement("dd");
        dd.textContent = value;
        return [dt, dd];
      }));
      this.panel.querySelector(".node-open").setAttribute("href", node.href);
      const canExpand = Boolean(node.expand_ref);
      this.panel.querySelector(".node-expand").hidden = !canExpand;
      this.panel.querySelector(".node-focus").hidden = !canExpand;
    }

    expand() {
      const node = this.nodes.get(this.selected);
      if (!node || !node.expand_ref) return;
      const url = new URL(this.svg.dataset.expand, window.location.href);
      url.searchParams.set("ref", node.expand_ref);
      url.searchParams.set("depth", "1");
      url.searchParams.set("direction", "both");
      this.load(url.toString(), true);
    }

    refocus() {
      const node = this.nodes.get(this.selected);
      if (!node || !node.expand_ref) return;
      const url = new URL(window.location.href);
      url.searchParams.set("ref", node.expand_ref);
      window.location.assign(url.toString());
    }

    find(text) {
      const wanted = text.trim().toLowerCase();
      let first = null;
      this.viewport.querySelectorAll(".node").forEach((element) => {
        const node = this.nodes.get(element.dataset.id);
        const hit = wanted !== "" && (node.name.toLowerCase().includes(wanted) || node.ref.toLowerCase().includes(wanted));
        element.classList.toggle("found", hit);
        if (hit && first === null) first = element.dataset.id;
      });
      if (first !== null) this.centreOn(first);
    }

    // ---- view: pan, zoom, fit ---------------------------------------------------------

    applyView() {
      this.viewport.setAttribute("transform", "translate(" + this.view.x + "," + this.view.y + ") scale(" + this.view.k + ")");
      this.svg.classList.toggle("far", this.view.k < 0.45);
    }

    bounds() {
      let right = NODE_WIDTH;
      let bottom = NODE_HEIGHT;
      for (const at of this.positions.values()) {
        right = Math.max(right, at.x + NODE_WIDTH);
        bottom = Math.max(bottom, at.y + NODE_HEIGHT);
      }
      return { width: right, height: bottom };
    }

    fit() {
      const box = this.svg.getBoundingClientRect();
      const size = this.bounds();
      const k = Math.min(1.2, Math.max(0.05, Math.min((box.width - 40) / size.width, (box.height - 40) / size.height)));
      this.view = { k, x: (box.width - size.width * k) / 2, y: (box.height - size.height * k) / 2 };
      this.applyView();
    }

    centreOn(id) {
      const at = this.positions.get(id);
      if (!at) return;
      const box = this.svg.getBoundingClientRect();
      this.view.k = Math.max(this.view.k, 0.8);
      this.view.x = box.width / 2 - (at.x + NODE_WIDTH / 2) * this.view.k;
      this.view.y = box.height / 2 - (at.y + NODE_HEIGHT / 2) * this.view.k;
      this.applyView();
    }

    zoom(factor, cx, cy) {
      const k = Math.min(3, Math.max(0.05, this.view.k * factor));
      const applied = k / this.view.k;
      this.view.x = cx - (cx - this.view.x) * applied;
      this.view.y = cy - (cy - this.view.y) * applied;
      this.view.k = k;
      this.applyView();
    }

    bindPanZoom() {
      let drag = null;
      this.svg.addEventListener("pointerdown", (event) => {
        if (event.target.closest(".node")) return;
        drag = { x: event.clientX, y: event.clientY, vx: this.view.x, vy: this.view.y };
        this.svg.setPointerCapture(event.pointerId);
        this.svg.classList.add("dragging");
      });
      this.svg.addEventListener("pointermove", (event) => {
        if (!drag) return;
        this.view.x = drag.vx + event.clientX - drag.x;
        this.view.y = drag.vy + event.clientY - drag.y;
        this.applyView();
      });
      const stop = () => {
        drag = null;
        this.svg.classList.remove("dragging");
      };
      this.svg.addEventListener("pointerup", stop);
      this.svg.addEventListener("pointercancel", stop);
      this.svg.addEventListener("wheel", (event) => {
        event.preventDefault();
        const box = this.svg.getBoundingClientRect();
        this.zoom(event.deltaY < 0 ? 1.15 : 1 / 1.15, event.clientX - box.left, event.clientY - box.top);
      }, { passive: false });
    }

    bindControls() {
      const tools = this.shell.querySelector(".graph-tools");
      const centre = () => {
        const box = this.svg.getBoundingClientRect();
        return [box.width / 2, box.height / 2];
      };
      tools.querySelector("[data-action=fit]").addEventListener("click", () => this.fit());
      tools.querySelector("[data-action=zoom-in]").addEventListener("click", () => this.zoom(1.25, ...centre()));
      tools.querySelector("[data-action=zoom-out]").addEventListener("click", () => this.zoom(0.8, ...centre()));
      tools.querySelector("[data-action=contexts]").addEventListener("change", (event) => {
        this.showContexts = event.target.checked;
        this.draw(true);
      });
      tools.querySelector("[data-action=find]").addEventListener("input", (event) => this.find(event.target.value));
      this.panel.querySelector(".node-expand").addEventListener("click", () => this.expand());
      this.panel.querySelector(".node-focus").addEventListener("click", () => this.refocus());
      this.panel.querySelector(".node-close").addEventListener("click", () => { this.panel.hidden = true; });
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    const svg = document.getElementById("lineage-graph");
    if (!svg) return;
    const explorer = new Explorer(svg);
    explorer.load(svg.dataset.src, false);
  });
})();
