"""The sink protocol, the settings every sink shares, and the plugin record the registry holds."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Protocol, runtime_checkable

from collector.config.errors import CollectorError
from collector.config.options import option
from collector.service.telemetry import Telemetry

FORMATS = ("json", "raw", "cef", "leef")


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


@dataclass(frozen=True, kw_only=True)
class SinkSettings:
    """Options every sink has; each sink type adds its own in a subclass beside its code."""

    name: str
    type: str
    format: str = option("json", choices=FORMATS, doc="json (ECS event), raw (original record), cef or leef")
    batch_max_events: int = option(1000, min=1, max=100_000, doc="events per send_batch call")
    batch_max_bytes: int = option(0, min=0, max=1 << 30, doc="encoded bytes per batch; 0 = no limit")
    batch_max_age_secs: float = option(0.0, min=0, max=3600, doc="wait this long for a batch to fill; 0 = send now")
    retry_max_secs: float = option(60.0, min=0.1, max=3600, doc="longest backoff after a failed batch")


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
        """Deliver all of ``events`` or raise :class:`~collector.api.errors.SinkError`."""

    async def close(self) -> None: ...

    async def health_check(self) -> None:
        """Raise :class:`~collector.api.errors.SinkError` if the target cannot take events now."""


@runtime_checkable
class Reopenable(Protocol):
    """Optional part of a sink: the collector calls it on SIGHUP (logrotate's ``postrotate``)."""

    async def reopen(self) -> None:
        """Close the files this sink keeps open and open their paths again, never splitting a batch
        between the old and the new file; raise :class:`~collector.api.errors.SinkError` if one cannot
        be opened (the sink must then open it again before its next batch)."""


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
