"""Benchmark: the collector's CPU per event, stage by stage, next to the fetch-and-dump baseline's.

In one process, page by page as a poller does it, for the throughput benchmark's three log types:
parse each page (orjson), dedup key of each record, normalize (build_event without its key),
serialize the events, commit them with the dedup keys and the stream position (SQLite, a real
state file in a temp dir), then read them back, write them to a file and save the sink's offset.
The baseline's loads + dumps of the same pages runs in the same process first. HTTP and startup are
left out (bench/throughput.py has them), so the shares are of the per-event work only. Prints
whether the per-event code is compiled (README: Performance).

Usage: python bench/stages.py [--events N] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from collector.logtypes import COMPILED, LOG_TYPES, build_event, record_key, serialize
from collector.simulator.data import generate
from collector.state.store import Store
from collector.workers import tune_gc

ARRAY_KEYS = {"ttp_url": "clickLogs", "ttp_impersonation": "impersonationLogs", "archive_search": "logs"}
PAGE_SIZE = 500
STAGES = ("parse", "dedup key", "normalize", "serialize", "spool commit", "read + deliver")


def pages(per_type: int) -> list[tuple[str, bytes]]:
    """The API's answers: (log type, body) per page of PAGE_SIZE records."""
    now = int(time.time())
    out = []
    for name, key in ARRAY_KEYS.items():
        records = [r.record for r in generate(name, per_type, start=now - 2 * 86400, end=now - 120, seed=42)]
        for i in range(0, per_type, PAGE_SIZE):
            body = {"meta": {"status": 200}, "data": [{key: records[i : i + PAGE_SIZE]}], "fail": []}
            out.append((name, orjson.dumps(body)))
    return out


def baseline(answers: list[tuple[str, bytes]]) -> float:
    """CPU seconds of bench/baseline_fetch.py's per-page work: parse, then dump each record as a line."""
    began = time.process_time()
    for name, body in answers:
        records = orjson.loads(body)["data"][0][ARRAY_KEYS[name]]
        b"".join(orjson.dumps(r) + b"\n" for r in records)
    return time.process_time() - began


async def collector(answers: list[tuple[str, bytes]], directory: Path) -> dict[str, float]:
    """CPU seconds per stage of the same pages through the collector's own code."""
    spent = dict.fromkeys(STAGES, 0.0)
    clock = time.process_time

    def timed(stage: str, work: Callable[[], Any]) -> Any:
        began = clock()
        result = work()
        spent[stage] += clock() - began
        return result

    now = int(time.time())
    store = await Store.open(directory / "state.db")
    out = (directory / "events.jsonl").open("wb")
    try:
        states = {name: await store.stream("bench", name, start=0) for name in ARRAY_KEYS}
        delivered = 0
        for name, body in answers:
            log_type = LOG_TYPES[name]
            records = timed("parse", lambda: orjson.loads(body)["data"][0][ARRAY_KEYS[name]])  # noqa: B023
            timed("dedup key", lambda: [record_key(log_type, r) for r in records])  # noqa: B023
            events = timed("normalize", lambda: [build_event(log_type, r, "bench", now) for r in records])  # noqa: B023
            # commit_page serializes inside its transaction: timed alone here, and taken off the commit.
            timed("serialize", lambda: [serialize(e.doc) for e in events])  # noqa: B023
            began = clock()
            await store.commit_page(events, states[name].window_done(now), seen_until=now, now=now)
            spent["spool commit"] += clock() - began
            began = clock()
            # As the dispatcher delivers to a JSON lines sink: the page's stored documents, as they are.
            pages = await store.read_pages(delivered, PAGE_SIZE)
            out.write(b"\n".join([page.docs for page in pages]) + b"\n")
            delivered = pages[-1].last_seq
            await store.ack("file", delivered, sum(page.events for page in pages), now=now, sinks=["file"])
            spent["read + deliver"] += clock() - began
    finally:
        out.close()
        await store.close()
    # build_event computes the key too: the normalize stage is what it costs beyond the key.
    spent["normalize"] -= spent["dedup key"]
    spent["spool commit"] -= spent["serialize"]
    return spent


async def run(per_type: int) -> dict[str, Any]:
    answers = pages(per_type)
    events = per_type * len(ARRAY_KEYS)
    gc.collect()
    tune_gc()  # what `run` does: freeze the heap so far (here: the pages), fewer young-generation passes
    base_secs = baseline(answers)
    with tempfile.TemporaryDirectory() as tmp:
        spent = await collector(answers, Path(tmp))
    total = sum(spent.values())

    def us(secs: float) -> float:
        return round(secs / events * 1e6, 2)

    return {
        "benchmark": "stages",
        "events": events,
        "compiled": COMPILED,
        "baseline_us_per_event": us(base_secs),
        "collector_us_per_event": us(total),
        "ratio_of_baseline_cpu": round(total / base_secs, 2),
        "stages": {stage: {"us_per_event": us(secs), "share": round(secs / total, 3)} for stage, secs in spent.items()},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=30_000, help="events per log type")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = asyncio.run(run(args.events))
    build = "compiled (mypyc)" if result["compiled"] else "pure Python"
    shares = ", ".join(f"{stage} {s['us_per_event']} us ({s['share']:.0%})" for stage, s in result["stages"].items())
    print(
        f"stages ({build}): collector {result['collector_us_per_event']} us CPU per event = {shares}; "
        f"baseline loads + dumps {result['baseline_us_per_event']} us; "
        f"collector / baseline {result['ratio_of_baseline_cpu']}x"
    )
    if args.json:
        args.json.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
