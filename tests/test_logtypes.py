"""Log type declarations and normalizers: literal ECS output on fixture bodies, dedup keys, requests.

Every expected value below was computed once by running the code and then checked by hand against the
fixture record and ECS (epoch seconds recomputed from the calendar date; event keys recomputed with the
stdlib ``json`` + ``hashlib.blake2b`` from the documented construction). Event keys are persisted in the
spool for deduplication, so they are pinned literally: a change to them duplicates events after an upgrade.
"""

from __future__ import annotations

import copy
import random
import re
from pathlib import Path
from typing import Any

import orjson
import pytest

from collector.encodings.formats import ENCODERS, encode_json, encode_raw
from collector.logtypes import LOG_TYPES, CursorKind, LogType, build_event, dedup_key, record_key, serialize
from collector.logtypes.base import ECS_VERSION, NORMALIZE_ERROR_TAG
from collector.simulator.data import GENERATORS
from tests import logtype_cases
from tests.test_siem_normalize import SIEM_FIXTURE_CASES

FIXTURES = Path(__file__).parent / "fixtures" / "mimecast"
FALLBACK = 1_700_000_000  # 2023-11-14T22:13:20Z
HEX32 = re.compile(r"^[0-9a-f]{32}$")
ECS_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def fixture_records(log_type: LogType) -> list[Any]:
    """The records of ``<name>_page.json``, found where the API puts them: ``data[0][array_key]``;
    for a log type without a fixture page, the records of its literal cases (tests/logtype_cases.py)."""
    page = FIXTURES / f"{log_type.name}_page.json"
    if not page.exists():
        return logtype_cases.records(log_type.name)
    body = orjson.loads(page.read_bytes())
    records: list[Any] = body["data"][0][log_type.array_key]
    return records


OBSERVER = {"vendor": "Mimecast", "product": "Mimecast Email Security"}
ECS = {"version": ECS_VERSION}

# --- literal expectations: ttp_url_page.json ---------------------------------------------------

TTP_URL_0 = {
    "@timestamp": "2024-11-13T13:03:11.000Z",
    "ecs": ECS,
    "event": {
        "dataset": "mimecast.ttp_url",
        "module": "mimecast",
        "id": "08d9dea5b9abb3024abf7ff6557c55d5",
        "kind": "event",
        "action": "warn",
        "category": ["email", "threat"],
        "type": ["indicator"],
    },
    "observer": OBSERVER,
    "labels": {"mimecast_account": "acme", "mimecast_log_type": "ttp_url"},
    "user": {
        "email": "mike.a.roberts@demo-int.elastic.mime-api.com",
        "name": "mike.a.roberts",
        "domain": "demo-int.elastic.mime-api.com",
    },
    "email": {
        "to": {"address": ["mike.a.roberts@demo-int.elastic.mime-api.com"]},
        "from": {"address": ["gregoryhunt@thejunglegroup.b41.one"]},
        "subject": "Re",
        "message_id": "<cc11f61d32d018de-152846@hapi.b41.one>",
        "direction": "inbound",
    },
    "url": {
        "original": "https://oneclient.sfx.ms/Win/Preview/OneDriveSetup.exe",
        "scheme": "https",
        "domain": "oneclient.sfx.ms",
        "path": "/Win/Preview/OneDriveSetup.exe",
        "extension": "exe",
    },
    "source": {"ip": "54.243.138.179"},
    "rule": {"name": "Default Inbound URL Protect Definition"},
    "related": {
        "user": ["mike.a.roberts@demo-int.elastic.mime-api.com", "gregoryhunt@thejunglegroup.b41.one"],
        "ip": ["54.243.138.179"],
        "hosts": ["demo-int.elastic.mime-api.com", "thejunglegroup.b41.one", "oneclient.sfx.ms"],
    },
    "mimecast": {
        "userEmailAddress": "mike.a.roberts@demo-int.elastic.mime-api.com",
        "fromUserEmailAddress": "gregoryhunt@thejunglegroup.b41.one",
        "url": "https://oneclient.sfx.ms/Win/Preview/OneDriveSetup.exe",
        "ttpDefinition": "Default Inbound URL Protect Definition",
        "subject": "Re",
        "action": "warn",
        "adminOverride": "N/A",
        "userOverride": "None",
        "scanResult": "malicious",
        "category": "Dangerous file extension",
        "sendingIp": "54.243.138.179",
        "userAwarenessAction": "N/A",
        "date": "2024-11-13T13:03:11+0000",
        "actions": "Block",
        "route": "inbound",
        "creationMethod": "Entry Scan",
        "emailPartsDescription": ["Attachment"],
        "messageId": "<cc11f61d32d018de-152846@hapi.b41.one>",
        "tagMap": {},
    },
}

# "Internal IP" is not an address: no source.ip at all (the text stays under mimecast.sendingIp).
TTP_URL_1 = {
    "@timestamp": "2024-11-13T13:05:42.000Z",
    "ecs": ECS,
    "event": {
        "dataset": "mimecast.ttp_url",
        "module": "mimecast",
        "id": "2081057ed4446cdd2ea04b9f16b16e0e",
        "kind": "event",
        "action": "block",
        "category": ["email", "threat"],
        "type": ["indicator"],
    },
    "observer": OBSERVER,
    "labels": {"mimecast_account": "acme", "mimecast_log_type": "ttp_url"},
    "user": {"email": "analyst@corp.example", "name": "analyst", "domain": "corp.example"},
    "email": {
        "to": {"address": ["analyst@corp.example"]},
        "from": {"address": ["noreply@invoices.example"]},
        "subject": "Your password expires today",
        "message_id": "<a1b2c3@mail.corp.example>",
        "direction": "internal",
    },
    "url": {
        "original": "https://login-micros0ft.example/reset?u=analyst",
        "scheme": "https",
        "domain": "login-micros0ft.example",
        "path": "/reset",
        "query": "u=analyst",
    },
    "rule": {"name": "Default URL Protection Definition"},
    "related": {
        "user": ["analyst@corp.example", "noreply@invoices.example"],
        "hosts": ["corp.example", "invoices.example", "login-micros0ft.example"],
    },
    "mimecast": {
        "userEmailAddress": "analyst@corp.example",
        "fromUserEmailAddress": "noreply@invoices.example",
        "url": "https://login-micros0ft.example/reset?u=analyst",
        "ttpDefinition": "Default URL Protection Definition",
        "subject": "Your password expires today",
        "action": "block",
        "adminOverride": "N/A",
        "userOverride": "None",
        "scanResult": "malicious",
        "category": "Phishing & Fraud",
        "sendingIp": "Internal IP",
        "userAwarenessAction": "NA",
        "date": "2024-11-13T13:05:42+0000",
        "actions": "Block",
        "route": "internal",
        "creationMethod": "User Click",
        "emailPartsDescription": ["Body"],
        "messageId": "<a1b2c3@mail.corp.example>",
    },
}

# --- literal expectations: ttp_impersonation_page.json -----------------------------------------

TTP_IMPERSONATION_0 = {
    "@timestamp": "2024-11-13T09:12:01.000Z",
    "ecs": ECS,
    "event": {
        "dataset": "mimecast.ttp_impersonation",
        "module": "mimecast",
        "id": "379dc7486bef5e10d566bba52d85f688",
        "kind": "event",
        "action": "hold",
        "category": ["email", "threat"],
        "type": ["indicator"],
    },
    "observer": OBSERVER,
    "labels": {"mimecast_account": "acme", "mimecast_log_type": "ttp_impersonation"},
    "email": {
        "from": {"address": ["ceo@c0rp-example.com"]},
        "to": {"address": ["finance@corp.example"]},
        "subject": "Urgent wire transfer",
        "message_id": "<4f3c@c0rp-example.com>",
        "direction": "inbound",
    },
    "source": {"ip": "185.220.101.4"},
    "rule": {"name": "Default Impersonation Definition"},
    "threat": {"indicator": {"type": "email-addr", "email": {"address": "ceo@c0rp-example.com"}}},
    "related": {
        "user": ["ceo@c0rp-example.com", "finance@corp.example"],
        "ip": ["185.220.101.4"],
        "hosts": ["c0rp-example.com", "corp.example"],
    },
    "mimecast": {
        "id": "MTOKEN:eNqrVipOTS4tSs1MUbJSSsxNrMrLz8tXqgUAaaAI-w",
        "senderAddress": "ceo@c0rp-example.com",
        "recipientAddress": "finance@corp.example",
        "subject": "Urgent wire transfer",
        "definition": "Default Impersonation Definition",
        "hits": 3,
        "identifiers": ["similar_internal_domain", "internal_user_name", "reply_address_mismatch"],
        "action": "hold",
        "taggedExternal": True,
        "taggedMalicious": True,
        "senderIpAddress": "185.220.101.4",
        "eventTime": "2024-11-13T09:12:01+0000",
        "impersonationResults": [
            {
                "impersonationDomainSource": "similar_internal_domain",
                "stringSimilarToDomain": "c0rp-example",
                "similarDomain": "corp-example",
            },
            {
                "impersonationDomainSource": "internal_user_name",
                "stringSimilarToDomain": "Jane Doe",
                "similarDomain": "Jane Doe",
            },
        ],
        "messageId": "<4f3c@c0rp-example.com>",
    },
}

# Not tagged malicious: event.type info and no threat.indicator.
TTP_IMPERSONATION_1 = {
    "@timestamp": "2024-11-13T09:14:55.000Z",
    "ecs": ECS,
    "event": {
        "dataset": "mimecast.ttp_impersonation",
        "module": "mimecast",
        "id": "a5511c373bfaf33ba6ffb3cd3ae1e7c5",
        "kind": "event",
        "action": "none",
        "category": ["email", "threat"],
        "type": ["info"],
    },
    "observer": OBSERVER,
    "labels": {"mimecast_account": "acme", "mimecast_log_type": "ttp_impersonation"},
    "email": {
        "from": {"address": ["newsletter@fresh-domain.example"]},
        "to": {"address": ["sales@corp.example"]},
        "subject": "Quarterly report",
        "message_id": "<77aa@fresh-domain.example>",
        "direction": "inbound",
    },
    "source": {"ip": "198.51.100.77"},
    "rule": {"name": "Default Impersonation Definition"},
    "related": {
        "user": ["newsletter@fresh-domain.example", "sales@corp.example"],
        "ip": ["198.51.100.77"],
        "hosts": ["fresh-domain.example", "corp.example"],
    },
    "mimecast": {
        "id": "MTOKEN:eNqrVipOTS4tSs1MUbJSSsxNrMrLz8tXqgUAaaAI-x",
        "senderAddress": "newsletter@fresh-domain.example",
        "recipientAddress": "sales@corp.example",
        "subject": "Quarterly report",
        "definition": "Default Impersonation Definition",
        "hits": 1,
        "identifiers": ["newly_observed_domain"],
        "action": "none",
        "taggedExternal": True,
        "taggedMalicious": False,
        "senderIpAddress": "198.51.100.77",
        "eventTime": "2024-11-13T09:14:55+0000",
        "impersonationResults": [
            {"impersonationDomainSource": "newly_observed_domain", "stringSimilarToDomain": "fresh-domain.example"}
        ],
        "messageId": "<77aa@fresh-domain.example>",
    },
}

# --- literal expectations: archive_search_page.json --------------------------------------------

# isAdmin arrives as the string "true": still an admin. Empty searchReason: no event.reason.
ARCHIVE_SEARCH_0 = {
    "@timestamp": "2024-03-25T12:04:48.000Z",
    "ecs": ECS,
    "event": {
        "dataset": "mimecast.archive_search",
        "module": "mimecast",
        "id": "3f71d0af6ca5781615cd818ae046c908",
        "kind": "event",
        "action": "archive-search",
        "category": ["api"],
        "type": ["access"],
    },
    "observer": OBSERVER,
    "labels": {"mimecast_account": "acme", "mimecast_log_type": "archive_search"},
    "user": {"email": "example@test.com", "name": "example", "domain": "test.com", "roles": ["admin"]},
    "message": "Archive Mailbox",
    "related": {"user": ["example@test.com"], "hosts": ["test.com"]},
    "mimecast": {
        "createTime": "2024-03-25T12:04:48+0000",
        "emailAddr": "example@test.com",
        "source": "archive",
        "searchText": "{'mailbox':'example@test.com','query':'[]'}",
        "searchPath": "/INBOX/",
        "searchReason": "",
        "isAdmin": "true",
        "museQuery": "[]",
        "description": "Archive Mailbox",
    },
}

# isAdmin arrives as the boolean false: no roles. Mimecast's "source" stays under mimecast, not ECS source.
ARCHIVE_SEARCH_1 = {
    "@timestamp": "2024-03-25T12:05:10.000Z",
    "ecs": ECS,
    "event": {
        "dataset": "mimecast.archive_search",
        "module": "mimecast",
        "id": "8d5cf2d23244fd7e9f01cfbe6290c51c",
        "kind": "event",
        "action": "archive-search",
        "category": ["api"],
        "type": ["access"],
        "reason": "litigation hold, case 2024-17",
    },
    "observer": OBSERVER,
    "labels": {"mimecast_account": "acme", "mimecast_log_type": "archive_search"},
    "user": {"email": "legal@corp.example", "name": "legal", "domain": "corp.example"},
    "message": "Message search",
    "related": {"user": ["legal@corp.example"], "hosts": ["corp.example"]},
    "mimecast": {
        "createTime": "2024-03-25T12:05:10+0000",
        "emailAddr": "legal@corp.example",
        "source": "cloud",
        "searchText": "project falcon",
        "searchPath": "/",
        "searchReason": "litigation hold, case 2024-17",
        "isAdmin": False,
        "description": "Message search",
    },
}

FIXTURE_CASES = [
    # (log type, index in the fixture page, event.key, event.time, event.doc)
    ("ttp_url", 0, "08d9dea5b9abb3024abf7ff6557c55d5", 1_731_502_991, TTP_URL_0),
    ("ttp_url", 1, "2081057ed4446cdd2ea04b9f16b16e0e", 1_731_503_142, TTP_URL_1),
    ("ttp_impersonation", 0, "379dc7486bef5e10d566bba52d85f688", 1_731_489_121, TTP_IMPERSONATION_0),
    ("ttp_impersonation", 1, "a5511c373bfaf33ba6ffb3cd3ae1e7c5", 1_731_489_295, TTP_IMPERSONATION_1),
    ("archive_search", 0, "3f71d0af6ca5781615cd818ae046c908", 1_711_368_288, ARCHIVE_SEARCH_0),
    ("archive_search", 1, "8d5cf2d23244fd7e9f01cfbe6290c51c", 1_711_368_310, ARCHIVE_SEARCH_1),
]


@pytest.mark.parametrize(
    ("name", "index", "key", "time", "doc"),
    FIXTURE_CASES,
    ids=[f"{case[0]}-{case[1]}" for case in FIXTURE_CASES],
)
def test_fixture_record_normalizes_to_literal_event(
    name: str, index: int, key: str, time: int, doc: dict[str, Any]
) -> None:
    """Each fixture record becomes exactly the pinned ECS document, key and event time."""
    record = fixture_records(LOG_TYPES[name])[index]
    event = build_event(LOG_TYPES[name], record, "acme", fallback_time=FALLBACK)
    assert event.doc == doc
    assert event.key == key
    assert event.time == time


def test_fixture_pages_hold_the_records_the_literal_cases_cover() -> None:
    """The literal cases cover every record of every fixture page (none silently skipped), and every
    log type has literal cases: from a fixture page, or from the case table of tests/logtype_cases.py.
    The API 1.0 SIEM page's records have their literal cases, file by file, in test_siem_v1.py."""
    paged = [name for name in LOG_TYPES if name != "siem" and (FIXTURES / f"{name}_page.json").exists()]
    counts = {name: len(fixture_records(LOG_TYPES[name])) for name in paged}
    cases = [case[0] for case in FIXTURE_CASES] + [case[0] for case in SIEM_FIXTURE_CASES]
    covered = {name: cases.count(name) for name in paged}
    assert counts == covered == dict.fromkeys(paged, 2)
    tabled = {case[0] for case in logtype_cases.CASES}
    assert tabled.isdisjoint(paged)
    assert set(LOG_TYPES) == set(paged) | tabled | {"siem"}


@pytest.mark.parametrize(
    ("name", "record", "key", "time", "doc"),
    logtype_cases.CASES,
    ids=[f"{case[0]}-{i}" for i, case in enumerate(logtype_cases.CASES)],
)
def test_case_table_record_normalizes_to_literal_event(
    name: str, record: dict[str, Any], key: str, time: int, doc: dict[str, Any]
) -> None:
    """Each record of the case table becomes exactly its pinned ECS document, key and event time."""
    event = build_event(LOG_TYPES[name], copy.deepcopy(record), "acme", fallback_time=FALLBACK)
    assert event.doc == doc
    assert event.key == key
    assert event.time == time


@pytest.mark.parametrize(("admin", "expected"), [("true", ["admin"]), (True, ["admin"]), ("TRUE", ["admin"])])
def test_is_admin_string_and_boolean_true_give_the_same_roles(admin: Any, expected: list[str]) -> None:
    """isAdmin true as a boolean or as text (any case) gives user.roles ["admin"]."""
    record = {"createTime": "2024-03-25T12:04:48+0000", "emailAddr": "a@corp.example", "isAdmin": admin}
    event = build_event(LOG_TYPES["archive_search"], record, "acme", fallback_time=FALLBACK)
    assert event.doc["user"] == {"email": "a@corp.example", "name": "a", "domain": "corp.example", "roles": expected}


@pytest.mark.parametrize("admin", ["false", False, "False", None, "yes", 1])
def test_is_admin_false_or_unknown_gives_no_roles(admin: Any) -> None:
    """isAdmin false (boolean or text) or anything unrecognized gives no user.roles."""
    record = {"createTime": "2024-03-25T12:04:48+0000", "emailAddr": "a@corp.example", "isAdmin": admin}
    event = build_event(LOG_TYPES["archive_search"], record, "acme", fallback_time=FALLBACK)
    assert event.doc["user"] == {"email": "a@corp.example", "name": "a", "domain": "corp.example"}


@pytest.mark.parametrize(
    ("sending_ip", "expected"),
    [
        ("Internal IP", None),
        ("", None),
        (None, None),
        (3_232_235_777, None),
        (" 10.0.0.1 ", "10.0.0.1"),
        ("2001:DB8:0:0:0:0:0:1", "2001:db8::1"),
    ],
)
def test_source_ip_only_holds_real_addresses_in_canonical_form(sending_ip: Any, expected: str | None) -> None:
    """sendingIp becomes source.ip only when it is an IP address, canonicalized; otherwise no source."""
    record = {"date": "2024-11-13T13:03:11+0000", "sendingIp": sending_ip}
    event = build_event(LOG_TYPES["ttp_url"], record, "acme", fallback_time=FALLBACK)
    assert event.doc.get("source") == (None if expected is None else {"ip": expected})


def test_ecs_timestamp_keeps_a_four_digit_year() -> None:
    """@timestamp of a record dated in year 999 is still ISO 8601 with a 4-digit year (0999-...)."""
    record = {"createTime": "0999-01-01T00:00:00+0000"}
    event = build_event(LOG_TYPES["archive_search"], record, "acme", fallback_time=FALLBACK)
    assert event.doc["@timestamp"] == "0999-01-01T00:00:00.000Z"


# --- dedup keys ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(LOG_TYPES))
def test_dedup_key_is_stable_across_key_order(name: str) -> None:
    """Reordering a record's keys (at every level) does not change its key."""
    record = fixture_records(LOG_TYPES[name])[0]
    reordered = {k: (dict(reversed(v.items())) if isinstance(v, dict) else v) for k, v in reversed(record.items())}
    assert list(reordered) != list(record)
    assert dedup_key(reordered, LOG_TYPES[name].dedup_fields) == dedup_key(record, LOG_TYPES[name].dedup_fields)


def test_dedup_key_stable_across_nested_key_order() -> None:
    """Nested objects hash the same whatever their key order."""
    a = {"createTime": "2024-03-25T12:04:48+0000", "x": {"b": 1, "a": [{"d": 1, "c": 2}]}}
    b = {"x": {"a": [{"c": 2, "d": 1}], "b": 1}, "createTime": "2024-03-25T12:04:48+0000"}
    assert dedup_key(a, None) == dedup_key(b, None)


@pytest.mark.parametrize("name", list(LOG_TYPES))
def test_missing_and_null_field_give_different_keys(name: str) -> None:
    """A field that is absent and the same field present as null never collide (pitfall 7)."""
    log_type = LOG_TYPES[name]
    record = dict(fixture_records(log_type)[0])
    field = log_type.dedup_fields[-1] if log_type.dedup_fields else "description"
    missing = {k: v for k, v in record.items() if k != field}
    null = {**record, field: None}
    assert dedup_key(missing, log_type.dedup_fields) != dedup_key(null, log_type.dedup_fields)


def test_ttp_url_missing_field_differs_from_null_for_every_dedup_field() -> None:
    """For every ttp_url identifying field, absent and null hash differently."""
    log_type = LOG_TYPES["ttp_url"]
    assert log_type.dedup_fields is not None
    record = fixture_records(log_type)[0]
    for field in log_type.dedup_fields:
        missing = {k: v for k, v in record.items() if k != field}
        assert dedup_key(missing, log_type.dedup_fields) != dedup_key({**record, field: None}, log_type.dedup_fields)


def test_impersonation_key_changes_with_event_time_for_the_same_id() -> None:
    """The same impersonation id at two event times gives two keys (id is not trusted to be unique)."""
    log_type = LOG_TYPES["ttp_impersonation"]
    record = fixture_records(log_type)[0]
    later = {**record, "eventTime": "2024-11-13T09:12:02+0000"}
    assert dedup_key(later, log_type.dedup_fields) != dedup_key(record, log_type.dedup_fields)


def test_impersonation_key_ignores_fields_other_than_id_and_time() -> None:
    """Two impersonation records with the same id and eventTime are one event whatever else differs."""
    log_type = LOG_TYPES["ttp_impersonation"]
    record = fixture_records(log_type)[0]
    edited = {**record, "hits": 99, "subject": "changed"}
    assert dedup_key(edited, log_type.dedup_fields) == dedup_key(record, log_type.dedup_fields)


def test_archive_key_covers_the_whole_record() -> None:
    """Changing, adding or removing any archive field changes the key."""
    log_type = LOG_TYPES["archive_search"]
    record = fixture_records(log_type)[1]
    base = dedup_key(record, log_type.dedup_fields)
    variants = [{**record, name: "changed"} for name in record]
    variants += [{**record, "extra": 1}, {k: v for k, v in record.items() if k != "description"}]
    keys = {dedup_key(v, log_type.dedup_fields) for v in variants}
    assert base not in keys
    assert len(keys) == len(variants)


@pytest.mark.parametrize("name", list(LOG_TYPES))
@pytest.mark.parametrize("record", [{}, [], "text", None, 7, {"x": "\ud800"}, {"n": 2**80}])
def test_dedup_keys_are_32_lowercase_hex_chars(name: str, record: Any) -> None:
    """Every key, even of junk records, is 32 lowercase hex characters (128 bits)."""
    assert HEX32.match(dedup_key(record, LOG_TYPES[name].dedup_fields))


# --- records that cannot be normalized ----------------------------------------------------------


def test_non_object_record_is_kept_raw_with_error_tag() -> None:
    """A record that is not an object is kept under mimecast.raw, tagged, timed at the fallback."""
    event = build_event(LOG_TYPES["ttp_url"], ["not", "an", "object"], "acme", fallback_time=FALLBACK)
    assert event.doc == {
        "@timestamp": "2023-11-14T22:13:20.000Z",
        "ecs": ECS,
        "event": {"dataset": "mimecast.ttp_url", "module": "mimecast", "id": event.key, "kind": "event"},
        "observer": OBSERVER,
        "labels": {"mimecast_account": "acme", "mimecast_log_type": "ttp_url"},
        "tags": [NORMALIZE_ERROR_TAG],
        "error": {"message": "TypeError: record is a list, not an object"},
        "mimecast": {"raw": ["not", "an", "object"]},
    }
    assert event.time == FALLBACK
    assert event.key == "c0f9874a57c6de2a9f4a3bb5ee4aa662"


def test_record_without_time_field_is_kept_raw_with_error_tag() -> None:
    """A record without its time field is kept whole, tagged, with a KeyError message and fallback time."""
    record = {"id": "MTOKEN:x", "subject": "no time"}
    event = build_event(LOG_TYPES["ttp_impersonation"], record, "acme", fallback_time=FALLBACK)
    assert event.doc == {
        "@timestamp": "2023-11-14T22:13:20.000Z",
        "ecs": ECS,
        "event": {"dataset": "mimecast.ttp_impersonation", "module": "mimecast", "id": event.key, "kind": "event"},
        "observer": OBSERVER,
        "labels": {"mimecast_account": "acme", "mimecast_log_type": "ttp_impersonation"},
        "tags": [NORMALIZE_ERROR_TAG],
        "error": {"message": "KeyError: 'eventTime'"},
        "mimecast": {"id": "MTOKEN:x", "subject": "no time"},
    }
    assert event.time == FALLBACK


def test_record_with_unparsable_date_is_kept_raw_with_error_tag() -> None:
    """An unparsable date keeps the record whole, tagged, with the parser's message and fallback time."""
    record = {"createTime": "yesterday", "emailAddr": "a@corp.example"}
    event = build_event(LOG_TYPES["archive_search"], record, "acme", fallback_time=FALLBACK)
    assert event.doc == {
        "@timestamp": "2023-11-14T22:13:20.000Z",
        "ecs": ECS,
        "event": {"dataset": "mimecast.archive_search", "module": "mimecast", "id": event.key, "kind": "event"},
        "observer": OBSERVER,
        "labels": {"mimecast_account": "acme", "mimecast_log_type": "archive_search"},
        "tags": [NORMALIZE_ERROR_TAG],
        "error": {"message": "ValueError: Invalid isoformat string: 'yesterday'"},
        "mimecast": {"createTime": "yesterday", "emailAddr": "a@corp.example"},
    }
    assert event.time == FALLBACK


def test_error_message_is_capped_at_500_chars() -> None:
    """A huge unparsable date gives an error.message of at most 500 characters."""
    record = {"date": "x" * 10_000}
    event = build_event(LOG_TYPES["ttp_url"], record, "acme", fallback_time=FALLBACK)
    assert event.doc["tags"] == [NORMALIZE_ERROR_TAG]
    assert len(event.doc["error"]["message"]) == 500
    assert event.doc["mimecast"] == record


def test_error_event_key_is_the_same_key_a_good_record_would_get() -> None:
    """A record kept raw still gets its dedup key, so a re-fetch of it is a duplicate, not a new event."""
    record = {"id": "MTOKEN:x", "eventTime": "not a date"}
    event = build_event(LOG_TYPES["ttp_impersonation"], record, "acme", fallback_time=FALLBACK)
    assert event.key == dedup_key(record, ("id", "eventTime"))
    assert event.doc["event"]["id"] == event.key


# --- request data ------------------------------------------------------------------------------

START, END = 1_447_685_358, 1_447_688_958  # 2015-11-16T14:49:18Z, one hour later


def test_ttp_url_request_uses_from_to_and_oldest_first() -> None:
    """ttp_url asks with from/to in the API date format, oldest first, filters merged."""
    data = LOG_TYPES["ttp_url"].request_data(START, END, {"route": "inbound", "scanResult": "malicious"})
    assert data == {
        "from": "2015-11-16T14:49:18+0000",
        "to": "2015-11-16T15:49:18+0000",
        "oldestFirst": True,
        "route": "inbound",
        "scanResult": "malicious",
    }


def test_ttp_impersonation_request_uses_from_to_and_oldest_first() -> None:
    """ttp_impersonation asks with from/to, oldest first, list and bool filters passed through."""
    filters = {"taggedMalicious": True, "identifiers": ["internal_user_name"]}
    data = LOG_TYPES["ttp_impersonation"].request_data(START, END, filters)
    assert data == {
        "from": "2015-11-16T14:49:18+0000",
        "to": "2015-11-16T15:49:18+0000",
        "oldestFirst": True,
        "taggedMalicious": True,
        "identifiers": ["internal_user_name"],
    }


def test_archive_search_request_uses_start_end_and_no_oldest_first() -> None:
    """archive_search asks with start/end (not from/to) and sends no oldestFirst."""
    data = LOG_TYPES["archive_search"].request_data(START, END, {"query": "falcon"})
    assert data == {"start": "2015-11-16T14:49:18+0000", "end": "2015-11-16T15:49:18+0000", "query": "falcon"}


def test_request_data_without_filters_has_only_the_window() -> None:
    """No filters: just the window (plus oldestFirst where the endpoint takes it)."""
    assert LOG_TYPES["archive_search"].request_data(0, 1, {}) == {
        "start": "1970-01-01T00:00:00+0000",
        "end": "1970-01-01T00:00:01+0000",
    }


def test_request_data_is_identical_for_every_page_of_a_window() -> None:
    """Two calls with the same window and filters give equal, independent dicts."""
    log_type = LOG_TYPES["ttp_url"]
    first = log_type.request_data(START, END, {"route": "all"})
    second = log_type.request_data(START, END, {"route": "all"})
    assert first == second
    assert first is not second


# --- serialize ---------------------------------------------------------------------------------


def test_serialize_replaces_lone_surrogates() -> None:
    """Lone surrogates in values and keys become "?" instead of raising."""
    out = serialize({"s": "a\ud800b", "k\udfff": ["\udc80"]})
    assert orjson.loads(out) == {"s": "a?b", "k?": ["?"]}


def test_serialize_stringifies_integers_beyond_64_bits() -> None:
    """Integers outside orjson's range become decimal strings; in-range neighbours stay numbers."""
    doc = {"big": 2**64, "small": -(2**63) - 1, "huge": 10**100, "max": 2**64 - 1, "min": -(2**63)}
    assert orjson.loads(serialize(doc)) == {
        "big": "18446744073709551616",
        "small": "-9223372036854775809",
        "huge": "1" + "0" * 100,
        "max": 18446744073709551615,
        "min": -9223372036854775808,
    }


def test_serialize_survives_integers_beyond_pythons_str_digit_limit() -> None:
    """An integer with more than 4300 digits (Python's int->str limit) does not make serialize raise."""
    out = orjson.loads(serialize({"n": 10**5000, "ok": 1}))
    assert out["ok"] == 1
    assert isinstance(out["n"], str)


def test_serialize_plain_doc_is_compact_json_in_insertion_order() -> None:
    """A clean document serializes as compact JSON keeping its key order."""
    assert serialize({"b": 1, "a": [True, None, "x"]}) == b'{"b":1,"a":[true,null,"x"]}'


# --- conformance over the registry ---------------------------------------------------------------


@pytest.mark.parametrize("name", list(LOG_TYPES))
def test_log_type_declaration_is_consistent(name: str) -> None:
    """Registry key = name, path under /api/ (API 2.0 SIEM batch: /siem/), dataset mimecast.<name>,
    distinct window fields (windowed kinds); a batch log type's types each make a stream of their own label."""
    log_type = LOG_TYPES[name]
    assert log_type.name == name
    assert log_type.path.startswith("/siem/v1/batch/" if log_type.batch_types else "/api/")
    labels = {log_type.for_batch_type(t).name for t in log_type.batch_types}
    assert len(labels) == len(log_type.batch_types)
    assert all(label.startswith(f"{name}.") and " " not in label for label in labels)
    assert log_type.dataset == f"mimecast.{name}"
    if log_type.cursor_kind is CursorKind.WINDOWED:
        assert log_type.from_field != log_type.to_field
    assert log_type.array_key is None or log_type.array_key  # None: data[] holds the records
    assert log_type.alt_path is None or (log_type.alt_path.startswith("/api/") and log_type.alt_path != log_type.path)
    assert log_type.event_id_description
    for spec in log_type.filters.values():
        assert spec.kind in ("str", "bool", "str_list")
        assert spec.request_field not in (log_type.from_field, log_type.to_field, "oldestFirst")


@pytest.mark.parametrize("name", list(LOG_TYPES))
def test_normalize_is_pure(name: str) -> None:
    """normalize gives equal output twice and leaves its input untouched."""
    log_type = LOG_TYPES[name]
    for record in fixture_records(log_type):
        before = copy.deepcopy(record)
        first = log_type.normalize(record)
        second = log_type.normalize(record)
        assert first == second
        assert first is not second
        assert record == before


@pytest.mark.parametrize("name", list(LOG_TYPES))
def test_build_event_does_not_mutate_the_record(name: str) -> None:
    """build_event leaves the raw record exactly as it was."""
    log_type = LOG_TYPES[name]
    for record in fixture_records(log_type):
        before = copy.deepcopy(record)
        build_event(log_type, record, "acme", fallback_time=FALLBACK)
        assert record == before


@pytest.mark.parametrize("name", list(LOG_TYPES))
def test_fixture_records_normalize_without_error(name: str) -> None:
    """Every record of the log type's fixture page normalizes cleanly, timed from its own time field."""
    log_type = LOG_TYPES[name]
    for record in fixture_records(log_type):
        event = build_event(log_type, record, "acme", fallback_time=FALLBACK)
        assert "tags" not in event.doc
        assert event.time != FALLBACK
        assert ECS_TIMESTAMP.match(event.doc["@timestamp"])


@pytest.mark.parametrize("name", list(GENERATORS))  # SIEM batch types: tests/test_siem_normalize.py
def test_generated_records_normalize_without_error(name: str) -> None:
    """Simulator records of every log type normalize cleanly, keep their time and keep the raw record."""
    log_type = LOG_TYPES[name]
    rng = random.Random(f"conformance:{name}")
    for i in range(50):
        epoch = 1_731_500_000 + i * 37
        record = GENERATORS[name](rng, epoch)
        event = build_event(log_type, record, "acme", fallback_time=FALLBACK)
        assert "tags" not in event.doc
        assert event.time == epoch
        assert event.doc["mimecast"] == record
        assert event.doc["event"]["id"] == event.key == record_key(log_type, record)
        if log_type.event_id_field is None:
            assert event.key == dedup_key(record, log_type.dedup_fields)
        else:  # Mimecast's own unique id, as sent
            assert event.key == record[log_type.event_id_field]
        assert event.doc["ecs"] == {"version": ECS_VERSION}
        assert orjson.loads(serialize(event.doc)) == event.doc


@pytest.mark.parametrize("name", list(LOG_TYPES))
def test_event_doc_carries_common_fields(name: str) -> None:
    """Every event has dataset, module, kind, id, observer and both labels."""
    log_type = LOG_TYPES[name]
    event = build_event(log_type, fixture_records(log_type)[0], "tenant-1", fallback_time=FALLBACK)
    assert event.doc["event"]["dataset"] == f"mimecast.{name}"
    assert event.doc["event"]["module"] == "mimecast"
    assert event.doc["event"]["kind"] in ("event", "alert")  # SIEM rejections, holds and hits are alerts
    assert event.doc["event"]["id"] == event.key
    assert event.doc["observer"] == OBSERVER
    assert event.doc["labels"] == {"mimecast_account": "tenant-1", "mimecast_log_type": name}


# --- encoders ----------------------------------------------------------------------------------


def test_encode_json_returns_the_spooled_bytes_unchanged() -> None:
    """encode_json hands back the very bytes it was given."""
    doc = serialize(TTP_URL_0)
    assert encode_json(doc) is doc
    assert ENCODERS["json"] is encode_json


@pytest.mark.parametrize("name", list(LOG_TYPES))
def test_encode_raw_gives_the_original_record_plus_account_and_log_type(name: str) -> None:
    """encode_raw returns the Mimecast record as received plus mimecast_account and mimecast_log_type."""
    log_type = LOG_TYPES[name]
    record = fixture_records(log_type)[0]
    event = build_event(log_type, record, "acme", fallback_time=FALLBACK)
    out = orjson.loads(encode_raw(serialize(event.doc)))
    assert out == {"mimecast_account": "acme", "mimecast_log_type": name, **record}
    assert ENCODERS["raw"] is encode_raw


def test_encode_raw_of_a_literal_event() -> None:
    """encode_raw of the archive fixture event is the literal raw record with its two labels first."""
    out = encode_raw(serialize(ARCHIVE_SEARCH_1))
    assert out == (
        b'{"mimecast_account":"acme","mimecast_log_type":"archive_search",'
        b'"createTime":"2024-03-25T12:05:10+0000","emailAddr":"legal@corp.example","source":"cloud",'
        b'"searchText":"project falcon","searchPath":"/","searchReason":"litigation hold, case 2024-17",'
        b'"isAdmin":false,"description":"Message search"}'
    )


def test_encode_raw_of_a_non_object_record_uses_raw_key() -> None:
    """A record kept raw because it was not an object comes out under "raw"."""
    event = build_event(LOG_TYPES["ttp_url"], "garbage", "acme", fallback_time=FALLBACK)
    out = orjson.loads(encode_raw(serialize(event.doc)))
    assert out == {"mimecast_account": "acme", "mimecast_log_type": "ttp_url", "raw": "garbage"}
