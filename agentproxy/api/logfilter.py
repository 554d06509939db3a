"""One warning line, not a traceback, for a malformed request from a client.

aiohttp logs a request it cannot parse (a NUL byte in a header, a broken request
line, a bad chunk size) at ERROR with the parser's traceback. That is the
client's mistake and tells the operator nothing a single line would not.
"""

from __future__ import annotations

import logging

from aiohttp.http_exceptions import HttpProcessingError

SERVER_LOGGER = "aiohttp.server"


class MalformedRequestFilter(logging.Filter):
    """Turns aiohttp's record of an unparsable request into one WARNING line."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError):
            remote = record.args[0] if isinstance(record.args, tuple) and record.args else "a client"
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.msg, record.args = "malformed request from %s refused (%s): %s", (
                remote, error.code, " ".join(str(error.message).split()) or type(error).__name__)
            record.exc_info = record.exc_text = None
        return True


def quiet_malformed_requests() -> None:
    """Install :class:`MalformedRequestFilter` on aiohttp's server logger (once)."""
    logger = logging.getLogger(SERVER_LOGGER)
    if not any(isinstance(f, MalformedRequestFilter) for f in logger.filters):
        logger.addFilter(MalformedRequestFilter())
