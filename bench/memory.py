"""Benchmark: peak RSS while a large backlog is collected and the only sink is down.

The spool is on disk, so memory should not depend on the backlog: the collector runs against
backlogs of M1 x and M2 x the throughput benchmark's size (default 10x and 100x of 3 x 60,000
events) with an HTTP sink whose port refuses connections, until the simulator has served every
event; its peak RSS (VmHWM) is sampled throughout. The simulator generates records on demand, so
even the 100x backlog costs it no memory. Prints one summary line; --json writes the details.

Usage: python bench/memory.py [--base EVENTS_PER_TYPE] [--multipliers 10,100] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).parent))
from harness import LOG_TYPES, collector_config, start_simulator


def vm_hwm_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def one_backlog(per_type: int) -> dict[str, Any]:
    sim, start = await start_simulator(per_type, virtual=True, rate_limit=10**9)
    total = per_type * len(LOG_TYPES)
    down_sink = '[sinks.siem]\ntype = "http"\nurl = "http://127.0.0.1:9/ingest"\nretry_max_secs = 30\n'
    try:
        with tempfile.TemporaryDirectory() as tmp:
            directory = Path(tmp)
            config = collector_config(directory, sim, start, sinks=down_sink)
            config.write_text(config.read_text().replace("[state]", "[service]\nshutdown_grace_secs = 1\n\n[state]"))
            began = time.monotonic()
            process = subprocess.Popen(  # noqa: ASYNC220 - polled below without blocking the simulator
                [sys.executable, "-m", "collector", "run", "--config", str(config), "--log-level", "error"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            peak, samples = 0.0, []
            while sum(sim.stats.records_served.values()) < total and process.poll() is None:
                await asyncio.sleep(1.0)
                peak = max(peak, vm_hwm_mib(process.pid))
                samples.append(round(peak, 1))
            await asyncio.sleep(2.0)  # the last pages are committed
            peak = max(peak, vm_hwm_mib(process.pid))
            process.send_signal(signal.SIGTERM)
            await asyncio.to_thread(process.wait, 60)
            spool_mib = sum(p.stat().st_size for p in directory.glob("state.db*")) / 2**20  # noqa: ASYNC240
    finally:
        await sim.stop()
    return {
        "events": total,
        "served": sum(sim.stats.records_served.values()),
        "collect_secs": round(time.monotonic() - began, 1),
        "peak_rss_mib": round(peak, 1),
        "state_file_mib": round(spool_mib, 1),
        "peak_rss_over_time": samples[:: max(1, len(samples) // 20)],
    }


async def run(base: int, multipliers: list[int]) -> dict[str, Any]:
    results = {f"{m}x": await one_backlog(base * m) for m in multipliers}
    peaks = [r["peak_rss_mib"] for r in results.values()]
    return {
        "benchmark": "memory",
        "base_events_per_type": base,
        "backlogs": results,
        "peak_ratio_largest_to_smallest": round(max(peaks) / min(peaks), 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=int, default=60_000, help="events per log type of the 1x backlog")
    parser.add_argument("--multipliers", default="10,100")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = asyncio.run(run(args.base, [int(m) for m in args.multipliers.split(",")]))
    parts = [
        f"{name}: {r['events']} events, peak RSS {r['peak_rss_mib']} MiB, state file {r['state_file_mib']} MiB, "
        f"{r['collect_secs']} s"
        for name, r in result["backlogs"].items()
    ]
    print(f"memory (sink down): {'; '.join(parts)}; largest/smallest peak {result['peak_ratio_largest_to_smallest']}")
    if args.json:
        args.json.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
