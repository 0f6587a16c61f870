"""Cursor kind "token stream" (API 1.0 SIEM): the ``mc-siem-token`` of the last answer committed.

The cursor is ``{"token": <the token to send next>, "file": <name of the last file committed>}`` in
the streams table's ``cursor`` column; none at first, so the first request has no token and Mimecast
starts at the oldest file it keeps (7 days). One answer (a zip of one or more files) is read file by
file and committed in batches of :data:`COMMIT_EVENTS`: every batch but the last keeps the token that
fetched the answer, and the last batch carries the answer's ``mc-siem-token``, in the same
transaction as its events. So the token never moves past an event that is not spooled, and a crash
mid-answer asks for the same answer again, whose already-spooled events the dedup keys drop.

A caught-up answer (JSON, no file) keeps the token and waits ``poll_interval_secs``. An answer that
hands back the token it was asked with is asked again a few times, then is a fatal error (a loop
never spins). An answer that cannot be read (a zip cut short, a hostile archive) is asked again
:data:`BROKEN_RETRIES` times; then what could be read is committed with one raw, tagged event that
describes the rest, and the stream moves on: one bad file never stalls the stream. An answer over
``max_response_bytes`` is fatal with a hint instead (raising the limit reads it whole).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import anyio.lowlevel
import anyio.to_thread
import orjson

from collector.api.errors import Action, ApiError
from collector.api.siem_files import SiemAnswerError, SiemFile, SiemLimits, read_files
from collector.api.siem_v1 import SiemAnswer, fetch_siem, request_data
from collector.collect.strategy import StreamContext
from collector.logtypes import Event, build_event
from collector.logtypes.siem_v1 import file_log_type, log_type_for
from collector.state.store import StreamState
from collector.timeutil import iso

COMMIT_EVENTS = 1000  # events per transaction while an answer is read (its last batch moves the token)
BROKEN_RETRIES = 3  # an unreadable answer is asked for again this often before it is kept raw
REPEAT_RETRIES = 2  # an answer repeating its request's token is asked again this often, then fatal
RETRY_SECS = 2.0
FOLLOWED_TOKENS = 1000  # tokens remembered to catch a loop longer than one answer


class SiemTokenStream:
    def __init__(self, ctx: StreamContext) -> None:
        self._ctx = ctx
        self._limits = SiemLimits(max_inflated_bytes=ctx.spec.account.max_response_bytes)
        self._broken = 0  # unreadable answers in a row for the current token
        self._repeats = 0
        self._followed: dict[str, None] = {}  # tokens moved to lately, oldest first: a longer loop shows here

    def describe(self, state: StreamState) -> dict[str, Any]:
        cursor = _cursor(state)
        return {"position": iso(state.window_start), "resuming_token": cursor.get("token") is not None}

    async def collect(self) -> bool:
        ctx = self._ctx
        while True:
            assert ctx.state is not None
            state = ctx.state
            token = _cursor(state).get("token")
            await ctx.before_fetch()  # backpressure: the spool has room again
            data = request_data(token, ctx.spec.filters)
            try:
                answer = await fetch_siem(ctx.client, ctx.spec.name, ctx.spec.path, data, on_retry=ctx.retrying)
            except ApiError as error:
                if token is not None and error.status in (400, 404, 409):
                    raise _token_refused(error) from None
                raise
            if answer.caught_up:
                self._broken = self._repeats = 0
                ctx.log.debug("siem_caught_up", token_held=token is not None)
                if await ctx.caught_up():
                    return True
                continue
            if answer.next_token == token or answer.next_token in self._followed:
                # Its events are real: keep them (the token stays, so a re-ask's repeats are dropped).
                await self._read_and_commit(state, answer, advance=False)
                await self._repeated(answer)
                continue
            self._repeats = 0
            if await self._read_and_commit(state, answer, advance=True):
                self._follow(answer.next_token)

    def _follow(self, token: str | None) -> None:
        if token is None:
            return
        self._followed[token] = None
        if len(self._followed) > FOLLOWED_TOKENS:
            del self._followed[next(iter(self._followed))]

    async def _repeated(self, answer: SiemAnswer) -> None:
        """The answer names a token already followed (its own request's, or an earlier one): its events
        are committed, the token stays, and it is asked again; a few times in a row is fatal."""
        self._repeats += 1
        if self._repeats > REPEAT_RETRIES:
            self._repeats = 0
            raise ApiError(
                Action.FATAL,
                f"the API handed back a token already followed, {REPEAT_RETRIES + 1} times (file {answer.name})",
                hint="a token loop on Mimecast's side; the stream retries from the same token later",
            )
        self._ctx.log.warning("siem_token_repeated", file=answer.name, retry=self._repeats)
        await self._ctx.sleep(RETRY_SECS * self._repeats)

    async def _read_and_commit(self, state: StreamState, answer: SiemAnswer, *, advance: bool) -> bool:
        """Read the answer's files and commit their events; True once the token has moved past them
        (with ``advance`` False the token stays where it is, whatever the answer names)."""
        ctx = self._ctx
        assert answer.body is not None
        file_format = str(ctx.spec.filters.get("fileFormat", "json"))
        files = read_files(answer.body, name=answer.name, file_format=file_format, limits=self._limits)
        batch: list[Event] = []
        counts = {"events": 0, "files": 0, "unparsed": 0}
        newest: int | None = None
        broken: SiemAnswerError | None = None
        while True:
            try:
                siem_file = await anyio.to_thread.run_sync(_next, files)  # inflate and parse off the loop
            except SiemAnswerError as error:
                broken = error
                break
            if siem_file is None:
                break
            counts["files"] += 1
            for event in self._events(siem_file):  # parsed as taken: a large file is never held whole
                batch.append(event)
                if event.normalized:
                    newest = event.time if newest is None else max(newest, event.time)
                if len(batch) >= COMMIT_EVENTS:
                    await self._commit(state, batch, newest, final=None)
                    counts["events"] += len(batch)
                    batch = []
            counts["unparsed"] += siem_file.unparsed
        if not advance:
            if batch:
                await self._commit(state, batch, newest, final=None)
            return False
        if broken is not None:
            if broken.kind == "too_large":
                raise ApiError(
                    Action.FATAL,
                    f"SIEM file {answer.name}: {broken}",
                    code="answer_too_large",
                    hint=f"raise max_response_bytes (now {ctx.spec.account.max_response_bytes}) for this account",
                )
            self._broken += 1
            ctx.log.warning("siem_answer_unreadable", file=answer.name, kind=broken.kind, attempt=self._broken)
            if self._broken <= BROKEN_RETRIES:
                if batch:  # what was read is safe to keep; the token stays until the answer is whole
                    await self._commit(state, batch, newest, final=None)
                await ctx.retrying(ApiError(Action.RETRY, f"SIEM answer unreadable ({broken.kind}): {broken}"))
                await ctx.sleep(RETRY_SECS * self._broken)
                return False
            batch.append(self._kept_raw(answer, broken))
            ctx.log.error("siem_answer_kept_raw", file=answer.name, kind=broken.kind, error=str(broken))
        self._broken = 0
        await self._commit(state, batch, newest, final=answer)
        counts["events"] += len(batch)
        ctx.log.info("siem_answer_committed", file=answer.name, **counts)
        return True

    def _events(self, siem_file: SiemFile) -> Iterator[Event]:
        ctx = self._ctx
        log_type = log_type_for(file_log_type(siem_file.name))
        now = int(ctx.clock())
        for record in siem_file.records():
            yield build_event(log_type, record, ctx.spec.account.name, now)

    def _kept_raw(self, answer: SiemAnswer, error: SiemAnswerError) -> Event:
        """One raw, tagged event standing for what could not be read (the bytes' digest identifies it)."""
        assert answer.body is not None
        record = {
            "siem_file": answer.name,
            "error": error.kind,
            "detail": str(error),
            "bytes": len(answer.body),
            "sha256": hashlib.sha256(answer.body).hexdigest(),
        }
        return build_event(log_type_for(None), record, self._ctx.spec.account.name, int(self._ctx.clock()))

    async def _commit(self, state: StreamState, batch: list[Event], newest: int | None, *, final: Any) -> None:
        """One transaction: the batch, and the cursor (the answer's token only with its last batch)."""
        ctx = self._ctx
        current = ctx.state or state
        cursor = current.cursor
        prune_before = None
        if final is not None:
            cursor = orjson.dumps({"token": final.next_token, "file": final.name}).decode()
            # Keys of earlier answers are not needed once the token has moved past them: a re-read is
            # only ever of the answer not yet committed. Older than the retention: gone.
            prune_before = int(ctx.clock()) - ctx.dedup_retention_secs
        next_state = current.moved_to(cursor, newest=newest)
        result = await ctx.commit(batch, next_state, seen_until=int(ctx.clock()), prune_before=prune_before)
        ctx.log.debug("siem_batch_committed", events=len(batch), new=result.new, token_moved=final is not None)
        await anyio.lowlevel.checkpoint()


def _token_refused(error: ApiError) -> ApiError:
    """A saved token the API refuses (expired past the 7 days kept, or unknown): the stream stops with
    a hint. Starting over without a token would re-read up to 7 days that dedup no longer covers."""
    return ApiError(
        Action.FATAL,
        f"the API refused the saved mc-siem-token: {error}",
        status=error.status,
        code=error.code,
        hint="run `mimecast-collector reset --stream siem` to start again at the oldest file Mimecast keeps "
        "(files already delivered come again)",
    )


def _next(files: Iterator[SiemFile]) -> SiemFile | None:
    return next(files, None)


def _cursor(state: StreamState) -> dict[str, Any]:
    """The saved cursor; one that does not parse (a damaged state file) means: start without a token."""
    if state.cursor is None:
        return {}
    try:
        cursor = orjson.loads(state.cursor)
    except orjson.JSONDecodeError:
        return {}
    return cursor if isinstance(cursor, dict) else {}
