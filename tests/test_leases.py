"""Ownership on PostgreSQL, on a real server: reset's fencing of a live owner, fair shares, takeover
after a clean stop, and the loop's behaviour when a lease is taken away under it (the fence on two
stores is tests/test_pg_leases.py; three replicas under faults, tests/test_replicas.py)."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest

from collector.logtypes.base import Event
from collector.service.ownership import LeaseOwnership
from collector.service.telemetry import Telemetry
from collector.state.base import LeaseLost
from collector.state.pg_store import PostgresStore

STREAM = "acme/ttp_url"


def ev(key: str, time: int = 100) -> Event:
    return Event(key, time, {"k": key})


async def holding(store: PostgresStore, kind: str, name: str, lease_secs: float) -> int:
    """Claim the lease for ``store``'s node as the ownership loop does; its epoch."""
    await store.add_items(kind, [name])
    got = await store.claim(kind, [name], 1, lease_secs)
    assert name in got
    store.held[(kind, name)] = got[name]
    return got[name]


async def test_a_free_lease_takes_a_new_epoch_and_reset_fences_the_owner(
    open_replica: Callable[..., Awaitable[PostgresStore]],
) -> None:
    """reset refuses a stream a live node holds; with force it bumps the epoch, so the owner is fenced."""
    a, tool = await open_replica("node-a"), await open_replica("cli")
    await holding(a, "stream", STREAM, 30)
    state = await a.stream("acme", "ttp_url", start=1_000)

    blocker = await tool.reset_owned("acme", "ttp_url", 500, force=False)
    assert blocker is not None
    assert (blocker.node, blocker.epoch) == ("node-a", 1)
    assert (await tool.streams())[0]["window_start"] == 1_000

    assert await tool.reset_owned("acme", "ttp_url", 500, force=True) is None
    with pytest.raises(LeaseLost):
        await a.commit_page([ev("late")], state.next_page(9_000, "t"), seen_until=9_000, now=1.0)
    [row] = await tool.streams()
    assert (row["window_start"], row["paging"]) == (500, False)
    assert (await tool.leases())[0].epoch == 2


async def lapse(store: PostgresStore, kind: str, name: str) -> None:
    """Age the lease's last renewal past its lease_secs, as a holder that stopped renewing leaves it."""

    async def op(conn: Any) -> None:
        await conn.execute(
            "UPDATE leases SET renewed_at = now() - interval '1 hour' WHERE kind = $1 AND name = $2", kind, name
        )

    await store.run(op)


async def wait_until(check: Callable[[], bool], limit_secs: float = 20) -> None:
    with anyio.fail_after(limit_secs):
        while not check():  # noqa: ASYNC110 - polling what the replicas run
            await anyio.sleep(0.05)


async def test_replicas_share_streams_fairly_and_take_over_when_one_leaves(
    open_replica: Callable[..., Awaitable[PostgresStore]],
) -> None:
    """Three replicas over seven streams hold 3/2/2, each stream runs in exactly one place; when one
    leaves cleanly, the other two run everything between them (4/3)."""
    names = [f"acct{i}/ttp_url" for i in range(7)]
    stores = [await open_replica(f"node-{i}") for i in range(3)]
    running: dict[str, set[str]] = {s.node: set() for s in stores}
    owners = [LeaseOwnership(s, {"stream": names}, Telemetry(), lease_secs=3) for s in stores]

    def work(node: str, name: str) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            running[node].add(name)
            try:
                await anyio.sleep_forever()
            finally:
                running[node].discard(name)

        return run

    def layout() -> list[int]:
        return sorted(len(v) for v in running.values())

    def everything_once() -> bool:
        placed = [name for names_ in running.values() for name in names_]
        return sorted(placed) == sorted(names)

    scopes = [anyio.CancelScope() for _ in stores]

    async def replica(index: int) -> None:
        with scopes[index]:
            async with anyio.create_task_group() as tg:
                tg.start_soon(owners[index].run)
                for name in names:
                    tg.start_soon(owners[index].owned, "stream", name, work(stores[index].node, name))

    async with anyio.create_task_group() as tg:
        for index in range(3):
            tg.start_soon(replica, index)
        await wait_until(lambda: everything_once() and layout() == [2, 2, 3])

        scopes[0].cancel()  # a clean stop: its streams end, then it lets its leases go at once
        await wait_until(lambda: not running[stores[0].node])
        await owners[0].leave()
        await wait_until(lambda: everything_once() and layout() == [0, 3, 4])
        leases = await stores[1].leases()
        assert {lease.node for lease in leases} == {stores[1].node, stores[2].node}
        tg.cancel_scope.cancel()


async def test_a_lease_taken_away_stops_its_work_and_the_loop_gets_it_back_later(
    open_replica: Callable[..., Awaitable[PostgresStore]],
) -> None:
    """Another node takes the stream (its lease looked expired): the owner's next renewal fails, its
    work is cancelled at once; once the other node releases it, the owner runs it again."""
    a, b = await open_replica("node-a"), await open_replica("node-b")
    ownership = LeaseOwnership(a, {"stream": [STREAM]}, Telemetry(), lease_secs=3)
    starts: list[float] = []
    stops: list[float] = []

    async def work() -> None:
        starts.append(anyio.current_time())
        try:
            await anyio.sleep_forever()
        finally:
            stops.append(anyio.current_time())

    async with anyio.create_task_group() as tg:
        tg.start_soon(ownership.run)
        tg.start_soon(ownership.owned, "stream", STREAM, work)
        await wait_until(lambda: len(starts) == 1)
        await lapse(b, "stream", STREAM)  # as if a had missed its renewals (a pause, a partition)
        await holding(b, "stream", STREAM, 3)
        await wait_until(lambda: len(stops) == 1)
        assert not ownership.holds("stream", STREAM)
        await b.release("stream", [STREAM])
        await wait_until(lambda: len(starts) == 2)
        assert ownership.holds("stream", STREAM)
        tg.cancel_scope.cancel()


async def test_a_sink_handed_to_a_new_replica_winds_down_instead_of_being_cancelled(
    open_replica: Callable[..., Awaitable[PostgresStore]],
) -> None:
    """A replica that must give its sink to one that joined asks it to wind down (finish the batch
    in flight, save its offset) before letting the lease go: a planned handover repeats nothing."""
    first, joining = await open_replica("node-b"), await open_replica("node-a")  # node-a ranks first
    endings: list[str] = []
    running: dict[str, int] = {"node-a": 0, "node-b": 0}

    def sink_work(node: str) -> tuple[Callable[[], Awaitable[None]], Callable[[], None]]:
        stop = anyio.Event()

        async def work() -> None:
            running[node] += 1
            try:
                await stop.wait()
                endings.append(f"{node}: wound down")
            except anyio.get_cancelled_exc_class():
                endings.append(f"{node}: cancelled")
                raise
            finally:
                running[node] -= 1

        return work, stop.set

    async with anyio.create_task_group() as tg:
        owners = [LeaseOwnership(s, {"sink": ["local"]}, Telemetry(), lease_secs=3) for s in (first, joining)]
        work, wind = sink_work("node-b")
        tg.start_soon(owners[0].run)
        tg.start_soon(functools.partial(owners[0].owned, "sink", "local", work, wind_down=wind))
        await wait_until(lambda: running["node-b"] == 1)
        work, wind = sink_work("node-a")
        tg.start_soon(owners[1].run)
        tg.start_soon(functools.partial(owners[1].owned, "sink", "local", work, wind_down=wind))
        await wait_until(lambda: running["node-a"] == 1)
        assert endings == ["node-b: wound down"]
        assert running["node-b"] == 0
        tg.cancel_scope.cancel()
