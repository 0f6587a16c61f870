"""ArcSight CEF payload encoding: one spooled ECS event in, one CEF line out (no syslog header).

``CEF:0|Mimecast|<observer.product>|1.0|<Signature ID>|<Name>|<Severity>|<extension>``

Header per log type ("malicious" is the normalizer's verdict: ECS ``event.type`` holds ``indicator``,
i.e. ``scanResult`` is malicious or ``taggedMalicious`` is true; collector.encodings.leef uses the same ids and
severities, so both formats rank an event alike):

    log type             Signature ID                  Name                             Severity
    -------------------  ----------------------------  -------------------------------  ------------------------
    ttp_url              ttp_url:<action>              URL Protect click: <action>      malicious: 9 if allow,
                                                                                        else 8; clean: 4 if
                                                                                        block, else 3
    ttp_impersonation    ttp_impersonation:<action>    Impersonation Protect: <action>  malicious: 8 (held or
                                                                                        not); hold: 6; else 5
    archive_search       archive_search:search         Archive search                   3
                         archive_search:admin_search   Archive search by admin          4 (user.roles has admin)
    ttp_attachment       ttp_attachment:<result>       Attachment Protect: <result>     malicious: 8; unsafe,
                                                                                        error, timeout: 5;
                                                                                        else 3
    dlp                  dlp:<action>                  DLP policy: <action>             block: 6; hold: 5; else 4
    audit                audit:<action>                Audit: <action>                  failed (event.outcome
                                                                                        failure): 5; else 3
    held_release         held_release:<action>         Held message <action>            released: 4; else 3
    (normalize error)    <log type>:unparsed           Unparsed Mimecast record         5
    (other log type)     <log type>:<action>           Mimecast event: <action>         5

``<action>`` is ECS ``event.action``, ``<result>`` the sandbox verdict ``mimecast.result`` (``unknown`` when
absent). The extension is declared per log type
in :data:`CEF_FIELDS` (CEF key -> dotted ECS path or getter); a value is left out when the event lacks it.

Escaping (CEF spec): in the header ``\\`` and ``|`` are backslash-escaped and line breaks, which the header
may not hold, become spaces; in the extension ``\\`` and ``=`` are backslash-escaped and CR/LF are written
``\\r``/``\\n``, so a value never breaks the line. Pipes need no escape in the extension. Every value is cut
to :data:`MAX_VALUE_CHARS` characters (the dictionary's ``csN`` limit) before escaping, so an escape is
never split; ArcSight itself cuts shorter keys (``msg``, ``request``: 1023) further. The line is UTF-8.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from collector.logtypes.base import NORMALIZE_ERROR_TAG

Doc = Mapping[str, Any]
Getter = Callable[[Doc], Any]
Source = str | Getter  # a dotted path into the event ("email.subject"), or a function of the event

VENDOR = "Mimecast"
DEFAULT_PRODUCT = "Mimecast Email Security"
DEVICE_VERSION = "1.0"
MAX_VALUE_CHARS = 4000
UNPARSED = "unparsed"  # the table row of events tagged mimecast_normalize_error
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Labeled:
    """A CEF custom field: where its value comes from, and the label sent beside it as ``<key>Label``."""

    label: str
    source: Source


@dataclass(frozen=True)
class Verdict:
    """What the header says about one event (shared with collector.encodings.leef so both formats agree)."""

    event_id: str
    name: str
    severity: int


# --- reading the event (shared with collector.encodings.leef) ------------------------------------------------


def lookup(doc: Doc, source: Source) -> Any:
    """The value a source points at, or None when any step of the path is missing."""
    if not isinstance(source, str):
        return source(doc)
    value: Any = doc
    for part in source.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def field_text(value: Any) -> str | None:
    """A value as one text (lists comma-joined, objects as JSON), cut to the limit; None when empty."""
    if value is None:
        return None
    if isinstance(value, bool):
        out = "true" if value else "false"
    elif isinstance(value, str):
        out = value
    elif isinstance(value, list):
        out = ",".join(t for t in (field_text(v) for v in value) if t is not None)
    elif isinstance(value, dict):
        out = orjson.dumps(value).decode()
    else:
        out = str(value)
    return out[:MAX_VALUE_CHARS] or None


def event_time(doc: Doc) -> datetime | None:
    """The event's ``@timestamp`` as an aware UTC datetime, or None when it is missing or unreadable."""
    stamp = doc.get("@timestamp")
    if not isinstance(stamp, str):
        return None
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def event_millis(doc: Doc) -> int | None:
    """Event time in milliseconds since the epoch (exact: timedelta arithmetic, no float rounding)."""
    moment = event_time(doc)
    return None if moment is None else (moment - _EPOCH) // timedelta(milliseconds=1)


def source_ip(version: int) -> Getter:
    """Getter of ``source.ip`` only when it is an address of this IP version (CEF keeps v4 and v6 apart)."""

    def get(doc: Doc) -> str | None:
        value = lookup(doc, "source.ip")
        if not isinstance(value, str):
            return None
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            return None
        return value if address.version == version else None

    return get


def _malicious(doc: Doc) -> bool:
    kinds = lookup(doc, "event.type")
    return isinstance(kinds, list) and "indicator" in kinds


def _admin(doc: Doc) -> bool:
    roles = lookup(doc, "user.roles")
    return isinstance(roles, list) and "admin" in roles


def _action(doc: Doc) -> str:
    return field_text(lookup(doc, "event.action")) or "unknown"


# --- header: signature id, name, severity ---------------------------------------------------------


# (malicious, action) -> severity where the action changes it; otherwise malicious 8, clean 3 (URL) or
# malicious 8, clean 5 (impersonation). A malicious link let through outranks one stopped or warned
# about; a malicious message that was not held reached the mailbox, so it never ranks below a held one.
_TTP_URL_SEVERITY: Mapping[tuple[bool, str], int] = {(True, "allow"): 9, (False, "block"): 4}
_TTP_IMPERSONATION_SEVERITY: Mapping[tuple[bool, str], int] = {(False, "hold"): 6}


def _ttp_url(doc: Doc) -> Verdict:
    action, malicious = _action(doc), _malicious(doc)
    severity = _TTP_URL_SEVERITY.get((malicious, action), 8 if malicious else 3)
    return Verdict(f"ttp_url:{action}", f"URL Protect click: {action}", severity)


def _ttp_impersonation(doc: Doc) -> Verdict:
    action, malicious = _action(doc), _malicious(doc)
    severity = _TTP_IMPERSONATION_SEVERITY.get((malicious, action), 8 if malicious else 5)
    return Verdict(f"ttp_impersonation:{action}", f"Impersonation Protect: {action}", severity)


def _archive_search(doc: Doc) -> Verdict:
    if _admin(doc):
        return Verdict("archive_search:admin_search", "Archive search by admin", 4)
    return Verdict("archive_search:search", "Archive search", 3)


_ATTACHMENT_SEVERITY: Mapping[str, int] = {"malicious": 8, "unsafe": 5, "error": 5, "timeout": 5}
_DLP_SEVERITY: Mapping[str, int] = {"block": 6, "hold": 5}


def _ttp_attachment(doc: Doc) -> Verdict:
    result = field_text(lookup(doc, "mimecast.result")) or "unknown"
    severity = 8 if _malicious(doc) else _ATTACHMENT_SEVERITY.get(result, 3)
    return Verdict(f"ttp_attachment:{result}", f"Attachment Protect: {result}", severity)


def _dlp(doc: Doc) -> Verdict:
    action = _action(doc)
    return Verdict(f"dlp:{action}", f"DLP policy: {action}", _DLP_SEVERITY.get(action, 4))


def _audit(doc: Doc) -> Verdict:
    action = _action(doc)
    return Verdict(f"audit:{action}", f"Audit: {action}", 5 if lookup(doc, "event.outcome") == "failure" else 3)


def _held_release(doc: Doc) -> Verdict:
    action = _action(doc)
    return Verdict(f"held_release:{action}", f"Held message {action}", 4 if action == "released" else 3)


def _siem(doc: Doc) -> Verdict:
    """API 1.0 SIEM lines: the MTA stage or TTP check in the id; alerts rank by what they found."""
    stage, action = field_text(lookup(doc, "event.provider")) or "unknown", _action(doc)
    categories = lookup(doc, "event.category")
    malware = isinstance(categories, list) and "malware" in categories
    alert = lookup(doc, "event.kind") == "alert"
    severity = 8 if malware else (7 if alert and _malicious(doc) else (5 if alert else 3))
    return Verdict(f"siem:{stage}:{action}", f"Mimecast {stage.replace('_', ' ')}: {action}", severity)


_VERDICTS: Mapping[str, Callable[[Doc], Verdict]] = {
    "siem": _siem,
    "ttp_url": _ttp_url,
    "ttp_impersonation": _ttp_impersonation,
    "archive_search": _archive_search,
    "ttp_attachment": _ttp_attachment,
    "dlp": _dlp,
    "audit": _audit,
    "held_release": _held_release,
}


def log_type_of(doc: Doc) -> str:
    """The event's log type label (``unknown`` when absent)."""
    return field_text(lookup(doc, "labels.mimecast_log_type")) or "unknown"


def table_row(doc: Doc) -> str:
    """Which row of a field table an event uses: its log type, or ``unparsed`` for a kept raw record."""
    tags = doc.get("tags")
    if isinstance(tags, list) and NORMALIZE_ERROR_TAG in tags:
        return UNPARSED
    return log_type_of(doc)


def classify(doc: Doc) -> Verdict:
    """Signature id, name and severity of an event (see the table in the module docstring)."""
    row = table_row(doc)
    if row == UNPARSED:
        return Verdict(f"{log_type_of(doc)}:{UNPARSED}", "Unparsed Mimecast record", 5)
    verdict = _VERDICTS.get(row)
    if verdict is None:  # a log type added without a row here still encodes, generically
        action = _action(doc)
        return Verdict(f"{row}:{action}", f"Mimecast event: {action}", 5)
    return verdict(doc)


# --- extension: CEF key -> where the value comes from, per log type --------------------------------

_COMMON: Mapping[str, Source | Labeled] = {
    "rt": event_millis,
    "externalId": "event.id",
    "cat": "event.dataset",
    "act": "event.action",
}
_ACCOUNT: Mapping[str, Source | Labeled] = {"cs5": Labeled("Mimecast Account", "labels.mimecast_account")}
_SOURCE_IP: Mapping[str, Source | Labeled] = {
    "src": source_ip(4),
    "c6a2": Labeled("Source IPv6 Address", source_ip(6)),  # src is IPv4-only in the CEF dictionary
}

CEF_FIELDS: Mapping[str, Mapping[str, Source | Labeled]] = {
    "ttp_url": {
        **_COMMON,
        **_SOURCE_IP,
        "suser": "email.from.address",
        "duser": "user.email",
        "request": "url.original",
        "msg": "email.subject",
        "cs1": Labeled("Rule Name", "rule.name"),
        "cs2": Labeled("Message ID", "email.message_id"),
        "cs3": Labeled("Scan Result", "mimecast.scanResult"),
        "cs4": Labeled("URL Category", "mimecast.category"),
        **_ACCOUNT,
    },
    "ttp_impersonation": {
        **_COMMON,
        **_SOURCE_IP,
        "suser": "email.from.address",
        "duser": "email.to.address",
        "msg": "email.subject",
        "cs1": Labeled("Rule Name", "rule.name"),
        "cs2": Labeled("Message ID", "email.message_id"),
        "cs3": Labeled("Impersonation Identifiers", "mimecast.identifiers"),
        "cs4": Labeled("Tagged Malicious", "mimecast.taggedMalicious"),
        "cn1": Labeled("Impersonation Hits", "mimecast.hits"),
        **_ACCOUNT,
    },
    "archive_search": {
        **_COMMON,
        "suser": "user.email",  # the searcher is the actor: CEF's source user
        "spriv": lambda doc: "Administrator" if _admin(doc) else None,  # a value the dictionary names
        "msg": "message",
        "cs1": Labeled("Search Text", "mimecast.searchText"),
        "cs2": Labeled("Search Path", "mimecast.searchPath"),
        "cs3": Labeled("Search Reason", "event.reason"),
        "cs4": Labeled("Search Source", "mimecast.source"),
        **_ACCOUNT,
    },
    "ttp_attachment": {
        **_COMMON,
        "suser": "email.from.address",
        "duser": "email.to.address",
        "fname": "file.name",
        "fileHash": "file.hash.sha256",
        "fileType": "file.mime_type",
        "msg": "email.subject",
        "cs1": Labeled("Rule Name", "rule.name"),
        "cs2": Labeled("Message ID", "email.message_id"),
        "cs3": Labeled("Sandbox Result", "mimecast.result"),
        **_ACCOUNT,
    },
    "dlp": {
        **_COMMON,
        "suser": "email.from.address",
        "duser": "email.to.address",
        "msg": "email.subject",
        "cs1": Labeled("Policy", "rule.name"),
        "cs2": Labeled("Message ID", "email.message_id"),
        "cs3": Labeled("Route", "email.direction"),
        **_ACCOUNT,
    },
    "audit": {
        **_COMMON,
        **_SOURCE_IP,
        "suser": "user.email",  # the user who acted
        "outcome": "event.outcome",
        "msg": "message",
        "cs1": Labeled("Audit Category", "mimecast.category"),
        **_ACCOUNT,
    },
    "held_release": {
        **_COMMON,
        "suser": "email.from.address",
        "duser": "email.to.address",
        "msg": "email.subject",
        "cs1": Labeled("Policy", "rule.name"),
        "cs2": Labeled("Held Reason", "event.reason"),
        "cs3": Labeled("Released By", "user.email"),
        **_ACCOUNT,
    },
    "siem": {
        **_COMMON,
        **_SOURCE_IP,
        "dst": "destination.ip",  # delivery lines: the host delivered to
        "suser": "email.from.address",
        "duser": "email.to.address",
        "msg": "email.subject",
        "request": "url.original",
        "fname": "file.name",
        "fileHash": "file.hash.sha256",
        "reason": "event.reason",
        "cs1": Labeled("SIEM Log Type", "event.provider"),
        "cs2": Labeled("Message ID", "email.message_id"),
        "cs3": Labeled("Rule Name", "rule.name"),
        "cs4": Labeled("Mimecast Account Code", "organization.id"),
        **_ACCOUNT,
    },
    UNPARSED: {
        **_COMMON,
        "msg": "error.message",
        **_ACCOUNT,
        "cs6": Labeled("Mimecast Record", "mimecast"),  # the raw record, as JSON
    },
}
_GENERIC: Mapping[str, Source | Labeled] = {**_COMMON, **_ACCOUNT}

_HEADER_ESCAPES = str.maketrans({"\\": "\\\\", "|": "\\|", "\n": " ", "\r": " "})
_VALUE_ESCAPES = str.maketrans({"\\": "\\\\", "=": "\\=", "\n": "\\n", "\r": "\\r"})


def read_event(doc: bytes) -> tuple[Doc, Verdict, str]:
    """A spooled event (empty if it is not an object), its verdict and its product name: what CEF
    and LEEF headers are made of."""
    event = orjson.loads(doc)
    if not isinstance(event, dict):
        event = {}
    return event, classify(event), field_text(lookup(event, "observer.product")) or DEFAULT_PRODUCT


def header_fields(*fields: str) -> str:
    """Header fields joined by "|", escaped as CEF and LEEF both require (pipe, backslash, no breaks)."""
    return "|".join(field.translate(_HEADER_ESCAPES) for field in fields)


def encode_cef(doc: bytes) -> bytes:
    """One CEF line (UTF-8, no newline, no syslog header) for one spooled ECS event."""
    event, verdict, product = read_event(doc)
    pairs: list[str] = []
    for key, spec in CEF_FIELDS.get(table_row(event), _GENERIC).items():
        value = field_text(lookup(event, spec.source if isinstance(spec, Labeled) else spec))
        if value is None:
            continue
        pairs.append(f"{key}={value.translate(_VALUE_ESCAPES)}")
        if isinstance(spec, Labeled):
            pairs.append(f"{key}Label={spec.label.translate(_VALUE_ESCAPES)}")
    header = header_fields(VENDOR, product, DEVICE_VERSION, verdict.event_id, verdict.name, str(verdict.severity))
    line = f"CEF:0|{header}|" + " ".join(pairs)
    # "replace": a lone surrogate must not stop the stream; it is sent as "?" instead.
    return line.encode("utf-8", "replace")
