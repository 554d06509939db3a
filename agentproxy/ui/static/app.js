// The dashboard: asks for an API key when the server wants one, lists the agents live,
// creates, suspends, resumes and deletes them, and shows the chat, the logs and the start's steps of the
// selected one, and the question of an agent waiting for its user; and, for admins, the triggers.

import { Api, ApiError, agentPath } from "./api.js";
import { AgentStore, LiveAgents, agentKey, renderAgentList, statusBadge } from "./agents.js";
import { ChatPane, LogsPane } from "./chat.js";
import { StartSteps } from "./progress.js";
import { TriggersView } from "./triggers.js";
import { showError } from "./dom.js";

const $ = (id) => document.getElementById(id);

const api = new Api();
const store = new AgentStore();
let selected = null;  // session/id of the agent shown
let tab = "chat";

const chat = new ChatPane(api, { messages: $("messages"), status: $("chat-status"), form: $("send-form"),
                                 text: $("send-text"), button: $("send-button") });
const logs = new LogsPane(api, $("logs-text"), $("logs-refresh"));
const steps = new StartSteps(api, { box: $("agent-steps"), summary: $("agent-steps-summary"),
                                    list: $("agent-steps-list") });
const live = new LiveAgents(api, store, (state) => {
  const connection = $("connection");
  if (state instanceof ApiError && state.status === 401) {
    askForKey(api.key ? "The API key is not valid (any more)." : "");
    return;
  }
  connection.dataset.state = state instanceof ApiError ? "error" : state;
  connection.textContent = state === "live" ? "live" : state === "reconnecting" ? "reconnecting…"
    : `error: ${state.describe()}`;
});

const triggers = new TriggersView(api, { hooks: $("triggers-hooks"), schedules: $("triggers-schedules"),
                                         deliveries: $("triggers-deliveries"), deadLetters: $("triggers-dead"),
                                         status: $("triggers-status"), error: $("triggers-error") });
let view = "agents";

store.onChange(render);

function render() {
  renderAgentList($("agents"), store, selected, select);
  const agent = selected ? store.get(selected) : null;
  $("nothing-selected").hidden = Boolean(agent);
  $("agent-view").hidden = !agent;
  if (agent) {
    $("agent-title").textContent = `${agent.session} / ${agent.id}`;
    statusBadge(agent.status, $("agent-status"));
    const reason = [agent.reason, agent.message].filter(Boolean).join(": ");
    $("agent-reason").textContent = reason;
    $("agent-reason").hidden = !reason;
    // Its program asks its user something (a permission): the question, until it is answered.
    const waiting = agent.status === "waiting_input";
    $("agent-question").textContent = waiting ? `Waiting for input: ${agent.question || "(no text)"}` : "";
    $("agent-question").hidden = !waiting;
    // A suspended agent (or one being suspended) can be resumed; any other suspended.
    $("suspend-button").textContent = isSuspended(agent) ? "Resume" : "Suspend";
  }
  chat.show(agent || null);
  steps.show(agent || null);
  logs.show(agent || null, tab === "logs");
}

function select(key) {
  selected = key;
  showError($("agent-error"), "");
  render();
}

function showTab(name) {
  tab = name;
  $("tab-chat").setAttribute("aria-selected", String(name === "chat"));
  $("tab-logs").setAttribute("aria-selected", String(name === "logs"));
  $("chat-pane").hidden = name !== "chat";
  $("logs-pane").hidden = name !== "logs";
  render();
}

$("tab-chat").addEventListener("click", () => showTab("chat"));
$("tab-logs").addEventListener("click", () => showTab("logs"));

// --- the views: agents, and the triggers (admins only) ------------------------------------

function showView(name) {
  view = name;
  $("view-agents").setAttribute("aria-pressed", String(name === "agents"));
  $("view-triggers").setAttribute("aria-pressed", String(name === "triggers"));
  $("dashboard").hidden = name !== "agents";
  $("triggers-view").hidden = name !== "triggers";
  // The triggers are read again every few seconds, only while they are shown.
  if (name === "triggers") triggers.start();
  else triggers.stop();
}

/** Offer the triggers' view when the caller may see it (an admin, on a server with triggers). */
async function offerTriggers() {
  const allowed = await triggers.allowed();
  $("views").hidden = !allowed;
  if (!allowed && view === "triggers") showView("agents");
}

$("view-agents").addEventListener("click", () => showView("agents"));
$("view-triggers").addEventListener("click", () => showView("triggers"));

// --- signing in -------------------------------------------------------------------------

function askForKey(message) {
  live.stop();
  chat.show(null);
  triggers.stop();
  view = "agents";
  $("views").hidden = true;
  $("triggers-view").hidden = true;
  $("dashboard").hidden = true;
  $("login").hidden = false;
  $("connection").textContent = "API key needed";
  $("connection").dataset.state = "error";
  showError($("login-error"), message);
  $("login-key").focus();
}

let signedIn = null;

/** Fill the form's profile choice with the profiles the caller may use (GET /profiles). */
async function loadProfiles() {
  let listed = { profiles: [], default: null };
  try {
    listed = await api.request("GET", "/profiles");
  } catch (err) {
    listed = { profiles: [], default: null };  // an older server: no profiles
  }
  const select = $("create-profile");
  select.replaceChildren();
  if (!listed.default) select.append(new Option("(the server's default)", ""));
  for (const profile of listed.profiles) {
    const label = profile.description ? `${profile.name}: ${profile.description}` : profile.name;
    select.append(new Option(label, profile.name, false, profile.name === listed.default));
  }
  const none = listed.profiles.length === 0;
  select.hidden = none;
  $("create-profile-label").hidden = none;
}  // who the session cookie signs in ({user, via}), when it does

/** Offer the identity provider's sign-in when the server has one (GET /auth/config answers). */
async function offerSignIn() {
  try {
    await api.request("GET", "/auth/config");
    $("login-oidc-row").hidden = false;
  } catch (err) {
    $("login-oidc-row").hidden = true;
  }
}

async function start() {
  // One request tells whether a key is needed (or the stored one still works).
  const hadKey = Boolean(api.key);
  offerSignIn();
  try {
    await api.request("GET", "/agents");
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      api.setKey(null);
      askForKey(hadKey ? "The API key is not valid (any more)." : "");
      return;
    }
  }
  $("login").hidden = true;
  showView("agents");
  signedIn = null;
  if (!api.key) {
    try {
      const me = await api.request("GET", "/auth/me");
      if (me && me.via === "oidc") signedIn = me;
    } catch (err) {
      signedIn = null;  // no sign-in on this server, or no keys at all
    }
  }
  loadProfiles();
  offerTriggers();
  $("signed-in-as").hidden = !signedIn;
  $("signed-in-as").textContent = signedIn ? `signed in as ${signedIn.user}` : "";
  $("sign-out").textContent = signedIn ? "Sign out" : "Forget key";
  $("sign-out").hidden = !api.key && !signedIn;
  live.start();
}

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const key = $("login-key").value.trim();
  if (!key) return;
  api.setKey(key);
  try {
    await api.request("GET", "/agents");
  } catch (err) {
    api.setKey(null);
    showError($("login-error"), err instanceof ApiError && err.status === 401
      ? "The API key is not valid." : `The server answered: ${err.describe ? err.describe() : err.message}`);
    return;
  }
  $("login-key").value = "";
  showError($("login-error"), "");
  start();
});

$("sign-out").addEventListener("click", async () => {
  if (signedIn) {
    try {
      await api.request("POST", "/auth/logout");
    } catch (err) {
      // The cookie expires by itself; the page forgets the person either way.
    }
    signedIn = null;
    $("signed-in-as").hidden = true;
  }
  api.setKey(null);
  selected = null;
  store.replaceAll([]);
  askForKey("");
});

// --- creating ---------------------------------------------------------------------------

/** The create request of the form, or an error naming the field. */
function createRequest() {
  const body = {};
  const id = $("create-id").value.trim();
  const type = $("create-type").value.trim();
  const message = $("create-message").value;
  const profile = $("create-profile").hidden ? "" : $("create-profile").value;
  if (id) body.id = id;
  if (profile) body.profile = profile;
  if (type) body.agent = type;
  if (message.trim()) body.message = message;
  const env = {};
  const lines = $("create-env").value.split("\n");
  for (const [index, raw] of lines.entries()) {
    const line = raw.trim();
    if (!line) continue;
    const eq = line.indexOf("=");
    if (eq <= 0) throw new Error(`Environment, line ${index + 1}: expected NAME=value`);
    env[line.slice(0, eq).trim()] = line.slice(eq + 1);
  }
  if (Object.keys(env).length) body.env = env;
  return body;
}

$("create-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const session = $("create-session").value.trim();
  let body;
  try {
    body = createRequest();
  } catch (err) {
    showError($("create-error"), err.message);
    return;
  }
  $("create-submit").disabled = true;
  showError($("create-error"), "");
  try {
    const mark = store.clock;
    const agent = await api.request("POST", `/sessions/${encodeURIComponent(session)}/agents`, { body });
    store.answer(agent, "added", mark);
    $("create-id").value = "";
    $("create-message").value = "";
    select(agentKey(agent));
  } catch (err) {
    showError($("create-error"), err.describe ? err.describe() : err.message);
  } finally {
    $("create-submit").disabled = false;
  }
});

// --- suspending and resuming ---------------------------------------------------------------

function isSuspended(agent) {
  return agent.status === "suspended" || agent.reason === "Suspending";
}

$("suspend-button").addEventListener("click", async () => {
  const agent = store.get(selected);
  if (!agent) return;
  const verb = isSuspended(agent) ? "resume" : "suspend";
  $("suspend-button").disabled = true;
  showError($("agent-error"), "");
  try {
    const mark = store.clock;
    store.answer(await api.request("POST", agentPath(agent.session, agent.id, `/${verb}`)), "modified", mark);
  } catch (err) {
    showError($("agent-error"), err.describe ? err.describe() : err.message);
  } finally {
    $("suspend-button").disabled = false;
  }
});

// --- deleting ---------------------------------------------------------------------------

$("delete-button").addEventListener("click", () => {
  const agent = store.get(selected);
  if (!agent) return;
  $("delete-name").textContent = `${agent.session} / ${agent.id}`;
  $("delete-purge").checked = false;
  showError($("delete-error"), "");
  $("delete-dialog").showModal();
});

$("delete-cancel").addEventListener("click", () => $("delete-dialog").close());

$("delete-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const agent = store.get(selected);
  if (!agent) {
    $("delete-dialog").close();
    return;
  }
  const purge = $("delete-purge").checked;
  $("delete-confirm").disabled = true;
  try {
    await api.request("DELETE", agentPath(agent.session, agent.id, purge ? "?purge=true" : ""));
    $("delete-dialog").close();
    if (selected === agentKey(agent)) selected = null;
    store.apply(agent, "deleted");
  } catch (err) {
    showError($("delete-error"), err.describe ? err.describe() : err.message);
  } finally {
    $("delete-confirm").disabled = false;
  }
});

// Ages in the list move on.
setInterval(() => renderAgentList($("agents"), store, selected, select), 10000);

start();
