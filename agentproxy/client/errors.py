"""What can go wrong in the client, and the exit status of each.

Scripts rely on these numbers; docs/cli.md lists them.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_ERROR = 1
"""The server refused the request (any error answer not covered below)."""
EXIT_USAGE = 2
"""A mistake on the command line."""
EXIT_UNREACHABLE = 3
"""The server could not be reached (refused, unknown host, no answer)."""
EXIT_NOT_FOUND = 4
"""The server answered 404: no such agent (or one the key may not see)."""
EXIT_AGENT_FAILED = 5
"""The agent failed or stopped while the command waited for it."""
EXIT_TIMEOUT = 6
"""What the command waited for did not happen in time."""
EXIT_INTERRUPTED = 130
"""Ctrl-C during a command that is not meant to be left that way."""


class ClientError(Exception):
    """A failure shown to the user as one line, with the exit status it ends in."""

    exit_code = EXIT_ERROR

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if exit_code is not None:
            self.exit_code = exit_code


class ServerError(ClientError):
    """The server answered with an error: its HTTP status, its ``code`` and its ``message``."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        self.status = status
        self.code = code
        self.field = field
        super().__init__(f"{code} ({status}): {message}",
                         EXIT_NOT_FOUND if status == 404 else EXIT_ERROR)
        self.server_message = message


class Unreachable(ClientError):
    """The server at ``url`` could not be reached."""

    exit_code = EXIT_UNREACHABLE

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        super().__init__(f"cannot reach the agentproxy server at {url}: {reason}")


class UsageProblem(ClientError):
    """A value on the command line that is well-formed for argparse but not usable."""

    exit_code = EXIT_USAGE


class AgentFailed(ClientError):
    """The agent went to ``failed`` or ``stopped`` while the command waited."""

    exit_code = EXIT_AGENT_FAILED


class TimedOut(ClientError):
    """A wait ran out of time."""

    exit_code = EXIT_TIMEOUT
