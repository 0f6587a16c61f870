"""Archive search logs: who searched the email archive, for what, and why."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from collector.logtypes.base import FilterSpec, JsonDict, LogType, compact, text, truthy


def normalize(record: Mapping[str, Any]) -> JsonDict:
    """ECS fields of one archive search log (pure)."""
    is_admin = truthy(record.get("isAdmin"))
    return compact(
        {
            # ECS "api" allows the "access" type; the folder searched stays under mimecast.searchPath
            # (it is a mailbox folder, not a file, and file.path would wake file-based detections).
            "event": {
                "action": "archive-search",
                "category": ["api"],
                "type": ["access"],
                "reason": text(record, "searchReason"),
            },
            "user": {
                "email": text(record, "emailAddr"),
                "roles": ["admin"] if is_admin else None,
            },
            "message": text(record, "description"),
        }
    )


LOG_TYPE = LogType(
    name="archive_search",
    path="/api/archive/get-search-logs",
    array_key="logs",
    from_field="start",
    to_field="end",
    time_field="createTime",
    dedup_fields=None,  # no id: the whole record identifies a search
    normalize=normalize,
    send_oldest_first=False,  # not a documented filter of this endpoint
    filters={"query": FilterSpec("query", "str", doc="only searches matching this text")},
)
