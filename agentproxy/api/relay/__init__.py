"""The relay: the reverse proxy to each agent's own API (``/sessions/{s}/agents/{a}/api/{path}``).

Two doors lead to the same relay. Each client connection starts on the fast path, which relays
the common request to a ready agent itself; any other request, and the rest of its connection,
goes to aiohttp and its route. Both build the request sent upstream by the same rules, go
through the same pool of kept-alive connections and pass streams on the same way, so the fast
path never answers differently from aiohttp's; it only answers sooner.

Modules, from the bottom up (none imports one listed after it, except for type hints):

- :mod:`.rules`: the rules both doors share (pure): headers passed on and dropped, the framing
  of a request sent upstream, the agent's part of a path, the 502 of an unreachable agent.
- :mod:`.request_head`: the fast path's reading of a request head (pure: bytes in, facts out).
- :mod:`.flow`: flow control of one transport, used by the upstream connection and the fast
  path's client connection.
- :mod:`.buffer`: the body of an agent's answer until the relay takes it, and the four ways to
  hand it on (whole, read, diverted to a callback, passed through unparsed).
- :mod:`.answer`: an agent's answer as llhttp reads it (the parser's sink): its bounded head,
  where it ends, its body into the buffer.
- :mod:`.connection`: one connection to an agent: sends a request, feeds the answer to the
  parser, goes back to its pool.
- :mod:`.pool`: the kept-alive connections to agents, by host and port.
- :mod:`.stream`: passing a streamed answer on to a client, on either door.
- :mod:`.client_answer`: an answer (or the relay's own error) as the fast path writes it.
- :mod:`.route`: the aiohttp route (requests the fast path does not take).
- :mod:`.fastpath`: the fast path: the client connection's protocol and the site that serves it.

The few aiohttp internals the relay needs are in :mod:`agentproxy.api.aiohttp_internals`.
"""
