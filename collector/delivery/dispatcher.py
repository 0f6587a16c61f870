"""Delivery: each sink reads the spool from its own offset, sends a batch, and only then saves it.

A crash between a successful send and the offset save repeats that one batch (at-least-once); a
failing sink retries with backoff while the spool keeps its data, and never holds up the others.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, Sequence

import anyio

from collector.encodings.formats import ENCODERS
from collector.logs import get_logger, redact
from collector.service.telemetry import Telemetry
from collector.sinks.base import OutEvent, Reopenable, Sink, SinkError, SinkSettings
from collector.state.spool import SpoolRow
from collector.state.store import Store
from collector.timeutil import backoff_secs

IDLE_POLL_SECS = 1.0


class SpoolSignal:
    """Wakes idle dispatchers when new events are committed."""

    def __init__(self) -> None:
        self._event = anyio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = anyio.Event()

    async def wait(self, at_most_secs: float) -> None:
        event = self._event
        with anyio.move_on_after(at_most_secs):
            await event.wait()


class Dispatcher:
    def __init__(
        self,
        settings: SinkSettings,
        sink: Sink,
        store: Store,
        telemetry: Telemetry,
        signal: SpoolSignal,
        *,
        all_sinks: Sequence[str],
        on_ack: Callable[[], None] = lambda: None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self.settings = settings
        self.sink = sink
        self._store = store
        self._telemetry = telemetry
        self._signal = signal
        self._all_sinks = list(all_sinks)
        self._on_ack = on_ack
        self._encode = ENCODERS[settings.format]
        self._rng = rng or random.Random()
        self._clock = clock
        self._sleep = sleep
        self._log = get_logger(sink=settings.name)
        self.offset = 0
        self.delivered = 0
        self.healthy = True

    async def run(self, *, until_drained: anyio.Event | None = None) -> None:
        """Deliver forever; with ``until_drained``, return once it is set and nothing is left."""
        self.offset = await self._store.sink_offset(self.settings.name)
        failures = 0
        while True:
            rows = await self._next_rows(until_drained)
            if rows is None:
                return
            batch = self._encoded(rows)
            try:
                await self.sink.send_batch(batch)
            except SinkError as error:
                failures += 1
                await self._failed(error, failures, len(batch))
                continue
            except Exception as exc:  # a bug in one sink must not stop the others: retry it slowly
                failures += 1
                self._log.error("sink_crashed", exc_info=exc, batch_events=len(batch))
                await self._failed(SinkError(f"{type(exc).__name__}: {exc}", retryable=False), failures, len(batch))
                continue
            if failures:
                self._log.info("sink_recovered", after_failures=failures)
                failures = 0
            self.healthy = True
            self.offset = rows[len(batch) - 1].seq
            self.delivered += len(batch)
            await self._store.ack(self.settings.name, self.offset, len(batch), now=self._clock(), sinks=self._all_sinks)
            self._telemetry.events_delivered.labels(self.settings.name).inc(len(batch))
            self._telemetry.spool_backlog.labels(self.settings.name).set(await self._store.backlog(self.offset))
            self._on_ack()
            self._telemetry.last_delivery.labels(self.settings.name).set(self._clock())
            self._log.debug("batch_delivered", events=len(batch), offset=self.offset)

    async def reopen(self) -> bool:
        """Reopen the sink's files (SIGHUP); False for a sink that keeps none. SinkError if it fails."""
        if not isinstance(self.sink, Reopenable):
            return False
        await self.sink.reopen()
        return True

    async def _next_rows(self, until_drained: anyio.Event | None) -> list[SpoolRow] | None:
        """The next rows to send: a full batch, or whatever is there once ``batch_max_age_secs`` has
        passed (or at once while draining). None when draining is over."""
        partial_since: float | None = None
        while True:
            rows = await self._store.read_spool(self.offset, self.settings.batch_max_events)
            draining = until_drained is not None and until_drained.is_set()
            if not rows:
                self._telemetry.spool_backlog.labels(self.settings.name).set(0)
                if draining:
                    # Collection is over; one last look, since a commit may have raced the flag.
                    if not await self._store.read_spool(self.offset, 1):
                        return None
                    continue
                partial_since = None
                await self._signal.wait(IDLE_POLL_SECS)
                continue
            max_age = self.settings.batch_max_age_secs
            if len(rows) >= self.settings.batch_max_events or draining or not max_age:
                return rows
            now = time.monotonic()
            partial_since = partial_since if partial_since is not None else now
            if now - partial_since >= max_age:
                return rows
            await self._signal.wait(max_age - (now - partial_since))

    def _encoded(self, rows: list[SpoolRow]) -> list[OutEvent]:
        """Encode rows for this sink, stopping before ``batch_max_bytes`` (one event at least)."""
        limit = self.settings.batch_max_bytes
        batch: list[OutEvent] = []
        size = 0
        for row in rows:
            line = self._encode(row.doc)
            size += len(line) + 1
            if batch and limit and size > limit:
                break
            batch.append(OutEvent(row.key, row.event_time, row.doc, line, row.account, row.log_type))
        return batch

    async def _failed(self, error: SinkError, failures: int, size: int) -> None:
        self.healthy = False
        self._telemetry.sink_failures.labels(self.settings.name).inc()
        if error.retryable:
            delay = backoff_secs(failures, self.settings.retry_max_secs, self._rng)
        else:  # a refusal will not go away in a second: try again only slowly
            delay = self.settings.retry_max_secs * self._rng.uniform(0.5, 1.0)
        delay = max(delay, error.retry_after_secs or 0.0)
        message = redact(str(error))
        if failures == 1 or (error.retry_after_secs is None and delay >= self.settings.retry_max_secs / 2):
            self._log.warning(
                "sink_delivery_failed",
                error=message,
                batch_events=size,
                attempt=failures,
                retry_in_secs=round(delay, 2),
                retryable=error.retryable,
            )
        if not error.retryable and failures == 1:
            self._log.error(
                "sink_rejected_batch",
                error=message,
                hint="the target refuses these events; fix its configuration. Events stay spooled.",
            )
        await self._store.record_sink_error(self.settings.name, message)
        await self._sleep(delay)
