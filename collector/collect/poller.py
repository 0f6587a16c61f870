"""The one generic poller: fixed windows, page tokens, one commit per page. Log types only declare.

Per stream (account x log type) the state is ``window_start`` (everything before it is collected),
``window_end`` and ``page_token`` (the page to fetch next). See ARCHITECTURE.md, "The collection
window", for the rules this loop implements.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import anyio

from collector.api.client import MimecastClient, Page
from collector.api.errors import ANSWER_TOO_LARGE, Action, ApiError
from collector.config.model import AccountConfig
from collector.logs import get_logger, redact
from collector.logtypes import LOG_TYPES, LogType, build_event
from collector.logtypes.base import NORMALIZE_ERROR_TAG
from collector.service.telemetry import Telemetry
from collector.state.db import StoreError
from collector.state.store import Store, StreamState
from collector.timeutil import iso

MAX_WINDOW_RESTARTS = 3  # token rejections / loops in one window before the stream is declared failed
REPEAT_RETRIES = 2  # a repeated token is asked for again this often before the window restarts
REPEAT_RETRY_SECS = 0.5
LOOKBACK_MARGIN_SECS = 600  # a clamped position stays this far inside the API's lookback limit


@dataclass(frozen=True)
class StreamSpec:
    account: AccountConfig
    log_type: LogType
    path: str
    page_size: int
    filters: dict[str, Any] = field(default_factory=dict)
    path_configured: bool = False  # a configured path is always used, never swapped for another

    @property
    def name(self) -> str:
        return f"{self.account.name}/{self.log_type.name}"

    @classmethod
    def for_account(cls, account: AccountConfig) -> list[StreamSpec]:
        specs = []
        for name in account.streams:
            log_type = LOG_TYPES[name]
            options = account.stream_options.get(name)
            specs.append(
                cls(
                    account=account,
                    log_type=log_type,
                    path=(options.path if options and options.path else log_type.path),
                    page_size=(options.page_size if options and options.page_size else account.page_size),
                    filters=dict(options.filters) if options else {},
                    path_configured=bool(options and options.path),
                )
            )
        return specs


class _WindowRestart(Exception):
    """The current window must be paged again from its first page."""


class _RepeatedToken(_WindowRestart):
    """The API answered with a token already followed in this window: a glitch, or a loop."""


class Poller:
    def __init__(
        self,
        spec: StreamSpec,
        client: MimecastClient,
        store: Store,
        telemetry: Telemetry,
        *,
        on_commit: Callable[[], None] = lambda: None,
        before_fetch: Callable[[], Awaitable[None]] | None = None,
        once_until: int | None = None,
        dedup_retention_secs: int = 3600,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self.spec = spec
        self._client = client
        self._store = store
        self._telemetry = telemetry
        self._on_commit = on_commit
        self._before_fetch = before_fetch
        self._once_until = once_until
        self._dedup_retention = dedup_retention_secs
        self._clock = clock
        self._sleep = sleep
        self._labels = (spec.account.name, spec.log_type.name)
        self._log = get_logger(stream=spec.name)
        self.state: StreamState | None = None
        # Halved by the client after an oversize answer; back to the configured size with each new window.
        self._page_size = spec.page_size
        self._path = spec.path  # the endpoint path called; see _fetch for when it changes

    async def run(self) -> bool:
        """Collect until cancelled (daemon) or caught up with ``once_until``; False after a fatal error."""
        account = self.spec.account
        state = await self._store.stream(*self._labels, start=account.default_start(now=self._clock()))
        self.state = state
        self._path = self._remembered_path(state)
        self._log.info(
            "stream_started",
            position=iso(state.window_start),
            resuming_page=state.page_token is not None,
            path=self._path,
        )
        while True:
            try:
                if await self._collect():
                    return True
                continue
            except ApiError as error:
                await self._failed(error)
            except StoreError:
                raise  # the state store is gone: every stream is, and the process exits with its code
            except Exception as exc:  # a bug one answer triggers must not stop the other streams
                await self._crashed(exc)
            if self._once_until is not None:
                return False
            await self._sleep(account.fatal_retry_secs)

    async def _collect(self) -> bool:
        """Page through windows until caught up; True when ``once`` is satisfied."""
        restarts = repeats = 0
        seen_tokens: set[str] = set()
        while True:
            assert self.state is not None
            state = self.state = await self._within_lookback(self.state)
            window_end = state.window_end if state.window_end is not None else self._next_window_end(state)
            if window_end is None:
                if self._once_until is not None:
                    return True
                await self._sleep(self.spec.account.poll_interval_secs)
                continue
            try:
                state = await self._page(state, window_end, seen_tokens)
                repeats = 0
            except _WindowRestart as why:
                if isinstance(why, _RepeatedToken) and repeats < REPEAT_RETRIES:
                    repeats += 1  # ask for the same page again first: a one-off glitch costs one call
                    self._log.warning("page_token_repeated", window_end=iso(window_end), retry=repeats)
                    await self._sleep(REPEAT_RETRY_SECS * repeats)
                    continue
                repeats = 0
                restarts += 1
                if restarts > MAX_WINDOW_RESTARTS:
                    raise ApiError(
                        Action.FATAL,
                        f"window restarted {MAX_WINDOW_RESTARTS} times: {why}",
                        hint="the API keeps rejecting or repeating page tokens; try a smaller "
                        "max_window_secs or page_size",
                    ) from None
                self._log.warning(
                    "window_restarted",
                    reason=str(why),
                    window_start=iso(state.window_start),
                    window_end=iso(window_end),
                    restart=restarts,
                )
                seen_tokens.clear()
                state = state.restart_window()
                await self._store.save_position(state)
            if state.window_end is None:
                restarts = 0
                seen_tokens.clear()
            self.state = state

    def _next_window_end(self, state: StreamState) -> int | None:
        """End of the next window, or None when it would be empty (caught up)."""
        account = self.spec.account
        target = self._once_until if self._once_until is not None else int(self._clock()) - account.lag_secs
        self._telemetry.window_lag.labels(*self._labels).set(max(0.0, self._clock() - state.window_start))
        end = min(target, state.window_start + account.max_window_secs)
        return end if end > state.window_start else None

    async def _page(self, state: StreamState, window_end: int, seen_tokens: set[str]) -> StreamState:
        """Fetch, normalize and commit one page; return the state that follows it."""
        account, log_type = self.spec.account, self.spec.log_type
        if self._before_fetch is not None:
            await self._before_fetch()  # backpressure: the spool has room again
        data = log_type.request_data(state.window_start - account.overlap_secs, window_end, self.spec.filters)
        try:
            page = await self._fetch(data, state.page_token)
        except ApiError as error:
            # A record too large for max_response_bytes stays too large from the window's first page too.
            if state.page_token is not None and error.action is Action.FATAL and error.code != ANSWER_TOO_LARGE:
                raise _WindowRestart(f"page token rejected: {error.summary()}") from None
            raise
        # An empty page ends the window even if it carries a token (seen in the wild).
        next_token = page.next_token if page.records else None
        if next_token is not None and (next_token == state.page_token or next_token in seen_tokens):
            raise _RepeatedToken("the API repeated a page token (pagination loop)")
        events = [build_event(log_type, r, account.name, window_end) for r in page.records]
        if next_token is not None:
            seen_tokens.add(next_token)
            next_state = state.next_page(window_end, next_token)
            prune_before = None
            self._page_size = page.page_size or self._page_size
        else:
            next_state = state.window_done(window_end)
            self._page_size = self.spec.page_size
            prune_before = next_state.window_start - account.overlap_secs - self._dedup_retention
        result = await self._store.commit_page(
            events, next_state, seen_until=window_end, prune_before=prune_before, now=self._clock()
        )
        self._count(events, result.new, result.duplicates)
        self._telemetry.stream_ok(*self._labels)
        if result.new:
            self._on_commit()
        self._log.debug(
            "page_committed",
            events=len(events),
            new=result.new,
            duplicates=result.duplicates,
            window_end=iso(window_end),
            more=next_token is not None,
        )
        if next_token is None:
            self._log.info("window_committed", window_start=iso(state.window_start), window_end=iso(window_end))
        return next_state

    async def _within_lookback(self, state: StreamState) -> StreamState:
        """A position older than the API looks back (audit: 60 days) is moved forward to the oldest
        it still answers for, with one warning: that history is gone, and asking for it is an error."""
        limit = self.spec.log_type.max_lookback_secs
        if limit is None:
            return state
        earliest = int(self._clock()) - limit + LOOKBACK_MARGIN_SECS + self.spec.account.overlap_secs
        if state.window_start >= earliest:
            return state
        self._log.warning(
            "start_clamped",
            position=iso(state.window_start),
            clamped_to=iso(earliest),
            max_lookback_days=round(limit / 86_400, 1),
        )
        clamped = replace(state, window_start=earliest, window_end=None, page_token=None)
        await self._store.save_position(clamped)
        return clamped

    def _remembered_path(self, state: StreamState) -> str:
        """The path to call: the configured one, else the one of the log type's two that answered last."""
        log_type = self.spec.log_type
        remembered = state.endpoint_path
        if self.spec.path_configured or remembered is None or remembered not in (log_type.path, log_type.alt_path):
            return self.spec.path
        return remembered

    def _other_path(self, error: ApiError) -> str | None:
        """The log type's other path, when the one called answered 404 and no path is configured."""
        log_type = self.spec.log_type
        if self.spec.path_configured or log_type.alt_path is None or error.status != 404:
            return None
        return log_type.alt_path if self._path == log_type.path else log_type.path

    async def _fetch(self, data: dict[str, Any], page_token: str | None) -> Page:
        """One page from the current path; on a 404 of a log type with two paths, the other one, once.
        The path that answers is kept, and remembered for the next start."""
        try:
            return await self._fetch_from(self._path, data, page_token)
        except ApiError as error:
            other = self._other_path(error)
            if other is None:
                raise
        tried = self._path
        self._log.warning("endpoint_not_found", path=tried, trying=other)
        try:
            page = await self._fetch_from(other, data, page_token)
        except ApiError as error:
            if error.status != 404:
                raise
            raise ApiError(
                Action.FATAL,
                f"neither {tried} nor {other} exists on {self.spec.account.url} (both HTTP 404)",
                status=404,
                hint="check base_url/region; if this endpoint has yet another path, set it as `path` in the "
                f"[accounts.{self.spec.account.name}.{self.spec.log_type.name}] table",
            ) from None
        self._path = other
        assert self.state is not None
        await self._store.save_endpoint_path(self.state.id, other)
        self._log.info("endpoint_path_chosen", path=other, instead_of=tried)
        return page

    async def _fetch_from(self, path: str, data: dict[str, Any], page_token: str | None) -> Page:
        return await self._client.fetch_page(
            self.spec.name,
            path,
            self.spec.log_type.array_key,
            data,
            page_size=self._page_size,
            page_token=page_token,
            on_retry=self._retrying,
        )

    def _count(self, events: list[Any], new: int, duplicates: int) -> None:
        t = self._telemetry
        t.events_fetched.labels(*self._labels).inc(len(events))
        t.events_spooled.labels(*self._labels).inc(new)
        t.events_duplicate.labels(*self._labels).inc(duplicates)
        broken = sum(1 for e in events if not e.normalized)
        if broken:
            t.normalize_errors.labels(*self._labels).inc(broken)
            self._log.warning("records_kept_raw", count=broken, tag=NORMALIZE_ERROR_TAG)

    async def _retrying(self, error: ApiError) -> None:
        summary = redact(error.summary())
        self._telemetry.stream_error(*self._labels, summary, fatal=False)
        if self.state is not None:
            await self._store.record_error(self.state.id, summary, fatal=False, now=self._clock())

    async def _crashed(self, exc: Exception) -> None:
        summary = redact(f"unexpected {type(exc).__name__}: {exc}"[:300])
        self._telemetry.stream_error(*self._labels, summary, fatal=True)
        if self.state is not None:
            await self._store.record_error(self.state.id, summary, fatal=True, now=self._clock())
        retry = None if self._once_until is not None else f"{self.spec.account.fatal_retry_secs:g}s"
        self._log.error("stream_crashed", error=summary, retry_in=retry, exc_info=exc)

    async def _failed(self, error: ApiError) -> None:
        summary = redact(error.summary())
        self._telemetry.stream_error(*self._labels, summary, fatal=True)
        if self.state is not None:
            await self._store.record_error(self.state.id, summary, fatal=True, now=self._clock())
        retry = None if self._once_until is not None else f"{self.spec.account.fatal_retry_secs:g}s"
        self._log.error("stream_failed", error=summary, retry_in=retry)
