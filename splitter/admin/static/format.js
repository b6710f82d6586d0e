// Numbers, times and pool colours for the dashboard.

const NAMED = new Set(["blue", "green", "canary"]);
const PALETTE = ["--pool-1", "--pool-2", "--pool-3", "--pool-4", "--pool-5"];

/** The CSS colour of a pool: its own for blue, green and canary, else one of a palette. */
export function poolColor(name, index) {
  if (name === "none") return "var(--pool-none)";
  if (NAMED.has(name)) return `var(--pool-${name})`;
  return `var(${PALETTE[index % PALETTE.length]})`;
}

export function rate(value) {
  if (value === null || value === undefined) return "–";
  if (value === 0) return "0";
  if (value < 10) return value.toFixed(1);
  return Math.round(value).toLocaleString("en-US");
}

export function percent(ratio, digits = 1) {
  if (ratio === null || ratio === undefined) return "–";
  const value = ratio * 100;
  if (value === 0) return "0%";
  if (value < 0.1 && digits < 2) return `${value.toFixed(2)}%`;
  return `${value.toFixed(digits)}%`;
}

export function ms(value) {
  if (value === null || value === undefined) return "–";
  if (value >= 1000) return `${(value / 1000).toFixed(value >= 10000 ? 0 : 1)} s`;
  if (value >= 100) return `${Math.round(value)} ms`;
  if (value >= 10) return `${value.toFixed(0)} ms`;
  return `${value.toFixed(1)} ms`;
}

export function count(value) {
  if (value === null || value === undefined) return "–";
  return Number(value).toLocaleString("en-US");
}

export function weight(value) {
  if (value === null || value === undefined) return "–";
  return Number.isInteger(value) ? String(value) : String(Number(value.toPrecision(6)));
}

/** "16:02:11" in the browser's time zone. */
export function clock(iso) {
  const d = iso instanceof Date ? iso : new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso ?? "");
  return d.toLocaleTimeString("en-GB", { hour12: false });
}

export function dateTime(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso ?? "");
  return d.toLocaleString("en-GB", { hour12: false, day: "numeric", month: "short", hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

/** Each pool's share of the total weight (0 to 1); all 0 when the total is 0. */
export function shares(weights) {
  const total = Object.values(weights).reduce((a, b) => a + b, 0);
  const out = {};
  for (const [name, w] of Object.entries(weights)) out[name] = total > 0 ? w / total : 0;
  return out;
}

/** An element with attributes, properties and children: el("li", {className: "x"}, "text"). */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "className" || key === "textContent" || key === "hidden" || key === "title") node[key] = value;
    else if (key === "color") node.style.setProperty("--c", value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/** Show an action's result (tone "ok") or error (tone "error") in a message element. */
export function message(node, content, tone) {
  node.className = `msg ${tone || ""}`;
  node.replaceChildren(...[content].flat());
}
