"""SIEM logs from the API 2.0 batch files: Cloud Gateway (``siem_cg``) and Cloud Integrated (``siem_ci``).

Each record is one line of a gzip NDJSON file: camelCase fields, ``timestamp`` in epoch milliseconds,
``type``/``subtype``, ``processingId``/``aggregateId`` (per message and per processing step),
``accountId``. Type names and fields as in Elastic's mimecast integration (data streams
``siem_logs`` with the cel input, ``cloud_integrated_logs``) and its test logs; the Mimecast
reference names the same types. Where fields are free text (``"true"``, ``"Acc"``, ``"Inbound"``
vs ``"INBOUND"``) both spellings seen are accepted.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from collector.logtypes.base import (
    ECS_VERSION,
    CursorKind,
    JsonDict,
    LogType,
    TimeFormat,
    compact,
    ip_or_none,
    text,
    truthy,
    url_fields,
)

#: Cloud Gateway types, spelled as the listing's ``type`` parameter takes them.
CG_TYPES = (
    "receipt",
    "process",
    "delivery",
    "av",
    "spam",
    "internal email protect",
    "impersonation protect",
    "url protect",
    "attachment protect",
    "journal",
)
#: Cloud Integrated types.
CI_TYPES = ("entities", "mailflow", "urlclick")

_DIRECTIONS = {"inbound": "inbound", "outbound": "outbound", "internal": "internal", "external": "outbound"}
_ACTIONS = {  # receipt/process `action` codes -> ECS event.action, outcome, and whether it is an alert
    "acc": ("accepted", "success", False),
    "rej": ("rejected", "failure", True),
    "hld": ("held", "success", True),
    "sdbx": ("sandboxed", "success", False),
    "bnc": ("bounced", "failure", True),
    "del": ("deleted", "success", True),
}
_TTP_TYPES = {"internal email protect", "impersonation protect", "url protect", "attachment protect"}


def normalize(record: Mapping[str, Any]) -> JsonDict:
    """ECS fields of one SIEM batch record (pure). Unknown types get the common fields only."""
    doc: JsonDict = {"ecs": {"version": ECS_VERSION}, "event": {}}
    fill(record, doc)
    return doc


def fill(record: Mapping[str, Any], doc: JsonDict) -> None:
    """Write the record's ECS fields into ``doc``, which holds ``event`` already (perhaps with fields
    of its own, kept where they are): what :func:`normalize` returns, without building it twice."""
    kind = (text(record, "type") or "").lower()
    event = doc["event"]
    event["action"] = kind or None
    event["category"] = ["email"]
    event["type"] = ["info"]
    event["provider"] = kind or None
    _common(record, doc)
    specific = _BY_TYPE.get(kind)
    if specific is not None:
        specific(record, doc)
    # Built sparse (this runs for millions of lines a day): only what the type functions may leave
    # empty is cleaned, in place (keys keep their order), instead of walking the whole document.
    for name in [name for name, value in event.items() if value is None]:
        del event[name]
    for name in ("rule", "threat", "user"):  # tls is built clean
        if name in doc:
            cleaned = compact(doc[name])
            if cleaned:
                doc[name] = cleaned
            else:
                del doc[name]
    related = _related(doc)
    if related:
        doc["related"] = related


def _common(record: Mapping[str, Any], doc: JsonDict) -> None:
    get = record.get
    email: JsonDict = {}
    envelope = text(record, "senderEnvelope")
    sender = envelope or text(record, "senderHeader")
    if sender:
        email["from"] = {"address": [sender]}
    if envelope:
        email["sender"] = {"address": envelope}
    recipients = _addresses(get("recipients"))
    if recipients:
        email["to"] = {"address": recipients}
    subject = text(record, "subject")
    if subject:
        email["subject"] = subject
    message_id = text(record, "messageId")
    if message_id:
        email["message_id"] = message_id
    direction = _DIRECTIONS.get((text(record, "direction") or text(record, "route") or "").lower())
    if direction:
        email["direction"] = direction
    attachments = _attachments(record)
    if attachments:
        email["attachments"] = attachments
    if email:
        doc["email"] = email
    source = _ip(get("senderIp"))
    if source:
        doc["source"] = {"ip": source}
    destination = _ip(get("destinationIp"))
    if destination:
        doc["destination"] = {"ip": destination}
    hostname = text(record, "Hostname")
    if hostname:
        doc["host"] = {"hostname": hostname}
    account = text(record, "accountId")
    if account:
        doc["cloud"] = {"account": {"id": account}}


def _ip(value: Any) -> str | None:
    return _canonical_ip(value) if value.__class__ is str else ip_or_none(value)


# The same few sender addresses recur all day, and an IPv6 one costs ipaddress a dozen microseconds;
# bounded, so a file of distinct addresses costs at most this many entries.
_canonical_ip = functools.lru_cache(maxsize=4096)(ip_or_none)


def _receipt(record: Mapping[str, Any], doc: JsonDict) -> None:
    _action(record, doc)
    event = doc["event"]
    if text(record, "rejectionType") or text(record, "rejectionCode"):
        event["kind"] = "alert"
        event["outcome"] = "failure"
        event["reason"] = text(record, "rejectionInfo")
    if text(record, "virusFound"):
        event["kind"] = "alert"
    tls_version = text(record, "tlsVersion")
    tls = _tls(tls_version, text(record, "tlsCipher"))
    established = True if tls_version else truthy(record.get("tlsUsed"))
    if established is not None:
        tls["established"] = established
    if tls:
        doc["tls"] = tls


def _tls(version: str | None, cipher: str | None) -> JsonDict:
    """ECS ``tls.*`` without empty fields (built clean: no compact() pass afterwards)."""
    tls: JsonDict = {}
    if version:
        protocol, _, number = version.partition("v")  # "TLSv1.3" -> tls, 1.3
        if number:
            tls["version"] = number
        if protocol:
            tls["version_protocol"] = protocol.lower()
    if cipher:
        tls["cipher"] = cipher
    return tls


def _process(record: Mapping[str, Any], doc: JsonDict) -> None:
    _action(record, doc)
    if text(record, "holdReason"):
        doc["event"].update(kind="alert", reason=text(record, "holdReason"))


def _delivery(record: Mapping[str, Any], doc: JsonDict) -> None:
    delivered = truthy(record.get("delivered"))
    doc["event"]["action"] = "delivered" if delivered else "delivery_failed" if delivered is False else "delivery"
    doc["event"]["outcome"] = {True: "success", False: "failure"}.get(delivered) if delivered is not None else None
    doc["event"]["reason"] = text(record, "deliveryErrors")
    tls = _tls(text(record, "tlsVersion"), text(record, "tlsCipher"))
    if tls:
        doc["tls"] = tls


def _threat(record: Mapping[str, Any], doc: JsonDict) -> None:
    """AV, spam and the TTP types: each record is a detection, so an alert."""
    event = doc["event"]
    event.update(kind="alert", category=["email", "threat"], type=["indicator"])
    verdict = text(record, "scanResults") or text(record, "virusFound") or text(record, "urlCategory")
    event["reason"] = verdict
    action = text(record, "action")
    if action:
        event["action"] = action.lower()
    if truthy(record.get("taggedMalicious")) is False and (text(record, "type") or "") not in ("av",):
        event["kind"] = "event"  # impersonation protect evaluated it and found nothing
    file_doc = _file(record)
    if file_doc:
        doc["file"] = file_doc
    url = text(record, "url")
    if url:
        doc["url"] = url_fields(url)
    doc["rule"] = {"name": text(record, "definition") or text(record, "policyDefinition")}
    doc["threat"] = {"indicator": {"type": "url" if url else "file" if file_doc else None}}


def _journal(record: Mapping[str, Any], doc: JsonDict) -> None:
    doc["event"]["action"] = "journaled"


def _entities(record: Mapping[str, Any], doc: JsonDict) -> None:
    threat = text(record, "threatType")
    state = text(record, "threatState")
    event = doc["event"]
    event["action"] = (state or "entities").lower()
    if threat and threat.upper() not in ("NO_DETECTIONS", "POLICIES_DISABLED"):
        event.update(kind="alert", category=["email", "threat"], type=["indicator"], reason=threat)
    if state:
        event["outcome"] = "failure" if state.upper() == "BLOCKED" else "success"
    policies = record.get("policiesApplied")
    if isinstance(policies, list):
        names = [p.get("name") for p in policies if isinstance(p, dict) and isinstance(p.get("name"), str)]
        doc["rule"] = {"name": names[0] if len(names) == 1 else names or None}


def _mailflow(record: Mapping[str, Any], doc: JsonDict) -> None:
    results = record.get("authResults")
    failed = False
    if isinstance(results, list):
        failed = any(isinstance(r, dict) and r.get("result") == "fail" for r in results)
    doc["event"].update(action="authenticated", outcome="failure" if failed else "success")


def _urlclick(record: Mapping[str, Any], doc: JsonDict) -> None:
    url = text(record, "url")
    if url:
        doc["url"] = url_fields(url)
    user = text(record, "userEmailAddress") or text(record, "user")
    doc["user"] = {"email": user}
    verdict = text(record, "scanResult") or text(record, "threatType")
    doc["event"].update(action=(text(record, "action") or "click").lower())
    if verdict and verdict.lower() not in ("clean", "no_detections"):
        doc["event"].update(kind="alert", category=["email", "threat"], type=["indicator"], reason=verdict)


def _action(record: Mapping[str, Any], doc: JsonDict) -> None:
    code = (text(record, "action") or text(record, "subtype") or "").lower()
    known = _ACTIONS.get(code)
    if known is None:
        doc["event"]["action"] = code or doc["event"]["action"]
        return
    event = doc["event"]
    event["action"], event["outcome"], alert = known
    if alert:
        event["kind"] = "alert"


def _file(record: Mapping[str, Any]) -> JsonDict:
    hashes = {name: text(record, name) for name in ("md5", "sha1", "sha256")}
    name = text(record, "fileName")
    return compact(
        {
            "name": name,
            "extension": text(record, "fileExtension"),
            "mime_type": text(record, "fileMime"),
            "hash": hashes,
        }
    )


def _attachments(record: Mapping[str, Any]) -> list[JsonDict] | None:
    value = record.get("attachments")
    if value is None:
        return None
    names: list[str] = []
    if isinstance(value, list):
        names = [v for v in value if isinstance(v, str) and v]
    elif isinstance(value, str) and value.strip():
        names = [part.strip().strip('"') for part in value.split(",") if part.strip().strip('"')]
    return [{"file": {"name": n}} for n in names[:100]] or None


def _addresses(value: Any) -> list[str]:
    """Recipients as a list: the files carry both a list and a comma-separated string."""
    if isinstance(value, list):
        return [v.strip() for v in value if isinstance(v, str) and v.strip()][:1000]
    if isinstance(value, str):
        if "," not in value:  # one recipient, the usual case
            value = value.strip()
            return [value] if value else []
        return [part.strip() for part in value.split(",") if part.strip()][:1000]
    return []


def _related(doc: JsonDict) -> JsonDict:
    related: JsonDict = {}
    email = doc.get("email")
    if email is not None:
        sender, to = email.get("from"), email.get("to")
        users = (sender["address"] if sender else []) + (to["address"] if to else [])
        if users:
            related["user"] = list(dict.fromkeys(users)) if len(users) > 1 else users
    ips = [side["ip"] for side in (doc.get("source"), doc.get("destination")) if side is not None]
    if ips:
        related["ip"] = list(dict.fromkeys(ips)) if len(ips) > 1 else ips
    if "file" in doc:
        hashes = list(doc["file"].get("hash", {}).values())
        if hashes:
            related["hash"] = hashes
    if "host" in doc:
        related["hosts"] = [doc["host"]["hostname"]]
    return related


_BY_TYPE = {
    "receipt": _receipt,
    "process": _process,
    "delivery": _delivery,
    "av": _threat,
    "spam": _threat,
    **dict.fromkeys(_TTP_TYPES, _threat),
    "journal": _journal,
    "entities": _entities,
    "mailflow": _mailflow,
    "urlclick": _urlclick,
}

# What makes one record unique. A re-listed file returns identical records, so every field that
# could tell two real events apart is in (a missing field hashes differently from a null one);
# left out are only `_offset`/`_partition`, Kafka positions that a re-export may renumber.
DEDUP_FIELDS = (
    "accountId",
    "type",
    "subtype",
    "timestamp",
    "processingId",
    "aggregateId",
    "messageId",
    "recipients",
    "senderEnvelope",
    "senderIp",
    "action",
    "fileName",
    "sha256",
    "url",
    "deliveryAttempts",
    "threatState",
)


def _batch_log_type(family: str, batch_types: tuple[str, ...]) -> LogType:
    """The two API 2.0 batch endpoints differ only in their path and their types."""
    return LogType(
        name=f"siem_{family}",
        path=f"/siem/v1/batch/events/{family}",
        array_key="value",
        from_field="dateRangeStartsAt",
        to_field="dateRangeEndsAt",
        time_field="timestamp",
        dedup_fields=DEDUP_FIELDS,
        normalize=normalize,
        cursor_kind=CursorKind.SIEM_BATCH,
        time_format=TimeFormat.EPOCH_MS,
        auth=("oauth2",),
        default_enabled=False,
        batch_types=batch_types,
    )


SIEM_CG = _batch_log_type("cg", CG_TYPES)
SIEM_CI = _batch_log_type("ci", CI_TYPES)
