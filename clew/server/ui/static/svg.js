// SVG helpers both chart scripts share (chart.js, monitoring.js): load this one first.
"use strict";

window.clewSvg = (function () {
  const SVG = "http://www.w3.org/2000/svg";

  function svgElement(name, attributes) {
    const element = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attributes || {})) {
      element.setAttribute(key, String(value));
    }
    return element;
  }

  // The values' [low, high], widened a little when they are all equal so a flat line shows.
  function extent(values) {
    let low = Infinity;
    let high = -Infinity;
    for (const value of values) {
      if (value < low) low = value;
      if (value > high) high = value;
    }
    if (low === Infinity) return [0, 1];
    if (low === high) return [low - (Math.abs(low) || 1) * 0.05, high + (Math.abs(high) || 1) * 0.05];
    return [low, high];
  }

  return { SVG, svgElement, extent };
})();
