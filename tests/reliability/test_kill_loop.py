"""SIGKILL the collector ten times at random moments, across collection and delivery: nothing is lost."""

from __future__ import annotations

import asyncio
import itertools
import random
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.helpers import delivered_ids, expected_ids, seed, start_collector, write_config

BATCH = 40
KILLS = 10


async def started(log: Path, runs: int) -> None:
    """Until ``log`` holds the start line of the ``runs``-th run."""
    for _ in range(1200):
        if log.exists() and log.read_text().count('"collector_started"') >= runs:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"run {runs} did not start within 60 s: {log.read_text()[-2000:]}")


async def test_ten_sigkills_lose_nothing_and_duplicate_at_most_a_batch_each(
    make_sim: Callable[..., Any], tmp_path: Path, state_options: dict[str, Any]
) -> None:
    """Killed 10 times mid-run, then finished with --once: every event delivered, dupes <= 1 batch per kill."""
    sim = await make_sim(rate_limit=4, rate_window_ms=1000)
    records = seed(sim, 4000, days=2)  # enough that the tenth kill still lands before the end
    # PostgreSQL: every restart is the same replica (`node` configured, as a service unit or a
    # StatefulSet pod has), so it takes its killed predecessor's leases back at once.
    state = {**state_options, "node": "kill-loop"} if state_options.get("backend") == "postgresql" else state_options
    # Small batches, fsync on: delivery runs alongside collection, so kills land in both.
    config = write_config(
        tmp_path, sim.base_url, state=state, account={"page_size": 50}, sink={"batch_max_events": BATCH}
    )
    out, log = tmp_path / "out", tmp_path / "collector.log"
    expected = expected_ids(records)
    rng = random.Random(20261126)
    progress = []
    for run in range(1, KILLS + 1):
        process = await start_collector(config, log)
        # From the moment it runs: Python's start-up alone takes seconds on a loaded machine.
        await started(log, run)
        await asyncio.sleep(rng.uniform(0.5, 1.5))
        process.send_signal(signal.SIGKILL)
        assert await process.wait() == -signal.SIGKILL
        progress.append(len(delivered_ids(out)) if out.exists() else 0)

    final = await start_collector(config, log, "--once")
    assert await asyncio.wait_for(final.wait(), timeout=120) == 0

    delivered = delivered_ids(out)
    assert set(delivered) == expected
    assert len(delivered) - len(expected) <= KILLS * BATCH
    # The kills really landed while work was going on: delivery grew between most of them.
    assert sum(1 for a, b in itertools.pairwise(progress) if b > a) >= KILLS // 2, progress
    assert progress[-1] < len(expected), progress  # and the last kill was still before the end
    assert sim.stats.bad_auth.total() == 0
    assert sim.stats.reused_request_ids == 0
