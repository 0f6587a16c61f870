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

from collector.logtypes import LOG_TYPES as ALL_LOG_TYPES
from collector.simulator import FakeMimecast, SimSettings, generate
from collector.simulator.data import GENERATORS
from collector.timeutil import iso

# The benchmarked types and the path each is called on: the log type's own (archive_search used to be
# listed with its other path here, so the catch-up benchmark counted none of its calls).
LOG_TYPES = {name: ALL_LOG_TYPES[name].path for name in ("ttp_url", "ttp_impersonation", "archive_search")}
DAYS = 2


@dataclass(frozen=True)
class ChildResult:
    exit_code: int
    wall_secs: float
    cpu_secs: float
    peak_rss_mib: float
    stderr: bytes
    # Of the process and its children together (worker processes), sampled every 50 ms.
    peak_tree_rss_mib: float = 0.0


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
    per_type: int,
    *,
    virtual: bool = False,
    rate_limit: int | None = None,
    rate_window_ms: int = 1000,
    seed: int = 42,
    accounts: int = 1,
) -> tuple[FakeMimecast, int]:
    """A simulator holding ``per_type`` records of each log type over the last two days (the same ones
    for each of ``accounts`` accounts); and the start time."""
    settings = SimSettings(rate_limit=rate_limit, rate_window_ms=rate_window_ms, seed=seed, accounts=accounts)
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


def collector_config(
    directory: Path,
    sim: FakeMimecast,
    start: int,
    *,
    sinks: str = "",
    accounts: int = 1,
    workers: int | None = 0,
    **account: Any,
) -> Path:
    """A config collecting the benchmarked types from ``accounts`` accounts of the simulator (it must
    serve that many: SimSettings.accounts) into one file sink, events.jsonl; ``account`` adds options
    to every account. ``workers``: [service] workers (None: the default, one per core beyond the first;
    0 unless said, so every figure but the workers' own is of one process, as before workers existed)."""
    # The benchmarked types only, so figures stay comparable with earlier runs and with the baseline.
    options = {"page_size": 500, "streams": list(LOG_TYPES), **account}
    extra = "".join(f"{k} = {v!r}\n".replace("'", '"') for k, v in options.items())
    file_sink = f"""[sinks.file]
type = "file"
path = "{directory / "events.jsonl"}"
fsync = false
max_bytes = 0
"""
    service = "" if workers is None else f"[service]\nworkers = {workers}\n"
    text = f"""
[state]
path = "{directory / "state.db"}"
max_spool_bytes = 0
{service}
{"".join(_account_table(sim, i, start, extra) for i in range(accounts))}
{sinks or file_sink}
"""
    path = directory / "collector.toml"
    path.write_text(text)
    return path


def _account_table(sim: FakeMimecast, i: int, start: int, extra: str) -> str:
    s = sim.settings
    return f"""
[accounts.{"bench" if i == 0 else f"bench-{i}"}]
base_url = "{sim.base_url}"
auth = "hmac"
access_key = "{s.account_key(i)}"
secret_key = "{s.secret_key}"
app_id = "{s.app_id}"
app_key = "{s.app_key}"
start = "{iso(start)}"
{extra}"""


class Child:
    """``python args...`` as a measured child: its peak RSS is followed while it runs; :meth:`wait` reaps
    it with ``wait4`` in a worker thread, so the event loop stays free for the simulator meanwhile."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.began = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
        )
        assert self.process.stderr is not None
        self._stderr = asyncio.get_running_loop().run_in_executor(None, self.process.stderr.read)
        self._peak = [0, 0]  # VmHWM of the process; the largest VmRSS sum of it and its descendants
        self._watcher = asyncio.ensure_future(_watch_peak_rss(self.process.pid, self._peak))

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def peak_rss_mib(self) -> float:
        return self._peak[0] / 1024

    def rss_mib(self) -> float:
        """Resident memory now (VmRSS)."""
        return _status_kib(self.pid).get("VmRSS", 0) / 1024

    def cpu_secs(self) -> float:
        """CPU time (user + system) used so far, from /proc/<pid>/stat (fields 14 and 15, in clock ticks)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    async def wait(self, limit_secs: float = 3600) -> ChildResult:
        _, status, usage = await asyncio.wait_for(asyncio.to_thread(os.wait4, self.pid, 0), limit_secs)
        self._watcher.cancel()
        self.process.returncode = os.waitstatus_to_exitcode(status)
        stderr = await self._stderr
        return ChildResult(
            exit_code=self.process.returncode,
            wall_secs=time.monotonic() - self.began,
            cpu_secs=usage.ru_utime + usage.ru_stime,
            peak_rss_mib=self.peak_rss_mib,
            stderr=stderr,
            peak_tree_rss_mib=max(self._peak[1], self._peak[0]) / 1024,
        )


def collector_build() -> str:
    """How the collector that ``run_child`` starts was installed: its per-event code compiled or not."""
    probe = "from collector.logtypes import COMPILED; print('compiled (mypyc)' if COMPILED else 'pure Python')"
    return subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()


async def run_child(*args: str, env: dict[str, str] | None = None, limit_secs: float = 3600) -> ChildResult:
    """Run ``python args...`` to its end and measure it."""
    return await Child(*args, env=env).wait(limit_secs)


async def _watch_peak_rss(pid: int, peak: list[int]) -> None:
    """Follow /proc/<pid>/status VmHWM (peak RSS since exec, in kB) until the process exits.

    Not ru_maxrss: that also counts the moment between fork and exec, when the child still
    shares this process's pages (here: the simulator's whole data set).
    """
    while True:
        fields = _status_kib(pid)
        if not fields:  # the process is gone
            return
        peak[0] = max(peak[0], fields.get("VmHWM", 0))
        tree = fields.get("VmRSS", 0) + sum(_status_kib(p).get("VmRSS", 0) for p in _descendants(pid))
        peak[1] = max(peak[1], tree)
        await asyncio.sleep(0.05)


def _status_kib(pid: int) -> dict[str, int]:
    """The kB fields of /proc/<pid>/status (VmHWM, VmRSS, ...); empty once the process is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    return {k: int(v.split()[0]) for k, _, v in (line.partition(":") for line in text.splitlines()) if v.endswith("kB")}


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (its workers and whatever they started), from /proc."""
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = list(Path(f"/proc/{parent}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
            found.extend(children)
            todo.extend(children)
    return found


class LineCounter:
    """Lines in a file that only grows (a file sink's output), counted incrementally: each call reads
    only what was appended since the last."""

    def __init__(self, path: Path) -> None:
        self._path, self._offset, self.lines = path, 0, 0

    def count(self) -> int:
        try:
            with self._path.open("rb") as handle:
                handle.seek(self._offset)
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    self.lines += chunk.count(b"\n")
                    self._offset += len(chunk)
        except FileNotFoundError:
            pass
        return self.lines


def count_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
