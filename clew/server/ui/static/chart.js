// Metric-series line charts drawn as plain SVG: one chart per metric, one line per run.
// Data comes from a <script type="application/json"> block shaped
//   {metric: [{run, label, points: [[step, value|null], ...]}, ...]}
// A null value (NaN or an infinity when logged) breaks the line instead of faking a point.
"use strict";

(function () {
  const WIDTH = 460;
  const HEIGHT = 240;
  const MARGIN = { top: 12, right: 16, bottom: 30, left: 58 };
  const COLOURS = ["#1f6feb", "#d9480f", "#2b8a3e", "#ae3ec9", "#e8590c", "#0b7285", "#c2255c", "#5c940d", "#364fc7", "#862e9c"];

  const { svgElement, extent } = window.clewSvg;

  // About five round numbers covering [low, high], for axis labels.
  function ticks(low, high, count) {
    const span = high - low;
    const rough = span / count;
    const power = Math.pow(10, Math.floor(Math.log10(rough)));
    const step = [1, 2, 5, 10].map((m) => m * power).find((s) => span / s <= count) || power * 10;
    const values = [];
    for (let value = Math.ceil(low / step) * step; value <= high + step * 1e-9; value += step) {
      values.push(Number(value.toPrecision(12)));
    }
    return values;
  }

  function format(value) {
    if (value === null || value === undefined) return "NaN";
    const magnitude = Math.abs(value);
    if (magnitude !== 0 && (magnitude >= 1e5 || magnitude < 1e-3)) return value.toExponential(2);
    return String(Number(value.toPrecision(4)));
  }

  function pathFor(points, x, y) {
    let text = "";
    let pen = false;
    for (const [step, value] of points) {
      if (value === null) {
        pen = false;
        continue;
      }
      text += (pen ? "L" : "M") + x(step).toFixed(1) + "," + y(value).toFixed(1);
      pen = true;
    }
    return text;
  }

  function drawChart(metric, lines, colourOf) {
    const figure = document.createElement("figure");
    figure.className = "chart";
    figure.dataset.metric = metric;
    const caption = document.createElement("figcaption");
    caption.textContent = metric;
    figure.appendChild(caption);

    const steps = lines.flatMap((line) => line.points.map((p) => p[0]));
    const values = lines.flatMap((line) => line.points.map((p) => p[1]).filter((v) => v !== null));
    const [xLow, xHigh] = extent(steps);
    const [yLow, yHigh] = extent(values);
    const innerWidth = WIDTH - MARGIN.left - MARGIN.right;
    const innerHeight = HEIGHT - MARGIN.top - MARGIN.bottom;
    const x = (step) => MARGIN.left + ((step - xLow) / (xHigh - xLow || 1)) * innerWidth;
    const y = (value) => MARGIN.top + innerHeight - ((value - yLow) / (yHigh - yLow || 1)) * innerHeight;

    const svg = svgElement("svg", { viewBox: "0 0 " + WIDTH + " " + HEIGHT, role: "img", class: "chart-svg" });
    svg.setAttribute("aria-label", "chart of " + metric);
    for (const value of ticks(yLow, yHigh, 5)) {
      svg.appendChild(svgElement("line", { x1: MARGIN.left, x2: WIDTH - MARGIN.right, y1: y(value), y2: y(value), class: "grid-line" }));
      const label = svgElement("text", { x: MARGIN.left - 6, y: y(value) + 4, class: "tick", "text-anchor": "end" });
      label.textContent = format(value);
      svg.appendChild(label);
    }
    for (const value of ticks(xLow, xHigh, 6)) {
      const label = svgElement("text", { x: x(value), y: HEIGHT - 10, class: "tick", "text-anchor": "middle" });
      label.textContent = format(value);
      svg.appendChild(label);
    }
    const axisLabel = svgElement("text", { x: WIDTH - MARGIN.right, y: HEIGHT - 10, class: "tick axis-name", "text-anchor": "end" });
    axisLabel.textContent = "step";
    svg.appendChild(axisLabel);

    for (const line of lines) {
      const colour = colourOf(line.run);
      if (line.points.length === 1 && line.points[0][1] !== null) {
        const [step, value] = line.points[0];
        svg.appendChild(svgElement("circle", { cx: x(step), cy: y(value), r: 4, fill: colour }));
      } else {
        svg.appendChild(svgElement("path", { d: pathFor(line.points, x, y), stroke: colour, class: "series" }));
      }
    }
    addHover(svg, lines, x, y, colourOf, figure);
    figure.appendChild(svg);
    return figure;
  }

  // A vertical rule follows the pointer; the readout lists each run's value at that step.
  function addHover(svg, lines, x, y, colourOf, figure) {
    const rule = svgElement("line", { y1: MARGIN.top, y2: HEIGHT - MARGIN.bottom, class: "hover-rule", visibility: "hidden" });
    svg.appendChild(rule);
    const readout = document.createElement("div");
    readout.className = "readout";
    figure.appendChild(readout);
    svg.addEventListener("mousemove", (event) => {
      const box = svg.getBoundingClientRect();
      const px = ((event.clientX - box.left) / box.width) * WIDTH;
      let best = null;
      for (const line of lines) {
        for (const point of line.points) {
          const distance = Math.abs(x(point[0]) - px);
          if (best === null || distance < best.distance) best = { distance, step: point[0] };
        }
      }
      if (best === null) return;
      rule.setAttribute("x1", x(best.step));
      rule.setAttribute("x2", x(best.step));
      rule.setAttribute("visibility", "visible");
      const parts = [document.createTextNode("step " + best.step + ": ")];
      for (const line of lines) {
        const point = line.points.find((p) => p[0] === best.step);
        if (!point) continue;
        const swatch = document.createElement("span");
        swatch.className = "swatch";
        swatch.style.backgroundColor = colourOf(line.run);
        const text = document.createElement("span");
        text.textContent = line.label + " " + format(point[1]) + "  ";
        parts.push(swatch, text);
      }
      readout.replaceChildren(...parts);
    });
    svg.addEventListener("mouseleave", () => {
      rule.setAttribute("visibility", "hidden");
      readout.replaceChildren();
    });
  }

  function legend(runs, colourOf) {
    const list = document.createElement("ul");
    list.className = "chart-legend";
    for (const [run, label] of runs) {
      const item = document.createElement("li");
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.backgroundColor = colourOf(run);
      const text = document.createElement("span");
      text.textContent = label + " (" + run.slice(-8) + ")";
      item.append(swatch, text);
      list.appendChild(item);
    }
    return list;
  }

  function render(container) {
    const source = document.getElementById(container.dataset.series);
    if (!source) return;
    const series = JSON.parse(source.textContent);
    const runs = new Map();
    for (const lines of Object.values(series)) {
      for (const line of lines) runs.set(line.run, line.label);
    }
    const order = Array.from(runs.keys());
    const colourOf = (run) => COLOURS[order.indexOf(run) % COLOURS.length];
    if (order.length > 1) container.appendChild(legend(runs, colourOf));
    for (const metric of Object.keys(series).sort()) {
      container.appendChild(drawChart(metric, series[metric], colourOf));
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll(".charts[data-series]").forEach(render);
  });
})();
