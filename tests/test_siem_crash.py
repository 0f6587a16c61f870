"""SIGKILL a collector that is reading SIEM files: nothing lost, at most one sink batch repeated per kill."""

from __future__ import annotations

import asyncio
import itertools
import random
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from collector.logtypes import dedup_key
from collector.simulator import FakeMimecast
from collector.simulator.siem import generate_siem_files
from tests.helpers import delivered_ids, start_collector, write_config

BATCH = 40
KILLS = 4


async def test_sigkills_mid_answer_lose_nothing_and_repeat_at_most_a_batch_each(
    make_sim: Callable[..., Any], tmp_path: Path
) -> None:
    """Killed 4 times while answers of 2,400 records are being committed, then --once: all there."""
    # Enough work that the fourth kill still lands mid-run on a fast machine (24 answers at 2 a second).
    sim: FakeMimecast = await make_sim(rate_limit=2, rate_window_ms=1000)
    files = generate_siem_files(48, start=1_796_000_000, records_per_file=1200)
    sim.siem.files_per_answer = 2  # 2,400 records an answer: three commits each, kills land between them
    sim.siem.add(files)
    expected = {("mimecast.siem", dedup_key(r, None)) for f in files for r in f.records}
    config = write_config(tmp_path, sim.base_url, account={"streams": ["siem"]}, sink={"batch_max_events": BATCH})
    out, log = tmp_path / "out", tmp_path / "collector.log"
    rng = random.Random(20261202)
    progress = []
    for _ in range(KILLS):
        process = await start_collector(config, log)
        await asyncio.sleep(rng.uniform(1.5, 2.5))
        process.send_signal(signal.SIGKILL)
        assert await process.wait() == -signal.SIGKILL
        progress.append(len(delivered_ids(out)) if out.exists() else 0)

    final = await start_collector(config, log, "--once")
    assert await asyncio.wait_for(final.wait(), timeout=180) == 0

    delivered = delivered_ids(out)
    assert set(delivered) == expected
    assert len(delivered) - len(expected) <= KILLS * BATCH
    assert sum(1 for a, b in itertools.pairwise(progress) if b > a) >= KILLS // 2, progress
    assert progress[-1] < len(expected), progress
    assert sim.stats.bad_auth.total() == 0
