"""The sink protocol, the error a sink raises, and the plugin record the registry holds.

The settings every sink shares are configuration: :class:`collector.config.sinks.SinkSettings`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Protocol, runtime_checkable

from collector.config.errors import CollectorError
from collector.config.sinks import SinkSettings
from collector.service.telemetry import Telemetry

__all__ = ["Acknowledging", "LineSink", "OutEvent", "Sink", "SinkContext", "SinkError", "SinkPlugin", "SinkSettings"]


class SinkError(CollectorError):
    """A sink could not deliver a batch. ``retryable`` says whether trying again may help."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool = True,
        retry_after_secs: float | None = None,
        status: int | None = None,
    ) -> None:
        self.retryable = retryable
        self.retry_after_secs = retry_after_secs
        self.status = status  # the HTTP status, for HTTP-based sinks
        super().__init__(message)


class OutEvent(NamedTuple):  # built per event per sink: a tuple is cheaper than a dataclass
    """One spooled event as a sink sees it."""

    key: str  # the event's dedup key (event.id), stable across re-deliveries
    time: int  # event time, epoch seconds
    doc: bytes  # the ECS event as JSON
    line: bytes  # the event encoded in the sink's ``format``, without a trailing newline
    account: str = ""  # the Mimecast account (config name) it came from
    log_type: str = ""  # e.g. "ttp_url"


class Sink(Protocol):
    """A delivery target. ``send_batch`` returns only once the batch is durably accepted.

    A sink that keeps a local file open also implements :class:`Reopenable`; network sinks do not.
    """

    async def open(self) -> None: ...

    async def send_batch(self, events: Sequence[OutEvent]) -> None:
        """Deliver all of ``events`` or raise :class:`SinkError`."""

    async def close(self) -> None: ...

    async def health_check(self) -> None:
        """Raise :class:`SinkError` if the target cannot take events now."""


@runtime_checkable
class Reopenable(Protocol):
    """Optional part of a sink: the collector calls it on SIGHUP (logrotate's ``postrotate``)."""

    async def reopen(self) -> None:
        """Close the files this sink keeps open and open their paths again, never splitting a batch
        between the old and the new file; raise :class:`SinkError` if one cannot
        be opened (the sink must then open it again before its next batch)."""


@runtime_checkable
class LineSink(Protocol):
    """Optional part of a sink whose target takes events as lines of their encoding (a JSON lines
    file, NDJSON over HTTP). With ``format = "json"`` the dispatcher hands it spooled pages as they
    are stored, without building an :class:`OutEvent` per event (bench/throughput.py)."""

    async def send_lines(self, payload: bytes, count: int) -> None:
        """Deliver ``count`` events, encoded in the sink's format, one per line, each line ending in
        ``\\n``; the same contract as ``send_batch`` (all of them or :class:`SinkError`)."""


@runtime_checkable
class Acknowledging(Protocol):
    """Optional part of a sink whose target confirms a batch only after it took it (Splunk HEC
    indexer acknowledgement). Its ``send_batch`` returns once the batch was *accepted*; the
    dispatcher moves the sink's offset only as :meth:`acknowledged` reports batches *confirmed*,
    oldest first. The sink keeps each unconfirmed batch and sends it again if its confirmation is
    overdue, so a lost confirmation costs a duplicate, never an event."""

    ack_poll_secs: float  # how often asking for confirmations is worth it

    def window_full(self) -> bool:
        """True while as many batches wait for confirmation as the sink allows: send no more."""

    async def acknowledged(self, *, wait: bool) -> int:
        """How many of the oldest unconfirmed batches (in send order) are confirmed since the last
        call; resends the overdue ones. With ``wait``, returns only once at least one is
        confirmed (or raises :class:`SinkError`); without, asks at most once per poll interval."""


@dataclass(frozen=True)
class SinkContext:
    """What a sink may need from the collector besides its own settings."""

    state_dir: Path  # the state file's directory, for defaults such as a dead-letter file
    telemetry: Telemetry | None = None


@dataclass(frozen=True)
class SinkPlugin:
    kind: str  # the `type = "..."` value that selects it
    settings: type[SinkSettings]
    factory: Callable[[SinkSettings, SinkContext], Sink]
