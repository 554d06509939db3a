"""The OpenAPI description of the agentapi-proxy routes (added to ``/openapi.json`` while they are on)."""

from __future__ import annotations

from typing import Any

from ..openapi import PROXY_METHODS

_TAG = ["agentapi-proxy"]
_OPEN: dict[str, Any] = {"security": []}
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}

PEER_ERROR = {
    "type": "object", "required": ["message"],
    "properties": {"message": {"type": "string"},
                   "error": {"type": "object", "description": "agentproxy's error: code, message and field."}},
}
SESSION_INFO = {
    "type": "object",
    "required": ["session_id", "user_id", "status", "started_at", "port", "tags", "created_at", "updated_at"],
    "properties": {
        "session_id": {"type": "string", "description": "The agent id."},
        "user_id": {"type": "string", "description": "Name of the key that started it, or `anonymous`."},
        "status": {"type": "string", "description": "`active` (pending, starting or ready), `failed`, "
                                                    "`stopping` or `stopped`."},
        "started_at": {"type": "string", "format": "date-time"},
        "port": {"type": "integer", "description": "Port of the agent's agentapi (0 while not known)."},
        "tags": {**_STRING_MAP, "type": ["object", "null"]},
        "created_at": {"type": "string", "format": "date-time"},
        "updated_at": {"type": "string", "format": "date-time"},
    },
}
START = {
    "type": "object", "description": "Every field is optional; other fields are ignored.",
    "properties": {
        "environment": {**_STRING_MAP, "description": "Environment variables of the agent."},
        "tags": {**_STRING_MAP, "description": "Tags, listed and searchable; `message` is the first message."},
        "message": {"type": "string", "description": "The first message (the tag `message` wins)."},
    },
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: str) -> dict[str, Any]:
    return {code: _json(PEER_ERROR, "An error.") for code in codes}


def _preflight(name: str) -> dict[str, Any]:
    return {"operationId": f"peer{name}Preflight", "summary": "CORS preflight", "tags": _TAG, **_OPEN,
            "responses": {"204": {"description": "CORS headers for an allowed origin."}}}


_SESSION_ID = {"name": "session_id", "in": "path", "required": True, "schema": {"type": "string"},
               "description": "The session (agent) id."}


def peer_paths() -> dict[str, Any]:
    """The paths of the agentapi-proxy routes."""
    proxy_op = {
        "summary": "The session's agent API (agentapi), proxied", "tags": _TAG,
        "description": "As agentproxy's own proxy route; every answer carries `Access-Control-Allow-Origin: *`. "
                       "OPTIONS needs no key.",
        "responses": {"default": {"description": "Whatever the agent answers."},
                      **_errors("401", "403", "404", "502", "503")},
    }
    return {
        "/health": {"get": {"operationId": "peerHealth", "summary": "The server answers", "tags": _TAG, **_OPEN,
                            "responses": {"200": _json({"type": "object"}, "`{\"status\": \"ok\"}`")}},
                    "options": _preflight("Health")},
        "/start": {"post": {
            "operationId": "peerStart", "summary": "Start a session (an agent); it boots in the background",
            "tags": _TAG,
            "requestBody": {"required": False, "content": {"application/json": {"schema": START}}},
            "responses": {"200": _json({"type": "object", "required": ["session_id"],
                                        "properties": {"session_id": {"type": "string"}}}, "Started."),
                          **_errors("400", "401", "413", "415", "422", "503")}},
                   "options": _preflight("Start")},
        "/search": {"get": {
            "operationId": "peerSearch", "summary": "The caller's sessions, newest first", "tags": _TAG,
            "parameters": [{"name": "status", "in": "query", "required": False, "schema": {"type": "string"},
                            "description": "Only sessions with this status."}],
            "description": "`tag.KEY=VALUE` parameters keep sessions whose tag KEY is VALUE.",
            "responses": {"200": _json({"type": "object", "required": ["sessions"], "properties": {
                "sessions": {"type": "array", "items": SESSION_INFO}}}, "The sessions."),
                **_errors("401", "503")}},
                    "options": _preflight("Search")},
        "/sessions/{session_id}": {
            "parameters": [_SESSION_ID],
            "delete": {"operationId": "peerDeleteSession", "summary": "Stop a session and delete its data",
                       "tags": _TAG, "responses": {
                           "200": _json({"type": "object", "properties": {
                               "message": {"type": "string"}, "session_id": {"type": "string"},
                               "status": {"type": "string", "enum": ["terminated"]}}}, "Terminated."),
                           **_errors("401", "403", "404", "503")}},
            "options": _preflight("DeleteSession")},
        "/{session_id}/{path}": {
            "parameters": [_SESSION_ID, {"name": "path", "in": "path", "required": True, "schema": {"type": "string"},
                                         "description": "Path of the agent API, e.g. status, messages, events."}],
            **{m: {**proxy_op, "operationId": f"peerProxy{m.capitalize()}"} for m in PROXY_METHODS},
        },
    }
