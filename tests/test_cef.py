"""CEF encoding: parsed back by an independent parser written here from the CEF spec, never the encoder's code.

Literal expectations were checked by hand against the fixture records: ``rt`` is the event time of
tests/test_logtypes.py times 1000, ``externalId`` the pinned event key there.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.encodings.cef import CEF_FIELDS, encode_cef
from collector.logtypes import DEFAULT_STREAMS, LOG_TYPES, build_event, serialize
from tests.helpers import fixture_event_doc, fixture_records

KEY = re.compile(r"^[A-Za-z0-9]+$")
EXTENSION_UNESCAPES = {"\\": "\\", "=": "=", "n": "\n", "r": "\r"}
HEADER_UNESCAPES = {"\\": "\\", "|": "|"}


# --- an independent CEF parser ---------------------------------------------------------------------


def unescape(raw: str, table: dict[str, str]) -> str:
    """Undo backslash escapes; an escape the spec does not define fails the test (KeyError)."""
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


def unescaped_equals(extension: str) -> list[int]:
    """Positions of every ``=`` not preceded by an escaping backslash."""
    found: list[int] = []
    i = 0
    while i < len(extension):
        if extension[i] == "\\":
            i += 2
            continue
        if extension[i] == "=":
            found.append(i)
        i += 1
    return found


def parse_extension(extension: str) -> dict[str, str]:
    """key=value pairs: a key is the word before an unescaped ``=``, its value runs to the space before the next key."""
    equals = unescaped_equals(extension)
    starts = [extension.rfind(" ", 0, eq) + 1 for eq in equals]
    pairs: dict[str, str] = {}
    for n, eq in enumerate(equals):
        key = extension[starts[n] : eq]
        assert KEY.match(key), f"bad key {key!r}"
        assert key not in pairs, f"duplicate key {key}"
        end = starts[n + 1] - 1 if n + 1 < len(equals) else len(extension)
        assert n + 1 == len(equals) or extension[end] == " "
        pairs[key] = unescape(extension[eq + 1 : end], EXTENSION_UNESCAPES)
    return pairs


def parse_cef(line: str) -> tuple[list[str], dict[str, str]]:
    """The 7 header fields (``CEF:0`` first) and the extension of one CEF line, all unescaped."""
    fields: list[str] = []
    current: list[str] = []
    i = 0
    while len(fields) < 7:
        char = line[i]
        if char == "\\":
            current.append(HEADER_UNESCAPES[line[i + 1]])
            i += 2
        elif char == "|":
            fields.append("".join(current))
            current = []
            i += 1
        else:
            current.append(char)
            i += 1
    assert fields[0] == "CEF:0"
    return fields, parse_extension(line[i:])


# --- building events --------------------------------------------------------------------------------


def encode(doc: dict[str, Any]) -> tuple[bytes, list[str], dict[str, str]]:
    """Encode a spooled event; return the raw line and its parsed header and extension."""
    line = encode_cef(serialize(doc))
    header, extension = parse_cef(line.decode("utf-8"))
    return line, header, extension


def with_text(value: str) -> dict[str, Any]:
    """A ttp_url event whose subject, URL and user are all ``value``."""
    doc = fixture_event_doc("ttp_url")
    doc["email"]["subject"] = value
    doc["url"]["original"] = value
    doc["user"]["email"] = value
    return doc


# --- fixtures: literal ------------------------------------------------------------------------------

PRODUCT = ["CEF:0", "Mimecast", "Mimecast Email Security", "1.0"]
ACCOUNT = {"cs5": "acme", "cs5Label": "Mimecast Account"}

LITERAL_CASES = [
    (
        "ttp_url",
        0,
        [*PRODUCT, "ttp_url:warn", "URL Protect click: warn", "8"],
        {
            "rt": "1731502991000",
            "externalId": "08d9dea5b9abb3024abf7ff6557c55d5",
            "cat": "mimecast.ttp_url",
            "act": "warn",
            "src": "54.243.138.179",
            "suser": "gregoryhunt@thejunglegroup.b41.one",
            "duser": "mike.a.roberts@demo-int.elastic.mime-api.com",
            "request": "https://oneclient.sfx.ms/Win/Preview/OneDriveSetup.exe",
            "msg": "Re",
            "cs1": "Default Inbound URL Protect Definition",
            "cs1Label": "Rule Name",
            "cs2": "<cc11f61d32d018de-152846@hapi.b41.one>",
            "cs2Label": "Message ID",
            "cs3": "malicious",
            "cs3Label": "Scan Result",
            "cs4": "Dangerous file extension",
            "cs4Label": "URL Category",
            **ACCOUNT,
        },
    ),
    (
        # "Internal IP" is no address: no src. The URL's "=" is escaped and comes back.
        "ttp_url",
        1,
        [*PRODUCT, "ttp_url:block", "URL Protect click: block", "8"],
        {
            "rt": "1731503142000",
            "externalId": "2081057ed4446cdd2ea04b9f16b16e0e",
            "cat": "mimecast.ttp_url",
            "act": "block",
            "suser": "noreply@invoices.example",
            "duser": "analyst@corp.example",
            "request": "https://login-micros0ft.example/reset?u=analyst",
            "msg": "Your password expires today",
            "cs1": "Default URL Protection Definition",
            "cs1Label": "Rule Name",
            "cs2": "<a1b2c3@mail.corp.example>",
            "cs2Label": "Message ID",
            "cs3": "malicious",
            "cs3Label": "Scan Result",
            "cs4": "Phishing & Fraud",
            "cs4Label": "URL Category",
            **ACCOUNT,
        },
    ),
    (
        "ttp_impersonation",
        0,
        [*PRODUCT, "ttp_impersonation:hold", "Impersonation Protect: hold", "8"],
        {
            "rt": "1731489121000",
            "externalId": "379dc7486bef5e10d566bba52d85f688",
            "cat": "mimecast.ttp_impersonation",
            "act": "hold",
            "src": "185.220.101.4",
            "suser": "ceo@c0rp-example.com",
            "duser": "finance@corp.example",
            "msg": "Urgent wire transfer",
            "cs1": "Default Impersonation Definition",
            "cs1Label": "Rule Name",
            "cs2": "<4f3c@c0rp-example.com>",
            "cs2Label": "Message ID",
            "cs3": "similar_internal_domain,internal_user_name,reply_address_mismatch",
            "cs3Label": "Impersonation Identifiers",
            "cs4": "true",
            "cs4Label": "Tagged Malicious",
            "cn1": "3",
            "cn1Label": "Impersonation Hits",
            **ACCOUNT,
        },
    ),
    (
        # isAdmin "true": an admin search. Empty searchReason: no cs3.
        "archive_search",
        0,
        [*PRODUCT, "archive_search:admin_search", "Archive search by admin", "4"],
        {
            "rt": "1711368288000",
            "externalId": "3f71d0af6ca5781615cd818ae046c908",
            "cat": "mimecast.archive_search",
            "act": "archive-search",
            "suser": "example@test.com",
            "spriv": "Administrator",
            "msg": "Archive Mailbox",
            "cs1": "{'mailbox':'example@test.com','query':'[]'}",
            "cs1Label": "Search Text",
            "cs2": "/INBOX/",
            "cs2Label": "Search Path",
            "cs4": "archive",
            "cs4Label": "Search Source",
            **ACCOUNT,
        },
    ),
]


@pytest.mark.parametrize(
    ("name", "index", "header", "extension"), LITERAL_CASES, ids=[f"{c[0]}-{c[1]}" for c in LITERAL_CASES]
)
def test_fixture_record_encodes_to_literal_cef(
    name: str, index: int, header: list[str], extension: dict[str, str]
) -> None:
    """A fixture record's CEF line parses back to exactly the pinned header and extension."""
    _, parsed_header, parsed_extension = encode(fixture_event_doc(name, index))
    assert parsed_header == header
    assert parsed_extension == extension


# CEF key -> the raw record field it must equal, per log type.
SOURCE_FIELDS = {
    "ttp_url": {
        "act": "action",
        "suser": "fromUserEmailAddress",
        "duser": "userEmailAddress",
        "request": "url",
        "msg": "subject",
        "cs2": "messageId",
        "cs3": "scanResult",
    },
    "ttp_impersonation": {
        "act": "action",
        "suser": "senderAddress",
        "duser": "recipientAddress",
        "src": "senderIpAddress",
        "msg": "subject",
        "cs1": "definition",
        "cs2": "messageId",
    },
    "siem": {"cs4": "acc"},  # the one field every SIEM type carries besides datetime
    "archive_search": {"suser": "emailAddr", "msg": "description", "cs1": "searchText", "cs2": "searchPath"},
    "ttp_attachment": {
        "act": "actionTriggered",
        "duser": "recipientAddress",
        "fname": "fileName",
        "fileType": "fileType",
        "msg": "subject",
        "cs1": "definition",
        "cs2": "messageId",
        "cs3": "result",
    },
    "dlp": {"act": "action", "duser": "recipientAddress", "msg": "subject", "cs1": "policy", "cs2": "messageId"},
    "audit": {"act": "auditType", "msg": "eventInfo", "cs1": "category"},
    "held_release": {"act": "status", "msg": "subject", "cs1": "policy", "cs2": "heldReason", "cs3": "operator"},
}
ALL_RECORDS = [(name, i) for name in LOG_TYPES for i in range(len(fixture_records(name)))]


@pytest.mark.parametrize(("name", "index"), ALL_RECORDS, ids=[f"{n}-{i}" for n, i in ALL_RECORDS])
def test_every_fixture_record_round_trips_its_key_fields(name: str, index: int) -> None:
    """Every record of every fixture page: key extension fields equal the source record's values."""
    record = fixture_records(name)[index]
    event = build_event(LOG_TYPES[name], record, "acme", 0)
    _, header, ext = encode(event.doc)
    assert header[:4] == PRODUCT
    assert header[4].startswith(f"{name}:")
    assert int(ext["rt"]) // 1000 == event.time  # SIEM batch times keep their milliseconds
    assert ext["externalId"] == event.key
    assert ext["cat"] == f"mimecast.{name}"
    assert ext["cs5"] == "acme"
    expected = {key: record[field] for key, field in SOURCE_FIELDS.get(name, {}).items()}
    assert {key: ext[key] for key in expected} == expected


def test_every_log_type_has_a_cef_field_table() -> None:
    """The seven windowed log types and API 1.0 SIEM have their own extension mapping, and no row names a log type that
    does not exist. A new log type needs no row to encode: it gets the generic one until it has its own."""
    assert set(CEF_FIELDS) - {"unparsed"} == set(SOURCE_FIELDS) <= set(LOG_TYPES)
    assert set(SOURCE_FIELDS) == {*DEFAULT_STREAMS, "siem"}  # SIEM batch types: the generic row


# --- header, severity ----------------------------------------------------------------------------

SEVERITY_CASES = [
    ("ttp_url", {"scanResult": "malicious", "action": "allow"}, "ttp_url:allow", "URL Protect click: allow", "9"),
    ("ttp_url", {"scanResult": "malicious", "action": "block"}, "ttp_url:block", "URL Protect click: block", "8"),
    ("ttp_url", {"scanResult": "malicious", "action": "warn"}, "ttp_url:warn", "URL Protect click: warn", "8"),
    ("ttp_url", {"scanResult": "clean", "action": "block"}, "ttp_url:block", "URL Protect click: block", "4"),
    ("ttp_url", {"scanResult": "clean", "action": "allow"}, "ttp_url:allow", "URL Protect click: allow", "3"),
    ("ttp_url", {"scanResult": "clean", "action": None}, "ttp_url:unknown", "URL Protect click: unknown", "3"),
    (
        "ttp_impersonation",
        {"taggedMalicious": True, "action": "hold"},
        "ttp_impersonation:hold",
        "Impersonation Protect: hold",
        "8",
    ),
    (
        "ttp_impersonation",
        {"taggedMalicious": "true", "action": "none"},
        "ttp_impersonation:none",
        "Impersonation Protect: none",
        "8",
    ),
    (
        "ttp_impersonation",
        {"taggedMalicious": False, "action": "hold"},
        "ttp_impersonation:hold",
        "Impersonation Protect: hold",
        "6",
    ),
    (
        "ttp_impersonation",
        {"taggedMalicious": False, "action": "none"},
        "ttp_impersonation:none",
        "Impersonation Protect: none",
        "5",
    ),
    ("archive_search", {"isAdmin": True}, "archive_search:admin_search", "Archive search by admin", "4"),
    ("archive_search", {"isAdmin": "false"}, "archive_search:search", "Archive search", "3"),
    ("ttp_attachment", {"result": "malicious"}, "ttp_attachment:malicious", "Attachment Protect: malicious", "8"),
    ("ttp_attachment", {"result": "timeout"}, "ttp_attachment:timeout", "Attachment Protect: timeout", "5"),
    ("ttp_attachment", {"result": "safe"}, "ttp_attachment:safe", "Attachment Protect: safe", "3"),
    ("dlp", {"action": "block"}, "dlp:block", "DLP policy: block", "6"),
    ("dlp", {"action": "hold"}, "dlp:hold", "DLP policy: hold", "5"),
    ("dlp", {"action": "notification"}, "dlp:notification", "DLP policy: notification", "4"),
    (
        "audit",
        {"auditType": "Logon Authentication Failed"},
        "audit:Logon Authentication Failed",
        "Audit: Logon Authentication Failed",
        "5",
    ),
    ("audit", {"auditType": "User Logged On"}, "audit:User Logged On", "Audit: User Logged On", "3"),
    ("held_release", {"status": "released"}, "held_release:released", "Held message released", "4"),
    ("held_release", {"status": "rejected"}, "held_release:rejected", "Held message rejected", "3"),
]


@pytest.mark.parametrize(("name", "changes", "signature", "title", "severity"), SEVERITY_CASES)
def test_signature_name_and_severity_follow_the_table(
    name: str, changes: dict[str, Any], signature: str, title: str, severity: str
) -> None:
    """Signature ID, Name and Severity per log type and verdict, as documented in collector.encodings.cef."""
    _, header, _ = encode(fixture_event_doc(name, **changes))
    assert header[4:] == [signature, title, severity]


def test_header_escapes_pipe_and_backslash() -> None:
    """A pipe and a backslash in header fields are backslash-escaped on the wire and parse back."""
    doc = fixture_event_doc("ttp_url")
    doc["event"]["action"] = "a|b\\c"
    doc["observer"]["product"] = "Mail|Sec\\urity"
    line, header, ext = encode(doc)
    expected_start = b"CEF:0|Mimecast|Mail\\|Sec\\\\urity|1.0|ttp_url:a\\|b\\\\c|URL Protect click: a\\|b\\\\c|8|rt="
    assert line.startswith(expected_start)
    assert header == ["CEF:0", "Mimecast", "Mail|Sec\\urity", "1.0", "ttp_url:a|b\\c", "URL Protect click: a|b\\c", "8"]
    assert ext["act"] == "a|b\\c"


def test_header_line_breaks_become_spaces() -> None:
    """CR and LF cannot appear in the header: they become spaces there (and stay exact in ``act``)."""
    doc = fixture_event_doc("ttp_url")
    doc["event"]["action"] = "x\ny\r\nz"
    _, header, ext = encode(doc)
    assert header[4:6] == ["ttp_url:x y  z", "URL Protect click: x y  z"]
    assert ext["act"] == "x\ny\r\nz"


# --- escaping ----------------------------------------------------------------------------------------

TRICKY = [
    "pipe | here",
    "a=b",
    "key=value other=thing",
    "back\\slash\\",
    "\\=",
    "line1\nline2",
    "cr\rlf\r\n",
    "tab\there",
    "Zürich — 東京 ✓",
    " padded  ",
    "msg=fake cs1=injected",
    "every|=\\\n\r\t one Zürich — 東京 ✓",
]


@pytest.mark.parametrize("value", TRICKY)
def test_special_characters_round_trip_in_subject_url_and_user(value: str) -> None:
    """Pipes, equals, backslashes, CR/LF, tabs and non-ASCII come back exactly in msg, request, duser."""
    _, _, ext = encode(with_text(value))
    assert (ext["msg"], ext["request"], ext["duser"]) == (value, value, value)
    assert ext["cs5"] == "acme"  # nothing after the tricky values was swallowed


def test_extension_escapes_are_the_spec_ones_on_the_wire() -> None:
    """On the wire: ``\\`` -> ``\\\\``, ``=`` -> ``\\=``, LF -> ``\\n``, CR -> ``\\r``; a pipe is left as is."""
    line, _, _ = encode(with_text("a=b\\c\nd\re|f"))
    assert b" msg=a\\=b\\\\c\\nd\\re|f cs1=" in line


def test_output_is_one_utf8_line() -> None:
    """No raw CR or LF anywhere in the output, which decodes as UTF-8 with the non-ASCII intact."""
    line, _, _ = encode(with_text("Zürich — 東京 ✓\r\n\n\r"))
    assert b"\n" not in line
    assert b"\r" not in line
    assert "msg=Zürich — 東京 ✓\\r\\n\\n\\r cs1=" in line.decode("utf-8")


def test_long_values_are_cut_to_4000_characters() -> None:
    """A value longer than 4000 characters is cut to 4000 before escaping (no half escape)."""
    doc = with_text("=" * 5000)
    doc["email"]["subject"] = "é" * 5000
    _, _, ext = encode(doc)
    assert ext["msg"] == "é" * 4000
    assert ext["request"] == "=" * 4000


def test_event_time_keeps_milliseconds_exactly() -> None:
    """``rt`` is exact milliseconds since the epoch (no float rounding)."""
    doc = fixture_event_doc("ttp_url")
    doc["@timestamp"] = "2024-11-13T13:03:11.123Z"
    _, _, ext = encode(doc)
    assert ext["rt"] == "1731502991123"


def test_ipv6_source_goes_to_c6a2_not_src() -> None:
    """An IPv6 source address is sent as c6a2 with its label; src stays IPv4-only."""
    _, _, ext = encode(fixture_event_doc("ttp_url", sendingIp="2001:DB8::1"))
    assert "src" not in ext
    assert (ext["c6a2"], ext["c6a2Label"]) == ("2001:db8::1", "Source IPv6 Address")


TEXT = st.text(min_size=1, max_size=300)


@settings(max_examples=200, deadline=None)
@given(
    subject=st.text(min_size=1, max_size=300),
    url=st.text(min_size=1, max_size=300),
    action=st.text(min_size=1, max_size=300),
)
def test_arbitrary_text_round_trips(subject: str, url: str, action: str) -> None:
    """Any text in subject, URL and action comes back exactly; the header gets it with line breaks as spaces."""
    doc = fixture_event_doc("ttp_url")
    doc["email"]["subject"] = subject
    doc["url"]["original"] = url
    doc["event"]["action"] = action
    line, header, ext = encode(doc)
    assert b"\n" not in line
    assert b"\r" not in line
    assert (ext["msg"], ext["request"], ext["act"]) == (subject, url, action)
    assert header[4] == "ttp_url:" + action.replace("\n", " ").replace("\r", " ")
    assert ext["cs5"] == "acme"


# --- records that are not normal events -------------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "raw", "error"),
    [
        (
            {"url": "https://x.example/\n", "note": "a=b"},
            '{"url":"https://x.example/\\n","note":"a=b"}',
            "KeyError: 'date'",
        ),
        (["not", "an", "object"], '{"raw":["not","an","object"]}', "TypeError: record is a list, not an object"),
    ],
)
def test_normalize_error_event_encodes_with_raw_record(record: Any, raw: str, error: str) -> None:
    """A record kept raw (tag mimecast_normalize_error) encodes: severity 5, its error, the raw JSON in cs6."""
    event = build_event(LOG_TYPES["ttp_url"], record, "acme", 1_700_000_000)
    assert event.doc["tags"] == ["mimecast_normalize_error"]
    _, header, ext = encode(event.doc)
    assert header == [*PRODUCT, "ttp_url:unparsed", "Unparsed Mimecast record", "5"]
    assert ext == {
        "rt": "1700000000000",
        "externalId": event.key,
        "cat": "mimecast.ttp_url",
        "msg": error,
        **ACCOUNT,
        "cs6": raw,
        "cs6Label": "Mimecast Record",
    }


def test_unknown_log_type_encodes_generically() -> None:
    """An event of a log type without a table row still encodes, with a generic name and severity 5."""
    doc = {
        "@timestamp": "2024-01-01T00:00:00.000Z",
        "event": {"dataset": "mimecast.future", "id": "abc", "action": "seen"},
        "labels": {"mimecast_account": "acme", "mimecast_log_type": "future"},
    }
    _, header, ext = encode(doc)
    assert header == ["CEF:0", "Mimecast", "Mimecast Email Security", "1.0", "future:seen", "Mimecast event: seen", "5"]
    assert ext == {"rt": "1704067200000", "externalId": "abc", "cat": "mimecast.future", "act": "seen", **ACCOUNT}
