"""A full spool, on both backends: byte accounting in the store, `block` pauses pollers, `drop_oldest`
counts what it drops."""

from __future__ import annotations

import io
from collections.abc import Awaitable, Callable

import anyio
import orjson
import pytest

from collector.config.model import StateConfig
from collector.delivery.backpressure import SpoolGate
from collector.delivery.dispatcher import SpoolSignal
from collector.logtypes import Event, serialize
from collector.service.telemetry import Telemetry
from collector.state.base import StateStore


@pytest.fixture
def store(state_store: StateStore) -> StateStore:
    """A fresh store, on each backend."""
    return state_store


def event(key: str, size: int = 10) -> Event:
    return Event(key, 100, {"k": key, "pad": "x" * size})


async def spool(store: StateStore, keys: list[str], size: int = 10) -> int:
    """Commit one page with these events; the total of their spooled bytes."""
    state = await store.stream("acme", "ttp_url", start=0)
    events = [event(k, size) for k in keys]
    await store.commit_page(events, state.window_done(1000), seen_until=1000, now=1.0)
    return sum(len(serialize(e.doc)) for e in events)


async def test_spool_bytes_follow_commits_acks_and_reopen(open_state: Callable[[], Awaitable[StateStore]]) -> None:
    """The byte count grows with each commit, shrinks with each deleting ack, and survives reopening."""
    store = await open_state()
    first = await spool(store, ["a", "b", "c"])
    second = await spool(store, ["d", "e"], size=50)
    assert (await store.usage()).bytes == first + second
    await store.sink_offset("only")
    await store.ack("only", 3, 3, now=2.0, sinks=["only"])
    usage = await store.usage()
    assert (usage.events, usage.bytes, usage.first_seq, usage.last_seq) == (2, second, 4, 5)
    await store.close()

    reopened = await open_state()
    assert (await reopened.usage()).bytes == second


async def test_drop_oldest_to_the_event_limit(store: StateStore) -> None:
    """Ten spooled, limit six: the four oldest go, in one transaction, bytes adjusted."""
    await spool(store, [str(i) for i in range(10)])

    dropped = await store.drop_oldest(max_events=6, max_bytes=0)

    usage = await store.usage()
    assert dropped == (1, 4)
    assert (usage.events, usage.first_seq) == (6, 5)
    assert usage.bytes == sum(len(serialize(event(str(i)).doc)) for i in range(4, 10))
    assert [r.key for r in await store.read_spool(0, 100)] == [str(i) for i in range(4, 10)]


async def test_drop_oldest_to_the_byte_limit(store: StateStore) -> None:
    """A byte limit drops just enough of the oldest rows to get under it."""
    per_row = len(serialize(event("0").doc))
    await spool(store, [str(i) for i in range(10)])

    assert await store.drop_oldest(max_events=0, max_bytes=per_row * 7) == (1, 3)
    assert (await store.usage()).bytes == per_row * 7
    assert await store.drop_oldest(max_events=0, max_bytes=per_row * 7) == (0, 0)  # already fits


async def test_backlog_after_drops_counts_only_what_is_left(store: StateStore) -> None:
    """A sink whose undelivered rows were dropped sees a backlog of what is still there."""
    await spool(store, [str(i) for i in range(10)])
    await store.drop_oldest(max_events=4, max_bytes=0)
    assert await store.backlog(0) == 4
    assert await store.backlog(8) == 2


def gate(
    store: StateStore, acked: SpoolSignal, telemetry: Telemetry, *, when_full: str, offsets: dict[str, int]
) -> SpoolGate:
    state = StateConfig(max_spool_events=5, max_spool_bytes=0, when_full=when_full)
    return SpoolGate(store, state, telemetry, acked, lambda: offsets)


async def test_block_waits_until_a_sink_frees_room(store: StateStore, log_buffer: io.StringIO) -> None:
    """With `block`, a poller waits at a full spool until an ack deletes rows, then goes on."""
    await spool(store, [str(i) for i in range(6)])
    await store.sink_offset("siem")
    acked = SpoolSignal()
    blocking = gate(store, acked, Telemetry(), when_full="block", offsets={"siem": 0})
    passed = anyio.Event()

    async def poller() -> None:
        await blocking.before_fetch()
        passed.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(poller)
        await anyio.sleep(0.3)
        assert not passed.is_set()  # still waiting: the spool is full
        await store.ack("siem", 3, 3, now=1.0, sinks=["siem"])
        acked.notify()
        with anyio.fail_after(5):
            await passed.wait()

    events = [orjson.loads(line)["event"] for line in log_buffer.getvalue().splitlines()]
    assert events.count("spool_full_collection_paused") == 1
    assert events.count("spool_has_room_collection_resumed") == 1
    assert (await store.usage()).events == 3  # nothing was dropped


async def test_drop_oldest_counts_what_each_sink_lost(store: StateStore, log_buffer: io.StringIO) -> None:
    """With `drop_oldest`, the oldest rows go and each sink's undelivered losses are counted and logged."""
    await spool(store, [str(i) for i in range(9)])
    telemetry = Telemetry()
    dropping = gate(store, SpoolSignal(), telemetry, when_full="drop_oldest", offsets={"fast": 3, "slow": 0})

    await dropping.before_fetch()

    assert (await store.usage()).events == 5
    assert telemetry.sample("mimecast_events_dropped_total", sink="slow") == 4
    assert telemetry.sample("mimecast_events_dropped_total", sink="fast") == 1
    lines = [orjson.loads(line) for line in log_buffer.getvalue().splitlines()]
    warning = next(line for line in lines if line["event"] == "spool_full_dropped_oldest")
    assert warning["dropped_events"] == 4
    assert warning["undelivered_per_sink"] == {"fast": 1, "slow": 4}


async def test_no_limits_no_queries(store: StateStore) -> None:
    """With both limits at 0 the gate never blocks, whatever is spooled."""
    await spool(store, [str(i) for i in range(50)])
    open_gate = SpoolGate(store, StateConfig(max_spool_bytes=0, max_spool_events=0), Telemetry(), SpoolSignal(), dict)
    with anyio.fail_after(1):
        await open_gate.before_fetch()
