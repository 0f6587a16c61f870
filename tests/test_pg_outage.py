"""PostgreSQL going away under a running store: operations wait and resume, nothing is lost or doubled,
the outage is logged once each way, and readiness says so meanwhile."""

from __future__ import annotations

import io

import anyio
import orjson

from collector.config.model import StateConfig
from collector.config.options import Secret
from collector.logtypes.base import Event
from collector.service.health import readiness
from collector.service.telemetry import Telemetry
from collector.state.pg_store import PostgresStore
from tests.pg_server import PgServer


def events(log: io.StringIO, name: str) -> list[dict[str, object]]:
    return [e for e in map(orjson.loads, log.getvalue().splitlines()) if e.get("event") == name]


async def test_a_commit_during_an_outage_waits_and_lands_once(own_pg_server: PgServer, log_buffer: io.StringIO) -> None:
    config = StateConfig(backend="postgresql", url=own_pg_server.url, password=Secret(own_pg_server.password))
    store = await PostgresStore.connect(config)
    telemetry = Telemetry()
    store.on_availability = telemetry.state_availability
    try:
        state = await store.stream("acme", "ttp_url", start=0)
        await store.commit_page([Event("a", 1, {"k": "a"})], state.next_page(10, "t1"), seen_until=10, now=1.0)
        own_pg_server.stop()
        done = anyio.Event()

        async def commit() -> None:
            page = [Event("b", 2, {"k": "b"}), Event("c", 3, {"k": "c"})]
            result = await store.commit_page(page, state.window_done(10), seen_until=10, now=2.0)
            assert (result.new, result.duplicates) == (2, 0)
            done.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(commit)
            with anyio.fail_after(30):
                while telemetry.state_available:  # noqa: ASYNC110 - waiting for the store to notice
                    await anyio.sleep(0.05)
            assert not done.is_set()
            report = readiness([], telemetry, 0.0, standby_ok=True)
            assert (report["ready"], report["state"]) == (False, "unavailable")
            await anyio.to_thread.run_sync(own_pg_server.start)
            with anyio.fail_after(60):
                await done.wait()
        assert telemetry.state_available
        assert readiness([], telemetry, 0.0, standby_ok=True)["ready"]
        assert telemetry.sample("mimecast_state_up") == 1
        assert len(events(log_buffer, "state_unavailable")) == 1
        assert len(events(log_buffer, "state_available")) == 1
        rows = await store.read_spool(0, 10)
        assert [r.key for r in rows] == ["a", "b", "c"]
        [stream] = await store.streams()
        assert (stream["window_start"], stream["events_total"]) == (10, 3)
        assert own_pg_server.password not in log_buffer.getvalue()
    finally:
        await store.close()


async def test_a_collector_started_before_its_database_waits_for_it(
    own_pg_server: PgServer, log_buffer: io.StringIO
) -> None:
    own_pg_server.stop()
    config = StateConfig(backend="postgresql", url=own_pg_server.url, password=Secret(own_pg_server.password))
    opened: list[PostgresStore] = []

    async def connect() -> None:
        opened.append(await PostgresStore.connect(config))

    async with anyio.create_task_group() as tg:
        tg.start_soon(connect)
        with anyio.fail_after(30):
            while not events(log_buffer, "state_unavailable"):  # noqa: ASYNC110 - waiting for the log line
                await anyio.sleep(0.05)
        assert not opened
        await anyio.to_thread.run_sync(own_pg_server.start)
    try:
        assert (await opened[0].usage()).events == 0
        assert len(events(log_buffer, "state_available")) == 1
    finally:
        await opened[0].close()
