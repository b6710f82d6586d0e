// The splitter dashboard: loads the state once, then follows /api/v1/stream.
//
//   boot -> GET /api/v1/session (401: the sign-in form) -> load everything -> stream
//   stream messages: stats (every second), series (chart seconds), weights, event, rollout,
//                    shadow (every second, for a route with shadow traffic)
//   a dropped stream: banner + "Reconnecting", then everything is loaded again
//
// It shows one route at a time: the one named in the address (#route=NAME), else the
// first. Every figure, form and button is about that route (its calls go to
// /api/v1/routes/NAME/...); the stream's messages name their route and only the shown
// route's change the page, besides the route list and the events (every route's).

import { api, ApiFailure, AuthRequired, onAuthRequired, routeUrl, signIn, signOut } from "./api.js";
import { LineChart } from "./chart.js";
import { clock, el, message, ms, percent, poolColor, rate, shares, weight } from "./format.js";
import { isActive, RolloutPanel, statusText, statusTone } from "./rollout.js";
import { addressOf, RouteList, routeInAddress } from "./routes.js";
import { ShadowPanel } from "./shadow.js";
import { Stream } from "./stream.js";

const $ = (id) => document.getElementById(id);
const SECONDS = 300;
const MAX_EVENTS = 60;
const MAX_WEIGHT = 1000000;

const state = {
  routes: {}, // GET /api/v1/routes: name -> {hosts, path_prefix, weights, segments, rollout}
  route: null, // the route shown; everything below is about it
  routeRps: {}, // name -> requests/s of its last `stats` message
  generation: 0, // one more at each change of the route shown: late answers are dropped
  pools: [], // configured pool names, in config order
  poolInfo: {}, // GET /api/v1/pools
  weights: {},
  stats: null,
  seconds: new Map(), // unix second -> {pool: [requests, errors]}
  lastSecond: 0,
  events: [],
  rollout: null,
  session: false,
  booted: false, // the board was shown (a later 401 means the session ended)
  resync: false,
};

const color = (name) => poolColor(name, Math.max(state.pools.indexOf(name), 0));
const severalRoutes = () => Object.keys(state.routes).length > 1;
/** A stream message or answer about the route shown (one without a route is). */
const shown = (data) => !data || data.route === undefined || data.route === state.route;

// -- announcements and messages ---------------------------------------------------------

function announce(text, urgent = false) {
  const region = $(urgent ? "announce-urgent" : "announce");
  region.textContent = "";
  setTimeout(() => {
    region.textContent = text;
  }, 50);
}

function describeError(error) {
  return error instanceof ApiFailure && error.status ? `${error.message} (HTTP ${error.status})` : error.message;
}

// -- connection state -------------------------------------------------------------------

function setConnection(kind, text) {
  const conn = $("conn");
  conn.dataset.state = kind;
  $("conn-text").textContent = text;
}

function showBanner(text) {
  const banner = $("banner");
  if (text) {
    if (banner.textContent !== text) banner.textContent = text;
    banner.hidden = false;
  } else {
    banner.hidden = true;
    banner.textContent = "";
  }
}

const stream = new Stream("/api/v1/stream", {
  onMessage: (kind, data) => handlers[kind](data),
  onState: (kind, since) => {
    if (kind === "live") {
      setConnection("live", "Live");
      if (state.resync) {
        state.resync = false;
        showBanner("");
        announce("Connection to splitter restored.");
        loadAll();
      }
    } else if (kind === "connecting") {
      setConnection("connecting", "Connecting…");
    } else {
      state.resync = true;
      setConnection("reconnecting", "Reconnecting…");
      const when = since ? ` at ${clock(since)}` : "";
      showBanner(`Lost the live connection to splitter${when}. Reconnecting by itself; the numbers shown are from before.`);
    }
  },
  onFailed: () => {
    // The stream was refused: a 401 (signed out, or splitter restarted) shows the form.
    api("GET", "/api/v1/session").catch(() => {});
  },
});

// -- sign-in ----------------------------------------------------------------------------

const FIRST_SIGN_IN = $("login-why").textContent;

function showLogin(reason) {
  stream.stop();
  state.booted = false;
  $("board").hidden = true;
  $("login").hidden = false;
  $("signout").hidden = true;
  setConnection("locked", "Signed out");
  showBanner("");
  $("login-why").textContent = reason || FIRST_SIGN_IN;
  message($("login-msg"), "");
  $("token").focus();
}

onAuthRequired(() => {
  // A 401 once the board was shown: the session ended under it.
  if (state.booted && $("login").hidden) {
    showLogin("Your session ended (12 hours passed, splitter restarted, or you signed out). Enter the admin token again.");
  }
});

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const field = $("token");
  if (!field.value) {
    field.setAttribute("aria-invalid", "true");
    message($("login-msg"), "Enter the admin token.", "error");
    field.focus();
    return;
  }
  const button = event.submitter || $("login-form").querySelector("button");
  button.disabled = true;
  const result = await signIn(field.value);
  field.value = ""; // the token goes no further than that request
  button.disabled = false;
  if (result.ok) {
    field.removeAttribute("aria-invalid");
    $("login").hidden = true;
    boot();
  } else {
    field.setAttribute("aria-invalid", "true");
    message($("login-msg"), result.message, "error");
    field.focus();
  }
});

$("signout").addEventListener("click", async () => {
  await signOut();
  showLogin("Signed out. Enter the admin token to sign in again.");
});

// -- loading ----------------------------------------------------------------------------

async function boot() {
  let session;
  try {
    session = await api("GET", "/api/v1/session");
  } catch (error) {
    if (error instanceof AuthRequired) {
      showLogin();
      return;
    }
    setConnection("down", "Unreachable");
    showBanner(`splitter's admin API does not answer: ${describeError(error)}. Trying again…`);
    setTimeout(boot, 2000);
    return;
  }
  state.session = Boolean(session && session.session);
  state.booted = true;
  $("signout").hidden = !state.session;
  $("login").hidden = true;
  $("board").hidden = false;
  showBanner("");
  await loadAll();
  stream.start();
}

async function loadAll() {
  try {
    const [routes, events] = await Promise.all([api("GET", "/api/v1/routes"), api("GET", "/api/v1/events")]);
    setRoutes(routes);
    state.events = [...events.events].reverse().slice(0, MAX_EVENTS);
  } catch (error) {
    if (!(error instanceof AuthRequired)) showBanner(`Could not load the state: ${describeError(error)}`);
    return;
  }
  await loadRoute();
}

/** Everything about the route shown. */
async function loadRoute() {
  const { route, generation } = state;
  if (route === null) return;
  try {
    const [pools, weights, stats, series] = await Promise.all([
      api("GET", routeUrl(route, "pools")),
      api("GET", routeUrl(route, "weights")),
      api("GET", routeUrl(route, "stats?window=10")),
      api("GET", routeUrl(route, `stats/series?seconds=${SECONDS}`)),
    ]);
    if (generation !== state.generation) return; // another route is shown now
    setPools(pools);
    state.weights = weights;
    state.seconds.clear();
    mergeSeries(series);
    state.stats = stats;
    renderAll();
  } catch (error) {
    if (generation !== state.generation) return;
    if (!(error instanceof AuthRequired)) showBanner(`Could not load the state: ${describeError(error)}`);
  }
  rollouts.load();
  shadow.load();
}

async function reloadPools() {
  const { route, generation } = state;
  if (route === null) return;
  try {
    const pools = await api("GET", routeUrl(route, "pools"));
    if (generation !== state.generation) return;
    setPools(pools);
    renderTraffic();
  } catch {
    // the next stats message tries again
  }
}

// -- routes -----------------------------------------------------------------------------

/** Take a new list of routes; the route shown is the address's when it names one of
 * them, else the one shown so far, else the first (an unknown name in the address is
 * replaced by the first's). True when the route shown changed. */
function setRoutes(routes) {
  state.routes = routes;
  const names = Object.keys(routes);
  const wanted = routeInAddress();
  let name;
  if (wanted !== null && routes[wanted]) name = wanted;
  else if (wanted === null && state.route !== null && routes[state.route]) name = state.route;
  else name = names.length ? names[0] : null;
  if (wanted !== null && name !== wanted && name !== null) history.replaceState(null, "", addressOf(name));
  const changed = name !== state.route;
  if (changed) showRoute(name);
  renderRoutes();
  return changed;
}

/** Show another route: forget what the page showed of the last one. */
function showRoute(name) {
  state.route = name;
  state.generation += 1;
  state.weights = (state.routes[name] && state.routes[name].weights) || {};
  state.stats = null;
  state.seconds.clear();
  state.lastSecond = 0;
  state.rollout = null;
  for (const id of ["weights-msg", "switch-msg"]) message($(id), "");
  $("switch-confirm").hidden = true;
  rollouts.setRoute(name);
  shadow.setRoute(name);
  // Its pools as the route list has them (in config order) until its own are read; the
  // forms are built anew, so nothing typed for the last route stays.
  state.pools = [];
  setPools(Object.fromEntries(Object.keys(state.weights).map((pool) => [pool, {}])));
}

function renderRoutes() {
  routeList.render(state.routes, state.route, state.routeRps);
  document.title = severalRoutes() ? `${state.route} · splitter` : "splitter";
}

let routesTimer;
let routesThenPools = false;

/** Read the routes again (soon: several messages at once make one call), then, with
 * `pools`, the pools of the route shown (once it is known to be still there). */
function refreshRoutes(pools = false) {
  routesThenPools = routesThenPools || pools;
  clearTimeout(routesTimer);
  routesTimer = setTimeout(async () => {
    const alsoPools = routesThenPools;
    routesThenPools = false;
    try {
      const before = Object.keys(state.routes).length;
      if (setRoutes(await api("GET", "/api/v1/routes"))) {
        renderAll();
        loadRoute();
        return;
      }
      if (before !== Object.keys(state.routes).length) renderEvents(0);
      if (alsoPools) reloadPools();
    } catch {
      // the next message tries again
    }
  }, 200);
}

window.addEventListener("hashchange", () => {
  // No route in the address (Back to where the page was opened without one): the first.
  const wanted = routeInAddress() ?? Object.keys(state.routes)[0];
  if (wanted === undefined || wanted === state.route || !state.booted) return;
  if (!state.routes[wanted]) {
    // unknown: the first route, and the address says so
    if (setRoutes(state.routes)) {
      renderAll();
      loadRoute();
    }
    return;
  }
  showRoute(wanted);
  renderRoutes();
  renderAll();
  announce(`Showing the route ${wanted}.`);
  loadRoute();
});

// The skip link moves the focus without taking the route out of the address.
document.querySelector(".skip").addEventListener("click", (event) => {
  event.preventDefault();
  $("main").focus();
});

function setPools(pools) {
  const names = Object.keys(pools);
  const changed = names.join("\n") !== state.pools.join("\n");
  state.poolInfo = pools;
  state.pools = names;
  if (changed) {
    buildWeightInputs();
    buildSwitch();
    rollouts.setPools(names);
  }
}

// -- stream handlers --------------------------------------------------------------------

const handlers = {
  stats(data) {
    if (data.route !== undefined && state.routes[data.route]) {
      state.routeRps[data.route] = Object.values(data.pools).reduce((sum, p) => sum + (p.rps || 0), 0);
      renderRoutes();
    }
    if (!shown(data)) return;
    const before = state.stats;
    state.stats = data;
    const names = Object.keys(data.pools).filter((n) => n !== "none" || state.pools.includes("none"));
    const known = names.filter((n) => data.pools[n].backends !== undefined);
    const upChanged =
      before &&
      known.some((n) => before.pools[n] && before.pools[n].backends_up !== data.pools[n].backends_up);
    if (upChanged || known.some((n) => !state.pools.includes(n) && data.pools[n].weight > 0)) reloadPools();
    renderTraffic();
    renderSummary();
  },
  series(data) {
    if (!shown(data)) return;
    mergeSeries(data);
    renderCharts();
  },
  weights(data) {
    // {"route": NAME, "weights": {...}}, one per route
    const { route, weights } = data;
    if (!state.routes[route]) {
      refreshRoutes(); // a route this page does not know yet (a reload added it)
      return;
    }
    state.routes[route] = { ...state.routes[route], weights };
    renderRoutes();
    if (route !== state.route) return;
    state.weights = weights;
    renderTraffic();
    renderSummary();
    updateWeightInputs();
  },
  event(entry) {
    state.events.unshift(entry);
    state.events.length = Math.min(state.events.length, MAX_EVENTS);
    renderEvents(1);
    const where = severalRoutes() && entry.route ? `${entry.route}: ` : "";
    announce(`${where}${entry.what} (${entry.source}). ${changeText(entry) || ""}`);
    if (/config|reload|file/i.test(entry.what) || entry.source === "file") refreshRoutes(shown(entry));
    if (/^shadow /.test(entry.what) && shown(entry)) shadow.load(); // before the next tick
  },
  rollout(data) {
    if (data.route !== undefined) {
      if (!state.routes[data.route]) {
        refreshRoutes();
        return;
      }
      state.routes[data.route] = { ...state.routes[data.route], rollout: data };
      renderRoutes();
    }
    if (shown(data)) rollouts.render(data);
  },
  shadow(data) {
    // the body of GET /api/v1/shadow with "route": each second, while the route has one
    if (shown(data)) shadow.render(data);
  },
};

function mergeSeries(series) {
  const { start, seconds, pools } = series;
  for (let i = 0; i < seconds; i += 1) {
    const row = {};
    for (const [name, values] of Object.entries(pools)) row[name] = [values.requests[i], values.errors[i]];
    state.seconds.set(start + i, row);
  }
  state.lastSecond = Math.max(state.lastSecond, start + seconds - 1);
  for (const second of state.seconds.keys()) {
    if (second <= state.lastSecond - SECONDS) state.seconds.delete(second);
  }
}

// -- rendering --------------------------------------------------------------------------

function renderAll() {
  renderTraffic();
  renderSummary();
  updateWeightInputs();
  renderCharts();
  renderEvents(0);
}

function configuredShares() {
  const weights = {};
  for (const name of state.pools) weights[name] = Number(state.weights[name] ?? 0);
  return shares(weights);
}

function fillBar(bar, parts, label) {
  const shown = parts.filter((p) => p.share > 0);
  bar.classList.toggle("empty", shown.length === 0);
  bar.replaceChildren(
    ...shown.map((p) => {
      const seg = el("div", { className: "seg", color: color(p.name), title: `${p.name} ${percent(p.share)}` });
      seg.style.flexGrow = String(p.share);
      if (p.share >= 0.09) seg.append(el("span", {}, `${p.name} ${percent(p.share, 0)}`));
      return seg;
    }),
  );
  const text = shown.length ? shown.map((p) => `${p.name} ${percent(p.share)}`).join(", ") : "no requests";
  bar.setAttribute("aria-label", `${label}: ${text}`);
}

function renderTraffic() {
  const stats = state.stats;
  const configured = configuredShares();
  fillBar(
    $("bar-configured"),
    state.pools.map((name) => ({ name, share: configured[name] })),
    "Configured",
  );
  const pools = stats ? stats.pools : {};
  fillBar(
    $("bar-actual"),
    state.pools.map((name) => ({ name, share: pools[name] ? pools[name].share || 0 : 0 })),
    "Actual, last 10 s",
  );
  $("traffic-when").textContent = stats ? `last ${stats.window} s · as of ${clock(stats.at)}` : "";

  const rows = [];
  const names = [...state.pools, ...Object.keys(pools).filter((n) => !state.pools.includes(n))];
  for (const name of names) {
    const p = pools[name];
    if (name === "none" && !state.pools.includes("none")) {
      if (!p) continue;
      rows.push(
        el(
          "tr",
          { className: "refused" },
          el("th", { scope: "row" }, el("span", { className: "pool-name" }, el("span", { className: "swatch", color: color(name) }), "refused"), el("span", { className: "sub" }, "before a pool was chosen")),
          el("td", { className: "num", "data-label": "Weight" }, "–"),
          el("td", { className: "num", "data-label": "Share" }, "–"),
          el("td", { className: "num", "data-label": "Req/s" }, rate(p.rps)),
          el("td", { className: "num", "data-label": "Errors" }, percent(p.error_rate, 2)),
          el("td", { className: "num", "data-label": "p50" }, ms(p.p50_ms)),
          el("td", { className: "num", "data-label": "p99" }, ms(p.p99_ms)),
          el("td", { className: "num", "data-label": "Backends" }, "–"),
        ),
      );
      continue;
    }
    const w = state.weights[name] ?? (p ? p.weight : 0);
    const share = p ? p.share : null;
    const requests = p ? p.requests : 0;
    const off =
      share !== null && requests >= 200 && configured[name] !== undefined && Math.abs(share - configured[name]) >= 0.05
        ? Math.round(Math.abs(share - configured[name]) * 100)
        : 0;
    const errorRate = p ? p.error_rate : null;
    const errorClass = errorRate >= 0.05 ? "bad" : errorRate >= 0.01 ? "warn" : "";
    const up = p ? p.backends_up : 0;
    const total = p ? p.backends : 0;
    const upClass = total && up === 0 ? "bad" : up < total ? "warn" : "ok";
    rows.push(
      el(
        "tr",
        {},
        el("th", { scope: "row" }, el("span", { className: "pool-name" }, el("span", { className: "swatch", color: color(name) }), name)),
        el("td", { className: "num", "data-label": "Weight" }, weight(w), el("span", { className: "sub" }, percent(configured[name] ?? 0))),
        el(
          "td",
          { className: "num", "data-label": "Share" },
          percent(share),
          off ? el("span", { className: "off" }, `${off} pts off`) : null,
        ),
        el("td", { className: "num", "data-label": "Req/s" }, rate(p ? p.rps : null)),
        el(
          "td",
          { className: `num ${errorClass}`, "data-label": "Errors" },
          percent(errorRate, 2),
          errorClass ? el("span", { className: "visually-hidden" }, errorClass === "bad" ? " (high)" : " (elevated)") : null,
        ),
        el("td", { className: "num", "data-label": "p50" }, ms(p ? p.p50_ms : null)),
        el("td", { className: "num", "data-label": "p99" }, ms(p ? p.p99_ms : null)),
        el("td", { className: `num ${upClass}`, "data-label": "Backends" }, total ? `${up}/${total} up` : "–"),
      ),
    );
  }
  $("pool-rows").replaceChildren(...rows);

  const down = [];
  for (const [name, info] of Object.entries(state.poolInfo)) {
    for (const b of info.backends || []) if (!b.up) down.push(`${name} ${b.url}`);
  }
  $("backends-down").textContent = down.length ? `Down: ${down.join(", ")}` : "";
  $("backends-down").className = down.length ? "hint bad" : "hint";
}

function setTile(id, value, note, level) {
  $(`sum-${id}`).textContent = value;
  $(`sum-${id}-note`).textContent = note;
  $(`tile-${id}`).dataset.level = level || "";
}

function renderSummary() {
  const pools = state.stats ? state.stats.pools : {};
  let rps = 0;
  let requests = 0;
  let errors = 0;
  let worst = null;
  let up = 0;
  let total = 0;
  const starved = [];
  for (const [name, p] of Object.entries(pools)) {
    rps += p.rps || 0;
    if (p.backends === undefined) continue;
    requests += p.requests;
    errors += (p.error_rate || 0) * p.requests;
    if (p.error_rate !== null && p.requests > 0 && (!worst || p.error_rate > worst.rate)) worst = { name, rate: p.error_rate };
    up += p.backends_up;
    total += p.backends;
    if (p.backends_up === 0 && Number(state.weights[name] ?? p.weight) > 0) starved.push(name);
  }
  setTile("rps", rate(rps), state.stats ? `last ${state.stats.window} s` : "", "");
  const overall = requests ? errors / requests : null;
  setTile(
    "errors",
    percent(overall, 2),
    worst && worst.rate > 0 ? `worst: ${worst.name} ${percent(worst.rate, 2)}` : requests ? "none in the last 10 s" : "no requests",
    overall === null ? "" : overall >= 0.05 || (worst && worst.rate >= 0.05) ? "bad" : overall >= 0.01 || (worst && worst.rate >= 0.01) ? "warn" : "ok",
  );
  setTile(
    "backends",
    total ? `${up} of ${total}` : "–",
    starved.length ? `no live backend: ${starved.join(", ")}` : up < total ? "some are down" : "all up",
    starved.length ? "bad" : up < total ? "warn" : total ? "ok" : "",
  );
  renderRolloutTile();
}

function renderRolloutTile() {
  const r = state.rollout;
  if (!r) {
    setTile("rollout", "none", "no rollout has run", "");
    return;
  }
  const steps = r.strategy === "bluegreen" ? 2 : Array.isArray(r.steps) ? r.steps.length : 0;
  const active = isActive(r);
  const tone = statusTone(r.status);
  setTile(
    "rollout",
    statusText(r.status),
    active && steps ? `${r.pool}: step ${Math.min((r.step ?? 0) + 1, steps)} of ${steps}` : r.pool,
    tone === "bad" ? "bad" : tone === "warn" ? "warn" : tone === "ok" ? "ok" : "",
  );
}

const SMOOTH = 10; // seconds: the error rate is charted over a moving window, like the table

function renderCharts() {
  const end = state.lastSecond;
  const names = state.pools;
  const at = (i, name, which) => {
    const row = state.seconds.get(end - SECONDS + 1 + i);
    return row ? (row[name] ? row[name][which] : 0) : null;
  };
  const rps = names.map((name) => {
    const values = new Array(SECONDS);
    for (let i = 0; i < SECONDS; i += 1) values[i] = at(i, name, 0);
    return { name, color: color(name), values };
  });
  const errorRate = names.map((name) => {
    const values = new Array(SECONDS);
    for (let i = 0; i < SECONDS; i += 1) {
      let requests = 0;
      let errors = 0;
      let known = false;
      for (let j = Math.max(0, i - SMOOTH + 1); j <= i; j += 1) {
        const r = at(j, name, 0);
        if (r === null) continue;
        known = true;
        requests += r;
        errors += at(j, name, 1);
      }
      values[i] = known && requests > 0 ? (100 * errors) / requests : known ? 0 : null;
    }
    return { name, color: color(name), values };
  });
  charts.rps.update(rps, SECONDS);
  charts.errors.update(errorRate, SECONDS);
  const last = (s) => {
    for (let i = s.values.length - 1; i >= 0; i -= 1) if (s.values[i] !== null) return s.values[i];
    return null;
  };
  const peak = (s) => Math.max(0, ...s.values.filter((v) => v !== null));
  $("chart-rps-summary").textContent = rps
    .map((s) => `${s.name} ${rate(last(s))}/s now, peak ${rate(peak(s))}`)
    .join(" · ");
  $("chart-errors-summary").textContent = errorRate
    .map((s) => `${s.name} ${percent(last(s) === null ? null : last(s) / 100, 1)} now, peak ${percent(peak(s) / 100, 1)}`)
    .join(" · ");
  $("legend").replaceChildren(
    ...names.map((name) => el("li", {}, el("span", { className: "swatch", color: color(name) }), name)),
  );
}

function changeText(entry) {
  const old = entry.old || {};
  const now = entry.new || {};
  const parts = [];
  for (const name of Object.keys({ ...old, ...now })) {
    if (old[name] !== now[name]) parts.push(`${name} ${weight(old[name] ?? 0)} → ${weight(now[name] ?? 0)}`);
  }
  return parts.join(", ");
}

function renderEvents(fresh) {
  const several = severalRoutes();
  const items = state.events.map((entry, i) =>
    el(
      "li",
      { className: i < fresh ? "fresh" : "" },
      el("time", { datetime: entry.time }, clock(entry.time)),
      el("span", { className: "source" }, entry.source),
      el(
        "span",
        { className: "what" },
        several && entry.route ? el("span", { className: "route-tag" }, entry.route) : null,
        entry.what,
      ),
      changeText(entry) ? el("span", { className: "change" }, changeText(entry)) : null,
    ),
  );
  $("events").replaceChildren(...items);
  $("events-empty").hidden = items.length > 0;
}

// -- weights form -----------------------------------------------------------------------

function weightInput(name) {
  return document.querySelector(`#weight-inputs input[data-pool="${CSS.escape(name)}"]`);
}

function buildWeightInputs() {
  $("weight-inputs").replaceChildren(
    ...state.pools.map((name, i) =>
      el(
        "div",
        { className: "weight-row" },
        el("label", { for: `w-${i}` }, el("span", { className: "swatch", color: color(name) }), name),
        el("input", {
          id: `w-${i}`,
          type: "number",
          min: 0,
          max: MAX_WEIGHT,
          step: "any",
          inputmode: "decimal",
          "data-pool": name,
          "aria-describedby": `w-${i}-now`,
          required: true,
        }),
        el("p", { className: "now", id: `w-${i}-now` }),
      ),
    ),
  );
  for (const input of $("weight-inputs").querySelectorAll("input")) {
    input.addEventListener("input", () => {
      input.dataset.dirty = "1";
      input.removeAttribute("aria-invalid");
      renderPreview();
    });
  }
  updateWeightInputs();
}

function updateWeightInputs() {
  const configured = configuredShares();
  state.pools.forEach((name, i) => {
    const input = weightInput(name);
    if (!input) return;
    const current = state.weights[name] ?? 0;
    if (!input.dataset.dirty) input.value = String(current);
    $(`w-${i}-now`).textContent = `in force: ${weight(current)} (${percent(configured[name] ?? 0)})`;
  });
  renderPreview();
}

/** The weights the form would set: {weights, errors: [input...]}. */
function formWeights() {
  const weights = {};
  const errors = [];
  for (const name of state.pools) {
    const input = weightInput(name);
    const raw = input ? input.value.trim() : "";
    const value = Number(raw);
    if (raw === "" || !Number.isFinite(value) || value < 0 || value > MAX_WEIGHT) {
      errors.push(input);
      weights[name] = Number(state.weights[name] ?? 0);
    } else {
      weights[name] = value;
    }
  }
  return { weights, errors };
}

function renderPreview() {
  const { weights } = formWeights();
  const next = shares(weights);
  const now = configuredShares();
  fillBar(
    $("bar-preview"),
    state.pools.map((name) => ({ name, share: next[name] })),
    "Resulting split",
  );
  $("preview-list").replaceChildren(
    ...state.pools.map((name) => {
      const changed = Math.abs((next[name] ?? 0) - (now[name] ?? 0)) > 1e-9;
      return el(
        "li",
        { className: changed ? "changed" : "" },
        el("span", { className: "swatch", color: color(name) }),
        `${name} ${percent(next[name] ?? 0)}`,
        changed ? ` (now ${percent(now[name] ?? 0)})` : "",
      );
    }),
  );
  const total = Object.values(weights).reduce((a, b) => a + b, 0);
  $("weights-apply").disabled = false;
  if (total <= 0) $("preview-list").append(el("li", { className: "bad" }, "Every weight is 0: at least one pool must keep a weight above 0."));
}

$("weights-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const out = $("weights-msg");
  const { weights, errors } = formWeights();
  for (const input of $("weight-inputs").querySelectorAll("input")) input.removeAttribute("aria-invalid");
  if (errors.length) {
    for (const input of errors) input.setAttribute("aria-invalid", "true");
    message(out, `Each weight is a number from 0 to 1,000,000: check ${errors.map((i) => i.dataset.pool).join(", ")}.`, "error");
    errors[0].focus();
    return;
  }
  if (!Object.values(weights).some((w) => w > 0)) {
    message(out, "At least one pool must keep a weight above 0.", "error");
    return;
  }
  const changes = {};
  for (const [name, w] of Object.entries(weights)) if (w !== Number(state.weights[name] ?? 0)) changes[name] = w;
  if (!Object.keys(changes).length) {
    message(out, "Nothing to change: these are the weights in force.", "");
    return;
  }
  const button = $("weights-apply");
  button.setAttribute("aria-busy", "true");
  const { route, generation } = state;
  try {
    const result = await api("PUT", routeUrl(route, "weights"), changes);
    if (generation !== state.generation) return; // another route is shown now
    state.weights = result;
    state.routes[route] = { ...state.routes[route], weights: result };
    renderRoutes();
    for (const input of $("weight-inputs").querySelectorAll("input")) delete input.dataset.dirty;
    updateWeightInputs();
    renderTraffic();
    const text = Object.entries(changes).map(([n, w]) => `${n} ${weight(w)}`).join(", ");
    message(out, `Applied at ${clock(new Date())}: ${text}.`, "ok");
  } catch (error) {
    if (generation === state.generation && !(error instanceof AuthRequired)) message(out, `Not applied: ${describeError(error)}`, "error");
  } finally {
    button.removeAttribute("aria-busy");
  }
});

$("weights-reset").addEventListener("click", () => {
  for (const input of $("weight-inputs").querySelectorAll("input")) {
    delete input.dataset.dirty;
    input.removeAttribute("aria-invalid");
  }
  updateWeightInputs();
  message($("weights-msg"), "");
});

// -- switch and reload ------------------------------------------------------------------

function buildSwitch() {
  const select = $("switch-pool");
  const chosen = select.value;
  select.replaceChildren(...state.pools.map((name) => el("option", { value: name }, name)));
  if (state.pools.includes(chosen)) select.value = chosen;
}

$("switch-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const pool = $("switch-pool").value;
  if (!pool) return;
  $("switch-confirm-text").textContent = `Send all traffic to ${pool}? ${pool} gets weight 100 and every other pool 0; everyone moves at once.`;
  $("switch-yes").textContent = `Switch to ${pool}`;
  $("switch-confirm").hidden = false;
  $("switch-yes").focus();
});

$("switch-no").addEventListener("click", () => {
  $("switch-confirm").hidden = true;
  $("switch-go").focus();
});

$("switch-yes").addEventListener("click", async () => {
  const pool = $("switch-pool").value;
  $("switch-confirm").hidden = true;
  const out = $("switch-msg");
  const { route, generation } = state;
  try {
    const result = await api("POST", routeUrl(route, "switch"), { pool });
    if (generation !== state.generation) return;
    state.weights = result.weights;
    updateWeightInputs();
    renderTraffic();
    const before = Object.entries(result.previous).map(([n, w]) => `${n} ${weight(w)}`).join(", ");
    message(out, `All traffic to ${pool} at ${clock(new Date())} (before: ${before}).`, "ok");
  } catch (error) {
    if (generation === state.generation && !(error instanceof AuthRequired)) message(out, `Not switched: ${describeError(error)}`, "error");
  }
  $("switch-go").focus();
});

$("reload").addEventListener("click", async () => {
  const out = $("reload-msg");
  const button = $("reload");
  button.setAttribute("aria-busy", "true");
  try {
    await api("POST", "/api/v1/reload");
    message(out, `Config reloaded at ${clock(new Date())}.`, "ok");
    refreshRoutes(true);
  } catch (error) {
    if (error instanceof AuthRequired) return;
    const lines = error.body && Array.isArray(error.body.errors) ? error.body.errors : [];
    message(
      out,
      [`Not reloaded: ${describeError(error)}. The config in force is unchanged.`, lines.length ? el("ul", {}, ...lines.map((l) => el("li", {}, l))) : null].filter(Boolean),
      "error",
    );
  } finally {
    button.removeAttribute("aria-busy");
  }
});

// -- start ------------------------------------------------------------------------------

const charts = {
  rps: new LineChart($("chart-rps"), { labelledBy: "chart-rps-title chart-rps-summary", format: (v) => rate(v) }),
  errors: new LineChart($("chart-errors"), {
    labelledBy: "chart-errors-title chart-errors-summary",
    format: (v) => `${Number(v.toPrecision(3))}%`,
    floor: 1,
  }),
};

const routeList = new RouteList();

const shadow = new ShadowPanel();

const rollouts = new RolloutPanel({
  announce: (text) => announce(text),
  onChange: (rollout) => {
    state.rollout = rollout;
    renderRolloutTile();
  },
});

$("where").textContent = location.host;
boot();
