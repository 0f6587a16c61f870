"""The Mimecast API client: one paced, authenticated, classified, retried POST per page (or GET per
listing, or POST per SIEM file).

Only fatal errors leave :meth:`MimecastClient.fetch_page` (and its siblings); everything else is
retried here with exponential backoff and jitter, without limit, so a page is never skipped.
"""

from __future__ import annotations

import dataclasses
import functools
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import aiohttp
import anyio

from collector.api.answers import Page, parse_answer, parse_object, request_body
from collector.api.auth import Authenticator
from collector.api.body import ACCEPT_ENCODING, read_capped
from collector.api.errors import (
    ANSWER_TOO_LARGE,
    REDIRECT_STATUSES,
    Action,
    ApiError,
    redirect_error,
    rule_for_exception,
)
from collector.api.inflight import PageGate
from collector.api.limiter import PacingModel, RateHeaders, ServerWait, WaitCap
from collector.api.pacer import Pacer, PacerRegistry, Ticket
from collector.config.errors import CollectorError
from collector.config.model import AccountConfig
from collector.logs import get_logger, redact
from collector.service.telemetry import Telemetry
from collector.timeutil import backoff_secs
from collector.tls import client_context

__all__ = ["MimecastClient", "Page", "parse_answer", "parse_object", "request_body", "tls_setting"]
T = TypeVar("T")
THROTTLE_LOG_EVERY_SECS = 60.0
CAP_LOG_EVERY_SECS = 3600.0  # a server asking for absurd waits keeps doing so: say it once an hour


class MimecastClient:
    def __init__(
        self,
        account: AccountConfig,
        session: aiohttp.ClientSession,
        auth: Authenticator,
        pacers: PacerRegistry,
        telemetry: Telemetry,
        *,
        pages: PageGate | None = None,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self.account = account
        self._session = session
        self._auth = auth
        self._pacers = pacers
        self._pages = pages or PageGate()  # shared by every account's client in a collector
        self._telemetry = telemetry
        self._rng = rng or random.Random()
        self._sleep = sleep
        self._timeout = aiohttp.ClientTimeout(
            total=account.request_timeout_secs, sock_connect=account.connect_timeout_secs
        )
        self._ssl = tls_setting(account)
        self._throttle_logged: dict[str, float] = {}
        self._throttle_suppressed: dict[str, int] = {}
        self._cap_logged: dict[str, float] = {}
        self._cap_suppressed: dict[str, int] = {}
        self._log = get_logger(account=account.name)

    def page_done(self, stream: str) -> None:
        """The stream has committed (or has nothing more to fetch): its page permit goes back."""
        self._pages.leave(stream)

    @property
    def oauth2(self) -> bool:
        """Whether this account signs with OAuth2 (a 401 then means: refresh the token once)."""
        return self._auth.oauth2

    def pacer(self, path: str) -> Pacer:
        return self._pacers.get(
            self.account.credential_id,
            path,
            lambda: Pacer(
                PacingModel(
                    max_requests_per_minute=self.account.max_requests_per_minute,
                    max_wait_secs=self.account.max_wait_secs,
                ),
                on_cap=functools.partial(self._report_cap, path),
                on_wait=self._stream_waiting,
            ),
        )

    def _report_cap(self, path: str, cap: WaitCap) -> None:
        """Count every capped wait; warn once per endpoint per hour, saying what was asked and what is used."""
        self._telemetry.api_waits_capped.labels(self.account.name, path).inc()
        now = time.monotonic()
        last = self._cap_logged.get(path)
        if last is not None and now - last < CAP_LOG_EVERY_SECS:
            self._cap_suppressed[path] = self._cap_suppressed.get(path, 0) + 1
            return
        self._log.warning(
            "api_wait_capped",
            path=path,
            header=cap.header,
            asked_secs=round(cap.asked_secs, 3),
            used_secs=cap.used_secs,
            capped_since_last_report=self._cap_suppressed.pop(path, 0) + 1,
        )
        self._cap_logged[path] = now

    async def _stream_waiting(self, stream: str, wait: ServerWait | None, now: float) -> None:
        """Status, readiness and metrics learn that the server holds ``stream`` back, or no longer does."""
        account, _, log_type = stream.rpartition("/")  # "account/log_type": log type names have no "/"
        if wait is None:
            await self._telemetry.stream_waiting(account, log_type, None)
            return
        until = self._telemetry.clock() + max(0.0, wait.until - now)
        await self._telemetry.stream_waiting(account, log_type, until, wait.reason, wait.describe())

    async def fetch_page(
        self,
        stream: str,
        path: str,
        array_key: str | None,
        data: Mapping[str, Any],
        *,
        page_size: int,
        page_token: str | None,
        on_retry: Callable[[ApiError], Awaitable[None]] | None = None,
    ) -> Page:
        """One page; retries everything that is not fatal. Raises :class:`ApiError` (fatal only)."""
        size = page_size
        parse = functools.partial(parse_answer, array_key=array_key, oauth2=self._auth.oauth2)

        def attempt() -> Awaitable[Page]:
            return self._attempt(stream, path, parse, body=request_body(data, size, page_token))

        def shrink(error: ApiError) -> None:
            nonlocal size
            size = self._smaller_page(stream, path, size, error)

        page = await self._with_retries(stream, path, attempt, on_retry, on_too_large=shrink)
        return dataclasses.replace(page, page_size=size)

    async def get_object(
        self,
        stream: str,
        path: str,
        params: Mapping[str, str],
        *,
        on_retry: Callable[[ApiError], Awaitable[None]] | None = None,
    ) -> dict[str, Any]:
        """One GET answered by a JSON object (the API 2.0 SIEM batch listing), paced, classified and
        retried like a page. Raises :class:`ApiError` (fatal only)."""
        parse = functools.partial(parse_object, oauth2=self._auth.oauth2)
        return await self._with_retries(
            stream, path, lambda: self._attempt(stream, path, parse, params=params), on_retry
        )

    async def post_for_file(
        self,
        stream: str,
        path: str,
        body: bytes,
        parse: Callable[[int, Mapping[str, str], bytes], T],
        *,
        accept: str,
        on_retry: Callable[[ApiError], Awaitable[None]] | None = None,
    ) -> T:
        """One POST answered by a file or a JSON status (API 1.0 SIEM): ``parse`` also reads the
        headers (file name, next token). Paced, classified and retried like a page; an answer over
        max_response_bytes is fatal (a file cannot be asked for in halves). Raises :class:`ApiError`."""
        return await self._with_retries(
            stream,
            path,
            lambda: self._attempt(stream, path, parse, body=body, accept=accept, with_headers=True),
            on_retry,
        )

    async def _with_retries(
        self,
        stream: str,
        path: str,
        attempt: Callable[[], Awaitable[T]],
        on_retry: Callable[[ApiError], Awaitable[None]] | None,
        *,
        on_too_large: Callable[[ApiError], None] | None = None,
    ) -> T:
        """Run ``attempt`` until it answers or fails fatally: the one retry loop of every API call."""
        attempt_no, refreshed = 0, False
        while True:
            try:
                return await attempt()
            except ApiError as error:
                if error.action is Action.TOO_LARGE:
                    if on_too_large is None:  # nothing to ask for in smaller pieces
                        raise ApiError(
                            Action.FATAL,
                            str(error),
                            code=ANSWER_TOO_LARGE,
                            hint=f"raise max_response_bytes (now {self.account.max_response_bytes}) for this account",
                        ) from None
                    on_too_large(error)
                    continue
                if error.action is Action.FATAL or (error.action is Action.AUTH_REFRESH and refreshed):
                    if error.action is Action.AUTH_REFRESH:
                        error = ApiError(
                            Action.FATAL,
                            str(error),
                            status=error.status,
                            code=error.code,
                            hint="a freshly issued OAuth2 token was rejected; check the app's permissions",
                        )
                    raise error from None
                if error.action is Action.AUTH_REFRESH:
                    refreshed = True
                    self._auth.invalidate()
                    self._log.info("oauth_token_rejected", stream=stream, path=path)
                    continue
                if error.action is Action.RATE_LIMITED:
                    self._report_throttle(stream, path, error)
                    continue  # the pacer keeps the gate shut until the reset has passed
                attempt_no += 1
                delay = backoff_secs(attempt_no, self.account.retry_max_secs, self._rng)
                self._telemetry.api_retries.labels(self.account.name, path).inc()
                self._log.warning(
                    "api_retry",
                    stream=stream,
                    path=path,
                    attempt=attempt_no,
                    delay_secs=round(delay, 2),
                    error=redact(error.summary()),
                )
                if on_retry is not None:
                    await on_retry(error)
                await self._sleep(delay)

    def _smaller_page(self, stream: str, path: str, page_size: int, error: ApiError) -> int:
        """Half the page size after an oversize answer; fatal once a single record is too large."""
        if page_size <= 1:
            raise ApiError(
                Action.FATAL,
                f"{error}, even for a page of one record",
                code=ANSWER_TOO_LARGE,
                hint=f"raise max_response_bytes (now {self.account.max_response_bytes}) for this account",
            ) from None
        smaller = page_size // 2
        self._log.warning("api_page_shrunk", stream=stream, path=path, page_size=smaller, error=redact(str(error)))
        return smaller

    async def _attempt(
        self,
        stream: str,
        path: str,
        parse: Callable[..., T],
        *,
        body: bytes | None = None,
        params: Mapping[str, str] | None = None,
        accept: str = "application/json",
        with_headers: bool = False,
    ) -> T:
        """One paced, authenticated call: a POST of ``body``, or a GET with ``params``. ``parse`` gets
        (status, body), or (status, headers, body) ``with_headers``."""
        # A stream never waits for the pacer holding a page permit (one that did could block the
        # permits' holders, which wait on nothing but the commit): a new call means the last page is
        # done with. Strategies that call twice before committing (a listing, then its files) hold a
        # small listing meanwhile, not a page.
        self._pages.leave(stream)
        async with self.pacer(path).slot(stream) as ticket:
            try:
                await self._pages.enter(stream)  # after the pacer's wait: see collector/api/inflight.py
            except BaseException:
                ticket.abandon()
                raise
            try:
                return await self._call(
                    path, parse, ticket, body=body, params=params, accept=accept, with_headers=with_headers
                )
            except BaseException:
                self._pages.leave(stream)  # a failed call holds no page; retries wait without a permit
                raise

    async def _call(
        self,
        path: str,
        parse: Callable[..., T],
        ticket: Ticket,
        *,
        body: bytes | None,
        params: Mapping[str, str] | None,
        accept: str,
        with_headers: bool,
    ) -> T:
        # Signed after the pacer's wait, so the HMAC date is fresh and the request id is new.
        try:
            headers = {"Accept": accept, "Accept-Encoding": ACCEPT_ENCODING}
            if body is not None:
                headers["Content-Type"] = "application/json"
            headers.update(await self._auth.headers(path))
        except Exception as exc:
            ticket.abandon()
            raise _classified(exc, self.account) from None
        try:
            # Signed headers and the body never follow a redirect; the body is read within the cap
            # and inflated by read_capped, not by aiohttp.
            async with self._session.request(
                "POST" if body is not None else "GET",
                f"{self.account.url}{path}",
                data=body,
                params=params,
                headers=headers,
                timeout=self._timeout,
                ssl=self._ssl,
                proxy=self.account.proxy,
                allow_redirects=False,
                auto_decompress=False,
            ) as response:
                status, answer_headers, raw = response.status, response.headers, b""
                if status not in REDIRECT_STATUSES:
                    raw = await read_capped(response, self.account.max_response_bytes)
        except Exception as exc:
            ticket.done(None, {})
            self._telemetry.api_calls.labels(self.account.name, path, "error").inc()
            raise _classified(exc, self.account) from None
        self._count(path, status, answer_headers)
        if status in REDIRECT_STATUSES:
            ticket.done(status, answer_headers)
            raise redirect_error(status, answer_headers.get("Location"), "the API")
        try:
            answer = parse(status, answer_headers, raw) if with_headers else parse(status, raw)
        except ApiError as error:
            # A quota error inside a 200 throttles exactly like a 429: the pacer must hear it as one.
            throttled = error.action is Action.RATE_LIMITED
            ticket.done(429 if throttled else status, answer_headers)
            if throttled and status != 429:
                self._telemetry.api_throttled.labels(self.account.name, path).inc()
            raise
        ticket.done(status, answer_headers)
        return answer

    def _count(self, path: str, status: int, headers: Mapping[str, str]) -> None:
        self._telemetry.api_calls.labels(self.account.name, path, str(status)).inc()
        # Parsed as the pacer parses it: a 400-digit value is no number, not an OverflowError in the gauge.
        remaining = RateHeaders.parse(headers).remaining
        if remaining is not None:
            self._telemetry.ratelimit_remaining.labels(self.account.name, path).set(remaining)
        if status == 429:
            self._telemetry.api_throttled.labels(self.account.name, path).inc()

    def _report_throttle(self, stream: str, path: str, error: ApiError) -> None:
        """At most one warning per endpoint per minute, however many calls were throttled."""
        now = time.monotonic()
        last = self._throttle_logged.get(path)
        if last is not None and now - last < THROTTLE_LOG_EVERY_SECS:
            self._throttle_suppressed[path] = self._throttle_suppressed.get(path, 0) + 1
            return
        model = self.pacer(path).model
        self._log.warning(
            "api_rate_limited",
            stream=stream,
            path=path,
            throttled_since_last_report=self._throttle_suppressed.pop(path, 0) + 1,
            wait_secs=round(max(0.0, model.gate_until - now), 2),
            error=redact(error.summary()),
        )
        self._throttle_logged[path] = now


def _classified(exc: Exception, account: AccountConfig) -> ApiError:
    """An exception as an :class:`ApiError`; unknown kinds propagate (they are bugs, not weather)."""
    if isinstance(exc, ApiError):
        return exc
    rule = rule_for_exception(exc)
    if rule is None:
        raise exc
    return ApiError(rule.action, _describe(exc, account), hint=rule.hint)


def _describe(exc: Exception, account: AccountConfig) -> str:
    """What failed, in one line; a timeout says which one fired and the option that sets it."""
    # aiohttp 3.14 raises ConnectionTimeoutError for sock_connect, SocketTimeoutError for sock_read
    # (not set here; its own message says "reading"), and a plain TimeoutError for the total budget.
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return f"connect timeout after {account.connect_timeout_secs:g} s (connect_timeout_secs)"
    if type(exc) is TimeoutError:
        return f"request timeout after {account.request_timeout_secs:g} s (request_timeout_secs)"
    if isinstance(exc, CollectorError):  # ours: the message already says what happened
        return str(exc)[:300]
    return f"{type(exc).__name__}: {exc}".strip(": ")[:300]


def tls_setting(account: AccountConfig) -> ssl.SSLContext | bool:
    """aiohttp's ``ssl=`` value: verification on by default, an extra CA bundle if configured."""
    if not account.verify_tls:
        return False
    if account.ca_file is not None:
        return client_context(verify=True, ca_file=account.ca_file)
    return True
