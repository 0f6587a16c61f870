"""SQLite state: stream positions, dedup keys, the event spool and per-sink offsets, in one file.

The guarantee the whole collector rests on: :meth:`Store.commit_page` writes a page's new events
and the stream's next position in ONE transaction, so after a crash both or neither are there.
All writes go through one connection, one transaction at a time (an anyio lock keeps statements
of concurrent tasks from interleaving inside another task's transaction).
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiosqlite
import anyio

from collector.errors import StoreError
from collector.logtypes import Event, serialize

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS streams (
    id INTEGER PRIMARY KEY,
    account TEXT NOT NULL,
    log_type TEXT NOT NULL,
    window_start INTEGER NOT NULL,
    window_end INTEGER,
    page_token TEXT,
    events_total INTEGER NOT NULL DEFAULT 0,
    last_success_at REAL,
    last_error TEXT,
    last_error_at REAL,
    fatal INTEGER NOT NULL DEFAULT 0,
    UNIQUE (account, log_type)
);
CREATE TABLE IF NOT EXISTS dedup (
    stream_id INTEGER NOT NULL,
    key TEXT NOT NULL,
    seen_until INTEGER NOT NULL,  -- end of the last window that returned it
    PRIMARY KEY (stream_id, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dedup_age ON dedup (stream_id, seen_until);
CREATE TABLE IF NOT EXISTS spool (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused, so sink offsets stay meaningful
    stream_id INTEGER NOT NULL,
    key TEXT NOT NULL,
    event_time INTEGER NOT NULL,
    doc BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS sinks (
    name TEXT PRIMARY KEY,
    offset INTEGER NOT NULL,
    delivered_total INTEGER NOT NULL DEFAULT 0,
    last_delivery_at REAL,
    last_error TEXT
);
"""
_PARAMS_PER_QUERY = 500


@dataclass(frozen=True)
class StreamState:
    id: int
    account: str
    log_type: str
    window_start: int  # everything before this is collected
    window_end: int | None  # end of the window being paged, None between windows
    page_token: str | None  # token for the next page of the current window

    def next_page(self, window_end: int, token: str) -> StreamState:
        return replace(self, window_end=window_end, page_token=token)

    def window_done(self, window_end: int) -> StreamState:
        return replace(self, window_start=window_end, window_end=None, page_token=None)

    def restart_window(self) -> StreamState:
        return replace(self, page_token=None)


@dataclass(frozen=True)
class SpoolRow:
    seq: int
    key: str
    event_time: int
    doc: bytes


@dataclass(frozen=True)
class PageResult:
    new: int
    duplicates: int


class Store:
    def __init__(self, db: aiosqlite.Connection, path: Path) -> None:
        self._db = db
        self.path = path
        self._lock = anyio.Lock()

    @classmethod
    async def open(cls, path: Path, *, synchronous: str = "normal", read_only: bool = False) -> Store:
        """Open (creating if needed) the state file; any failure is a :class:`StoreError` that says why."""
        if read_only and not path.exists():  # noqa: ASYNC240 - one stat before anything runs
            raise StoreError(f"state file {path} does not exist yet; run the collector first")
        try:
            if read_only:
                db = await aiosqlite.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                db = await aiosqlite.connect(path, isolation_level=None)
            await db.execute("PRAGMA busy_timeout = 10000")
            if not read_only:
                await db.execute("PRAGMA journal_mode = WAL")
                await db.execute(f"PRAGMA synchronous = {'FULL' if synchronous == 'full' else 'NORMAL'}")
                await db.executescript(_SCHEMA)
                await db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            await (await db.execute("SELECT count(*) FROM streams")).fetchone()
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(describe_failure(path, exc)) from None
        return cls(db, path)

    async def close(self) -> None:
        with anyio.CancelScope(shield=True):
            await self._db.close()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            try:
                await self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StoreError(describe_failure(self.path, exc)) from None
            try:
                yield self._db
                await self._db.execute("COMMIT")
            except BaseException as exc:
                with anyio.CancelScope(shield=True):
                    await self._db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(describe_failure(self.path, exc)) from None
                raise

    # --- streams ----------------------------------------------------------------------------------

    async def stream(self, account: str, log_type: str, *, start: int) -> StreamState:
        """The stream's saved state, created at ``start`` if it has none."""
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO streams (account, log_type, window_start) VALUES (?, ?, ?) "
                "ON CONFLICT (account, log_type) DO NOTHING",
                (account, log_type, start),
            )
            row = await (
                await db.execute(
                    "SELECT id, window_start, window_end, page_token FROM streams WHERE account=? AND log_type=?",
                    (account, log_type),
                )
            ).fetchone()
        assert row is not None
        return StreamState(row[0], account, log_type, row[1], row[2], row[3])

    async def commit_page(
        self,
        events: Sequence[Event],
        next_state: StreamState,
        *,
        seen_until: int,
        prune_before: int | None = None,
        now: float,
    ) -> PageResult:
        """Spool the page's events not seen before and save ``next_state``: one transaction."""
        stream_id = next_state.id
        unique: dict[str, Event] = {}
        for event in events:
            unique.setdefault(event.key, event)
        async with self._transaction() as db:
            known: set[str] = set()
            keys = list(unique)
            for i in range(0, len(keys), _PARAMS_PER_QUERY):
                chunk = keys[i : i + _PARAMS_PER_QUERY]
                marks = ",".join("?" * len(chunk))
                cursor = await db.execute(
                    f"SELECT key FROM dedup WHERE stream_id = ? AND key IN ({marks})",  # noqa: S608
                    (stream_id, *chunk),
                )
                known.update(row[0] for row in await cursor.fetchall())
            fresh = [e for key, e in unique.items() if key not in known]
            await db.executemany(
                "INSERT INTO dedup (stream_id, key, seen_until) VALUES (?, ?, ?) "
                "ON CONFLICT (stream_id, key) DO UPDATE SET seen_until = max(seen_until, excluded.seen_until)",
                [(stream_id, key, seen_until) for key in keys],
            )
            await db.executemany(
                "INSERT INTO spool (stream_id, key, event_time, doc) VALUES (?, ?, ?, ?)",
                [(stream_id, e.key, e.time, serialize(e.doc)) for e in fresh],
            )
            await db.execute(
                "UPDATE streams SET window_start=?, window_end=?, page_token=?, events_total=events_total+?, "
                "last_success_at=?, last_error=NULL, fatal=0 WHERE id=?",
                (
                    next_state.window_start,
                    next_state.window_end,
                    next_state.page_token,
                    len(fresh),
                    now,
                    stream_id,
                ),
            )
            if prune_before is not None:
                await db.execute("DELETE FROM dedup WHERE stream_id = ? AND seen_until < ?", (stream_id, prune_before))
        return PageResult(new=len(fresh), duplicates=len(events) - len(fresh))

    async def save_position(self, state: StreamState) -> None:
        async with self._transaction() as db:
            await db.execute(
                "UPDATE streams SET window_start=?, window_end=?, page_token=? WHERE id=?",
                (state.window_start, state.window_end, state.page_token, state.id),
            )

    async def record_error(self, stream_id: int, summary: str, *, fatal: bool, now: float) -> None:
        async with self._transaction() as db:
            await db.execute(
                "UPDATE streams SET last_error=?, last_error_at=?, fatal=? WHERE id=?",
                (summary, now, int(fatal), stream_id),
            )

    async def reset_stream(self, account: str, log_type: str, start: int) -> bool:
        """Rewind a stream to ``start``; dedup keys stay, so a short rewind re-sends nothing."""
        async with self._transaction() as db:
            cursor = await db.execute(
                "UPDATE streams SET window_start=?, window_end=NULL, page_token=NULL, last_error=NULL, fatal=0 "
                "WHERE account=? AND log_type=?",
                (start, account, log_type),
            )
            if cursor.rowcount == 0:
                await db.execute(
                    "INSERT INTO streams (account, log_type, window_start) VALUES (?, ?, ?)",
                    (account, log_type, start),
                )
        return True

    async def streams(self) -> list[dict[str, Any]]:
        async with self._lock:
            rows = await self._query(
                "SELECT account, log_type, window_start, window_end, page_token IS NOT NULL, events_total, "
                "last_success_at, last_error, last_error_at, fatal FROM streams ORDER BY account, log_type"
            )
        names = (
            "account",
            "log_type",
            "window_start",
            "window_end",
            "paging",
            "events_total",
            "last_success_at",
            "last_error",
            "last_error_at",
            "fatal",
        )
        return [dict(zip(names, row, strict=True)) for row in rows]

    # --- spool and sinks --------------------------------------------------------------------------

    async def sink_offset(self, name: str) -> int:
        """The sink's saved offset; a new sink starts with everything still spooled."""
        async with self._transaction() as db:
            await db.execute("INSERT INTO sinks (name, offset) VALUES (?, 0) ON CONFLICT (name) DO NOTHING", (name,))
            row = await (await db.execute("SELECT offset FROM sinks WHERE name=?", (name,))).fetchone()
        assert row is not None
        return int(row[0])

    async def read_spool(self, after: int, limit: int) -> list[SpoolRow]:
        async with self._lock:
            rows = await self._query(
                "SELECT seq, key, event_time, doc FROM spool WHERE seq > ? ORDER BY seq LIMIT ?",
                (after, limit),
            )
        return [SpoolRow(r[0], r[1], r[2], bytes(r[3])) for r in rows]

    async def ack(self, name: str, offset: int, delivered: int, *, now: float, sinks: Iterable[str]) -> None:
        """Save a sink's offset; in the same transaction, drop rows every configured sink has."""
        names = list(sinks)
        async with self._transaction() as db:
            await db.execute(
                "UPDATE sinks SET offset=?, delivered_total=delivered_total+?, last_delivery_at=?, last_error=NULL "
                "WHERE name=?",
                (offset, delivered, now, name),
            )
            marks = ",".join("?" * len(names))
            row = await (
                await db.execute(f"SELECT min(offset), count(*) FROM sinks WHERE name IN ({marks})", names)  # noqa: S608
            ).fetchone()
            if row is not None and row[1] == len(names) and row[0] is not None:
                await db.execute("DELETE FROM spool WHERE seq <= ?", (row[0],))

    async def record_sink_error(self, name: str, summary: str) -> None:
        async with self._transaction() as db:
            await db.execute("UPDATE sinks SET last_error=? WHERE name=?", (summary, name))

    async def sinks(self) -> list[dict[str, Any]]:
        async with self._lock:
            rows = await self._query(
                "SELECT s.name, s.offset, s.delivered_total, s.last_delivery_at, s.last_error, "
                "(SELECT count(*) FROM spool WHERE seq > s.offset) FROM sinks s ORDER BY s.name"
            )
        names = ("name", "offset", "delivered_total", "last_delivery_at", "last_error", "backlog")
        return [dict(zip(names, row, strict=True)) for row in rows]

    async def last_seq(self) -> int:
        """Highest spool sequence number handed out so far (0 when none)."""
        async with self._lock:
            rows = await self._query("SELECT seq FROM sqlite_sequence WHERE name = 'spool'")
        return int(rows[0][0]) if rows else 0

    async def backlog(self, after: int) -> int:
        async with self._lock:
            rows = await self._query("SELECT count(*) FROM spool WHERE seq > ?", (after,))
        return int(rows[0][0])

    async def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        try:
            cursor = await self._db.execute(sql, params)
            return list(await cursor.fetchall())
        except sqlite3.Error as exc:
            raise StoreError(describe_failure(self.path, exc)) from None


def describe_failure(path: Path, exc: BaseException) -> str:
    """One line an operator can act on, for the usual ways a state file goes wrong."""
    text = str(exc)
    lowered = text.lower()
    if "not a database" in lowered or "malformed" in lowered:
        return (
            f"state file {path} is corrupt ({text}); stop the collector, move the file aside and start again "
            "(streams restart from `start`; set it to the last position `status` showed to avoid gaps)"
        )
    if "locked" in lowered or "busy" in lowered:
        return f"state file {path} is locked by another process ({text}); is another collector running on it?"
    if "readonly" in lowered or "read-only" in lowered or "permission" in lowered or "unable to open" in lowered:
        return f"cannot write state file {path} ({text}); check that its directory exists and is writable"
    if "full" in lowered or "no space" in lowered:
        return f"no space left for state file {path} ({text}); free disk space, nothing was lost"
    return f"state file {path}: {text}"
