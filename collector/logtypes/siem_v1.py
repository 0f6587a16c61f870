"""SIEM logs of API 1.0 (``/api/audit/get-siem-logs``): MTA receipt, process and delivery lines, AV,
spam, journal and the TTP (URL, attachment, impersonation, internal email protect) verdicts.

One answer carries files named by log type (``receipt_20211018093329655.json``, ``ttp_url_...``);
the reader in ``collector.api.siem_files`` reports each record with its file's type, and
:func:`log_type_for` picks the normalizer. Field names are those of Mimecast's "Understanding SIEM
logs" tables as they appear in the public Elastic and Sentinel collectors' samples; the two API
spellings of one field (``Sender``/``sender``, ``IP``/``SourceIP``/``sourceIp``) are all read.

Type names in file names are not published as a list. Public collectors show ``receipt``,
``process``, ``delivery``, ``jrnl`` and ``ttp_url`` (Elastic's samples), and take ``ttp_<x>`` as one
type (Sentinel); the others below are the names those collectors' settings use. A file whose name
says nothing known is typed from its fields, as Elastic's pipeline does, else normalized generically.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from typing import Any

from collector.logtypes.base import (
    ECS_VERSION,
    CursorKind,
    FilterSpec,
    JsonDict,
    LogType,
    compact,
    ip_or_none,
    related,
    text,
    truthy,
    url_fields,
)

PATH = "/api/audit/get-siem-logs"
NAME = "siem"

# File-name prefix (lower case, without the timestamp) -> our type name.
_FILE_PREFIXES = {
    "receipt": "receipt",
    "process": "process",
    "delivery": "delivery",
    "av": "av",
    "avlog": "av",
    "spam": "spam",
    "spameventthread": "spam",
    "spam_event_thread": "spam",
    "jrnl": "journal",
    "journal": "journal",
    "ttp_url": "ttp_url",
    "ttp_ap": "ttp_attachment",
    "ttp_attachment": "ttp_attachment",
    "ttp_ip": "ttp_impersonation",
    "ttp_impersonation": "ttp_impersonation",
    "ttp_iep": "internal_email_protect",
    "ttp_internal": "internal_email_protect",
    "internal_email_protect": "internal_email_protect",
}
# A field that only one type has (Elastic's "definite positive" table, lower-cased keys).
_TYPE_BY_FIELD = {
    "spamscore": "receipt",
    "spaminfo": "receipt",
    "spamlimit": "receipt",
    "error": "receipt",
    "hld": "process",
    "attnames": "process",
    "msgsize": "process",
    "delivered": "delivery",
    "attempt": "delivery",
    "receiptack": "delivery",
    "usetls": "delivery",
    "latency": "delivery",
    "snt": "delivery",
    "rcptacttype": "journal",
    "customerip": "av",
    "mimecastip": "av",
    "senderdomaininternal": "av",
    "reason": "ttp_url",
    "definition": "ttp_impersonation",
    "taggedmalicious": "ttp_impersonation",
    "hits": "ttp_impersonation",
    "scanresultinfo": "internal_email_protect",
    "filename": "ttp_attachment",
}
_TIMESTAMP_TAIL = re.compile(r"(?:_\d{6,})+$")
_TYPE_NAME = re.compile(r"[a-z0-9_]{1,40}")


def file_log_type(file_name: str) -> str | None:
    """Our type name for a file name such as ``ttp_url_20211129153015541.json``, or None if unknown."""
    base = file_name.replace("\\", "/").rsplit("/", 1)[-1].lower()
    stem = base.split(".", 1)[0]
    stem = _TIMESTAMP_TAIL.sub("", stem).replace("-", "_")
    if stem in _FILE_PREFIXES:
        return _FILE_PREFIXES[stem]
    parts = stem.split("_")
    for size in (2, 1):  # "ttp_url_extra" -> "ttp_url"; "receipt_eu1" -> "receipt"
        prefix = "_".join(parts[:size])
        if prefix in _FILE_PREFIXES:
            return _FILE_PREFIXES[prefix]
    return None


def type_from_fields(record: Mapping[str, Any]) -> str:
    """A record's type told by a field only that type carries; "unknown" when none does."""
    for name in record:
        found = _TYPE_BY_FIELD.get(name.lower()) if isinstance(name, str) else None
        if found is not None:
            return found
    return "unknown"


# --- field helpers ------------------------------------------------------------------------------


def _first(record: Mapping[str, Any], *names: str) -> str | None:
    for name in names:
        value = text(record, name)
        if value is not None:
            return value
    return None


_BRACKETED = re.compile(r"<([^<>]*)>\s*$")


def _address(value: str | None) -> str | None:
    """The address of ``a@b``, ``<a@b>`` or ``Name <a@b>``; the null sender ``<>`` is no address."""
    if value is None:
        return None
    match = _BRACKETED.search(value)
    address = (match.group(1) if match else value).strip()
    return address or None


def _ip(record: Mapping[str, Any], *names: str) -> str | None:
    """The first real address; AV and impersonation lines write 0.0.0.0 when there is none."""
    for name in names:
        found = ip_or_none(record.get(name))
        if found is not None and not ipaddress.ip_address(found).is_unspecified:
            return found
    return None


_DIRECTIONS = {"inbound": "inbound", "outbound": "outbound", "internal": "internal", "external": "outbound"}


def _direction(record: Mapping[str, Any]) -> str | None:
    """``Dir`` first: ``Route`` is a direction in TTP/AV lines but a delivery route name in delivery lines."""
    for name in ("Dir", "Route", "route"):
        value = text(record, name)
        if value is not None and value.lower() in _DIRECTIONS:
            return _DIRECTIONS[value.lower()]
    return None


_TLS_VERSION = re.compile(r"(?i)(tls|ssl)v?\s*(\d(?:\.\d)?)")


def _tls(record: Mapping[str, Any]) -> JsonDict:
    out: JsonDict = {"cipher": text(record, "Cphr")}
    version = text(record, "TlsVer")
    match = _TLS_VERSION.fullmatch(version) if version else None
    if match:
        out["version_protocol"] = match.group(1).lower()
        out["version"] = match.group(2)
    use_tls = text(record, "UseTls")
    if use_tls is not None and use_tls.lower() in ("yes", "no"):
        out["established"] = use_tls.lower() == "yes"
    elif out["cipher"] or match:
        out["established"] = True
    return out


_ATT_NAME = re.compile(r'"([^"]*)"')


def _attachment_names(value: Any) -> list[str]:
    """``AttNames`` is one string, ``"a.docx", "b.xlsx"``; a bare name without quotes is one name."""
    if not isinstance(value, str) or not value.strip():
        return []
    quoted = [n for n in _ATT_NAME.findall(value) if n]
    return quoted if quoted else [value.strip()]


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and 0 <= value < 2**63:
        return value
    if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) < 19:
        return int(value.strip())
    return None


def _hashes(record: Mapping[str, Any]) -> JsonDict:
    return {name: text(record, name) for name in ("md5", "sha1", "sha256")}


_ACTIONS = {"acc": "accepted", "rej": "rejected", "hld": "held", "bnc": "bounced", "del": "deleted"}


def _action(value: str | None) -> str | None:
    return _ACTIONS.get(value.lower(), value.lower()) if value else None


# --- the shared part, then what each type adds --------------------------------------------------


def _common(record: Mapping[str, Any], log_type: str) -> JsonDict:
    sender = _address(_first(record, "Sender", "sender"))
    header_from = _address(text(record, "headerFrom"))
    recipient = _address(_first(record, "Rcpt", "Recipient", "recipient"))
    return {
        "ecs": {"version": ECS_VERSION},
        "event": {"provider": log_type, "category": ["email"], "type": ["info"]},
        "organization": {"id": text(record, "acc")},
        "email": {
            "from": {"address": [header_from or sender] if (header_from or sender) else None},
            "sender": {"address": sender},
            "to": {"address": [recipient] if recipient else None},
            "subject": _first(record, "Subject", "subject"),
            "message_id": _first(record, "MsgId", "msgid"),
            "local_id": text(record, "aCode"),
            "direction": _direction(record),
        },
        "source": {"ip": _ip(record, "IP", "SourceIP", "sourceIp")},
    }


def _alert(doc: JsonDict, *categories: str) -> None:
    event = doc["event"]
    event["kind"] = "alert"
    event["category"] = ["email", *categories]
    event["type"] = ["indicator"] if categories else ["denied"]


def _receipt(record: Mapping[str, Any], doc: JsonDict) -> None:
    act = text(record, "Act")
    doc["event"]["action"] = _action(act)
    doc["tls"] = _tls(record)
    rejected = (act is not None and act.lower() == "rej") or bool(text(record, "RejType"))
    doc["event"]["outcome"] = "failure" if rejected else ("success" if act else None)
    doc["event"]["reason"] = _first(record, "RejType", "RejInfo", "Error")
    virus = text(record, "Virus")
    if virus:
        doc["event"]["reason"] = virus
        _alert(doc, "malware")
    elif rejected:
        _alert(doc)


def _process(record: Mapping[str, Any], doc: JsonDict) -> None:
    act = text(record, "Act")
    held = text(record, "Hld")
    doc["event"]["action"] = _action(act) or ("held" if held else None)
    names = _attachment_names(record.get("AttNames"))
    doc["email"]["attachments"] = [{"file": {"name": n}} for n in names] or None
    if held or (act is not None and act.lower() in ("hld", "rej", "bnc")):
        doc["event"]["reason"] = held
        _alert(doc)


def _delivery(record: Mapping[str, Any], doc: JsonDict) -> None:
    # In a delivery line IP is the host delivered to (Elastic maps it to source.ip; Mimecast's table
    # says "the IP address of the receiving server"): destination.ip here.
    doc["destination"] = {"ip": doc.pop("source")["ip"]}
    doc["tls"] = _tls(record)
    delivered = truthy(record.get("Delivered"))
    doc["event"]["action"] = None if delivered is None else ("delivered" if delivered else "delivery_failed")
    doc["event"]["outcome"] = None if delivered is None else ("success" if delivered else "failure")
    doc["event"]["reason"] = _first(record, "RejType", "RejInfo", "Err")
    if text(record, "RejType"):
        _alert(doc)


def _file(record: Mapping[str, Any]) -> JsonDict:
    name = text(record, "fileName")
    return {
        "name": name,
        "extension": text(record, "fileExt"),
        "mime_type": text(record, "fileMime"),
        "size": _int(record.get("Size")),
        "hash": _hashes(record),
    }


def _av(record: Mapping[str, Any], doc: JsonDict) -> None:
    doc["file"] = _file(record)
    doc["event"]["reason"] = text(record, "Virus")
    doc["event"]["action"] = "virus_detected"
    _alert(doc, "malware")


def _attachment(record: Mapping[str, Any], doc: JsonDict) -> None:
    doc["file"] = _file(record)
    doc["event"]["action"] = _action(_first(record, "Action", "action")) or "attachment_protect"
    _alert(doc, "threat", "malware")


def _spam(record: Mapping[str, Any], doc: JsonDict) -> None:
    doc["event"]["action"] = "spam_detected"
    _alert(doc, "threat")


def _journal(record: Mapping[str, Any], doc: JsonDict) -> None:
    doc["event"]["action"] = "journaled"


def _url(record: Mapping[str, Any], doc: JsonDict) -> None:
    url = _first(record, "url", "URL")
    doc["url"] = url_fields(url) if url else None
    doc["event"]["action"] = _action(_first(record, "action", "Action"))
    doc["event"]["reason"] = _first(record, "reason", "ScanResultInfo", "UrlCategory", "urlCategory")
    doc["rule"] = {"category": _first(record, "urlCategory", "UrlCategory")}
    _alert(doc, "threat")


def _impersonation(record: Mapping[str, Any], doc: JsonDict) -> None:
    action = _first(record, "Action", "action")
    doc["event"]["action"] = _action(action)
    doc["rule"] = {"name": text(record, "Definition")}
    if truthy(record.get("TaggedMalicious")) or (action is not None and action.lower() in ("hold", "bounce")):
        _alert(doc, "threat")


_TYPE_PARTS: dict[str, Callable[[Mapping[str, Any], JsonDict], None]] = {
    "receipt": _receipt,
    "process": _process,
    "delivery": _delivery,
    "av": _av,
    "spam": _spam,
    "journal": _journal,
    "ttp_url": _url,
    "internal_email_protect": _url,
    "ttp_attachment": _attachment,
    "ttp_impersonation": _impersonation,
}
TYPES = tuple(_TYPE_PARTS)


def _related(doc: JsonDict) -> JsonDict:
    email = doc.get("email", {})
    users: list[str] = []
    for part in ("from", "to"):
        users.extend(email.get(part, {}).get("address") or [])
    users.append(email.get("sender", {}).get("address"))
    ips = (doc.get("source", {}).get("ip"), doc.get("destination", {}).get("ip"))
    return related(users, ips, [doc.get("url", {}).get("domain")])


def normalize_as(log_type: str, record: Mapping[str, Any]) -> JsonDict:
    """ECS fields of one SIEM record of ``log_type`` (pure); an unknown type gets the shared fields only."""
    doc = _common(record, log_type)
    part = _TYPE_PARTS.get(log_type)
    if part is not None:
        part(record, doc)
    doc = compact(doc)
    doc["related"] = _related(doc)
    return compact(doc)


FILTERS = {
    "file_format": FilterSpec("fileFormat", "str", ("json", "key_value"), "file format asked for"),
    "compress": FilterSpec("compress", "bool", (), "ask for zipped files"),
}


def _declare(log_type: str | None) -> LogType:
    """The declaration for records of one file type; None: the type is read from each record's fields."""

    def normalize(record: Mapping[str, Any]) -> JsonDict:
        return normalize_as(log_type or type_from_fields(record), record)

    return LogType(
        name=NAME,
        path=PATH,
        cursor_kind=CursorKind.SIEM_TOKEN,
        default_enabled=False,  # needs Enhanced Logging on the account: asked for, not assumed
        array_key="data",  # each file is {"data": [...]} (or NDJSON / key-value lines: see siem_files)
        from_field="",  # a token stream: no time window in the request
        to_field="",
        time_field="datetime",  # 2021-10-18T09:02:43+0100: any UTC offset, second precision
        # The whole record: repeats only come from reading the same file again, which gives the very
        # same records, and any subset collides across types (a receipt and a journal line of one
        # message share aCode, datetime, Sender and Rcpt; Elastic's fingerprint adds its log_type).
        dedup_fields=None,
        normalize=normalize,
        send_oldest_first=False,
        filters=FILTERS,
    )


LOG_TYPE = _declare(None)
_BY_TYPE = {name: _declare(name) for name in TYPES}


def log_type_for(file_type: str | None) -> LogType:
    """The declaration that normalizes a file's records: by its type, else by each record's fields."""
    if file_type is None:
        return LOG_TYPE
    return _BY_TYPE.get(file_type, LOG_TYPE)
