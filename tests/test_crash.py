"""Real processes, real signals: SIGTERM drains and exits 0; a second signal stops at once.

SIGKILL at random moments is in tests/reliability/test_kill_loop.py."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from tests.helpers import delivered_ids, expected_ids, seed, start_collector, wait_for_log_event, write_config

BATCH = 40


async def test_sigterm_drains_the_spool_and_exits_zero(
    make_sim: Callable[..., Any], tmp_path: Path, state_options: dict[str, Any]
) -> None:
    """SIGTERM mid-run: exit 0, one summary line, nothing duplicated when the next run finishes the job."""
    sim = await make_sim(rate_limit=10, rate_window_ms=1000)
    records = seed(sim, 1500, days=2)
    config = write_config(
        tmp_path, sim.base_url, state=state_options, account={"page_size": 50}, sink={"batch_max_events": BATCH}
    )
    out, log = tmp_path / "out", tmp_path / "collector.log"

    process = await start_collector(config, log)
    await wait_for_log_event(log, "collector_started")  # a signal before the handlers exist just kills it
    await asyncio.sleep(2.0)
    process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(process.wait(), timeout=30) == 0

    lines = [orjson.loads(line) for line in log.read_bytes().splitlines() if line.startswith(b"{")]
    summaries = [line for line in lines if line["event"] == "collector_stopped"]
    assert len(summaries) == 1
    assert summaries[0]["drained"] is True
    delivered_at_stop = len(delivered_ids(out))
    assert summaries[0]["events_delivered"]["local"] == delivered_at_stop
    assert 0 < delivered_at_stop < len(expected_ids(records))

    final = await start_collector(config, log, "--once")
    assert await asyncio.wait_for(final.wait(), timeout=120) == 0
    delivered = delivered_ids(out)
    assert sorted(delivered) == sorted(expected_ids(records))  # complete, and not one duplicate


async def test_second_signal_stops_at_once_and_loses_nothing(
    make_sim: Callable[..., Any], tmp_path: Path, state_options: dict[str, Any]
) -> None:
    """Two SIGTERMs: the drain is cut short, exit 0, and the spooled rest is delivered by the next run."""
    sim = await make_sim(rate_limit=20, rate_window_ms=1000)
    records = seed(sim, 1500, days=2)
    # A sink that cannot keep up (fsync of 1-event batches), so the spool is not empty at the signal.
    config = write_config(
        tmp_path, sim.base_url, state=state_options, account={"page_size": 100}, sink={"batch_max_events": 1}
    )
    config.write_text(config.read_text().replace("shutdown_grace_secs = 10", "shutdown_grace_secs = 300"))
    out, log = tmp_path / "out", tmp_path / "collector.log"

    process = await start_collector(config, log)
    await wait_for_log_event(log, "collector_started")
    await asyncio.sleep(2.5)
    process.send_signal(signal.SIGTERM)
    await asyncio.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(process.wait(), timeout=10) == 0  # not the 300 s grace

    lines = [orjson.loads(line) for line in log.read_bytes().splitlines() if line.startswith(b"{")]
    assert [line["event"] for line in lines if line["event"] == "second_signal_stopping_now"] == [
        "second_signal_stopping_now"
    ]
    summary = next(line for line in lines if line["event"] == "collector_stopped")
    assert summary["drained"] is False
    config.write_text(config.read_text().replace("batch_max_events = 1", "batch_max_events = 1000"))
    final = await start_collector(config, log, "--once")
    assert await asyncio.wait_for(final.wait(), timeout=120) == 0
    delivered = delivered_ids(out)
    assert set(delivered) == expected_ids(records)
    assert len(delivered) - len(set(delivered)) <= 1  # at most the one batch (of 1) in flight at the stop
