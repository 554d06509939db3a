"""A client of agentproxy's HTTP API: ``agentproxy agents ...`` and ``agentproxy chat``.

It speaks the public API only (no import of the server or its backends), so
it works against any agentproxy server. Its commands' arguments are parsed in
:mod:`agentproxy.cli.client`; the HTTP client loads when a command runs.
"""
