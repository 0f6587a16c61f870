"""Delivery: each sink reads the spool from its own offset, sends a batch, and only then saves it.

A crash between a successful send and the offset save repeats that one batch (at-least-once); a
failing sink retries with backoff while the spool keeps its data, and never holds up the others.

A sink whose target confirms batches later (:class:`Acknowledging`, Splunk HEC with ``use_ack``)
reads ahead of its offset: the dispatcher sends up to the sink's window, keeps (last seq, events)
of each batch sent, and saves the offset only as far as the sink reports batches confirmed.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

import anyio

from collector.encodings.formats import ENCODERS
from collector.logs import get_logger, redact
from collector.service.telemetry import Telemetry
from collector.sinks.base import Acknowledging, LineSink, OutEvent, Reopenable, Sink, SinkError, SinkSettings
from collector.state.base import StateStore
from collector.state.db import StoreError
from collector.state.spool import PageSlice, SpoolRow, rows_of
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
        store: StateStore,
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
        self.offset = 0  # delivered (and, for an acknowledging sink, confirmed) up to here: what is saved
        self._sent = 0  # sent up to here: ahead of offset only while confirmations are outstanding
        self._acking = sink if isinstance(sink, Acknowledging) else None
        # A JSON lines sink with format json gets pages as they are spooled: the stored documents are
        # its lines already, so no event is decoded, encoded or wrapped one by one.
        self._lines = sink if settings.format == "json" and isinstance(sink, LineSink) else None
        self._unconfirmed: deque[tuple[int, int]] = deque()  # (last seq, events) per unconfirmed batch
        self._batch_events = 0
        self.delivered = 0
        self.healthy = True
        # Draining stops here even if more arrives: replicas sharing the spool go on committing while
        # this one stops, and what they add is the next owner's to deliver (None: drain it all).
        self.drain_through: int | None = None
        self._winding_down = False

    def wind_down(self) -> None:
        """Return from :meth:`run` after the batch being sent is delivered and its offset saved (a
        replica handing this sink to another: nothing is sent twice)."""
        self._winding_down = True

    async def run(self, *, until_drained: anyio.Event | None = None) -> None:
        """Deliver forever; with ``until_drained``, return once it is set and nothing is left."""
        self._winding_down = False
        self.offset = await self._store.sink_offset(self.settings.name)
        self._sent = self.offset
        self._unconfirmed.clear()
        failures = 0
        while not self._winding_down:
            try:
                progressed = await self._step(until_drained)
            except SinkError as error:
                failures += 1
                await self._failed(error, failures, self._batch_events)
                continue
            except StoreError:  # the state file, not the sink: the collector stops (exit 74), nothing lost
                raise
            except Exception as exc:  # a bug in one sink must not stop the others: retry it slowly
                failures += 1
                self._log.error("sink_crashed", exc_info=exc, batch_events=self._batch_events)
                crash = SinkError(f"{type(exc).__name__}: {exc}", retryable=False)
                await self._failed(crash, failures, self._batch_events)
                continue
            if progressed is None:
                return
            if progressed and failures:
                self._log.info("sink_recovered", after_failures=failures)
                failures = 0
            if progressed:
                self.healthy = True

    async def _step(self, until_drained: anyio.Event | None) -> bool | None:
        """Send one batch or collect confirmations: True if the sink took something, False if it
        had nothing to say yet, None once draining is over."""
        acking = self._acking
        if acking is not None and acking.window_full():
            return await self._confirm(acking, wait=True)
        pages = await self._next_pages(until_drained)
        if pages is None:
            return None
        if not pages:  # only with batches unconfirmed: nothing new to send, so ask about those
            assert acking is not None
            return await self._confirm(acking, wait=until_drained is not None and until_drained.is_set())
        self._sent, sent = await self._send(pages)
        if acking is None:
            await self._delivered(self._sent, sent)
            return True
        self._unconfirmed.append((self._sent, sent))
        self._telemetry.sink_unacked_batches.labels(self.settings.name).set(len(self._unconfirmed))
        await self._confirm(acking, wait=False)
        return True

    async def _send(self, pages: list[PageSlice]) -> tuple[int, int]:
        """Send the events of ``pages``, or the first of them that fit ``batch_max_bytes`` (one at
        least): (seq of the last one sent, how many)."""
        if self._lines is not None:
            limit, count = self.settings.batch_max_bytes, sum(page.events for page in pages)
            if not limit or sum(len(page.docs) for page in pages) + count <= limit:  # each line and its newline
                self._batch_events = count
                await self._lines.send_lines(b"\n".join([page.docs for page in pages]) + b"\n", count)
                return pages[-1].last_seq, count
        rows = rows_of(pages)
        batch = self._encoded(rows)
        self._batch_events = len(batch)
        await self.sink.send_batch(batch)
        return rows[len(batch) - 1].seq, len(batch)

    async def _confirm(self, acking: Acknowledging, *, wait: bool) -> bool:
        """Move the offset over the batches the sink reports confirmed; True if there were any."""
        count = await acking.acknowledged(wait=wait)
        if not count:
            return False
        batches = [self._unconfirmed.popleft() for _ in range(min(count, len(self._unconfirmed)))]
        self._telemetry.sink_unacked_batches.labels(self.settings.name).set(len(self._unconfirmed))
        await self._delivered(batches[-1][0], sum(events for _, events in batches))
        return True

    async def _delivered(self, offset: int, events: int) -> None:
        self.offset = offset
        self.delivered += events
        await self._store.ack(self.settings.name, self.offset, events, now=self._clock(), sinks=self._all_sinks)
        self._telemetry.events_delivered.labels(self.settings.name).inc(events)
        usage = await self._store.usage()
        self._telemetry.spool_backlog.labels(self.settings.name).set(usage.after(self.offset))
        self._telemetry.spool_usage(usage.events, usage.bytes)
        self._on_ack()
        self._telemetry.last_delivery.labels(self.settings.name).set(self._clock())
        self._log.debug("batch_delivered", events=events, offset=self.offset)

    async def reopen(self) -> bool:
        """Reopen the sink's files (SIGHUP); False for a sink that keeps none. SinkError if it fails."""
        if not isinstance(self.sink, Reopenable):
            return False
        await self.sink.reopen()
        return True

    async def _next_pages(self, until_drained: anyio.Event | None) -> list[PageSlice] | None:
        """The next events to send: a full batch, or whatever is there once ``batch_max_age_secs`` has
        passed (or at once while draining). None when draining is over."""
        partial_since: float | None = None
        while True:
            if self._winding_down and not self._unconfirmed:  # handing the sink over: nothing in flight
                return None
            pages = await self._store.read_pages(self._sent, self.settings.batch_max_events)
            draining = until_drained is not None and until_drained.is_set()
            if draining and self.drain_through is not None:
                pages = _through(pages, self.drain_through)
                if not pages and not self._unconfirmed:
                    return None
            if not pages:
                if self._unconfirmed:  # idle, but confirmations are due: the caller asks for them
                    assert self._acking is not None
                    if not draining:
                        await self._signal.wait(min(IDLE_POLL_SECS, self._acking.ack_poll_secs))
                    return []
                self._telemetry.spool_backlog.labels(self.settings.name).set(0)
                if draining:
                    # Collection is over; one last look, since a commit may have raced the flag.
                    if not await self._store.read_pages(self._sent, 1):
                        return None
                    continue
                partial_since = None
                await self._signal.wait(IDLE_POLL_SECS)
                continue
            max_age = self.settings.batch_max_age_secs
            if sum(page.events for page in pages) >= self.settings.batch_max_events or draining or not max_age:
                return pages
            now = time.monotonic()
            partial_since = partial_since if partial_since is not None else now
            if now - partial_since >= max_age:
                return pages
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


def _through(pages: list[PageSlice], seq: int) -> list[PageSlice]:
    """The events of ``pages`` up to ``seq``."""
    cut = [page.through(seq) for page in pages]
    return [page for page in cut if page is not None]
