"""The contract between the one generic poller and its cursor strategies (one per cursor kind).

The poller (:mod:`collector.collect.poller`) owns everything streams share: the error handling and
the retry-later path (``stream_failed`` / ``stream_crashed``), telemetry and status, backpressure
(``before_fetch``), ``on_commit``, once-mode and the commit itself. A strategy owns only how the
stream's position moves: what to ask next, and which position to commit with the events it got.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from collector.api.client import MimecastClient
from collector.api.errors import ApiError
from collector.api.files import FileHost
from collector.collect.spec import StreamSpec
from collector.logtypes import SpoolEvent
from collector.service.telemetry import Telemetry
from collector.state.base import StateStore
from collector.state.store import PageResult, StreamState
from collector.workers import PageBuilder

#: Keys of a cursor that hold an API token: ``status`` shows only whether one is held, as for page tokens.
CURSOR_TOKEN_KEYS = frozenset({"token", "page", "next"})


class StreamContext(Protocol):
    """What the poller lends its strategy. ``state`` is the position last committed (or saved)."""

    spec: StreamSpec
    client: MimecastClient
    files: FileHost | None  # the batch-file downloader (no API credentials); None where not needed
    builder: PageBuilder  # normalizes a page's records, in worker processes when there are any
    store: StateStore
    telemetry: Telemetry
    log: Any  # a bound structlog logger carrying stream=<account/log type>
    clock: Callable[[], float]
    sleep: Callable[[float], Awaitable[None]]
    once_until: int | None
    dedup_retention_secs: int
    state: StreamState | None

    async def before_fetch(self) -> None:
        """Wait while the spool is full (backpressure); call before every API request that fetches events."""

    async def commit(
        self, events: Sequence[SpoolEvent], next_state: StreamState, *, seen_until: int, prune_before: int | None = None
    ) -> PageResult:
        """Spool ``events`` and save ``next_state`` in ONE transaction, count them, wake the sinks."""

    async def retrying(self, error: ApiError) -> None:
        """The ``on_retry`` of client calls: a retryable error shows in status and health."""

    async def caught_up(self) -> bool:
        """Nothing more to fetch now: True in once-mode (the strategy returns True), else wait one poll."""


class CursorStrategy(Protocol):
    """Moves one stream's position. Built once per poller with its :class:`StreamContext`."""

    async def collect(self) -> bool:
        """Fetch and commit until cancelled, or until caught up in once-mode (then return True).

        Raise :class:`ApiError` for a fatal error (the poller reports it and retries the stream later,
        from the last committed position); never swallow one. The position in ``ctx.state`` must only
        move through ``ctx.commit`` (or ``ctx.store.save_position`` for a move that skips no event).
        """
        ...

    def describe(self, state: StreamState) -> dict[str, Any]:
        """Key/value context for the ``stream_started`` log line: where the stream resumes."""
        ...


StrategyFactory = Callable[[StreamContext], CursorStrategy]
