"""A client of agentproxy's HTTP API: ``agentproxy agents ...`` and ``agentproxy chat``.

It speaks the public API only (no import of the server or its backends), so
it works against any agentproxy server. Importing this package is cheap: the
HTTP client loads when a command runs.
"""

from .commands import add_client_commands

__all__ = ["add_client_commands"]
