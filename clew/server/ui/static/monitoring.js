// Small time-series charts for the monitoring page, drawn as plain SVG (no library, offline).
// Each <figure class="spark" data-chart="KEY"> gets the series KEY from the JSON block
// #monitor-series, shaped {KEY: [[time_ms, value|null, passed], ...]} (oldest first).
// A run that found violations is drawn as a hollow red point; a null value breaks the line.
"use strict";

(function () {
  const WIDTH = 260;
  const HEIGHT = 110;
  const MARGIN = { top: 8, right: 10, bottom: 20, left: 44 };

  const { svgElement, extent } = window.clewSvg;

  function format(value) {
    if (value === null || value === undefined) return "NaN";
    const magnitude = Math.abs(value);
    if (magnitude !== 0 && (magnitude >= 1e5 || magnitude < 1e-3)) return value.toExponential(2);
    return String(Number(value.toPrecision(4)));
  }

  function when(ms) {
    return new Date(ms).toISOString().slice(0, 16).replace("T", " ");
  }

  function text(x, y, content, anchor) {
    const label = svgElement("text", { x: x, y: y, class: "tick", "text-anchor": anchor });
    label.textContent = content;
    return label;
  }

  function draw(figure, points) {
    const times = points.map((p) => p[0]);
    const values = points.map((p) => p[1]).filter((v) => v !== null);
    const [tLow, tHigh] = extent(times);
    const [yLow, yHigh] = extent(values);
    const innerWidth = WIDTH - MARGIN.left - MARGIN.right;
    const innerHeight = HEIGHT - MARGIN.top - MARGIN.bottom;
    const x = (t) => MARGIN.left + (points.length === 1 ? innerWidth / 2 : ((t - tLow) / (tHigh - tLow || 1)) * innerWidth);
    const y = (v) => MARGIN.top + innerHeight - ((v - yLow) / (yHigh - yLow || 1)) * innerHeight;

    const svg = svgElement("svg", { viewBox: "0 0 " + WIDTH + " " + HEIGHT, role: "img", class: "spark-svg" });
    svg.setAttribute("aria-label", (figure.dataset.figure || "figure") + " over " + points.length + " runs");
    svg.appendChild(svgElement("line", { x1: MARGIN.left, x2: WIDTH - MARGIN.right, y1: y(yLow), y2: y(yLow), class: "axis" }));
    svg.appendChild(text(MARGIN.left - 4, y(yHigh) + 4, format(yHigh), "end"));
    svg.appendChild(text(MARGIN.left - 4, y(yLow) + 4, format(yLow), "end"));
    svg.appendChild(text(MARGIN.left, HEIGHT - 4, when(times[0]), "start"));
    if (points.length > 1) svg.appendChild(text(WIDTH - MARGIN.right, HEIGHT - 4, when(times[times.length - 1]), "end"));

    let path = "";
    let pen = false;
    for (const [t, v] of points) {
      if (v === null) {
        pen = false;
        continue;
      }
      path += (pen ? "L" : "M") + x(t).toFixed(1) + "," + y(v).toFixed(1);
      pen = true;
    }
    if (path) svg.appendChild(svgElement("path", { d: path, class: "series" }));
    for (const [t, v, passed] of points) {
      if (v === null) continue;
      const point = svgElement("circle", { cx: x(t), cy: y(v), r: 3, class: passed ? "point" : "point failed" });
      const tip = svgElement("title");
      tip.textContent = when(t) + " UTC: " + format(v) + (passed ? "" : " (run found violations)");
      point.appendChild(tip);
      svg.appendChild(point);
    }
    figure.appendChild(svg);
  }

  document.addEventListener("DOMContentLoaded", () => {
    const source = document.getElementById("monitor-series");
    if (!source) return;
    const series = JSON.parse(source.textContent);
    document.querySelectorAll("figure.spark[data-chart]").forEach((figure) => {
      const points = series[figure.dataset.chart];
      if (points && points.length) draw(figure, points);
    });
  });
})();
