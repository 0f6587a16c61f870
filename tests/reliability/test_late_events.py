"""Events the API makes visible late: what lag_secs buys, measured.

A window ends lag_secs behind now and is queried once; an event that shows up in the API after
its window was queried (and after the next queries' overlap) is not seen again. README,
"Guarantees", explains the trade-off; this test shows both sides of it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

from collector.config import load_config
from collector.service.app import Collector
from collector.simulator import FakeMimecast, SimRecord, generate
from collector.timeutil import iso
from tests.helpers import delivered_ids, expected_ids, write_config

LATE_BY_SECS = 6


async def test_lag_longer_than_the_ingest_delay_catches_late_events(
    make_sim: Callable[..., Any], tmp_path: Path
) -> None:
    """Events visible 6 s after their time: lag 1 s (no overlap) misses them; lag 9 s collects them all."""
    sim: FakeMimecast = await make_sim()
    now = int(time.time())
    on_time = [SimRecord(r.time, r.time, r.record) for r in generate("ttp_url", 30, start=now - 40, end=now - 5)]
    late = [
        SimRecord(r.time, r.time + LATE_BY_SECS, r.record)
        for r in generate("ttp_url", 3, start=now + 2, end=now + 4, seed=9)
    ]
    sim.add("ttp_url", on_time + late)

    collectors = []
    for name, lag in (("short", 1), ("long", 9)):
        directory = tmp_path / name
        directory.mkdir()
        config = write_config(
            directory,
            sim.base_url,
            account={
                "streams": ["ttp_url"],
                "start": iso(now - 60),
                "lag_secs": lag,
                "overlap_secs": 0,
                "poll_interval_secs": 1,
            },
        )
        collectors.append((directory, Collector(load_config(config), handle_signals=False)))
    async with anyio.create_task_group() as tg:
        for _, collector in collectors:
            tg.start_soon(collector.run)
        await anyio.sleep(now + 4 + LATE_BY_SECS + 9 + 2 - time.time())  # past the long lag's window
        for _, collector in collectors:
            collector.request_stop()

    short, long = (set(delivered_ids(directory / "out")) for directory, _ in collectors)
    assert short == expected_ids({"ttp_url": on_time})  # the late three were queried too early
    assert long == expected_ids({"ttp_url": on_time + late})
