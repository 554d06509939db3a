"""The web dashboard's files under ``/ui/`` (``/`` and ``/ui`` redirect there).

The files are read once from the package (``agentproxy/ui/static``); there is
no build step and nothing comes from elsewhere. They are answered without an
API key (they hold no data; the page asks for a key and sends it with every
request it makes) and with a Content-Security-Policy that allows scripts,
styles and connections from this origin only, and no inline scripts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web

STATIC_DIR = Path(__file__).resolve().parent.parent / "ui" / "static"
PREFIX = "/ui/"
INDEX = "index.html"

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self'",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
])

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _files() -> dict[str, tuple[bytes, str]]:
    """Path → (body, content type) for every servable file of the dashboard."""
    files = {}
    for path in sorted(STATIC_DIR.iterdir()):
        content_type = CONTENT_TYPES.get(path.suffix)
        if path.is_file() and content_type:
            route = PREFIX if path.name == INDEX else PREFIX + path.name
            files[route] = (path.read_bytes(), content_type)
    return files


FILES = _files()
REDIRECTS = ("/", "/ui")
OPEN_PATHS = frozenset([*FILES, *REDIRECTS])
"""Paths answered without an API key."""


def routes() -> list[web.RouteDef]:
    """One route per file, and the redirects."""
    table = [web.get(path, _redirect, allow_head=False) for path in REDIRECTS]
    for path, (body, content_type) in FILES.items():
        table.append(web.get(path, _file_handler(body, content_type), allow_head=False))
    return table


async def _redirect(request: web.Request) -> web.Response:
    raise web.HTTPFound(PREFIX)


def _file_handler(body: bytes, content_type: str) -> Any:
    async def handle(request: web.Request) -> web.Response:
        return web.Response(body=body, headers={"Content-Type": content_type, **SECURITY_HEADERS})

    return handle


def openapi_paths() -> dict[str, Any]:
    """The OpenAPI description of these routes."""
    redirect = {"302": {"description": f"To the dashboard at {PREFIX}.",
                        "headers": {"Location": {"schema": {"type": "string"}}}}}
    paths: dict[str, Any] = {
        path: {"get": {"operationId": "dashboardRedirect" + ("Root" if path == "/" else "Ui"),
                       "summary": "Redirect to the web dashboard", "security": [], "responses": redirect}}
        for path in REDIRECTS}
    for path, (_, content_type) in FILES.items():
        name = path[len(PREFIX):] or INDEX
        paths[path] = {"get": {
            "operationId": "dashboard_" + name.replace(".", "_").replace("-", "_"),
            "summary": f"The web dashboard's {name}", "security": [],
            "responses": {"200": {"description": name, "content": {
                content_type.split(";")[0]: {"schema": {"type": "string"}}}}}}}
    return paths
