"""Benchmark: many accounts. Drain time, API calls, peak RSS and idle CPU, for 1, 100 and 500 accounts.

For each account count the loopback simulator serves that many HMAC accounts (each with its own access
key and rate-limit buckets, each holding the same backlog of --events records per log type over two
days, generated on demand) and the daemon (``mimecast-collector run``, not --once) collects the three
benchmarked windowed log types of every account into one file sink. Measured, per account count:

* drain: from the start of the process until the file holds every event (accounts x 3 x events lines);
* API calls answered until then, against the minimum: accounts x 3 x ceil(events / page size);
* peak RSS (VmHWM) of the collector, over the whole run, and its RSS at the end of the idle time;
* idle CPU: the collector's CPU time over --idle-secs once drained (one poll interval by default, so
  every stream polls about once), from /proc/<pid>/stat, in percent of one core; then SIGTERM.

The 1-account row, measured in the same run, is the baseline the others are read against: per account,
drain time, calls and memory should stay flat, and idle CPU grow no faster than the streams polling.

Usage: python bench/scale.py [--accounts 1,100,500] [--events N] [--page-size P] [--idle-secs S]
                             [--max-drain-secs S] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).parent))
from harness import LOG_TYPES, Child, LineCounter, collector_config, start_simulator

POLL_INTERVAL_SECS = 60  # the collector's default, so idle CPU is what a default deployment spends
SAMPLE_SECS = 0.25


async def one_size(accounts: int, args: argparse.Namespace) -> dict[str, Any]:
    sim, start = await start_simulator(args.events, virtual=True, accounts=accounts)
    expected = accounts * len(LOG_TYPES) * args.events
    try:
        with tempfile.TemporaryDirectory() as tmp:
            directory = Path(tmp)
            config = collector_config(
                directory,
                sim,
                start,
                accounts=accounts,
                page_size=args.page_size,
                poll_interval_secs=POLL_INTERVAL_SECS,
            )
            config.write_text(config.read_text().replace("[state]", "[service]\nshutdown_grace_secs = 5\n\n[state]"))
            child = Child("-m", "collector", "run", "--config", str(config), "--log-level", "warning")
            delivered = LineCounter(directory / "events.jsonl")
            while (  # noqa: ASYNC110 - another process writes the file
                delivered.count() < expected
                and child.process.poll() is None
                and time.monotonic() - child.began < args.max_drain_secs
            ):
                await asyncio.sleep(SAMPLE_SECS)
            drain_secs = time.monotonic() - child.began
            drain_calls = sum(sim.stats.calls.values())
            idle: dict[str, float] = {}
            if child.process.poll() is None and delivered.lines >= expected:
                cpu_before, idle_began = child.cpu_secs(), time.monotonic()
                await asyncio.sleep(args.idle_secs)
                idle_secs = time.monotonic() - idle_began
                idle = {
                    "idle_cpu_percent": round(100 * (child.cpu_secs() - cpu_before) / idle_secs, 2),
                    "idle_sampled_secs": round(idle_secs, 1),
                    "idle_calls": sum(sim.stats.calls.values()) - drain_calls,
                    "idle_rss_mib": round(child.rss_mib(), 1),
                }
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
            result = await child.wait(limit_secs=120)
            final_lines = delivered.count()
    finally:
        await sim.stop()
    return {
        "accounts": accounts,
        "streams": accounts * len(LOG_TYPES),
        "events": expected,
        "delivered": final_lines,
        "drain_secs": round(drain_secs, 2),
        "api_calls": drain_calls,
        "min_pages": accounts * len(LOG_TYPES) * math.ceil(args.events / args.page_size),
        "throttled_429": sim.stats.throttled,
        "peak_rss_mib": round(result.peak_rss_mib, 1),
        **idle,
        "exit_code": result.exit_code,
        "cpu_secs": round(result.cpu_secs, 2),
    }


HEAD = (
    f"{'accounts':>8} {'streams':>7} {'delivered':>9} {'drain s':>8} {'calls':>6} {'min pages':>9} "
    f"{'429s':>4} {'peak RSS MiB':>12} {'idle RSS MiB':>12} {'idle CPU %':>10} {'idle calls':>10} {'exit':>4}"
)


def row(r: dict[str, Any]) -> str:
    idle = f"{r['idle_cpu_percent']:.2f}" if "idle_cpu_percent" in r else "-"
    return (
        f"{r['accounts']:>8} {r['streams']:>7} {r['delivered']:>9} {r['drain_secs']:>8.2f} {r['api_calls']:>6} "
        f"{r['min_pages']:>9} {r['throttled_429']:>4} {r['peak_rss_mib']:>12.1f} {r.get('idle_rss_mib', '-'):>12} "
        f"{idle:>10} "
        f"{r.get('idle_calls', '-'):>10} {r['exit_code']:>4}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", default="1,100,500", help="account counts, comma-separated")
    parser.add_argument("--events", type=int, default=200, help="events per log type per account")
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument("--idle-secs", type=float, default=POLL_INTERVAL_SECS, help="idle CPU sampled this long")
    parser.add_argument("--max-drain-secs", type=float, default=900, help="give up on a drain after this long")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()

    print(
        f"scale: {args.events} events per log type per account, page size {args.page_size}, "
        f"idle CPU over {args.idle_secs:g} s once drained (poll interval {POLL_INTERVAL_SECS} s)"
    )
    print(HEAD, flush=True)

    async def run() -> list[dict[str, Any]]:
        rows = []
        for n in args.accounts.split(","):
            rows.append(await one_size(int(n), args))
            print(row(rows[-1]), flush=True)  # each as it is measured: the largest takes minutes
        return rows

    rows = asyncio.run(run())
    if args.json:
        result = {
            "benchmark": "scale",
            "events_per_type_per_account": args.events,
            "page_size": args.page_size,
            "rows": rows,
        }
        args.json.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    ok = all(r["exit_code"] == 0 and r["delivered"] == r["events"] for r in rows)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
