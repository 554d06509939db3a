// The chat with one agent: its messages stream in from the agent's own /events (through
// the proxy route) as it writes them; the send box is enabled while the agent is stable.

import { agentPath } from "./api.js";
import { cleanMessage, el, sleep } from "./dom.js";

const RECONNECT_MS = 2000;

/** Ready for the chat: ready, or ready and waiting for its user (the answer goes through the chat). */
function isReady(agent) {
  return agent.status === "ready" || agent.status === "waiting_input";
}

export class ChatPane {
  /** `nodes`: {messages, status, form, text, button}. */
  constructor(api, nodes) {
    this.api = api;
    this.nodes = nodes;
    this.agent = null;
    this.controller = null;
    this.messages = new Map();
    this.agentStatus = null;  // agentapi's: running or stable
    this.sending = false;
    this.note = "";
    nodes.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.send();
    });
    nodes.text.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.send();
      }
    });
  }

  /** Show `agent` (null: none); called again whenever its state changes. */
  show(agent) {
    const same = agent && this.agent && agent.session === this.agent.session && agent.id === this.agent.id;
    if (!same) {
      this.close();
      this.messages = new Map();
      this.nodes.messages.replaceChildren();
      this.note = "";
    }
    this.agent = agent;
    if (!agent) return;
    if (!isReady(agent)) {
      this.close();
      this.agentStatus = null;
    } else if (!this.controller) {
      this.controller = new AbortController();
      this.follow(agent, this.controller.signal);
    }
    this.update();
  }

  close() {
    if (this.controller) this.controller.abort();
    this.controller = null;
    this.agentStatus = null;
  }

  async follow(agent, signal) {
    const path = agentPath(agent.session, agent.id, "/api/events");
    while (!signal.aborted) {
      try {
        await this.api.stream(path, {
          signal,
          onOpen: () => { this.note = ""; this.update(); },
          onEvent: (name, data) => this.event(name, data),
        });
        this.note = "The agent's event stream ended; reconnecting…";
      } catch (err) {
        if (signal.aborted || err.name === "AbortError") return;
        this.note = `Cannot follow the agent: ${err.describe ? err.describe() : err.message}; retrying…`;
      }
      this.agentStatus = null;
      this.update();
      await sleep(RECONNECT_MS, signal);
    }
  }

  event(name, data) {
    if (name === "message_update") {
      this.upsert(JSON.parse(data));
    } else if (name === "status_change") {
      this.agentStatus = JSON.parse(data).status;
      this.update();
    } else if (name === "agent_error") {
      this.note = `The agent reported an error: ${data}`;
      this.update();
    }
  }

  upsert(message) {
    const list = this.nodes.messages;
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    let node = this.messages.get(message.id);
    if (!node) {
      node = el("div", { class: "message", dataset: { id: message.id } },
        el("span", { class: "role" }), el("div", { class: "text" }));
      this.messages.set(message.id, node);
      const later = [...this.messages.keys()].filter((id) => id > message.id).sort((a, b) => a - b);
      list.insertBefore(node, later.length ? this.messages.get(later[0]) : null);
    }
    node.className = `message role-${message.role === "user" ? "user" : "agent"}`;
    node.dataset.role = message.role;
    node.querySelector(".role").textContent = message.role === "user" ? "you" : "agent";
    const text = cleanMessage(message.message);
    node.querySelector(".text").textContent = text;
    node.hidden = !text;  // an agent's screen can be blank before it prints anything
    if (atBottom) list.scrollTop = list.scrollHeight;
  }

  /** Enable the send box when the agent can take a message; say why not otherwise. */
  update() {
    const { status, text, button } = this.nodes;
    const ready = this.agent && isReady(this.agent);
    const canSend = ready && this.agentStatus === "stable" && !this.sending;
    text.disabled = !canSend;
    button.disabled = !canSend;
    let line;
    if (!this.agent) line = "";
    else if (!ready) line = `The agent is ${this.agent.status}; the chat opens when it is ready.`;
    else if (this.note) line = this.note;
    else if (this.sending) line = "Sending…";
    else if (this.agentStatus === "running") line = "The agent is working…";
    else if (this.agentStatus === "stable") line = "The agent is waiting for a message.";
    else line = "Connecting to the agent…";
    status.textContent = line;
    status.dataset.state = ready ? (this.agentStatus || "connecting") : "not-ready";
  }

  async send() {
    const content = this.nodes.text.value;
    if (!content.trim() || this.nodes.button.disabled) return;
    const agent = this.agent;
    this.sending = true;
    this.update();
    try {
      await this.api.request("POST", agentPath(agent.session, agent.id, "/api/message"),
                             { body: { content, type: "user" } });
      this.nodes.text.value = "";
      this.note = "";
    } catch (err) {
      this.note = `Not sent: ${err.describe ? err.describe() : err.message}`;
    } finally {
      this.sending = false;
      this.update();
    }
  }
}

/** The logs view: the agent's last lines, refreshed while it is shown. */
export class LogsPane {
  constructor(api, pre, refreshButton) {
    this.api = api;
    this.pre = pre;
    this.agent = null;
    this.timer = null;
    refreshButton.addEventListener("click", () => this.refresh());
  }

  show(agent, visible) {
    const changed = !agent || !this.agent || agent.session !== this.agent.session || agent.id !== this.agent.id;
    this.agent = agent;
    if (changed) this.pre.textContent = "";
    clearInterval(this.timer);
    this.timer = null;
    if (agent && visible) {
      if (changed || !this.pre.textContent) this.refresh();
      this.timer = setInterval(() => this.refresh(), 3000);
    }
  }

  showing(agent) {
    return this.agent && this.agent.session === agent.session && this.agent.id === agent.id;
  }

  async refresh() {
    const agent = this.agent;
    if (!agent) return;
    try {
      const text = await this.api.request("GET", agentPath(agent.session, agent.id, "/logs?tail=500&format=text"),
                                          { asText: true });
      if (this.showing(agent)) this.pre.textContent = text || "(no output yet)";
    } catch (err) {
      if (this.showing(agent)) this.pre.textContent = `Cannot read the logs: ${err.describe ? err.describe() : err.message}`;
    }
  }
}
