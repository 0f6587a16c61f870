"""Leases and the fence on the PostgreSQL state, two replicas' stores in one process (the three-replica
chaos run is tests/test_replicas.py): a claim takes only free or expired leases, each at a new epoch,
and a replica whose lease was taken over writes nothing at all."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import pytest

from collector.logtypes.base import Event
from collector.state.base import LeaseLost
from collector.state.db import StoreError
from collector.state.leases import take_over
from collector.state.pg_store import PostgresStore

LEASE_SECS = 3.0

STREAM = "acme/ttp_url"
TwoNodes = tuple[PostgresStore, PostgresStore]


@pytest.fixture
async def two_nodes(open_replica: Callable[..., Awaitable[PostgresStore]]) -> TwoNodes:
    """node-a and node-b on one schema, fencing on, as two replicas' stores (leases kept by hand)."""
    stores = [await open_replica(node, lease_secs=LEASE_SECS) for node in ("node-a", "node-b")]
    for store in stores:
        await store.add_items("stream", [STREAM])
        await store.add_items("sink", ["http"])
    return stores[0], stores[1]


async def take(store: PostgresStore, kind: str, name: str) -> int:
    """What a takeover does: fence the holder (epoch + 1, free), then claim (epoch + 1 again)."""
    assert await store.run(lambda conn: take_over(conn, kind, name, force=True)) is None
    epoch = (await store.claim(kind, [name], 1, LEASE_SECS))[name]
    store.held[(kind, name)] = epoch
    return epoch


async def test_a_fenced_replica_writes_nothing(two_nodes: TwoNodes) -> None:
    """After node-b takes the stream and the sink over, node-a's page commit, position and ack all
    roll back whole: the rows keep what node-a wrote while it held them, the late page is neither
    spooled nor deduped; node-b's own writes then land with its epochs."""
    a, b = two_nodes
    a.held[("stream", STREAM)] = (await a.claim("stream", [STREAM], 1, LEASE_SECS))[STREAM]
    a.held[("sink", "http")] = (await a.claim("sink", ["http"], 1, LEASE_SECS))["http"]
    state = await a.stream("acme", "ttp_url", start=1_000)
    await a.commit_page([Event("first", 100, {"k": "first"})], state.window_done(2_000), seen_until=2_000, now=5.0)
    await a.sink_offset("http")
    await a.ack("http", 1, 1, now=5.0, sinks=["http"])

    stream_epoch, sink_epoch = await take(b, "stream", STREAM), await take(b, "sink", "http")
    stale = replace(state, window_start=2_000)
    with pytest.raises(LeaseLost):
        await a.commit_page([Event("late", 100, {"k": "late"})], stale.window_done(3_000), seen_until=3_000, now=6.0)
    with pytest.raises(LeaseLost):
        await a.save_position(stale.window_done(4_000))
    with pytest.raises(LeaseLost):
        await a.ack("http", 1, 0, now=6.0, sinks=["http"])

    async def rows(conn: Any) -> Any:
        return (
            await conn.fetchrow("SELECT window_start, written_by, written_epoch FROM streams"),
            await conn.fetchrow("SELECT offset_seq, written_by, written_epoch FROM sinks"),
            await conn.fetchval("SELECT count(*) FROM dedup WHERE key = 'late'"),
            await conn.fetchval("SELECT last_seq FROM spool_head"),
        )

    stream_row, sink_row, late_keys, last_seq = await b.run(rows, write=False)
    assert tuple(stream_row) == (2_000, "node-a", 1)
    assert tuple(sink_row) == (1, "node-a", 1)
    assert (late_keys, last_seq) == (0, 1)
    # The new owner's writes land, and carry its epoch.
    late = [Event("late", 100, {"k": "late"})]
    result = await b.commit_page(late, stale.window_done(3_000), seen_until=3_000, now=7.0)
    assert result.new == 1
    await b.ack("http", 2, 1, now=7.0, sinks=["http"])
    stream_row, sink_row, late_keys, last_seq = await b.run(rows, write=False)
    assert tuple(stream_row) == (3_000, "node-b", stream_epoch)
    assert tuple(sink_row) == (2, "node-b", sink_epoch)
    assert (late_keys, last_seq) == (1, 2)


async def test_a_live_lease_is_not_claimed_and_a_released_one_is(two_nodes: TwoNodes) -> None:
    """Claims take only free or expired leases, each at a new epoch; the old holder's renewal then fails."""
    a, b = two_nodes
    first = await a.claim("stream", [STREAM], 1, LEASE_SECS)
    assert first == {STREAM: 1}
    assert await b.claim("stream", [STREAM], 1, LEASE_SECS) == {}
    assert await a.renew({("stream", STREAM): 1}, LEASE_SECS) == {("stream", STREAM)}
    await a.release("stream", [STREAM])
    assert await b.claim("stream", [STREAM], 1, LEASE_SECS) == {STREAM: 2}
    assert await a.renew({("stream", STREAM): 1}, LEASE_SECS) == set()
    owners = await a.owners()
    assert owners[("stream", STREAM)][0] == "node-b"


async def test_a_lease_expires_by_its_holders_lease_secs_not_the_claimers(
    open_replica: Callable[..., Awaitable[PostgresStore]],
) -> None:
    """A holder with a long lease_secs renewed 10 s ago still holds it for a claimer whose own
    lease_secs is 3: replicas configured apart never take each other's leases early."""
    patient = await open_replica("node-long", lease_secs=3600)
    eager = await open_replica("node-short", lease_secs=3)
    await patient.add_items("stream", [STREAM])
    assert await patient.claim("stream", [STREAM], 1, 3600) == {STREAM: 1}

    async def age(conn: Any) -> None:
        await conn.execute("UPDATE leases SET renewed_at = now() - interval '10 seconds'")

    await patient.run(age)
    assert await eager.claim("stream", [STREAM], 1, 3) == {}
    assert await eager.next_expiry_secs() is not None  # it wakes when the lease really runs out


async def test_two_live_processes_under_one_node_name_are_refused(
    open_replica: Callable[..., Awaitable[PostgresStore]],
) -> None:
    """The second beat of either twin finds the other's in between: a StoreError naming the fix, instead
    of two processes taking each other's leases every round. A restart under the name is not refused."""
    first = await open_replica("node-a")
    await first.heartbeat(LEASE_SECS)
    restarted = await open_replica("node-a")  # the first "died": its beat is fresh, but it was the last
    await restarted.heartbeat(LEASE_SECS)
    await restarted.heartbeat(LEASE_SECS)
    twin = await open_replica("node-a")
    await twin.heartbeat(LEASE_SECS)
    with pytest.raises(StoreError, match="another live process uses node name 'node-a'"):
        await restarted.heartbeat(LEASE_SECS)
