"""Three replicas on one PostgreSQL state, under the faults a shared deployment meets.

One combined run (CI time is tight): 8 accounts x 2 log types on the loopback API, an HTTP sink
to one shared receiver and a file sink per replica. Mid-run the busiest replica is SIGKILLed, a
survivor is SIGSTOPped past its lease and resumed, and PostgreSQL restarts. What must hold is read
from the database rows and the deliveries, never from the logs:

* every seeded event reaches both sinks; duplicates stay within one batch per sink per handover;
* every stream the killed replica held has a new owner within lease_secs plus one lease round;
* an audit trigger records every position and offset write as it commits, with the lease row as
  that transaction sees it: each write carries the node and epoch that hold the lease (so no write
  of a fenced replica lands), and no position, offset or written epoch ever moves backwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from collector.logtypes import LOG_TYPES, record_key
from collector.simulator import FakeMimecast, SimSettings, generate
from tests.helpers import account_options, start_collector, table
from tests.pg_server import PgServer
from tests.receivers import FakeHttpCollector

LEASE_SECS = 3.0
ROUND_SECS = LEASE_SECS / 3
ACCOUNTS = 8
STREAMS = ("ttp_url", "archive_search")
PER_TYPE = 800  # records per log type; every account sees the same ones
PAGE_SIZE = 20
LATENCY_SECS = 0.4  # per API call: 40 pages a stream keep collection going for 16 s at the least
BATCH = 100  # batch_max_events of both sinks: the duplicate bound is counted in these
SCHEMA = "mimecast_collector"
NODES = ("node-a", "node-b", "node-c")

# Every committed write of a position (streams) or offset (sinks), with the lease row as the writing
# transaction sees it. The fence holds that row FOR SHARE until COMMIT, so for a fenced write the
# two must agree; a write that lands without holding the lease shows another node or epoch.
AUDIT = """
CREATE SCHEMA audit;
CREATE TABLE audit.writes (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT clock_timestamp(),
    kind text NOT NULL,
    name text NOT NULL,
    written_by text,
    written_epoch bigint,
    position bigint NOT NULL,
    lease_node text,
    lease_epoch bigint
);
CREATE FUNCTION audit.stream_write() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    stream text := NEW.account || '/' || NEW.log_type;
BEGIN
    IF (NEW.window_start, NEW.window_end, NEW.page_token, NEW.cursor, NEW.events_total, NEW.written_by,
        NEW.written_epoch) IS DISTINCT FROM (OLD.window_start, OLD.window_end, OLD.page_token, OLD.cursor,
        OLD.events_total, OLD.written_by, OLD.written_epoch) THEN
        INSERT INTO audit.writes (kind, name, written_by, written_epoch, position, lease_node, lease_epoch)
        SELECT 'stream', stream, NEW.written_by, NEW.written_epoch, NEW.window_start,
            (SELECT node FROM mimecast_collector.leases WHERE kind = 'stream' AND name = stream),
            (SELECT epoch FROM mimecast_collector.leases WHERE kind = 'stream' AND name = stream);
    END IF;
    RETURN NEW;
END $$;
CREATE FUNCTION audit.sink_write() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.offset_seq, NEW.delivered_total, NEW.written_by, NEW.written_epoch)
        IS DISTINCT FROM (OLD.offset_seq, OLD.delivered_total, OLD.written_by, OLD.written_epoch) THEN
        INSERT INTO audit.writes (kind, name, written_by, written_epoch, position, lease_node, lease_epoch)
        SELECT 'sink', NEW.name, NEW.written_by, NEW.written_epoch, NEW.offset_seq,
            (SELECT node FROM mimecast_collector.leases WHERE kind = 'sink' AND name = NEW.name),
            (SELECT epoch FROM mimecast_collector.leases WHERE kind = 'sink' AND name = NEW.name);
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER audit_write AFTER UPDATE ON mimecast_collector.streams
    FOR EACH ROW EXECUTE FUNCTION audit.stream_write();
CREATE TRIGGER audit_write AFTER UPDATE ON mimecast_collector.sinks
    FOR EACH ROW EXECUTE FUNCTION audit.sink_write();
"""

# What a restart does to a connection (the second: one left mid-protocol, MagicStack/asyncpg#784).
ASYNCPG_BROKEN = (asyncpg.InterfaceError, asyncpg.InternalClientError)
Lease = tuple[str | None, int]  # node, epoch
EventId = tuple[str, str, str]  # account, dataset, event.id


@dataclass
class LeaseHistory:
    """The leases table every 100 ms, from outside the collector (reconnecting across a restart)."""

    pg: PgServer
    samples: list[tuple[float, dict[tuple[str, str], Lease]]] = field(default_factory=list)

    async def run(self) -> None:
        while True:
            with contextlib.suppress(OSError, TimeoutError, asyncpg.PostgresError, *ASYNCPG_BROKEN):
                conn = await asyncpg.connect(self.pg.url, password=self.pg.password, timeout=2)
                try:
                    while True:
                        rows = await conn.fetch(f"SELECT kind, name, node, epoch FROM {SCHEMA}.leases")  # noqa: S608
                        self.samples.append((time.monotonic(), {(r[0], r[1]): (r[2], int(r[3])) for r in rows}))
                        await asyncio.sleep(0.1)
                finally:
                    with contextlib.suppress(Exception):
                        await conn.close(timeout=1)
            await asyncio.sleep(0.2)

    @property
    def now(self) -> dict[tuple[str, str], Lease]:
        return self.samples[-1][1] if self.samples else {}

    def held_by(self, node: str) -> dict[tuple[str, str], int]:
        return {key: epoch for key, (owner, epoch) in self.now.items() if owner == node}

    async def wait(self, done: Any, *, limit_secs: float, what: str) -> float:
        """Until ``done(current leases)`` is true; the monotonic time of the sample that showed it."""
        deadline = time.monotonic() + limit_secs
        seen = len(self.samples)
        while time.monotonic() < deadline:
            for at, leases in self.samples[seen:]:
                if done(leases):
                    return at
            seen = len(self.samples)
            await asyncio.sleep(0.05)
        raise AssertionError(f"{what} not within {limit_secs} s; leases now {self.now}")


@dataclass
class Replica:
    node: str
    directory: Path
    config: Path
    process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.process = await start_collector(self.config, self.directory / "log.jsonl")

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)


def replica_config(directory: Path, node: str, pg: PgServer, sim: FakeMimecast, http: FakeHttpCollector) -> Path:
    body = table(
        "state",
        {"backend": "postgresql", "url": pg.url, "password": pg.password, "lease_secs": LEASE_SECS, "node": node},
    )
    body += table("service", {"shutdown_grace_secs": 10})
    for i in range(ACCOUNTS):
        options = account_options(
            sim.base_url, sim=SimSettings(access_key=sim.settings.account_key(i)), streams=list(STREAMS)
        )
        body += table(f"accounts.acme-{i}", {**options, "page_size": PAGE_SIZE})
    common = {"batch_max_events": BATCH, "retry_max_secs": 1}
    body += table("sinks.http", {"type": "http", "url": f"{http.url}/ingest", **common})
    body += table("sinks.local", {"type": "file", "path": str(directory / "out" / "events.jsonl"), **common})
    path = directory / "collector.toml"
    path.write_text(body)
    return path


def event_id(doc: dict[str, Any]) -> EventId:
    return doc["labels"]["mimecast_account"], doc["event"]["dataset"], doc["event"]["id"]


def http_delivered(http: FakeHttpCollector) -> list[EventId]:
    return [event_id(orjson.loads(line)) for _, body in http.received for line in body.splitlines() if line]


def file_delivered(replicas: list[Replica]) -> list[EventId]:
    """Every line of every replica's file sink; a SIGKILL may leave one torn last line, not acked."""
    out: list[EventId] = []
    for replica in replicas:
        for path in (replica.directory / "out").glob("events.jsonl*"):
            data = path.read_bytes()
            lines = data.split(b"\n")
            if lines and lines[-1]:
                lines = lines[:-1]  # unterminated: the write the kill interrupted
            out += [event_id(orjson.loads(line)) for line in lines if line]
    return out


async def eventually(done: Callable[[], bool], *, limit_secs: float, what: str, every: float = 0.1) -> None:
    deadline = time.monotonic() + limit_secs
    while time.monotonic() < deadline:
        if done():
            return
        await asyncio.sleep(every)
    raise AssertionError(f"{what}: not within {limit_secs} s")


@contextlib.asynccontextmanager
async def background(coro: Any) -> AsyncIterator[None]:
    task = asyncio.create_task(coro)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def audit_rows(pg: PgServer) -> tuple[list[asyncpg.Record], dict[str, Any]]:
    """The audited writes, and the end state: held leases, live nodes, sink offsets, spool head."""
    conn = await asyncpg.connect(pg.url, password=pg.password)
    try:
        rows = await conn.fetch("SELECT * FROM audit.writes ORDER BY id")
        end = {
            "held": await conn.fetchval(f"SELECT count(*) FROM {SCHEMA}.leases WHERE node IS NOT NULL"),  # noqa: S608
            "nodes": await conn.fetchval(f"SELECT count(*) FROM {SCHEMA}.nodes"),  # noqa: S608
            "offsets": {r[0]: r[1] for r in await conn.fetch(f"SELECT name, offset_seq FROM {SCHEMA}.sinks")},  # noqa: S608
            "last_seq": await conn.fetchval(f"SELECT last_seq FROM {SCHEMA}.spool_head"),  # noqa: S608
            "spooled": await conn.fetchval(f"SELECT count(*) FROM {SCHEMA}.spool"),  # noqa: S608
        }
        return rows, end
    finally:
        await conn.close()


async def prepare_schema(pg: PgServer) -> None:
    """The collector's tables (as a replica creates them) and the audit trigger on them, before any replica."""
    from collector.state.pg import TABLES  # noqa: PLC0415 - the very DDL the replicas run

    conn = await asyncpg.connect(pg.url, password=pg.password)
    try:
        await conn.execute(f"CREATE SCHEMA {SCHEMA}; SET search_path = {SCHEMA};")
        await conn.execute(TABLES)
        await conn.execute(AUDIT)
    finally:
        await conn.close()


async def test_three_replicas_survive_kill_freeze_and_database_restart(own_pg_server: PgServer, tmp_path: Path) -> None:
    pg = own_pg_server  # the test restarts it
    began = time.monotonic()
    sim = FakeMimecast(SimSettings(accounts=ACCOUNTS, latency_secs=LATENCY_SECS))
    await sim.start()
    http = FakeHttpCollector()
    await http.start()
    now = int(time.time())
    want: set[EventId] = set()
    for name in STREAMS:
        records = generate(name, PER_TYPE, start=now - 2 * 86400, end=now - 120, seed=1)
        sim.add(name, records)
        ids = {(f"mimecast.{name}", record_key(LOG_TYPES[name], r.record)) for r in records}
        want |= {(f"acme-{i}", dataset, eid) for i in range(ACCOUNTS) for dataset, eid in ids}
    await prepare_schema(pg)
    replicas = []
    for node in NODES:
        directory = tmp_path / node
        (directory / "out").mkdir(parents=True)
        replicas.append(Replica(node, directory, replica_config(directory, node, pg, sim, http)))
    stream_keys = {("stream", f"acme-{i}/{name}") for i in range(ACCOUNTS) for name in STREAMS}
    history = LeaseHistory(pg)

    def delivered_everywhere() -> bool:
        return want <= set(http_delivered(http)) and want <= set(file_delivered(replicas))

    try:
        async with background(history.run()):
            for replica in replicas:
                await replica.start()

            # Settled: every stream and sink owned, each replica its fair share, work under way.
            share = math.ceil(len(stream_keys) / len(NODES))

            def settled(leases: dict[tuple[str, str], Lease]) -> bool:
                owners = Counter(node for (kind, _), (node, _) in leases.items() if kind == "stream")
                return all(0 < owners[node] <= share for node in NODES) and all(
                    node is not None for node, _ in leases.values()
                )

            await history.wait(lambda leases: len(leases) == len(stream_keys) + 2 and settled(leases), limit_secs=30,
                               what="fair shares")  # fmt: skip
            await eventually(lambda: bool(http.received), limit_secs=30, what="a first delivery")

            # 1. SIGKILL the busiest replica (most leases; one holding a sink wins a tie).
            def load(replica: Replica) -> tuple[int, int]:
                held = history.held_by(replica.node)
                return len(held), sum(1 for kind, _ in held if kind == "sink")

            victim = max(replicas, key=load)
            victim_held = history.held_by(victim.node)
            killed_at = time.monotonic()
            victim.signal(signal.SIGKILL)
            assert victim.process is not None
            await victim.process.wait()
            assert not delivered_everywhere(), "collection finished before the kill: seed more, or slow the API"
            taken_at = await history.wait(
                lambda leases: all(leases[key][0] not in (None, victim.node) for key in victim_held),
                limit_secs=4 * LEASE_SECS,
                what=f"takeover of {victim.node}'s {len(victim_held)} leases",
            )
            takeover_secs = taken_at - killed_at
            print(f"\ntakeover after SIGKILL of {victim.node} ({len(victim_held)} leases): {takeover_secs:.2f} s")
            # The bound: a lease expires after lease_secs, survivors look one round later.
            assert takeover_secs <= LEASE_SECS + ROUND_SECS + 1.0

            # 2. SIGSTOP a survivor past its lease; the other takes everything; SIGCONT: it is fenced.
            survivors = [r for r in replicas if r is not victim]
            frozen, other = sorted(survivors, key=load, reverse=True)
            frozen_held = history.held_by(frozen.node)
            assert frozen_held, f"{frozen.node} holds nothing to be fenced from"
            frozen.signal(signal.SIGSTOP)
            await history.wait(
                lambda leases: all(leases[key] == (other.node, leases[key][1]) for key in frozen_held),
                limit_secs=4 * LEASE_SECS,
                what=f"{other.node} taking over frozen {frozen.node}",
            )
            # Newer epochs: from here on a write of the frozen replica's grants is a fenced one.
            assert all(history.now[key][1] > epoch for key, epoch in frozen_held.items())
            assert not delivered_everywhere(), "collection finished before the freeze ended"
            frozen.signal(signal.SIGCONT)
            await history.wait(
                lambda leases: any(node == frozen.node for node, _ in leases.values()),
                limit_secs=4 * LEASE_SECS,
                what=f"{frozen.node} back to a share",
            )

            # 3. Restart PostgreSQL under both.
            assert not delivered_everywhere(), "collection finished before the database restart"
            restarted_at = time.monotonic()
            await asyncio.to_thread(pg.stop)
            await asyncio.sleep(1.0)
            await asyncio.to_thread(pg.start)
            print(f"database down for {time.monotonic() - restarted_at:.1f} s")

            await eventually(delivered_everywhere, limit_secs=60, what="every event in both sinks", every=0.5)
            final_leases = history.now
        for replica in survivors:
            replica.signal(signal.SIGTERM)
        codes = [await replica.process.wait() for replica in survivors if replica.process is not None]
        assert codes == [0, 0]
        rows, end = await audit_rows(pg)
    finally:
        for replica in replicas:
            if replica.process is not None and replica.process.returncode is None:
                replica.process.kill()
                await replica.process.wait()
        await http.stop()
        await sim.stop()

    # Every event in both sinks; duplicates at most one batch per handover of that sink. A sink's
    # epoch counts its claims: the first, then one per handover (kill, freeze, restart, rebalance).
    for sink, got in (("http", http_delivered(http)), ("local", file_delivered(replicas))):
        assert set(got) == want, sink
        handovers = final_leases[("sink", sink)][1] - 1
        duplicates = len(got) - len(want)
        print(f"sink {sink}: {len(got)} delivered, {duplicates} duplicates, {handovers} handovers")
        assert duplicates <= BATCH * handovers, sink

    # Fencing, on the committed rows: each write held the lease, at the epoch it recorded.
    unfenced = [dict(r) for r in rows if (r["written_by"], r["written_epoch"]) != (r["lease_node"], r["lease_epoch"])]
    assert not unfenced, unfenced[:5]
    assert any(r["written_by"] == frozen.node for r in rows), "the frozen replica never wrote at all"
    # Nothing moves backwards: per stream and per sink, in commit order (the row lock orders them).
    last: dict[tuple[str, str], tuple[int, int]] = {}
    for r in rows:
        key = (r["kind"], r["name"])
        previous = last.get(key, (0, 0))
        assert r["position"] >= previous[0], f"{key} moved back from {previous[0]} to {r['position']}"
        assert r["written_epoch"] >= previous[1], f"{key} written at epoch {r['written_epoch']} after {previous[1]}"
        last[key] = (r["position"], r["written_epoch"])
    assert {key for key in last if key[0] == "stream"} == stream_keys
    # A clean stop released every lease; only the killed replica's node row is left (it never left).
    assert (end["held"], end["nodes"]) == (0, 1)
    # Both sinks acked every spooled event, so none is left.
    assert end["offsets"] == {"http": end["last_seq"], "local": end["last_seq"]}
    assert end["spooled"] == 0
    assert end["last_seq"] == len(want)  # dedup: each event spooled once, whoever fetched it again
    # In addition to the rows: the frozen replica saw it lost leases; the survivors saw the restart.
    assert b'"lease_lost"' in (frozen.directory / "log.jsonl").read_bytes()
    for replica in survivors:
        log = (replica.directory / "log.jsonl").read_bytes()
        assert b'"state_unavailable"' in log, replica.node
        assert b'"state_available"' in log, replica.node
    print(f"{len(rows)} audited writes; test took {time.monotonic() - began:.1f} s")
