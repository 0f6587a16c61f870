"""Micro-benchmark: CPU per event of build_event for each windowed log type, next to a parse-and-dump baseline.

For each log type, --events records from the simulator's generator (what the poller hands over:
dicts freshly parsed by orjson). The baseline is ``orjson.loads`` + ``orjson.dumps`` of the same
records, the least any collector does per event; the collector's figure is ``build_event`` alone
(key, time, ECS document), without the spool's serialize. Both run in this process, alternating,
--rounds times; the fastest round of each is reported (on a shared VM noise only ever adds time).
Whether the collector runs as pure Python or mypyc-compiled is printed with the table.

Usage: python bench/normalize.py [--events N] [--rounds 7] [--json FILE]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from collector.logtypes import COMPILED, LOG_TYPES, build_event
from collector.simulator import generate

WINDOWED = ("ttp_url", "ttp_impersonation", "archive_search", "ttp_attachment", "dlp", "audit", "held_release")
START = 1_700_000_000
END = START + 86_400


def cpu_us_per_event(work: Callable[[], object], events: int) -> float:
    begin = time.process_time_ns()
    work()
    return (time.process_time_ns() - begin) / 1000 / events


def measure(name: str, events: int, rounds: int) -> dict[str, Any]:
    log_type = LOG_TYPES[name]
    lines = [orjson.dumps(r.record) for r in generate(name, events, start=START, end=END)]
    records = [orjson.loads(line) for line in lines]

    def baseline() -> None:
        for line in lines:
            orjson.dumps(orjson.loads(line))

    def collector() -> None:
        for record in records:
            build_event(log_type, record, "acme", END)

    ours: list[float] = []
    theirs: list[float] = []
    for _ in range(rounds):
        theirs.append(cpu_us_per_event(baseline, events))
        ours.append(cpu_us_per_event(collector, events))
    return {
        "log_type": name,
        "events": events,
        "build_event_us": round(min(ours), 2),
        "baseline_us": round(min(theirs), 2),
        "ratio_to_baseline": round(min(ours) / min(theirs), 2),
        "build_event_us_rounds": [round(x, 2) for x in ours],
        "baseline_us_rounds": [round(x, 2) for x in theirs],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=5_000, help="records per log type")
    parser.add_argument("--rounds", type=int, default=7, help="alternating baseline/collector runs; fastest shown")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = [measure(name, args.events, max(1, args.rounds)) for name in WINDOWED]
    mode = "mypyc" if COMPILED else "pure Python"
    print(f"normalize ({mode}, {args.events} events per log type, fastest of {args.rounds} rounds, CPU us/event)")
    print(f"{'log type':<20}{'build_event':>12}{'baseline':>10}{'ratio':>7}")
    for row in rows:
        print(
            f"{row['log_type']:<20}{row['build_event_us']:>12.2f}{row['baseline_us']:>10.2f}{row['ratio_to_baseline']:>7.2f}"
        )
    total_ours = sum(r["build_event_us"] for r in rows) / len(rows)
    total_theirs = sum(r["baseline_us"] for r in rows) / len(rows)
    print(f"{'mean':<20}{total_ours:>12.2f}{total_theirs:>10.2f}{total_ours / total_theirs:>7.2f}")
    if args.json:
        result = {"benchmark": "normalize", "mode": mode, "rows": rows, "mean_build_event_us": round(total_ours, 2)}
        args.json.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
