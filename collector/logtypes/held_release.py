"""Held message release logs: which held message an administrator or user released or rejected."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from collector.logtypes.base import (
    JsonDict,
    LogType,
    address,
    compact,
    email_direction,
    nested_text,
    related,
    text,
    user_fields,
)


def _recipients(value: Any) -> list[str]:
    if not isinstance(value, list):
        return []
    found = (text(item, "emailAddress") if isinstance(item, dict) else None for item in value[:1000])
    return [a for a in found if a and a != "<>"]


def normalize(record: Mapping[str, Any]) -> JsonDict:
    """ECS fields of one release log (pure)."""
    header_from = nested_text(record, "fromHdr", "emailAddress")
    envelope_from = nested_text(record, "fromEnv", "emailAddress")
    recipients = _recipients(record.get("to"))
    operator = address(record, "operator")
    return compact(
        {
            "event": {
                "action": text(record, "status"),  # released or rejected
                "category": ["email"],
                "type": ["info"],
                "reason": text(record, "heldReason"),
            },
            "email": {
                "from": {"address": [header_from] if header_from else None},
                "sender": {"address": envelope_from},
                "to": {"address": recipients or None},
                "subject": text(record, "subject"),
                "direction": email_direction(text(record, "route")),
            },
            "user": user_fields(operator),  # who released or rejected it
            "rule": {"name": text(record, "policy")},
        },
        related=related((header_from, envelope_from, *recipients, operator)),
    )


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
