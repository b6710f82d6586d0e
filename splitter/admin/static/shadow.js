// The shadow traffic panel (docs/shadow.md): for the route shown, the pool that gets
// copies and the share, what the copies' answers compared to (counts and rates), the
// fields that differ most and the last differences.
//
//   load()            GET /api/v1/routes/NAME/shadow, when the route is shown
//   render(body)      that body, or a `shadow` stream message (the same, with "route")
//
// The panel shows only while the route has shadow traffic: a pool gets copies, or copies
// were counted (a stopped shadow's results stay in view). Paths and values come from
// clients and backends: they are only ever set as text (el() appends text nodes).

import { api, routeUrl } from "./api.js";
import { clock, count, el } from "./format.js";

const $ = (id) => document.getElementById(id);
const TOP_FIELDS = 10;

/** Whether a route's shadow body is worth a panel. */
export function hasShadow(body) {
  return Boolean(body) && (body.pool !== null || body.compared > 0 || body.skipped > 0 || body.errors > 0);
}

/** 0.1 -> "10%", 0.125 -> "12.5%", 0.0005 -> "0.05%". */
function share(value) {
  return `${Math.round(value * 10000) / 100}%`;
}

/** A rate as `splitter ctl shadow` shows it: 1 -> "100%", 0.1667 -> "16.7%",
 * 0.0123 -> "1.23%", 0 -> "0%", 0.00001 -> "<0.01%". */
function ratePercent(ratio) {
  if (ratio === null || ratio === undefined || !Number.isFinite(ratio)) return "–";
  const value = ratio * 100;
  if (value === 0) return "0%";
  if (value < 0.01) return "<0.01%";
  return `${Number(value.toFixed(value >= 10 ? 1 : 2))}%`;
}

export class ShadowPanel {
  constructor() {
    this.route = null;
    this.generation = 0; // one more at each change of route: late answers are dropped
    this.last = ""; // the body shown, as JSON: an unchanged one is not drawn again
  }

  /** Another route is shown: forget the last one's shadow. */
  setRoute(name) {
    this.route = name;
    this.generation += 1;
    this.last = "";
    $("shadow").hidden = true;
  }

  async load() {
    const { route, generation } = this;
    if (route === null) return;
    try {
      const body = await api("GET", routeUrl(route, "shadow"));
      if (generation === this.generation) this.render(body);
    } catch {
      // no panel rather than a wrong one; the next stream message draws it
    }
  }

  render(body) {
    const shown = hasShadow(body);
    $("shadow").hidden = !shown;
    if (!shown) {
      this.last = "";
      return;
    }
    const { route: _route, ...rest } = body;
    const text = JSON.stringify(rest);
    if (text === this.last) return;
    this.last = text;
    this.renderHead(body);
    this.renderRates(body);
    this.renderFields(body.fields || []);
    this.renderRecent(body.recent || []);
  }

  renderHead(body) {
    const badge = $("sh-status");
    let status;
    let tone;
    let what;
    if (body.pool === null) {
      status = "stopped";
      tone = "";
      what = ["Stopped: no request is copied. The results below are of the copies made before."];
    } else if (!(body.share > 0)) {
      status = "share 0";
      tone = "warn";
      what = [el("strong", {}, body.pool), " gets no copies (share 0)."];
    } else {
      status = "copying";
      tone = "ok";
      what = ["Copies of ", el("strong", {}, share(body.share)), " of the requests go to ", el("strong", {}, body.pool), "."];
    }
    if (body.pool !== null) {
      what.push(
        body.reference
          ? [" Reference: ", el("strong", {}, body.reference), " (where it differs from the primary, it is noise)."]
          : " No reference.",
      );
    }
    badge.textContent = status;
    badge.dataset.tone = tone;
    $("sh-what").replaceChildren(...what.flat());
  }

  renderRates(body) {
    const copies = body.compared + body.skipped + body.errors;
    const item = (label, value, note, tone) =>
      el("div", { className: `sh-rate ${tone || ""}`, "data-rate": label.toLowerCase() }, el("dt", {}, label), el("dd", {}, value, el("span", { className: "sub" }, note)));
    $("sh-rates").replaceChildren(
      item("Compared", count(body.compared), `${count(body.same)} the same`),
      item("Differ", ratePercent(body.diff_rate), `${count(body.differ)} of ${count(body.compared)}`, body.differ > 0 ? "warn" : ""),
      item("Noise", count(body.noise), body.compared ? `${ratePercent(body.noise / body.compared)} of compared` : "–"),
      item("Skipped", count(body.skipped), copies ? `${ratePercent(body.skipped / copies)} of copies` : "–"),
      item("Errors", count(body.errors), copies ? `${ratePercent(body.errors / copies)} of copies` : "–", body.errors > 0 ? "warn" : ""),
    );
  }

  renderFields(fields) {
    const top = fields.slice(0, TOP_FIELDS);
    const most = Math.max(1, ...top.map((f) => f.differ));
    $("sh-fields").replaceChildren(
      ...top.map((f) => {
        const bar = el("span", { className: "sh-bar", "aria-hidden": "true" });
        bar.style.width = `${Math.max(2, (100 * f.differ) / most)}%`;
        return el(
          "tr",
          {},
          el("th", { scope: "row" }, el("code", {}, f.field)),
          el("td", { className: "num" }, count(f.differ)),
          el("td", { className: "sh-bar-cell" }, bar),
        );
      }),
    );
    $("sh-fields-table").hidden = top.length === 0;
    $("sh-fields-empty").hidden = top.length > 0;
    $("sh-fields-more").textContent = fields.length > TOP_FIELDS ? `and ${fields.length - TOP_FIELDS} more fields` : "";
  }

  renderRecent(recent) {
    const items = [...recent].reverse().map((d) => {
      const same = d.primary_status === d.shadow_status;
      return el(
        "li",
        {},
        el(
          "p",
          { className: "sh-req" },
          el("time", { datetime: d.at, title: d.at }, clock(d.at)),
          el("code", { className: "sh-path" }, `${d.method} ${d.path}`),
          el(
            "span",
            { className: `sh-status ${same ? "" : d.shadow_status >= 500 ? "bad" : "warn"}` },
            same ? String(d.primary_status) : `${d.primary_status} → ${d.shadow_status}`,
          ),
        ),
        el("p", { className: "sh-field" }, el("code", {}, d.field)),
        el(
          "dl",
          { className: "sh-values" },
          el("div", {}, el("dt", {}, "primary"), el("dd", {}, el("code", { className: "sh-primary" }, d.primary))),
          el("div", {}, el("dt", {}, "shadow"), el("dd", {}, el("code", { className: "sh-shadow" }, d.shadow))),
        ),
      );
    });
    $("sh-recent").replaceChildren(...items);
    $("sh-recent-empty").hidden = items.length > 0;
  }
}
