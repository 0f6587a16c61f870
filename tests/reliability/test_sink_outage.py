"""A long SIEM outage while collection goes on: memory stays flat, the spool grows on disk, all arrives."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson

from collector.state.base import StateStore
from tests.helpers import expected_ids, seed, start_collector, table, wait_for_log_event, write_config
from tests.receivers import FakeHttpCollector

PER_TYPE = 8000


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def test_outage_keeps_memory_flat_and_loses_nothing(
    make_sim: Callable[..., Any],
    tmp_path: Path,
    state_options: dict[str, Any],
    open_state: Callable[[], Awaitable[StateStore]],
) -> None:
    """24,000 events collected while the HTTP sink is down: RSS flat, spool on disk (in the state file,
    or in PostgreSQL), all delivered after."""
    sim = await make_sim()
    records = seed(sim, PER_TYPE, days=2)
    receiver = FakeHttpCollector()
    sink = {"type": "http", "url": f"{receiver.url}/ingest", "retry_max_secs": 1, "batch_max_events": 500}
    config = write_config(tmp_path, sim.base_url, state=state_options, account={"page_size": 500})
    config.write_text(config.read_text().split("[sinks.local]")[0] + table("sinks.siem", sink))
    state_db = tmp_path / "state" / "collector.db"
    log = tmp_path / "collector.log"
    process = await start_collector(config, log)
    samples: list[tuple[float, float]] = []  # (RSS MiB, state file MiB)
    try:
        # Samples count from the running collector: on a loaded machine imports alone take seconds.
        await wait_for_log_event(log, "collector_started")
        while sum(sim.stats.records_served.values()) < 3 * PER_TYPE or len(samples) < 12:
            await asyncio.sleep(0.25)
            samples.append((rss_mib(process.pid), state_db.stat().st_size / 2**20 if state_db.exists() else 0.0))
        await asyncio.sleep(1.0)  # the last pages are committed
        samples.append((rss_mib(process.pid), state_db.stat().st_size / 2**20 if state_db.exists() else 0.0))
        assert receiver.requests == 0  # the outage is real: nothing could be sent so far
        spooled = await (await open_state()).usage()
        assert (spooled.first_seq, spooled.events >= 2 * PER_TYPE) == (1, True), spooled  # waiting in the spool

        await receiver.start()
        with_events = 0
        for _ in range(600):
            with_events = sum(len(body.splitlines()) for _, body in receiver.received)
            if with_events >= 3 * PER_TYPE:
                break
            await asyncio.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=30) == 0
    finally:
        if process.returncode is None:
            process.kill()
        await receiver.stop()

    rss = [r for r, _ in samples[4:]]  # after start-up
    assert max(rss) - min(rss) < 25, rss  # flat: the backlog is on disk, not in memory
    assert max(rss) < 150, rss
    if state_options.get("backend") != "postgresql":
        assert samples[-1][1] > 20, samples  # ... where the spool grew to hold all of it
    delivered = [
        (event["event"]["dataset"], event["event"]["id"])
        for _, body in receiver.received
        for event in map(orjson.loads, body.splitlines())
    ]
    assert sorted(delivered) == sorted(expected_ids(records))
