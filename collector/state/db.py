"""The SQLite file under everything: connection, schema, one transaction at a time, clear errors.

Statements run on the event loop's own thread, through a thin async-shaped wrapper. Measured
(bench/throughput.py): handing them to a worker thread, as aiosqlite does, made the collector about
35% slower, because the worker and the normalizing main thread then fight over the GIL for every
row. A transaction here is a few milliseconds of work with no await inside that really suspends,
so it is also atomic with respect to cancellation; an anyio lock keeps tasks from interleaving
statements all the same.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Self

import anyio

from collector.config.errors import CollectorError
from collector.logs import get_logger


class StoreError(CollectorError):
    """The state store cannot be opened or written (locked, corrupt, read-only, disk full)."""


SCHEMA_VERSION = 5
SPOOL_TABLE = """
-- v5: one row per committed page (see collector/state/spool.py); its events are numbered
-- first_seq .. first_seq + events - 1, and numbers are never reused, so sink offsets stay meaningful.
CREATE TABLE IF NOT EXISTS spool (
    first_seq INTEGER PRIMARY KEY,
    stream_id INTEGER NOT NULL,
    events INTEGER NOT NULL,
    bytes INTEGER NOT NULL,  -- of its documents
    keys BLOB NOT NULL,  -- JSON array of the events' keys
    times BLOB NOT NULL,  -- JSON array of their event times (epoch seconds)
    docs BLOB NOT NULL  -- their JSON documents, one per line
)
"""
META_TABLE = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
)
"""
SCHEMA = f"""
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
    waiting_until REAL,  -- v3: the server's rate limit holds the stream back until then (wall clock)
    waiting_reason TEXT,
    endpoint_path TEXT,  -- v4: the endpoint path that answered, when the log type has two
    cursor TEXT,  -- v4: JSON position of a stream that is not windowed, owned by its cursor strategy
    UNIQUE (account, log_type)
);
-- Keys lead with the event time: pages arrive oldest first, so inserts land on the B-tree's right
-- edge and a commit writes a handful of pages instead of one random page per key (hash order).
-- No index on seen_until: pruning scans one stream's keys once per window, cheaper than keeping
-- an index up to date on every insert.
CREATE TABLE IF NOT EXISTS dedup (
    stream_id INTEGER NOT NULL,
    event_time INTEGER NOT NULL,
    key TEXT NOT NULL,
    seen_until INTEGER NOT NULL,  -- end of the window that first returned it
    PRIMARY KEY (stream_id, event_time, key)
) WITHOUT ROWID;
{SPOOL_TABLE};
{META_TABLE};
INSERT OR IGNORE INTO meta (key, value) SELECT 'spool_bytes', coalesce(sum(bytes), 0) FROM spool;
INSERT OR IGNORE INTO meta (key, value) SELECT 'spool_last_seq', coalesce(max(first_seq + events - 1), 0) FROM spool;
CREATE TABLE IF NOT EXISTS sinks (
    name TEXT PRIMARY KEY,
    offset INTEGER NOT NULL,
    delivered_total INTEGER NOT NULL DEFAULT 0,
    last_delivery_at REAL,
    last_error TEXT
);
"""  # noqa: S608 - built from the constants above only

#: Columns added since a table was first created: (table, column, declaration), applied to older files.
ADDED_COLUMNS = (
    ("streams", "waiting_until", "REAL"),
    ("streams", "waiting_reason", "TEXT"),
    ("streams", "endpoint_path", "TEXT"),
    ("streams", "cursor", "TEXT"),
)


async def spool_per_event(db: Connection) -> bool:
    """True for a spool as schema 4 and older kept it: one row per event (seq, key, event_time, doc)."""
    columns = {row[1] for row in await (await db.execute("PRAGMA table_info(spool)")).fetchall()}
    return "doc" in columns


async def spool_to_pages(db: Connection) -> None:
    """Schema 4 -> 5: every spooled event becomes a one-event page with the same number, in one
    transaction (a migration cut short leaves the old table as it was, and runs again)."""
    await db.execute("BEGIN IMMEDIATE")
    try:
        row = await (await db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'spool'")).fetchone()
        last_seq = int(row[0]) if row else 0
        await db.execute("ALTER TABLE spool RENAME TO spool_v4")
        await db.execute(SPOOL_TABLE)
        await db.execute(META_TABLE)
        await db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('spool_last_seq', 0)")
        await db.execute(
            "INSERT INTO spool (first_seq, stream_id, events, bytes, keys, times, docs) "
            "SELECT seq, stream_id, 1, length(doc), json_array(key), json_array(event_time), doc FROM spool_v4"
        )
        await db.execute("UPDATE meta SET value = max(value, ?) WHERE key = 'spool_last_seq'", (last_seq,))
        await db.execute("DROP TABLE spool_v4")
        await db.execute("COMMIT")
    except BaseException:
        await db.execute("ROLLBACK")
        raise


async def add_missing_columns(db: Connection) -> None:
    """Bring tables of an older file up to SCHEMA; checks first, so a migration cut short is resumed."""
    for table, column, declaration in ADDED_COLUMNS:
        present = {row[1] for row in await (await db.execute(f"PRAGMA table_info({table})")).fetchall()}
        if column not in present:
            await db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")


class Cursor:
    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()


class Connection:
    """sqlite3 with an async-shaped API (see the module docstring for why it does not use a thread)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        return Cursor(self._conn.execute(sql, params))

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Cursor:
        return Cursor(self._conn.executemany(sql, rows))

    async def executescript(self, script: str) -> None:
        self._conn.executescript(script)

    async def close(self) -> None:
        self._conn.close()


async def connect(database: str | Path, *, uri: bool = False) -> Connection:
    # check_same_thread off: tests may open a store in one thread and use it from another loop.
    return Connection(sqlite3.connect(database, uri=uri, isolation_level=None, check_same_thread=False))


class Database:
    def __init__(self, db: Connection, path: Path) -> None:
        self._db = db
        self.path = path
        self._lock = anyio.Lock()
        # A read-only open (status) of a file an older collector still writes: its spool has a row per event.
        self.spool_per_event = False

    @classmethod
    async def open(cls, path: Path, *, synchronous: str = "normal", read_only: bool = False) -> Self:
        """Open (creating if needed) the state file; any failure is a :class:`StoreError` that says why."""
        if read_only and not path.exists():  # noqa: ASYNC240 - one stat before anything runs
            raise StoreError(f"state file {path} does not exist yet; run the collector first")
        db: Connection | None = None
        try:
            if read_only:
                db = await connect(f"file:{path}?mode=ro", uri=True)
            else:
                prepare_state_file(path)
                db = await connect(path)
            await db.execute("PRAGMA busy_timeout = 10000")
            # 4 MiB holds the hot ends of the spool and the dedup keys; more only costs RSS (bench).
            await db.execute("PRAGMA cache_size = -4096")
            version = (await (await db.execute("PRAGMA user_version")).fetchone() or (0,))[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"state file {path} was written by a newer mimecast-collector (schema "
                    f"{version}); upgrade, or point [state] path at a new file"
                )
            if not read_only:
                # 16 KiB pages hold about ten spooled events each instead of two: a third less CPU per
                # event in commits and checkpoints (bench). Only takes effect when the file is new.
                await db.execute("PRAGMA page_size = 16384")
                await db.execute("PRAGMA journal_mode = WAL")
                await db.execute(f"PRAGMA synchronous = {'FULL' if synchronous == 'full' else 'NORMAL'}")
                if 0 < version < 2:  # dedup keys changed shape; an empty table only risks re-sends
                    await db.execute("DROP TABLE IF EXISTS dedup")
                if await spool_per_event(db):
                    await spool_to_pages(db)
                await db.executescript(SCHEMA)
                await add_missing_columns(db)
                await db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            await (await db.execute("SELECT count(*) FROM streams")).fetchone()
            legacy_spool = read_only and await spool_per_event(db)
        except (sqlite3.Error, OSError, StoreError) as exc:
            if db is not None:
                await db.close()
            if isinstance(exc, StoreError):
                raise
            raise StoreError(describe_failure(path, exc)) from None
        opened = cls(db, path)
        opened.spool_per_event = legacy_spool
        return opened

    async def close(self) -> None:
        with anyio.CancelScope(shield=True):
            await self._db.close()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Connection]:
        async with self._lock:
            try:
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

    @asynccontextmanager
    async def _reading(self) -> AsyncIterator[Connection]:
        """The connection for reads outside a transaction; failures become :class:`StoreError` too."""
        async with self._lock:
            try:
                yield self._db
            except sqlite3.Error as exc:
                raise StoreError(describe_failure(self.path, exc)) from None


# --- the files on disk: private to the collector's user, whatever the umask ---------------------------

PRIVATE_MODE = 0o600
# SQLite creates these beside the database with the database file's own mode (checked under umask 0),
# so a 0600 database gives 0600 side files; ones left by an older version are narrowed here.
SIDE_SUFFIXES = ("-wal", "-shm", "-journal")


def prepare_state_file(path: Path) -> None:
    """Create the state file 0600 before SQLite does (it would honour the umask: 0644 outside systemd),
    and narrow an existing state file, and its side files, that others could read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.close(create_private(path))
    except FileExistsError:
        # By path, not by descriptor: closing a descriptor of a database this process has open
        # elsewhere would drop that connection's POSIX locks.
        narrow_mode(path)
    for suffix in SIDE_SUFFIXES:
        narrow_mode(path.with_name(path.name + suffix))


def create_private(path: Path, *, follow: bool = True) -> int:
    """A read-write descriptor of a new file ``path`` with mode exactly 0600, whatever the umask;
    FileExistsError if it exists."""
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    fd = os.open(path, flags, PRIVATE_MODE)
    try:
        os.fchmod(fd, PRIVATE_MODE)  # a stricter umask (0277) must not leave it unwritable either
    except OSError:
        os.close(fd)
        raise
    return fd


def narrow_mode(path: Path, fd: int | None = None) -> None:
    """An existing file that group or others may read or write becomes 0600, with one warning naming it:
    the state holds page tokens and every spooled event. A missing file is left missing. With ``fd``
    (an open descriptor of ``path``) the descriptor is checked and changed, not the path."""
    try:
        mode = stat.S_IMODE((os.stat(path) if fd is None else os.fstat(fd)).st_mode)
    except FileNotFoundError:
        return
    if mode & 0o077:
        if fd is None:
            os.chmod(path, PRIVATE_MODE)
        else:
            os.fchmod(fd, PRIVATE_MODE)
        get_logger().warning(
            "state_file_mode_tightened", path=str(path), mode_was=f"{mode:04o}", mode=f"{PRIVATE_MODE:04o}"
        )


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
    if "disk i/o error" in lowered:  # what SQLite says when a write fails (EFBIG, EIO, quota, ENOSPC in the WAL)
        return (
            f"cannot write state file {path} ({text}): the disk may be full or failing; free space or "
            "check the device, then start again: nothing committed was lost"
        )
    return f"state file {path}: {text}"
