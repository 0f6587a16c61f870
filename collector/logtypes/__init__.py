"""Registry of log types.

Adding a windowed one touches four files: its module here, a line below, its records and endpoint in
the simulator (collector/simulator/data.py), and its literal cases (tests/logtype_cases.py). Then
``python -m collector.simulator.fields_doc > docs/fields.md`` (a test fails until it is run) and a row
in README's log type table. CEF/LEEF rows are optional: without one the generic row is used.
"""

from __future__ import annotations

from collections.abc import Mapping

from collector.logtypes import (
    archive_search,
    audit,
    base,
    dlp,
    held_release,
    siem_batch,
    siem_v1,
    ttp_attachment,
    ttp_impersonation,
    ttp_url,
)
from collector.logtypes.base import (
    CursorKind,
    EncodedEvent,
    Event,
    FilterSpec,
    LogType,
    SpoolEvent,
    TimeFormat,
    build_event,
    dedup_key,
    record_key,
    serialize,
    spool_bytes,
)

# True when the per-event modules were compiled with mypyc (MIMECAST_COLLECTOR_COMPILE=1 at install).
COMPILED = not str(base.__file__).endswith(".py")

LOG_TYPES: Mapping[str, LogType] = {
    lt.name: lt
    for lt in (
        ttp_url.LOG_TYPE,
        ttp_impersonation.LOG_TYPE,
        archive_search.LOG_TYPE,
        ttp_attachment.LOG_TYPE,
        dlp.LOG_TYPE,
        audit.LOG_TYPE,
        held_release.LOG_TYPE,
        siem_v1.LOG_TYPE,
        siem_batch.SIEM_CG,
        siem_batch.SIEM_CI,
    )
}
#: An account's `streams` when it names none: the log types that are not opt-in.
DEFAULT_STREAMS = tuple(name for name, lt in LOG_TYPES.items() if lt.default_enabled)

__all__ = [
    "COMPILED",
    "LOG_TYPES",
    "CursorKind",
    "EncodedEvent",
    "Event",
    "FilterSpec",
    "LogType",
    "SpoolEvent",
    "TimeFormat",
    "build_event",
    "dedup_key",
    "record_key",
    "serialize",
    "spool_bytes",
]
