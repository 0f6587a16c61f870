"""TTP Attachment Protect logs: attachments sandboxed before delivery, and the verdict."""

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
    file_extension,
    related,
    sha256_or_none,
    text,
)


def _file(name: str | None, mime_type: str | None, sha256: str | None) -> JsonDict:
    """ECS ``file.*`` of the attachment."""
    out: JsonDict = {}
    if name is not None:
        out["name"] = name
        extension = file_extension(name)
        if extension is not None:
            out["extension"] = extension
    if mime_type is not None:
        out["mime_type"] = mime_type
    if sha256 is not None:
        out["hash"] = {"sha256": sha256}
    return out


def normalize(record: Mapping[str, Any]) -> JsonDict:
    """ECS fields of one attachment log (pure). Built sparse: only the fields the record has."""
    action = text(record, "actionTriggered")
    malicious = text(record, "result") == "malicious"
    event: JsonDict = {"action": action} if action is not None else {}
    event["category"] = ["email", "threat"]
    event["type"] = ["indicator"] if malicious else ["info"]
    sender = address(record, "senderAddress")
    recipient = address(record, "recipientAddress")
    email = email_fields(record, sender, recipient, email_direction(text(record, "route")))
    name = text(record, "fileName")
    mime_type = text(record, "fileType")
    sha256 = sha256_or_none(record.get("fileHash"))
    attachment = _file(name, mime_type, sha256) if name or mime_type or sha256 else None
    if attachment is not None:
        email["attachments"] = [{"file": attachment}]
    out: JsonDict = {"event": event}
    if email:
        out["email"] = email
    if attachment is not None:
        # A copy down to the hash: the two places must not share a dict (an edit would show in both).
        file_doc = dict(attachment)
        if sha256 is not None:
            file_doc["hash"] = {"sha256": sha256}
        out["file"] = file_doc
    rule = text(record, "definition")
    if rule is not None:
        out["rule"] = {"name": rule}
    links = related((sender, recipient))
    if links:
        out["related"] = links
    return out


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
