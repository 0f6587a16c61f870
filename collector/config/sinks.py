"""What every sink's settings share, and the registry of sink types the loader builds settings from.

Each sink declares its own settings as a subclass beside its code and registers it by ``type``
(``collector.sinks`` registers the shipped ones when imported), so the loader builds a
``[sinks.<name>]`` table without config ever importing a sink.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from collector.config.options import option

FORMATS = ("json", "raw", "cef", "leef")


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


_REGISTERED: dict[str, type[SinkSettings]] = {}


def register_sink_settings(kind: str, settings: type[SinkSettings]) -> None:
    """Make ``type = "<kind>"`` build ``settings`` (called once per sink type, at import)."""
    _REGISTERED[kind] = settings


def sink_settings_types() -> Mapping[str, type[SinkSettings]]:
    """Every registered sink type; empty only if nothing imported ``collector.sinks`` (a bug)."""
    if not _REGISTERED:
        raise RuntimeError("no sink types are registered: import collector.sinks before loading a config")
    return _REGISTERED
