"""Audit events: administrator and user actions in the Mimecast account (logons, policy changes, exports)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from collector.logtypes.base import FilterSpec, JsonDict, LogType, ip_or_none, related, text, user_of

DAY = 86_400
# ECS categories by Mimecast's audit category; the rest are configuration changes.
_CATEGORIES = {
    "authentication_logs": ("authentication",),
    "user_account_and_role_logs": ("iam",),
    "mimecast_access_logs": ("authentication",),
}
_CONFIGURATION = ("configuration",)
# eventInfo is free text; the client IP appears as "IP: 1.2.3.4", "IP Address :1.2.3.4",
# "remote IP : 1.2.3.4" or "Remote IP is 1.2.3.4" in the public samples.
_IP_IN_INFO = re.compile(r"\bIP(?: Address| is)?\s*:?\s*([0-9A-Fa-f:.]{3,45})", re.IGNORECASE)


def normalize(record: Mapping[str, Any]) -> JsonDict:
    """ECS fields of one audit event (pure). Built sparse: only the fields the record has."""
    audit_type = text(record, "auditType")
    info = text(record, "eventInfo")
    match = _IP_IN_INFO.search(info[:2000]) if info else None
    ip = ip_or_none(match.group(1).rstrip(".,:")) if match else None
    user = text(record, "user")
    event: JsonDict = {"action": audit_type} if audit_type is not None else {}
    # A fresh list per event: one consumer's edit must not leak into every event.
    event["category"] = list(_CATEGORIES.get(text(record, "category") or "", _CONFIGURATION))
    event["type"] = ["info"]
    if audit_type is not None and "fail" in audit_type.lower():
        event["outcome"] = "failure"
    out: JsonDict = {"event": event}
    if user is not None:
        out["user"] = user_of(user)
    if ip is not None:
        out["source"] = {"ip": ip}
    if info is not None:
        out["message"] = info
    links = related((user,), (ip,))
    if links:
        out["related"] = links
    return out


LOG_TYPE = LogType(
    name="audit",
    path="/api/audit/get-audit-events",
    array_key=None,  # the events are data[] itself, not a list inside its first element
    from_field="startDateTime",
    to_field="endDateTime",
    time_field="eventTime",
    dedup_fields=("id", "eventTime"),  # only for an event without a usable id (see event_id_field)
    normalize=normalize,
    send_oldest_first=False,  # not a documented field of this endpoint
    filters={
        "query": FilterSpec("query", "str", doc="only events whose text matches"),
        "categories": FilterSpec("categories", "str_list", doc="only these categories (e.g. authentication_logs)"),
    },
    max_lookback_secs=60 * DAY,  # the API answers nothing older; see the poller's start_clamped
    event_id_field="id",
)
