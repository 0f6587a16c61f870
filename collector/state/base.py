"""The one interface every state backend implements (SQLite :class:`~collector.state.store.Store`,
PostgreSQL :class:`~collector.state.pg_store.PostgresStore`): the poller, the dispatcher, the spool
gate and ``status`` are written against it and never know which one they run on."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from collector.logtypes import SpoolEvent
from collector.state.db import StoreError
from collector.state.spool import PageSlice, SpoolRow, SpoolUsage
from collector.state.store import PageResult, StreamState


class LeaseLost(StoreError):
    """This replica no longer holds the lease on a stream or sink: another one took it over, so the
    transaction was rolled back and the stream or sink must stop here (never a process exit)."""

    def __init__(self, kind: str, name: str) -> None:
        super().__init__(f"{kind} {name!r} is owned by another replica now")
        self.kind = kind
        self.name = name


class StateStore(Protocol):
    # --- streams ------------------------------------------------------------------------------------
    async def stream(self, account: str, log_type: str, *, start: int) -> StreamState: ...

    async def commit_page(
        self,
        events: Sequence[SpoolEvent],
        next_state: StreamState,
        *,
        seen_until: int,
        prune_before: int | None = None,
        now: float,
    ) -> PageResult: ...

    async def save_position(self, state: StreamState) -> None: ...

    async def save_endpoint_path(self, stream_id: int, path: str) -> None: ...

    async def record_error(self, stream_id: int, summary: str, *, fatal: bool, now: float) -> None: ...

    async def record_waiting(self, account: str, log_type: str, until: float | None, why: str | None) -> None: ...

    async def reset_stream(self, account: str, log_type: str, start: int) -> bool: ...

    async def streams(self) -> list[dict[str, Any]]: ...

    # --- spool and sinks ----------------------------------------------------------------------------
    async def sink_offset(self, name: str) -> int: ...

    async def read_spool(self, after: int, limit: int) -> list[SpoolRow]: ...

    async def read_pages(self, after: int, limit: int) -> list[PageSlice]: ...

    async def ack(self, name: str, offset: int, delivered: int, *, now: float, sinks: Iterable[str]) -> None: ...

    async def drop_oldest(self, *, max_events: int, max_bytes: int) -> tuple[int, int]: ...

    async def usage(self) -> SpoolUsage: ...

    async def record_sink_error(self, name: str, summary: str) -> None: ...

    async def sinks(self) -> list[dict[str, Any]]: ...

    async def backlog(self, after: int) -> int: ...

    # --- replicas -----------------------------------------------------------------------------------
    async def owners(self) -> dict[tuple[str, str], tuple[str | None, float | None]]:
        """(kind, name) -> (node holding the lease, seconds since it renewed it); empty with one process."""
        ...

    async def close(self) -> None: ...
