"""The literal test case table of the log types without an API fixture page: real-shaped records
(field names, formats and quirks from the public reference and Elastic's integration test samples:
the "<>" null sender, a +0700 offset, "+00:00" in held release times, data[] holding audit events)
and the exact event each must give. Adding a log type adds its records and events here."""

from __future__ import annotations

from typing import Any

OBSERVER = {"vendor": "Mimecast", "product": "Mimecast Email Security"}

# --- ttp_attachment ------------------------------------------------------------
TTP_ATTACHMENT_RECORDS: list[dict[str, Any]] = [
    {
        "senderAddress": "<>",
        "recipientAddress": "johndoe@example.com",
        "fileName": "numbers.pdf",
        "fileType": "application/pdf",
        "result": "safe",
        "actionTriggered": "user release, none",
        "date": "2021-10-14T18:54:32+0000",
        "details": "Safe                                              \r\nTime taken: 0 hrs, 0 min, 4 sec",
        "route": "inbound",
        "messageId": "<20200806044148.F35F813B435@mail.example.net>",
        "subject": "Important Updated Numbers",
        "fileHash": "eaeef09b60a59b913e9bfc0a4373e25d6182beff388957473fba517cc09345e3",
        "definition": "Inbound - Safe file with On-Demand Sandbox",
    },
    {
        "senderAddress": "billing@invoices.example",
        "recipientAddress": "alice@corp.example",
        "fileName": "Invoice 0457.XLSM",
        "fileType": "application/vnd.ms-excel.sheet.macroEnabled.12",
        "result": "malicious",
        "actionTriggered": "sandbox, block",
        "date": "2021-10-14T11:24:23+0000",
        "details": "Malicious\r\nTime taken: 0 hrs, 0 min, 5 sec",
        "route": "inbound",
        "messageId": "<DB8P194MB0824@DB8P194MB0824.EURP194.PROD.OUTLOOK.COM>",
        "subject": "FW: invoice",
        "fileHash": "2FB26BE55AC710E4D9F80677BA24AE212DBB36BD934A0569FE521839E9F5D16E",
        "definition": "Inbound - Safe file with On-Demand Sandbox",
    },
]

TTP_ATTACHMENT_0 = {
    "@timestamp": "2021-10-14T18:54:32.000Z",
    "ecs": {"version": "8.11.0"},
    "event": {
        "dataset": "mimecast.ttp_attachment",
        "module": "mimecast",
        "id": "35ebadfc9a73802df2d9dc4ef26c1f31",
        "kind": "event",
        "action": "user release, none",
        "category": ["email", "threat"],
        "type": ["info"],
    },
    "observer": OBSERVER,
    "labels": {"mimecast_account": "acme", "mimecast_log_type": "ttp_attachment"},
    "email": {
        "to": {"address": ["johndoe@example.com"]},
        "subject": "Important Updated Numbers",
        "message_id": "<20200806044148.F35F813B435@mail.example.net>",
        "direction": "inbound",
        "attachments": [
            {
                "file": {
                    "name": "numbers.pdf",
                    "extension": "pdf",
                    "mime_type": "application/pdf",
                    "hash": {"sha256": "eaeef09b60a59b913e9bfc0a4373e25d6182beff388957473fba517cc09345e3"},
                }
            }
        ],
    },
    "file": {
        "name": "numbers.pdf",
        "extension": "pdf",
        "mime_type": "application/pdf",
        "hash": {"sha256": "eaeef09b60a59b913e9bfc0a4373e25d6182beff388957473fba517cc09345e3"},
    },
    "rule": {"name": "Inbound - Safe file with On-Demand Sandbox"},
    "related": {"user": ["johndoe@example.com"], "hosts": ["example.com"]},
    "mimecast": TTP_ATTACHMENT_RECORDS[0],
}

TTP_ATTACHMENT_1 = {
    "@timestamp": "2021-10-14T11:24:23.000Z",
    "ecs": {"version": "8.11.0"},
    "event": {
        "dataset": "mimecast.ttp_attachment",
        "module": "mimecast",
        "id": "376dfc2174a8ca413150dc62e6aca1fe",
        "kind": "event",
        "action": "sandbox, block",
        "category": ["email", "threat"],
        "type": ["indicator"],
    },
    "observer": OBSERVER,
    "labels": {"mimecast_account": "acme", "mimecast_log_type": "ttp_attachment"},
    "email": {
        "from": {"address": ["billing@invoices.example"]},
        "to": {"address": ["alice@corp.example"]},
        "subject": "FW: invoice",
        "message_id": "<DB8P194MB0824@DB8P194MB0824.EURP194.PROD.OUTLOOK.COM>",
        "direction": "inbound",
        "attachments": [
            {
                "file": {
                    "name": "Invoice 0457.XLSM",
                    "extension": "xlsm",
                    "mime_type": "application/vnd.ms-excel.sheet.macroEnabled.12",
                    "hash": {"sha256": "2fb26be55ac710e4d9f80677ba24ae212dbb36bd934a0569fe521839e9f5d16e"},
                }
            }
        ],
    },
    "file": {
        "name": "Invoice 0457.XLSM",
        "extension": "xlsm",
        "mime_type": "application/vnd.ms-excel.sheet.macroEnabled.12",
        "hash": {"sha256": "2fb26be55ac710e4d9f80677ba24ae212dbb36bd934a0569fe521839e9f5d16e"},
    },
    "rule": {"name": "Inbound - Safe file with On-Demand Sandbox"},
    "related": {
        "user": ["billing@invoices.example", "alice@corp.example"],
        "hosts": ["invoices.example", "corp.example"],
    },
    "mimecast": TTP_ATTACHMENT_RECORDS[1],
}

# --- dlp ------------------------------------------------------------
DLP_RECORDS: list[dict[str, Any]] = [
    {
        "senderAddress": "<>",
        "recipientAddress": "johndoe@example.com",
        "subject": "Undelivered Mail Returned to Sender",
        "eventTime": "2021-10-15T20:41:25+0000",
        "route": "inbound",
        "policy": "Content Inspection - Watermark",
        "action": "hold",
        "messageId": "<20211015204122.2CA6DFCAE2@mail.example.net>",
    },
    {
        "senderAddress": "kay.mann@corp.example",
        "recipientAddress": "cbrashear@partner.example",
        "subject": "RE",
        "eventTime": "2022-12-29T10:45:45+0700",
        "route": "outbound",
        "policy": "Confidential",
        "action": "notification",
        "messageId": "<ee36704d0e84b012-226716@hapi.partner.example>",
    },
]

DLP_0 = {
    "@timestamp": "2021-10-15T20:41:25.000Z",
    "ecs": {"version": "8.11.0"},
    "event": {
        "dataset": "mimecast.dlp",
        "module": "mimecast",
        "id": "97bf0765363e40ea94328645ff82502a",
        "kind": "event",
        "action": "hold",
        "category": ["email"],
        "type": ["info"],
    },
    "observer": OBSERVER,
    "labels": {"mimecast_account": "acme", "mimecast_log_type": "dlp"},
    "email": {
        "to": {"address": ["johndoe@example.com"]},
        "subject": "Undelivered Mail Returned to Sender",
        "message_id": "<20211015204122.2CA6DFCAE2@mail.example.net>",
        "direction": "inbound",
    },
    "rule": {"name": "Content Inspection - Watermark"},
    "related": {"user": ["johndoe@example.com"], "hosts": ["example.com"]},
    "mimecast": DLP_RECORDS[0],
}

DLP_1 = {
    "@timestamp": "2022-12-29T03:45:45.000Z",
    "ecs": {"version": "8.11.0"},
    "event": {
        "dataset": "mimecast.dlp",
        "module": "mimecast",
        "id": "e0445bf529fb2aaa72b087b0d54005ae",
        "kind": "event",
        "action": "notification",
        "category": ["email"],
        "type": ["info"],
    },
    "observer": OBSERVER,
    "labels": {"mimecast_account": "acme", "mimecast_log_type": "dlp"},
    "email": {
        "from": {"address": ["kay.mann@corp.example"]},
        "to": {"address": ["cbrashear@partner.example"]},
        "subject": "RE",
        "message_id": "<ee36704d0e84b012-226716@hapi.partner.example>",
        "direction": "outbound",
    },
    "rule": {"name": "Confidential"},
    "related": {
        "user": ["kay.mann@corp.example", "cbrashear@partner.example"],
        "hosts": ["corp.example", "partner.example"],
    },
    "mimecast": DLP_RECORDS[1],
}

#: Mimecast's audit ids as the public samples have them (long, opaque, unique per event).
AUDIT_IDS = [
    (
        "eNqrVipOTS4tSs1MUbJS8o0ILw8pL_cyqQosLi-MzKjKcvMzCwtL89c2DXZ1C3eP9AyvijKL9I7Rd_WOzC0ztMg2dz"
        "FM1M73s6w09CqoDA1T0lFKLE3JLMnJTwcZaGxoaWxkYmZorKOUXFpckp-bWpScn5IKtMnZxMzR3BSovCy1qDgzP0_J"
        "yrAWAIqvLHI"
    ),
    (
        "eNqrVipOTS4tSs1MUbJSMvCrMHX2MzL1yLFITjJNd8rO9wiJyAlL89c2DXZ1C3eP9AyvijKL9I7Rd_WOzC0ztMg2dz"
        "FM1M73s6w09CqoDA1T0lFKLE3JLMnJTwcZaGxoaWxsaGRkoKOUXFpckp-bWpScn5IKtMnZxMzR3BSovCy1qDgzP0_J"
        "yrAWAPktKzg"
    ),
    (
        "eNqrVipOTS4tSs1MUbJSKnU29DVI9XJJMs6wMC9LqnAMccoxcwtL89c2DXZ1C3eP9AyvijKL9I7Rd_WOzC0ztMg2dz"
        "FM1M73s6w09CqoDA1T0lFKLE3JLMnJTwcZaGxoaWxkZGZqoqOUXFpckp-bWpScn5IKtMnZxMzR3BSovCy1qDgzP0_J"
        "yrAWAPQMKys"
    ),
]

# --- audit ------------------------------------------------------------
AUDIT_RECORDS: list[dict[str, Any]] = [
    {
        "id": AUDIT_IDS[0],
        "auditType": "User Logged On",
        "user": "johndoe@example.com",
        "eventTime": "2021-10-11T16:03:38+0000",
        "eventInfo": "Successful authentication for johndoe@example.com <John Doe>, Date: 2021-10-11, Time: "
        "17:03:38 BST, IP: 203.0.113.15, Application: Administration Console, Method: Cloud",
        "category": "authentication_logs",
    },
    {
        "id": AUDIT_IDS[1],
        "auditType": "Logon Authentication Failed",
        "user": "johndoe@example.com",
        "eventTime": "2021-10-12T08:47:55+0000",
        "eventInfo": "Creating the auditLog entry for failed authentication, remote IP : 2001:DB8::15 application "
        ": LFS",
        "category": "authentication_logs",
    },
    {
        "id": AUDIT_IDS[2],
        "auditType": "Completed Directory Sync",
        "user": "",
        "eventTime": "2021-10-11T13:21:06+0000",
        "eventInfo": "No changes found.",
        "category": "account_logs",
    },
]

AUDIT_0 = {
    "@timestamp": "2021-10-11T16:03:38.000Z",
    "ecs": {"version": "8.11.0"},
    "event": {
        "dataset": "mimecast.audit",
        "module": "mimecast",
        "id": AUDIT_IDS[0],
        "kind": "event",
        "action": "User Logged On",
        "category": ["authentication"],
        "type": ["info"],
    },
    "observer": OBSERVER,
    "labels": {"mimecast_account": "acme", "mimecast_log_type": "audit"},
    "user": {"email": "johndoe@example.com", "name": "johndoe", "domain": "example.com"},
    "source": {"ip": "203.0.113.15"},
    "message": "Successful authentication for johndoe@example.com <John Doe>, Date: 2021-10-11, Time: 17:03:38 "
    "BST, IP: 203.0.113.15, Application: Administration Console, Method: Cloud",
    "related": {"user": ["johndoe@example.com"], "ip": ["203.0.113.15"], "hosts": ["example.com"]},
    "mimecast": AUDIT_RECORDS[0],
}

AUDIT_1 = {
    "@timestamp": "2021-10-12T08:47:55.000Z",
    "ecs": {"version": "8.11.0"},
    "event": {
        "dataset": "mimecast.audit",
        "module": "mimecast",
        "id": AUDIT_IDS[1],
        "kind": "event",
        "action": "Logon Authentication Failed",
        "category": ["authentication"],
        "type": ["info"],
        "outcome": "failure",
    },
    "observer": OBSERVER,
    "labels": {"mimecast_account": "acme", "mimecast_log_type": "audit"},
    "user": {"email": "johndoe@example.com", "name": "johndoe", "domain": "example.com"},
    "source": {"ip": "2001:db8::15"},
    "message": "Creating the auditLog entry for failed authentication, remote IP : 2001:DB8::15 application : LFS",
    "related": {"user": ["johndoe@example.com"], "ip": ["2001:db8::15"], "hosts": ["example.com"]},
    "mimecast": AUDIT_RECORDS[1],
}

AUDIT_2 = {
    "@timestamp": "2021-10-11T13:21:06.000Z",
    "ecs": {"version": "8.11.0"},
    "event": {
        "dataset": "mimecast.audit",
        "module": "mimecast",
        "id": AUDIT_IDS[2],
        "kind": "event",
        "action": "Completed Directory Sync",
        "category": ["configuration"],
        "type": ["info"],
    },
    "observer": OBSERVER,
    "labels": {"mimecast_account": "acme", "mimecast_log_type": "audit"},
    "message": "No changes found.",
    "mimecast": AUDIT_RECORDS[2],
}

# --- held_release ------------------------------------------------------------
HELD_RELEASE_RECORDS: list[dict[str, Any]] = [
    {
        "attachments": True,
        "detectionLevel": "moderate",
        "fromEnv": {"displayableName": "FromName LastName", "emailAddress": "from_user@from.example"},
        "fromHdr": {"displayableName": "FromName LastName", "emailAddress": "from_user@from.example"},
        "heldGroup": "IT Staff Global",
        "heldReason": "High-Confidence Impersonation Protection",
        "id": "eNpVj21LhEAUhf_LfN2VnRl1RpclCN...",
        "messageInfo": "Expired in queue - rejected by housekeeping",
        "operator": "admin@corp.example",
        "policy": "Moderate Spam Detection",
        "rejectReason": "Message contains undesirable content",
        "released": "2015-11-25T14:49:18+00:00",
        "route": "inbound",
        "size": 5043,
        "spamProcessingDetail": {"spf": {"allow": True, "info": "allow"}, "greyEmail": True},
        "spamScore": 12,
        "status": "released",
        "subject": "Exclusive Offer - You don't want to miss this!",
        "to": [{"displayableName": "ToName LastName", "emailAddress": "to_user@corp.example"}],
    },
    {
        "attachments": False,
        "fromEnv": {"emailAddress": "bounce@mailer.example"},
        "fromHdr": {"displayableName": "Payroll", "emailAddress": "hr@payroll-update.example"},
        "heldReason": "Spam Detection",
        "id": "eNpVj21LhEAUhf_LfN2VnRl1RpclCN...",
        "operator": "bob@corp.example",
        "policy": "Moderate Spam Detection",
        "released": "2024-11-18T05:11:02+0000",
        "route": "inbound",
        "status": "rejected",
        "subject": "Benefits enrollment",
        "to": [{"emailAddress": "bob@corp.example"}, {"emailAddress": "carol@corp.example"}],
    },
]

HELD_RELEASE_0 = {
    "@timestamp": "2015-11-25T14:49:18.000Z",
    "ecs": {"version": "8.11.0"},
    "event": {
        "dataset": "mimecast.held_release",
        "module": "mimecast",
        "id": "4019d69e6c61b833c81af03cff399d6b",
        "kind": "event",
        "action": "released",
        "category": ["email"],
        "type": ["info"],
        "reason": "High-Confidence Impersonation Protection",
    },
    "observer": OBSERVER,
    "labels": {"mimecast_account": "acme", "mimecast_log_type": "held_release"},
    "email": {
        "from": {"address": ["from_user@from.example"]},
        "sender": {"address": "from_user@from.example"},
        "to": {"address": ["to_user@corp.example"]},
        "subject": "Exclusive Offer - You don't want to miss this!",
        "direction": "inbound",
    },
    "user": {"email": "admin@corp.example", "name": "admin", "domain": "corp.example"},
    "rule": {"name": "Moderate Spam Detection"},
    "related": {
        "user": ["from_user@from.example", "to_user@corp.example", "admin@corp.example"],
        "hosts": ["from.example", "corp.example"],
    },
    "mimecast": HELD_RELEASE_RECORDS[0],
}

HELD_RELEASE_1 = {
    "@timestamp": "2024-11-18T05:11:02.000Z",
    "ecs": {"version": "8.11.0"},
    "event": {
        "dataset": "mimecast.held_release",
        "module": "mimecast",
        "id": "518fa94ecd5b39ba7439a72db0b07def",
        "kind": "event",
        "action": "rejected",
        "category": ["email"],
        "type": ["info"],
        "reason": "Spam Detection",
    },
    "observer": OBSERVER,
    "labels": {"mimecast_account": "acme", "mimecast_log_type": "held_release"},
    "email": {
        "from": {"address": ["hr@payroll-update.example"]},
        "sender": {"address": "bounce@mailer.example"},
        "to": {"address": ["bob@corp.example", "carol@corp.example"]},
        "subject": "Benefits enrollment",
        "direction": "inbound",
    },
    "user": {"email": "bob@corp.example", "name": "bob", "domain": "corp.example"},
    "rule": {"name": "Moderate Spam Detection"},
    "related": {
        "user": ["hr@payroll-update.example", "bounce@mailer.example", "bob@corp.example", "carol@corp.example"],
        "hosts": ["payroll-update.example", "mailer.example", "corp.example"],
    },
    "mimecast": HELD_RELEASE_RECORDS[1],
}

#: (log type, record, event.key, event.time, event.doc)
CASES: list[tuple[str, dict[str, Any], str, int, dict[str, Any]]] = [
    ("ttp_attachment", TTP_ATTACHMENT_RECORDS[0], "35ebadfc9a73802df2d9dc4ef26c1f31", 1634237672, TTP_ATTACHMENT_0),
    ("ttp_attachment", TTP_ATTACHMENT_RECORDS[1], "376dfc2174a8ca413150dc62e6aca1fe", 1634210663, TTP_ATTACHMENT_1),
    ("dlp", DLP_RECORDS[0], "97bf0765363e40ea94328645ff82502a", 1634330485, DLP_0),
    ("dlp", DLP_RECORDS[1], "e0445bf529fb2aaa72b087b0d54005ae", 1672285545, DLP_1),
    (
        "audit",
        AUDIT_RECORDS[0],
        AUDIT_IDS[0],
        1633968218,
        AUDIT_0,
    ),
    (
        "audit",
        AUDIT_RECORDS[1],
        AUDIT_IDS[1],
        1634028475,
        AUDIT_1,
    ),
    (
        "audit",
        AUDIT_RECORDS[2],
        AUDIT_IDS[2],
        1633958466,
        AUDIT_2,
    ),
    ("held_release", HELD_RELEASE_RECORDS[0], "4019d69e6c61b833c81af03cff399d6b", 1448462958, HELD_RELEASE_0),
    ("held_release", HELD_RELEASE_RECORDS[1], "518fa94ecd5b39ba7439a72db0b07def", 1731906662, HELD_RELEASE_1),
]


def records(name: str) -> list[dict[str, Any]]:
    """The table's records of one log type, in order."""
    return [case[1] for case in CASES if case[0] == name]
