"""The SIEM batch side of the simulator: the API 2.0 listing and a second loopback "file host".

The listing (``GET /siem/v1/batch/events/{cg,ci}``, OAuth2 only, paced and faulted like every
simulated endpoint) answers ``{"value": [{"url", "size", "expiry"}], "@nextPage", "isCaughtUp"}``
with pre-signed links to the file host. The file host serves gzip NDJSON by those links only while
they are valid (403 after ``link_ttl_secs`` or once revoked), and REJECTS any request that carries
an ``Authorization`` header (400, counted): the collector must never send its bearer token there.

Faults, deterministic so tests can count on them: every Nth first download served as a truncated
gzip (a complete HTTP body, half the gzip stream), every Nth first download cut mid-body with its
link expired at that moment, every Nth listing call with a token answered by an empty page that still
carries a next token (``isCaughtUp: false``). Tests may also add hostile files (raw bytes, endless).
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from collector.simulator.siem_data import siem_records

if TYPE_CHECKING:
    from collector.simulator.server import FakeMimecast

FAMILIES = {
    "cg": (
        "receipt",
        "process",
        "delivery",
        "av",
        "spam",
        "internal email protect",
        "impersonation protect",
        "url protect",
        "attachment protect",
        "journal",
    ),
    "ci": ("entities", "mailflow", "urlclick"),
}
BATCH_PATHS = {f"/siem/v1/batch/events/{family}": family for family in FAMILIES}
MAX_LISTING_PAGE = 100


@dataclass
class BatchSettings:
    link_ttl_secs: float = 600.0
    truncate_every: int = 0  # every Nth first download of a file is a truncated gzip (0 = never)
    cut_every: int = 0  # every Nth first download is cut mid-body and its link expires then
    empty_page_every: int = 0  # every Nth listing call with a token: empty page, fresh token, not caught up
    chunk_delay_secs: float = 0.0  # a slow file host: this pause after every 16 KiB sent
    # type -> the exact body its listing answers (200), for hostile-answer tests
    listing_bodies: dict[str, bytes] = field(default_factory=dict)


@dataclass
class BatchStats:
    listing_calls: int = 0
    file_requests: int = 0
    with_authorization: int = 0  # refused: the collector must never send these
    with_cookie: int = 0
    with_proxy_authorization: int = 0
    expired: int = 0  # 403 answers (expired, revoked or forged links)
    truncated: int = 0
    cut: int = 0
    empty_pages: int = 0
    served: dict[str, int] = field(default_factory=dict)  # file id -> complete downloads


@dataclass
class SimBatchFile:
    id: str
    family: str
    kind: str
    day: str
    lines: list[bytes] | None = None  # NDJSON lines, gzipped on first download
    body: bytes | None = None  # exact bytes to serve (hostile files), or the gzip of `lines`
    path: Path | None = None  # a gzip file on disk (benchmarks: too large to hold)
    endless: bool = False  # a body that never ends (hostile)
    records: list[dict[str, Any]] = field(default_factory=list)
    faulted: bool = False  # a fault was served for it once; it is served whole from then on

    def data(self) -> bytes:
        if self.body is None:
            assert self.lines is not None
            self.body = gzip.compress(b"".join(line + b"\n" for line in self.lines), compresslevel=5, mtime=0)
        return self.body

    def size(self) -> int:
        if self.path is not None:
            return self.path.stat().st_size
        return 0 if self.endless else len(self.data())


class BatchSim:
    """Listing routes on the API simulator, and the file host on a second loopback port."""

    def __init__(self, api: FakeMimecast) -> None:
        self._api = api
        self.settings = BatchSettings()
        self.stats = BatchStats()
        self.files: dict[tuple[str, str], list[SimBatchFile]] = {}
        self._key = secrets.token_bytes(16)
        self._revoked_before = 0.0
        self._revoked: set[str] = set()
        self._first_downloads = 0
        self._paged_calls = 0
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    # --- control ------------------------------------------------------------------------------------

    def add_records(self, family: str, kind: str, day: str, records: Iterable[dict[str, Any]]) -> SimBatchFile:
        """One file of ``records`` (dicts) for ``kind``, listed under ``day`` (YYYY-MM-DD)."""
        kept = list(records)
        batch_file = self._add(family, kind, day, lines=[orjson.dumps(r) for r in kept])
        batch_file.records = kept
        return batch_file

    def add_generated(self, family: str, kind: str, day: str, count: int, *, start: int, end: int) -> SimBatchFile:
        """A file of ``count`` generated records; every file added gets records of its own."""
        seed = sum(len(listed) for listed in self.files.values())
        return self.add_records(family, kind, day, siem_records(kind, count, start=start, end=end, seed=seed))

    def add_raw(self, family: str, kind: str, day: str, body: bytes) -> SimBatchFile:
        """A file served exactly as ``body`` (garbage, huge lines...)."""
        return self._add(family, kind, day, body=body)

    def add_endless(self, family: str, kind: str, day: str) -> SimBatchFile:
        return self._add(family, kind, day, endless=True)

    def add_path(self, family: str, kind: str, day: str, path: Path) -> SimBatchFile:
        return self._add(family, kind, day, path=path)

    def expire_links(self) -> None:
        """Every link handed out so far answers 403 from now on."""
        self._revoked_before = time.time()

    def _add(self, family: str, kind: str, day: str, **what: Any) -> SimBatchFile:
        if kind not in FAMILIES[family]:
            raise ValueError(f"{kind!r} is not a {family} type")
        listed = self.files.setdefault((family, kind), [])
        batch_file = SimBatchFile(
            id=f"{family}-{kind.replace(' ', '_')}-{len(listed):05d}", family=family, kind=kind, day=day, **what
        )
        listed.append(batch_file)
        listed.sort(key=lambda f: f.day)  # the listing is in day order, stable within a day
        return batch_file

    # --- servers ------------------------------------------------------------------------------------

    def routes(self, app: web.Application) -> None:
        for path in BATCH_PATHS:
            app.router.add_get(path, self._listing)

    async def start(self, host: str = "127.0.0.1") -> str:
        app = web.Application()
        app.router.add_get("/files/{id}", self._file)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, 0)
        await site.start()
        host_, port_ = self._runner.addresses[0][:2]
        self.base_url = f"http://{host_}:{port_}"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- the listing ----------------------------------------------------------------------------------

    async def _listing(self, request: web.Request) -> web.StreamResponse:
        api, path = self._api, request.path
        family = BATCH_PATHS[path]
        self.stats.listing_calls += 1
        who, problem = api._authenticate(request)
        if problem is None and who != "oauth2":
            problem = "API 2.0 needs an OAuth2 bearer token"
        if problem is not None:
            api.stats.bad_auth[problem] += 1
            return api._answer(path, 401, _fail("unauthorized", f"Unauthorized: {problem}"))
        fault = api._pick_fault()
        if fault in ("500", "503_html", "reset", "retryable_fail"):
            return await api._fault(request, path, fault)
        throttled, rate_headers = api._meter(who, path)
        if throttled:
            api.stats.throttled += 1
            return api._answer(path, 429, _fail("rate_limited", "Over throttling limit"), rate_headers)
        query = request.query
        kind = query.get("type", "")
        try:
            if kind not in FAMILIES[family]:
                raise ValueError(f"type must be one of {', '.join(FAMILIES[family])}")
            size = int(query.get("pageSize", "25"))
            if not 1 <= size <= MAX_LISTING_PAGE:
                raise ValueError(f"pageSize must be between 1 and {MAX_LISTING_PAGE}")
            day = query.get("dateRangeStartsAt", "0000-00-00")
            token = query.get("nextPage")
            index = self._open_token(token, family, kind) if token else self._first_index(family, kind, day)
        except ValueError as exc:
            api.stats.bad_request[str(exc)[:80]] += 1
            return api._answer(path, 400, _fail("validation_failed", str(exc)), rate_headers)
        if kind in self.settings.listing_bodies:
            return api._answer(path, 200, self.settings.listing_bodies[kind], rate_headers)
        listed = self.files.get((family, kind), [])
        if token:
            self._paged_calls += 1
            if self.settings.empty_page_every and self._paged_calls % self.settings.empty_page_every == 0:
                self.stats.empty_pages += 1
                body = {"value": [], "@nextPage": self._token(family, kind, index), "isCaughtUp": False}
                return api._answer(path, 200, body, rate_headers)
        page = listed[index : index + size]
        after = index + len(page)
        body = {
            "value": [self._link(f) for f in page],
            "@nextPage": self._token(family, kind, after),
            "isCaughtUp": after >= len(listed),
        }
        return api._answer(path, 200, body, rate_headers)

    def _first_index(self, family: str, kind: str, day: str) -> int:
        for i, batch_file in enumerate(self.files.get((family, kind), [])):
            if batch_file.day >= day:
                return i
        return len(self.files.get((family, kind), []))

    def _token(self, family: str, kind: str, index: int) -> str:
        # A fresh nonce each time, as real tokens differ call to call even for one position.
        payload = orjson.dumps({"f": family, "t": kind, "i": index, "n": secrets.token_hex(4)})
        mac = hmac.new(self._key, payload, hashlib.sha256).digest()[:12]
        return base64.urlsafe_b64encode(payload + mac).decode()

    def _open_token(self, token: str, family: str, kind: str) -> int:
        try:
            raw = base64.urlsafe_b64decode(token.encode())
        except (ValueError, TypeError):
            raise ValueError("nextPage is not a token this API issued") from None
        payload, mac = raw[:-12], raw[-12:]
        if not hmac.compare_digest(mac, hmac.new(self._key, payload, hashlib.sha256).digest()[:12]):
            raise ValueError("nextPage is not a token this API issued")
        doc = json.loads(payload)
        if doc.get("f") != family or doc.get("t") != kind:
            raise ValueError("nextPage belongs to another type")
        return int(doc["i"])

    def _link(self, batch_file: SimBatchFile) -> dict[str, Any]:
        expires = time.time() + self.settings.link_ttl_secs
        issued = time.time()
        query = f"X-Amz-Date={issued:.6f}&X-Amz-Expires={expires:.6f}"
        signature = hmac.new(self._key, f"{batch_file.id}?{query}".encode(), hashlib.sha256).hexdigest()
        return {
            "url": f"{self.base_url}/files/{batch_file.id}?{query}&X-Amz-Signature={signature}",
            "size": batch_file.size(),
            "expiry": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires)),
        }

    # --- the file host ------------------------------------------------------------------------------

    async def _file(self, request: web.Request) -> web.StreamResponse:
        self.stats.file_requests += 1
        headers = request.headers
        if "Cookie" in headers:
            self.stats.with_cookie += 1
        if "Proxy-Authorization" in headers:
            self.stats.with_proxy_authorization += 1
        if "Authorization" in headers:  # as S3 does for a pre-signed URL: only one auth mechanism allowed
            self.stats.with_authorization += 1
            return web.Response(status=400, text="<Error><Code>InvalidArgument</Code></Error>")
        batch_file, link = self._check_link(request)
        if batch_file is None:
            self.stats.expired += 1
            return web.Response(
                status=403, text="<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>"
            )
        fault = self._file_fault(batch_file)
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/gzip"})
        if batch_file.endless:
            await response.prepare(request)
            chunk = gzip.compress(b'{"type":"receipt","timestamp":1}\n' * 4096, mtime=0)
            try:
                while True:  # until the client hangs up
                    await response.write(chunk)
            except ConnectionError:
                return response
        if batch_file.path is not None:
            response.content_length = batch_file.path.stat().st_size
            await response.prepare(request)
            with batch_file.path.open("rb") as handle:
                while block := handle.read(1 << 20):
                    await response.write(block)
            await response.write_eof()
            self.stats.served[batch_file.id] = self.stats.served.get(batch_file.id, 0) + 1
            return response
        data = batch_file.data()
        if fault == "truncated":
            self.stats.truncated += 1
            data = data[: max(1, len(data) // 2)]
        response.content_length = len(data)  # a cut body promises all of it and delivers half
        await response.prepare(request)
        if fault == "cut":
            self.stats.cut += 1
            await response.write(data[: len(data) // 2])
            self._revoked.add(link)  # the link expires mid-download
            assert request.transport is not None
            request.transport.abort()
            return response
        await self._send(response, data)
        await response.write_eof()
        if fault is None:
            self.stats.served[batch_file.id] = self.stats.served.get(batch_file.id, 0) + 1
        return response

    async def _send(self, response: web.StreamResponse, data: bytes) -> None:
        delay = self.settings.chunk_delay_secs
        if not delay:
            await response.write(data)
            return
        for at in range(0, len(data), 16 << 10):
            await response.write(data[at : at + (16 << 10)])
            await asyncio.sleep(delay)

    def _file_fault(self, batch_file: SimBatchFile) -> str | None:
        """The fault this download gets: only a file's first download may get one, once."""
        if batch_file.id in self.stats.served or batch_file.faulted:
            return None
        self._first_downloads += 1
        n = self._first_downloads
        fault = None
        if self.settings.truncate_every and n % self.settings.truncate_every == 0:
            fault = "truncated"
        elif self.settings.cut_every and n % self.settings.cut_every == 0:
            fault = "cut"
        batch_file.faulted = fault is not None
        return fault

    def _check_link(self, request: web.Request) -> tuple[SimBatchFile | None, str]:
        file_id = request.match_info["id"]
        query = request.query
        link = f"{file_id}?X-Amz-Date={query.get('X-Amz-Date', '')}&X-Amz-Expires={query.get('X-Amz-Expires', '')}"
        expected = hmac.new(self._key, link.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, query.get("X-Amz-Signature", "")):
            return None, link
        try:
            issued, expires = float(query["X-Amz-Date"]), float(query["X-Amz-Expires"])
        except (KeyError, ValueError):
            return None, link
        if time.time() >= expires or issued < self._revoked_before or link in self._revoked:
            return None, link
        for listed in self.files.values():
            for batch_file in listed:
                if batch_file.id == file_id:
                    return batch_file, link
        return None, link


def _fail(code: str, message: str) -> dict[str, Any]:
    return {"fail": [{"errors": [{"code": code, "message": message, "retryable": False}]}]}
