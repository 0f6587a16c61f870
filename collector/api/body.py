"""Reading one API answer within a size cap, inflating gzip/deflate ourselves in bounded steps.

aiohttp would buffer a body of any size and inflate it in one go (a 1 MB gzip bomb becomes 1 GiB in
memory and blocks the loop for seconds). Here the declared size is checked first, the wire bytes are
read in chunks and counted, and inflation produces at most :data:`INFLATE_STEP_BYTES` per step, yielding
to the loop between steps. Whichever cap passes first raises :class:`AnswerTooLarge`; nothing past it
is kept.
"""

from __future__ import annotations

import zlib
from typing import Any

import aiohttp
import anyio.lowlevel

from collector.api.errors import AnswerTooLarge, AnswerUndecodable

READ_CHUNK_BYTES = 1 << 16
INFLATE_STEP_BYTES = 1 << 20
#: What the client asks for; anything else an answer claims is a lie or a broken proxy.
ACCEPT_ENCODING = "gzip, deflate"


async def read_capped(response: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    """The body of ``response`` (fetched with ``auto_decompress=False``), inflated, at most ``max_bytes``."""
    try:
        return await _read(response, max_bytes)
    except (AnswerTooLarge, AnswerUndecodable):
        response.close()  # the rest of the body is not wanted: drop the connection, do not drain it
        raise


async def _read(response: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    declared = response.content_length
    if declared is not None and declared > max_bytes:
        raise AnswerTooLarge(f"answer declares {declared} bytes, over max_response_bytes ({max_bytes})")
    encoding = response.headers.get("Content-Encoding", "").strip().lower()
    inflater = _Inflater(encoding, max_bytes) if encoding not in ("", "identity") else None
    body = bytearray()
    received = 0
    async for chunk in response.content.iter_chunked(READ_CHUNK_BYTES):
        received += len(chunk)
        if received > max_bytes:
            raise AnswerTooLarge(f"answer is longer than max_response_bytes ({max_bytes})")
        if inflater is None:
            body += chunk
        else:
            await inflater.feed(chunk)
    if inflater is None:
        return bytes(body)
    return inflater.finish() if received else b""


class _Inflater:
    """gzip or deflate (zlib-wrapped or raw, as servers send both) into a capped buffer."""

    def __init__(self, encoding: str, max_bytes: int) -> None:
        if encoding not in ("gzip", "x-gzip", "deflate"):
            raise AnswerUndecodable(f"answer has Content-Encoding {encoding[:40]!r}, which was not asked for")
        self._encoding = encoding
        self._max_bytes = max_bytes
        self._out = bytearray()
        self._decoder: Any = None  # chosen on the first bytes (deflate comes in two framings)

    async def feed(self, data: bytes) -> None:
        if self._decoder is None:
            self._decoder = zlib.decompressobj(self._wbits(data))
        while not self._decoder.eof:
            try:
                piece = self._decoder.decompress(data, INFLATE_STEP_BYTES)
            except zlib.error as exc:
                raise AnswerUndecodable(f"answer is not valid {self._encoding}: {exc}") from None
            self._out += piece
            if len(self._out) > self._max_bytes:
                raise AnswerTooLarge(f"answer inflates past max_response_bytes ({self._max_bytes})")
            data = self._decoder.unconsumed_tail
            if len(piece) < INFLATE_STEP_BYTES and not data:
                return  # this chunk is used up and zlib holds nothing more back
            await anyio.lowlevel.checkpoint()  # a full step: let other tasks run before the next one

    def finish(self) -> bytes:
        if self._decoder is None or not self._decoder.eof:
            raise AnswerUndecodable(f"answer's {self._encoding} stream is truncated")
        return bytes(self._out)

    def _wbits(self, first: bytes) -> int:
        if self._encoding != "deflate":
            return 16 + zlib.MAX_WBITS
        is_zlib = len(first) >= 2 and first[0] & 0x0F == 8 and (first[0] << 8 | first[1]) % 31 == 0
        return zlib.MAX_WBITS if is_zlib else -zlib.MAX_WBITS
