"""A replica restarted under the same `node` name (after a crash) takes its leases back at once, and
the new epoch fences whatever the dead process might still try to write."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from collector.config.model import StateConfig
from collector.config.options import Secret
from collector.logtypes.base import Event
from collector.state.base import LeaseLost
from collector.state.pg_store import PostgresStore

LEASE_SECS = 30.0  # far longer than the test: nothing expires on its own


@pytest.fixture
async def open_replica(pg_state_options: dict[str, Any]) -> AsyncIterator[Callable[[str], Awaitable[PostgresStore]]]:
    """Factory: a fencing PostgresStore on this test's schema, as the collector runs it, named ``node``."""
    opened: list[PostgresStore] = []

    async def open_(node: str) -> PostgresStore:
        options = pg_state_options
        config = StateConfig(
            backend="postgresql",
            url=options["url"],
            password=Secret(options["password"]),
            schema=options["schema"],
            node=node,
            lease_secs=LEASE_SECS,
        )
        store = await PostgresStore.connect(config)
        store.fencing = True
        opened.append(store)
        return store

    yield open_
    for store in opened:
        await store.close()


async def test_a_restarted_node_takes_its_own_leases_back_and_fences_the_old_process(
    open_replica: Callable[[str], Awaitable[PostgresStore]],
) -> None:
    crashed = await open_replica("replica-a")
    await crashed.add_items("stream", ["acme/ttp_url"])
    granted = await crashed.claim("stream", ["acme/ttp_url"], 1, LEASE_SECS)
    crashed.held[("stream", "acme/ttp_url")] = granted["acme/ttp_url"]
    state = await crashed.stream("acme", "ttp_url", start=0)
    # It "dies" here: no leave(), its lease row still names it and was renewed just now.

    other = await open_replica("replica-b")
    assert await other.claim("stream", ["acme/ttp_url"], 1, LEASE_SECS) == {}  # not free for anyone else

    restarted = await open_replica("replica-a")
    again = await restarted.claim("stream", ["acme/ttp_url"], 1, LEASE_SECS)
    assert again == {"acme/ttp_url": granted["acme/ttp_url"] + 1}
    restarted.held[("stream", "acme/ttp_url")] = again["acme/ttp_url"]

    with pytest.raises(LeaseLost):  # the old process, had it survived, can no longer move the stream
        await crashed.commit_page([Event("a", 10, {"k": "a"})], state.window_done(100), seen_until=100, now=1.0)
    result = await restarted.commit_page([Event("a", 10, {"k": "a"})], state.window_done(100), seen_until=100, now=2.0)
    assert result.new == 1
