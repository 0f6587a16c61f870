"""LEEF 2.0 encoding: parsed back by an independent parser written here from the LEEF spec, not the encoder's code.

The value escapes (``\\\\``, ``\\t``, ``\\n``, ``\\r``) are this project's documented convention: LEEF
defines none. Literal expectations were checked by hand against the fixture records; ``externalId`` is
the pinned event key of tests/test_logtypes.py.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.encodings.leef import LEEF_FIELDS, encode_leef
from collector.logtypes import DEFAULT_STREAMS, LOG_TYPES, build_event, serialize
from tests.helpers import fixture_event_doc, fixture_records

KEY = re.compile(r"^[A-Za-z0-9]+$")
VALUE_UNESCAPES = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r"}
HEADER_UNESCAPES = {"\\": "\\", "|": "|"}
TIME_FORMAT = "yyyy-MM-dd'T'HH:mm:ss.SSSZ"


# --- an independent LEEF 2.0 parser ------------------------------------------------------------------


def unescape(raw: str, table: dict[str, str]) -> str:
    """Undo backslash escapes; an escape outside the table fails the test (KeyError)."""
    out: list[str] = []
    i = 0
    while i < len(raw):
        if raw[i] == "\\":
            out.append(table[raw[i + 1]])
            i += 2
        else:
            out.append(raw[i])
            i += 1
    return "".join(out)


def delimiter_of(spec: str) -> str:
    """The LEEF 2.0 delimiter field: one character, or its hex code after ``x`` or ``0x``."""
    if len(spec) == 1:
        return spec
    digits = spec.removeprefix("0x") if spec.startswith("0x") else spec.removeprefix("x")
    assert digits != spec, f"delimiter field {spec!r} is neither one character nor x/0x hex"
    assert 1 <= len(digits) <= 4, f"delimiter field {spec!r} has 1-4 hex digits"
    return chr(int(digits, 16))


def split_unescaped(text: str, separator: str) -> list[str]:
    """Split at separators that no backslash escapes (the escapes themselves are kept)."""
    parts: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(text):
        if text[i] == "\\":
            current.append(text[i : i + 2])
            i += 2
        elif text[i] == separator:
            parts.append("".join(current))
            current = []
            i += 1
        else:
            current.append(text[i])
            i += 1
    parts.append("".join(current))
    return parts


def parse_leef(line: str) -> tuple[list[str], dict[str, str]]:
    """The 6 header fields (``LEEF:2.0`` first, delimiter last, unescaped) and the attributes."""
    pieces = split_unescaped(line, "|")
    header = [unescape(field, HEADER_UNESCAPES) for field in pieces[:6]]
    assert header[0] == "LEEF:2.0"
    body = "|".join(pieces[6:])  # pipes in attribute values are plain characters
    attributes: dict[str, str] = {}
    for pair in split_unescaped(body, delimiter_of(header[5])):
        key, sep, raw = pair.partition("=")  # a value may hold "=": the key ends at the first one
        assert sep == "=", f"no '=' in {pair!r}"
        assert KEY.match(key), f"bad key {key!r}"
        assert key not in attributes, f"duplicate key {key}"
        attributes[key] = unescape(raw, VALUE_UNESCAPES)
    return header, attributes


# --- building events --------------------------------------------------------------------------------


def encode(doc: dict[str, Any]) -> tuple[bytes, list[str], dict[str, str]]:
    """Encode a spooled event; return the raw line and its parsed header and attributes."""
    line = encode_leef(serialize(doc))
    header, attributes = parse_leef(line.decode("utf-8"))
    return line, header, attributes


def with_text(value: str) -> dict[str, Any]:
    """A ttp_url event whose subject, URL and user are all ``value``."""
    doc = fixture_event_doc("ttp_url")
    doc["email"]["subject"] = value
    doc["url"]["original"] = value
    doc["user"]["email"] = value
    return doc


# --- fixtures: literal ------------------------------------------------------------------------------

PRODUCT = ["LEEF:2.0", "Mimecast", "Mimecast Email Security", "1.0"]
ACCOUNT = {"mimecastAccount": "acme"}

LITERAL_CASES = [
    (
        "ttp_url",
        0,
        [*PRODUCT, "ttp_url:warn", "x09"],
        {
            "devTime": "2024-11-13T13:03:11.000+0000",
            "devTimeFormat": TIME_FORMAT,
            "sev": "8",
            "cat": "mimecast.ttp_url",
            "externalId": "08d9dea5b9abb3024abf7ff6557c55d5",
            "action": "warn",
            "src": "54.243.138.179",
            "usrName": "mike.a.roberts@demo-int.elastic.mime-api.com",
            "url": "https://oneclient.sfx.ms/Win/Preview/OneDriveSetup.exe",
            "sender": "gregoryhunt@thejunglegroup.b41.one",
            "subject": "Re",
            "messageId": "<cc11f61d32d018de-152846@hapi.b41.one>",
            "policy": "Default Inbound URL Protect Definition",
            "scanResult": "malicious",
            "urlCategory": "Dangerous file extension",
            "emailDirection": "inbound",
            **ACCOUNT,
        },
    ),
    (
        # "Internal IP" is no address: no src. The URL keeps its "=" unescaped.
        "ttp_url",
        1,
        [*PRODUCT, "ttp_url:block", "x09"],
        {
            "devTime": "2024-11-13T13:05:42.000+0000",
            "devTimeFormat": TIME_FORMAT,
            "sev": "8",
            "cat": "mimecast.ttp_url",
            "externalId": "2081057ed4446cdd2ea04b9f16b16e0e",
            "action": "block",
            "usrName": "analyst@corp.example",
            "url": "https://login-micros0ft.example/reset?u=analyst",
            "sender": "noreply@invoices.example",
            "subject": "Your password expires today",
            "messageId": "<a1b2c3@mail.corp.example>",
            "policy": "Default URL Protection Definition",
            "scanResult": "malicious",
            "urlCategory": "Phishing & Fraud",
            "emailDirection": "internal",
            **ACCOUNT,
        },
    ),
    (
        "ttp_impersonation",
        0,
        [*PRODUCT, "ttp_impersonation:hold", "x09"],
        {
            "devTime": "2024-11-13T09:12:01.000+0000",
            "devTimeFormat": TIME_FORMAT,
            "sev": "8",
            "cat": "mimecast.ttp_impersonation",
            "externalId": "379dc7486bef5e10d566bba52d85f688",
            "action": "hold",
            "src": "185.220.101.4",
            "usrName": "finance@corp.example",
            "sender": "ceo@c0rp-example.com",
            "subject": "Urgent wire transfer",
            "messageId": "<4f3c@c0rp-example.com>",
            "policy": "Default Impersonation Definition",
            "identifiers": "similar_internal_domain,internal_user_name,reply_address_mismatch",
            "hits": "3",
            "taggedMalicious": "true",
            **ACCOUNT,
        },
    ),
    (
        # isAdmin "true": an admin search, role admin. Empty searchReason: no searchReason.
        "archive_search",
        0,
        [*PRODUCT, "archive_search:admin_search", "x09"],
        {
            "devTime": "2024-03-25T12:04:48.000+0000",
            "devTimeFormat": TIME_FORMAT,
            "sev": "4",
            "cat": "mimecast.archive_search",
            "externalId": "3f71d0af6ca5781615cd818ae046c908",
            "action": "archive-search",
            "usrName": "example@test.com",
            "role": "admin",
            "description": "Archive Mailbox",
            "searchText": "{'mailbox':'example@test.com','query':'[]'}",
            "searchPath": "/INBOX/",
            "searchSource": "archive",
            **ACCOUNT,
        },
    ),
]


@pytest.mark.parametrize(
    ("name", "index", "header", "attributes"), LITERAL_CASES, ids=[f"{c[0]}-{c[1]}" for c in LITERAL_CASES]
)
def test_fixture_record_encodes_to_literal_leef(
    name: str, index: int, header: list[str], attributes: dict[str, str]
) -> None:
    """A fixture record's LEEF line parses back to exactly the pinned header and attributes."""
    _, parsed_header, parsed_attributes = encode(fixture_event_doc(name, index))
    assert parsed_header == header
    assert parsed_attributes == attributes


# LEEF attribute -> the raw record field it must equal, per log type.
SOURCE_FIELDS = {
    "ttp_url": {
        "action": "action",
        "sender": "fromUserEmailAddress",
        "usrName": "userEmailAddress",
        "url": "url",
        "subject": "subject",
        "messageId": "messageId",
        "scanResult": "scanResult",
        "urlCategory": "category",
    },
    "ttp_impersonation": {
        "action": "action",
        "sender": "senderAddress",
        "usrName": "recipientAddress",
        "src": "senderIpAddress",
        "subject": "subject",
        "policy": "definition",
        "messageId": "messageId",
    },
    "siem": {"accountCode": "acc"},  # the one field every SIEM type carries besides datetime
    "archive_search": {
        "usrName": "emailAddr",
        "description": "description",
        "searchText": "searchText",
        "searchPath": "searchPath",
    },
    "ttp_attachment": {
        "action": "actionTriggered",
        "usrName": "recipientAddress",
        "subject": "subject",
        "messageId": "messageId",
        "policy": "definition",
        "fileName": "fileName",
        "fileType": "fileType",
        "sandboxResult": "result",
        "emailDirection": "route",
    },
    "dlp": {
        "action": "action",
        "recipient": "recipientAddress",
        "subject": "subject",
        "messageId": "messageId",
        "policy": "policy",
        "emailDirection": "route",
    },
    "audit": {"action": "auditType", "description": "eventInfo", "auditCategory": "category"},
    "held_release": {
        "action": "status",
        "usrName": "operator",
        "subject": "subject",
        "policy": "policy",
        "heldReason": "heldReason",
    },
}
ALL_RECORDS = [(name, i) for name in LOG_TYPES for i in range(len(fixture_records(name)))]


@pytest.mark.parametrize(("name", "index"), ALL_RECORDS, ids=[f"{n}-{i}" for n, i in ALL_RECORDS])
def test_every_fixture_record_round_trips_its_key_fields(name: str, index: int) -> None:
    """Every record of every fixture page: key attributes equal the source record's values."""
    record = fixture_records(name)[index]
    event = build_event(LOG_TYPES[name], record, "acme", 0)
    _, header, attrs = encode(event.doc)
    assert header[:4] == PRODUCT
    assert header[4].startswith(f"{name}:")
    assert header[5] == "x09"
    assert attrs["devTime"] == event.doc["@timestamp"].replace("Z", "+0000")
    assert attrs["externalId"] == event.key
    assert attrs["cat"] == f"mimecast.{name}"
    assert attrs["mimecastAccount"] == "acme"
    expected = {key: record[field] for key, field in SOURCE_FIELDS.get(name, {}).items()}
    assert {key: attrs[key] for key in expected} == expected


def test_every_log_type_has_a_leef_field_table() -> None:
    """The seven windowed log types and API 1.0 SIEM have their own attribute mapping, and no row names a log type that
    does not exist. A new log type needs no row to encode: it gets the generic one until it has its own."""
    assert set(LEEF_FIELDS) - {"unparsed"} == set(SOURCE_FIELDS) <= set(LOG_TYPES)
    assert set(SOURCE_FIELDS) == {*DEFAULT_STREAMS, "siem"}  # SIEM batch types: the generic row


# --- header, severity ----------------------------------------------------------------------------

# The same ids and severities as the CEF Signature ID / Severity (tests/test_cef.py pins those).
SEVERITY_CASES = [
    ("ttp_url", {"scanResult": "malicious", "action": "allow"}, "ttp_url:allow", "9"),
    ("ttp_url", {"scanResult": "malicious", "action": "block"}, "ttp_url:block", "8"),
    ("ttp_url", {"scanResult": "malicious", "action": "warn"}, "ttp_url:warn", "8"),
    ("ttp_url", {"scanResult": "clean", "action": "block"}, "ttp_url:block", "4"),
    ("ttp_url", {"scanResult": "clean", "action": "allow"}, "ttp_url:allow", "3"),
    ("ttp_url", {"scanResult": "clean", "action": None}, "ttp_url:unknown", "3"),
    ("ttp_impersonation", {"taggedMalicious": True, "action": "hold"}, "ttp_impersonation:hold", "8"),
    ("ttp_impersonation", {"taggedMalicious": "true", "action": "none"}, "ttp_impersonation:none", "8"),
    ("ttp_impersonation", {"taggedMalicious": False, "action": "hold"}, "ttp_impersonation:hold", "6"),
    ("ttp_impersonation", {"taggedMalicious": False, "action": "none"}, "ttp_impersonation:none", "5"),
    ("archive_search", {"isAdmin": True}, "archive_search:admin_search", "4"),
    ("archive_search", {"isAdmin": "false"}, "archive_search:search", "3"),
]


@pytest.mark.parametrize(("name", "changes", "event_id", "severity"), SEVERITY_CASES)
def test_event_id_and_sev_follow_the_table(name: str, changes: dict[str, Any], event_id: str, severity: str) -> None:
    """EventID and sev per log type and verdict, the same as CEF's Signature ID and Severity."""
    _, header, attrs = encode(fixture_event_doc(name, **changes))
    assert (header[4], attrs["sev"]) == (event_id, severity)


def test_header_escapes_pipe_and_backslash() -> None:
    """A pipe and a backslash in header fields are backslash-escaped on the wire and parse back."""
    doc = fixture_event_doc("ttp_url")
    doc["event"]["action"] = "a|b\\c"
    doc["observer"]["product"] = "Mail|Sec\\urity"
    line, header, attrs = encode(doc)
    assert line.startswith(b"LEEF:2.0|Mimecast|Mail\\|Sec\\\\urity|1.0|ttp_url:a\\|b\\\\c|x09|devTime=")
    assert header == ["LEEF:2.0", "Mimecast", "Mail|Sec\\urity", "1.0", "ttp_url:a|b\\c", "x09"]
    assert attrs["action"] == "a|b\\c"


def test_header_line_breaks_become_spaces() -> None:
    """CR and LF cannot appear in the header: they become spaces there (and stay exact in ``action``)."""
    doc = fixture_event_doc("ttp_url")
    doc["event"]["action"] = "x\ny\r\nz"
    _, header, attrs = encode(doc)
    assert header[4] == "ttp_url:x y  z"
    assert attrs["action"] == "x\ny\r\nz"


# --- escaping ----------------------------------------------------------------------------------------

TRICKY = [
    "pipe | here",
    "a=b",
    "key=value\tother=thing",
    "back\\slash\\",
    "\\t is not a tab",
    "line1\nline2",
    "cr\rlf\r\n",
    "tab\there\t",
    "Zürich — 東京 ✓",
    " padded  ",
    "every|=\\\n\r\t one Zürich — 東京 ✓",
]


@pytest.mark.parametrize("value", TRICKY)
def test_special_characters_round_trip_in_subject_url_and_user(value: str) -> None:
    """Pipes, equals, backslashes, CR/LF, tabs and non-ASCII come back exactly in subject, url, usrName."""
    _, _, attrs = encode(with_text(value))
    assert (attrs["subject"], attrs["url"], attrs["usrName"]) == (value, value, value)
    assert attrs["mimecastAccount"] == "acme"  # nothing after the tricky values was swallowed


def test_value_escapes_on_the_wire() -> None:
    """On the wire: ``\\`` -> ``\\\\``, tab -> ``\\t``, LF -> ``\\n``, CR -> ``\\r``; ``=`` and ``|`` as is."""
    line, _, _ = encode(with_text("a=b\\c\td\ne\rf|g"))
    assert b"\tsubject=a=b\\\\c\\td\\ne\\rf|g\tmessageId=" in line


def test_output_is_one_utf8_line_with_tabs_only_between_attributes() -> None:
    """No raw CR/LF; valid UTF-8; every raw tab separates two attributes (none inside a value)."""
    line, _, attrs = encode(with_text("Zürich — 東京 ✓\t\r\n\t"))
    text = line.decode("utf-8")
    assert b"\n" not in line
    assert b"\r" not in line
    assert text.count("\t") == len(attrs) - 1
    assert "\tsubject=Zürich — 東京 ✓\\t\\r\\n\\t\t" in text


def test_long_values_are_cut_to_4000_characters() -> None:
    """A value longer than 4000 characters is cut to 4000 before escaping (no half escape)."""
    doc = with_text("\t" * 5000)
    doc["email"]["subject"] = "é" * 5000
    _, _, attrs = encode(doc)
    assert attrs["subject"] == "é" * 4000
    assert attrs["url"] == "\t" * 4000


@pytest.mark.parametrize(
    ("stamp", "dev_time"),
    [
        ("2024-11-13T13:03:11.123Z", "2024-11-13T13:03:11.123+0000"),
        ("0999-01-01T00:00:00.000Z", "0999-01-01T00:00:00.000+0000"),
    ],
)
def test_dev_time_is_utc_with_milliseconds_and_four_digit_year(stamp: str, dev_time: str) -> None:
    """devTime matches devTimeFormat exactly: milliseconds kept, year always 4 digits, +0000."""
    doc = fixture_event_doc("ttp_url")
    doc["@timestamp"] = stamp
    _, _, attrs = encode(doc)
    assert (attrs["devTime"], attrs["devTimeFormat"]) == (dev_time, TIME_FORMAT)


@settings(max_examples=200, deadline=None)
@given(subject=st.text(min_size=1, max_size=300), url=st.text(min_size=1, max_size=300))
def test_arbitrary_text_round_trips(subject: str, url: str) -> None:
    """Any text in subject and URL comes back exactly, on one line."""
    doc = fixture_event_doc("ttp_url")
    doc["email"]["subject"] = subject
    doc["url"]["original"] = url
    line, _, attrs = encode(doc)
    assert b"\n" not in line
    assert b"\r" not in line
    assert (attrs["subject"], attrs["url"]) == (subject, url)
    assert attrs["mimecastAccount"] == "acme"


# --- records that are not normal events -------------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "raw", "error"),
    [
        (
            {"url": "https://x.example/\t", "note": "a=b"},
            '{"url":"https://x.example/\\t","note":"a=b"}',
            "KeyError: 'date'",
        ),
        (["not", "an", "object"], '{"raw":["not","an","object"]}', "TypeError: record is a list, not an object"),
    ],
)
def test_normalize_error_event_encodes_with_raw_record(record: Any, raw: str, error: str) -> None:
    """A record kept raw (tag mimecast_normalize_error) encodes: sev 5, its error, the raw JSON."""
    event = build_event(LOG_TYPES["ttp_url"], record, "acme", 1_700_000_000)
    assert event.doc["tags"] == ["mimecast_normalize_error"]
    _, header, attrs = encode(event.doc)
    assert header == [*PRODUCT, "ttp_url:unparsed", "x09"]
    assert attrs == {
        "devTime": "2023-11-14T22:13:20.000+0000",
        "devTimeFormat": TIME_FORMAT,
        "sev": "5",
        "cat": "mimecast.ttp_url",
        "externalId": event.key,
        "errorMessage": error,
        **ACCOUNT,
        "rawRecord": raw,
    }


def test_unknown_log_type_encodes_generically() -> None:
    """An event of a log type without a table row still encodes, with sev 5 and the common attributes."""
    doc = {
        "@timestamp": "2024-01-01T00:00:00.000Z",
        "event": {"dataset": "mimecast.future", "id": "abc", "action": "seen"},
        "labels": {"mimecast_account": "acme", "mimecast_log_type": "future"},
    }
    _, header, attrs = encode(doc)
    assert header == ["LEEF:2.0", "Mimecast", "Mimecast Email Security", "1.0", "future:seen", "x09"]
    assert attrs == {
        "devTime": "2024-01-01T00:00:00.000+0000",
        "devTimeFormat": TIME_FORMAT,
        "sev": "5",
        "cat": "mimecast.future",
        "externalId": "abc",
        "action": "seen",
        **ACCOUNT,
    }
