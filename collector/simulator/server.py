"""A loopback Mimecast API that checks everything the real one checks, and can misbehave on demand.

It verifies HMAC signatures exactly (date, fresh request id, path, app key) or OAuth2 bearer tokens,
validates request bodies and date formats, paginates with opaque tokens bound to the query, meters
calls per (credentials, endpoint) with ``x-ratelimit-*`` headers and 429s, and injects faults
(5xx, HTML error pages, truncated bodies, connection resets, slow answers) at a seeded rate.
Everything it saw is counted in :class:`SimStats`, so tests can assert "zero 429s", "zero
signature failures", "no request id reused".
"""

from __future__ import annotations

import base64
import hmac
import json
import random
import secrets
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import anyio
import orjson
from aiohttp import web

from collector.api.auth import hmac_signature
from collector.simulator.data import ENDPOINTS, Endpoint, SimRecord
from collector.simulator.paging import PageTokens, RecordIndex, TokenError, parse_query
from collector.simulator.siem import SIEM_PATH, SiemFeed, SiemRequestError
from collector.simulator.siem_batch import BatchSim
from collector.timeutil import parse_hmac_date

FAULT_KINDS = ("500", "503_html", "truncated", "reset", "slow", "retryable_fail")


@dataclass
class SimSettings:
    access_key: str = "mc-access-key-sim"
    secret_key: str = base64.b64encode(b"simulator-secret-key-0123456789ab").decode()
    app_id: str = "00000000-0000-4000-8000-0000000a9901"
    app_key: str = "mc-app-key-sim"
    client_id: str = "sim-client-id"
    client_secret: str = "sim-client-secret-value"  # noqa: S105 - the simulator's own test value
    token_lifetime_secs: float = 1799.0
    # Calls per window per (credentials, endpoint); None = unmetered, no headers. The default is the
    # one figure reported publicly (10,000 an hour on the SIEM endpoint).
    rate_limit: int | None = 10_000
    rate_window_ms: int = 3_600_000
    send_retry_after: bool = False
    headers_only_on_429: bool = False  # as Mimecast reportedly does: no x-ratelimit-* until throttled
    max_page_size: int = 500
    page_token_ttl_secs: float | None = None
    fault_rate: float = 0.0
    faults: tuple[str, ...] = FAULT_KINDS
    slow_secs: float = 1.5
    latency_secs: float = 0.0
    trailing_empty_page: bool = False  # after the last page, hand out one more token to an empty page
    exclusive_start: bool = False  # treat `from`/`start` as exclusive (the API does not document which)
    exclusive_end: bool = False  # treat `to`/`end` as exclusive
    # Every Nth call that presents a page token (0 = never): deterministic, so tests can count on it.
    expire_token_every: int = 0  # ... is told its token expired
    repeat_token_every: int = 0  # ... is answered with the very token it presented
    max_clock_skew_secs: float = 900.0
    # Endpoint paths that answer 404 as if this account's API did not have them (the archive search
    # path differs between sources; this tests the fallback to the other one).
    missing_paths: tuple[str, ...] = ()
    # HMAC accounts served (scale benchmarks): account i > 0 signs with access key account_key(i) and the
    # same secret, and has rate-limit buckets of its own; every account sees the same records.
    accounts: int = 1
    seed: int = 0

    def account_key(self, i: int) -> str:
        """The access key of account ``i`` (0: ``access_key`` itself)."""
        return self.access_key if i == 0 else f"{self.access_key}-{i}"


@dataclass
class SimStats:
    calls: Counter[tuple[str, int]] = field(default_factory=Counter)  # (path, status)
    throttled: int = 0
    bad_auth: Counter[str] = field(default_factory=Counter)  # reason -> count
    bad_request: Counter[str] = field(default_factory=Counter)
    reused_request_ids: int = 0
    tokens_issued: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    records_served: Counter[str] = field(default_factory=Counter)

    call_log: list[tuple[float, str, int]] = field(default_factory=list)  # (monotonic time, path, status)

    def calls_to(self, path: str) -> int:
        return sum(n for (p, _), n in self.calls.items() if p == path)


@dataclass
class _Bucket:
    started_ms: float = 0.0
    used: int = 0


class FakeMimecast:
    def __init__(self, settings: SimSettings | None = None) -> None:
        self.settings = settings or SimSettings()
        self.stats = SimStats()
        self.index: dict[str, RecordIndex] = {endpoint.log_type: RecordIndex() for endpoint in ENDPOINTS.values()}
        self._tokens = PageTokens(secrets.token_bytes(16))
        self.siem = SiemFeed()  # API 1.0 SIEM files and their token chain
        self._rng = random.Random(self.settings.seed)
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._access_keys = frozenset(self.settings.account_key(i) for i in range(max(1, self.settings.accounts)))
        self._bearer: dict[str, float] = {}
        self.issued_tokens: list[str] = []
        self.seen_authorizations: list[str] = []  # so tests can prove none of them is ever logged
        self._request_ids: set[str] = set()
        self._faults_injected = 0
        self._paged_calls = 0
        self._storm_until = 0.0
        self._storm_reset_ms = 1000
        self._runner: web.AppRunner | None = None
        self.base_url = ""
        self.batch = BatchSim(self)  # SIEM batch listings here, their files on a second port

    # --- control ------------------------------------------------------------------------------------

    def add(self, log_type: str, records: list[SimRecord]) -> None:
        self.index[log_type].add(records)

    def set_rate_limit(self, limit: int | None, window_ms: int | None = None) -> None:
        self.settings.rate_limit = limit
        if window_ms is not None:
            self.settings.rate_window_ms = window_ms

    def throttle_everything(self, secs: float, reset_ms: int = 1000) -> None:
        """A 429 storm: every call is throttled for ``secs``, each 429 saying "reset in reset_ms"."""
        self._storm_until = time.monotonic() + secs
        self._storm_reset_ms = reset_ms

    def expire_page_tokens(self) -> None:
        """Every page token handed out so far answers "expired" from now on."""
        self._tokens.revoked_before = time.time()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1024 * 1024)
        app.router.add_post("/oauth/token", self._token)
        for path in ENDPOINTS:
            app.router.add_post(path, self._logs)
        app.router.add_post(SIEM_PATH, self._siem_logs)
        self.batch.routes(app)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        host_, port_ = self._runner.addresses[0][:2]
        self.base_url = f"http://{host_}:{port_}"
        await self.batch.start(host)
        return self.base_url

    async def stop(self) -> None:
        await self.batch.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- handlers -----------------------------------------------------------------------------------

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        s = self.settings
        if form.get("grant_type") != "client_credentials":
            return _json(400, {"error": "unsupported_grant_type"})
        if form.get("client_id") != s.client_id or form.get("client_secret") != s.client_secret:
            self.stats.bad_auth["client_credentials"] += 1
            return _json(401, {"error": "invalid_client"})
        token = secrets.token_urlsafe(24)
        self._bearer[token] = time.monotonic() + s.token_lifetime_secs
        self.issued_tokens.append(token)
        self.stats.tokens_issued += 1
        return _json(
            200, {"access_token": token, "token_type": "Bearer", "expires_in": s.token_lifetime_secs, "scope": ""}
        )

    async def _logs(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        endpoint = ENDPOINTS[path]
        if path in self.settings.missing_paths:  # before authentication, as a router answers
            self.stats.calls[(path, 404)] += 1
            self.stats.call_log.append((time.monotonic(), path, 404))
            return web.Response(status=404, text="404: Not Found")
        if self.settings.latency_secs:
            await anyio.sleep(self.settings.latency_secs)
        who, problem = self._authenticate(request)
        if problem is not None:
            self.stats.bad_auth[problem] += 1
            return self._answer(
                path,
                401,
                _fail(
                    "err_xdk_invalid_signature" if who == "hmac" else "err_xdk_unauthorized",
                    f"Unauthorized: {problem}",
                    retryable=False,
                ),
            )
        try:
            raw = await request.read()
        except ConnectionError:  # the client gave up (e.g. timed out) before sending everything
            return web.Response(status=499)
        fault = self._pick_fault()
        if fault in ("500", "503_html", "reset", "retryable_fail"):
            return await self._fault(request, path, fault)
        if fault == "slow":
            self.stats.faults[fault] += 1
            await anyio.sleep(self.settings.slow_secs)
        throttled, rate_headers = self._meter(self._owner(request, who), path)
        if throttled:
            self.stats.throttled += 1
            return self._answer(
                path, 429, _fail("err_xdk_rate_limit_exceeded", "Quota exceeded", retryable=True), rate_headers
            )
        try:
            body = orjson.loads(raw)
            query = parse_query(body, endpoint, self.settings.max_page_size)
            page = self._page(endpoint, query)
        except (orjson.JSONDecodeError, ValueError, TokenError) as exc:
            code = exc.code if isinstance(exc, TokenError) else "err_validation_failed"
            self.stats.bad_request[code if isinstance(exc, TokenError) else str(exc)[:80]] += 1
            return self._answer(path, 400, _fail(code, str(exc), retryable=False), rate_headers)
        try:
            payload = orjson.dumps(page)
        except orjson.JSONEncodeError:  # e.g. a test's record with a lone surrogate: JSON escapes it
            payload = json.dumps(page).encode()
        if fault == "truncated":
            self.stats.faults[fault] += 1
            payload = payload[: max(1, len(payload) // 2)]
        return self._answer(path, 200, payload, rate_headers)

    async def _siem_logs(self, request: web.Request) -> web.StreamResponse:
        """API 1.0 SIEM: the same authentication, metering and faults as the paged endpoints."""
        path = request.path
        if self.settings.latency_secs:
            await anyio.sleep(self.settings.latency_secs)
        who, problem = self._authenticate(request)
        if problem is not None:
            self.stats.bad_auth[problem] += 1
            code = "err_xdk_invalid_signature" if who == "hmac" else "err_xdk_unauthorized"
            return self._answer(path, 401, _fail(code, f"Unauthorized: {problem}", retryable=False))
        try:
            raw = await request.read()
        except ConnectionError:
            return web.Response(status=499)
        fault = self._pick_fault()
        if fault in ("500", "503_html", "reset", "retryable_fail"):
            return await self._fault(request, path, fault)
        throttled, rate_headers = self._meter(self._owner(request, who), path)
        if throttled:
            self.stats.throttled += 1
            return self._answer(
                path, 429, _fail("err_xdk_rate_limit_exceeded", "Quota exceeded", retryable=True), rate_headers
            )
        try:
            answer = self.siem.answer(orjson.loads(raw))
        except (orjson.JSONDecodeError, SiemRequestError) as exc:
            code = exc.code if isinstance(exc, SiemRequestError) else "err_validation_failed"
            self.stats.bad_request[code] += 1
            return self._answer(path, 400, _fail(code, str(exc), retryable=False), rate_headers)
        payload = answer.body
        if fault == "truncated":
            self.stats.faults[fault] += 1
            payload = payload[: max(1, len(payload) // 2)]
        self.stats.calls[(path, answer.status)] += 1
        self.stats.call_log.append((time.monotonic(), path, answer.status))
        self.stats.records_served["siem"] = self.siem.records_served
        headers = {**rate_headers, **answer.headers}
        return web.Response(status=answer.status, body=payload, content_type=answer.content_type, headers=headers)

    # --- parts ----------------------------------------------------------------------------------------

    def _authenticate(self, request: web.Request) -> tuple[str, str | None]:
        header = request.headers.get("Authorization", "")
        self.seen_authorizations.append(header)
        if header.startswith("Bearer "):
            expires = self._bearer.get(header[7:])
            if expires is None:
                return "oauth2", "unknown bearer token"
            if time.monotonic() >= expires:
                return "oauth2", "expired bearer token"
            return "oauth2", None
        return "hmac", self._check_hmac(request, header)

    def _check_hmac(self, request: web.Request, header: str) -> str | None:
        s = self.settings
        date, request_id = request.headers.get("x-mc-date"), request.headers.get("x-mc-req-id")
        if not header.startswith("MC ") or ":" not in header or not date or not request_id:
            return "missing HMAC headers"
        if request.headers.get("x-mc-app-id") != s.app_id:
            return "wrong x-mc-app-id"
        try:
            skew = abs(parse_hmac_date(date).timestamp() - time.time())
            uuid.UUID(request_id)
        except ValueError:
            return "malformed x-mc-date or x-mc-req-id"
        if skew > s.max_clock_skew_secs:
            return "x-mc-date too far from the server clock"
        if request_id in self._request_ids:
            self.stats.reused_request_ids += 1
            return "x-mc-req-id reused"
        self._request_ids.add(request_id)
        access_key, signature = header[3:].split(":", 1)
        expected = hmac_signature(s.secret_key, date, request_id, request.path, s.app_key)
        if access_key not in self._access_keys or not hmac.compare_digest(signature, expected):
            return "signature mismatch"
        return None

    def _owner(self, request: web.Request, who: str) -> str:
        """Whose rate-limit buckets an authenticated call counts against: its auth kind, or for the
        accounts after the first (SimSettings.accounts), its access key."""
        header = request.headers.get("Authorization", "")
        if who != "hmac" or self.settings.accounts <= 1:
            return who
        access_key = header[3:].split(":", 1)[0]
        return who if access_key == self.settings.access_key else f"hmac:{access_key}"

    def _pick_fault(self) -> str | None:
        """Whether to misbehave is random (seeded); which way goes round the list, so all kinds occur."""
        if self.settings.fault_rate and self._rng.random() < self.settings.fault_rate:
            kind = self.settings.faults[self._faults_injected % len(self.settings.faults)]
            self._faults_injected += 1
            return kind
        return None

    async def _fault(self, request: web.Request, path: str, fault: str) -> web.StreamResponse:
        self.stats.faults[fault] += 1
        if fault == "reset":
            assert request.transport is not None
            request.transport.abort()
            self.stats.calls[(path, 0)] += 1
            return web.Response()
        if fault == "503_html":
            self.stats.calls[(path, 503)] += 1
            return web.Response(
                status=503,
                content_type="text/html",
                text="<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>",
            )
        if fault == "500":
            return self._answer(path, 500, _fail("err_server", "Internal Server Error", retryable=True))
        return self._answer(path, 200, _fail("err_backend_unavailable", "Try again later", retryable=True))

    def _meter(self, who: str, path: str) -> tuple[bool, dict[str, str]]:
        s = self.settings
        now = time.monotonic()
        if now < self._storm_until:
            return True, {
                "x-ratelimit-limit": str(s.rate_limit or 1000),
                "x-ratelimit-remaining": "0",
                "x-ratelimit-reset": str(self._storm_reset_ms),
            }
        if s.rate_limit is None:
            return False, {}
        bucket = self._buckets.setdefault((who, path), _Bucket(started_ms=now * 1000))
        now_ms = now * 1000
        if now_ms >= bucket.started_ms + s.rate_window_ms:
            bucket.started_ms, bucket.used = now_ms, 0
        reset_ms = int(bucket.started_ms + s.rate_window_ms - now_ms)
        throttled = bucket.used >= s.rate_limit
        if not throttled:
            bucket.used += 1
        headers = {
            "x-ratelimit-limit": str(s.rate_limit),
            "x-ratelimit-remaining": str(max(0, s.rate_limit - bucket.used)),
            "x-ratelimit-reset": str(max(0, reset_ms)),
        }
        if throttled and s.send_retry_after:
            headers["Retry-After"] = str(max(1, -(-reset_ms // 1000)))
        if s.headers_only_on_429 and not throttled:
            return False, {}
        return throttled, headers

    def _page(self, endpoint: Endpoint, query: dict[str, Any]) -> dict[str, Any]:
        token = query["page_token"]
        position, trap = None, False
        repeat = False
        if token is not None:
            position, trap = self._tokens.open(token, query["binding"], self.settings.page_token_ttl_secs)
            self._paged_calls += 1
            if _every(self._paged_calls, self.settings.expire_token_every):
                self.stats.faults["expired_token"] += 1
                raise TokenError("err_page_token_expired", "pageToken has expired")
            repeat = _every(self._paged_calls, self.settings.repeat_token_every)
        if trap:  # the empty last page some deployments answer, still carrying a token
            return {"meta": {"status": 200, "pagination": {"pageSize": 0, "next": "String"}}, "data": [], "fail": []}
        records, last_key, more, total = self.index[endpoint.log_type].query(
            query, position, exclusive_start=self.settings.exclusive_start, exclusive_end=self.settings.exclusive_end
        )
        self.stats.records_served[endpoint.log_type] += len(records)
        pagination: dict[str, Any] = {"pageSize": len(records), "totalCount": total}
        if repeat:
            self.stats.faults["repeated_token"] += 1
            pagination["next"] = token  # a buggy backend handing back the token it was given
        elif more and last_key is not None:
            pagination["next"] = self._tokens.issue(last_key, query["binding"])
        elif self.settings.trailing_empty_page and records and last_key is not None:
            pagination["next"] = self._tokens.issue(last_key, query["binding"], trap=True)
        if endpoint.array_key is None:
            return {"meta": {"status": 200, "pagination": pagination}, "data": records, "fail": []}
        element: dict[str, Any] = {endpoint.array_key: records}
        if endpoint.log_type == "ttp_impersonation":
            element["resultCount"] = len(records)
        return {"meta": {"status": 200, "pagination": pagination}, "data": [element], "fail": []}

    def _answer(
        self, path: str, status: int, body: bytes | dict[str, Any], headers: dict[str, str] | None = None
    ) -> web.Response:
        self.stats.calls[(path, status)] += 1
        self.stats.call_log.append((time.monotonic(), path, status))
        raw = body if isinstance(body, bytes) else orjson.dumps(body)
        return web.Response(status=status, body=raw, content_type="application/json", headers=headers or {})


def _every(count: int, every: int) -> bool:
    return every > 0 and count % every == 0


def _fail(code: str, message: str, *, retryable: bool) -> dict[str, Any]:
    return {
        "meta": {"status": 0},
        "data": [],
        "fail": [{"errors": [{"code": code, "message": message, "retryable": retryable}]}],
    }


def _json(status: int, body: dict[str, Any]) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")
