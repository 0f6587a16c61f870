"""Seeded, realistic Mimecast log records for the simulator (tests, benchmarks and the demo)."""

from __future__ import annotations

import random
import string
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from collector.simulator.siem import SIEM_TYPES, siem_record

_USERS = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory", "oscar")
_OURS = "corp.example"
_SENDERS = (
    "billing@invoices.example",
    "ceo@c0rp-example.com",
    "it-support@helpdesk-365.example",
    "newsletter@fresh-domain.example",
    "hr@payroll-update.example",
    "noreply@parcel-track.example",
)
_SUBJECTS = (
    "Invoice overdue",
    "Urgent wire transfer",
    "Your password expires today",
    "Shared document",
    "Quarterly report",
    "Delivery failed",
    "Benefits enrollment",
    "Meeting notes",
)
_URL_HOSTS = (
    "login-micros0ft.example",
    "docs.share-files.example",
    "cdn.parcel-track.example",
    "intranet.corp.example",
    "oneclient.sfx.ms",
    "pay.invoices.example",
)
_CATEGORIES = ("Phishing & Fraud", "Dangerous file extension", "Malware", "Business/Finance", "Web Infrastructure")


@dataclass(frozen=True)
class SimRecord:
    time: int  # event time (what the API filters on), epoch seconds
    available_at: float  # wall clock from which the API returns it (ingest delay)
    record: dict[str, Any]


def api_time(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


def _token(rng: random.Random, size: int) -> str:
    return "".join(rng.choices(string.ascii_letters + string.digits, k=size))


def _user(rng: random.Random) -> str:
    return f"{rng.choice(_USERS)}@{_OURS}"


def _ip(rng: random.Random) -> str:
    return f"{rng.choice((185, 198, 203, 45))}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


def ttp_url_record(rng: random.Random, epoch: int) -> dict[str, Any]:
    malicious = rng.random() < 0.3
    route = rng.choice(("inbound", "inbound", "inbound", "outbound", "internal"))
    return {
        "userEmailAddress": _user(rng),
        "fromUserEmailAddress": rng.choice(_SENDERS),
        "url": f"https://{rng.choice(_URL_HOSTS)}/{_token(rng, 12)}?ref={_token(rng, 6)}",
        "ttpDefinition": "Default Inbound URL Protect Definition",
        "subject": rng.choice(_SUBJECTS),
        "action": "block" if malicious else rng.choice(("allow", "warn")),
        "adminOverride": "N/A",
        "userOverride": "None",
        "scanResult": "malicious" if malicious else "clean",
        "category": rng.choice(_CATEGORIES),
        "sendingIp": "Internal IP" if route == "internal" else _ip(rng),
        "userAwarenessAction": "N/A",
        "date": api_time(epoch),
        "actions": "Block" if malicious else "Allow",
        "route": route,
        "creationMethod": rng.choice(("User Click", "Entry Scan")),
        "emailPartsDescription": [rng.choice(("Body", "Attachment"))],
        "messageId": f"<{_token(rng, 16)}@mail.{_OURS}>",
        **({"tagMap": {}} if rng.random() < 0.2 else {}),
    }


def ttp_impersonation_record(rng: random.Random, epoch: int) -> dict[str, Any]:
    malicious = rng.random() < 0.4
    identifiers = rng.sample(
        (
            "similar_internal_domain",
            "internal_user_name",
            "reply_address_mismatch",
            "newly_observed_domain",
            "targeted_threat_dictionary",
        ),
        k=rng.randint(1, 3),
    )
    sender = rng.choice(_SENDERS)
    return {
        "id": f"MTOKEN:{_token(rng, 40)}",
        "senderAddress": sender,
        "recipientAddress": _user(rng),
        "subject": rng.choice(_SUBJECTS),
        "definition": "Default Impersonation Definition",
        "hits": len(identifiers),
        "identifiers": identifiers,
        "action": "hold" if malicious else rng.choice(("none", "bounce")),
        "taggedExternal": True,
        "taggedMalicious": malicious,
        "senderIpAddress": _ip(rng),
        "eventTime": api_time(epoch),
        "impersonationResults": [
            {
                "impersonationDomainSource": identifiers[0],
                "stringSimilarToDomain": sender.split("@")[1],
                "similarDomain": _OURS,
            }
        ],
        "messageId": f"<{_token(rng, 16)}@{sender.split('@')[1]}>",
    }


def archive_search_record(rng: random.Random, epoch: int) -> dict[str, Any]:
    admin = rng.random() < 0.3
    user = _user(rng)
    return {
        "createTime": api_time(epoch),
        "emailAddr": user,
        "source": rng.choice(("archive", "cloud", "mobile")),
        "searchText": f"{rng.choice(('invoice', 'project falcon', 'contract', 'payroll'))} {_token(rng, 8)}",
        "searchPath": rng.choice(("/", "/INBOX/", "/Sent Items/")),
        "searchReason": rng.choice(("", "litigation hold, case 2026-17", "HR request")),
        # Mimecast sends this both ways; the simulator does too.
        "isAdmin": rng.choice(("true", True)) if admin else rng.choice(("false", False)),
        "description": rng.choice(("Archive Mailbox", "Message search")),
    }


def siem_any_record(rng: random.Random, epoch: int) -> dict[str, Any]:
    """A SIEM API 1.0 record of any type (the SIEM feed itself serves them file by file: siem.py)."""
    return siem_record(rng.choice(SIEM_TYPES), rng, epoch)


GENERATORS: dict[str, Callable[[random.Random, int], dict[str, Any]]] = {
    "ttp_url": ttp_url_record,
    "ttp_impersonation": ttp_impersonation_record,
    "archive_search": archive_search_record,
    "siem": siem_any_record,
}


def generate(
    log_type: str,
    count: int,
    *,
    start: int,
    end: int,
    seed: int = 0,
    ingest_delay_secs: float = 0.0,
) -> list[SimRecord]:
    """``count`` records of ``log_type`` with event times spread over ``[start, end]``."""
    rng = random.Random(f"{seed}:{log_type}")
    make = GENERATORS[log_type]
    out = []
    for _ in range(count):
        epoch = rng.randint(start, end)
        out.append(SimRecord(epoch, epoch + ingest_delay_secs, make(rng, epoch)))
    out.sort(key=lambda r: r.time)
    return out
