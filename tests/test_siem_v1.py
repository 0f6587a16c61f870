"""API 1.0 SIEM records: file names to types, literal ECS output per type, dedup keys, and fuzz.

Expected values were computed once by running the code and checked by hand against the fixture
records (times recomputed from the UTC offset in ``datetime``). Event keys are pinned: they are the
dedup identity in the spool, so a change would duplicate events after an upgrade.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.logtypes import build_event, serialize
from collector.logtypes.base import NORMALIZE_ERROR_TAG
from collector.logtypes.siem_v1 import TYPES, file_log_type, log_type_for, normalize_as, type_from_fields

FIXTURE = Path(__file__).parent / "fixtures" / "mimecast" / "siem_v1_files.json"
FILES: dict[str, Any] = orjson.loads(FIXTURE.read_bytes())
PREFIX = {"receipt": "receipt", "process": "process", "delivery": "delivery", "av": "av"}


def _record(prefix: str, index: int) -> dict[str, Any]:
    record: dict[str, Any] = FILES[f"{prefix}_20261201093329655.json"]["data"][index]
    return record


def _event(prefix: str, index: int) -> Any:
    name = f"{prefix}_20261201093329655.json"
    return build_event(log_type_for(file_log_type(name)), _record(prefix, index), "acme", 0)


RECEIPT_0 = {
    "@timestamp": "2026-12-01T08:33:29.000Z",
    "event": {
        "dataset": "mimecast.siem",
        "module": "mimecast",
        "id": "a4f987b6338dceb08e5945d827102d50",
        "kind": "event",
        "provider": "receipt",
        "category": ["email"],
        "type": ["info"],
        "action": "accepted",
        "outcome": "success",
    },
    "observer": {"vendor": "Mimecast", "product": "Mimecast Email Security"},
    "labels": {"mimecast_account": "acme", "mimecast_log_type": "siem"},
    "ecs": {"version": "8.11.0"},
    "organization": {"id": "C0A0"},
    "email": {
        "from": {"address": ["billing@invoices.example"]},
        "sender": {"address": "billing@invoices.example"},
        "to": {"address": ["alice@corp.example"]},
        "subject": "Invoice overdue",
        "message_id": "<a1@invoices.example>",
        "local_id": "7O7I7MvGP1mj8plHRDuHEA",
        "direction": "inbound",
    },
    "source": {"ip": "81.2.69.144"},
    "tls": {
        "cipher": "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        "version_protocol": "tls",
        "version": "1.2",
        "established": True,
    },
    "related": {
        "user": ["billing@invoices.example", "alice@corp.example"],
        "ip": ["81.2.69.144"],
        "hosts": ["invoices.example", "corp.example"],
    },
    "mimecast": _record("receipt", 0),
}

RECEIPT_1 = {
    "@timestamp": "2026-12-01T08:35:02.000Z",
    "event": {
        "dataset": "mimecast.siem",
        "module": "mimecast",
        "id": "8782a92b1634106c27c9f8a7515f8a8e",
        "kind": "alert",
        "provider": "receipt",
        "category": ["email"],
        "type": ["denied"],
        "action": "rejected",
        "outcome": "failure",
        "reason": "Invalid Recipient Address",
    },
    "observer": {"vendor": "Mimecast", "product": "Mimecast Email Security"},
    "labels": {"mimecast_account": "acme", "mimecast_log_type": "siem"},
    "ecs": {"version": "8.11.0"},
    "organization": {"id": "C0A0"},
    "email": {"to": {"address": ["nobody@corp.example"]}, "local_id": "q4qBpkoTOt-iStR7G44w3g", "direction": "inbound"},
    "source": {"ip": "203.0.113.9"},
    "tls": {"cipher": "TLS_AES_256_GCM_SHA384", "version_protocol": "tls", "version": "1.3", "established": True},
    "related": {"user": ["nobody@corp.example"], "ip": ["203.0.113.9"], "hosts": ["corp.example"]},
    "mimecast": _record("receipt", 1),
}

PROCESS_0 = {
    "@timestamp": "2026-12-01T08:36:10.000Z",
    "event": {
        "dataset": "mimecast.siem",
        "module": "mimecast",
        "id": "1caaaf751867c7c8ce66837c80e38dd1",
        "kind": "alert",
        "provider": "process",
        "category": ["email"],
        "type": ["denied"],
        "action": "held",
        "reason": "Spm",
    },
    "observer": {"vendor": "Mimecast", "product": "Mimecast Email Security"},
    "labels": {"mimecast_account": "acme", "mimecast_log_type": "siem"},
    "ecs": {"version": "8.11.0"},
    "organization": {"id": "C0A0"},
    "email": {
        "from": {"address": ["newsletter@fresh-domain.example"]},
        "sender": {"address": "newsletter@fresh-domain.example"},
        "subject": "Benefits enrollment",
        "message_id": "<b2@mail.example>",
        "local_id": "015vTYvNN-Wn30v7M5MzNw",
        "attachments": [{"file": {"name": "filename.docx"}}, {"file": {"name": "filename2.xlsx"}}],
    },
    "related": {"user": ["newsletter@fresh-domain.example"], "hosts": ["fresh-domain.example"]},
    "mimecast": _record("process", 0),
}

DELIVERY_0 = {
    "@timestamp": "2026-12-01T08:37:44.000Z",
    "event": {
        "dataset": "mimecast.siem",
        "module": "mimecast",
        "id": "42c0a97919efa473a4a6736aaf67e4f3",
        "kind": "event",
        "provider": "delivery",
        "category": ["email"],
        "type": ["info"],
        "action": "delivered",
        "outcome": "success",
    },
    "observer": {"vendor": "Mimecast", "product": "Mimecast Email Security"},
    "labels": {"mimecast_account": "acme", "mimecast_log_type": "siem"},
    "ecs": {"version": "8.11.0"},
    "organization": {"id": "C0A0"},
    "email": {
        "from": {"address": ["from@domain.example"]},
        "sender": {"address": "from@domain.example"},
        "to": {"address": ["alice@corp.example"]},
        "subject": "Auto Reply",
        "message_id": "<c3@domain.example>",
        "local_id": "9q_HeIHHPYejZTBsnipWmQ",
        "direction": "inbound",
    },
    "destination": {"ip": "198.51.100.25"},
    "tls": {
        "cipher": "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
        "version_protocol": "tls",
        "version": "1.2",
        "established": True,
    },
    "related": {
        "user": ["from@domain.example", "alice@corp.example"],
        "ip": ["198.51.100.25"],
        "hosts": ["domain.example", "corp.example"],
    },
    "mimecast": _record("delivery", 0),
}

AV_0 = {
    "@timestamp": "2026-12-01T08:40:17.000Z",
    "event": {
        "dataset": "mimecast.siem",
        "module": "mimecast",
        "id": "a4176363e38bad2e2d9cf4c991d653fe",
        "kind": "alert",
        "provider": "av",
        "category": ["email", "malware"],
        "type": ["indicator"],
        "reason": "Anomali:Phishing",
        "action": "virus_detected",
    },
    "observer": {"vendor": "Mimecast", "product": "Mimecast Email Security"},
    "labels": {"mimecast_account": "acme", "mimecast_log_type": "siem"},
    "ecs": {"version": "8.11.0"},
    "organization": {"id": "C0A0"},
    "email": {
        "from": {"address": ["x9@senderdomain.example"]},
        "sender": {"address": "x9@senderdomain.example"},
        "to": {"address": ["bob@corp.example"]},
        "subject": "Invoice Attached for payment",
        "message_id": "<d4@mta.example>",
        "direction": "inbound",
    },
    "file": {
        "name": "Invoice.xlsm",
        "extension": "xlsm",
        "mime_type": "application/vnd.ms-excel.sheet.macroEnabled.12",
        "size": 1648832,
        "hash": {
            "md5": "4dbe9dbfb53438d9ce410535355cd973",
            "sha1": "816b013c8be6e5708690645964b5d442c085041e",
            "sha256": "efe51c2453821310c7a34dca3054021d0f6d453b7133c381d75e3140901efd12",
        },
    },
    "related": {
        "user": ["x9@senderdomain.example", "bob@corp.example"],
        "hosts": ["senderdomain.example", "corp.example"],
    },
    "mimecast": _record("av", 0),
}


@pytest.mark.parametrize(
    ("prefix", "index", "expected"),
    [
        ("receipt", 0, RECEIPT_0),
        ("receipt", 1, RECEIPT_1),
        ("process", 0, PROCESS_0),
        ("delivery", 0, DELIVERY_0),
        ("av", 0, AV_0),
    ],
)
def test_fixture_record_normalizes_to_literal_event(prefix: str, index: int, expected: dict[str, Any]) -> None:
    """Each fixture record gives exactly the ECS document written out above."""
    assert _event(prefix, index).doc == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("receipt_20211018093329655.json", "receipt"),
        ("process_20211018093329655.json", "process"),
        ("delivery_20211018093329655.json", "delivery"),
        ("jrnl_20211018093329655.json", "journal"),
        ("ttp_url_20211129153015541.json", "ttp_url"),
        ("ttp_ap_20211129153015541.json", "ttp_attachment"),
        ("ttp_ip_20211129153015541.json", "ttp_impersonation"),
        ("ttp_iep_20211129153015541.json", "internal_email_protect"),
        ("av_20211129153015541.log", "av"),
        ("SPAM_20211129153015541.JSON", "spam"),
        ("logs/receipt_20211018093329655.json", "receipt"),
        ("receipt_eu1_20211018093329655.json", "receipt"),
        ("mystery_20211018093329655.json", None),
        ("", None),
    ],
)
def test_file_name_gives_the_log_type(name: str, expected: str | None) -> None:
    """The type comes from the name's prefix, without the timestamp, case or directory."""
    assert file_log_type(name) == expected


@pytest.mark.parametrize(
    ("prefix", "provider", "kind"),
    [
        ("ttp_url", "ttp_url", "alert"),
        ("ttp_ip", "ttp_impersonation", "alert"),
        ("ttp_iep", "internal_email_protect", "alert"),
        ("ttp_ap", "ttp_attachment", "alert"),
        ("spam", "spam", "alert"),
        ("jrnl", "journal", "event"),
    ],
)
def test_each_type_sets_its_provider_and_kind(prefix: str, provider: str, kind: str) -> None:
    """TTP hits and spam are alerts; journal lines are plain events."""
    event = _event(prefix, 0)
    assert event.normalized
    assert (event.doc["event"]["provider"], event.doc["event"]["kind"]) == (provider, kind)
    assert event.doc["ecs"] == {"version": "8.11.0"}


def test_ttp_url_record_maps_url_and_source() -> None:
    """The TTP URL line's lower-case fields land in url.*, source.ip and email.*."""
    doc = _event("ttp_url", 0).doc
    assert doc["url"] == {
        "original": "http://login-micros0ft.example/reset?u=carol",
        "scheme": "http",
        "domain": "login-micros0ft.example",
        "path": "/reset",
        "query": "u=carol",
    }
    assert doc["source"] == {"ip": "81.2.69.144"}
    assert doc["email"]["to"] == {"address": ["carol@corp.example"]}
    assert doc["event"]["reason"] == "malicious"


def test_attachment_protect_record_carries_file_hashes() -> None:
    """file.hash.* holds the three digests of the attachment."""
    assert _event("ttp_ap", 0).doc["file"]["hash"] == {
        "md5": "7b52770644da336a9a59141c80807f37",
        "sha1": "a27850da9e7adfc8e1a94dabf2509fc9d65ee7e2",
        "sha256": "8746bb4b31ab6f03eb0a3b2c62ab7497658f0f85c8e7e82f042f9af0bb876d83",
    }


def test_av_placeholder_address_is_no_source_ip() -> None:
    """AV lines write IP 0.0.0.0 when there is none: no source.ip, no related.ip."""
    doc = _event("av", 0).doc
    assert "source" not in doc
    assert "ip" not in doc["related"]


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"SpamScore": 3, "datetime": "x"}, "receipt"),
        ({"Hld": "Spm"}, "process"),
        ({"Delivered": True}, "delivery"),
        ({"RcptActType": "Jnl"}, "journal"),
        ({"reason": "malicious"}, "ttp_url"),
        ({"TaggedMalicious": "true"}, "ttp_impersonation"),
        ({"ScanResultInfo": "Blocked"}, "internal_email_protect"),
        ({"acc": "C0A0", "datetime": "2026-12-01T08:00:00+0000"}, "unknown"),
    ],
)
def test_type_from_fields_for_a_file_without_a_known_name(record: dict[str, Any], expected: str) -> None:
    """A field only one type carries tells the type, as in Elastic's pipeline."""
    assert type_from_fields(record) == expected


def test_unknown_file_type_is_normalized_from_the_record_fields() -> None:
    """A delivery line in a file with an unknown name still gets the delivery mapping."""
    event = build_event(log_type_for(file_log_type("odd_1.json")), _record("delivery", 0), "acme", 0)
    assert event.doc["event"]["provider"] == "delivery"
    assert event.doc["destination"] == {"ip": "198.51.100.25"}


def test_key_is_the_same_whatever_file_type_read_it() -> None:
    """The key is the record's own identity: re-reading a file under another name duplicates nothing."""
    record = _record("delivery", 0)
    assert (
        build_event(log_type_for("delivery"), record, "acme", 0).key
        == build_event(log_type_for(None), record, "acme", 0).key
    )


def test_receipt_and_journal_lines_of_one_message_have_different_keys() -> None:
    """Lines sharing aCode, datetime, Sender and Rcpt are still two events."""
    shared = {"acc": "C0A0", "datetime": "2026-12-01T08:00:00+0000", "aCode": "A", "Sender": "a@x", "Rcpt": "b@y"}
    receipt = build_event(log_type_for("receipt"), {**shared, "Act": "Acc", "Dir": "Inbound"}, "acme", 0)
    journal = build_event(log_type_for("journal"), {**shared, "RcptActType": "Jnl", "Dir": "Inbound"}, "acme", 0)
    assert receipt.key != journal.key


def test_key_value_strings_normalize_like_json_values() -> None:
    """key_value files give every value as text: "false" delivers as False does."""
    record = {**{k: str(v) for k, v in _record("delivery", 0).items()}, "Delivered": "false"}
    doc = normalize_as("delivery", record)
    assert doc["event"]["outcome"] == "failure"
    assert doc["event"]["action"] == "delivery_failed"


def test_record_without_datetime_is_kept_raw_and_tagged() -> None:
    """No time field: kept, tagged, with the fallback time."""
    record = {k: v for k, v in _record("receipt", 0).items() if k != "datetime"}
    event = build_event(log_type_for("receipt"), record, "acme", 1_700_000_000)
    assert not event.normalized
    assert event.doc["tags"] == [NORMALIZE_ERROR_TAG]
    assert event.time == 1_700_000_000


def test_a_text_line_that_did_not_parse_is_kept_raw() -> None:
    """The reader hands unparseable lines over as strings: kept under mimecast.raw."""
    event = build_event(log_type_for("receipt"), "datetime=2026|garbage", "acme", 5)
    assert event.doc["mimecast"] == {"raw": "datetime=2026|garbage"}
    assert event.doc["tags"] == [NORMALIZE_ERROR_TAG]


SIEM_FIELDS = sorted({k for f in FILES.values() for r in f["data"] for k in r} | {"Delivered", "UseTls", "AttNames"})
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
RECORDS = st.dictionaries(st.sampled_from(SIEM_FIELDS) | st.text(max_size=8), VALUES, max_size=12)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(record=RECORDS, file_type=st.sampled_from((*TYPES, None, "unknown")))
def test_any_record_gives_a_spoolable_event(record: dict[str, Any], file_type: str | None) -> None:
    """Whatever the fields hold, build_event returns an event that serializes (normalized or kept raw)."""
    event = build_event(log_type_for(file_type), record, "acme", 0)
    assert orjson.loads(serialize(event.doc))["event"]["id"] == event.key
    assert event.doc["mimecast"] == record or not event.normalized


@settings(max_examples=200, deadline=None)
@given(record=RECORDS, file_type=st.sampled_from(TYPES))
def test_normalize_is_pure_and_total_for_valid_times(record: dict[str, Any], file_type: str) -> None:
    """With a valid datetime every record normalizes, and normalizing twice gives the same document."""
    record = {**record, "datetime": "2026-12-01T08:00:00+0000"}
    first = normalize_as(file_type, record)
    assert normalize_as(file_type, record) == first
    assert first["event"]["provider"] == file_type
