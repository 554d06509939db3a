// The steps of the selected agent's start (GET .../progress), live while it starts: open
// while the agent is pending or starting, or when its start failed; folded (its summary says
// how long the start took) once the agent is ready.

import { agentPath } from "./api.js";
import { el, sleep } from "./dom.js";

const RECONNECT_MS = 2000;
const STARTING = new Set(["pending", "starting"]);

/** The summary line of a start: its steps so far, or how it ended. */
export function summary(steps, status) {
  const last = steps[steps.length - 1];
  const total = steps.reduce((sum, step) => sum + (step.seconds || 0), 0);
  if (!last) return STARTING.has(status) ? "Starting…" : "Start";
  if (last.step === "ready") return `Started in ${total.toFixed(1)} s (${steps.length} steps)`;
  if (last.step === "failed") return `Start failed after ${total.toFixed(1)} s: ${last.reason || "failed"}`;
  if (last.step === "stopped") return "Start stopped";
  return `Starting… ${last.step.replace(/_/g, " ")} (${total.toFixed(1)} s)`;
}

const SHORT = 160;

/** A step's message in one short line (a failure's carries its reason; the whole text is the
 * agent's message, shown above the steps, and the line's tooltip). */
export function shortText(step) {
  const first = String(step.message || "").split("\n")[0].trim();
  const text = step.reason ? `${step.reason}: ${first}` : first;
  return text.length > SHORT ? `${text.slice(0, SHORT - 1)}…` : text;
}

export class StartSteps {
  /** `nodes`: {box (a <details>), summary, list}. */
  constructor(api, nodes) {
    this.api = api;
    this.nodes = nodes;
    this.key = null;
    this.steps = [];
    this.ended = false;
    this.controller = null;
    this.status = null;
  }

  /** Show the start of `agent` (null: none); called again whenever its state changes. */
  show(agent) {
    const key = agent ? `${agent.session}/${agent.id}` : null;
    const restarting = agent && this.ended && STARTING.has(agent.status) && !STARTING.has(this.status);
    if (key !== this.key || restarting) {
      // Another agent, or a new start of this one (a resume, a restart): follow it from its first step.
      this.close();
      this.key = key;
      this.steps = [];
      this.ended = false;
      if (agent) {
        this.controller = new AbortController();
        this.follow(agent, this.controller.signal);
      }
    }
    this.status = agent ? agent.status : null;
    this.update();
  }

  close() {
    if (this.controller) this.controller.abort();
    this.controller = null;
  }

  async follow(agent, signal) {
    const path = agentPath(agent.session, agent.id, "/progress");
    while (!signal.aborted && !this.ended) {
      let received = [];
      try {
        await this.api.stream(path, {
          signal,
          onOpen: () => { received = []; },
          onEvent: (name, data) => {
            if (name !== "step") return;
            const step = JSON.parse(data);
            received.push(step);
            // The stream replays the start from its first step: what it sends is the whole list.
            this.steps = received.slice();
            if (["ready", "failed", "stopped"].includes(step.step)) this.ended = true;
            this.update();
          },
        });
      } catch (err) {
        if (signal.aborted || err.name === "AbortError") return;
      }
      if (this.ended || signal.aborted) return;
      await sleep(RECONNECT_MS, signal);
    }
  }

  update() {
    const { box, summary: line, list } = this.nodes;
    box.hidden = !this.key || (!this.steps.length && !STARTING.has(this.status));
    if (box.hidden) return;
    const last = this.steps[this.steps.length - 1];
    box.open = STARTING.has(this.status) || Boolean(last && last.step === "failed");
    box.dataset.state = !last ? "starting" : ["ready", "failed", "stopped"].includes(last.step) ? last.step : "starting";
    line.textContent = summary(this.steps, this.status);
    list.replaceChildren(...this.steps.map((step) => el("li", { class: `step step-${step.step}`, dataset: { step: step.step } },
      el("span", { class: "step-name", text: step.step.replace(/_/g, " ") }),
      el("span", { class: "step-message", text: shortText(step), title: step.message || null }),
      el("span", { class: "step-time", text: `+${(step.seconds || 0).toFixed(1)} s`, title: step.at }))));
  }
}
