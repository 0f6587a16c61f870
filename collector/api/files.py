"""Downloading SIEM batch files (API 2.0) from their pre-signed links, streamed line by line.

The links point at a file host (object storage), not at the API. What goes there, and why:

- **No credentials of ours.** The request carries no ``Authorization`` (the bearer token is for the
  API only; a pre-signed link authorizes itself in its query string) and no cookies: files use their
  own session with no cookie jar, so nothing the API set can follow.
- **Same proxy and TLS settings as the API** (``proxy``, ``verify_tls``, ``ca_file``), so the same
  egress rules and corporate CA apply. A proxy's own ``user:password@`` goes to the proxy only: for
  https links aiohttp sends it in the CONNECT request, never inside the tunnel to the file host. Links
  must be https; plain http is accepted for loopback hosts only (the simulator), so a proxy password
  never crosses the network in a forwarded plain request.
- **No redirects.** A pre-signed link is final; a redirect would send us somewhere the listing did not
  name. It is answered like an expired link (list the page again for fresh links), never followed.
- **Bounded.** The body is inflated in steps of at most :data:`INFLATE_STEP_BYTES` and split into lines
  as it arrives; no file is ever held whole. A line longer than ``siem_max_line_bytes`` is cut (its
  start kept, tagged by the caller) and the rest of it skipped; more than ``siem_max_file_bytes``
  inflated stops the download. Reads time out after ``request_timeout_secs`` of silence.

Every failure is a :class:`FileError` of one :class:`FileFailure` kind; what to do about each (retry,
list again, keep raw, fail the stream) is the caller's decision, in :mod:`collector.collect.batch`.
"""

from __future__ import annotations

import contextlib
import enum
import ipaddress
import zlib
from collections.abc import AsyncGenerator, Iterator
from urllib.parse import urlsplit

import aiohttp
import anyio.lowlevel

from collector.api.client import tls_setting
from collector.api.errors import REDIRECT_STATUSES
from collector.config.errors import CollectorError
from collector.config.model import AccountConfig

READ_CHUNK_BYTES = 1 << 16
INFLATE_STEP_BYTES = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b"
_WBITS = 16 + zlib.MAX_WBITS  # gzip framing
EXPIRED_STATUSES = frozenset((400, 401, 403, 404, 410))  # S3 answers 403 (some hosts 404) past expiry


class FileFailure(enum.Enum):
    EXPIRED = "expired"  # 4xx, or a redirect: the link no longer works; list the page again
    TRANSIENT = "transient"  # network, timeout, 5xx, 429, a body cut short: retry, then list again
    TRUNCATED = "truncated"  # a complete HTTP body whose gzip stream ends early
    UNDECODABLE = "undecodable"  # not valid gzip: the same bytes will come again
    TOO_LARGE = "too_large"  # inflates past siem_max_file_bytes
    REFUSED = "refused"  # a link we will not fetch (not https, not a URL)


class FileError(CollectorError):
    def __init__(self, failure: FileFailure, message: str, *, status: int | None = None) -> None:
        self.failure = failure
        self.status = status
        super().__init__(message)


def link_problem(url: str) -> str | None:
    """Why ``url`` must not be fetched, or None. https always; http only to a loopback host."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return "not a URL"
    if parts.scheme == "https" and host:
        return None
    if parts.scheme == "http" and host and _loopback(host):
        return None
    return f"scheme {parts.scheme or '(none)'!r} to {host or '(no host)'}: only https links are fetched"


def link_name(url: str) -> str:
    """The link without its query string (the pre-signature): safe for logs, stable across re-listings."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(not a URL)"
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"[:300]


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class FileHost:
    """Fetches batch files for one account: its proxy and TLS settings, none of its credentials."""

    def __init__(self, account: AccountConfig, session: aiohttp.ClientSession) -> None:
        self._account = account
        self._session = session
        self._ssl = tls_setting(account)
        # No total budget: a 500 MB file takes as long as it takes. Silence is what is bounded.
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=account.connect_timeout_secs, sock_read=account.request_timeout_secs
        )

    async def lines(self, url: str) -> AsyncGenerator[tuple[bytes, bool]]:
        """Each line of the file at ``url`` (without its newline) and whether it was cut at the line cap."""
        async with contextlib.aclosing(self.batches(url)) as batches:
            async for batch in batches:
                for line in batch:
                    yield line

    async def batches(self, url: str) -> AsyncGenerator[list[tuple[bytes, bool]]]:
        """:meth:`lines`, a list at a time (the lines completed by one inflated piece): one step of the
        async generator per piece instead of per line, which costs about as much as a line."""
        problem = link_problem(url)
        if problem is not None:
            raise FileError(FileFailure.REFUSED, f"batch file link refused: {problem}")
        try:
            async with self._session.get(
                url,
                headers={"Accept": "*/*", "Accept-Encoding": "identity"},  # we inflate, in bounded steps
                timeout=self._timeout,
                ssl=self._ssl,
                proxy=self._account.proxy,
                allow_redirects=False,
                auto_decompress=False,
            ) as response:
                status = response.status
                if status != 200:
                    raise _status_error(status)
                splitter = _Lines(self._account.siem_max_line_bytes)
                inflater: _Gunzip | None = None
                first = True
                total = 0
                async for chunk in response.content.iter_chunked(READ_CHUNK_BYTES):
                    if first:
                        first = False
                        # gzip as documented; a host that already inflated it (Content-Encoding honoured
                        # by a proxy) sends the NDJSON itself, which is read as it is.
                        inflater = _Gunzip() if chunk[:2] == _GZIP_MAGIC else None
                    for piece in inflater.feed(chunk) if inflater is not None else (chunk,):
                        total += len(piece)
                        if total > self._account.siem_max_file_bytes:
                            raise FileError(
                                FileFailure.TOO_LARGE,
                                f"batch file inflates past siem_max_file_bytes ({self._account.siem_max_file_bytes})",
                            )
                        batch = splitter.feed(piece)
                        if batch:
                            yield batch
                        await anyio.lowlevel.checkpoint()
                if inflater is not None and not inflater.ended:
                    raise FileError(FileFailure.TRUNCATED, "batch file's gzip stream ends early (truncated)")
                last = splitter.finish()
                if last:
                    yield last
        except FileError:
            raise
        except zlib.error as exc:
            raise FileError(FileFailure.UNDECODABLE, f"batch file is not valid gzip: {exc}") from None
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:  # includes a body cut short
            text = f"{type(exc).__name__}: {exc}".strip(": ")[:200]
            raise FileError(FileFailure.TRANSIENT, f"batch file download failed: {text}") from None


def _status_error(status: int) -> FileError:
    if status in REDIRECT_STATUSES:
        return FileError(FileFailure.EXPIRED, f"file host answered with a redirect (HTTP {status}), not followed")
    if status in EXPIRED_STATUSES:
        return FileError(FileFailure.EXPIRED, f"batch file link expired or refused (HTTP {status})", status=status)
    return FileError(FileFailure.TRANSIENT, f"file host answered HTTP {status}", status=status)


class _Gunzip:
    """gzip (one or more members, as concatenated files are) inflated in bounded pieces."""

    def __init__(self) -> None:
        self._decoder = zlib.decompressobj(_WBITS)

    @property
    def ended(self) -> bool:
        return bool(self._decoder.eof)

    def feed(self, data: bytes) -> Iterator[bytes]:
        while True:
            if self._decoder.eof:
                if not data:
                    return
                self._decoder = zlib.decompressobj(_WBITS)  # another member follows
            piece = self._decoder.decompress(data, INFLATE_STEP_BYTES)
            data = self._decoder.unused_data if self._decoder.eof else self._decoder.unconsumed_tail
            if piece:
                yield piece
            if not data and len(piece) < INFLATE_STEP_BYTES:
                return  # this chunk is used up and zlib holds nothing more back


class _Lines:
    """Bytes in, complete lines out; a line past ``max_bytes`` comes out cut, once, its rest skipped."""

    def __init__(self, max_bytes: int) -> None:
        self._max = max_bytes
        self._pending = bytearray()
        self._skipping = False  # inside the rest of a line already cut

    def feed(self, data: bytes) -> list[tuple[bytes, bool]]:
        """The lines ``data`` completes, in order."""
        parts = data.split(b"\n")
        last = parts.pop()
        out: list[tuple[bytes, bool]] = []
        limit = self._max
        if parts and (self._skipping or self._pending):  # the first part ends a line begun earlier
            first = parts[0]
            parts[0] = b""  # dealt with here; an empty part yields nothing below
            if self._skipping:
                self._skipping = False
            else:
                self._pending += first
                line = bytes(self._pending)
                if len(line) > limit:
                    out.append((line[:limit], True))
                elif not line.isspace():  # isspace: the same test as strip(), without a copy
                    out.append((line, False))
            self._pending.clear()
        for line in parts:
            if len(line) > limit:
                out.append((line[:limit], True))
            elif line and not line.isspace():
                out.append((line, False))
        if not self._skipping:
            self._pending += last
            if len(self._pending) > limit:
                out.append((bytes(self._pending[:limit]), True))
                self._pending.clear()
                self._skipping = True
        return out

    def finish(self) -> list[tuple[bytes, bool]]:
        """The last line, when the file does not end with a newline."""
        line = bytes(self._pending)
        skipped = self._skipping
        self._pending.clear()
        return [(line, False)] if line and not line.isspace() and not skipped else []
