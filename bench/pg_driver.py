"""Benchmark: asyncpg against psycopg 3 (async) on the PostgreSQL state backend's hot pattern (issue 14).

A page commit is one transaction: the lease fence (SELECT ... FOR SHARE), the dedup insert of the
page's 500 keys through unnest (about 5% already present) returning the new ones, the stream's
position, the spool head's sequence, and the spool row holding the page's documents as one bytea.
The read pattern fetches spool rows four at a time and splits their documents on newlines.

Cases: "commit 1 conn" (N pages on one connection), "commit pool" (the same pages, one stream per
committer, --committers tasks taking a pool connection per page; 4 dedicated connections per driver
when psycopg_pool is not installed), "read" (the spool the first case wrote). Both drivers run the
same SQL (psycopg's placeholders are the only difference) on the same pre-built pages against one
throwaway cluster (tests/pg_server.py), in alternation, from the same empty tables. CPU is this
process's (time.process_time) per 10,000 events: the driver's cost, not the server's. Figures are
medians over the rounds; "vs asyncpg" is the median of the per-round psycopg/asyncpg ratios, which a
drifting machine disturbs least.

Usage: python bench/pg_driver.py [--pages 200] [--rounds 3] [--committers 4] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import random
import re
import statistics
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import asyncpg
import orjson
import psycopg
from psycopg.rows import TupleRow

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.pg_server import PgServer

PAGE_EVENTS = 500
DOC_BYTES = 600
DUPLICATE_SHARE = 0.05
NODE, EPOCH = "bench-node", 7
HAVE_PSYCOPG_POOL = importlib.util.find_spec("psycopg_pool") is not None

DDL = """
CREATE TABLE leases (kind text, name text, node text, epoch bigint, renewed_at timestamptz, PRIMARY KEY (kind, name));
CREATE TABLE streams (id bigserial PRIMARY KEY, window_start bigint, page_token text, events_total bigint);
CREATE TABLE dedup (stream_id bigint, event_time bigint, key text, seen_until bigint,
                    PRIMARY KEY (stream_id, event_time, key));
CREATE TABLE spool (first_seq bigint PRIMARY KEY, stream_id bigint, events int, bytes bigint,
                    keys bytea, times bytea, docs bytea);
CREATE TABLE spool_head (id int PRIMARY KEY, last_seq bigint, bytes bigint);
"""

FENCE = "SELECT 1 FROM leases WHERE kind = $1 AND name = $2 AND node = $3 AND epoch = $4 FOR SHARE"
DEDUP = (
    "INSERT INTO dedup (stream_id, event_time, key, seen_until) "
    "SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bigint[]) ON CONFLICT DO NOTHING RETURNING key"
)
STREAM = "UPDATE streams SET window_start = $1, page_token = $2, events_total = events_total + $3 WHERE id = $4"
HEAD = "UPDATE spool_head SET last_seq = last_seq + $1, bytes = bytes + $2 RETURNING last_seq"
SPOOL = "INSERT INTO spool (first_seq, stream_id, events, bytes, keys, times, docs) VALUES ($1, $2, $3, $4, $5, $6, $7)"
READ = "SELECT first_seq, keys, times, docs FROM spool WHERE first_seq >= $1 ORDER BY first_seq LIMIT 4"


def pyformat(sql: str) -> str:
    """The same statement with psycopg's placeholders; each $n must appear once, in order, for that to hold."""
    numbers = [int(n) for n in re.findall(r"\$(\d+)", sql)]
    assert numbers == list(range(1, len(numbers) + 1)), sql
    return re.sub(r"\$\d+", "%s", sql)


@dataclass(frozen=True)
class Page:
    stream_id: int
    stream_ids: list[int]  # the unnest takes one array per column
    times: list[int]
    keys: list[str]
    seen_until: list[int]
    window_start: int
    token: str
    keys_json: bytes
    times_json: bytes
    docs: bytes
    new: int  # keys the previous page of the stream did not have: what the dedup insert must return

    def spool_row(self, last_seq: int, new: int) -> tuple[int, int, int, int, bytes, bytes, bytes]:
        return last_seq - new + 1, self.stream_id, new, len(self.docs), self.keys_json, self.times_json, self.docs


WORDS = ("quarantine", "release", "url", "click", "sender", "domain", "policy", "held", "rewritten", "verdict", "clean")


def make_pages(count: int, streams: int, seed: int = 14) -> list[list[Page]]:
    """``count`` pages spread over ``streams`` streams; 5% of each page repeats the previous page's events."""
    rng = random.Random(seed)
    per_stream: list[list[Page]] = [[] for _ in range(streams)]
    base_ms = 1_780_000_000_000
    for number in range(count):
        stream = number % streams
        previous = per_stream[stream][-1] if per_stream[stream] else None
        repeats = int(PAGE_EVENTS * DUPLICATE_SHARE) if previous else 0
        pairs = list(zip(previous.times[-repeats:], previous.keys[-repeats:], strict=True)) if previous else []
        start = base_ms + number * 60_000
        pairs += [(start + i * 100, f"{rng.getrandbits(128):032x}") for i in range(PAGE_EVENTS - repeats)]
        docs = []
        for ms, key in pairs:
            head = orjson.dumps({"key": key, "eventTime": ms, "logType": "ttp_url", "detail": ""})
            filler = " ".join(rng.choices(WORDS, k=DOC_BYTES // 5))[: DOC_BYTES - len(head)]
            docs.append(head[:-2] + filler.encode() + b'"}')
        times, keys = [ms for ms, _ in pairs], [key for _, key in pairs]
        per_stream[stream].append(
            Page(
                stream_id=stream + 1,
                stream_ids=[stream + 1] * len(pairs),
                times=times,
                keys=keys,
                seen_until=[ms + 30 * 86_400_000 for ms in times],
                window_start=max(times),
                token=f"token-{stream}-{number}-{rng.getrandbits(64):x}",
                keys_json=orjson.dumps(keys),
                times_json=orjson.dumps(times),
                docs=b"\n".join(docs),
                new=len(pairs) - repeats,
            )
        )
    return per_stream


def tally(rows: Iterable[tuple[int, bytes]]) -> tuple[int, int, int]:
    """(rows, events, last first_seq) of a read batch: the documents are split as the sender would."""
    count = events = last = 0
    for first_seq, docs in rows:
        events += len(docs.split(b"\n"))
        count, last = count + 1, first_seq
    return count, events, last


class Session(Protocol):
    async def commit(self, page: Page) -> int: ...
    async def read(self, first_seq: int) -> tuple[int, int, int]: ...


class Driver(Protocol):
    name: str

    def connection(self) -> AbstractAsyncContextManager[Session]: ...
    def pool(self, size: int) -> AbstractAsyncContextManager[Session]: ...


class AsyncpgSession:
    def __init__(self, acquire: Callable[[], AbstractAsyncContextManager[asyncpg.Connection[asyncpg.Record]]]) -> None:
        self._acquire = acquire

    async def commit(self, page: Page) -> int:
        async with self._acquire() as conn, conn.transaction():
            if await conn.fetchval(FENCE, "stream", str(page.stream_id), NODE, EPOCH) is None:
                raise RuntimeError("lease lost")
            new = len(await conn.fetch(DEDUP, page.stream_ids, page.times, page.keys, page.seen_until))
            await conn.execute(STREAM, page.window_start, page.token, new, page.stream_id)
            last_seq = await conn.fetchval(HEAD, new, len(page.docs))
            await conn.execute(SPOOL, *page.spool_row(last_seq, new))
        return new

    async def read(self, first_seq: int) -> tuple[int, int, int]:
        async with self._acquire() as conn:
            rows = await conn.fetch(READ, first_seq)
        return tally((row[0], row[3]) for row in rows)


class AsyncpgDriver:
    name = "asyncpg"

    def __init__(self, url: str, password: str) -> None:
        self._url, self._password = url, password

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Session]:
        conn = await asyncpg.connect(self._url, password=self._password)
        try:
            yield AsyncpgSession(lambda: nullcontext(conn))
        finally:
            await conn.close()

    @asynccontextmanager
    async def pool(self, size: int) -> AsyncIterator[Session]:
        # The pool's default reset on release (RESET ALL and friends, one round trip) is left in place:
        # it is what the backend would get unless it opts out.
        async with asyncpg.create_pool(self._url, password=self._password, min_size=size, max_size=size) as pool:
            yield AsyncpgSession(pool.acquire)  # type: ignore[arg-type]  # the proxy behaves as the connection


PG_FENCE, PG_DEDUP, PG_STREAM, PG_HEAD, PG_SPOOL, PG_READ = map(pyformat, (FENCE, DEDUP, STREAM, HEAD, SPOOL, READ))
PgConnection = psycopg.AsyncConnection[TupleRow]


class PsycopgSession:
    def __init__(self, acquire: Callable[[], AbstractAsyncContextManager[PgConnection]]) -> None:
        self._acquire = acquire

    async def commit(self, page: Page) -> int:
        # Binary results like asyncpg's; statements are prepared after 5 executions (psycopg's default).
        async with self._acquire() as conn, conn.transaction(), conn.cursor(binary=True) as cur:
            await cur.execute(PG_FENCE, ("stream", str(page.stream_id), NODE, EPOCH))
            if await cur.fetchone() is None:
                raise RuntimeError("lease lost")
            await cur.execute(PG_DEDUP, (page.stream_ids, page.times, page.keys, page.seen_until))
            new = len(await cur.fetchall())
            await cur.execute(PG_STREAM, (page.window_start, page.token, new, page.stream_id))
            await cur.execute(PG_HEAD, (new, len(page.docs)))
            row = await cur.fetchone()
            assert row is not None
            last_seq: int = row[0]
            await cur.execute(PG_SPOOL, page.spool_row(last_seq, new))
        return new

    async def read(self, first_seq: int) -> tuple[int, int, int]:
        async with self._acquire() as conn, conn.cursor(binary=True) as cur:
            await cur.execute(PG_READ, (first_seq,))
            rows = await cur.fetchall()
        return tally((row[0], row[3]) for row in rows)


class PsycopgDriver:
    name = "psycopg"

    def __init__(self, url: str, password: str) -> None:
        self._url, self._password = url, password

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Session]:
        conn = await psycopg.AsyncConnection.connect(self._url, password=self._password, autocommit=True)
        try:
            yield PsycopgSession(lambda: nullcontext(conn))
        finally:
            await conn.close()

    @asynccontextmanager
    async def pool(self, size: int) -> AsyncIterator[Session]:
        # Imported here because it is optional: without it the caller uses separate connections for both.
        from psycopg_pool import AsyncConnectionPool  # noqa: PLC0415

        pool = AsyncConnectionPool(
            self._url,
            connection_class=PgConnection,
            kwargs={"password": self._password, "autocommit": True},
            min_size=size,
            max_size=size,
            open=False,
        )
        await pool.open(wait=True)
        try:
            yield PsycopgSession(pool.connection)
        finally:
            await pool.close()


def figures(pages: int, events: int, wall_secs: float, cpu_secs: float) -> dict[str, float]:
    return {
        "pages_per_sec": round(pages / wall_secs, 1),
        "events_per_sec": round(events / wall_secs),
        "cpu_secs_per_10k": round(cpu_secs / events * 10_000, 4),
    }


class Timer:
    def __enter__(self) -> Timer:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def reset(server: PgServer, streams: int) -> None:
    """Every run starts from the same state: empty dedup and spool, fresh head, streams and leases."""
    rows = f"generate_series(1, {int(streams)}) s"  # only this module's constants and an int go into the SQL
    server.psql("TRUNCATE dedup, spool, streams, leases, spool_head RESTART IDENTITY")
    server.psql("INSERT INTO spool_head VALUES (1, 0, 0)")
    server.psql(f"INSERT INTO streams (window_start, page_token, events_total) SELECT 0, '', 0 FROM {rows}")  # noqa: S608
    server.psql(f"INSERT INTO leases SELECT 'stream', s::text, '{NODE}', {EPOCH}, now() FROM {rows}")  # noqa: S608
    server.psql("VACUUM ANALYZE")
    server.psql("CHECKPOINT")


def verify(server: PgServer, streams: list[list[Page]], committed: int, driver: str) -> None:
    """Both drivers must have done the same work: every new key once, one spool row per page."""
    pages = [page for stream in streams for page in stream]
    expected = f"{sum(p.new for p in pages)}|{len(pages)}|{sum(p.new for p in pages)}|{sum(p.new for p in pages)}"
    found = server.psql(
        "SELECT (SELECT count(*) FROM dedup), (SELECT count(*) FROM spool), (SELECT last_seq FROM spool_head),"
        " (SELECT sum(events_total) FROM streams)"
    ).strip()
    if found != expected or committed != sum(p.new for p in pages):
        raise RuntimeError(f"{driver}: tables hold {found}, commits returned {committed}; expected {expected}")


async def commit_all(session: Session, pages: Sequence[Page]) -> int:
    return sum([await session.commit(page) for page in pages])


async def one_round(
    server: PgServer, driver: Driver, streams: list[list[Page]], use_pool: bool
) -> dict[str, dict[str, float]]:
    interleaved = [page for pages in zip(*streams, strict=False) for page in pages]
    interleaved += [page for pages in streams for page in pages[len(streams[-1]) :]]  # pages the zip cut off
    events = PAGE_EVENTS * len(interleaved)
    result: dict[str, dict[str, float]] = {}

    reset(server, len(streams))
    async with driver.connection() as session:
        with Timer() as t:
            committed = await commit_all(session, interleaved)
        verify(server, streams, committed, driver.name)
        result["commit 1 conn"] = figures(len(interleaved), events, t.wall, t.cpu)
        with Timer() as t:
            read_pages = read_events = 0
            first_seq = 0
            while True:
                rows, docs, last = await session.read(first_seq)
                if not rows:
                    break
                read_pages, read_events, first_seq = read_pages + rows, read_events + docs, last + 1
        if (read_pages, read_events) != (len(interleaved), events):
            raise RuntimeError(f"{driver.name}: read {read_pages} pages, {read_events} events")
        result["read"] = figures(read_pages, read_events, t.wall, t.cpu)

    reset(server, len(streams))
    async with AsyncExitStack() as stack:
        if use_pool:
            sessions = [await stack.enter_async_context(driver.pool(len(streams)))] * len(streams)
        else:
            sessions = [await stack.enter_async_context(driver.connection()) for _ in streams]
        with Timer() as t:
            counts = await asyncio.gather(*(commit_all(s, pages) for s, pages in zip(sessions, streams, strict=True)))
        verify(server, streams, sum(counts), driver.name)
        result["commit pool"] = figures(len(interleaved), events, t.wall, t.cpu)
    return result


async def run(pages: int, rounds: int, committers: int) -> dict[str, Any]:
    streams = make_pages(pages, committers)
    server = PgServer()
    server.start()
    try:
        server.psql(DDL)
        drivers: list[Driver] = [AsyncpgDriver(server.url, server.password), PsycopgDriver(server.url, server.password)]
        runs: dict[str, list[dict[str, dict[str, float]]]] = {d.name: [] for d in drivers}
        for _ in range(rounds):
            for driver in drivers:  # A B A B ...: drift over the minutes hits both alike
                runs[driver.name].append(await one_round(server, driver, streams, HAVE_PSYCOPG_POOL))
        version = server.psql("SHOW server_version").strip()
    finally:
        server.destroy()
    return {
        "benchmark": "pg_driver",
        "pages": pages,
        "events_per_page": PAGE_EVENTS,
        "committers": committers,
        "pool": "asyncpg.Pool / psycopg_pool" if HAVE_PSYCOPG_POOL else "separate connections",
        "server_version": version,
        "asyncpg": asyncpg.__version__,
        "psycopg": f"{psycopg.__version__} ({psycopg.pq.__impl__})",
        "rounds": runs,
    }


def summary(result: dict[str, Any]) -> list[str]:
    runs: dict[str, list[dict[str, dict[str, float]]]] = result["rounds"]
    lines = [
        f"pg_driver: {result['pages']} pages x {result['events_per_page']} events, {len(runs['asyncpg'])} rounds, "
        f"PostgreSQL {result['server_version']}; asyncpg {result['asyncpg']}, psycopg {result['psycopg']}; "
        f"commit pool = {result['committers']} committers on {result['pool']}",
        f"{'case':<14} {'driver':<8} {'pages/s':>8} {'events/s':>9} {'CPU s/10k ev':>12} {'pages/s range':>15}"
        f" {'vs asyncpg: rate':>17} {'CPU':>5}",
    ]
    for case in ("commit 1 conn", "commit pool", "read"):
        for name in ("asyncpg", "psycopg"):
            mine = [r[case] for r in runs[name]]
            rate = [m["pages_per_sec"] for m in mine]
            ratios = ""
            if name != "asyncpg":
                base = [r[case] for r in runs["asyncpg"]]
                rate_ratio = statistics.median(
                    m["pages_per_sec"] / b["pages_per_sec"] for m, b in zip(mine, base, strict=True)
                )
                cpu_ratio = statistics.median(
                    m["cpu_secs_per_10k"] / b["cpu_secs_per_10k"] for m, b in zip(mine, base, strict=True)
                )
                ratios = f"{rate_ratio:>17.2f} {cpu_ratio:>5.2f}"
            lines.append(
                f"{case:<14} {name:<8} {statistics.median(rate):>8.1f}"
                f" {statistics.median(m['events_per_sec'] for m in mine):>9.0f}"
                f" {statistics.median(m['cpu_secs_per_10k'] for m in mine):>12.4f}"
                f" {f'{min(rate):.0f}-{max(rate):.0f}':>15} {ratios}".rstrip()
            )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=200, help=f"pages of {PAGE_EVENTS} events per case")
    parser.add_argument("--rounds", type=int, default=3, help="asyncpg + psycopg pairs; medians are shown")
    parser.add_argument("--committers", type=int, default=4, help="concurrent committers (and streams)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = asyncio.run(run(max(args.committers, args.pages), max(1, args.rounds), max(1, args.committers)))
    print("\n".join(summary(result)))
    if args.json:
        args.json.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
