"""Benchmark: end-to-end throughput of `run --once` against a minimal fetch-and-write baseline.

3 log types x 60,000 events (default) on the loopback simulator with no rate limit, file sink.
Both the collector and the baseline run as child processes; the simulator runs in this process, on
the machine's other core. Prints one summary line: events/s, CPU seconds per 10,000 events and peak
RSS for both, and the collector's share of the baseline's rate.

Usage: python bench/throughput.py [--events N] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).parent))
from harness import LOG_TYPES, ChildResult, collector_config, count_lines, run_child, start_simulator


def figures(result: ChildResult, events: int) -> dict[str, Any]:
    return {
        "events": events,
        "wall_secs": round(result.wall_secs, 2),
        "events_per_sec": round(events / result.wall_secs),
        "cpu_secs_per_10k": round(result.cpu_secs / events * 10_000, 3),
        "peak_rss_mib": round(result.peak_rss_mib, 1),
        "exit_code": result.exit_code,
    }


async def run(per_type: int) -> dict[str, Any]:
    # No limit in effect, but headers on every answer, as the real API sends them: a client that
    # paces by the headers then runs at full speed (without headers it would fall back to 5 calls/s).
    sim, start = await start_simulator(per_type, rate_limit=10**9)
    total = per_type * len(LOG_TYPES)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            directory = Path(tmp)
            out = directory / "baseline.jsonl"
            baseline = await run_child(
                str(Path(__file__).parent / "baseline_fetch.py"), sim.base_url, str(out), str(start)
            )
            baseline_events = count_lines(out)
            config = collector_config(directory, sim, start, max_window_secs=86400)
            collector = await run_child(
                "-m", "collector", "run", "--once", "--config", str(config), "--log-level", "warning"
            )
            delivered = count_lines(directory / "events.jsonl")
    finally:
        await sim.stop()
    ours, theirs = figures(collector, delivered), figures(baseline, baseline_events)
    return {
        "benchmark": "throughput",
        "events_expected": total,
        "collector": ours,
        "baseline": theirs,
        "ratio_of_baseline": round(ours["events_per_sec"] / max(1, theirs["events_per_sec"]), 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=60_000, help="events per log type")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = asyncio.run(run(args.events))
    c, b = result["collector"], result["baseline"]
    print(
        f"throughput: collector {c['events_per_sec']} ev/s, {c['cpu_secs_per_10k']} CPU s/10k, "
        f"peak RSS {c['peak_rss_mib']} MiB; baseline {b['events_per_sec']} ev/s, {b['cpu_secs_per_10k']} CPU s/10k, "
        f"peak RSS {b['peak_rss_mib']} MiB; ratio {result['ratio_of_baseline']}; "
        f"delivered {c['events']}/{result['events_expected']} (baseline {b['events']})"
    )
    if args.json:
        args.json.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    ok = c["exit_code"] == 0 and c["events"] == result["events_expected"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
