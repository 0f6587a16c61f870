"""Benchmark: drain a backlog through a tight rate limit. How close to the limit's lower bound?

Starts the loopback Mimecast simulator with a backlog (default 10,000 events per log type over two
days) and a tight limit (default 10 calls per 2 s per endpoint), runs ``mimecast-collector run
--once`` as a real process, and prints:

* wall time of the process, and the lower bound the limit allows: per endpoint,
  (minimum pages beyond the first bucket) x window / limit, the largest over the endpoints;
* the wall time of the same drain with no effective limit, run first: start-up and CPU alone;
* their ratio;
* calls per endpoint against the minimum number of pages (ceil(events / page size)) and windows;
* 429s.

Usage: python bench/catchup.py [--events N] [--limit L] [--window-ms W] [--page-size P] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).parent))
from harness import LOG_TYPES, ChildResult, collector_config, count_lines, run_child, start_simulator


async def drain(args: argparse.Namespace, limit: int) -> tuple[Any, ChildResult, int]:
    """One `run --once` against a fresh simulator limited to ``limit`` calls per window: (sim, child, lines)."""
    sim, start = await start_simulator(args.events, rate_limit=limit, rate_window_ms=args.window_ms)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            directory = Path(tmp)
            config = collector_config(directory, sim, start, page_size=args.page_size)
            child = await run_child("-m", "collector", "run", "--once", "--config", str(config), "--log-level", "info")
            delivered = count_lines(directory / "events.jsonl")
    finally:
        await sim.stop()
    return sim, child, delivered


async def run(args: argparse.Namespace) -> dict[str, Any]:
    # The same drain with no effective limit first: what start-up and CPU cost without any quota.
    _, unlimited, _ = await drain(args, 10**9)
    sim, child, delivered = await drain(args, args.limit)
    window_secs = args.window_ms / 1000
    call_times = [at for at, _, _ in sim.stats.call_log]
    per_endpoint = {}
    for name, path in LOG_TYPES.items():
        calls = sim.stats.calls_to(path)
        min_pages = math.ceil(args.events / args.page_size)
        per_endpoint[name] = {
            "calls": calls,
            "min_pages": min_pages,
            # From the minimum pages, not the calls made: a wasted call costs time against the bound.
            "bound_secs": round(max(0, min_pages - args.limit) * window_secs / args.limit, 3),
        }
    bound = max(e["bound_secs"] for e in per_endpoint.values())
    return {
        "benchmark": "catchup",
        "events_per_type": args.events,
        "limit": f"{args.limit} calls / {window_secs:g} s per endpoint",
        "page_size": args.page_size,
        "exit_code": child.exit_code,
        "delivered": delivered,
        "wall_secs": round(child.wall_secs, 3),
        "bound_secs": bound,
        "ratio": round(child.wall_secs / bound, 3) if bound else None,
        "target_secs": round(1.10 * bound, 3),
        "unlimited_wall_secs": round(unlimited.wall_secs, 3),
        "calls_span_secs": round(max(call_times) - min(call_times), 3),
        "windows": child.stderr.count(b"window_committed") // len(LOG_TYPES),
        "throttled_429": sim.stats.throttled,
        "endpoints": per_endpoint,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--limit", type=int, default=10)
    parser.add_argument("--window-ms", type=int, default=2000)
    parser.add_argument("--page-size", type=int, default=500)
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    calls = ", ".join(
        f"{name} {e['calls']} calls / {e['min_pages']} min pages" for name, e in result["endpoints"].items()
    )
    print(
        f"catchup: wall {result['wall_secs']:.2f} s, bound {result['bound_secs']:.2f} s, "
        f"ratio {result['ratio']}, target <= {result['target_secs']:.2f} s; "
        f"the same drain with no limit {result['unlimited_wall_secs']:.2f} s "
        f"(calls span {result['calls_span_secs']:.2f} s, {result['windows']} windows per stream); "
        f"{calls}; "
        f"429s {result['throttled_429']}; delivered {result['delivered']}/{3 * args.events}; "
        f"exit {result['exit_code']}"
    )
    if args.json:
        args.json.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    return 0 if result["exit_code"] == 0 and result["delivered"] == 3 * args.events else 1


if __name__ == "__main__":
    sys.exit(main())
