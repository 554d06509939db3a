"""``agentproxy serve``: the command line of the HTTP server (the server is :mod:`agentproxy.api.serve`).

Nothing heavy is imported until the command runs: aiohttp, kr8s and psutil load
only when serving.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from .. import heap
from ..api.serve import DEFAULT_SHUTDOWN_TIMEOUT, LOOPS
from .parser import load, settings_options


def register(sub: Any) -> None:
    """Add ``serve`` to the top-level subparsers."""
    serve = sub.add_parser(
        "serve", help="run the HTTP API (agents, their events and a proxy to each agent's API)",
        description="Serve the HTTP API on server.host:server.port until SIGTERM or SIGINT.")
    serve.add_argument("--shutdown-timeout", type=float, default=DEFAULT_SHUTDOWN_TIMEOUT, metavar="SECONDS",
                       help="on SIGTERM, how long in-flight requests and proxied streams may finish "
                            f"(default: {DEFAULT_SHUTDOWN_TIMEOUT:g})")
    serve.add_argument("--access-log", action="store_true", help="log every request")
    serve.add_argument("--loop", choices=LOOPS, default="auto",
                       help="event loop: uvloop where the platform has it (auto, the default), or asyncio's own")
    settings_options(serve)
    serve.set_defaults(handler=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve until SIGTERM or SIGINT; a backend or address that cannot be used is one line of error."""
    from ..api.logfilter import quiet_malformed_requests
    from ..api.serve import api_keys_from, check_listen_address, event_loop_runner, run_server
    from ..backends import modeswitch
    from ..backends.base import BackendError
    from ..backends.factory import make_backend

    settings = load(args).settings
    keys = api_keys_from(settings)
    check_listen_address(settings, keys)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiohttp.access").setLevel(logging.INFO if args.access_log else logging.WARNING)
    quiet_malformed_requests()
    for chatty in ("httpx", "httpcore"):  # the Kubernetes client logs every API request at INFO
        logging.getLogger(chatty).setLevel(logging.WARNING)

    try:
        runner = event_loop_runner(args.loop)
    except RuntimeError as exc:  # --loop uvloop where it is not installed
        print(f"agentproxy: error: --loop: {exc}", file=sys.stderr)
        return 2
    heap.return_large_blocks()  # a burst's large buffers go back to the system when freed
    backend = make_backend(settings)

    async def serve() -> None:
        # Agents the other mode left running: refused or reported before anything starts.
        await modeswitch.check(settings, backend.mode)
        await run_server(settings, backend, keys, shutdown_timeout=args.shutdown_timeout)

    try:
        with runner:
            runner.run(serve())
    except modeswitch.OtherModeAgents as exc:
        print(f"agentproxy: error: {exc}", file=sys.stderr)
        return 1
    except BackendError as exc:
        print(f"agentproxy: error: the {backend.mode} backend cannot start: {exc.message}", file=sys.stderr)
        return 1
    except OSError as exc:  # the address is taken, or not this machine's
        print(f"agentproxy: error: cannot listen on {settings.server.host}:{settings.server.port}: "
              f"{exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0
