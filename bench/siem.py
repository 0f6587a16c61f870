"""Benchmark: one large SIEM batch file (API 2.0) through the collector into a file sink.

One gzip NDJSON file of ``--mib`` MiB uncompressed (default 500) of Cloud Gateway receipt records is
served by the simulator's file host. The collector (``run --once``, one stream ``siem_cg.receipt``,
file sink without fsync) is measured as a child process: events/s, CPU seconds per 10,000 events
and peak RSS (VmHWM). Next to it, in the same run, the fetch-and-dump baseline
(bench/baseline_siem.py: list, download, gunzip, write lines; no normalize, no dedup, no spool).

Usage: python bench/siem.py [--mib 500] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).parent))
from harness import count_lines, run_child

from collector.simulator import FakeMimecast, SimSettings
from collector.simulator.siem_data import siem_records

RSS_LIMIT_MIB = 150


def write_file(path: Path, mib: int) -> int:
    """A gzip NDJSON file of at least ``mib`` MiB of receipt records; its record count."""
    now = int(time.time())
    target, written, count = mib << 20, 0, 0
    with gzip.open(path, "wb", compresslevel=1) as out:
        while written < target:
            chunk = b"".join(
                orjson.dumps(r) + b"\n"
                for r in siem_records("receipt", 10_000, start=now - 80_000, end=now - 60, seed=count)
            )
            out.write(chunk)
            written += len(chunk)
            count += 10_000
    return count


def config_text(directory: Path, sim: FakeMimecast, day: str) -> str:
    s = sim.settings
    return f"""
[state]
path = "{directory / "state.db"}"
max_spool_bytes = 0

[accounts.bench]
base_url = "{sim.base_url}"
auth = "oauth2"
client_id = "{s.client_id}"
client_secret = "{s.client_secret}"
start = "{day}T00:00:00Z"
streams = ["siem_cg"]

[accounts.bench.siem_cg]
types = ["receipt"]
page_size = 100

[sinks.file]
type = "file"
path = "{directory / "events.jsonl"}"
fsync = false
max_bytes = 0
"""


async def run(mib: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        source = directory / "receipt.ndjson.gz"
        began = time.monotonic()
        records = await asyncio.to_thread(write_file, source, mib)
        generate_secs = time.monotonic() - began
        sim = FakeMimecast(SimSettings(rate_limit=None))
        day = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 80_000))
        sim.batch.add_path("cg", "receipt", day, source)
        await sim.start()
        try:
            config = directory / "collector.toml"
            config.write_text(config_text(directory, sim, day))
            collector = await run_child(
                "-m", "collector", "run", "--once", "--config", str(config), "--log-level", "error"
            )
            delivered = count_lines(directory / "events.jsonl")
            baseline_out = directory / "baseline.ndjson"
            here = Path(__file__).parent
            baseline = await run_child(str(here / "baseline_siem.py"), sim.base_url, str(baseline_out), "receipt", day)
            dumped = count_lines(baseline_out)
        finally:
            await sim.stop()
        if collector.exit_code != 0 or baseline.exit_code != 0:
            raise SystemExit(f"a child failed: {collector.stderr[-2000:]!r} {baseline.stderr[-2000:]!r}")
        return {
            "benchmark": "siem_batch_file",
            "file_mib_uncompressed": mib,
            "file_mib_gzip": round(source.stat().st_size / 2**20, 1),
            "records": records,
            "generate_secs": round(generate_secs, 1),
            "collector": _figures(collector.wall_secs, collector.cpu_secs, collector.peak_rss_mib, delivered),
            "baseline_fetch_and_dump": _figures(baseline.wall_secs, baseline.cpu_secs, baseline.peak_rss_mib, dumped),
            "rss_limit_mib": RSS_LIMIT_MIB,
        }


def _figures(wall: float, cpu: float, rss: float, events: int) -> dict[str, Any]:
    return {
        "events": events,
        "wall_secs": round(wall, 1),
        "events_per_sec": round(events / wall),
        "cpu_secs_per_10k_events": round(cpu / events * 10_000, 3),
        "peak_rss_mib": round(rss, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=500, help="uncompressed size of the batch file")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = asyncio.run(run(args.mib))
    c, b = result["collector"], result["baseline_fetch_and_dump"]
    print(
        f"siem batch file ({result['file_mib_uncompressed']} MiB, {result['file_mib_gzip']} MiB gzip, "
        f"{result['records']} records): collector {c['events_per_sec']} events/s, "
        f"{c['cpu_secs_per_10k_events']} CPU s/10k events, peak RSS {c['peak_rss_mib']} MiB "
        f"(limit {RSS_LIMIT_MIB}); baseline fetch-and-dump {b['events_per_sec']} events/s, "
        f"{b['cpu_secs_per_10k_events']} CPU s/10k, peak RSS {b['peak_rss_mib']} MiB"
    )
    if args.json:
        args.json.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    return 0 if c["peak_rss_mib"] < RSS_LIMIT_MIB and c["events"] == result["records"] else 1


if __name__ == "__main__":
    sys.exit(main())
