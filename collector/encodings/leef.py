"""QRadar LEEF 2.0 payload encoding: one spooled ECS event in, one LEEF line out (no syslog header).

``LEEF:2.0|Mimecast|<observer.product>|1.0|<EventID>|x09|devTime=...<TAB>devTimeFormat=...<TAB>sev=...``

EventID and ``sev`` (1-10) are the CEF Signature ID and Severity, from :func:`collector.encodings.cef.classify`
(table in collector.encodings.cef): ``ttp_url:<action>``, ``ttp_impersonation:<action>``,
``archive_search:search`` / ``archive_search:admin_search``, ``ttp_attachment:<result>``, ``dlp:<action>``,
``audit:<action>``, ``held_release:<action>``, ``<log type>:unparsed`` for records tagged
mimecast_normalize_error. Attributes are declared per log type in :data:`LEEF_FIELDS` (attribute ->
dotted ECS path or getter); predefined LEEF keys where one fits (``src``, ``usrName``, ``url``, ``cat``,
``policy``, ``role``), camelCase custom keys otherwise. ``proto`` is left out: QRadar reads it as the
transport protocol, and these records carry none.

Delimiter: tab, the LEEF 1.0 default QRadar splits on, written ``x09`` in the header (LEEF 2.0 takes one
character or its hex code prefixed ``x`` or ``0x``; the hex form keeps the header readable).

Escaping: LEEF defines none for attribute values, so this encoder guarantees the delimiter and line
breaks never appear raw: a backslash becomes ``\\\\``, a tab ``\\t``, LF ``\\n``, CR ``\\r``. ``=`` needs
no escape (a pair splits at its first ``=``) nor does ``|`` (the header ends at the sixth unescaped
pipe). Header fields escape ``\\`` and ``|`` with a backslash, and line breaks become spaces. Values are
cut to :data:`collector.encodings.cef.MAX_VALUE_CHARS` characters before escaping. ``devTime`` is the event time
in UTC with milliseconds, described by ``devTimeFormat`` (Java SimpleDateFormat).
"""

from __future__ import annotations

from collections.abc import Mapping

from collector.encodings.cef import (
    DEVICE_VERSION,
    UNPARSED,
    VENDOR,
    Doc,
    Source,
    event_time,
    field_text,
    header_fields,
    lookup,
    read_event,
    table_row,
)

DELIMITER = "\t"
DELIMITER_FIELD = "x09"
DEV_TIME_FORMAT = "yyyy-MM-dd'T'HH:mm:ss.SSSZ"


def dev_time(doc: Doc) -> str | None:
    """Event time as ``2024-11-13T13:03:11.000+0000`` (by hand: strftime writes year 999 as "999")."""
    m = event_time(doc)
    if m is None:
        return None
    clock = f"{m.hour:02d}:{m.minute:02d}:{m.second:02d}.{m.microsecond // 1000:03d}"
    return f"{m.year:04d}-{m.month:02d}-{m.day:02d}T{clock}+0000"


_COMMON: Mapping[str, Source] = {
    "cat": "event.dataset",
    "externalId": "event.id",
    "action": "event.action",
}
_ACCOUNT: Mapping[str, Source] = {"mimecastAccount": "labels.mimecast_account"}

LEEF_FIELDS: Mapping[str, Mapping[str, Source]] = {
    "ttp_url": {
        **_COMMON,
        "src": "source.ip",
        "usrName": "user.email",  # the user who clicked
        "url": "url.original",
        "sender": "email.from.address",
        "subject": "email.subject",
        "messageId": "email.message_id",
        "policy": "rule.name",
        "scanResult": "mimecast.scanResult",
        "urlCategory": "mimecast.category",
        "emailDirection": "email.direction",
        **_ACCOUNT,
    },
    "ttp_impersonation": {
        **_COMMON,
        "src": "source.ip",
        "usrName": "email.to.address",  # the internal user the message targeted
        "sender": "email.from.address",
        "subject": "email.subject",
        "messageId": "email.message_id",
        "policy": "rule.name",
        "identifiers": "mimecast.identifiers",
        "hits": "mimecast.hits",
        "taggedMalicious": "mimecast.taggedMalicious",
        **_ACCOUNT,
    },
    "archive_search": {
        **_COMMON,
        "usrName": "user.email",  # the user who searched
        "role": "user.roles",
        "description": "message",
        "searchText": "mimecast.searchText",
        "searchPath": "mimecast.searchPath",
        "searchReason": "event.reason",
        "searchSource": "mimecast.source",
        **_ACCOUNT,
    },
    "ttp_attachment": {
        **_COMMON,
        "usrName": "email.to.address",  # the internal user the attachment was sent to
        "sender": "email.from.address",
        "subject": "email.subject",
        "messageId": "email.message_id",
        "policy": "rule.name",
        "fileName": "file.name",
        "fileHash": "file.hash.sha256",
        "fileType": "file.mime_type",
        "sandboxResult": "mimecast.result",
        "emailDirection": "email.direction",
        **_ACCOUNT,
    },
    "dlp": {
        **_COMMON,
        "usrName": "email.from.address",  # the (usually internal) sender the policy caught
        "recipient": "email.to.address",
        "subject": "email.subject",
        "messageId": "email.message_id",
        "policy": "rule.name",
        "emailDirection": "email.direction",
        **_ACCOUNT,
    },
    "audit": {
        **_COMMON,
        "src": "source.ip",
        "usrName": "user.email",  # the user who acted
        "outcome": "event.outcome",
        "description": "message",
        "auditCategory": "mimecast.category",
        **_ACCOUNT,
    },
    "held_release": {
        **_COMMON,
        "usrName": "user.email",  # who released or rejected the message
        "sender": "email.from.address",
        "recipient": "email.to.address",
        "subject": "email.subject",
        "policy": "rule.name",
        "heldReason": "event.reason",
        **_ACCOUNT,
    },
    "siem": {
        **_COMMON,
        "src": "source.ip",
        "dst": "destination.ip",
        "usrName": "email.to.address",  # the recipient
        "sender": "email.from.address",
        "subject": "email.subject",
        "messageId": "email.message_id",
        "url": "url.original",
        "fileName": "file.name",
        "fileHash": "file.hash.sha256",
        "policy": "rule.name",
        "reason": "event.reason",
        "siemLogType": "event.provider",
        "emailDirection": "email.direction",
        "accountCode": "organization.id",
        **_ACCOUNT,
    },
    UNPARSED: {
        **_COMMON,
        "errorMessage": "error.message",
        **_ACCOUNT,
        "rawRecord": "mimecast",  # the raw record, as JSON
    },
}
_GENERIC: Mapping[str, Source] = {**_COMMON, **_ACCOUNT}

_VALUE_ESCAPES = str.maketrans({"\\": "\\\\", DELIMITER: "\\t", "\n": "\\n", "\r": "\\r"})


def encode_leef(doc: bytes) -> bytes:
    """One LEEF 2.0 line (UTF-8, no newline, no syslog header) for one spooled ECS event."""
    event, verdict, product = read_event(doc)
    pairs: list[tuple[str, str]] = []
    moment = dev_time(event)
    if moment is not None:
        pairs += [("devTime", moment), ("devTimeFormat", DEV_TIME_FORMAT)]
    pairs.append(("sev", str(verdict.severity)))
    for key, source in LEEF_FIELDS.get(table_row(event), _GENERIC).items():
        value = field_text(lookup(event, source))
        if value is not None:
            pairs.append((key, value))
    attributes = DELIMITER.join(f"{key}={value.translate(_VALUE_ESCAPES)}" for key, value in pairs)
    header = header_fields(VENDOR, product, DEVICE_VERSION, verdict.event_id)
    # "replace": a lone surrogate must not stop the stream; it is sent as "?" instead.
    return f"LEEF:2.0|{header}|{DELIMITER_FIELD}|{attributes}".encode("utf-8", "replace")
