// The route list (CONTRACT.md section 12): each route's name, what it matches, its split
// and its requests per second; the page shows one route at a time, the one named in its
// address (#route=NAME).

import { el, percent, poolColor, rate, shares } from "./format.js";
import { isActive, statusText, statusTone } from "./rollout.js";

const $ = (id) => document.getElementById(id);

/** The route named in the page's address (`#route=NAME`), or null when it names none. */
export function routeInAddress() {
  return new URLSearchParams(location.hash.replace(/^#/, "")).get("route");
}

export function addressOf(name) {
  return `#route=${encodeURIComponent(name)}`;
}

/** What a route matches: "shop.example.com · /", "any host · /api". */
export function matchText(route) {
  const hosts = Array.isArray(route.hosts) && route.hosts.length ? route.hosts.join(", ") : "any host";
  return `${hosts} · ${route.path_prefix || "/"}`;
}

function splitText(weights) {
  const split = shares(weights);
  const parts = Object.keys(weights).filter((name) => split[name] > 0);
  return parts.map((name) => `${name} ${percent(split[name], 0)}`).join(" · ") || "every weight 0";
}

function rolloutText(rollout) {
  const step = Array.isArray(rollout.steps) && typeof rollout.step === "number" ? rollout.steps[rollout.step] : null;
  const at = step && typeof step.weight === "number" ? ` at ${step.weight}%` : "";
  return `rollout of ${rollout.pool}${at}: ${statusText(rollout.status)}`;
}

export class RouteList {
  constructor() {
    this.nav = $("routes");
    this.list = $("route-list");
    this.items = new Map(); // name -> {link, rps, match, bar, split, badge}
    this.order = "";
  }

  /**
   * @param {Object<string, any>} routes  GET /api/v1/routes (name -> route), in config order
   * @param {string|null} shown  the route shown
   * @param {Object<string, number>} rps  name -> requests per second
   * Only the texts change while the routes stay the same: a link keeps its focus.
   */
  render(routes, shown, rps) {
    const names = Object.keys(routes);
    // One route, the `default` of a config with top-level pools: nothing to choose.
    this.nav.hidden = names.length === 0 || (names.length === 1 && names[0] === "default");
    if (names.join("\n") !== this.order) {
      this.order = names.join("\n");
      this.items.clear();
      this.list.replaceChildren(...names.map((name) => this.build(name)));
    }
    for (const name of names) this.update(name, routes[name], name === shown, rps[name]);
  }

  build(name) {
    const item = {
      rps: el("span", { className: "route-rps" }),
      match: el("span", { className: "route-match" }),
      bar: el("span", { className: "splitbar mini", "aria-hidden": "true" }),
      split: el("span", { className: "route-split" }),
      badge: el("span", { className: "badge", hidden: true }),
    };
    item.link = el(
      "a",
      { className: "route", href: addressOf(name), "data-route": name },
      el("span", { className: "route-head" }, el("span", { className: "route-name" }, name), item.rps),
      item.match,
      item.bar,
      item.split,
      item.badge,
    );
    this.items.set(name, item);
    return el("li", {}, item.link);
  }

  update(name, route, current, rps) {
    const item = this.items.get(name);
    if (!item) return;
    if (current) item.link.setAttribute("aria-current", "true");
    else item.link.removeAttribute("aria-current");
    item.rps.textContent = rps === undefined ? "" : `${rate(rps)} req/s`;
    item.match.textContent = matchText(route);
    const weights = route.weights || {};
    const split = shares(weights);
    const text = splitText(weights);
    if (item.split.textContent !== text) {
      item.split.textContent = text;
      item.bar.replaceChildren(
        ...Object.keys(weights)
          .map((pool, i) => [pool, i])
          .filter(([pool]) => split[pool] > 0)
          .map(([pool, i]) => {
            const seg = el("span", { className: "seg", color: poolColor(pool, i) });
            seg.style.flexGrow = String(split[pool]);
            return seg;
          }),
      );
    }
    const rollout = route.rollout;
    item.badge.hidden = !isActive(rollout);
    if (isActive(rollout)) {
      item.badge.textContent = rolloutText(rollout);
      item.badge.dataset.tone = statusTone(rollout.status);
    }
  }
}
