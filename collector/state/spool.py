"""The spool and the sinks' offsets: what each sink has delivered, and what may be deleted.

Rows are appended by :meth:`collector.state.store.Store.commit_page` and deleted from the low end only
(once every sink has them, or by the ``drop_oldest`` policy), so sequence numbers in the spool are
contiguous: counts are subtractions, never scans.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

from collector.state.db import Connection, Database


class SpoolRow(NamedTuple):  # a tuple: thousands are built per second, dataclasses cost 3x more
    seq: int
    key: str
    event_time: int
    doc: bytes
    account: str = ""
    log_type: str = ""


class Spool(Database):
    # --- spool and sinks --------------------------------------------------------------------------

    async def sink_offset(self, name: str) -> int:
        """The sink's saved offset; a new sink starts with everything still spooled."""
        async with self._transaction() as db:
            await db.execute("INSERT INTO sinks (name, offset) VALUES (?, 0) ON CONFLICT (name) DO NOTHING", (name,))
            row = await (await db.execute("SELECT offset FROM sinks WHERE name=?", (name,))).fetchone()
        assert row is not None
        return int(row[0])

    async def read_spool(self, after: int, limit: int) -> list[SpoolRow]:
        async with self._reading() as db:
            cursor = await db.execute(
                "SELECT s.seq, s.key, s.event_time, s.doc, t.account, t.log_type FROM spool s "
                "JOIN streams t ON t.id = s.stream_id WHERE s.seq > ? ORDER BY s.seq LIMIT ?",
                (after, limit),
            )
            rows = await cursor.fetchall()
        return [SpoolRow(r[0], r[1], r[2], bytes(r[3]), r[4], r[5]) for r in rows]

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
                await _delete_through(db, row[0])

    async def drop_oldest(self, *, max_events: int, max_bytes: int) -> tuple[int, int]:
        """Delete the oldest rows until the spool fits both limits (0 = no limit): (first, last) dropped.

        Only for ``when_full = "drop_oldest"``; (0, 0) when nothing had to go.
        """
        async with self._transaction() as db:
            usage = await _usage(db)
            excess_events = usage.events - max_events if max_events else 0
            excess_bytes = usage.bytes - max_bytes if max_bytes else 0
            if excess_events <= 0 and excess_bytes <= 0:
                return 0, 0
            cut, freed = usage.first_seq - 1, 0
            while cut - usage.first_seq + 1 < excess_events or freed < excess_bytes:
                chunk = await (
                    await db.execute("SELECT seq, length(doc) FROM spool WHERE seq > ? ORDER BY seq LIMIT 500", (cut,))
                ).fetchall()
                for seq, size in chunk:
                    if cut - usage.first_seq + 1 >= excess_events and freed >= excess_bytes:
                        break
                    cut, freed = seq, freed + size
                if not chunk:
                    break
            await _delete_through(db, cut)
        return usage.first_seq, cut

    async def usage(self) -> SpoolUsage:
        async with self._reading() as db:
            return await _usage(db)

    async def record_sink_error(self, name: str, summary: str) -> None:
        async with self._transaction() as db:
            await db.execute("UPDATE sinks SET last_error=? WHERE name=?", (summary, name))

    async def sinks(self) -> list[dict[str, Any]]:
        async with self._reading() as db:
            cursor = await db.execute(
                "SELECT name, offset, delivered_total, last_delivery_at, last_error FROM sinks ORDER BY name"
            )
            rows = await cursor.fetchall()
            usage = await _usage(db)
        names = ("name", "offset", "delivered_total", "last_delivery_at", "last_error")
        return [{**dict(zip(names, row, strict=True)), "backlog": usage.after(row[1])} for row in rows]

    async def backlog(self, after: int) -> int:
        """Events a sink at offset ``after`` has still to deliver."""
        return (await self.usage()).after(after)


@dataclass(frozen=True)
class SpoolUsage:
    events: int
    bytes: int
    first_seq: int  # lowest seq still spooled (last_seq + 1 when empty)
    last_seq: int  # highest seq ever handed out

    def after(self, offset: int) -> int:
        """Rows with seq > offset (the spool is contiguous, so a subtraction)."""
        return max(0, self.last_seq - max(offset, self.first_seq - 1))


async def _usage(db: Connection) -> SpoolUsage:
    row = await (
        await db.execute(
            "SELECT (SELECT min(seq) FROM spool), (SELECT max(seq) FROM spool), "
            "(SELECT seq FROM sqlite_sequence WHERE name = 'spool'), "
            "(SELECT value FROM meta WHERE key = 'spool_bytes')"
        )
    ).fetchone()
    assert row is not None
    last = int(row[2] or 0)
    if row[0] is None:
        return SpoolUsage(0, 0, last + 1, last)
    return SpoolUsage(int(row[1]) - int(row[0]) + 1, int(row[3] or 0), int(row[0]), last)


async def _delete_through(db: Connection, seq: int) -> None:
    """Delete spooled rows up to ``seq``, keeping the byte count in step (same transaction)."""
    row = await (await db.execute("SELECT coalesce(sum(length(doc)), 0) FROM spool WHERE seq <= ?", (seq,))).fetchone()
    freed = int(row[0]) if row else 0
    if freed:
        await db.execute("DELETE FROM spool WHERE seq <= ?", (seq,))
        await db.execute("UPDATE meta SET value = value - ? WHERE key = 'spool_bytes'", (freed,))
