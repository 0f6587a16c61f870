"""A loopback HTTP/1.1 server that answers with exactly the bytes a test hands it, lies included.

aiohttp's own server refuses to send much of what a hostile or broken API sends (odd status lines,
a Content-Length that does not match, bytes that end mid-body). This one reads each request, keeps it,
and writes whatever the test's ``answer`` yields, counting the bytes the peer accepted, one request per
connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class RawRequest:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes


Answer = Callable[[RawRequest], AsyncIterator[bytes]]


def response_head(status: int | str, headers: dict[str, str] | list[tuple[str, str]] | None = None) -> bytes:
    """A status line and headers (``Connection: close`` added), ready for a body."""
    items = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    lines = [f"HTTP/1.1 {status}"] + [f"{name}: {value}" for name, value in items] + ["Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def fixed(data: bytes) -> Answer:
    """An answer of these exact bytes."""

    async def answer(request: RawRequest) -> AsyncIterator[bytes]:
        yield data

    return answer


class RawHttpServer:
    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.requests: list[RawRequest] = []
        self.bytes_sent: list[int] = []  # per answered connection: bytes the client's socket took
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self.unfinished = 0  # handlers still writing when the server stopped (a client that did not hang up)

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def start(self) -> RawHttpServer:
        self._server = await asyncio.start_server(self._connected, "127.0.0.1", 0)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            # A client that hung up ends its handler (the next write fails); give them a moment to.
            for _ in range(100):
                if not self._handlers:
                    break
                await asyncio.sleep(0.01)
            self.unfinished = len(self._handlers)
            for task in list(self._handlers):
                task.cancel()
            await asyncio.gather(*self._handlers, return_exceptions=True)
            await self._server.wait_closed()

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            request = await _read_request(reader)
            if request is None:
                return
            self.requests.append(request)
            sent = 0
            self.bytes_sent.append(0)
            with contextlib.suppress(ConnectionError):
                async for chunk in self.answer(request):
                    writer.write(chunk)
                    await writer.drain()
                    sent += len(chunk)
                    self.bytes_sent[-1] = sent
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            self._handlers.discard(task)


async def _read_request(reader: asyncio.StreamReader) -> RawRequest | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        return None
    first, *lines = head.decode("latin-1").split("\r\n")
    method, path, _ = first.split(" ", 2)
    headers = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    body = await reader.readexactly(length) if length else b""
    return RawRequest(method, path, headers, body)
