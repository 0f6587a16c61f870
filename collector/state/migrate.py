"""``migrate``: carry a SQLite state file over into an empty PostgreSQL schema, in one transaction.

Everything that makes a restart lose and repeat nothing comes along: each stream's position (window,
page token, cursor, endpoint path, counters), its dedup keys, the undelivered spool with its event
numbers, and each sink's offset. Stream ids are kept, so spool pages and dedup keys still point at
their streams. The file must be at the current schema (the collector that wrote it was this version,
or has opened it once), and the schema must hold no state yet: merging two states is not a copy.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

from collector.config.model import StateConfig
from collector.state.db import SCHEMA_VERSION, StoreError
from collector.state.pg_store import PostgresStore

if TYPE_CHECKING:
    from collector.state.pg import Conn

STREAM_COLUMNS = (
    "id", "account", "log_type", "window_start", "window_end", "page_token", "events_total", "last_success_at",
    "last_error", "last_error_at", "fatal", "waiting_until", "waiting_reason", "endpoint_path", "cursor",
)  # fmt: skip
SINK_COLUMNS = ("name", "offset", "delivered_total", "last_delivery_at", "last_error")
PG_SINK_COLUMNS = ["name", "offset_seq", "delivered_total", "last_delivery_at", "last_error"]
SPOOL_COLUMNS = ["first_seq", "stream_id", "events", "bytes", "keys", "times", "docs"]
COPY_BATCH = 10_000


def _read_file(path: Path) -> sqlite3.Connection:
    if not path.is_file():
        raise StoreError(f"--from {path}: no such state file")
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        version = db.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.Error as exc:
        raise StoreError(f"--from {path}: cannot read it as a state file ({exc})") from None
    if version != SCHEMA_VERSION:
        db.close()
        raise StoreError(
            f"--from {path}: state file schema {version}, this version writes {SCHEMA_VERSION}; run this "
            "version of the collector on it once (then stop it) so the file is brought up to date, and migrate"
        )
    return db


async def migrate(config: StateConfig, source: Path) -> dict[str, int]:
    """Copy ``source`` into the configured PostgreSQL schema; what was copied, counted."""
    file = _read_file(source)
    store = await PostgresStore.connect(config, wait=False)
    try:
        counts: dict[str, int] = {}

        async def copy(conn: Conn) -> None:
            for table in ("streams", "spool", "sinks", "dedup"):
                if await conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM {table})"):  # noqa: S608 - constant names
                    raise StoreError(
                        f"schema {config.schema} already holds state ({table} is not empty); migrate only into "
                        "a new schema (set [state] schema to an unused name) or drop this one first"
                    )
            streams = [
                (*row[:10], bool(row[10]), *row[11:])
                for row in file.execute(f"SELECT {', '.join(STREAM_COLUMNS)} FROM streams")  # noqa: S608
            ]
            await conn.copy_records_to_table("streams", records=streams, columns=list(STREAM_COLUMNS))
            await conn.execute(
                "SELECT setval(pg_get_serial_sequence('streams', 'id'), coalesce(max(id), 0) + 1, false) FROM streams"
            )
            counts["streams"] = len(streams)
            counts["dedup_keys"] = 0
            cursor = file.execute("SELECT stream_id, event_time, key, seen_until FROM dedup")
            while batch := cursor.fetchmany(COPY_BATCH):
                await conn.copy_records_to_table(
                    "dedup", records=batch, columns=["stream_id", "event_time", "key", "seen_until"]
                )
                counts["dedup_keys"] += len(batch)
            counts["spooled_events"] = 0
            cursor = file.execute(f"SELECT {', '.join(SPOOL_COLUMNS)} FROM spool")  # noqa: S608
            while batch := cursor.fetchmany(100):
                records = [(r[0], r[1], r[2], r[3], bytes(r[4]), bytes(r[5]), bytes(r[6])) for r in batch]
                await conn.copy_records_to_table(
                    "spool",
                    records=records,
                    columns=SPOOL_COLUMNS,
                )
                counts["spooled_events"] += sum(r[2] for r in batch)
            meta = dict(file.execute("SELECT key, value FROM meta").fetchall())
            await conn.execute(
                "UPDATE spool_head SET last_seq = $1, bytes = $2 WHERE id = 1",
                int(meta.get("spool_last_seq", 0)),
                int(meta.get("spool_bytes", 0)),
            )
            sinks = file.execute(f"SELECT {', '.join(SINK_COLUMNS)} FROM sinks").fetchall()  # noqa: S608
            await conn.copy_records_to_table(
                "sinks",
                records=sinks,
                columns=PG_SINK_COLUMNS,
            )
            counts["sinks"] = len(sinks)

        await store.run(copy)
        return counts
    finally:
        file.close()
        await store.close()
