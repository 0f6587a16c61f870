"""A replica restarted under the same `node` name (after a crash) takes its leases back at once, and
the new epoch fences whatever the dead process might still try to write."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from collector.logtypes.base import Event
from collector.state.base import LeaseLost
from collector.state.pg_store import PostgresStore

LEASE_SECS = 30.0  # far longer than the test: nothing expires on its own


async def test_a_restarted_node_takes_its_own_leases_back_and_fences_the_old_process(
    open_replica: Callable[..., Awaitable[PostgresStore]],
) -> None:
    crashed = await open_replica("replica-a", lease_secs=LEASE_SECS)
    await crashed.add_items("stream", ["acme/ttp_url"])
    granted = await crashed.claim("stream", ["acme/ttp_url"], 1, LEASE_SECS)
    crashed.held[("stream", "acme/ttp_url")] = granted["acme/ttp_url"]
    state = await crashed.stream("acme", "ttp_url", start=0)
    # It "dies" here: no leave(), its lease row still names it and was renewed just now.

    other = await open_replica("replica-b", lease_secs=LEASE_SECS)
    assert await other.claim("stream", ["acme/ttp_url"], 1, LEASE_SECS) == {}  # not free for anyone else

    restarted = await open_replica("replica-a", lease_secs=LEASE_SECS)
    again = await restarted.claim("stream", ["acme/ttp_url"], 1, LEASE_SECS)
    assert again == {"acme/ttp_url": granted["acme/ttp_url"] + 1}
    restarted.held[("stream", "acme/ttp_url")] = again["acme/ttp_url"]

    with pytest.raises(LeaseLost):  # the old process, had it survived, can no longer move the stream
        await crashed.commit_page([Event("a", 10, {"k": "a"})], state.window_done(100), seen_until=100, now=1.0)
    result = await restarted.commit_page([Event("a", 10, {"k": "a"})], state.window_done(100), seen_until=100, now=2.0)
    assert result.new == 1
