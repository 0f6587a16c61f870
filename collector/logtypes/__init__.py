"""Registry of log types. Adding one: a module here, a line below, a fixture and its test."""

from __future__ import annotations

from collections.abc import Mapping

from collector.logtypes import archive_search, audit, dlp, held_release, ttp_attachment, ttp_impersonation, ttp_url
from collector.logtypes.base import Event, FilterSpec, LogType, build_event, dedup_key, record_key, serialize

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
    )
}

__all__ = ["LOG_TYPES", "Event", "FilterSpec", "LogType", "build_event", "dedup_key", "record_key", "serialize"]
