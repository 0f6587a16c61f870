"""TTP URL Protect click logs: who clicked which rewritten link, and what URL Protect did."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from collector.logtypes.base import (
    FilterSpec,
    JsonDict,
    LogType,
    address,
    email_direction,
    email_fields,
    ip_or_none,
    related,
    text,
    url_fields,
    user_of,
)


def normalize(record: Mapping[str, Any]) -> JsonDict:
    """ECS fields of one click log (pure). Built sparse: only the fields the record has."""
    action = text(record, "action")
    malicious = text(record, "scanResult") == "malicious"
    event: JsonDict = {"action": action} if action is not None else {}
    event["category"] = ["email", "threat"]
    event["type"] = ["indicator"] if malicious else ["info"]
    out: JsonDict = {"event": event}
    user = address(record, "userEmailAddress")
    sender = address(record, "fromUserEmailAddress")
    if user is not None:
        out["user"] = user_of(user)
    email = email_fields(record, sender, user, email_direction(text(record, "route")))
    if email:
        out["email"] = email
    url = text(record, "url")
    domain = None
    if url is not None:
        url_doc = out["url"] = url_fields(url)
        domain = url_doc.get("domain")
    ip = ip_or_none(record.get("sendingIp"))
    if ip is not None:
        out["source"] = {"ip": ip}
    rule = text(record, "ttpDefinition")
    if rule is not None:
        out["rule"] = {"name": rule}
    links = related((user, sender), (ip,), (domain,))
    if links:
        out["related"] = links
    return out


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
