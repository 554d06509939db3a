"""The HTTP server: run the API over a backend until SIGTERM or SIGINT.

On a signal the server stops accepting connections, ends ``/events`` streams,
lets in-flight requests and proxied streams finish for up to
``--shutdown-timeout`` seconds, then closes the backend. Agents keep running.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the heavy imports wait until the server really starts
    from ..apikeys import ApiKey
    from ..backends.base import Backend
    from ..settings import Settings

log = logging.getLogger("agentproxy.api")

DEFAULT_SHUTDOWN_TIMEOUT = 10.0
LOOPS = ("auto", "uvloop", "asyncio")
"""Event loops ``serve`` can run on: ``auto`` is uvloop where the platform has it, else asyncio's own."""


def event_loop_runner(loop: str = "auto") -> asyncio.Runner:
    """An :class:`asyncio.Runner` on the event loop ``loop`` names (see :data:`LOOPS`).

    uvloop (libuv) answers a proxied request with a fraction of asyncio's loop overhead;
    where it is not installed (it is a dependency only where it builds) ``auto`` falls
    back to asyncio's own loop, and ``uvloop`` raises :class:`RuntimeError`.
    """
    if loop not in LOOPS:
        raise ValueError(f"loop: must be one of {', '.join(LOOPS)}, not {loop!r}")
    if loop != "asyncio":
        try:
            import uvloop
        except ImportError:
            if loop == "uvloop":
                raise RuntimeError("uvloop is not installed on this platform") from None
        else:
            return asyncio.Runner(loop_factory=uvloop.new_event_loop)
    return asyncio.Runner()


def run(settings: Settings, backend: Backend, api_keys: Iterable[ApiKey | Mapping[str, Any]] = (), *,
        loop: str = "auto", **options: Any) -> None:
    """:func:`run_server` to its end on the event loop ``loop`` names (uvloop where there is one)."""
    with event_loop_runner(loop) as runner:
        runner.run(run_server(settings, backend, api_keys, **options))


def api_keys_from(settings: Settings) -> list[ApiKey]:
    """The API keys configured in ``server.api_keys`` (none when the setting is absent), or
    :class:`~agentproxy.settings.SettingsError` naming the entry and the rule it breaks."""
    from ..apikeys import ApiKeyError, parse_api_keys
    from ..settings import SettingsError

    records = getattr(settings.server, "api_keys", None) or []
    try:
        return list(parse_api_keys(records))
    except ApiKeyError as exc:
        path = "server.api_keys" if exc.index is None else f"server.api_keys[{exc.index}]"
        raise SettingsError(path, exc.rule, show_value=False) from None


def check_listen_address(settings: Settings, keys: Iterable[ApiKey]) -> None:
    """Refuse, as a :class:`~agentproxy.settings.SettingsError` of ``server.host``, to serve an
    open API beyond this machine unless the settings allow it (see :func:`.auth.check_bind`)."""
    from ..settings import SettingsError
    from .auth import Authenticator, BindRefused, check_bind

    allow_remote = bool(getattr(settings.server, "allow_unauthenticated_remote", False))
    oidc = getattr(settings.server, "oidc", None)
    allow_remote = allow_remote or bool(getattr(oidc, "issuer", None))  # sign-in is authentication too
    try:
        check_bind(settings.server.host, Authenticator(keys), allow_remote)
    except BindRefused as exc:
        raise SettingsError("server.host", str(exc), settings.server.host) from None


async def run_server(
    settings: Settings,
    backend: Backend,
    api_keys: Iterable[ApiKey | Mapping[str, Any]] = (),
    *,
    host: str | None = None,
    port: int | None = None,
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
    stop: asyncio.Event | None = None,
    on_listening: Callable[[list[Any]], None] | None = None,
    handle_signals: bool = True,
    heartbeat_interval: float = 15.0,
) -> None:
    """Start ``backend``, serve the API until ``stop`` is set (or SIGTERM/SIGINT), then shut down.

    ``host``/``port`` default to ``settings.server``; ``on_listening`` gets the
    bound addresses once the socket accepts connections.
    """
    from aiohttp import web

    from .app import create_app
    from .relay.fastpath import FastPathSite, server_options

    host = settings.server.host if host is None else host
    port = settings.server.port if port is None else port
    stop = asyncio.Event() if stop is None else stop
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT) if handle_signals else ()
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    await backend.start()
    try:
        app = create_app(settings, backend, api_keys, heartbeat_interval=heartbeat_interval)
        runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=shutdown_timeout,
                               handle_signals=False, **server_options())
        await runner.setup()
        try:
            site = FastPathSite(runner, host, port)  # proxied requests to ready agents skip aiohttp's layers
            await site.start()
            addresses = list(runner.addresses)
            # What start-up made lives as long as the server: out of the collector's sight, a full
            # collection scans only what serving allocates, and no proxied request waits on the rest.
            gc.collect()
            gc.freeze()
            log.info("agentproxy API (%s mode, %s event loop) listening on %s", backend.mode,
                     "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio",
                     ", ".join(f"http://{_authority(a)}" for a in addresses))
            if on_listening is not None:
                on_listening(addresses)
            await stop.wait()
            log.info("shutting down: no new connections; in-flight requests get up to %gs", shutdown_timeout)
        finally:
            await runner.cleanup()
    finally:
        try:
            await backend.close()
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)
        log.info("stopped; agents keep running")


def _authority(address: Any) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
