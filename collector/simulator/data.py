"""The simulated API's log types: seeded, realistic records (tests, benchmarks and the demo), and each
endpoint as the simulator checks requests to it. Declared here independently of the collector's own
log type declarations, so a wrong field name on the collector's side is a rejected request here."""

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
_URL_ENDINGS = ("", "", "/", ".html", ".exe", ".php")
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
        "url": f"https://{rng.choice(_URL_HOSTS)}/{_token(rng, 12)}{rng.choice(_URL_ENDINGS)}?ref={_token(rng, 6)}",
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


_FILES = (
    ("invoice_0457.pdf", "application/pdf"),
    ("payroll update.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
    ("Q3 figures.xlsm", "application/vnd.ms-excel.sheet.macroEnabled.12"),
    ("scan0042.zip", "application/zip"),
    ("label.html", "text/html"),
)


def ttp_attachment_record(rng: random.Random, epoch: int) -> dict[str, Any]:
    malicious = rng.random() < 0.2
    name, mime = rng.choice(_FILES)
    route = rng.choice(("inbound", "inbound", "outbound", "internal"))
    return {
        # Bounces arrive with the null sender "<>", as in the public samples.
        "senderAddress": "<>" if rng.random() < 0.1 else rng.choice(_SENDERS),
        "recipientAddress": _user(rng),
        "fileName": name,
        "fileType": mime,
        "result": "malicious" if malicious else rng.choice(("safe", "safe", "timeout")),
        "actionTriggered": "sandbox, block" if malicious else rng.choice(("user release, none", "none")),
        "date": api_time(epoch),
        "details": ("Malicious" if malicious else "Safe") + f"\r\nTime taken: 0 hrs, 0 min, {rng.randint(1, 9)} sec",
        "route": route,
        "messageId": f"<{_token(rng, 16)}@mail.{_OURS}>",
        "subject": rng.choice(_SUBJECTS),
        "fileHash": "".join(rng.choices("0123456789abcdef", k=64)),
        "definition": "Inbound - Safe file with On-Demand Sandbox",
    }


def dlp_record(rng: random.Random, epoch: int) -> dict[str, Any]:
    route = rng.choice(("outbound", "outbound", "inbound", "internal"))
    sender, recipient = (
        (_user(rng), rng.choice(_SENDERS)) if route == "outbound" else (rng.choice(_SENDERS), _user(rng))
    )
    return {
        "senderAddress": "<>" if rng.random() < 0.05 else sender,
        "recipientAddress": recipient,
        "subject": rng.choice(_SUBJECTS),
        "eventTime": api_time(epoch),
        "route": route,
        "policy": rng.choice(("Confidential", "Content Inspection - Watermark", "Credit card numbers")),
        "action": rng.choice(("hold", "notification", "block", "smart_folder")),
        "messageId": f"<{_token(rng, 16)}@mail.{_OURS}>",
    }


_AUDIT = (
    (
        "User Logged On",
        "authentication_logs",
        "Successful authentication for {user}, IP: {ip}, Application: Administration Console",
    ),
    (
        "Logon Authentication Failed",
        "authentication_logs",
        "Failed authentication for {user}, IP: {ip}, Reason: Wrong password",
    ),
    (
        "Search Action",
        "case_review_logs",
        "Executed Search - Source: Search, IP: {ip}, Application: mimecast-case-review",
    ),
    ("Page Data Exports", "account_logs", "[Export type : Download,Requested By :{user},IP Address :{ip}]"),
    ("Completed Directory Sync", "account_logs", "No changes found."),
    ("User Password Changed", "user_account_and_role_logs", "Password reset for user: {user}, Remote IP is {ip}"),
)


def audit_record(rng: random.Random, epoch: int) -> dict[str, Any]:
    audit_type, category, info = rng.choice(_AUDIT)
    user = "" if audit_type == "Completed Directory Sync" else _user(rng)
    return {
        "id": f"eNq{_token(rng, 60)}",  # unique per event, as Mimecast's are
        "auditType": audit_type,
        "user": user,
        "eventTime": api_time(epoch),
        "eventInfo": info.format(user=user, ip=_ip(rng)),
        "category": category,
    }


def held_release_record(rng: random.Random, epoch: int) -> dict[str, Any]:
    sender = rng.choice(_SENDERS)
    released = rng.random() < 0.7
    recipient = _user(rng)
    moment = datetime.fromtimestamp(epoch, UTC)
    return {
        "id": f"eNpVj21LhEAUhf_{_token(rng, 40)}",
        "attachments": rng.random() < 0.5,
        "detectionLevel": rng.choice(("relaxed", "moderate", "aggressive")),
        "fromEnv": {"displayableName": "", "emailAddress": sender},
        "fromHdr": {"displayableName": sender.split("@")[0].title(), "emailAddress": sender},
        "heldGroup": "IT Staff Global",
        "heldReason": rng.choice(("High-Confidence Impersonation Protection", "Spam Detection", "Policy")),
        "operator": rng.choice((recipient, f"admin@{_OURS}")),
        "policy": rng.choice(("Moderate Spam Detection", "Default Impersonation Definition")),
        "rejectReason": None if released else "Message contains undesirable content",
        # The reference writes this one time with a colon in the offset; the simulator does too.
        "released": moment.strftime("%Y-%m-%dT%H:%M:%S+00:00"),
        "route": "inbound",
        "size": rng.randint(2_000, 2_000_000),
        "spamScore": rng.randint(0, 20),
        "status": "released" if released else "rejected",
        "subject": rng.choice(_SUBJECTS),
        "to": [{"displayableName": "", "emailAddress": recipient}],
    }


def siem_any_record(rng: random.Random, epoch: int) -> dict[str, Any]:
    """A SIEM API 1.0 record of any type (the SIEM feed itself serves them file by file: siem.py)."""
    return siem_record(rng.choice(SIEM_TYPES), rng, epoch)


GENERATORS: dict[str, Callable[[random.Random, int], dict[str, Any]]] = {
    "ttp_url": ttp_url_record,
    "ttp_impersonation": ttp_impersonation_record,
    "archive_search": archive_search_record,
    "ttp_attachment": ttp_attachment_record,
    "dlp": dlp_record,
    "audit": audit_record,
    "held_release": held_release_record,
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


@dataclass(frozen=True)
class Endpoint:
    log_type: str
    array_key: str | None  # None: the records are data[] itself
    from_field: str
    to_field: str
    optional: frozenset[str]
    max_lookback_secs: int | None = None  # an older start is refused, as the real API does


_ARCHIVE = Endpoint("archive_search", "logs", "start", "end", frozenset({"query"}))
ENDPOINTS: dict[str, Endpoint] = {
    "/api/ttp/url/get-logs": Endpoint(
        "ttp_url", "clickLogs", "from", "to", frozenset({"oldestFirst", "route", "scanResult"})
    ),
    "/api/ttp/impersonation/get-logs": Endpoint(
        "ttp_impersonation",
        "impersonationLogs",
        "from",
        "to",
        frozenset({"oldestFirst", "taggedMalicious", "searchField", "query", "identifiers", "actions"}),
    ),
    "/api/archive/get-search-logs": _ARCHIVE,
    "/api/archive/get-archive-search-logs": _ARCHIVE,
    "/api/ttp/attachment/get-logs": Endpoint(
        "ttp_attachment", "attachmentLogs", "from", "to", frozenset({"oldestFirst", "route", "result"})
    ),
    "/api/dlp/get-logs": Endpoint("dlp", "dlpLogs", "from", "to", frozenset({"oldestFirst", "actions", "routes"})),
    "/api/audit/get-audit-events": Endpoint(
        "audit", None, "startDateTime", "endDateTime", frozenset({"query", "categories"}), 60 * 86_400
    ),
    "/api/gateway/get-held-release-logs": Endpoint("held_release", "heldReleaseLogs", "start", "end", frozenset()),
}
CHOICES = {
    "route": ("inbound", "outbound", "internal", "all"),
    "scanResult": ("clean", "malicious", "all"),
    "result": ("safe", "malicious", "timeout", "error", "unsafe", "all"),
}
