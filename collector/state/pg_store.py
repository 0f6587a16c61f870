"""PostgreSQL state shared by replicas: the same operations, on the same guarantees, as the SQLite
:class:`~collector.state.store.Store` (one transaction per page; per-sink offsets; spool limits).

Fencing. With ``fencing`` on (the collector; not ``status``, ``reset`` or ``migrate``), every write
that moves a stream's position or a sink's offset first checks, in its own transaction, that this
node still holds that lease at the epoch it was granted (``SELECT ... FOR SHARE``: a takeover's
UPDATE of the lease row waits for a commit that passed the check, and a commit that comes after the
takeover finds the epoch changed). Otherwise the transaction rolls back with :class:`LeaseLost`.
Status-only writes (last error, rate-limit wait) of a stream not held are skipped instead.
"""

from __future__ import annotations

import os
import secrets
import socket
import uuid
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import asyncpg
import orjson

from collector.config.model import StateConfig
from collector.logtypes import SpoolEvent, spool_bytes
from collector.state.base import LeaseLost
from collector.state.leases import Lease, LeaseTable, take_over
from collector.state.pg import Outage, PgDatabase
from collector.state.spool import (
    SLICE_COLUMNS,
    Page,
    PageSlice,
    SpoolRow,
    SpoolUsage,
    decode_page,
    page_tail,
    rows_of,
    take_slices,
    usage_of,
)
from collector.state.store import PageResult, StreamState

if TYPE_CHECKING:
    from collector.state.pg import Conn

_FENCE = "SELECT 1 FROM leases WHERE kind = $1 AND name = $2 AND node = $3 AND epoch = $4 FOR SHARE"
_STREAM_COLUMNS = "id, window_start, window_end, page_token, endpoint_path, cursor"
_USAGE = "SELECT (SELECT min(first_seq) FROM spool), last_seq, bytes FROM spool_head WHERE id = 1"


def default_node() -> str:
    # The random part: containers that share the host's name all run as pid 1.
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"


class PostgresStore(PgDatabase, LeaseTable):
    def __init__(self, pool: asyncpg.Pool, config: StateConfig, outage: Outage, *, wait: bool = True) -> None:
        super().__init__(pool, config, outage, wait=wait)
        self.node = config.node or default_node()
        self.instance = uuid.uuid4().hex
        self.beats = 0
        self.fencing = False
        #: (kind, name) -> epoch of every lease this node holds; kept by the ownership loop.
        self.held: dict[tuple[str, str], int] = {}
        self._stream_names: dict[int, str] = {}

    async def _fence(self, conn: Conn, kind: str, name: str) -> None:
        if not await self._holds(conn, kind, name):
            raise LeaseLost(kind, name)

    async def _holds(self, conn: Conn, kind: str, name: str) -> bool:
        if not self.fencing:
            return True
        epoch = self.held.get((kind, name))
        return epoch is not None and await conn.fetchval(_FENCE, kind, name, self.node, epoch) is not None

    def _stream_name(self, stream_id: int) -> str:
        return self._stream_names.get(stream_id, f"#{stream_id}")

    # --- streams ------------------------------------------------------------------------------------

    async def stream(self, account: str, log_type: str, *, start: int) -> StreamState:
        async def op(conn: Conn) -> Any:
            await conn.execute(
                "INSERT INTO streams (account, log_type, window_start) VALUES ($1, $2, $3) "
                "ON CONFLICT (account, log_type) DO NOTHING",
                account,
                log_type,
                start,
            )
            return await conn.fetchrow(
                f"SELECT {_STREAM_COLUMNS} FROM streams WHERE account = $1 AND log_type = $2",  # noqa: S608
                account,
                log_type,
            )

        row = await self.run(op)
        self._stream_names[row[0]] = f"{account}/{log_type}"
        return StreamState(row[0], account, log_type, row[1], row[2], row[3], endpoint_path=row[4], cursor=row[5])

    async def commit_page(
        self,
        events: Sequence[SpoolEvent],
        next_state: StreamState,
        *,
        seen_until: int,
        prune_before: int | None = None,
        now: float,
    ) -> PageResult:
        stream_id, name = next_state.id, f"{next_state.account}/{next_state.log_type}"
        unique: dict[str, SpoolEvent] = {}
        for event in events:
            unique.setdefault(event.key, event)
        keys = list(unique)
        times = [e.dedup_time for e in unique.values()]

        async def op(conn: Conn) -> int:
            await self._fence(conn, "stream", name)
            # One statement for the whole page: it records the keys and returns those that were new.
            rows = await conn.fetch(
                "INSERT INTO dedup (stream_id, event_time, key, seen_until) "
                "SELECT $1, t, k, $4 FROM unnest($2::bigint[], $3::text[]) AS u(t, k) "
                "ON CONFLICT DO NOTHING RETURNING key",
                stream_id,
                times,
                keys,
                seen_until,
            )
            new_keys = {row[0] for row in rows}
            fresh = [e for key, e in unique.items() if key in new_keys]
            await conn.execute(
                "UPDATE streams SET window_start = $1, window_end = $2, page_token = $3, cursor = $4, "
                "events_total = events_total + $5, last_success_at = $6, last_error = NULL, fatal = false, "
                "written_by = $8, written_epoch = $9 WHERE id = $7",
                next_state.window_start,
                next_state.window_end,
                next_state.page_token,
                next_state.cursor,
                len(fresh),
                now,
                stream_id,
                self.node,
                self.held.get(("stream", name), 0),
            )
            if prune_before is not None:
                await conn.execute(
                    "DELETE FROM dedup WHERE stream_id = $1 AND seen_until < $2", stream_id, prune_before
                )
            if fresh:  # last: the spool head's lock is held from here to COMMIT (see pg.py)
                await _append(conn, stream_id, fresh)
            return len(fresh)

        new = await self.run(op)
        return PageResult(new=new, duplicates=len(events) - new)

    async def save_position(self, state: StreamState) -> None:
        async def op(conn: Conn) -> None:
            await self._fence(conn, "stream", f"{state.account}/{state.log_type}")
            await conn.execute(
                "UPDATE streams SET window_start = $1, window_end = $2, page_token = $3, cursor = $4, "
                "written_by = $6, written_epoch = $7 WHERE id = $5",
                state.window_start,
                state.window_end,
                state.page_token,
                state.cursor,
                state.id,
                self.node,
                self.held.get(("stream", f"{state.account}/{state.log_type}"), 0),
            )

        await self.run(op)

    async def save_endpoint_path(self, stream_id: int, path: str) -> None:
        async def op(conn: Conn) -> None:
            if await self._holds(conn, "stream", self._stream_name(stream_id)):
                await conn.execute("UPDATE streams SET endpoint_path = $1 WHERE id = $2", path, stream_id)

        await self.run(op)

    async def record_error(self, stream_id: int, summary: str, *, fatal: bool, now: float) -> None:
        async def op(conn: Conn) -> None:
            if await self._holds(conn, "stream", self._stream_name(stream_id)):
                await conn.execute(
                    "UPDATE streams SET last_error = $1, last_error_at = $2, fatal = $3 WHERE id = $4",
                    summary,
                    now,
                    fatal,
                    stream_id,
                )

        await self.run(op)

    async def record_waiting(self, account: str, log_type: str, until: float | None, why: str | None) -> None:
        async def op(conn: Conn) -> None:
            if await self._holds(conn, "stream", f"{account}/{log_type}"):
                await conn.execute(
                    "UPDATE streams SET waiting_until = $1, waiting_reason = $2 WHERE account = $3 AND log_type = $4",
                    until,
                    why if until is not None else None,
                    account,
                    log_type,
                )

        await self.run(op)

    async def reset_stream(self, account: str, log_type: str, start: int) -> bool:
        async def op(conn: Conn) -> None:
            await _reset(conn, account, log_type, start)

        await self.run(op)
        return True

    async def reset_owned(self, account: str, log_type: str, start: int, *, force: bool) -> Lease | None:
        """``reset`` on shared state: unless a live node holds the stream (then that lease is returned
        and nothing changes) or ``force``, free its lease with a new epoch (fencing any owner) and
        rewind it, in one transaction, so no owner can commit between the two."""
        name = f"{account}/{log_type}"

        async def op(conn: Conn) -> Lease | None:
            blocker = await take_over(conn, "stream", name, force=force)
            if blocker is None:
                await _reset(conn, account, log_type, start)
            return blocker

        return await self.run(op)

    async def streams(self) -> list[dict[str, Any]]:
        async def op(conn: Conn) -> list[asyncpg.Record]:
            return await conn.fetch(
                "SELECT s.account, s.log_type, s.window_start, s.window_end, s.page_token IS NOT NULL AS paging, "
                "s.events_total, s.last_success_at, s.last_error, s.last_error_at, s.fatal, s.waiting_until, "
                "s.waiting_reason, s.cursor FROM streams s ORDER BY s.account, s.log_type"
            )

        return [dict(row) for row in await self.run(op, write=False)]

    # --- spool and sinks ----------------------------------------------------------------------------

    async def sink_offset(self, name: str) -> int:
        async def op(conn: Conn) -> int:
            await conn.execute(
                "INSERT INTO sinks (name, offset_seq) VALUES ($1, 0) ON CONFLICT (name) DO NOTHING", name
            )
            return int(await conn.fetchval("SELECT offset_seq FROM sinks WHERE name = $1", name))

        return await self.run(op)

    async def read_spool(self, after: int, limit: int) -> list[SpoolRow]:
        return rows_of(await self.read_pages(after, limit))

    async def read_pages(self, after: int, limit: int) -> list[PageSlice]:
        async def op(conn: Conn) -> list[PageSlice]:
            lowest = await conn.fetchval("SELECT min(first_seq) FROM spool")
            if lowest is None:
                return []
            start = max(after, lowest - 1)  # a sink behind what drop_oldest removed reads what is left
            # Numbers are contiguous, so the pages holding start+1 .. start+limit are exactly these.
            rows = await conn.fetch(
                f"SELECT {SLICE_COLUMNS}, t.account, t.log_type "  # noqa: S608
                "FROM spool s JOIN streams t ON t.id = s.stream_id "
                "WHERE s.first_seq >= coalesce((SELECT max(first_seq) FROM spool WHERE first_seq <= $1), 0) "
                "AND s.first_seq <= $2 ORDER BY s.first_seq",
                start + 1,
                start + limit,
            )
            return take_slices(rows, start, limit)

        return await self.run(op, write=False)

    async def ack(self, name: str, offset: int, delivered: int, *, now: float, sinks: Iterable[str]) -> None:
        names = list(sinks)

        async def op(conn: Conn) -> None:
            await self._fence(conn, "sink", name)
            await conn.execute(
                "UPDATE sinks SET offset_seq = $1, delivered_total = delivered_total + $2, last_delivery_at = $3, "
                "last_error = NULL, written_by = $5, written_epoch = $6 WHERE name = $4",
                offset,
                delivered,
                now,
                name,
                self.node,
                self.held.get(("sink", name), 0),
            )
            # Under the head's lock before reading the others' offsets: two acks at once each see the
            # other's new offset, so neither leaves delivered events behind.
            await _lock_head(conn)
            # The sinks of this replica's config, and any another replica runs now (configs differ for
            # a while during a rolling change): events are deleted only once all of those have them.
            row = await conn.fetchrow(
                "SELECT min(offset_seq), count(*) FILTER (WHERE name = ANY($1::text[])) FROM sinks "
                "WHERE name = ANY($1::text[]) OR name IN (SELECT name FROM leases WHERE kind = 'sink' "
                "AND node IS NOT NULL AND renewed_at >= now() - make_interval(secs => lease_secs))",
                names,
            )
            if row is not None and row[1] == len(names) and row[0] is not None:
                await _delete_through(conn, int(row[0]))

        await self.run(op)

    async def drop_oldest(self, *, max_events: int, max_bytes: int) -> tuple[int, int]:
        async def op(conn: Conn) -> tuple[int, int]:
            await _lock_head(conn)  # one deleter at a time
            usage = await _usage(conn)
            excess_events = usage.events - max_events if max_events else 0
            excess_bytes = usage.bytes - max_bytes if max_bytes else 0
            if excess_events <= 0 and excess_bytes <= 0:
                return 0, 0
            cut, freed = usage.first_seq - 1, 0
            async for row in conn.cursor("SELECT first_seq, events, bytes FROM spool ORDER BY first_seq", prefetch=64):
                first, events, size = int(row[0]), int(row[1]), int(row[2])
                if cut + events - usage.first_seq + 1 <= excess_events or freed + size <= excess_bytes:
                    cut, freed = first + events - 1, freed + size  # all of this page has to go
                    if cut - usage.first_seq + 1 >= excess_events and freed >= excess_bytes:
                        break
                    continue
                page = await _page(conn, first)
                for i, doc in enumerate(page.docs):  # only part of it: event by event
                    if cut - usage.first_seq + 1 >= excess_events and freed >= excess_bytes:
                        break
                    cut, freed = first + i, freed + len(doc)
                break
            await _delete_through(conn, cut)
            return usage.first_seq, cut

        return await self.run(op)

    async def usage(self) -> SpoolUsage:
        async def op(conn: Conn) -> SpoolUsage:
            return await _usage(conn)

        return await self.run(op, write=False)

    async def record_sink_error(self, name: str, summary: str) -> None:
        async def op(conn: Conn) -> None:
            if await self._holds(conn, "sink", name):
                await conn.execute("UPDATE sinks SET last_error = $1 WHERE name = $2", summary, name)

        await self.run(op)

    async def sinks(self) -> list[dict[str, Any]]:
        async def op(conn: Conn) -> tuple[list[asyncpg.Record], SpoolUsage]:
            rows = await conn.fetch(
                "SELECT name, offset_seq AS offset, delivered_total, last_delivery_at, last_error "
                "FROM sinks ORDER BY name"
            )
            return rows, await _usage(conn)

        rows, usage = await self.run(op, write=False)
        return [{**dict(row), "backlog": usage.after(row["offset"])} for row in rows]

    async def backlog(self, after: int) -> int:
        return (await self.usage()).after(after)


async def _reset(conn: Conn, account: str, log_type: str, start: int) -> None:
    await conn.execute(
        "INSERT INTO streams (account, log_type, window_start) VALUES ($1, $2, $3) "
        "ON CONFLICT (account, log_type) DO UPDATE SET window_start = excluded.window_start, "
        "window_end = NULL, page_token = NULL, cursor = NULL, last_error = NULL, fatal = false, "
        "waiting_until = NULL, waiting_reason = NULL",
        account,
        log_type,
        start,
    )


async def _usage(conn: Conn) -> SpoolUsage:
    return usage_of(*(await conn.fetchrow(_USAGE) or (None, 0, 0)))


async def _lock_head(conn: Conn) -> None:
    """The spool head's row lock, to COMMIT: deleters (acks of sinks held by different replicas,
    drop_oldest) take turns, so none counts from what another already cut."""
    await conn.execute("SELECT 1 FROM spool_head WHERE id = 1 FOR UPDATE")


async def _page(conn: Conn, first_seq: int) -> Page:
    row = await conn.fetchrow("SELECT first_seq, keys, times, docs FROM spool WHERE first_seq = $1", first_seq)
    assert row is not None  # the caller saw it under the spool head's lock
    return decode_page(tuple(row))


async def _append(conn: Conn, stream_id: int, fresh: list[SpoolEvent]) -> None:
    docs = [spool_bytes(e) for e in fresh]
    size = sum(map(len, docs))
    last = await conn.fetchval(
        "UPDATE spool_head SET last_seq = last_seq + $1, bytes = bytes + $2 WHERE id = 1 RETURNING last_seq",
        len(docs),
        size,
    )
    await conn.execute(
        "INSERT INTO spool (first_seq, stream_id, events, bytes, keys, times, docs) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7)",
        last - len(docs) + 1,
        stream_id,
        len(docs),
        size,
        orjson.dumps([e.key for e in fresh]),
        orjson.dumps([e.time for e in fresh]),
        b"\n".join(docs),
    )


async def _delete_through(conn: Conn, seq: int) -> None:
    """Delete spooled events up to ``seq`` (whole pages below it, the first part of the page holding
    it), keeping the byte count in step. The caller holds the head's row lock (:func:`_lock_head`)."""
    row = await conn.fetchrow(
        "SELECT first_seq, events, bytes FROM spool WHERE first_seq <= $1 ORDER BY first_seq DESC LIMIT 1", seq
    )
    if row is None:
        return
    holding, events, size = int(row[0]), int(row[1]), int(row[2])
    freed = int(await conn.fetchval("SELECT coalesce(sum(bytes), 0) FROM spool WHERE first_seq < $1", holding))
    await conn.execute("DELETE FROM spool WHERE first_seq < $1", holding)
    if holding + events - 1 <= seq:
        await conn.execute("DELETE FROM spool WHERE first_seq = $1", holding)
        freed += size
    else:  # cut it to the events still owed: the page now starts at seq + 1
        tail = page_tail(await _page(conn, holding), seq + 1 - holding)
        freed += size - tail[1]
        await conn.execute(
            "UPDATE spool SET first_seq = $1, events = $2, bytes = $3, keys = $4, times = $5, docs = $6 "
            "WHERE first_seq = $7",
            seq + 1,
            *tail,
            holding,
        )
    if freed:
        await conn.execute("UPDATE spool_head SET bytes = bytes - $1 WHERE id = 1", freed)
