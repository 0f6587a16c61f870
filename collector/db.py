"""The SQLite file under everything: connection, schema, one transaction at a time, clear errors.

All writes go through one connection, one transaction at a time: an anyio lock keeps statements of
concurrent tasks from interleaving inside another task's transaction (aiosqlite runs them all on
one thread, in order of arrival).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Self

import aiosqlite
import anyio

from collector.errors import StoreError

SCHEMA_VERSION = 1
SCHEMA = """
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
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT OR IGNORE INTO meta (key, value) SELECT 'spool_bytes', coalesce(sum(length(doc)), 0) FROM spool;
CREATE TABLE IF NOT EXISTS sinks (
    name TEXT PRIMARY KEY,
    offset INTEGER NOT NULL,
    delivered_total INTEGER NOT NULL DEFAULT 0,
    last_delivery_at REAL,
    last_error TEXT
);
"""


class Database:
    def __init__(self, db: aiosqlite.Connection, path: Path) -> None:
        self._db = db
        self.path = path
        self._lock = anyio.Lock()

    @classmethod
    async def open(cls, path: Path, *, synchronous: str = "normal", read_only: bool = False) -> Self:
        """Open (creating if needed) the state file; any failure is a :class:`StoreError` that says why."""
        if read_only and not path.exists():  # noqa: ASYNC240 - one stat before anything runs
            raise StoreError(f"state file {path} does not exist yet; run the collector first")
        db: aiosqlite.Connection | None = None
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
                await db.executescript(SCHEMA)
                await db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            await (await db.execute("SELECT count(*) FROM streams")).fetchone()
        except (sqlite3.Error, OSError) as exc:
            if db is not None:  # its worker thread would otherwise keep the process alive
                await db.close()
            raise StoreError(describe_failure(path, exc)) from None
        return cls(db, path)

    async def close(self) -> None:
        with anyio.CancelScope(shield=True):
            await self._db.close()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            try:
                # BEGIN inside the try: a cancel while it is queued must still be rolled back, or
                # every later transaction on this connection fails ("within a transaction").
                await self._db.execute("BEGIN IMMEDIATE")
                yield self._db
                await self._db.execute("COMMIT")
            except BaseException as exc:
                # If BEGIN failed, or a cancelled COMMIT went through, there is nothing to undo.
                with anyio.CancelScope(shield=True), contextlib.suppress(sqlite3.OperationalError):
                    await self._db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(describe_failure(self.path, exc)) from None
                raise

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
    if isinstance(exc, OSError) and not isinstance(exc, sqlite3.Error):
        return f"cannot write state file {path} ({text}); check that its directory exists and is writable"
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
