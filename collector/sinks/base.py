"""The sink protocol, the settings every sink shares, and the plugin record the registry holds."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from collector.options import option

FORMATS = ("json", "raw", "cef", "leef")


@dataclass(frozen=True, kw_only=True)
class SinkSettings:
    """Options every sink has; each sink type adds its own in a subclass beside its code."""

    name: str
    type: str
    format: str = option("json", choices=FORMATS, doc="json (ECS event), raw (original record), cef or leef")
    batch_max_events: int = option(1000, min=1, max=100_000, doc="events per send_batch call")
    retry_max_secs: float = option(60.0, min=0.1, max=3600, doc="longest backoff after a failed batch")


@dataclass(frozen=True)
class OutEvent:
    """One spooled event as a sink sees it."""

    key: str  # the event's dedup key (event.id), stable across re-deliveries
    time: int  # event time, epoch seconds
    doc: bytes  # the ECS event as JSON
    line: bytes  # the event encoded in the sink's ``format``, without a trailing newline


class Sink(Protocol):
    """A delivery target. ``send_batch`` returns only once the batch is durably accepted."""

    async def open(self) -> None: ...

    async def send_batch(self, events: Sequence[OutEvent]) -> None:
        """Deliver all of ``events`` or raise :class:`~collector.errors.SinkError`."""

    async def close(self) -> None: ...

    async def health_check(self) -> None:
        """Raise :class:`~collector.errors.SinkError` if the target cannot take events now."""


@dataclass(frozen=True)
class SinkPlugin:
    kind: str  # the `type = "..."` value that selects it
    settings: type[SinkSettings]
    factory: Callable[[SinkSettings], Sink]
