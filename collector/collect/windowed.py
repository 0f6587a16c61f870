"""Cursor kind "windowed pages": fixed windows, page tokens, one commit per page.

Per stream (account x log type) the state is ``window_start`` (everything before it is collected),
``window_end`` and ``page_token`` (the page to fetch next). See ARCHITECTURE.md, "The collection
window", for the rules this strategy implements.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from collector.api.client import Page
from collector.api.errors import ANSWER_TOO_LARGE, Action, ApiError
from collector.collect.strategy import StreamContext
from collector.state.store import StreamState
from collector.timeutil import iso

MAX_WINDOW_RESTARTS = 3  # token rejections / loops in one window before the stream is declared failed
REPEAT_RETRIES = 2  # a repeated token is asked for again this often before the window restarts
REPEAT_RETRY_SECS = 0.5
LOOKBACK_MARGIN_SECS = 600  # a clamped position stays this far inside the API's lookback limit
# A window is sized from the density of the one before to hold about this many pages. Each window ends
# with a partial page, so fewer, fuller windows cost fewer calls (100 pages: at most 1% wasted); more
# pages per window would make a restarted window (rejected token) re-read more.
WINDOW_TARGET_PAGES = 100
MIN_WINDOW_SECS = 60  # the smallest max_window_secs allowed


class _WindowRestart(Exception):
    """The current window must be paged again from its first page."""


class _RepeatedToken(_WindowRestart):
    """The API answered with a token already followed in this window: a glitch, or a loop."""


class WindowedPages:
    def __init__(self, ctx: StreamContext) -> None:
        self._ctx = ctx
        # Halved by the client after an oversize answer; back to the configured size with each new window.
        self._page_size = ctx.spec.page_size
        self._path: str | None = None  # the endpoint path called; see _fetch for when it changes
        # The next window's length, from the last one's density; None: not known yet, so the first window
        # of a run reaches as far as max_window_secs allows (with the default, the whole backlog).
        self._span: int | None = None
        self._records = 0  # records paged in the current window so far (this attempt)
        self._newest: int | None = None  # newest event time among them
        self._target: int | None = None  # now - lag (or once's end) when the last window was chosen

    def describe(self, state: StreamState) -> dict[str, Any]:
        return {
            "position": iso(state.window_start),
            "resuming_page": state.page_token is not None,
            "path": self._remembered_path(state),
        }

    async def collect(self) -> bool:
        """Page through windows until caught up; True when ``once`` is satisfied."""
        ctx = self._ctx
        restarts = repeats = 0
        seen_tokens: set[str] = set()
        while True:
            assert ctx.state is not None
            if self._path is None:
                self._path = self._remembered_path(ctx.state)
            state = ctx.state = await self._within_lookback(ctx.state)
            window_end = state.window_end if state.window_end is not None else self._next_window_end(state)
            if window_end is None:
                if await ctx.caught_up():
                    return True
                continue
            try:
                state = await self._page(state, window_end, seen_tokens)
                repeats = 0
            except _WindowRestart as why:
                if isinstance(why, _RepeatedToken) and repeats < REPEAT_RETRIES:
                    repeats += 1  # ask for the same page again first: a one-off glitch costs one call
                    ctx.log.warning("page_token_repeated", window_end=iso(window_end), retry=repeats)
                    await ctx.sleep(REPEAT_RETRY_SECS * repeats)
                    continue
                repeats = 0
                restarted = self._restarted(state, window_end)
                # Only a restart that could not shrink the window counts toward giving up: shrinking
                # ends after log2(max_window_secs / MIN_WINDOW_SECS) halvings, so this stays bounded.
                if restarted.window_end == window_end:
                    restarts += 1
                if restarts > MAX_WINDOW_RESTARTS:
                    raise ApiError(
                        Action.FATAL,
                        f"window restarted {MAX_WINDOW_RESTARTS} times: {why}",
                        hint="the API keeps rejecting or repeating page tokens; try a smaller "
                        "max_window_secs or page_size",
                    ) from None
                ctx.log.warning(
                    "window_restarted",
                    reason=str(why),
                    window_start=iso(state.window_start),
                    window_end=iso(window_end),
                    next_window_end=iso(restarted.window_end or window_end),
                    restart=restarts,
                )
                seen_tokens.clear()
                state = restarted
                await ctx.store.save_position(state)
            ctx.state = state
            if state.window_end is None:
                restarts = 0
                seen_tokens.clear()
                if state.window_start == self._target:
                    # Caught up: wait for the next poll. Asking again at once would page a window of
                    # the seconds the last one took, over and over: with many streams each call is
                    # slower than a second, and caught-up streams would never go idle.
                    self._target = None
                    if await ctx.caught_up():
                        return True

    def _next_window_end(self, state: StreamState) -> int | None:
        """End of the next window, or None when it would be empty (caught up)."""
        ctx = self._ctx
        account = ctx.spec.account
        target = ctx.once_until if ctx.once_until is not None else int(ctx.clock()) - account.lag_secs
        labels = (account.name, ctx.spec.log_type.name)
        ctx.telemetry.window_lag.labels(*labels).set(max(0.0, ctx.clock() - state.window_start))
        span = account.max_window_secs if self._span is None else self._span
        end = min(target, state.window_start + span)
        self._target = target
        return end if end > state.window_start else None

    def _sized_span(self, records: int, secs: int) -> int:
        """The length of a window that would hold about WINDOW_TARGET_PAGES pages at the density of
        ``records`` in ``secs``, within [MIN_WINDOW_SECS, max_window_secs]."""
        ceiling = self._ctx.spec.account.max_window_secs
        if records <= 0:
            return ceiling
        span = int(max(1, secs) * WINDOW_TARGET_PAGES * self._ctx.spec.page_size / records)
        return max(min(MIN_WINDOW_SECS, ceiling), min(span, ceiling))

    def _restarted(self, state: StreamState, window_end: int) -> StreamState:
        """The window to page again after a restart: from the same start, at most half as long (and no
        longer than a sized window at the density this attempt read), so a window whose page tokens
        keep expiring shrinks until it can be paged before they do."""
        records, newest = self._records, self._newest
        self._records, self._newest = 0, None
        restarted = state.restart_window()
        span = max(MIN_WINDOW_SECS, (window_end - state.window_start) // 2)
        if newest is not None and newest > state.window_start:
            span = min(span, self._sized_span(records, newest - state.window_start))
            self._span = span
        end = state.window_start + span
        return replace(restarted, window_end=end) if end < window_end else restarted

    async def _page(self, state: StreamState, window_end: int, seen_tokens: set[str]) -> StreamState:
        """Fetch, normalize and commit one page; return the state that follows it."""
        ctx = self._ctx
        spec = ctx.spec
        account, log_type = spec.account, spec.log_type
        await ctx.before_fetch()  # backpressure: the spool has room again
        data = log_type.request_data(state.window_start - account.overlap_secs, window_end, spec.filters)
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
        events = await ctx.builder.build(log_type, page.records, account.name, window_end, body=page.body)
        page_size = page.page_size
        del page  # its records and answer, up to max_response_bytes, are not kept through the commit
        self._records += len(events)
        newest = max((e.time for e in events if e.normalized), default=None)
        if newest is not None and (self._newest is None or newest > self._newest):
            self._newest = newest
        if next_token is not None:
            seen_tokens.add(next_token)
            next_state = state.next_page(window_end, next_token)
            prune_before = None
            self._page_size = page_size or self._page_size
        else:
            next_state = state.window_done(window_end)
            self._page_size = spec.page_size
            self._span = self._sized_span(self._records, window_end - state.window_start)
            self._records, self._newest = 0, None
            prune_before = next_state.window_start - account.overlap_secs - ctx.dedup_retention_secs
        result = await ctx.commit(events, next_state, seen_until=window_end, prune_before=prune_before)
        ctx.log.debug(
            "page_committed",
            events=len(events),
            new=result.new,
            duplicates=result.duplicates,
            window_end=iso(window_end),
            more=next_token is not None,
        )
        if next_token is None:
            ctx.log.info("window_committed", window_start=iso(state.window_start), window_end=iso(window_end))
        return next_state

    async def _within_lookback(self, state: StreamState) -> StreamState:
        """A position older than the API looks back (audit: 60 days) is moved forward to the oldest
        it still answers for, with one warning: that history is gone, and asking for it is an error."""
        ctx = self._ctx
        limit = ctx.spec.log_type.max_lookback_secs
        if limit is None:
            return state
        earliest = int(ctx.clock()) - limit + LOOKBACK_MARGIN_SECS + ctx.spec.account.overlap_secs
        if state.window_start >= earliest:
            return state
        ctx.log.warning(
            "start_clamped",
            position=iso(state.window_start),
            clamped_to=iso(earliest),
            max_lookback_days=round(limit / 86_400, 1),
        )
        clamped = replace(state, window_start=earliest, window_end=None, page_token=None)
        await ctx.store.save_position(clamped)
        return clamped

    def _remembered_path(self, state: StreamState) -> str:
        """The path to call: the configured one, else the one of the log type's two that answered last."""
        spec = self._ctx.spec
        remembered = state.endpoint_path
        log_type = spec.log_type
        if spec.path_configured or remembered is None or remembered not in (log_type.path, log_type.alt_path):
            return spec.path
        return remembered

    def _other_path(self, current: str, error: ApiError) -> str | None:
        """The log type's other path, when the one called answered 404 and no path is configured."""
        spec = self._ctx.spec
        log_type = spec.log_type
        if spec.path_configured or log_type.alt_path is None or error.status != 404:
            return None
        return log_type.alt_path if current == log_type.path else log_type.path

    async def _fetch(self, data: dict[str, Any], page_token: str | None) -> Page:
        """One page from the current path; on a 404 of a log type with two paths, the other one, once.
        The path that answers is kept, and remembered for the next start."""
        ctx = self._ctx
        tried = self._path or ctx.spec.path
        try:
            return await self._fetch_from(tried, data, page_token)
        except ApiError as error:
            other = self._other_path(tried, error)
            if other is None:
                raise
        ctx.log.warning("endpoint_not_found", path=tried, trying=other)
        try:
            page = await self._fetch_from(other, data, page_token)
        except ApiError as error:
            if error.status != 404:
                raise
            raise ApiError(
                Action.FATAL,
                f"neither {tried} nor {other} exists on {ctx.spec.account.url} (both HTTP 404)",
                status=404,
                hint="check base_url/region; if this endpoint has yet another path, set it as `path` in the "
                f"[accounts.{ctx.spec.account.name}.{ctx.spec.log_type.name}] table",
            ) from None
        self._path = other
        assert ctx.state is not None
        await ctx.store.save_endpoint_path(ctx.state.id, other)
        ctx.log.info("endpoint_path_chosen", path=other, instead_of=tried)
        return page

    async def _fetch_from(self, path: str, data: dict[str, Any], page_token: str | None) -> Page:
        ctx = self._ctx
        return await ctx.client.fetch_page(
            ctx.spec.name,
            path,
            ctx.spec.log_type.array_key,
            data,
            page_size=self._page_size,
            page_token=page_token,
            on_retry=ctx.retrying,
        )
