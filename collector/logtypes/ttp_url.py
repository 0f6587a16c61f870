"""TTP URL Protect click logs: who clicked which rewritten link, and what URL Protect did."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from collector.logtypes.base import (
    FilterSpec,
    JsonDict,
    LogType,
    address,
    compact,
    email_direction,
    ip_or_none,
    related,
    text,
    url_fields,
    user_fields,
)


def normalize(record: Mapping[str, Any]) -> JsonDict:
    """ECS fields of one click log (pure)."""
    url = text(record, "url")
    route = text(record, "route")
    user = address(record, "userEmailAddress")
    sender = address(record, "fromUserEmailAddress")
    malicious = text(record, "scanResult") == "malicious"
    url_doc = url_fields(url) if url else None
    ip = ip_or_none(record.get("sendingIp"))
    return compact(
        {
            "event": {
                "action": text(record, "action"),
                "category": ["email", "threat"],
                "type": ["indicator"] if malicious else ["info"],
            },
            "user": user_fields(user),
            "email": {
                "to": {"address": [user] if user else None},
                "from": {"address": [sender] if sender else None},
                "subject": text(record, "subject"),
                "message_id": text(record, "messageId"),
                "direction": email_direction(route),
            },
            "url": url_doc,
            "source": {"ip": ip},
            "rule": {"name": text(record, "ttpDefinition")},
        },
        related=related((user, sender), (ip,), (url_doc.get("domain") if url_doc else None,)),
    )


LOG_TYPE = LogType(
    name="ttp_url",
    path="/api/ttp/url/get-logs",
    array_key="clickLogs",
    from_field="from",
    to_field="to",
    time_field="date",
    # No id in click logs: these fields together identify a click (missing != null in the hash).
    dedup_fields=(
        "date",
        "userEmailAddress",
        "fromUserEmailAddress",
        "url",
        "messageId",
        "action",
        "actions",
        "route",
        "creationMethod",
        "scanResult",
        "category",
        "ttpDefinition",
        "userAwarenessAction",
        "adminOverride",
        "userOverride",
        "sendingIp",
        "subject",
    ),
    normalize=normalize,
    filters={
        "route": FilterSpec("route", "str", ("inbound", "outbound", "internal", "all"), "message route"),
        "scan_result": FilterSpec("scanResult", "str", ("clean", "malicious", "all"), "scan verdict"),
    },
)
