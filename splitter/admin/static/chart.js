// A small SVG line chart: one line per pool over the last N seconds, drawn in pixels
// (it follows the width of its box), with three grid lines and a time axis.

const SVG = "http://www.w3.org/2000/svg";
const PAD = { left: 46, right: 10, top: 8, bottom: 20 };

function node(tag, attrs = {}) {
  const n = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, String(v));
  return n;
}

/** The smallest round number (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8 x 10^k) at or above `value`. */
export function niceMax(value, floor = 1) {
  const v = Math.max(value, floor);
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * p >= v - 1e-9) return m * p;
  return 10 * p;
}

export class LineChart {
  /**
   * @param {HTMLElement} box  the element the chart fills
   * @param {{labelledBy: string, format: (v: number) => string, floor?: number}} options
   */
  constructor(box, options) {
    this.box = box;
    this.options = options;
    this.series = [];
    this.seconds = 300;
    this.svg = node("svg", { role: "img", "aria-labelledby": options.labelledBy, focusable: "false" });
    box.append(this.svg);
    if (typeof ResizeObserver === "function") {
      new ResizeObserver(() => this.draw()).observe(box);
    }
  }

  /** series: [{name, color, values: (number|null)[]}], every `values` `seconds` long. */
  update(series, seconds) {
    this.series = series;
    this.seconds = seconds;
    this.draw();
  }

  draw() {
    const width = this.box.clientWidth;
    const height = this.box.clientHeight;
    if (width <= 0 || height <= 0) return;
    const svg = this.svg;
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    const { format, floor = 1 } = this.options;
    let peak = 0;
    for (const s of this.series) for (const v of s.values) if (v !== null && v > peak) peak = v;
    const top = niceMax(peak, floor);
    const plotW = width - PAD.left - PAD.right;
    const plotH = height - PAD.top - PAD.bottom;
    const x = (i) => PAD.left + (plotW * i) / Math.max(this.seconds - 1, 1);
    const y = (v) => PAD.top + plotH - (plotH * v) / top;
    const parts = [];
    for (const frac of [0, 0.5, 1]) {
      const yy = Math.round(y(top * frac)) + 0.5;
      parts.push(node("line", { class: "gridline", x1: PAD.left, x2: width - PAD.right, y1: yy, y2: yy }));
      const label = node("text", { class: "axis", x: PAD.left - 6, y: yy + 4, "text-anchor": "end" });
      label.textContent = format(top * frac);
      parts.push(label);
    }
    const minutes = Math.round(this.seconds / 60);
    for (let m = minutes; m >= 0; m -= 1) {
      const i = Math.max(this.seconds - 1 - m * 60, 0);
      const label = node("text", {
        class: "axis",
        x: x(i),
        y: height - 4,
        "text-anchor": m === minutes ? "start" : m === 0 ? "end" : "middle",
      });
      label.textContent = m === 0 ? "now" : `−${m}m`;
      parts.push(label);
    }
    for (const s of this.series) {
      let d = "";
      let pen = false;
      s.values.forEach((v, i) => {
        if (v === null) {
          pen = false;
          return;
        }
        d += `${pen ? "L" : "M"}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
        pen = true;
      });
      if (!d) continue;
      const path = node("path", { class: "line", d });
      path.style.setProperty("--c", s.color);
      parts.push(path);
    }
    svg.replaceChildren(...parts);
  }
}
