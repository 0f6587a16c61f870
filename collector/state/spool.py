"""The spool and the sinks' offsets: what each sink has delivered, and what may be deleted.

Events are numbered one by one (``seq``; sink offsets are event numbers) but stored one row per
committed page: its events' keys, times and JSON documents side by side in three blobs. A page is
written once, read back a slice at a time and deleted whole, instead of a row, an index entry and a
delete per event (bench/throughput.py: a third of the collector's CPU was SQLite, mostly that).

Pages are appended by :meth:`collector.state.store.Store.commit_page` and removed from the low end only
(once every sink has them, or by the ``drop_oldest`` policy); the page that holds the lowest offset
is cut to its undelivered events, so sequence numbers in the spool stay contiguous: counts are
subtractions, never scans.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

from collector.state.db import Connection, Database


class SpoolRow(NamedTuple):  # a tuple: thousands are built per second, dataclasses cost 3x more
    seq: int
    key: str
    event_time: int
    doc: bytes
    account: str = ""
    log_type: str = ""


class Page(NamedTuple):
    """One spooled page, decoded: events first_seq .. first_seq + len(docs) - 1."""

    first_seq: int
    keys: list[str]
    times: list[int]
    docs: list[bytes]


_PAGE_COLUMNS = "first_seq, keys, times, docs"


def decode_page(row: Sequence[Any]) -> Page:
    # JSON never holds a raw newline (orjson escapes them), so the documents split on it safely.
    return Page(int(row[0]), orjson.loads(row[1]), orjson.loads(row[2]), bytes(row[3]).split(b"\n"))


class PageSlice(NamedTuple):
    """Events ``first_seq`` .. ``last_seq`` of one spooled page, with their documents as stored: one
    blob, joined by newlines. A sink that writes JSON lines takes the blob as it is; keys and times are
    decoded only for a sink that needs events one by one (:meth:`rows`)."""

    first_seq: int
    events: int
    docs: bytes  # the slice's JSON documents joined by b"\n" (no trailing newline)
    account: str
    log_type: str
    keys: bytes | str  # the whole page's keys and times, as stored (JSON arrays) ...
    times: bytes | str
    skip: int  # ... of which this slice starts at index ``skip``

    @property
    def last_seq(self) -> int:
        return self.first_seq + self.events - 1

    def rows(self) -> list[SpoolRow]:
        keys, times, docs = orjson.loads(self.keys), orjson.loads(self.times), self.docs.split(b"\n")
        seq, skip, account, log_type = self.first_seq, self.skip, self.account, self.log_type
        return [
            SpoolRow(seq + i, keys[skip + i], times[skip + i], docs[i], account, log_type) for i in range(self.events)
        ]

    def through(self, seq: int) -> PageSlice | None:
        """The part of this slice up to event ``seq``; None if it starts after it."""
        if seq >= self.last_seq:
            return self
        if seq < self.first_seq:
            return None
        keep = seq - self.first_seq + 1
        return self._replace(events=keep, docs=b"\n".join(self.docs.split(b"\n", keep)[:keep]))


#: The spool columns :func:`slice_page` reads, in its order (then the stream's account and log type).
SLICE_COLUMNS = "s.first_seq, s.events, s.keys, s.times, s.docs"


def slice_page(row: Sequence[Any], after: int, limit: int) -> PageSlice | None:
    """The events of one spool row (SLICE_COLUMNS, account, log_type) with seq > ``after``, at most
    ``limit`` of them; None if there are none. Only a page cut at either end has its documents split."""
    first, events = int(row[0]), int(row[1])
    skip = max(0, after + 1 - first)
    stop = min(events, skip + limit)
    if stop <= skip:
        return None
    docs = bytes(row[4])
    if skip or stop < events:
        # JSON never holds a raw newline (orjson escapes them), so the documents split on it safely.
        docs = b"\n".join(docs.split(b"\n")[skip:stop])
    return PageSlice(first + skip, stop - skip, docs, row[5], row[6], row[2], row[3], skip)


def take_slices(rows: Iterable[Any], after: int, limit: int) -> list[PageSlice]:
    """Slices of spool rows (oldest first) after ``after``, up to ``limit`` events in all."""
    out: list[PageSlice] = []
    left = limit
    for row in rows:
        if left <= 0:
            break
        piece = slice_page(row, after, left)
        if piece is not None:
            out.append(piece)
            left -= piece.events
    return out


def rows_of(slices: Iterable[PageSlice]) -> list[SpoolRow]:
    """The events of ``slices`` one by one, oldest first."""
    return [row for piece in slices for row in piece.rows()]


def page_tail(page: Page, keep: int) -> tuple[int, int, bytes, bytes, bytes]:
    """The page from its event ``keep`` on, as stored: (events, bytes, keys, times, docs)."""
    docs = page.docs[keep:]
    return (
        len(docs),
        sum(map(len, docs)),
        orjson.dumps(page.keys[keep:]),
        orjson.dumps(page.times[keep:]),
        b"\n".join(docs),
    )


async def append_page(db: Connection, stream_id: int, keys: list[str], times: list[int], docs: list[bytes]) -> None:
    """Spool one page's new events inside the caller's transaction."""
    if not docs:
        return
    size = sum(map(len, docs))
    await db.execute(
        "INSERT INTO spool (first_seq, stream_id, events, bytes, keys, times, docs) "
        "VALUES ((SELECT value + 1 FROM meta WHERE key = 'spool_last_seq'), ?, ?, ?, ?, ?, ?)",
        (stream_id, len(docs), size, orjson.dumps(keys), orjson.dumps(times), b"\n".join(docs)),
    )
    await db.execute("UPDATE meta SET value = value + ? WHERE key = 'spool_last_seq'", (len(docs),))
    await db.execute("UPDATE meta SET value = value + ? WHERE key = 'spool_bytes'", (size,))


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
        """Up to ``limit`` events with seq > ``after``, oldest first."""
        return rows_of(await self.read_pages(after, limit))

    async def read_pages(self, after: int, limit: int) -> list[PageSlice]:
        """Up to ``limit`` events with seq > ``after``, oldest first, as slices of their pages."""
        async with self._reading() as db:
            lowest = (await (await db.execute("SELECT min(first_seq) FROM spool")).fetchone())[0]
            if lowest is None:
                return []
            start = max(after, int(lowest) - 1)  # a sink behind what drop_oldest removed reads what is left
            # Numbers are contiguous, so the pages holding start+1 .. start+limit are exactly these.
            cursor = await db.execute(
                f"SELECT {SLICE_COLUMNS}, t.account, t.log_type FROM spool s JOIN streams t ON t.id = s.stream_id "  # noqa: S608
                "WHERE s.first_seq >= coalesce((SELECT max(first_seq) FROM spool WHERE first_seq <= ?), 0) "
                "AND s.first_seq <= ? ORDER BY s.first_seq",
                (start + 1, start + limit),
            )
            return take_slices(await cursor.fetchall(), start, limit)

    async def ack(self, name: str, offset: int, delivered: int, *, now: float, sinks: Iterable[str]) -> None:
        """Save a sink's offset; in the same transaction, drop events every configured sink has."""
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
                await _delete_through(db, int(row[0]))

    async def drop_oldest(self, *, max_events: int, max_bytes: int) -> tuple[int, int]:
        """Delete the oldest events until the spool fits both limits (0 = no limit): (first, last) dropped.

        Only for ``when_full = "drop_oldest"``; (0, 0) when nothing had to go.
        """
        async with self._transaction() as db:
            usage = await _usage(db)
            excess_events = usage.events - max_events if max_events else 0
            excess_bytes = usage.bytes - max_bytes if max_bytes else 0
            if excess_events <= 0 and excess_bytes <= 0:
                return 0, 0
            cut, freed = usage.first_seq - 1, 0
            pages = await db.execute("SELECT first_seq, events, bytes FROM spool ORDER BY first_seq")
            while cut - usage.first_seq + 1 < excess_events or freed < excess_bytes:
                row = await pages.fetchone()
                if row is None:
                    break
                first, events, size = int(row[0]), int(row[1]), int(row[2])
                if cut + events - usage.first_seq + 1 <= excess_events or freed + size <= excess_bytes:
                    cut, freed = first + events - 1, freed + size  # all of this page has to go
                    continue
                page = await _read_page(db, first)  # only part of it: event by event
                for i, doc in enumerate(page.docs):
                    if cut - usage.first_seq + 1 >= excess_events and freed >= excess_bytes:
                        break
                    cut, freed = first + i, freed + len(doc)
                break
            await _delete_through(db, cut)
        return usage.first_seq, cut

    async def usage(self) -> SpoolUsage:
        async with self._reading() as db:
            return await _usage(db, per_event=self.spool_per_event)

    async def record_sink_error(self, name: str, summary: str) -> None:
        async with self._transaction() as db:
            await db.execute("UPDATE sinks SET last_error=? WHERE name=?", (summary, name))

    async def sinks(self) -> list[dict[str, Any]]:
        async with self._reading() as db:
            cursor = await db.execute(
                "SELECT name, offset, delivered_total, last_delivery_at, last_error FROM sinks ORDER BY name"
            )
            rows = await cursor.fetchall()
            usage = await _usage(db, per_event=self.spool_per_event)
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
        """Events with seq > offset (the spool is contiguous, so a subtraction)."""
        return max(0, self.last_seq - max(offset, self.first_seq - 1))


_USAGE = (
    "SELECT (SELECT min(first_seq) FROM spool), (SELECT value FROM meta WHERE key = 'spool_last_seq'), "
    "(SELECT value FROM meta WHERE key = 'spool_bytes')"
)
_USAGE_PER_EVENT = (  # schema 4 and older, for a read-only status beside an older collector
    "SELECT (SELECT min(seq) FROM spool), (SELECT seq FROM sqlite_sequence WHERE name = 'spool'), "
    "(SELECT value FROM meta WHERE key = 'spool_bytes')"
)


async def _usage(db: Connection, *, per_event: bool = False) -> SpoolUsage:
    row = await (await db.execute(_USAGE_PER_EVENT if per_event else _USAGE)).fetchone()
    assert row is not None
    return usage_of(row[0], row[1], row[2])


def usage_of(first_seq: int | None, last_seq: int | None, size: int | None) -> SpoolUsage:
    """The usage of a spool whose lowest page starts at ``first_seq`` (None: empty)."""
    last = int(last_seq or 0)
    if first_seq is None:
        return SpoolUsage(0, 0, last + 1, last)
    return SpoolUsage(last - int(first_seq) + 1, int(size or 0), int(first_seq), last)


async def _read_page(db: Connection, first_seq: int) -> Page:
    row = await (await db.execute(f"SELECT {_PAGE_COLUMNS} FROM spool WHERE first_seq = ?", (first_seq,))).fetchone()  # noqa: S608
    assert row is not None
    return decode_page(row)


async def _delete_through(db: Connection, seq: int) -> None:
    """Delete spooled events up to ``seq``, keeping the byte count in step (same transaction): whole
    pages below it, and the first part of the page that holds it."""
    row = await (
        await db.execute(
            "SELECT first_seq, events, bytes FROM spool WHERE first_seq <= ? ORDER BY first_seq DESC LIMIT 1", (seq,)
        )
    ).fetchone()
    if row is None:
        return  # nothing spooled at or below seq
    holding, events, size = int(row[0]), int(row[1]), int(row[2])
    below = await (
        await db.execute("SELECT coalesce(sum(bytes), 0) FROM spool WHERE first_seq < ?", (holding,))
    ).fetchone()
    freed = int(below[0]) if below else 0
    await db.execute("DELETE FROM spool WHERE first_seq < ?", (holding,))
    if holding + events - 1 <= seq:
        await db.execute("DELETE FROM spool WHERE first_seq = ?", (holding,))
        freed += size
    else:  # cut it to the events still owed: the page now starts at seq + 1
        tail = page_tail(await _read_page(db, holding), seq + 1 - holding)
        freed += size - tail[1]
        await db.execute(
            "UPDATE spool SET first_seq = ?, events = ?, bytes = ?, keys = ?, times = ?, docs = ? WHERE first_seq = ?",
            (seq + 1, *tail, holding),
        )
    if freed:
        await db.execute("UPDATE meta SET value = value - ? WHERE key = 'spool_bytes'", (freed,))
