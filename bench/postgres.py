"""Benchmark: the PostgreSQL state backend against SQLite, with 1 and with 3 replicas sharing the work.

Three configurations drain the same seeded backlog from the loopback simulator (no rate limit):

* ``sqlite``  - one collector process on its own SQLite state (the baseline, measured in the same run);
* ``pg x1``   - one replica with ``[state] backend = "postgresql"``;
* ``pg x3``   - three replicas on the same PostgreSQL schema, sharing streams and sinks through leases.

The simulator serves --accounts HMAC accounts (default 6), each with the three benchmarked log types and
--events records of each, so there are 18 streams for the replicas to share (6 each at a fair share).
Every collector runs as the daemon (``run``, not ``--once``: in once-mode the first replica to look
claims every stream, so nothing would be shared) and the bench stops it with SIGTERM once every event
is delivered. Measured per configuration, median over --rounds rounds, configurations alternating
(A B C A B C ...) because this machine's speed drifts by 2x within minutes:

* wall: from starting the first process until the sinks hold every seeded event (so it includes
  each process's start-up, about half a second, and for 3 replicas the start-up rebalance);
* events/s delivered end to end, and that divided by the number of replicas;
* CPU s per 10k events: user + system of all the collector processes (``wait4``, start to exit);
* PostgreSQL server CPU s per 10k events: the postmaster's own and reaped children's time plus that
  of its live children (/proc), before and after the run; so it includes backends of replicas that
  have exited;
* "vs sqlite": events/s over the SQLite run's events/s in the same round, median of those ratios.

Sink: a file sink per replica (each replica's config names the same sink, ``file``, at a path in its
own directory). The sink is leased like a stream, so whichever replica holds it delivers the shared
spool to its own file; after a handover the next holder writes to its file. A file sink costs least
per event, so the numbers are the state backend's, not a receiver's; the files together are what was
delivered, and nothing in this process (which runs the simulator) has to receive HTTP meanwhile.
Every run is checked: each seeded (account, dataset, id) delivered, duplicates counted and printed.

Each PostgreSQL run starts on a fresh schema of one throwaway cluster (tests/pg_server.py, fsync off:
it measures the collector's use of the database, not a disk). Leases last --lease-secs (default 6 s,
not the product's 30 s, so that the start-up rebalance - the first replica claims everything, then
gives up the excess when the others show up - takes seconds of a run that lasts seconds).

The machine has 2 cores: 3 replicas on it measure the coordination overhead, not scale-out.

Usage: python bench/postgres.py [--events N] [--accounts 6] [--rounds 3] [--lease-secs 6] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(1, str(Path(__file__).parent.parent))  # tests.pg_server: the throwaway cluster
from harness import LOG_TYPES, Child, ChildResult, LineCounter, collector_build, collector_config, start_simulator

from collector.simulator import FakeMimecast
from tests.pg_server import PgServer

SAMPLE_SECS = 0.2
CLOCK_TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Setup:
    name: str
    replicas: int
    postgres: bool


SETUPS = (Setup("sqlite", 1, False), Setup("pg x1", 1, True), Setup("pg x3", 3, True))


@dataclass
class Run:
    setup: Setup
    expected: int
    wall_secs: float = 0.0
    lines: int = 0
    unique: int = 0
    missing: int = 0
    cpu_secs: float = 0.0
    server_cpu_secs: float | None = None
    exit_codes: list[int] = field(default_factory=list)
    per_replica_lines: list[int] = field(default_factory=list)
    leases: str = ""

    @property
    def duplicates(self) -> int:
        return self.lines - self.unique

    @property
    def events_per_sec(self) -> float:
        return self.unique / self.wall_secs if self.wall_secs else 0.0


def server_cpu_secs(pg: PgServer) -> float:
    """CPU time of the whole server so far: the postmaster's own and that of children it has reaped
    (exited backends), plus its live children's (backends, checkpointer, WAL writer...)."""
    postmaster = int((pg.data / "postmaster.pid").read_text().split()[0])
    fields = _stat(postmaster)
    total = sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                child = _stat(int(entry))
            except OSError:  # exited meanwhile
                continue
            if int(child[1]) == postmaster:
                total += int(child[11]) + int(child[12])
    return total / CLOCK_TICK


def _stat(pid: int) -> list[str]:
    """/proc/<pid>/stat after the command name: index 1 is the parent pid, 11-14 the CPU times."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def config_for(directory: Path, sim: FakeMimecast, start: int, args: argparse.Namespace, state: str) -> Path:
    config = collector_config(
        directory,
        sim,
        start,
        accounts=args.accounts,
        max_window_secs=86400,
        poll_interval_secs=60,  # once drained, a stream stays quiet until the bench stops it
    )
    text = config.read_text().replace("[state]\n", f"[service]\nshutdown_grace_secs = 5\n\n[state]\n{state}")
    config.write_text(text)
    return config


def delivered_keys(paths: list[Path]) -> tuple[int, set[tuple[str, str, str]]]:
    """(lines, unique (account, dataset, id)) over the sink files: the accounts serve the same records."""
    lines, keys = 0, set()
    for path in paths:
        if not path.exists():
            continue
        for line in path.read_bytes().splitlines():
            if line:
                event = orjson.loads(line)
                lines += 1
                keys.add((event["labels"]["mimecast_account"], event["event"]["dataset"], event["event"]["id"]))
    return lines, keys


@dataclass(frozen=True)
class Bench:
    """What every run shares: the simulator and its start time, the PostgreSQL cluster, the options."""

    sim: FakeMimecast
    start: int
    pg: PgServer
    args: argparse.Namespace


async def one_run(bench: Bench, setup: Setup, tag: str) -> Run:
    sim, start, pg, args = bench.sim, bench.start, bench.pg, bench.args
    expected = args.accounts * len(LOG_TYPES) * args.events
    run = Run(setup, expected)
    schema = f"bench_{tag}"
    with tempfile.TemporaryDirectory() as tmp:
        configs = []
        for i in range(setup.replicas):
            directory = Path(tmp) / f"replica-{i}"
            directory.mkdir()
            state = ""
            if setup.postgres:
                state = (
                    f'backend = "postgresql"\nurl = "{pg.url}"\npassword = "{pg.password}"\n'
                    f'schema = "{schema}"\nlease_secs = {args.lease_secs}\nnode = "replica-{i}"\n'
                )
            configs.append(config_for(directory, sim, start, args, state))
        outputs = [config.parent / "events.jsonl" for config in configs]
        counters = [LineCounter(path) for path in outputs]
        server_before = server_cpu_secs(pg) if setup.postgres else 0.0
        began = time.monotonic()
        children = [
            Child("-m", "collector", "run", "--config", str(config), "--log-level", "warning") for config in configs
        ]
        checked_at = -1
        while time.monotonic() - began < args.max_drain_secs and all(c.process.poll() is None for c in children):
            lines = sum(counter.count() for counter in counters)
            if lines >= expected and lines != checked_at:  # duplicates may reach the count early: look
                checked_at = lines
                if len(delivered_keys(outputs)[1]) >= expected:
                    break
            await asyncio.sleep(SAMPLE_SECS)
        run.wall_secs = time.monotonic() - began
        if setup.postgres:
            run.leases = pg.psql(
                f"SELECT kind || ' ' || node || ' ' || count(*) FROM {schema}.leases "  # noqa: S608 - our own name
                "WHERE node IS NOT NULL GROUP BY kind, node ORDER BY kind, node"
            ).replace("\n", "; ")
        for child in children:
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
        results: list[ChildResult] = [await child.wait(limit_secs=120) for child in children]
        if setup.postgres:
            await asyncio.sleep(0.3)  # the postmaster reaps the exited backends, adding their CPU time
            run.server_cpu_secs = server_cpu_secs(pg) - server_before
            pg.psql(f"DROP SCHEMA {schema} CASCADE")
        run.cpu_secs = sum(r.cpu_secs for r in results)
        run.exit_codes = [r.exit_code for r in results]
        run.per_replica_lines = [counter.count() for counter in counters]
        run.lines, keys = delivered_keys(outputs)
        run.unique = len(keys)
        run.missing = expected - run.unique
        for result in results:
            if result.exit_code != 0:
                print(f"  {setup.name}: exit {result.exit_code}: {result.stderr.decode()[-2000:]}", file=sys.stderr)
    return run


def per_10k(secs: float, events: int) -> float:
    return secs / max(1, events) * 10_000


async def measure(args: argparse.Namespace) -> list[Run]:
    pg = PgServer()
    pg.start()
    sim, start = await start_simulator(args.events, rate_limit=10**9, accounts=args.accounts)
    runs: list[Run] = []
    try:
        for round_ in range(args.rounds):
            for setup in SETUPS:
                tag = f"r{round_}_{setup.name.replace(' ', '_')}"
                run = await one_run(Bench(sim, start, pg, args), setup, tag)
                runs.append(run)
                print(round_line(round_, run), flush=True)
    finally:
        await sim.stop()
        pg.destroy()
    return runs


def round_line(round_: int, run: Run) -> str:
    server = "" if run.server_cpu_secs is None else f", server CPU {run.server_cpu_secs:.2f} s"
    leases = f", leases: {run.leases.strip('; ')}" if run.leases else ""
    return (
        f"  round {round_ + 1} {run.setup.name:<6}: {run.wall_secs:6.2f} s, {run.events_per_sec:7.0f} ev/s, "
        f"collector CPU {run.cpu_secs:.2f} s{server}, lines per replica {run.per_replica_lines}, "
        f"unique {run.unique}/{run.expected}, dups {run.duplicates}, exit {run.exit_codes}{leases}"
    )


HEAD = (
    f"{'config':<7} {'replicas':>8} {'wall s':>7} {'events/s':>9} {'ev/s/replica':>12} {'CPU s/10k':>9} "
    f"{'PG srv CPU s/10k':>16} {'vs sqlite':>9} {'ev/s range':>13} {'dups':>5} {'missing':>7}"
)


def summary(runs: list[Run]) -> list[dict[str, Any]]:
    rounds = len(runs) // len(SETUPS)
    baseline = [r.events_per_sec for r in runs if r.setup is SETUPS[0]]
    rows = []
    for setup in SETUPS:
        mine = [r for r in runs if r.setup is setup]
        rates = [r.events_per_sec for r in mine]
        servers = [per_10k(r.server_cpu_secs, r.unique) for r in mine if r.server_cpu_secs is not None]
        rows.append(
            {
                "config": setup.name,
                "replicas": setup.replicas,
                "wall_secs": statistics.median(r.wall_secs for r in mine),
                "events_per_sec": statistics.median(rates),
                "events_per_sec_per_replica": statistics.median(rates) / setup.replicas,
                "cpu_secs_per_10k": statistics.median(per_10k(r.cpu_secs, r.unique) for r in mine),
                "server_cpu_secs_per_10k": statistics.median(servers) if servers else None,
                "vs_sqlite": statistics.median(rates[i] / max(1.0, baseline[i]) for i in range(rounds)),
                "events_per_sec_range": [round(min(rates)), round(max(rates))],
                "duplicates": sum(r.duplicates for r in mine),
                "missing": sum(r.missing for r in mine),
            }
        )
    return rows


def row(r: dict[str, Any]) -> str:
    server = "-" if r["server_cpu_secs_per_10k"] is None else f"{r['server_cpu_secs_per_10k']:.3f}"
    low, high = r["events_per_sec_range"]
    return (
        f"{r['config']:<7} {r['replicas']:>8} {r['wall_secs']:>7.2f} {r['events_per_sec']:>9.0f} "
        f"{r['events_per_sec_per_replica']:>12.0f} {r['cpu_secs_per_10k']:>9.3f} {server:>16} "
        f"{r['vs_sqlite']:>9.2f} {f'{low}-{high}':>13} {r['duplicates']:>5} {r['missing']:>7}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=6000, help="events per log type per account")
    parser.add_argument("--accounts", type=int, default=6, help="accounts, 3 streams each")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the three configurations; medians shown")
    parser.add_argument("--lease-secs", type=float, default=6.0, help="[state] lease_secs of the replicas")
    parser.add_argument("--max-drain-secs", type=float, default=120, help="give up on a run after this long")
    parser.add_argument("--json", type=Path, help="also write every run and the summary here")
    args = parser.parse_args()
    args.rounds = max(1, args.rounds)
    expected = args.accounts * len(LOG_TYPES) * args.events
    print(
        f"postgres: {args.accounts} accounts x {len(LOG_TYPES)} log types x {args.events} events = {expected} "
        f"per run, {args.accounts * len(LOG_TYPES)} streams, file sink per replica, lease_secs {args.lease_secs:g}, "
        f"collector {collector_build()}, {os.cpu_count()} cores; {args.rounds} rounds, configurations alternating",
        flush=True,
    )
    runs = asyncio.run(measure(args))
    rows = summary(runs)
    print(f"medians over {args.rounds} rounds:")
    print(HEAD)
    for r in rows:
        print(row(r))
    print(
        f"note: {os.cpu_count()} cores - 3 replicas here measure the coordination overhead of sharing, "
        "not scale-out; the simulator runs in the bench process on the same cores"
    )
    if args.json:
        result = {
            "benchmark": "postgres",
            "events_per_run": expected,
            "summary": rows,
            "runs": [
                {
                    "config": r.setup.name,
                    "wall_secs": r.wall_secs,
                    "unique": r.unique,
                    "lines": r.lines,
                    "cpu_secs": r.cpu_secs,
                    "server_cpu_secs": r.server_cpu_secs,
                    "per_replica_lines": r.per_replica_lines,
                    "exit_codes": r.exit_codes,
                    "leases": r.leases,
                }
                for r in runs
            ],
        }
        args.json.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    ok = all(r.missing == 0 and r.duplicates == 0 and set(r.exit_codes) == {0} for r in runs)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
