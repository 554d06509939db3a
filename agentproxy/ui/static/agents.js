// The agents the key may see, kept current from GET /agents and the /events stream,
// and their list in the sidebar, grouped by session.

import { ApiError } from "./api.js";
import { age, el, sleep } from "./dom.js";

const RECONNECT_MS = 2000;

/** `session/id` of an agent: unique on a server. */
export function agentKey(agent) {
  return `${agent.session}/${agent.id}`;
}

export class AgentStore {
  constructor() {
    this.agents = new Map();
    this.listeners = [];
    // A count of the changes taken, and the count at each agent's last one: the answer of a
    // request is older than what came meanwhile (see `answer`).
    this.clock = 0;
    this.touched = new Map();
  }

  onChange(listener) {
    this.listeners.push(listener);
  }

  changed() {
    for (const listener of this.listeners) listener();
  }

  replaceAll(agents) {
    this.clock += 1;
    this.agents = new Map(agents.map((a) => [agentKey(a), a]));
    this.touched = new Map([...this.agents.keys()].map((key) => [key, this.clock]));
    this.changed();
  }

  /** Take one agent's new state; "deleted" removes it. */
  apply(agent, event) {
    const key = agentKey(agent);
    this.clock += 1;
    this.touched.set(key, this.clock);
    if (event === "deleted") this.agents.delete(key);
    else this.agents.set(key, agent);
    this.changed();
  }

  /**
   * Take the answer of a request sent when the store's `clock` was `mark`, unless the stream
   * brought a change of the agent since: the answer is the agent as it was when the server
   * answered, and the stream's change may be newer (an agent ready before its create's answer
   * arrived would otherwise show "starting" until its next change).
   */
  answer(agent, event, mark) {
    if ((this.touched.get(agentKey(agent)) ?? -1) > mark) return;
    this.apply(agent, event);
  }

  get(key) {
    return this.agents.get(key);
  }

  /** The agents by session, both sorted (agents by creation time). */
  bySession() {
    const sessions = new Map();
    const all = [...this.agents.values()].sort((a, b) =>
      a.session.localeCompare(b.session) || a.created_at.localeCompare(b.created_at) || a.id.localeCompare(b.id));
    for (const agent of all) {
      if (!sessions.has(agent.session)) sessions.set(agent.session, []);
      sessions.get(agent.session).push(agent);
    }
    return sessions;
  }
}

/**
 * Keeps `store` in step with the server: opens /events first, then lists the agents
 * (events that arrive meanwhile are applied after the list), and reconnects when the
 * stream ends. `onState` hears "live", "reconnecting" or an ApiError; a 401 stops it.
 */
export class LiveAgents {
  constructor(api, store, onState) {
    this.api = api;
    this.store = store;
    this.onState = onState;
    this.controller = null;
  }

  start() {
    this.stop();
    this.controller = new AbortController();
    this.run(this.controller.signal);
  }

  stop() {
    if (this.controller) this.controller.abort();
    this.controller = null;
  }

  async run(signal) {
    while (!signal.aborted) {
      let pending = null;
      try {
        await this.api.stream("/events", {
          signal,
          onOpen: () => {
            pending = [];
            this.api.request("GET", "/agents", { signal }).then((answer) => {
              this.store.replaceAll(answer.agents);
              for (const [agent, event] of pending) this.store.apply(agent, event);
              pending = null;
              this.onState("live");
            }).catch((err) => this.failed(err, signal));
          },
          onEvent: (name, data) => {
            if (name !== "status") return;
            const agent = JSON.parse(data);
            if (pending) pending.push([agent, agent.event]);
            else this.store.apply(agent, agent.event);
          },
        });
      } catch (err) {
        if (this.failed(err, signal)) return;
      }
      if (signal.aborted) return;
      this.onState("reconnecting");
      await sleep(RECONNECT_MS, signal);
    }
  }

  /** Report a failure; true when it is final (a key problem). */
  failed(err, signal) {
    if (signal.aborted || err.name === "AbortError") return true;
    if (err instanceof ApiError && err.status === 401) {
      this.stop();
      this.onState(err);
      return true;
    }
    this.onState(err instanceof ApiError ? err : new ApiError(0, "error", String(err.message || err)));
    return false;
  }
}

/** Draw the agent list into `container`; `onSelect(key)` when one is clicked. */
export function renderAgentList(container, store, selectedKey, onSelect) {
  const sessions = store.bySession();
  const children = [];
  if (!sessions.size) children.push(el("p", { class: "empty", text: "No agents yet." }));
  for (const [session, agents] of sessions) {
    const items = agents.map((agent) => {
      const key = agentKey(agent);
      return el("li", {},
        el("button", { type: "button", class: `agent-row${key === selectedKey ? " selected" : ""}`,
                       dataset: { key }, "aria-current": key === selectedKey ? "true" : null,
                       onclick: () => onSelect(key) },
          el("span", { class: "agent-id", text: agent.id }),
          el("span", { class: "agent-type", text: agent.agent }),
          statusBadge(agent.status),
          el("span", { class: "agent-age", text: age(agent.created_at), title: agent.created_at }),
          agent.status === "waiting_input"
            ? el("span", { class: "waiting-mark", text: "?", role: "img", "aria-label": "waiting for input",
                           title: agent.question || "waiting for input" })
            : null));
    });
    children.push(el("section", { class: "session", dataset: { session } },
      el("h3", { text: session }), el("ul", {}, ...items)));
  }
  container.replaceChildren(...children);
}

/** A coloured status label. */
export function statusBadge(status, node = null) {
  const badge = node || el("span");
  badge.className = `badge status-${String(status).replace(/[^a-z]/g, "")}`;
  badge.textContent = status;
  return badge;
}
