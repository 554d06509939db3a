"""A client of the proxy on a raw socket, for the tests that control every byte of a connection, and
the fast path's counts of what it relayed and handed over."""

from __future__ import annotations

import asyncio

from .support import HANG_GUARD


class Raw:
    """One client connection that writes bytes as given and reads answers one by one."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.chunk_lines: list[bytes] = []
        """The chunk-size lines of chunked answers, as they came."""
        self.line = b""
        """The status line of the last answer read."""

    @classmethod
    async def open(cls, port: int | None) -> Raw:
        assert port is not None, "the server is not started"
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def status(self) -> int:
        """The status of the next answer (its body is left unread)."""
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), HANG_GUARD)
        return int(head.split(b" ")[1])

    async def answer(self) -> tuple[int, dict[str, str], bytes]:
        """The next answer: status, headers (lower-case names) and body (sized or chunked)."""
        return await asyncio.wait_for(self._answer(), HANG_GUARD)

    async def _answer(self) -> tuple[int, dict[str, str], bytes]:
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.line = lines[0].encode("latin-1")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            body = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding") == "chunked":
            body = b""
            while True:
                size_line = (await self.reader.readline()).strip()
                self.chunk_lines.append(size_line)
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    while await self.reader.readline() != b"\r\n":  # trailer fields, then the blank line
                        pass
                    break
                chunk = await self.reader.readexactly(size + 2)
                body += chunk[:-2]
        else:
            body = b""
        return status, headers, body

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


def get(path: str, *extra: str) -> bytes:
    return ("\r\n".join([f"GET {path} HTTP/1.1", "Host: proxy.test", *extra]) + "\r\n\r\n").encode()


def counts(api) -> tuple[int, int]:
    """Requests the fast path relayed and connections it handed to aiohttp, so far."""
    return api.server.site.relayed, api.server.site.handed_over


def added(api, before: tuple[int, int]) -> tuple[int, int]:
    now = counts(api)
    return now[0] - before[0], now[1] - before[1]
