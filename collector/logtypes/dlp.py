"""Data Leak Prevention logs: messages a content policy held, bounced or flagged."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from collector.logtypes.base import FilterSpec, JsonDict, LogType, address, email_direction, email_fields, related, text


def normalize(record: Mapping[str, Any]) -> JsonDict:
    """ECS fields of one DLP log (pure). Built sparse: only the fields the record has."""
    action = text(record, "action")
    event: JsonDict = {"action": action} if action is not None else {}
    event["category"] = ["email"]
    event["type"] = ["info"]
    out: JsonDict = {"event": event}
    sender = address(record, "senderAddress")
    recipient = address(record, "recipientAddress")
    email = email_fields(record, sender, recipient, email_direction(text(record, "route")))
    if email:
        out["email"] = email
    rule = text(record, "policy")
    if rule is not None:
        out["rule"] = {"name": rule}
    links = related((sender, recipient))
    if links:
        out["related"] = links
    return out


LOG_TYPE = LogType(
    name="dlp",
    path="/api/dlp/get-logs",
    array_key="dlpLogs",
    from_field="from",
    to_field="to",
    # Mostly +0000, but the public samples also hold other offsets (+0700): the generic parser reads both.
    time_field="eventTime",
    # No id, and one message triggers several actions of one policy at the same second (hold and
    # notification): every field is part of the key.
    dedup_fields=(
        "eventTime",
        "senderAddress",
        "recipientAddress",
        "messageId",
        "policy",
        "action",
        "route",
        "subject",
    ),
    normalize=normalize,
    filters={
        "actions": FilterSpec("actions", "str_list", doc="only these actions (e.g. hold, notification, block)"),
        "routes": FilterSpec("routes", "str_list", doc="only these routes (inbound, outbound, internal)"),
    },
)
