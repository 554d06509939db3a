"""A client of agentproxy's HTTP API: ``agentproxy agents ...`` and ``agentproxy chat``.

It speaks the public API only (no import of the server or its backends), so
it works against any agentproxy server. Its commands' arguments are parsed in
:mod:`agentproxy.cli.client`; the HTTP client loads when a command runs.

Modules: :mod:`.http` (HTTP and SSE), :mod:`.agents` (``agents ls|get|create|rm|suspend|
resume|logs``), :mod:`.triggers` (``agents hooks|schedules|deliveries``, ``agents hooks put|rm``), :mod:`.chat`
(``chat``) with :mod:`.transcript` (the chat transcript),
:mod:`.output` (table, JSON or YAML), :mod:`.startview` (what ``--wait`` shows of a start: a
redrawn block on a terminal, plain lines otherwise), :mod:`.login` (``login``: sign-in with the server's
identity provider, and the token kept for the other commands), :mod:`.errors` (what can go wrong, and each exit status).
"""
