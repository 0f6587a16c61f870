"""The dispatcher against a real store and an in-memory sink: order, batching, retries, isolation, formats."""

from __future__ import annotations

import functools
import random
from collections.abc import Collection, Sequence
from typing import Any

import anyio
import orjson
import pytest

from collector.delivery.dispatcher import Dispatcher, SpoolSignal
from collector.logtypes.base import Event
from collector.service.telemetry import Telemetry
from collector.sinks.base import OutEvent, SinkError, SinkSettings
from collector.state.base import StateStore


class MemorySink:
    """A Sink that keeps accepted batches in memory; it fails the next ``fail_next`` attempts and the
    attempts numbered (from 1) in ``fail_attempts``, with :class:`SinkError`."""

    def __init__(
        self, fail_next: int = 0, *, fail_attempts: Collection[int] = (), retry_after_secs: float | None = None
    ) -> None:
        self.fail_next = fail_next
        self.fail_attempts = set(fail_attempts)
        self.retry_after_secs = retry_after_secs
        self.attempts: list[list[str]] = []  # keys of every batch offered, failed or not
        self.batches: list[list[OutEvent]] = []  # batches accepted
        self.accepted = anyio.Event()  # set once a batch has been accepted
        self.sending = anyio.Event()  # set when a batch is offered
        self.hold: anyio.Event | None = None  # when set: each batch waits for it before it is accepted

    async def open(self) -> None:
        return None

    async def send_batch(self, events: Sequence[OutEvent]) -> None:
        self.attempts.append([e.key for e in events])
        self.sending.set()
        if self.hold is not None:
            await self.hold.wait()
        if self.fail_next > 0 or len(self.attempts) in self.fail_attempts:
            self.fail_next = max(0, self.fail_next - 1)
            raise SinkError("target down", retry_after_secs=self.retry_after_secs)
        self.batches.append(list(events))
        self.accepted.set()

    async def close(self) -> None:
        return None

    async def health_check(self) -> None:
        return None

    @property
    def keys(self) -> list[str]:
        return [e.key for batch in self.batches for e in batch]


class NoJitter(random.Random):
    """Jitter at its upper bound, so backoff delays are exact."""

    def uniform(self, a: float, b: float) -> float:
        return b


class SleepRecorder:
    """A `sleep` for the dispatcher: records each delay and the sink state at that moment, returns at once."""

    def __init__(self, store: StateStore) -> None:
        self.store = store
        self.delays: list[float] = []
        self.sink_rows: list[tuple[int, str | None]] = []  # (offset, last_error) of the first sink row

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        [row, *_] = await self.store.sinks()
        self.sink_rows.append((row["offset"], row["last_error"]))


@pytest.fixture
def store(state_store: StateStore) -> StateStore:
    """A fresh store, on each backend."""
    return state_store


def settings(name: str = "mem", **options: Any) -> SinkSettings:
    values: dict[str, Any] = {"batch_max_events": 3, "retry_max_secs": 3.0}
    values.update(options)
    return SinkSettings(name=name, type="memory", **values)


def ecs(key: str) -> dict[str, object]:
    return {
        "event": {"id": key},
        "labels": {"mimecast_account": "acme", "mimecast_log_type": "ttp_url"},
        "mimecast": {"id": key, "url": f"https://example.com/{key}"},
    }


async def spool(store: StateStore, keys: list[str], *, window_end: int = 2_000) -> None:
    state = await store.stream("acme", "ttp_url", start=1_000)
    events = [Event(k, 1_700_000_000 + i, ecs(k)) for i, k in enumerate(keys)]
    await store.commit_page(events, state.window_done(window_end), seen_until=window_end, now=5.0)


def drained() -> anyio.Event:
    event = anyio.Event()
    event.set()
    return event


def dispatcher(
    store: StateStore,
    sink: MemorySink,
    sink_settings: SinkSettings,
    *,
    all_sinks: Sequence[str] | None = None,
    telemetry: Telemetry | None = None,
    sleep: SleepRecorder | None = None,
) -> Dispatcher:
    return Dispatcher(
        sink_settings,
        sink,
        store,
        telemetry or Telemetry(),
        SpoolSignal(),
        all_sinks=all_sinks or [sink_settings.name],
        rng=NoJitter(),
        clock=lambda: 42.0,
        sleep=sleep or SleepRecorder(store),
    )


KEYS = [f"e{n}" for n in range(1, 8)]


async def test_delivers_everything_in_order_in_batches(store: StateStore) -> None:
    """7 spooled events, batch_max_events 3: batches of 3, 3, 1 in seq order; offset saved; spool emptied."""
    await spool(store, KEYS)
    sink = MemorySink()
    telemetry = Telemetry()
    worker = dispatcher(store, sink, settings(), telemetry=telemetry)

    with anyio.fail_after(10):
        await worker.run(until_drained=drained())

    assert [[e.key for e in b] for b in sink.batches] == [["e1", "e2", "e3"], ["e4", "e5", "e6"], ["e7"]]
    assert (worker.offset, worker.delivered, worker.healthy) == (7, 7, True)
    assert await store.sinks() == [
        {"name": "mem", "offset": 7, "delivered_total": 7, "last_delivery_at": 42.0, "last_error": None, "backlog": 0}
    ]
    assert await store.read_spool(0, 100) == []
    assert telemetry.registry.get_sample_value("mimecast_events_delivered_total", {"sink": "mem"}) == 7.0


async def test_out_events_carry_key_time_and_spooled_doc(store: StateStore) -> None:
    """Each OutEvent has the key, event time, spooled JSON, that JSON as line (format json), and its stream."""
    await spool(store, ["only"])
    sink = MemorySink()

    with anyio.fail_after(10):
        await dispatcher(store, sink, settings()).run(until_drained=drained())

    expected_doc = orjson.dumps(ecs("only"))
    assert sink.batches == [[OutEvent("only", 1_700_000_000, expected_doc, expected_doc, "acme", "ttp_url")]]


async def test_resumes_from_saved_offset(store: StateStore) -> None:
    """A new dispatcher for the same sink starts after the offset a previous one saved."""
    await spool(store, KEYS)
    await store.sink_offset("mem")
    await store.sink_offset("other")
    await store.ack("mem", 5, 5, now=1.0, sinks=["mem", "other"])
    sink = MemorySink()

    with anyio.fail_after(10):
        await dispatcher(store, sink, settings(), all_sinks=["mem", "other"]).run(until_drained=drained())

    assert sink.keys == ["e6", "e7"]


async def test_idle_dispatcher_wakes_on_signal_and_returns_when_drained(store: StateStore) -> None:
    """Started on an empty spool, it delivers what is committed after a notify, then returns once drained."""
    sink = MemorySink()
    signal = SpoolSignal()
    until = anyio.Event()
    worker = Dispatcher(settings(), sink, store, Telemetry(), signal, all_sinks=["mem"], rng=NoJitter())

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(functools.partial(worker.run, until_drained=until))
            await anyio.sleep(0.05)
            await spool(store, ["late1", "late2"])
            signal.notify()
            await sink.accepted.wait()
            until.set()
            signal.notify()

    assert sink.keys == ["late1", "late2"]
    assert worker.offset == 2


async def test_failed_batch_is_retried_with_growing_capped_delays(store: StateStore) -> None:
    """5 failures: the same batch is offered 6 times, delays 0.5 1 2 3 3 (cap 3), offset still 0 meanwhile."""
    await spool(store, KEYS)
    sink = MemorySink(fail_next=5)
    sleep = SleepRecorder(store)
    telemetry = Telemetry()
    worker = dispatcher(store, sink, settings(), sleep=sleep, telemetry=telemetry)

    with anyio.fail_after(10):
        await worker.run(until_drained=drained())

    assert sink.attempts[:6] == [["e1", "e2", "e3"]] * 6
    assert sink.attempts[6:] == [["e4", "e5", "e6"], ["e7"]]
    assert sink.keys == KEYS
    assert sleep.delays == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert sleep.sink_rows == [(0, "target down")] * 5
    assert (await store.sinks())[0]["offset"] == 7
    assert (await store.sinks())[0]["last_error"] is None
    assert telemetry.registry.get_sample_value("mimecast_sink_failures_total", {"sink": "mem"}) == 5.0


async def test_backoff_restarts_after_a_success(store: StateStore) -> None:
    """Failures after a successful batch start again from the shortest delay."""
    await spool(store, KEYS)
    sink = MemorySink(fail_attempts={1, 2, 4, 5})
    sleep = SleepRecorder(store)

    with anyio.fail_after(10):
        await dispatcher(store, sink, settings(), sleep=sleep).run(until_drained=drained())

    assert sleep.delays == [0.5, 1.0, 0.5, 1.0]
    assert sleep.sink_rows == [(0, "target down"), (0, "target down"), (3, "target down"), (3, "target down")]
    assert sink.keys == KEYS


async def test_retry_after_from_the_sink_is_honoured(store: StateStore) -> None:
    """A SinkError with retry_after_secs 7.5 waits 7.5 s even above retry_max_secs 3."""
    await spool(store, ["a"])
    sink = MemorySink(fail_next=1, retry_after_secs=7.5)
    sleep = SleepRecorder(store)

    with anyio.fail_after(10):
        await dispatcher(store, sink, settings(), sleep=sleep).run(until_drained=drained())

    assert sleep.delays == [7.5]
    assert sink.keys == ["a"]


async def test_jittered_delay_stays_within_half_and_full_backoff(store: StateStore) -> None:
    """With real jitter, each delay lies in [backoff/2, backoff], backoff capped at retry_max_secs."""
    await spool(store, ["a"])
    sink = MemorySink(fail_next=8)
    sleep = SleepRecorder(store)
    worker = Dispatcher(
        settings(retry_max_secs=4.0),
        sink,
        store,
        Telemetry(),
        SpoolSignal(),
        all_sinks=["mem"],
        rng=random.Random(1),
        sleep=sleep,
    )

    with anyio.fail_after(10):
        await worker.run(until_drained=drained())

    ceilings = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0, 4.0]
    assert len(sleep.delays) == 8
    assert all(c / 2 <= d <= c for d, c in zip(sleep.delays, ceilings, strict=True))


async def test_failing_sink_does_not_block_the_other(store: StateStore) -> None:
    """One sink down: the other delivers everything; rows are deleted only once both have acked."""
    await spool(store, KEYS)
    good, bad = MemorySink(), MemorySink(fail_next=1_000_000)
    bad_failed, repaired = anyio.Event(), anyio.Event()
    bad_delays: list[float] = []

    async def bad_sleep(seconds: float) -> None:
        bad_delays.append(seconds)
        bad_failed.set()
        await repaired.wait()

    names = ["bad", "good"]
    telemetry = Telemetry()
    good_worker = Dispatcher(
        settings("good"), good, store, telemetry, SpoolSignal(), all_sinks=names, rng=NoJitter(), clock=lambda: 42.0
    )
    bad_worker = Dispatcher(
        settings("bad"), bad, store, telemetry, SpoolSignal(), all_sinks=names, rng=NoJitter(), sleep=bad_sleep
    )
    good_done = anyio.Event()

    async def run_good() -> None:
        await good_worker.run(until_drained=drained())
        good_done.set()

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run_good)
            tg.start_soon(functools.partial(bad_worker.run, until_drained=drained()))
            await good_done.wait()
            await bad_failed.wait()

            assert good.keys == KEYS
            assert bad.keys == []
            assert bad.attempts == [["e1", "e2", "e3"]]
            assert bad_worker.healthy is False
            assert [(s["name"], s["offset"], s["backlog"], s["last_error"]) for s in await store.sinks()] == [
                ("bad", 0, 7, "target down"),
                ("good", 7, 0, None),
            ]
            assert [r.key for r in await store.read_spool(0, 100)] == KEYS

            bad.fail_next = 0
            repaired.set()

    assert bad.keys == KEYS
    assert bad_delays == [0.5]
    assert bad_worker.healthy is True
    assert await store.read_spool(0, 100) == []
    assert [(s["name"], s["offset"], s["backlog"]) for s in await store.sinks()] == [("bad", 7, 0), ("good", 7, 0)]
    assert telemetry.registry.get_sample_value("mimecast_events_delivered_total", {"sink": "good"}) == 7.0
    assert telemetry.registry.get_sample_value("mimecast_sink_failures_total", {"sink": "bad"}) == 1.0


async def test_raw_format_sends_encode_raw_lines(store: StateStore) -> None:
    """format raw: each line is the original record plus account and log type; doc stays the ECS JSON."""
    await spool(store, ["r1", "r2"])
    sink = MemorySink()

    with anyio.fail_after(10):
        await dispatcher(store, sink, settings(format="raw")).run(until_drained=drained())

    assert [e.line for e in sink.batches[0]] == [
        b'{"mimecast_account":"acme","mimecast_log_type":"ttp_url","id":"r1","url":"https://example.com/r1"}',
        b'{"mimecast_account":"acme","mimecast_log_type":"ttp_url","id":"r2","url":"https://example.com/r2"}',
    ]
    assert [e.doc for e in sink.batches[0]] == [orjson.dumps(ecs("r1")), orjson.dumps(ecs("r2"))]


async def test_batch_is_cut_at_batch_max_bytes(store: StateStore) -> None:
    """batch_max_bytes stops a batch before the event that would exceed it (one event at least)."""
    await spool(store, KEYS)
    line = len(orjson.dumps(ecs("e1"))) + 1  # each line and its newline
    sink = MemorySink()

    with anyio.fail_after(10):
        await dispatcher(store, sink, settings(batch_max_events=10, batch_max_bytes=2 * line)).run(
            until_drained=drained()
        )
    assert [len(b) for b in sink.batches] == [2, 2, 2, 1]

    tiny = MemorySink()
    await spool(store, ["x1", "x2"], window_end=3_000)
    with anyio.fail_after(10):
        await dispatcher(store, tiny, settings("tiny", batch_max_events=10, batch_max_bytes=1)).run(
            until_drained=drained()
        )
    assert all(len(b) == 1 for b in tiny.batches)  # a limit below one event still moves one at a time


async def test_partial_batch_waits_up_to_batch_max_age(store: StateStore) -> None:
    """A partial batch waits for more events up to batch_max_age_secs, so events that come meanwhile join it."""
    await spool(store, ["a1", "a2"])
    sink = MemorySink()
    signal = SpoolSignal()
    worker = Dispatcher(
        settings(batch_max_events=10, batch_max_age_secs=0.6),
        sink,
        store,
        Telemetry(),
        signal,
        all_sinks=["mem"],
        rng=NoJitter(),
    )

    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        await anyio.sleep(0.2)
        assert sink.batches == []  # still waiting for the batch to fill
        await spool(store, ["a3"], window_end=3_000)
        signal.notify()
        with anyio.fail_after(5):
            await sink.accepted.wait()
        tg.cancel_scope.cancel()

    assert [[e.key for e in b] for b in sink.batches] == [["a1", "a2", "a3"]]


async def test_draining_stops_at_drain_through_while_others_keep_spooling(store: StateStore) -> None:
    """A replica stopping on shared state drains what was spooled when it stopped (drain_through), not
    what other replicas commit meanwhile: that is the next owner's, and the stop stays short."""
    await spool(store, KEYS)
    await spool(store, ["other-replica-1", "other-replica-2"], window_end=3_000)
    sink = MemorySink()
    worker = dispatcher(store, sink, settings())
    worker.drain_through = len(KEYS)

    with anyio.fail_after(10):
        await worker.run(until_drained=drained())

    assert sink.keys == KEYS
    assert await store.sink_offset("mem") == len(KEYS)
    assert await store.backlog(len(KEYS)) == 2


async def test_wind_down_returns_after_the_batch_in_flight_is_saved(store: StateStore) -> None:
    """A replica handing the sink over asks it to wind down while a batch is being sent: that batch
    is delivered and its offset saved before run() returns, so the next owner repeats nothing."""
    await spool(store, KEYS)
    sink = MemorySink()
    sink.hold = anyio.Event()
    worker = dispatcher(store, sink, settings())

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            await sink.sending.wait()  # the first batch is on its way
            worker.wind_down()
            sink.hold.set()

    assert sink.keys == KEYS[:3]
    assert await store.sink_offset("mem") == 3
