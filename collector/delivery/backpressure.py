"""What happens when the spool is full: pollers wait (``block``, the default) or the oldest events
go (``drop_oldest``, opt-in, counted per sink and logged). Never a silent drop.

The limit is checked before each page is fetched, so the spool may overshoot it by one page per
stream: the limit is a high-water mark, not an exact cap.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from collector.config.model import StateConfig
from collector.delivery.dispatcher import SpoolSignal
from collector.logs import get_logger
from collector.service.telemetry import Telemetry
from collector.state.base import StateStore
from collector.state.spool import SpoolUsage

CHECK_EVERY_SECS = 1.0


class SpoolGate:
    def __init__(
        self,
        store: StateStore,
        state: StateConfig,
        telemetry: Telemetry,
        acked: SpoolSignal,
        offsets: Callable[[], Mapping[str, int]],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._max_events = state.max_spool_events
        self._max_bytes = state.max_spool_bytes
        self._policy = state.when_full
        self._telemetry = telemetry
        self._acked = acked
        self._offsets = offsets
        self._clock = clock
        self._paused_since: float | None = None
        self._log = get_logger()
        telemetry.spool_limit_events.set(self._max_events)
        telemetry.spool_limit_bytes.set(self._max_bytes)

    def _full(self, usage: SpoolUsage) -> bool:
        return bool(
            (self._max_events and usage.events >= self._max_events)
            or (self._max_bytes and usage.bytes >= self._max_bytes)
        )

    async def before_fetch(self) -> None:
        """Called by every poller before it asks for a page."""
        if not (self._max_events or self._max_bytes):
            return
        usage = await self._store.usage()
        self._telemetry.spool_usage(usage.events, usage.bytes)
        if not self._full(usage):
            return
        if self._policy == "drop_oldest":
            await self._drop_oldest()
            return
        if self._paused_since is None:  # one line per episode, however many pollers wait
            self._paused_since = self._clock()
            self._log.warning(
                "spool_full_collection_paused",
                spooled_events=usage.events,
                spooled_bytes=usage.bytes,
                max_spool_events=self._max_events,
                max_spool_bytes=self._max_bytes,
                hint="a sink is down or slower than collection",
            )
        while self._full(await self._store.usage()):
            await self._acked.wait(CHECK_EVERY_SECS)
        if self._paused_since is not None:
            self._log.info(
                "spool_has_room_collection_resumed", paused_secs=round(self._clock() - self._paused_since, 1)
            )
            self._paused_since = None

    async def _drop_oldest(self) -> None:
        first, last = await self._store.drop_oldest(max_events=self._max_events, max_bytes=self._max_bytes)
        if last < first:
            return
        lost = {}
        for sink, offset in self._offsets().items():
            lost[sink] = max(0, last - max(offset, first - 1))
            if lost[sink]:
                self._telemetry.events_dropped.labels(sink).inc(lost[sink])
        self._log.warning(
            "spool_full_dropped_oldest",
            dropped_events=last - first + 1,
            undelivered_per_sink=lost,
            hint="when_full = drop_oldest is set; raise max_spool_bytes or fix the slow sink",
        )
