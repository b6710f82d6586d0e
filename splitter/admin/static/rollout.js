// The rollout panel (docs/rollouts.md): the active or last rollout of the route shown, its
// controls, and the form that starts one.

import { api, ApiFailure, AuthRequired, routeUrl } from "./api.js";
import { clock, count, dateTime, el, message, percent } from "./format.js";

const $ = (id) => document.getElementById(id);

const STATUS_TONE = { progressing: "", paused: "warn", promoted: "ok", rolled_back: "bad", cancelled: "" };
const VERDICT_TONE = { pending: "", pass: "ok", fail: "bad", inconclusive: "warn" };
const STATUS_TEXT = {
  progressing: "progressing",
  paused: "paused",
  promoted: "promoted",
  rolled_back: "rolled back",
  cancelled: "cancelled",
};

export function isActive(rollout) {
  return Boolean(rollout) && (rollout.status === "progressing" || rollout.status === "paused");
}

export function statusText(status) {
  return STATUS_TEXT[status] || String(status || "");
}

export function statusTone(status) {
  return STATUS_TONE[status] || "";
}

function stepLabel(step, strategy, index) {
  if (strategy === "bluegreen") return index === 0 ? "preview" : "switch, keep";
  if (step && step.pause) return "pause";
  if (step && step.shadow) return `shadow ${Math.round((step.shadow.share || 0) * 1000) / 10}%`;
  if (step && typeof step.weight === "number") return `${step.weight}%`;
  return `step ${index + 1}`;
}

/** The steps of a rollout as shown: blue-green has two (preview, keep). */
function shownSteps(rollout) {
  if (rollout.strategy === "bluegreen") return [{}, {}];
  return Array.isArray(rollout.steps) ? rollout.steps : [];
}

/** While `analysis.warmup_until` is ahead, the step's requests are not judged yet. */
function warmupText(until) {
  const left = Math.ceil((new Date(until).getTime() - Date.now()) / 1000);
  return until && left > 0 ? `· warming up until ${clock(until)} (${left} s left)` : "";
}

export class RolloutPanel {
  /** @param {{announce: (text: string) => void, onChange: (rollout: object|null) => void}} hooks */
  constructor(hooks) {
    this.hooks = hooks;
    this.rollout = null;
    this.route = null; // the route shown: every call is about its rollout
    this.pools = [];
    this.warmupTimer = undefined; // the warmup countdown, while one runs
    $("ro-promote").addEventListener("click", () => this.control("promote", $("ro-full").checked ? { full: true } : undefined));
    $("ro-pause").addEventListener("click", () => this.control("pause"));
    $("ro-resume").addEventListener("click", () => this.control("resume"));
    $("ro-abort").addEventListener("click", () => {
      $("ro-abort-confirm").hidden = false;
      $("ro-abort-yes").focus();
    });
    $("ro-abort-no").addEventListener("click", () => {
      $("ro-abort-confirm").hidden = true;
      $("ro-abort").focus();
    });
    $("ro-abort-yes").addEventListener("click", () => {
      $("ro-abort-confirm").hidden = true;
      this.control("abort");
    });
    for (const radio of document.querySelectorAll('#ro-form input[name="strategy"]')) {
      radio.addEventListener("change", () => this.showStrategy());
    }
    $("ro-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.start();
    });
  }

  /** Show another route's rollout: forget this one's until `load` reads the other's. */
  setRoute(name) {
    this.route = name;
    for (const id of ["ro-msg", "ro-form-msg"]) message($(id), "");
    $("ro-abort-confirm").hidden = true;
    this.render(null);
  }

  setPools(names) {
    this.pools = names;
    const select = $("ro-form-pool");
    const chosen = select.value;
    select.replaceChildren(...names.map((name) => el("option", { value: name }, name)));
    if (names.includes(chosen)) select.value = chosen;
    else if (names.includes("canary")) select.value = "canary";
  }

  showStrategy() {
    const blueGreen = $("ro-bluegreen").checked;
    $("ro-canary-fields").hidden = blueGreen;
    $("ro-bluegreen-fields").hidden = !blueGreen;
  }

  /** Show a rollout object (or null: none has run). */
  render(rollout) {
    const previous = this.rollout;
    this.rollout = rollout;
    const badge = $("ro-status");
    $("ro-none").hidden = Boolean(rollout);
    $("ro-current").hidden = !rollout;
    $("ro-start").hidden = isActive(rollout);
    if (!rollout) {
      badge.hidden = true;
      this.hooks.onChange(null);
      return;
    }
    badge.hidden = false;
    badge.textContent = statusText(rollout.status);
    badge.dataset.tone = statusTone(rollout.status);
    $("ro-pool").textContent = rollout.pool;
    $("ro-strategy").textContent = rollout.strategy === "bluegreen" ? "· blue-green strategy" : "· canary strategy";
    $("ro-reason").textContent = rollout.reason || "";

    const steps = shownSteps(rollout);
    const index = typeof rollout.step === "number" ? rollout.step : -1;
    const ended = !isActive(rollout);
    $("ro-step").textContent = steps.length
      ? ended
        ? `${steps.length} steps · ${statusText(rollout.status)}`
        : `Step ${Math.min(index + 1, steps.length)} of ${steps.length}`
      : "";
    $("ro-steps").replaceChildren(
      ...steps.map((step, i) => {
        const done = (ended && rollout.status === "promoted") || i < index;
        const current = !ended && i === index;
        return el(
          "li",
          { className: done ? "done" : current ? "current" : "", "aria-current": current ? "step" : null },
          stepLabel(step, rollout.strategy, i),
          done ? el("span", { className: "visually-hidden" }, " (done)") : null,
        );
      }),
    );

    const analysis = rollout.analysis || {};
    const verdict = $("ro-verdict");
    verdict.textContent = analysis.verdict || "pending";
    verdict.dataset.tone = VERDICT_TONE[analysis.verdict] || "";
    const needed = analysis.needed_requests;
    $("ro-needed").textContent =
      !ended && typeof needed === "number" && needed > 0 ? `· about ${count(needed)} more candidate requests for a verdict` : "";
    const row = (label, c) => {
      const requests = c && typeof c.requests === "number" ? c.requests : null;
      const part = (n) => (n === null || n === undefined ? "–" : requests ? `${count(n)} (${percent(n / requests)})` : count(n));
      return el(
        "tr",
        {},
        el("th", { scope: "row" }, label),
        el("td", { className: "num" }, count(requests)),
        el("td", { className: "num" }, part(c ? c.bad : null)),
        el("td", { className: "num" }, part(c ? c.slow : null)),
      );
    };
    const shadow = analysis.kind === "shadow" ? analysis.shadow : null;
    if (shadow) {
      // The test step: the candidate's copies against the primary on the same requests.
      const copies = { requests: shadow.pairs, bad: shadow.shadow_bad, slow: null };
      const primary = { requests: shadow.pairs, bad: shadow.primary_bad, slow: null };
      $("ro-counts").replaceChildren(row("Copies", copies), row("Primary", primary));
      $("ro-needed").textContent = ended
        ? ""
        : `· differs on ${count(shadow.differ)} of ${count(shadow.compared)} copies compared`;
    } else {
      $("ro-counts").replaceChildren(row("Candidate", analysis.candidate), row("Baseline", analysis.baseline));
    }
    // Counted down here: the stream sends nothing while the warmup keeps the analysis still.
    clearInterval(this.warmupTimer);
    const warmup = () => {
      $("ro-warmup").textContent = ended ? "" : warmupText(analysis.warmup_until);
      if (!$("ro-warmup").textContent) clearInterval(this.warmupTimer);
    };
    this.warmupTimer = setInterval(warmup, 1000);
    warmup();
    $("ro-times").textContent = [
      rollout.started_at ? `started ${dateTime(rollout.started_at)}` : "",
      rollout.step_started_at && !ended ? `this step since ${clock(rollout.step_started_at)}` : "",
      rollout.updated_at ? `updated ${clock(rollout.updated_at)}` : "",
    ]
      .filter(Boolean)
      .join(" · ");

    const status = rollout.status;
    $("ro-buttons").hidden = ended;
    $("ro-full-row").hidden = ended;
    $("ro-promote").disabled = ended;
    $("ro-pause").disabled = status !== "progressing";
    $("ro-resume").disabled = status !== "paused";
    $("ro-abort").disabled = ended;
    if (ended) $("ro-abort-confirm").hidden = true;

    const history = Array.isArray(rollout.history) ? [...rollout.history].reverse() : [];
    $("ro-history").replaceChildren(
      ...history.map((h) =>
        el("li", {}, el("time", { datetime: h.at }, clock(h.at)), el("strong", {}, h.what), h.detail ? ` ${h.detail}` : ""),
      ),
    );

    if (previous && previous.id === rollout.id && previous.status !== rollout.status) {
      this.hooks.announce(`Rollout of ${rollout.pool}: ${statusText(rollout.status)}. ${rollout.reason || ""}`);
    } else if (previous && previous.id === rollout.id && previous.step !== rollout.step) {
      this.hooks.announce(`Rollout of ${rollout.pool}: ${$("ro-step").textContent}.`);
    }
    this.hooks.onChange(rollout);
  }

  /** The route's active or last rollout: the newest of GET .../rollouts (which, unlike
   * GET .../rollout, is not a 404 before the first rollout). */
  async load() {
    const route = this.route;
    try {
      const answer = await api("GET", routeUrl(route, "rollouts"));
      if (route !== this.route) return; // another route is shown now
      const list = Array.isArray(answer) ? answer : (answer && answer.rollouts) || [];
      this.render(list.length ? list[0] : null);
    } catch (error) {
      if (route !== this.route) return;
      if (error instanceof ApiFailure && error.status === 404) this.render(null);
      else if (!(error instanceof AuthRequired)) message($("ro-msg"), `Could not read the rollout: ${error.message}`, "error");
    }
  }

  async control(action, body) {
    const out = $("ro-msg");
    const button = $(`ro-${action}`);
    if (button) button.setAttribute("aria-busy", "true");
    const route = this.route;
    try {
      const rollout = await api("POST", routeUrl(route, `rollout/${action}`), body);
      if (route !== this.route) return;
      this.render(rollout);
      message(out, `${action[0].toUpperCase()}${action.slice(1)}: done at ${clock(new Date())}. Status ${statusText(rollout.status)}.`, "ok");
    } catch (error) {
      if (route === this.route && !(error instanceof AuthRequired)) message(out, `${action} failed: ${error.message}`, "error");
    } finally {
      if (button) button.removeAttribute("aria-busy");
    }
  }

  /** The body of POST .../rollout from the form, or an error message. */
  body() {
    const pool = $("ro-form-pool").value;
    if (!pool) return { error: "Choose a pool." };
    if ($("ro-bluegreen").checked) {
      const body = { pool, strategy: "bluegreen", auto_promote: $("ro-auto").checked };
      const keep = $("ro-keep").value.trim();
      const hold = $("ro-preview-hold").value.trim();
      if (keep) body.keep = keep;
      if (hold) body.preview = { hold };
      return { body };
    }
    const words = $("ro-steps-input").value.split(/[\s,]+/).filter(Boolean);
    const hold = $("ro-hold").value.trim();
    const max = $("ro-max").value.trim();
    const steps = [];
    let last = 0;
    for (const word of words) {
      if (word.toLowerCase() === "pause") {
        steps.push({ pause: true });
        continue;
      }
      const weight = Number(word.replace(/%$/, ""));
      if (!Number.isFinite(weight) || weight <= 0 || weight > 100) {
        return { error: `Steps: "${word}" is not a percentage above 0 and at most 100.`, field: "ro-steps-input" };
      }
      if (weight <= last) return { error: "Steps must rise.", field: "ro-steps-input" };
      last = weight;
      const step = { weight };
      if (hold) step.hold = hold;
      if (max) step.max = max;
      steps.push(step);
    }
    const body = { pool, strategy: "canary" };
    if (steps.length) body.steps = steps;
    return { body };
  }

  async start() {
    const out = $("ro-form-msg");
    const stepsField = $("ro-steps-input");
    stepsField.removeAttribute("aria-invalid");
    const { body, error, field } = this.body();
    if (error) {
      if (field) {
        $(field).setAttribute("aria-invalid", "true");
        $(field).focus();
      }
      message(out, error, "error");
      return;
    }
    const button = $("ro-start-go");
    button.disabled = true;
    const route = this.route;
    try {
      const rollout = await api("POST", routeUrl(route, "rollout"), body);
      if (route !== this.route) return;
      message(out, `Started at ${clock(new Date())}.`, "ok");
      this.render(rollout);
      message($("ro-msg"), `Rollout of ${rollout.pool} started.`, "ok");
      $("rollout-title").focus();
    } catch (failure) {
      if (route === this.route && !(failure instanceof AuthRequired)) message(out, `Not started: ${failure.message}`, "error");
    } finally {
      button.disabled = false;
    }
  }
}
