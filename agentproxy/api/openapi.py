"""The OpenAPI 3 description of the HTTP API, served at ``GET /openapi.json``."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .. import __version__
from ..backends.base import AgentStatus, Backend
from ..naming import AGENT_ID_MAX, AGENT_ID_RULE, SESSION_ID_MAX, SESSION_ID_RULE
from ..settings import Settings
from ..spec import RESOURCE_KEYS
from ..teams.config import teams_of
from .params import MAX_JSON_BODY
from .schema_rules import env_schema, message_schema, resources_schema
from .ui import openapi_paths as dashboard_paths

PROXY_METHODS = ("get", "put", "post", "delete", "options", "head", "patch")
"""Methods the agent API proxy forwards (it forwards any; these are the ones described)."""

_STATUSES = [s.value for s in AgentStatus]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` or null (OpenAPI 3.1: JSON Schema's type list)."""
    kind = schema.get("type")
    if isinstance(kind, str):
        return {**schema, "type": [kind, "null"]}
    return {"anyOf": [schema, {"type": "null"}]}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response = _json(_ref("Error"), description)
    if headers:
        response["headers"] = headers
    return response


_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before trying again.",
                                "schema": {"type": "string"}}}

ERRORS = {
    "400": _error("A malformed id, query parameter or body; `field` names it."),
    "401": _error("No API key, or one that is not valid."),
    "403": _error("Not allowed: a session of another owner, a profile or group the caller may not use, "
                  "or a delete of an agent shared with the caller (only its owner and admins delete); "
                  "`field` names what."),
    "404": _error("No such agent (or it belongs to another key)."),
    "409": _error("The agent exists with a different spec."),
    "413": _error(f"The body is larger than server.max_body ({MAX_JSON_BODY} bytes by default)."),
    "415": _error("The body is not application/json."),
    "422": _error("Well-formed values the settings or the platform refuse; `field` names the value."),
    "429": _error("A limit is reached: agents per session (agents.max_per_session) or per owner "
                  "(agents.max_per_owner), or creates waiting (agents.max_queued_creates; then with "
                  "`Retry-After`).", _RETRY_AFTER),
    "503": _error("The backend (or the agent) is unavailable.", _RETRY_AFTER),
}


def _errors(*codes: str) -> dict[str, Any]:
    return {code: ERRORS[code] for code in codes}


def _nullable_enum(values: list[str], description: str) -> dict[str, Any]:
    return {"type": ["string", "null"], "enum": [*values, None], "description": description}


def _path_param(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema, "description": description}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


SESSION_SCHEMA = {"type": "string", "minLength": 1, "maxLength": SESSION_ID_MAX,
                  "pattern": r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"}
AGENT_SCHEMA = {"type": "string", "minLength": 1, "maxLength": AGENT_ID_MAX,
                "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"}
SESSION = _path_param("session", SESSION_SCHEMA, f"Session id; {SESSION_ID_RULE}.")
AGENT = _path_param("agent", AGENT_SCHEMA, f"Agent id; {AGENT_ID_RULE}.")
STATUS_FILTER = _query("status", {"type": "string", "enum": _STATUSES}, "Only agents with this status.")

OPEN: dict[str, Any] = {"security": []}


def _create_schema(settings: Settings | None, agent_types: list[str] | None, secrets_refused: bool) -> dict:
    """The body of a create: every rule the server checks that a schema can state (see
    :mod:`.schema_rules`), from the settings it runs with."""
    settings = settings or Settings()
    types = list(settings.agents.commands) if agent_types is None else agent_types
    return {
        "type": "object", "additionalProperties": False,
        "description": "Every field is optional; an empty body (or none) creates an agent of the default type "
                       f"({settings.agents.default_type}). The whole body may be at most server.max_body "
                       f"({settings.server.max_body}) bytes.",
        "properties": {
            "id": _nullable({**AGENT_SCHEMA, "description": "Agent id; a random one when absent."}),
            "agent": _nullable_enum(types, "Agent type: one of agents.commands that can be started here."),
            "env": _nullable(env_schema(secrets_refused)),
            "resources": _nullable(resources_schema(settings.k8s_mode.resources)),
            "message": _nullable(message_schema()),
            "profile": _nullable_enum(sorted(teams_of(settings).profiles), "A profile of GET /profiles; "
                                      "teams.default_profile when absent."),
            "share": _nullable({"type": "string", "description": "One of the caller's groups: its members see "
                                "and talk to the agent; only the owner and admins delete it."}),
        },
    }


def _schemas(create: dict[str, Any]) -> dict[str, Any]:
    resources = {key: {"type": "string", "description": "A Kubernetes quantity."} for key in RESOURCE_KEYS}
    return {
        "Error": {
            "type": "object", "required": ["error"],
            "properties": {"error": {
                "type": "object", "required": ["code", "message"],
                "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                               "field": {"type": "string"}}}},
        },
        "Resources": {"type": "object", "required": list(RESOURCE_KEYS), "properties": resources},
        "CreateAgent": create,
        "Agent": {
            "type": "object",
            "required": ["id", "session", "agent", "mode", "status", "reason", "message", "created_at", "url",
                         "resources", "restarts", "details", "owner", "group", "profile", "last_active_at"],
            "properties": {
                "id": {"type": "string"},
                "session": {"type": "string"},
                "agent": {"type": "string", "description": "Agent type."},
                "mode": {"type": "string", "description": "The backend: local or k8s."},
                "status": {"type": "string", "enum": _STATUSES,
                           "description": "waiting_input: ready, and its program asks its user something (question)."},
                "question": _nullable({"type": "string", "description": "What the agent asks its user while "
                                                                        "waiting_input (a permission question)."}),
                "reason": _nullable({"type": "string", "description": "Why the agent is in this status."}),
                "message": _nullable({"type": "string", "description": "Details of the status, for people."}),
                "created_at": {"type": "string", "format": "date-time"},
                "url": {"type": "string", "description": "Path of the agent's own API through this proxy."},
                "resources": _ref("Resources"),
                "restarts": {"type": "integer", "minimum": 0},
                "details": {"type": "object", "description": "Mode-specific facts (object names, pid, port)."},
                "owner": _nullable({"type": "string", "description": "The user whose API key created it (the "
                                                                     "key's user, else its name)."}),
                "group": _nullable({"type": "string", "description": "The owner's group it is shared with."}),
                "profile": _nullable({"type": "string", "description": "The profile it was made from."}),
                "last_active_at": _nullable({
                    "type": "string", "format": "date-time",
                    "description": "When the agent was last seen in use (a request, a message, becoming ready); "
                                   "idle culling counts from here. Requests are recorded only while "
                                   "agents.idle_timeout is set."}),
            },
        },
        "AgentList": {"type": "object", "required": ["agents"],
                      "properties": {"agents": {"type": "array", "items": _ref("Agent")}}},
        "Logs": {"type": "object", "required": ["session", "id", "tail", "lines"],
                 "properties": {"session": {"type": "string"}, "id": {"type": "string"},
                                "tail": {"type": "integer"}, "lines": {"type": "array", "items": {"type": "string"}}}},
        "Status": {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}},
    }


def _agent_ops() -> dict[str, Any]:
    agent = _json(_ref("Agent"), "The agent.")
    agents = _json(_ref("AgentList"), "Agents ordered by creation time.")
    return {
        "/sessions/{session}/agents": {
            "parameters": [SESSION],
            "post": {
                "operationId": "createAgent", "summary": "Create an agent (idempotent for an equal spec)",
                "requestBody": {"required": False, "content": {"application/json": {"schema": _ref("CreateAgent")}}},
                "responses": {"201": _json(_ref("Agent"), "Created."),
                              "200": _json(_ref("Agent"), "An equal agent already existed (a suspended one resumes)."),
                              **_errors("400", "401", "403", "409", "413", "415", "422", "429", "503")},
            },
            "get": {"operationId": "listSessionAgents", "summary": "Agents of one session",
                    "parameters": [STATUS_FILTER], "responses": {"200": agents, **_errors("400", "401", "503")}},
        },
        "/agents": {
            "get": {"operationId": "listAgents", "summary": "All agents the key may see",
                    "parameters": [_query("session", SESSION_SCHEMA, "Only agents of this session."), STATUS_FILTER],
                    "responses": {"200": agents, **_errors("400", "401", "503")}},
        },
        "/sessions/{session}/agents/{agent}": {
            "parameters": [SESSION, AGENT],
            "get": {"operationId": "getAgent", "summary": "One agent",
                    "responses": {"200": agent, **_errors("400", "401", "404", "503")}},
            "delete": {"operationId": "deleteAgent", "summary": "Stop and remove an agent",
                       "parameters": [_query("purge", {"type": "boolean", "default": False},
                                             "Also delete the agent's data.")],
                       "responses": {"200": _json(_ref("Agent"), "The agent's last state."),
                                     **_errors("400", "401", "403", "404", "503")}},
        },
        "/sessions/{session}/agents/{agent}/suspend": {
            "parameters": [SESSION, AGENT],
            "post": {"operationId": "suspendAgent", "summary": "Save and stop an agent, keeping its data",
                     "description": "The agent's status becomes `suspended` (in k8s mode `stopping` with reason "
                                    "`Suspending` until its pod is gone). Its data and conversation are kept; it "
                                    "resumes through `resume`, its next proxied request, or a create with the same "
                                    "spec. Suspending a suspended agent changes nothing.",
                     "responses": {"200": _json(_ref("Agent"), "The agent, suspended or being suspended."),
                                   **_errors("400", "401", "404", "409", "503")}},
        },
        "/sessions/{session}/agents/{agent}/resume": {
            "parameters": [SESSION, AGENT],
            "post": {"operationId": "resumeAgent", "summary": "Start a suspended agent again",
                     "description": "The agent starts with its earlier data and conversation (local mode: on a free "
                                    "port). Resuming an agent that is not suspended changes nothing.",
                     "responses": {"200": _json(_ref("Agent"), "The agent, on its way to ready."),
                                   **_errors("400", "401", "404", "409", "422", "503")}},
        },
        "/sessions/{session}/agents/{agent}/share": {
            "parameters": [SESSION, AGENT],
            "put": {"operationId": "shareAgent", "summary": "Share an agent with one of its owner's groups, or stop",
                    "description": "`{\"group\": \"ml\"}`: the members of ml see it, talk to it, suspend and resume "
                                   "it; `{\"group\": null}`: nobody but its owner and admins. Its owner and admins "
                                   "only; the agent runs (or sleeps) on as it was.",
                    "requestBody": {"required": True, "content": {"application/json": {"schema": {
                        "type": "object", "required": ["group"], "additionalProperties": False,
                        "properties": {"group": {"type": ["string", "null"]}}}}}},
                    "responses": {"200": _json(_ref("Agent"), "The agent, shared as asked."),
                                  **_errors("400", "401", "403", "404", "409", "413", "415", "422", "503")}},
        },
        "/sessions/{session}/agents/{agent}/progress": {
            "parameters": [SESSION, AGENT],
            "get": {
                "operationId": "streamAgentProgress", "summary": "The agent's start, step by step, as Server-Sent Events",
                "description": "Events named `step` (id: the step's position): the steps of the agent's current or "
                               "last start (kind start, resume or restart) already reached, then each as it is "
                               "reached, each with `step`, `at`, `message` and `seconds` since the step before. The "
                               "stream ends after `ready`, `failed` (with the agent's `reason`) or `stopped`. "
                               "k8s steps: applied, scheduled, volume_bound, image_ready, container_started, "
                               "agentapi_answering; local: process_started, agentapi_answering, restored; both: "
                               "first_message_delivered for an agent created with a message. A create served "
                               "by a warm pool: claimed, bound, then the mode's steps from agentapi_answering on.",
                "responses": {"200": {"description": "The stream.", "content": {"text/event-stream": {
                    "schema": {"type": "string"}}}}, **_errors("400", "401", "404")},
            },
        },
        "/sessions/{session}/agents/{agent}/logs": {
            "parameters": [SESSION, AGENT],
            "get": {
                "operationId": "getAgentLogs", "summary": "The last lines of the agent's output",
                "parameters": [_query("tail", {"type": "integer", "minimum": 1, "maximum": 10000, "default": 100},
                                      "How many lines."),
                               _query("format", {"type": "string", "enum": ["text", "json"]},
                                      "text (default) or json; without it, Accept: application/json picks JSON.")],
                "responses": {"200": {"description": "The lines.", "content": {
                    "text/plain": {"schema": {"type": "string"}}, "application/json": {"schema": _ref("Logs")}}},
                    **_errors("400", "401", "404", "503")},
            },
        },
    }


def _other_ops() -> dict[str, Any]:
    status = _json(_ref("Status"), "OK.")
    proxy_op = {
        "summary": "The agent's own API (agentapi), proxied",
        "description": "Any method, query and body is passed to the agent; its answer comes back unchanged, "
                       "streamed (Server-Sent Events included).",
        "responses": {"default": {"description": "Whatever the agent answers."},
                      "502": _error("The agent's API cannot be reached."),
                      **_errors("400", "401", "404"),
                      "503": _error("The agent is not ready yet (code agent_not_ready), or was suspended and is "
                                    "resuming (code agent_resuming): a request to a suspended agent resumes it.",
                                    _RETRY_AFTER)},
    }
    return {
        "/sessions/{session}/agents/{agent}/api/{path}": {
            "parameters": [SESSION, AGENT, _path_param("path", {"type": "string"},
                                                       "Path of the agent API, e.g. status, messages, events.")],
            **{m: {**proxy_op, "operationId": f"proxy{m.capitalize()}"} for m in PROXY_METHODS},
        },
        "/events": {"get": {
            "operationId": "streamEvents", "summary": "Status changes as Server-Sent Events",
            "description": "Events named `status`; data is the agent JSON plus `event` (added, modified, deleted); "
                           "each has an id. A client that reconnects with `Last-Event-ID` gets the events it "
                           "missed that are still kept (the last 10000), else one event named `resync` (list the "
                           "agents again), then live events. In k8s mode ids are the resourceVersions the changes "
                           "were seen at, alike on every replica; in local mode they are numbered per run of the "
                           "proxy. A comment line is sent every 15 seconds on an idle stream.",
            "parameters": [_query("session", SESSION_SCHEMA, "Only agents of this session."),
                           {"name": "Last-Event-ID", "in": "header", "required": False,
                            "schema": {"type": "string"}, "description": "The id of the last event seen."}],
            "responses": {"200": {"description": "The stream.", "content": {"text/event-stream": {
                "schema": {"type": "string"}}}}, **_errors("400", "401")}}},
        "/hooks/waiting": {"post": {
            "operationId": "reportWaiting", "summary": "What a Claude agent's hooks in a pod report (k8s mode)",
            "description": "`{\"question\": TEXT}` when the agent asks its user for a permission, "
                           "`{\"question\": null}` when it no longer waits. No API key: `Authorization: Bearer` "
                           "carries the pod's own ServiceAccount token (audience `k8s_mode.waiting_audience`), "
                           "which says which agent the report is about. 404 unless k8s mode takes reports "
                           "(`k8s_mode.waiting_url`).", **OPEN,
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["question"], "additionalProperties": True,
                "properties": {"question": {"type": ["string", "null"], "maxLength": 2000}}}}}},
            "responses": {"200": _json({"type": "object", "properties": {
                "id": {"type": "string"}, "session": {"type": "string"}, "status": {"type": "string"},
                "question": {"type": ["string", "null"]}}}, "The agent as it is shown now."),
                **_errors("400", "401", "403", "404", "413", "415", "422", "503")}}},
        "/healthz": {"get": {"operationId": "healthz", "summary": "The process answers", **OPEN,
                             "responses": {"200": status}}},
        "/readyz": {"get": {"operationId": "readyz", "summary": "The backend can do its work", **OPEN,
                            "responses": {"200": status, "503": ERRORS["503"]}}},
        "/metrics": {"get": {"operationId": "metrics", "summary": "Prometheus metrics",
                             "responses": {"200": {"description": "Text exposition format.", "content": {
                                 "text/plain": {"schema": {"type": "string"}}}}, **_errors("401")}}},
        "/openapi.json": {"get": {"operationId": "openapi", "summary": "This document",
                                  "responses": {"200": _json({"type": "object"}, "The OpenAPI document."),
                                                **_errors("401")}}},
    }


def _team_ops() -> dict[str, Any]:
    """The routes of :mod:`agentproxy.teams.routes`."""
    profile = {"type": "object", "required": ["name", "description", "agent", "image", "resources", "idle_timeout",
                                              "env", "credentials", "mcp_servers", "instructions", "groups"]}
    profiles = {"type": "object", "required": ["profiles", "default"], "properties": {
        "profiles": {"type": "array", "items": profile}, "default": _nullable({"type": "string"})}}
    holder = {"type": "object", "required": ["kind", "name"], "properties": {
        "kind": {"type": "string", "enum": ["user", "group"]}, "name": {"type": "string"}}}
    entry = {"type": "object", "required": ["owner", "name", "updated_at"], "properties": {
        "owner": holder, "name": {"type": "string"}, "updated_at": {"type": "string", "format": "date-time"}}}
    listed = {"type": "object", "required": ["owner", "credentials"], "properties": {
        "owner": holder, "credentials": {"type": "array", "items": {
            "type": "object", "required": ["name", "updated_at"],
            "properties": {"name": {"type": "string"}, "updated_at": {"type": "string", "format": "date-time"}}}}}}
    group = _query("group", {"type": "string"}, "A group of the caller's: its credentials rather than the caller's.")
    name = _path_param("name", {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9_.]{0,61}[a-z0-9])?$"},
                       "Credential name, e.g. anthropic.")
    value = {"type": "object", "required": ["value"], "additionalProperties": False,
             "properties": {"value": {"type": "string", "minLength": 1, "maxLength": 16384}}}
    return {
        "/credentials": {"get": {
            "operationId": "listCredentials", "summary": "Names and update times of the caller's credentials",
            "parameters": [group], "responses": {"200": _json(listed, "Never a value."), **_errors("401", "403")}}},
        "/credentials/{name}": {
            "parameters": [name, group],
            "put": {"operationId": "putCredential", "summary": "Set a credential (write-only)",
                    "description": "Agents whose profile maps it get it in their environment at their next start "
                                   "or resume.",
                    "requestBody": {"required": True, "content": {"application/json": {"schema": value}}},
                    "responses": {"200": _json(entry, "Set; the value is not answered."),
                                  **_errors("400", "401", "403", "413", "415", "422")}},
            "delete": {"operationId": "deleteCredential", "summary": "Remove a credential",
                       "responses": {"200": _json({"type": "object"}, "Removed."),
                                     **_errors("400", "401", "403", "404")}},
        },
        "/usage": {"get": {"operationId": "usage", "summary": "The caller's counts against its quotas",
                           "responses": {"200": _json({"type": "object", "required": ["user", "admin", "quotas"]},
                                                      "Usage per quota (the user's, then each group's)."),
                                         **_errors("401")}}},
        "/profiles": {"get": {"operationId": "listProfiles", "summary": "The profiles the caller may use",
                              "description": "Names of environment variables, credentials and MCP servers; never "
                                             "a value or the instruction text.",
                              "responses": {"200": _json(profiles, "Allowed profiles."), **_errors("401")}}},
    }


def _trigger_ops() -> dict[str, Any]:
    from ..triggers.routes import openapi_paths  # the triggers' routes are always served

    return openapi_paths()


def openapi_document(auth: bool = True, extra_paths: dict[str, Any] | None = None, *,
                     settings: Settings | None = None, agent_types: list[str] | None = None,
                     secrets_refused: bool = False) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every route; ``auth`` says whether API keys are required,
    ``extra_paths`` are the paths of optional routes that are on. The create request's rules
    come from ``settings`` (the defaults when None), ``agent_types`` (the types that can be
    started; all configured ones when None) and ``secrets_refused`` (k8s mode)."""
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "agentproxy", "version": __version__,
                 "description": "Run, supervise and proxy AI coding agents (agentapi servers)."},
        "paths": {**_agent_ops(), **_other_ops(), **_team_ops(), **dashboard_paths(), **_trigger_ops(),
                  **(extra_paths or {})},
        "components": {
            "schemas": _schemas(_create_schema(settings, agent_types, secrets_refused)),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer KEY"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
    }
    if auth:
        document["security"] = [{"bearer": []}, {"apiKey": []}]
    return document


def openapi_handler(auth: bool = True, extra_paths: dict[str, Any] | None = None, *,
                    settings: Settings | None = None, backend: Backend | None = None) -> Any:
    """The ``GET /openapi.json`` handler. The document is built again only when the agent types
    the backend can start change (a program installed or removed)."""
    settings = settings or Settings()
    built: dict[tuple[str, ...], dict[str, Any]] = {}

    async def handle(request: web.Request) -> web.Response:
        commands = dict(settings.agents.commands)
        types = tuple(backend.runnable_types(commands) if backend is not None else commands)
        if types not in built:
            built.clear()
            built[types] = openapi_document(auth, extra_paths, settings=settings, agent_types=list(types),
                                            secrets_refused=bool(settings.k8s_mode.enabled))
        return web.json_response(built[types])

    return handle
