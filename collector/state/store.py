"""SQLite state: stream positions, dedup keys, the event spool and per-sink offsets, in one file.

The guarantee the whole collector rests on: :meth:`Store.commit_page` writes a page's new events
and the stream's next position in ONE transaction, so after a crash both or neither are there.
The spool and sink offsets live in :mod:`collector.state.spool`, the connection in :mod:`collector.state.db`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from collector.logtypes import SpoolEvent, spool_bytes
from collector.state.db import describe_failure
from collector.state.spool import Spool, SpoolRow, append_page

__all__ = ["PageResult", "SpoolRow", "Store", "StreamState", "describe_failure"]
_ROWS_PER_INSERT = 500  # well under SQLite's limit of 32,766 bound parameters per statement


@dataclass(frozen=True)
class StreamState:
    id: int
    account: str
    log_type: str
    window_start: int  # everything before this is collected
    window_end: int | None  # end of the window being paged, None between windows
    page_token: str | None  # token for the next page of the current window
    endpoint_path: str | None = None  # the path that answered last, for a log type with two
    # The position of a stream that is not windowed (SIEM token, SIEM batch files): JSON text only its
    # cursor strategy reads. For those, window_start is the newest event time committed (for status).
    cursor: str | None = None

    def next_page(self, window_end: int, token: str) -> StreamState:
        return replace(self, window_end=window_end, page_token=token)

    def window_done(self, window_end: int) -> StreamState:
        return replace(self, window_start=window_end, window_end=None, page_token=None)

    def restart_window(self) -> StreamState:
        return replace(self, page_token=None)

    def moved_to(self, cursor: str | None, *, newest: int | None = None) -> StreamState:
        """A non-windowed stream's next position; ``newest`` (an event time) moves window_start forward."""
        start = self.window_start if newest is None else max(self.window_start, newest)
        return replace(self, cursor=cursor, window_start=start)


@dataclass(frozen=True)
class PageResult:
    new: int
    duplicates: int


class Store(Spool):
    """Stream positions and dedup keys, plus (inherited) the spool and the sinks' offsets."""

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
                    "SELECT id, window_start, window_end, page_token, endpoint_path, cursor FROM streams "
                    "WHERE account=? AND log_type=?",
                    (account, log_type),
                )
            ).fetchone()
        assert row is not None
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
        """Spool the events not seen before and save ``next_state`` (window, page token and cursor,
        whatever the stream's cursor kind): one transaction. Every cursor kind commits through here."""
        stream_id = next_state.id
        unique: dict[str, SpoolEvent] = {}
        for event in events:
            unique.setdefault(event.key, event)
        async with self._transaction() as db:
            # One statement per chunk both records the keys and says which were new: RETURNING
            # yields only the rows DO NOTHING did not skip. A key seen again keeps its first
            # seen_until; the overlap it could come back through is shorter than the retention.
            new_keys: set[str] = set()
            candidates = list(unique.values())
            for i in range(0, len(candidates), _ROWS_PER_INSERT):
                chunk = candidates[i : i + _ROWS_PER_INSERT]
                rows = ",".join([f"({int(stream_id)}, ?, ?, {int(seen_until)})"] * len(chunk))
                cursor = await db.execute(
                    f"INSERT INTO dedup (stream_id, event_time, key, seen_until) VALUES {rows} "  # noqa: S608
                    "ON CONFLICT DO NOTHING RETURNING key",
                    [value for e in chunk for value in (e.dedup_time, e.key)],
                )
                new_keys.update(row[0] for row in await cursor.fetchall())
            fresh = [e for key, e in unique.items() if key in new_keys]
            await append_page(
                db, stream_id, [e.key for e in fresh], [e.time for e in fresh], [spool_bytes(e) for e in fresh]
            )
            await db.execute(
                "UPDATE streams SET window_start=?, window_end=?, page_token=?, cursor=?, events_total=events_total+?, "
                "last_success_at=?, last_error=NULL, fatal=0 WHERE id=?",
                (
                    next_state.window_start,
                    next_state.window_end,
                    next_state.page_token,
                    next_state.cursor,
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
                "UPDATE streams SET window_start=?, window_end=?, page_token=?, cursor=? WHERE id=?",
                (state.window_start, state.window_end, state.page_token, state.cursor, state.id),
            )

    async def save_endpoint_path(self, stream_id: int, path: str) -> None:
        """Remember which of a log type's two paths this account's API answers on, across restarts."""
        async with self._transaction() as db:
            await db.execute("UPDATE streams SET endpoint_path=? WHERE id=?", (path, stream_id))

    async def record_error(self, stream_id: int, summary: str, *, fatal: bool, now: float) -> None:
        async with self._transaction() as db:
            await db.execute(
                "UPDATE streams SET last_error=?, last_error_at=?, fatal=? WHERE id=?",
                (summary, now, int(fatal), stream_id),
            )

    async def record_waiting(self, account: str, log_type: str, until: float | None, why: str | None) -> None:
        """The server's rate limit holds the stream back until ``until`` (wall clock); None: no longer."""
        async with self._transaction() as db:
            await db.execute(
                "UPDATE streams SET waiting_until=?, waiting_reason=? WHERE account=? AND log_type=?",
                (until, why if until is not None else None, account, log_type),
            )

    async def reset_stream(self, account: str, log_type: str, start: int) -> bool:
        """Rewind a stream to ``start`` (any cursor kind: its cursor is cleared, so it begins again at
        ``start``); dedup keys stay, so a short rewind re-sends nothing."""
        async with self._transaction() as db:
            cursor = await db.execute(
                "UPDATE streams SET window_start=?, window_end=NULL, page_token=NULL, cursor=NULL, last_error=NULL, "
                "fatal=0, "
                "waiting_until=NULL, waiting_reason=NULL WHERE account=? AND log_type=?",
                (start, account, log_type),
            )
            if cursor.rowcount == 0:
                await db.execute(
                    "INSERT INTO streams (account, log_type, window_start) VALUES (?, ?, ?)",
                    (account, log_type, start),
                )
        return True

    async def owners(self) -> dict[tuple[str, str], tuple[str | None, float | None]]:
        return {}  # one process owns a SQLite file (its lock file says so)

    async def streams(self) -> list[dict[str, Any]]:
        async with self._reading() as db:
            # A file still at schema 2 (a read-only `status` next to an older collector) has no wait columns.
            columns = {row[1] for row in await (await db.execute("PRAGMA table_info(streams)")).fetchall()}
            query = (
                "SELECT account, log_type, window_start, window_end, page_token IS NOT NULL, events_total, "
                "last_success_at, last_error, last_error_at, fatal, waiting_until, waiting_reason, cursor FROM streams "
                "ORDER BY account, log_type"
            )
            if "waiting_until" not in columns:
                query = query.replace("waiting_until, waiting_reason", "NULL, NULL")
            if "cursor" not in columns:  # schema 3
                query = query.replace(", cursor FROM", ", NULL FROM")
            cursor = await db.execute(query)
            rows = await cursor.fetchall()
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
            "waiting_until",
            "waiting_reason",
            "cursor",
        )
        return [dict(zip(names, row, strict=True)) for row in rows]
