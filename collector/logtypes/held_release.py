"""Held message release logs: which held message an administrator or user released or rejected."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from collector.logtypes.base import (
    JsonDict,
    LogType,
    address,
    email_direction,
    nested_text,
    related,
    text,
    user_of,
)


def _recipients(value: Any) -> list[str]:
    if not isinstance(value, list):
        return []
    found = (text(item, "emailAddress") if isinstance(item, dict) else None for item in value[:1000])
    return [a for a in found if a and a != "<>"]


def normalize(record: Mapping[str, Any]) -> JsonDict:
    """ECS fields of one release log (pure). Built sparse: only the fields the record has."""
    status = text(record, "status")  # released or rejected
    event: JsonDict = {"action": status} if status is not None else {}
    event["category"] = ["email"]
    event["type"] = ["info"]
    reason = text(record, "heldReason")
    if reason is not None:
        event["reason"] = reason
    header_from = nested_text(record, "fromHdr", "emailAddress")
    envelope_from = nested_text(record, "fromEnv", "emailAddress")
    recipients = _recipients(record.get("to"))
    email: JsonDict = {}
    if header_from is not None:
        email["from"] = {"address": [header_from]}
    if envelope_from is not None:
        email["sender"] = {"address": envelope_from}
    if recipients:
        email["to"] = {"address": recipients}
    subject = text(record, "subject")
    if subject is not None:
        email["subject"] = subject
    direction = email_direction(text(record, "route"))
    if direction is not None:
        email["direction"] = direction
    out: JsonDict = {"event": event}
    if email:
        out["email"] = email
    operator = address(record, "operator")
    if operator is not None:
        out["user"] = user_of(operator)  # who released or rejected it
    rule = text(record, "policy")
    if rule is not None:
        out["rule"] = {"name": rule}
    links = related((header_from, envelope_from, *recipients, operator))
    if links:
        out["related"] = links
    return out


LOG_TYPE = LogType(
    name="held_release",
    path="/api/gateway/get-held-release-logs",
    array_key="heldReleaseLogs",
    from_field="start",
    to_field="end",
    # "2015-11-25T14:49:18+00:00" in the reference, +0000 elsewhere: the generic ISO parser reads both.
    time_field="released",
    # ``id`` names the held message, not the decision: a message can be released for one recipient
    # and rejected for another, so the decision's fields are part of the key.
    dedup_fields=("id", "released", "status", "operator", "to"),
    normalize=normalize,
    send_oldest_first=False,  # not a documented field of this endpoint
)
