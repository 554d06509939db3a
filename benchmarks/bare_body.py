"""The floor of a list over HTTP: the same bytes answered by the barest aiohttp handler.

``python -m benchmarks.bare_body FILE PORT`` answers every ``GET`` on 127.0.0.1:PORT with the
bytes of FILE as JSON, on uvloop where it is installed (as ``agentproxy serve`` runs), until it
is ended. bench-scale serves the body of a replica's ``GET /agents`` with it and lists both in
the same window: what a list costs above moving its bytes over HTTP on this machine.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from aiohttp import web

from agentproxy.api.serve import event_loop_runner


async def serve(body: bytes, port: int) -> None:
    """Answer every GET with ``body`` until the process is ended."""
    async def answer(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/{tail:.*}", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


def main() -> int:
    if len(sys.argv) != 3:
        print("usage: python -m benchmarks.bare_body FILE PORT", file=sys.stderr)
        return 2
    body = Path(sys.argv[1]).read_bytes()
    with event_loop_runner("auto") as runner:  # the loop agentproxy serve runs on by default
        runner.run(serve(body, int(sys.argv[2])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
