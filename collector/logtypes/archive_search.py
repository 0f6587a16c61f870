"""Archive search logs: who searched the email archive, for what, and why."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from collector.logtypes.base import FilterSpec, JsonDict, LogType, address, related, text, truthy, user_of


def normalize(record: Mapping[str, Any]) -> JsonDict:
    """ECS fields of one archive search log (pure). Built sparse: only the fields the record has."""
    # ECS "api" allows the "access" type; the folder searched stays under mimecast.searchPath
    # (it is a mailbox folder, not a file, and file.path would wake file-based detections).
    event: JsonDict = {"action": "archive-search", "category": ["api"], "type": ["access"]}
    reason = text(record, "searchReason")
    if reason is not None:
        event["reason"] = reason
    out: JsonDict = {"event": event}
    user = address(record, "emailAddr")
    if user is not None:
        user_doc = out["user"] = user_of(user)
        if truthy(record.get("isAdmin")):
            user_doc["roles"] = ["admin"]
    message = text(record, "description")
    if message is not None:
        out["message"] = message
    links = related((user,))
    if links:
        out["related"] = links
    return out


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
