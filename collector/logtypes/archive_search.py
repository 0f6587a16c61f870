"""Archive search logs: who searched the email archive, for what, and why."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from collector.logtypes.base import FilterSpec, JsonDict, LogType, address, compact, related, text, truthy, user_fields


def normalize(record: Mapping[str, Any]) -> JsonDict:
    """ECS fields of one archive search log (pure)."""
    is_admin = truthy(record.get("isAdmin"))
    user = address(record, "emailAddr")
    user_doc = user_fields(user)
    if user_doc is not None and is_admin:
        user_doc["roles"] = ["admin"]
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
            "user": user_doc,
            "message": text(record, "description"),
        },
        related=related((user,)),
    )


LOG_TYPE = LogType(
    name="archive_search",
    # Mimecast's API reference and Elastic's integration (both API versions) call the first path; one
    # connector's documentation the second. Both are tried, the reference's first (see alt_path).
    path="/api/archive/get-archive-search-logs",
    alt_path="/api/archive/get-search-logs",
    array_key="logs",
    from_field="start",
    to_field="end",
    time_field="createTime",
    dedup_fields=None,  # no id: the whole record identifies a search
    normalize=normalize,
    send_oldest_first=False,  # not a documented filter of this endpoint
    filters={"query": FilterSpec("query", "str", doc="only searches matching this text")},
)
