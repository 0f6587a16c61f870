"""Cursor kind "SIEM batch files" (API 2.0 ``/siem/v1/batch/events/{cg,ci}``), one stream per type.

The listing ``GET <path>?type=&dateRangeStartsAt=&pageSize=&nextPage=`` answers ``{"value": [{"url",
"size", "expiry"}], "@nextPage", "isCaughtUp"}``: pre-signed links to gzip NDJSON files. The cursor
(JSON in ``StreamState.cursor``, see :class:`BatchCursor`) is the listing page being worked on (the
``nextPage`` token that lists it), how many of its files are done, and how many lines of the current
file are committed. Events go in every :data:`COMMIT_LINES` lines (or :data:`COMMIT_BYTES`), in the same
transaction as the position after them, so a SIEGKILL mid-file resumes at the last committed line, never past it.

- A failed download is retried; an expired link (403/404) or a second failure lists the SAME page
  again (same token) for fresh links and goes on at the file and line where it stopped. Nothing is
  ever skipped: after :data:`MAX_FILE_ATTEMPTS` the stream fails and is retried later from there.
- A line that is not a JSON object, or longer than ``siem_max_line_bytes``, is kept raw and tagged;
  a file that is not gzip (the same bytes :data:`MAX_UNDECODABLE` times) is recorded as one tagged
  event naming it, and collection goes on. A truncated file is a failed download, never the end.
- Listings and pages: after the last file of a page the cursor moves to its ``@nextPage``. The token
  continues over time (public collectors keep it between runs), so a caught-up stream lists it again
  each poll. An empty page ends a cycle (caught up) and keeps the token: Elastic's integration stops
  following on an empty page and Sentinel's does not save the token it carries. Only when the API
  says ``isCaughtUp: false`` is an empty page's new token followed (at most
  :data:`MAX_EMPTY_FOLLOWS` in a row): an empty page lists no file, so following it skips none.
- Day granularity: a listing chain without a ``@nextPage`` restarts at the day of the newest event
  committed, re-listing files already read; the dedup keys (kept :data:`DEDUP_KEEP_SECS` beyond
  ``dedup_retention_secs``) drop those repeats.
- ``start`` older than the data Mimecast keeps (:data:`RETENTION_DAYS`) is clamped, with one warning.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from collector.api.errors import Action, ApiError
from collector.api.files import FileError, FileFailure, FileHost, link_name
from collector.collect.strategy import StreamContext
from collector.logtypes import Event, build_event
from collector.logtypes.base import dedup_key, kept_raw
from collector.logtypes.siem_batch_event import handles, line_event
from collector.state.store import StreamState
from collector.timeutil import backoff_secs, iso

DAY = 86_400
# Events + position per transaction while reading a file: whichever comes first. Larger pages cost
# less per event to commit (bench/siem.py); the byte bound keeps a page of long lines (up to
# siem_max_line_bytes each) from holding hundreds of MiB before it is committed.
COMMIT_LINES = 1000
COMMIT_BYTES = 2 << 20
MAX_FILE_ATTEMPTS = 6  # failed downloads of one file before the stream fails (and is retried later)
MAX_UNDECODABLE = 3  # downloads that are not gzip before the file is kept as one tagged event
MAX_EMPTY_FOLLOWS = 5  # empty pages (isCaughtUp false) followed in a row before calling it caught up
MAX_CHAIN_RESTARTS = 3  # rejected listing tokens in one run before the stream fails (retried later)
# Mimecast keeps SIEM data 7 days (the API 1.0 get-siem-logs reference; the 2.0 batch reference
# publishes no figure of its own, and public 2.0 collectors look back no further).
RETENTION_DAYS = 7
DEDUP_KEEP_SECS = 3 * DAY  # a re-listing from the newest event's day reaches back at most ~2 days
LINE_CUT_TAG = "mimecast_line_cut"
FILE_UNDECODABLE_TAG = "mimecast_file_undecodable"


@dataclass(frozen=True)
class BatchCursor:
    day: str  # dateRangeStartsAt of the listing chain, YYYY-MM-DD
    page: str | None = None  # the nextPage token that lists the page being worked on (None: first page)
    done: int = 0  # files of that page fully committed, in listing order
    file: str | None = None  # id of the file in progress (hash of its link without the signature)
    line: int = 0  # lines of that file committed

    def dumps(self) -> str:
        return orjson.dumps(dataclasses.asdict(self)).decode()

    @classmethod
    def loads(cls, text: str | None) -> BatchCursor | None:
        if not text:
            return None
        try:
            raw = orjson.loads(text)
            cursor = cls(**{f.name: raw[f.name] for f in dataclasses.fields(cls) if f.name in raw})
            datetime.strptime(cursor.day, "%Y-%m-%d")  # a date, checked for shape only
        except (orjson.JSONDecodeError, TypeError, KeyError, ValueError):
            return None  # not ours (a damaged file): the stream begins again at its start, dedup absorbs it
        return cursor


@dataclass(frozen=True)
class BatchFile:
    url: str
    id: str
    name: str  # the link without its query (no signature): for logs and tagged events


@dataclass(frozen=True)
class Listing:
    files: list[BatchFile]
    next: str | None
    caught_up: bool | None


def parse_listing(doc: dict[str, Any]) -> Listing:
    """The files and tokens of one listing answer; a shape we do not know fails the stream (retried later)."""
    value = doc.get("value")
    if not isinstance(value, list):
        raise ApiError(Action.FATAL, "malformed batch listing: no value array", hint="retried later; report it")
    files = []
    for entry in value:
        url = entry.get("url") if isinstance(entry, dict) else None
        if not isinstance(url, str) or not url:
            raise ApiError(Action.FATAL, "malformed batch listing: an entry without url", hint="retried later")
        name = link_name(url)
        files.append(BatchFile(url, hashlib.blake2b(name.encode(), digest_size=8).hexdigest(), name))
    # "@nextPage" in every public collector; "nextPage" accepted too in case a gateway strips the "@".
    token = doc.get("@nextPage", doc.get("nextPage"))
    caught_up = doc.get("isCaughtUp")
    return Listing(
        files,
        token if isinstance(token, str) and token else None,
        caught_up if isinstance(caught_up, bool) else None,
    )


class _Relist(Exception):
    """The page must be listed again for fresh links."""


class BatchFiles:
    def __init__(self, ctx: StreamContext) -> None:
        self._ctx = ctx
        if ctx.files is None:
            raise TypeError("a SIEM batch stream needs the poller's FileHost (files=...)")
        self._files: FileHost = ctx.files
        self._attempts: dict[str, int] = {}  # file id -> failed downloads so far
        self._undecodable: dict[str, int] = {}
        self._rng = random.Random()
        self._fast = handles(ctx.spec.log_type)  # the SIEM batch types: events built in one pass

    def describe(self, state: StreamState) -> dict[str, Any]:
        cursor = self._cursor(state, warn=False)
        return {"position": iso(state.window_start), "day": cursor.day, "files_done": cursor.done, "line": cursor.line}

    async def collect(self) -> bool:
        ctx = self._ctx
        empty_follows = restarts = 0
        while True:
            assert ctx.state is not None
            cursor = self._cursor(ctx.state, warn=True)
            await ctx.before_fetch()
            try:
                listing = parse_listing(await self._list(cursor))
            except ApiError as error:
                if not _token_rejected(error, cursor) or restarts >= MAX_CHAIN_RESTARTS:
                    raise
                restarts += 1  # the token expired or is refused: list the chain's day afresh, dedup drops repeats
                ctx.log.warning("batch_page_token_rejected", day=cursor.day, error=error.summary(), restart=restarts)
                await self._move(BatchCursor(day=max(cursor.day, _day(ctx.state.window_start))))
                continue
            if not listing.files:
                more = listing.caught_up is False and listing.next not in (None, cursor.page)
                if more and empty_follows < MAX_EMPTY_FOLLOWS:
                    empty_follows += 1
                    ctx.log.info("batch_empty_page_followed", day=cursor.day, follows=empty_follows)
                    await self._move(dataclasses.replace(cursor, page=listing.next, done=0, file=None, line=0))
                    continue
                empty_follows = 0
                await self._move(cursor)  # nothing new: the same position, but status and health see a good answer
                if await ctx.caught_up():
                    return True
                continue
            empty_follows = 0
            try:
                await self._page(cursor, listing)
            except _Relist:
                continue  # the same page again (ctx.state holds where in it we are)
            assert ctx.state is not None
            if listing.next is not None:
                following = BatchCursor(day=cursor.day, page=listing.next)
            else:  # no continuation token: the chain restarts at the newest event's day (dedup drops repeats)
                following = BatchCursor(day=max(cursor.day, _day(ctx.state.window_start)))
            await self._move(following, prune=True)
            ctx.log.info(
                "batch_page_committed", files=len(listing.files), day=cursor.day, more=listing.next is not None
            )
            if listing.caught_up and listing.next is None and await ctx.caught_up():
                return True

    # --- parts ----------------------------------------------------------------------------------------

    def _cursor(self, state: StreamState, *, warn: bool) -> BatchCursor:
        saved = BatchCursor.loads(state.cursor)
        if saved is not None:
            return saved
        earliest = int(self._ctx.clock()) - RETENTION_DAYS * DAY
        if state.window_start < earliest and warn:
            self._ctx.log.warning(
                "siem_start_clamped",
                start=iso(state.window_start),
                clamped_to=_day(earliest),
                why=f"Mimecast keeps SIEM data {RETENTION_DAYS} days",
            )
        return BatchCursor(day=_day(max(state.window_start, earliest)))

    async def _list(self, cursor: BatchCursor) -> dict[str, Any]:
        spec = self._ctx.spec
        assert spec.log_type.batch_type is not None
        params = {"type": spec.log_type.batch_type, "dateRangeStartsAt": cursor.day, "pageSize": str(spec.page_size)}
        if cursor.page is not None:
            params["nextPage"] = cursor.page
        return await self._ctx.client.get_object(spec.name, spec.path, params, on_retry=self._ctx.retrying)

    async def _page(self, cursor: BatchCursor, listing: Listing) -> None:
        """Every file of the page from where the cursor stands; raises _Relist for fresh links."""
        start = cursor.done
        if cursor.file is not None:
            ids = [f.id for f in listing.files]
            if cursor.file in ids:
                start = ids.index(cursor.file)
            else:  # the listing changed under us: trust the count, dedup absorbs a re-read
                self._ctx.log.warning("batch_file_not_relisted", day=cursor.day, files_done=cursor.done)
        for index in range(start, len(listing.files)):
            batch_file = listing.files[index]
            skip = cursor.line if cursor.file == batch_file.id else 0
            at = dataclasses.replace(cursor, done=index, file=batch_file.id, line=skip)
            await self._file(batch_file, at)
            cursor = dataclasses.replace(cursor, done=index + 1, file=None, line=0)

    async def _file(self, batch_file: BatchFile, at: BatchCursor) -> None:
        """Stream one file from line ``at.line`` on, committing as it goes; returns when it is all in."""
        ctx = self._ctx
        while True:
            number, events, size = 0, [], 0
            try:
                async with contextlib.aclosing(self._files.batches(batch_file.url)) as batches:
                    async for batch in batches:
                        for raw, cut in batch:
                            number += 1
                            if number <= at.line:
                                continue  # committed before the crash or the failure
                            events.append(self._event(raw, cut, batch_file, number))
                            size += len(raw)
                            if len(events) >= COMMIT_LINES or size >= COMMIT_BYTES:
                                at = dataclasses.replace(at, line=number)
                                await self._commit(events, at)
                                events, size = [], 0
                                await ctx.before_fetch()  # the spool may be full: wait mid-file
            except FileError as error:
                if events:
                    at = dataclasses.replace(at, line=number)
                    await self._commit(events, at)
                if await self._failed(batch_file, at, error):
                    return
                continue
            done = dataclasses.replace(at, done=at.done + 1, file=None, line=0)
            await self._commit(events, done)
            self._attempts.pop(batch_file.id, None)
            self._undecodable.pop(batch_file.id, None)
            ctx.log.debug("batch_file_committed", file=batch_file.name, lines=number)
            return

    async def _failed(self, batch_file: BatchFile, at: BatchCursor, error: FileError) -> bool:
        """Decide after a failed download: True when the file is finished (kept as a tagged event);
        False to download it again; raises _Relist for fresh links, ApiError to fail the stream."""
        ctx = self._ctx
        if error.failure in (FileFailure.TOO_LARGE, FileFailure.REFUSED):
            raise ApiError(Action.FATAL, f"{error} ({batch_file.name})", hint=_HINTS[error.failure])
        if error.failure is FileFailure.UNDECODABLE:
            seen = self._undecodable[batch_file.id] = self._undecodable.get(batch_file.id, 0) + 1
            if seen >= MAX_UNDECODABLE:
                await self._keep_undecodable(batch_file, at, error)
                return True
        attempts = self._attempts[batch_file.id] = self._attempts.get(batch_file.id, 0) + 1
        if attempts > MAX_FILE_ATTEMPTS:
            self._attempts.pop(batch_file.id, None)
            raise ApiError(
                Action.FATAL,
                f"batch file {batch_file.name} failed {MAX_FILE_ATTEMPTS} times at line {at.line}: {error}",
                hint="nothing was skipped; the stream resumes at that line after fatal_retry_secs",
            )
        await ctx.retrying(ApiError(Action.RETRY, f"{error} ({batch_file.name})", status=error.status))
        delay = backoff_secs(attempts, ctx.spec.account.retry_max_secs, self._rng)
        relist = error.failure is FileFailure.EXPIRED or attempts >= 2
        ctx.log.warning(
            "batch_file_retry",
            file=batch_file.name,
            line=at.line,
            attempt=attempts,
            error=str(error),
            relist=relist,
            delay_secs=round(delay, 2),
        )
        await ctx.sleep(delay)
        if relist:
            raise _Relist
        return False

    async def _keep_undecodable(self, batch_file: BatchFile, at: BatchCursor, error: FileError) -> None:
        ctx = self._ctx
        record = {"file": batch_file.name, "lines_read": at.line, "error": str(error)}
        event = kept_raw(
            ctx.spec.log_type,
            record,
            ctx.spec.account.name,
            self._fallback_time(),
            f"batch file is not gzip after {MAX_UNDECODABLE} downloads: {error}",
            tags=(FILE_UNDECODABLE_TAG,),
        )
        ctx.log.error("batch_file_kept_undecodable", file=batch_file.name, line=at.line, error=str(error))
        await self._commit([event], dataclasses.replace(at, done=at.done + 1, file=None, line=0))
        self._undecodable.pop(batch_file.id, None)
        self._attempts.pop(batch_file.id, None)

    def _event(self, raw: bytes, cut: bool, batch_file: BatchFile, number: int) -> Event:
        ctx = self._ctx
        account, log_type = ctx.spec.account.name, ctx.spec.log_type
        record: Any = None
        if not cut:
            try:
                record = orjson.loads(raw)
            except orjson.JSONDecodeError:
                record = None
        if record.__class__ is dict:
            if self._fast:
                return line_event(log_type, record, account, self._fallback_time())
            return build_event(log_type, record, account, self._fallback_time())
        # Kept as it came, with where it came from: the same line of the same file keeps its key,
        # so a re-read after a crash or a re-listing does not deliver it twice.
        line = {"line": raw.decode("utf-8", "replace"), "file": batch_file.name, "line_number": number}
        why = "line longer than siem_max_line_bytes (cut)" if cut else "line is not a JSON object"
        tags = (LINE_CUT_TAG,) if cut else ()
        return kept_raw(log_type, line, account, self._fallback_time(), why, key=dedup_key(line, None), tags=tags)

    def _fallback_time(self) -> int:
        state = self._ctx.state
        return state.window_start if state is not None else int(self._ctx.clock())

    async def _commit(self, events: list[Event], cursor: BatchCursor) -> None:
        ctx = self._ctx
        assert ctx.state is not None
        newest = max((e.time for e in events if e.normalized), default=None)
        now = int(ctx.clock())
        await ctx.commit(events, ctx.state.moved_to(cursor.dumps(), newest=newest), seen_until=now)
        ctx.telemetry.window_lag.labels(ctx.spec.account.name, ctx.spec.log_type.name).set(
            max(0.0, ctx.clock() - ctx.state.window_start)
        )

    async def _move(self, cursor: BatchCursor, *, prune: bool = False) -> None:
        """A position change that covers no event (next page, empty page followed)."""
        ctx = self._ctx
        assert ctx.state is not None
        now = int(ctx.clock())
        prune_before = now - DEDUP_KEEP_SECS - ctx.dedup_retention_secs if prune else None
        await ctx.commit([], ctx.state.moved_to(cursor.dumps()), seen_until=now, prune_before=prune_before)


def _token_rejected(error: ApiError, cursor: BatchCursor) -> bool:
    """A fatal 4xx on a listing that carried a token: the token, not the stream, is the problem."""
    return cursor.page is not None and error.action is Action.FATAL and error.status in (400, 404, 410)


def _day(epoch_secs: float) -> str:
    return datetime.fromtimestamp(int(epoch_secs), UTC).strftime("%Y-%m-%d")


_HINTS = {
    FileFailure.TOO_LARGE: "raise siem_max_file_bytes for this account; the stream resumes at the same line",
    FileFailure.REFUSED: "the listing named a link that is not https; nothing was skipped, retried later",
}

__all__ = ["BatchCursor", "BatchFiles", "Listing", "parse_listing"]
