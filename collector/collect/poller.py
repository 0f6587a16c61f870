"""The one generic poller: what every stream shares, whatever its cursor kind. Log types only declare.

A stream (account x log type) runs one :class:`Poller`. The poller holds the shared pieces (error
handling and the retry-later path, telemetry and status, backpressure, ``on_commit``, once-mode, the
commit) and hands position movement to the strategy its log type's ``cursor_kind`` names
(:data:`STRATEGIES`; the contract is in :mod:`collector.collect.strategy`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio

from collector.api.client import MimecastClient
from collector.api.errors import ApiError
from collector.api.files import FileHost
from collector.collect.batch import BatchFiles
from collector.collect.siem_token import SiemTokenStream
from collector.collect.spec import StreamSpec
from collector.collect.strategy import CursorStrategy, StrategyFactory
from collector.collect.windowed import WindowedPages
from collector.logs import get_logger, redact
from collector.logtypes import CursorKind, SpoolEvent
from collector.logtypes.base import NORMALIZE_ERROR_TAG
from collector.service.telemetry import Telemetry
from collector.state.base import StateStore
from collector.state.db import StoreError
from collector.state.store import PageResult, StreamState
from collector.workers import PageBuilder

__all__ = ["STRATEGIES", "Poller", "StreamSpec"]

#: cursor kind -> the strategy that moves such a stream's position.
STRATEGIES: dict[CursorKind, StrategyFactory] = {
    CursorKind.WINDOWED: WindowedPages,
    CursorKind.SIEM_TOKEN: SiemTokenStream,
    CursorKind.SIEM_BATCH: BatchFiles,
}


class Poller:
    """One stream's loop; also the :class:`~collector.collect.strategy.StreamContext` of its strategy."""

    def __init__(
        self,
        spec: StreamSpec,
        client: MimecastClient,
        store: StateStore,
        telemetry: Telemetry,
        *,
        on_commit: Callable[[], None] = lambda: None,
        before_fetch: Callable[[], Awaitable[None]] | None = None,
        once_until: int | None = None,
        dedup_retention_secs: int = 3600,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        files: FileHost | None = None,
        builder: PageBuilder | None = None,
    ) -> None:
        self.spec = spec
        self.client = client
        self.files = files
        self.builder = builder if builder is not None else PageBuilder(workers=0)
        self.store = store
        self.telemetry = telemetry
        self._on_commit = on_commit
        self._before_fetch = before_fetch
        self.once_until = once_until
        self.dedup_retention_secs = dedup_retention_secs
        self.clock = clock
        self.sleep = sleep
        self._labels = (spec.account.name, spec.log_type.name)
        self.log: Any = get_logger(stream=spec.name)
        self.state: StreamState | None = None
        self.strategy: CursorStrategy = STRATEGIES[spec.log_type.cursor_kind](self)

    async def run(self) -> bool:
        """Collect until cancelled (daemon) or caught up with ``once_until``; False after a fatal error."""
        account = self.spec.account
        state = await self.store.stream(*self._labels, start=account.default_start(now=self.clock()))
        self.state = state
        self.log.info("stream_started", **self.strategy.describe(state))
        while True:
            try:
                if await self.strategy.collect():
                    return True
                continue
            except ApiError as error:
                await self._failed(error)
            except StoreError:
                raise  # the state store is gone: every stream is, and the process exits with its code
            except Exception as exc:  # a bug one answer triggers must not stop the other streams
                await self._crashed(exc)
            self.client.page_done(self.spec.name)  # a failed page holds no permit while the stream waits
            if self.once_until is not None:
                return False
            await self.sleep(account.fatal_retry_secs)

    # --- what strategies share (the StreamContext) ------------------------------------------------

    async def before_fetch(self) -> None:
        self.client.page_done(self.spec.name)  # no permit held while the spool is full
        if self._before_fetch is not None:
            await self._before_fetch()  # backpressure: the spool has room again

    async def commit(
        self, events: Sequence[SpoolEvent], next_state: StreamState, *, seen_until: int, prune_before: int | None = None
    ) -> PageResult:
        result = await self.store.commit_page(
            events, next_state, seen_until=seen_until, prune_before=prune_before, now=self.clock()
        )
        self.state = next_state
        self.client.page_done(self.spec.name)
        self._count(events, result.new, result.duplicates)
        self.telemetry.stream_ok(*self._labels)
        if result.new:
            self._on_commit()
        return result

    async def caught_up(self) -> bool:
        self.client.page_done(self.spec.name)
        if self.once_until is not None:
            return True
        await self.sleep(self.spec.account.poll_interval_secs)
        return False

    async def retrying(self, error: ApiError) -> None:
        summary = redact(error.summary())
        self.telemetry.stream_error(*self._labels, summary, fatal=False)
        if self.state is not None:
            await self.store.record_error(self.state.id, summary, fatal=False, now=self.clock())

    # --- parts ----------------------------------------------------------------------------------------

    def _count(self, events: Sequence[SpoolEvent], new: int, duplicates: int) -> None:
        t = self.telemetry
        t.events_fetched.labels(*self._labels).inc(len(events))
        t.events_spooled.labels(*self._labels).inc(new)
        t.events_duplicate.labels(*self._labels).inc(duplicates)
        broken = sum(1 for e in events if not e.normalized)
        if broken:
            t.normalize_errors.labels(*self._labels).inc(broken)
            self.log.warning("records_kept_raw", count=broken, tag=NORMALIZE_ERROR_TAG)

    async def _crashed(self, exc: Exception) -> None:
        summary = redact(f"unexpected {type(exc).__name__}: {exc}"[:300])
        self.telemetry.stream_error(*self._labels, summary, fatal=True)
        if self.state is not None:
            await self.store.record_error(self.state.id, summary, fatal=True, now=self.clock())
        retry = None if self.once_until is not None else f"{self.spec.account.fatal_retry_secs:g}s"
        self.log.error("stream_crashed", error=summary, retry_in=retry, exc_info=exc)

    async def _failed(self, error: ApiError) -> None:
        summary = redact(error.summary())
        self.telemetry.stream_error(*self._labels, summary, fatal=True)
        if self.state is not None:
            await self.store.record_error(self.state.id, summary, fatal=True, now=self.clock())
        retry = None if self.once_until is not None else f"{self.spec.account.fatal_retry_secs:g}s"
        self.log.error("stream_failed", error=summary, retry_in=retry)
