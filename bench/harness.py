"""Shared benchmark plumbing: a simulator with a large (or virtual) backlog, configs, measured children.

Children run as real processes; their CPU time and peak RSS come from ``wait4``, so the numbers are
the kernel's, not an estimate.
"""

from __future__ import annotations

import asyncio
import bisect
import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collector.simulator import FakeMimecast, SimSettings, generate
from collector.simulator.data import GENERATORS
from collector.timeutil import iso

LOG_TYPES = {
    "ttp_url": "/api/ttp/url/get-logs",
    "ttp_impersonation": "/api/ttp/impersonation/get-logs",
    "archive_search": "/api/archive/get-search-logs",
}
DAYS = 2


@dataclass(frozen=True)
class ChildResult:
    exit_code: int
    wall_secs: float
    cpu_secs: float
    peak_rss_mib: float
    stderr: bytes


class VirtualIndex:
    """A log type's backlog computed on demand: record i is generated when asked for, never stored.

    Times are spread evenly over [start, end]; keys are (time, i) like the simulator's own index, so
    the same keyset pagination and page tokens work. Filters are not applied (benchmarks use none).
    """

    def __init__(self, log_type: str, count: int, start: int, end: int, seed: int = 0) -> None:
        self._make = GENERATORS[log_type]
        self._count, self._start, self._span, self._seed = count, start, end - start, seed

    def _time(self, i: int) -> int:
        return self._start + (i * self._span) // self._count

    def __len__(self) -> int:
        return self._count

    def query(
        self, query: dict[str, Any], position: tuple[int, int] | None, *, exclusive_start: bool, exclusive_end: bool
    ) -> tuple[list[dict[str, Any]], tuple[int, int] | None, bool, int]:
        times = _Times(self)
        lo = bisect.bisect_right(times, query["from"]) if exclusive_start else bisect.bisect_left(times, query["from"])
        hi = bisect.bisect_left(times, query["to"]) if exclusive_end else bisect.bisect_right(times, query["to"])
        size = query["page_size"]
        if query["oldest_first"]:
            first = lo if position is None else max(lo, position[1] + 1)
            indexes = list(range(first, min(hi, first + size)))
            more = first + size < hi
        else:
            first = hi - 1 if position is None else min(hi - 1, position[1] - 1)
            indexes = list(range(first, max(lo - 1, first - size), -1))
            more = first - size >= lo
        records = [self._make(random.Random(self._seed * 1_000_003 + i), self._time(i)) for i in indexes]
        last = (self._time(indexes[-1]), indexes[-1]) if indexes else None
        return records, last, more, hi - lo


class _Times:
    """A lazy sequence of record times, so bisect can search without materializing it."""

    def __init__(self, index: VirtualIndex) -> None:
        self._index = index

    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, i: int) -> int:
        return self._index._time(i)


async def start_simulator(
    per_type: int, *, virtual: bool = False, rate_limit: int | None = None, rate_window_ms: int = 1000, seed: int = 42
) -> tuple[FakeMimecast, int]:
    """A simulator holding ``per_type`` records of each log type over the last two days; and the start time."""
    settings = SimSettings(rate_limit=rate_limit, rate_window_ms=rate_window_ms, seed=seed)
    sim = FakeMimecast(settings)
    now = int(time.time())
    begin, end = now - DAYS * 86400, now - 120
    for name in LOG_TYPES:
        if virtual:
            sim.index[name] = VirtualIndex(name, per_type, begin, end, seed)  # type: ignore[assignment]
        else:
            sim.add(name, generate(name, per_type, start=begin, end=end, seed=seed))
    await sim.start()
    return sim, begin - 600


def collector_config(directory: Path, sim: FakeMimecast, start: int, *, sinks: str = "", **account: Any) -> Path:
    s = sim.settings
    # The benchmarked types only, so figures stay comparable with earlier runs and with the baseline.
    options = {"page_size": 500, "streams": list(LOG_TYPES), **account}
    extra = "".join(f"{k} = {v!r}\n".replace("'", '"') for k, v in options.items())
    file_sink = f"""[sinks.file]
type = "file"
path = "{directory / "events.jsonl"}"
fsync = false
max_bytes = 0
"""
    text = f"""
[state]
path = "{directory / "state.db"}"
max_spool_bytes = 0

[accounts.bench]
base_url = "{sim.base_url}"
auth = "hmac"
access_key = "{s.access_key}"
secret_key = "{s.secret_key}"
app_id = "{s.app_id}"
app_key = "{s.app_key}"
start = "{iso(start)}"
{extra}
{sinks or file_sink}
"""
    path = directory / "collector.toml"
    path.write_text(text)
    return path


def collector_build() -> str:
    """How the collector that ``run_child`` starts was installed: its per-event code compiled or not."""
    probe = "from collector.logtypes import COMPILED; print('compiled (mypyc)' if COMPILED else 'pure Python')"
    return subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()


async def run_child(*args: str, env: dict[str, str] | None = None, limit_secs: float = 3600) -> ChildResult:
    """Run ``python args...`` and measure it; the event loop stays free for the simulator meanwhile."""
    began = time.monotonic()
    process = subprocess.Popen(  # noqa: ASYNC220 - reaped with wait4 in a worker thread, below
        [sys.executable, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
    )
    assert process.stderr is not None
    stderr_task = asyncio.get_running_loop().run_in_executor(None, process.stderr.read)
    peak = [0]
    watcher = asyncio.ensure_future(_watch_peak_rss(process.pid, peak))
    _, status, usage = await asyncio.wait_for(asyncio.to_thread(os.wait4, process.pid, 0), limit_secs)
    watcher.cancel()
    process.returncode = os.waitstatus_to_exitcode(status)
    stderr = await stderr_task
    return ChildResult(
        exit_code=process.returncode,
        wall_secs=time.monotonic() - began,
        cpu_secs=usage.ru_utime + usage.ru_stime,
        peak_rss_mib=peak[0] / 1024,
        stderr=stderr,
    )


async def _watch_peak_rss(pid: int, peak: list[int]) -> None:
    """Follow /proc/<pid>/status VmHWM (peak RSS since exec, in kB) until the process exits.

    Not ru_maxrss: that also counts the moment between fork and exec, when the child still
    shares this process's pages (here: the simulator's whole data set).
    """
    path = Path(f"/proc/{pid}/status")
    while True:
        try:
            for line in path.read_text().splitlines():  # noqa: ASYNC240 - procfs, never blocks
                if line.startswith("VmHWM:"):
                    peak[0] = max(peak[0], int(line.split()[1]))
        except (OSError, ValueError):
            return
        await asyncio.sleep(0.05)


def count_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
