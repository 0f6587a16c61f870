"""SIEM batch records (API 2.0) into ECS: pinned documents for the fixture records, and the edges."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from collector.logtypes import LOG_TYPES, build_event
from collector.logtypes.base import NORMALIZE_ERROR_TAG
from collector.simulator.siem_data import siem_records

FIXTURES = Path(__file__).parent / "fixtures" / "mimecast"
FALLBACK = 1_700_000_000


def fixture(name: str) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = orjson.loads((FIXTURES / f"{name}_page.json").read_bytes())["data"][0]["value"]
    return records


def event_of(name: str, record: Any) -> dict[str, Any]:
    doc: dict[str, Any] = build_event(LOG_TYPES[name], record, "acme", FALLBACK).doc
    return doc


OBSERVER = {"vendor": "Mimecast", "product": "Mimecast Email Security"}

RECEIPT_REJECTED = {
    "@timestamp": "2024-11-12T23:36:45.992Z",
    "event": {
        "dataset": "mimecast.siem_cg",
        "module": "mimecast",
        "id": "39949937081f9716526584cbe0b0a2d6",
        "kind": "alert",
        "action": "rejected",
        "category": ["email"],
        "type": ["info"],
        "provider": "receipt",
        "outcome": "failure",
        "reason": "Envelope blocked - User Entry",
    },
    "observer": OBSERVER,
    "labels": {"mimecast_account": "acme", "mimecast_log_type": "siem_cg"},
    "ecs": {"version": "8.11.0"},
    "email": {
        "from": {"address": ["spammer@bulk.example"]},
        "sender": {"address": "spammer@bulk.example"},
        "to": {"address": ["j.doe@corp.example"]},
        "direction": "inbound",
    },
    "source": {"ip": "81.2.69.144"},
    "cloud": {"account": {"id": "CUSA4B112"}},
    "tls": {"version": "1.3", "version_protocol": "tls", "cipher": "TLS_AES_256_GCM_SHA384", "established": True},
    "related": {"user": ["spammer@bulk.example", "j.doe@corp.example"], "ip": ["81.2.69.144"]},
}
ATTACHMENT_PROTECT = {
    "@timestamp": "2024-11-13T11:57:39.314Z",
    "event": {
        "dataset": "mimecast.siem_cg",
        "module": "mimecast",
        "id": "83c873d14e04da57b6d59406cd1eab8b",
        "kind": "alert",
        "action": "attachment protect",
        "category": ["email", "threat"],
        "type": ["indicator"],
        "provider": "attachment protect",
    },
    "observer": OBSERVER,
    "labels": {"mimecast_account": "acme", "mimecast_log_type": "siem_cg"},
    "ecs": {"version": "8.11.0"},
    "cloud": {"account": {"id": "CUSA4B112"}},
    "file": {
        "name": "invoice-2291.pdf",
        "extension": "pdf",
        "hash": {
            "md5": "66f03bf072a74bb19db16c952ba3dc47",
            "sha1": "ce87cd86f9d9d3ed4c1138530ef259ce83638593",
            "sha256": "22a65c438289353d96c707cf55e26be723e3157f0aa00734843a9bdc8f98bab0",
        },
    },
    "threat": {"indicator": {"type": "file"}},
    "related": {
        "hash": [
            "66f03bf072a74bb19db16c952ba3dc47",
            "ce87cd86f9d9d3ed4c1138530ef259ce83638593",
            "22a65c438289353d96c707cf55e26be723e3157f0aa00734843a9bdc8f98bab0",
        ]
    },
}
ENTITIES_MALWARE = {
    "@timestamp": "2024-11-18T15:24:35.250Z",
    "event": {
        "dataset": "mimecast.siem_ci",
        "module": "mimecast",
        "id": "928ac044c6d27a04d984f411c100e9cc",
        "kind": "alert",
        "action": "blocked",
        "category": ["email", "threat"],
        "type": ["indicator"],
        "provider": "entities",
        "reason": "MALWARE",
        "outcome": "failure",
    },
    "observer": OBSERVER,
    "labels": {"mimecast_account": "acme", "mimecast_log_type": "siem_ci"},
    "ecs": {"version": "8.11.0"},
    "email": {
        "from": {"address": ["announcements@partner.example"]},
        "sender": {"address": "announcements@partner.example"},
        "to": {"address": ["s.january@corp.example"]},
        "subject": "Message from Node-RED",
        "message_id": "<0bb5c112-9013-584b-eb87-e5376f49c9ac@corp.example>",
        "direction": "inbound",
        "attachments": [{"file": {"name": "Sandbox Test.xlsx"}}],
    },
    "source": {"ip": "81.2.69.144"},
    "cloud": {"account": {"id": "AUS2474"}},
    "rule": {"name": "Default O365 Mail policy"},
    "related": {"user": ["announcements@partner.example", "s.january@corp.example"], "ip": ["81.2.69.144"]},
}
MAILFLOW_DMARC_FAIL = {
    "@timestamp": "2024-11-26T22:26:40.405Z",
    "event": {
        "dataset": "mimecast.siem_ci",
        "module": "mimecast",
        "id": "fa8ab3dab7019c7e9a26a1fdd261bd8d",
        "kind": "event",
        "action": "authenticated",
        "category": ["email"],
        "type": ["info"],
        "provider": "mailflow",
        "outcome": "failure",
    },
    "observer": OBSERVER,
    "labels": {"mimecast_account": "acme", "mimecast_log_type": "siem_ci"},
    "ecs": {"version": "8.11.0"},
    "email": {"message_id": "<1375b951-77d3-4231-9701-d0f7175f5cae@mtasv.example>"},
    "cloud": {"account": {"id": "AUS2474"}},
}

#: (log type, index in <name>_page.json, ECS document without the original record under `mimecast`)
SIEM_FIXTURE_CASES = [
    ("siem_cg", 0, RECEIPT_REJECTED),
    ("siem_cg", 1, ATTACHMENT_PROTECT),
    ("siem_ci", 0, ENTITIES_MALWARE),
    ("siem_ci", 1, MAILFLOW_DMARC_FAIL),
]


@pytest.mark.parametrize(
    ("name", "index", "doc"), SIEM_FIXTURE_CASES, ids=[f"{c[0]}-{c[1]}" for c in SIEM_FIXTURE_CASES]
)
def test_fixture_record_normalizes_to_literal_event(name: str, index: int, doc: dict[str, Any]) -> None:
    """Each SIEM fixture record becomes exactly the pinned document, the original record under mimecast."""
    record = fixture(name)[index]
    event = event_of(name, record)
    assert event == {**doc, "mimecast": record}


def test_every_generated_type_normalizes_with_its_timestamp() -> None:
    """A record of each of the 13 types normalizes (nothing kept raw), at its millisecond timestamp."""
    for name in ("siem_cg", "siem_ci"):
        for kind in LOG_TYPES[name].batch_types:
            [record] = siem_records(kind, 1, start=1_731_000_000, end=1_731_000_600)
            event = build_event(LOG_TYPES[name], record, "acme", FALLBACK)
            assert event.normalized, kind
            assert event.time == record["timestamp"] // 1000
            assert event.doc["@timestamp"].startswith("2024-11-07T")


@pytest.mark.parametrize(
    ("kind", "changes", "expected"),
    [
        ("receipt", {"action": "Acc", "rejectionType": None, "rejectionCode": None}, ("event", "accepted", "success")),
        ("process", {"action": "Hld", "holdReason": "Spm"}, ("alert", "held", "success")),
        ("delivery", {"delivered": "false"}, ("event", "delivery_failed", "failure")),
        ("delivery", {"delivered": True}, ("event", "delivered", "success")),
        ("av", {}, ("alert", "av", None)),
        ("url protect", {}, ("alert", "url protect", None)),
        ("impersonation protect", {"taggedMalicious": "false", "action": "none"}, ("event", "none", None)),
    ],
)
def test_kind_action_and_outcome_per_type(kind: str, changes: dict[str, Any], expected: tuple[Any, ...]) -> None:
    """Rejections, holds, AV and TTP hits are alerts; deliveries say whether they succeeded."""
    [record] = siem_records(kind, 1, start=1_731_000_000, end=1_731_000_600)
    record.update(changes)
    if kind == "av":
        record.pop("action", None)
    event = event_of("siem_cg", record)["event"]
    assert (event["kind"], event["action"], event.get("outcome")) == expected


def test_url_protect_carries_url_fields_and_ci_recipients_lists() -> None:
    [record] = siem_records("url protect", 1, start=1_731_000_000, end=1_731_000_600)
    record["url"] = "https://login-micros0ft.example/reset?u=1"
    record["recipients"] = "a@corp.example, b@corp.example"
    doc = event_of("siem_cg", record)
    assert doc["url"] == {
        "original": "https://login-micros0ft.example/reset?u=1",
        "scheme": "https",
        "domain": "login-micros0ft.example",
        "path": "/reset",
        "query": "u=1",
    }
    assert doc["email"]["to"]["address"] == ["a@corp.example", "b@corp.example"]


@pytest.mark.parametrize(
    "record",
    [
        "a line",
        ["a", "list"],
        {"type": "receipt"},  # no timestamp
        {"type": "receipt", "timestamp": "yesterday"},
        {"type": "receipt", "timestamp": 10**30},  # out of range
        {"type": "receipt", "timestamp": True},
    ],
)
def test_unnormalizable_records_are_kept_raw_and_tagged(record: Any) -> None:
    event = build_event(LOG_TYPES["siem_cg"], record, "acme", FALLBACK)
    assert not event.normalized
    assert event.doc["tags"] == [NORMALIZE_ERROR_TAG]
    assert event.doc["mimecast"] == (record if isinstance(record, dict) else {"raw": record})
