// The triggers view, for admins: the hooks (what they match, whose agents they make, where
// their secret is), the schedules (their ticks and which replica fired the last), the recent
// deliveries in and out with their outcome, and the notifications that never arrived. It is
// read from GET /hooks, /schedules, /triggers/deliveries and /triggers/dead-letters, again
// every few seconds while it is shown. Everything goes in as text (dom.js's el).

import { ApiError } from "./api.js";
import { age, el, showError, sleep } from "./dom.js";

const POLL_MS = 3000;
const DELIVERIES = 50;

/** A hook's match rules in one line: "events: issues · labels: agent · when: ...", or "any event". */
export function matchSummary(match) {
  const parts = [];
  for (const [name, label] of [["events", "events"], ["repositories", "repos"], ["actions", "actions"],
                               ["labels", "labels"]]) {
    const values = (match && match[name]) || [];
    if (values.length) parts.push(`${label}: ${values.join(", ")}`);
  }
  if (match && match.when) parts.push(`when: ${match.when}`);
  return parts.length ? parts.join(" · ") : "any event";
}

/** Whose agents a trigger makes, and of what: "alice · profile claude-big · session gh". */
export function runSummary(trigger) {
  const parts = [trigger.owner ? `owner ${trigger.owner}` : "no owner"];
  if (trigger.profile) parts.push(`profile ${trigger.profile}`);
  else if (trigger.agent) parts.push(`agent ${trigger.agent}`);
  if (trigger.session) parts.push(`session ${trigger.session}`);
  return parts.join(" · ");
}

/** A delivery's outcome, as the server counts it in /metrics (its `outcome`; else worked out the
 * same way: a hook's HTTP status, a tick's first word, a notification's delivered or dead). */
export function outcomeOf(record) {
  if (record.outcome) return String(record.outcome);
  if (record.kind === "hook") return String(record.status);
  if (record.kind === "notification") return record.dead ? "dead" : "delivered";
  return String(record.result || "").split(" ", 1)[0].replace(/:$/, "") || "unknown";
}

/** Whether an outcome is a failure: a hook's 4xx/5xx, a dead notification, a failed tick. */
export function failed(record) {
  const outcome = outcomeOf(record);
  return outcome === "dead" || outcome === "failed" || /^[45]\d\d$/.test(outcome);
}

/** The agent a delivery made or spoke of: a hook's and a notification's `agent`; a tick's is named in
 * its result ("created ID", "created ID, replaced ..."). */
export function agentOf(record) {
  if (record.agent) return String(record.agent);
  const made = record.kind === "schedule" && /^created ([^\s,]+)/.exec(String(record.result || ""));
  return made ? made[1] : "";
}

/** The words of a delivery beyond its outcome: a notification's kind and error, a hook's or a tick's result. */
export function details(record) {
  if (record.kind === "notification") {
    return [record.type, record.error, record.attempts > 1 ? `${record.attempts} attempts` : ""]
      .filter(Boolean).join(": ");
  }
  return [record.result, record.error].filter(Boolean).join(": ");
}

function time(iso) {
  if (!iso) return el("span", { class: "hint", text: "—" });
  return el("time", { datetime: iso, title: iso, text: `${iso.replace("T", " ").replace(/\.\d+/, "").replace("+00:00", "Z")}` });
}

function when(seconds) {
  if (seconds === undefined || seconds === null) return el("span", { class: "hint", text: "—" });
  const iso = new Date(seconds * 1000).toISOString();
  return el("time", { datetime: iso, title: iso, text: `${age(iso)} ago` });
}

function table(columns, rows, empty) {
  if (!rows.length) return el("p", { class: "empty", text: empty });
  return el("table", { class: "trigger-table" },
    el("thead", {}, el("tr", {}, ...columns.map((name) => el("th", { scope: "col", text: name })))),
    el("tbody", {}, ...rows));
}

function cell(text, props = {}) {
  return el("td", { ...props, text: text === undefined || text === null || text === "" ? "—" : text });
}

export function hookRows(hooks) {
  return hooks.map((hook) => el("tr", { dataset: { hook: hook.id } },
    cell(hook.id, { class: "mono" }),
    cell(`${hook.scheme}`),
    cell(matchSummary(hook.match), { class: "wrap" }),
    cell(runSummary(hook), { class: "wrap" }),
    cell(hook.secret, { class: "mono" }),
    cell([hook.reuse && hook.reuse !== "none" ? `reuse: ${hook.reuse}` : "", hook.max_running ? `max ${hook.max_running} running` : ""]
      .filter(Boolean).join(", "))));
}

export function scheduleRows(schedules) {
  return schedules.map((schedule) => {
    const claim = schedule.claim;
    return el("tr", { dataset: { schedule: schedule.id } },
      cell(schedule.id, { class: "mono" }),
      cell(schedule.cron, { class: "mono" }),
      cell(schedule.timezone),
      el("td", {}, time(schedule.last_tick)),
      el("td", {}, time(schedule.next_tick)),
      cell(String(schedule.missed ?? 0)),
      cell(claim ? `${claim.by}${claim.done ? "" : " (run not made yet)"}` : "", { class: "mono" }),
      cell(runSummary(schedule), { class: "wrap" }),
      cell(schedule.overlap));
  });
}

export function deliveryRows(deliveries) {
  return deliveries.map((record) => el("tr", { class: failed(record) ? "failed" : "", dataset: { kind: record.kind } },
    el("td", {}, when(record.at)),
    cell(record.kind),
    cell(record.name, { class: "mono" }),
    el("td", {}, el("span", { class: `badge outcome${failed(record) ? " outcome-failed" : ""}`, text: outcomeOf(record) })),
    cell(agentOf(record), { class: "mono" }),
    cell(details(record), { class: "wrap" })));
}

export function deadLetterRows(letters) {
  return letters.map((letter) => el("tr", { class: "failed" },
    el("td", {}, when(letter.at)),
    cell(letter.name, { class: "mono" }),
    cell(letter.type),
    cell(letter.agent, { class: "mono" }),
    cell(String(letter.attempts ?? "")),
    cell(letter.error, { class: "wrap" })));
}

export class TriggersView {
  /** `nodes`: {hooks, schedules, deliveries, deadLetters (containers), status, error}. */
  constructor(api, nodes) {
    this.api = api;
    this.nodes = nodes;
    this.controller = null;
  }

  /** Whether the caller may see the triggers: GET /hooks answers (403 for others, 404 when the
   * server has no triggers). */
  async allowed() {
    try {
      await this.api.request("GET", "/hooks");
      return true;
    } catch (err) {
      return false;
    }
  }

  /** Read and draw the view now, and again every few seconds until stop(). */
  start() {
    this.stop();
    this.controller = new AbortController();
    this.poll(this.controller.signal);
  }

  stop() {
    if (this.controller) this.controller.abort();
    this.controller = null;
  }

  async poll(signal) {
    while (!signal.aborted) {
      await this.refresh(signal);
      await sleep(POLL_MS, signal);
    }
  }

  async refresh(signal) {
    const get = (path) => this.api.request("GET", path, { signal });
    try {
      const [hooks, schedules, deliveries, dead] = await Promise.all([
        get("/hooks"), get("/schedules"), get(`/triggers/deliveries?limit=${DELIVERIES}`), get("/triggers/dead-letters")]);
      if (signal.aborted) return;
      this.render(hooks.hooks, schedules.schedules, deliveries.deliveries, dead.dead_letters);
      showError(this.nodes.error, "");
      this.nodes.status.textContent = `updated ${new Date().toLocaleTimeString()}`;
    } catch (err) {
      if (signal.aborted || err.name === "AbortError") return;
      showError(this.nodes.error, err instanceof ApiError ? err.describe() : String(err.message || err));
    }
  }

  render(hooks, schedules, deliveries, dead) {
    const { nodes } = this;
    nodes.hooks.replaceChildren(table(["Hook", "Scheme", "Matches", "Makes agents of", "Secret", "Limits"],
                                      hookRows(hooks), "No hooks."));
    nodes.schedules.replaceChildren(table(["Schedule", "Cron", "Time zone", "Last tick", "Next tick", "Missed",
                                           "Fired last by", "Makes agents of", "Overlap"],
                                          scheduleRows(schedules), "No schedules."));
    nodes.deliveries.replaceChildren(table(["When", "Kind", "Name", "Outcome", "Agent", "Details"],
                                           deliveryRows(deliveries), "No deliveries yet."));
    nodes.deadLetters.replaceChildren(table(["When", "Subscription", "Kind", "Agent", "Attempts", "Last error"],
                                            deadLetterRows(dead), "None: every notification arrived."));
  }
}
