"""TTP Attachment Protect logs: attachments sandboxed before delivery, and the verdict."""

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
    file_extension,
    related,
    sha256_or_none,
    text,
)


def normalize(record: Mapping[str, Any]) -> JsonDict:
    """ECS fields of one attachment log (pure)."""
    sender = address(record, "senderAddress")
    recipient = address(record, "recipientAddress")
    name = text(record, "fileName")
    attachment = compact(
        {
            "name": name,
            "extension": file_extension(name) if name else None,
            "mime_type": text(record, "fileType"),
            "hash": {"sha256": sha256_or_none(record.get("fileHash"))},
        }
    )
    malicious = text(record, "result") == "malicious"
    return compact(
        {
            "event": {
                "action": text(record, "actionTriggered"),
                "category": ["email", "threat"],
                "type": ["indicator"] if malicious else ["info"],
            },
            "email": {
                "from": {"address": [sender] if sender else None},
                "to": {"address": [recipient] if recipient else None},
                "subject": text(record, "subject"),
                "message_id": text(record, "messageId"),
                "direction": email_direction(text(record, "route")),
                "attachments": [{"file": attachment}] if attachment else None,
            },
            "file": attachment or None,
            "rule": {"name": text(record, "definition")},
        },
        related=related((sender, recipient)),
    )


LOG_TYPE = LogType(
    name="ttp_attachment",
    path="/api/ttp/attachment/get-logs",
    array_key="attachmentLogs",
    from_field="from",
    to_field="to",
    time_field="date",
    # No id: one message's attachments share everything but the file, so the file is in the key.
    dedup_fields=(
        "date",
        "senderAddress",
        "recipientAddress",
        "messageId",
        "fileName",
        "fileType",
        "fileHash",
        "result",
        "actionTriggered",
        "definition",
        "route",
        "subject",
        "details",
    ),
    normalize=normalize,
    filters={
        "route": FilterSpec("route", "str", ("inbound", "outbound", "internal", "all"), "message route"),
        "result": FilterSpec(
            "result", "str", ("safe", "malicious", "timeout", "error", "unsafe", "all"), "sandbox verdict"
        ),
    },
)
