// The dashboard's client of agentproxy's HTTP API: JSON requests and Server-Sent Events,
// both through fetch so that the API key travels in a header (EventSource cannot send one).
// The key lives in memory and in this tab's sessionStorage, never in a URL. A person signed in
// with the identity provider has the proxy's HttpOnly session cookie instead, which this page
// cannot read; every request carries X-Requested-With, which the proxy asks of cookie requests
// that change anything (another site's page cannot send it).

const KEY_STORAGE = "agentproxy.apiKey";

/** An error answer of the API: its HTTP status, code, message and field. */
export class ApiError extends Error {
  constructor(status, code, message, field) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field;
  }

  /** One line for people: "code (status): message". */
  describe() {
    return this.status ? `${this.code} (${this.status}): ${this.message}` : this.message;
  }
}

export class Api {
  constructor() {
    this.key = sessionStorage.getItem(KEY_STORAGE) || null;
  }

  /** Use `key` from now on (kept for this tab's session only); null forgets it. */
  setKey(key) {
    this.key = key || null;
    if (this.key) sessionStorage.setItem(KEY_STORAGE, this.key);
    else sessionStorage.removeItem(KEY_STORAGE);
  }

  headers(extra = {}) {
    const headers = { "X-Requested-With": "agentproxy", ...extra };
    if (this.key) headers.Authorization = `Bearer ${this.key}`;
    return headers;
  }

  /** One request; the decoded JSON (or text when `asText`), or an ApiError. */
  async request(method, path, { body, asText = false, signal } = {}) {
    const init = { method, headers: this.headers({ Accept: asText ? "text/plain" : "application/json" }),
                   signal, cache: "no-store", credentials: "same-origin" };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (err) {
      if (err.name === "AbortError") throw err;
      throw new ApiError(0, "unreachable", `the server cannot be reached (${err.message})`);
    }
    if (!response.ok) throw await errorOf(response);
    if (asText) return response.text();
    const text = await response.text();
    return text ? JSON.parse(text) : null;
  }

  /**
   * Read the event stream at `path`, calling onOpen() once the server answered and
   * onEvent(name, data) for each event, until the stream ends (resolves) or fails (rejects).
   */
  async stream(path, { onOpen, onEvent, signal }) {
    const response = await fetch(path, { headers: this.headers({ Accept: "text/event-stream" }),
                                         signal, cache: "no-store", credentials: "same-origin" });
    if (!response.ok) throw await errorOf(response);
    if (onOpen) onOpen();
    const parser = new EventStreamParser(onEvent);
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      parser.feed(value);
    }
  }
}

async function errorOf(response) {
  let data = null;
  try {
    data = await response.json();
  } catch (_) { /* not JSON */ }
  const error = data && data.error;
  if (error && error.message) return new ApiError(response.status, error.code || "error", error.message, error.field);
  if (data && (data.detail || data.title)) return new ApiError(response.status, "agent_error", data.detail || data.title);
  return new ApiError(response.status, "error", response.statusText || `HTTP ${response.status}`);
}

/** The event-stream format: `event:` and `data:` lines, a blank line ends an event. */
export class EventStreamParser {
  constructor(onEvent) {
    this.onEvent = onEvent;
    this.buffer = "";
    this.name = "";
    this.data = [];
  }

  feed(text) {
    this.buffer += text;
    // A CR at the very end may be the first half of a CRLF: keep it for the next chunk.
    const hold = this.buffer.endsWith("\r") ? "\r" : "";
    const lines = (hold ? this.buffer.slice(0, -1) : this.buffer).split(/\r\n|\r|\n/);
    this.buffer = lines.pop() + hold;  // an incomplete line
    for (const line of lines) this.line(line);
  }

  line(line) {
    if (line === "") {
      if (this.data.length) this.onEvent(this.name || "message", this.data.join("\n"));
      this.name = "";
      this.data = [];
      return;
    }
    if (line.startsWith(":")) return;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.name = value;
    else if (field === "data") this.data.push(value);
  }
}

/** The path of one agent (with `rest` appended). */
export function agentPath(session, id, rest = "") {
  return `/sessions/${encodeURIComponent(session)}/agents/${encodeURIComponent(id)}${rest}`;
}
