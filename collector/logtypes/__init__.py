"""Registry of log types. Adding one: a module here, a line below, a fixture and its test."""

from __future__ import annotations

from collections.abc import Mapping

from collector.logtypes import archive_search, siem_batch, siem_v1, ttp_impersonation, ttp_url
from collector.logtypes.base import (
    CursorKind,
    Event,
    FilterSpec,
    LogType,
    TimeFormat,
    build_event,
    dedup_key,
    serialize,
)

LOG_TYPES: Mapping[str, LogType] = {
    lt.name: lt
    for lt in (
        ttp_url.LOG_TYPE,
        ttp_impersonation.LOG_TYPE,
        archive_search.LOG_TYPE,
        siem_v1.LOG_TYPE,
        siem_batch.SIEM_CG,
        siem_batch.SIEM_CI,
    )
}
#: An account's `streams` when it names none: the log types that are not opt-in.
DEFAULT_STREAMS = tuple(name for name, lt in LOG_TYPES.items() if lt.default_enabled)

__all__ = [
    "LOG_TYPES",
    "CursorKind",
    "Event",
    "FilterSpec",
    "LogType",
    "TimeFormat",
    "build_event",
    "dedup_key",
    "serialize",
]
