"""Seeded, realistic SIEM batch records (API 2.0 Cloud Gateway and Cloud Integrated), one dict per line."""

from __future__ import annotations

import random
import string
from collections.abc import Callable, Iterator
from typing import Any

from collector.simulator.data import _SENDERS, _SUBJECTS, _URL_HOSTS, _USERS

_OURS = "corp.example"
_IPS = ("81.2.69.144", "203.0.113.7", "198.51.100.23", "2001:db8::25", "10.104.113.241")
_FILES = (("invoice.pdf", "pdf"), ("payroll.xlsx", "xlsx"), ("setup.exe", "exe"), ("scan.zip", "zip"))


def _id(rng: random.Random, size: int = 43) -> str:
    return "".join(rng.choices(string.ascii_letters + string.digits + "-_", k=size))


def _hex(rng: random.Random, size: int) -> str:
    return "".join(rng.choices("0123456789abcdef", k=size))


def _base(rng: random.Random, kind: str, millis: int, seq: int) -> dict[str, Any]:
    secs = millis // 1000
    return {
        "_offset": seq,
        "_partition": 60,
        "accountId": "CSIM0A1",
        "aggregateId": f"{_id(rng, 22)}_{secs}",
        "processingId": f"{_id(rng)}_{secs}",
        "timestamp": millis,
        "type": kind,
        "subtype": None,
    }


def _mail(rng: random.Random) -> dict[str, Any]:
    return {
        "senderEnvelope": rng.choice(_SENDERS),
        "recipients": f"{rng.choice(_USERS)}@{_OURS}",
        "subject": rng.choice(_SUBJECTS),
        "messageId": f"<{_hex(rng, 16)}-{rng.randrange(10**6)}@mta.example>",
    }


def _receipt(rng: random.Random, base: dict[str, Any]) -> None:
    rejected = rng.random() < 0.2
    base.update(
        _mail(rng),
        action="Rej" if rejected else "Acc",
        subtype="Rej" if rejected else "Acc",
        direction=rng.choice(("Inbound", "Internal")),
        senderIp=rng.choice(_IPS),
        senderHeader=None,
        numberAttachments=str(rng.randrange(3)),
        rejectionCode="550" if rejected else None,
        rejectionInfo="Envelope blocked - User Entry" if rejected else None,
        rejectionType="Manual Envelope Rejection" if rejected else None,
        spamScore=str(rng.randrange(30)),
        tlsVersion=rng.choice(("TLSv1.3", "TLSv1.2", None)),
        tlsCipher=rng.choice(("TLS_AES_256_GCM_SHA384", "ECDHE-RSA-AES256-GCM-SHA384")),
        virusFound=None,
    )


def _process(rng: random.Random, base: dict[str, Any]) -> None:
    held = rng.random() < 0.3
    base.update(
        _mail(rng),
        action="Hld" if held else "Acc",
        subtype="Hld" if held else "Acc",
        holdReason="Spm" if held else None,
        emailSize=str(rng.randrange(2_000, 90_000)),
        numberAttachments="0",
        attachments=None,
    )


def _delivery(rng: random.Random, base: dict[str, Any]) -> None:
    delivered = rng.random() < 0.95
    base.update(
        _mail(rng),
        delivered="true" if delivered else "false",
        deliveryAttempts="1",
        deliveryErrors=None if delivered else "451 try again later",
        destinationIp=rng.choice(_IPS),
        direction="Inbound",
        tlsVersion="TLSv1.3",
        tlsCipher="TLS_AES_256_GCM_SHA384",
        Hostname="mx.corp.example",
    )


def _threat(rng: random.Random, base: dict[str, Any]) -> None:
    name, extension = rng.choice(_FILES)
    base.update(_mail(rng), senderIp=rng.choice(_IPS), route="Inbound")
    kind = base["type"]
    if kind in ("av", "attachment protect"):
        base.update(
            fileName=name,
            fileExtension=extension,
            md5=_hex(rng, 32),
            sha1=_hex(rng, 40),
            sha256=_hex(rng, 64),
            virusFound="Eicar-Test-Signature" if kind == "av" else None,
        )
    elif kind in ("url protect", "internal email protect"):
        base.update(url=f"https://{rng.choice(_URL_HOSTS)}/{_id(rng, 8)}", urlCategory="Phishing & Fraud")
        base["scanResults"] = "Blocked URL Category"
    elif kind == "impersonation protect":
        base.update(similarDomain="c0rp-example.com", taggedMalicious="true", action="Hold")
    else:  # spam
        base.update(senderDomain=base["senderEnvelope"].partition("@")[2])


def _journal(rng: random.Random, base: dict[str, Any]) -> None:
    base.update(
        direction="Internal",
        senderEnvelope=f"{rng.choice(_USERS)}@{_OURS}",
        recipients=f"{rng.choice(_USERS)}@{_OURS}",
    )


def _entities(rng: random.Random, base: dict[str, Any]) -> None:
    malware = rng.random() < 0.1
    base.update(
        _mail(rng),
        recipients=[f"{rng.choice(_USERS)}@{_OURS}"],
        direction="INBOUND",
        senderIp=rng.choice(_IPS),
        source="OFFICE_365_MAIL",
        attachments=[],
        threatType="MALWARE" if malware else "NO_DETECTIONS",
        subtype="MALWARE" if malware else "NO_DETECTIONS",
        threatState="BLOCKED" if malware else "DELIVERY_IN_PROGRESS",
        policiesApplied=[{"action": "BLOCK" if malware else "DO_NOTHING", "mode": "ACTIVE", "name": "Default"}],
        tags=["MALWARE"] if malware else None,
        historicalMail=False,
    )


def _mailflow(rng: random.Random, base: dict[str, Any]) -> None:
    base.update(
        messageId=f"<{_hex(rng, 16)}@mta.example>",
        authResults=[
            {"aligned": True, "result": "pass", "type": "SPF"},
            {"aligned": False, "result": rng.choice(("pass", "none")), "type": "DKIM"},
            {"aligned": None, "result": rng.choice(("pass", "fail")), "type": "DMARC"},
        ],
    )


def _urlclick(rng: random.Random, base: dict[str, Any]) -> None:
    base.update(
        url=f"https://{rng.choice(_URL_HOSTS)}/{_id(rng, 8)}",
        userEmailAddress=f"{rng.choice(_USERS)}@{_OURS}",
        action=rng.choice(("allow", "block")),
        scanResult=rng.choice(("clean", "malicious")),
    )


_FILL: dict[str, Callable[[random.Random, dict[str, Any]], None]] = {
    "receipt": _receipt,
    "process": _process,
    "delivery": _delivery,
    "av": _threat,
    "spam": _threat,
    "internal email protect": _threat,
    "impersonation protect": _threat,
    "url protect": _threat,
    "attachment protect": _threat,
    "journal": _journal,
    "entities": _entities,
    "mailflow": _mailflow,
    "urlclick": _urlclick,
}


def siem_records(kind: str, count: int, *, start: int, end: int, seed: int = 0) -> Iterator[dict[str, Any]]:
    """``count`` records of batch type ``kind``, timestamps spread evenly over [start, end) in order."""
    rng = random.Random(f"{kind}:{seed}:{start}")
    span_ms = max(1, (end - start) * 1000)
    for seq in range(count):
        base = _base(rng, kind, start * 1000 + seq * span_ms // max(1, count), seq)
        _FILL[kind](rng, base)
        yield base
