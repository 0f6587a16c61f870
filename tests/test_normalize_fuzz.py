"""Property tests: no API record, however malformed, crashes build_event or yields an unspoolable event.

Records are generated from JSON-like values (what ``client._loads`` can hand over): nulls, booleans,
integers far beyond 64 bits, NaN and infinities (the stdlib fallback parser accepts them), huge strings,
strings with lone surrogates (the stdlib parser keeps ``\\ud800`` escapes), and nested junk, under the
field names Mimecast really uses as well as random ones.
"""

from __future__ import annotations

import calendar
import ipaddress
import random
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.logtypes import LOG_TYPES, TimeFormat, build_event, dedup_key, serialize
from collector.logtypes.base import (
    ECS_VERSION,
    MAX_ID_CHARS,
    NORMALIZE_ERROR_TAG,
    file_extension,
    ip_or_none,
    url_fields,
)
from collector.simulator.data import GENERATORS
from tests import logtype_cases

FALLBACK = 1_700_000_000
HEX32 = re.compile(r"^[0-9a-f]{32}$")
ECS_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
FIXTURES = Path(__file__).parent / "fixtures" / "mimecast"

FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _known_fields() -> list[str]:
    """Every field name Mimecast uses in the fixtures, the case table and the simulator's records,
    plus each log type's time, id and dedup fields."""
    names: set[str] = set()
    rng = random.Random(0)
    for log_type in LOG_TYPES.values():
        names.add(log_type.time_field)
        names.update(log_type.dedup_fields or ())
        names.update([log_type.event_id_field] if log_type.event_id_field else [])
        page = FIXTURES / f"{log_type.name}_page.json"
        records = (
            orjson.loads(page.read_bytes())["data"][0][log_type.array_key]
            if page.exists()
            else logtype_cases.records(log_type.name)
        )
        # The simulator's SIEM batch records come from their own module (tests/test_siem_normalize.py).
        generated = [GENERATORS[log_type.name](rng, FALLBACK)] if log_type.name in GENERATORS else []
        for record in [*records, *generated]:
            names.update(record)
    return sorted(names)


SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, exclude_categories=())
CHARS = st.characters() | SURROGATES
TEXTS = st.text(CHARS, max_size=30)
HUGE_TEXTS = st.builds(
    lambda unit, times: unit * times, st.text(CHARS, min_size=1, max_size=3), st.integers(5_000, 40_000)
)
# Past 64 bits but within Python's 4300-digit int->str limit (the client's parsers never go beyond it).
BIG_INTS = st.integers(min_value=-(2**200), max_value=2**200) | st.sampled_from(
    [2**64, 2**64 - 1, -(2**63), -(2**63) - 1, 10**300, -(10**300)]
)
LOOKALIKES = st.sampled_from(
    ["true", "false", " TRUE ", "N/A", "None", "Internal IP", "inbound", "internal", "", "   ", "2024-11-13"]
)
URLISH = st.builds(
    lambda head, tail: head + tail,
    st.sampled_from(["http://", "https://", "https://[", "https://[::1", "http://a:b@", "//", "mailto:", ""]),
    TEXTS,
)
IPISH = st.ip_addresses().map(str) | st.builds(lambda ip, pad: pad + str(ip) + pad, st.ip_addresses(), LOOKALIKES)
SCALARS = st.none() | st.booleans() | BIG_INTS | st.floats() | TEXTS | HUGE_TEXTS | LOOKALIKES | URLISH | IPISH
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(TEXTS, children, max_size=4),
    max_leaves=10,
)
KEYS = st.sampled_from(_known_fields()) | TEXTS
RECORDS = st.dictionaries(KEYS, JSON_VALUES, max_size=10)
ANY_RECORD = RECORDS | JSON_VALUES

OFFSETS = {"+0000": 0, "Z": 0, "+05:30": 5 * 3600 + 1800, "-0800": -8 * 3600, "+01:00": 3600}
MOMENTS = st.datetimes(min_value=datetime(1000, 1, 2), max_value=datetime(9998, 12, 30))


def _check_invariants(name: str, record: Any) -> dict[str, Any]:
    """Build the event and check what every event must satisfy; return the spooled JSON as parsed back."""
    log_type = LOG_TYPES[name]
    event = build_event(log_type, record, "acme", fallback_time=FALLBACK)
    spooled = orjson.loads(serialize(event.doc))
    assert isinstance(spooled, dict)
    assert ECS_TIMESTAMP.match(spooled["@timestamp"])
    own_id = record.get(log_type.event_id_field) if log_type.event_id_field and isinstance(record, dict) else None
    if isinstance(own_id, str) and 0 < len(own_id) <= MAX_ID_CHARS:
        assert event.key == own_id  # Mimecast's unique id, as sent
    else:
        assert HEX32.match(event.key)
    assert spooled["event"]["id"] == event.key == event.doc["event"]["id"]
    assert spooled["ecs"] == {"version": ECS_VERSION}  # normalized or kept raw
    assert spooled["event"]["dataset"] == f"mimecast.{name}"
    assert spooled["labels"] == {"mimecast_account": "acme", "mimecast_log_type": name}
    assert "mimecast" in spooled
    if NORMALIZE_ERROR_TAG in event.doc.get("tags", ()):
        assert event.time == FALLBACK
        assert spooled["@timestamp"] == "2023-11-14T22:13:20.000Z"
        assert 0 < len(spooled["error"]["message"]) <= 500
    else:
        _check_related(spooled)
    return spooled


def _check_related(doc: dict[str, Any]) -> None:
    """Every address, user and IP an event names is in related.*, and user.* is split consistently."""
    related = doc.get("related", {})
    named = [
        *doc.get("email", {}).get("from", {}).get("address", []),
        *doc.get("email", {}).get("to", {}).get("address", []),
    ]
    sender = doc.get("email", {}).get("sender", {}).get("address")
    user = doc.get("user", {})
    for address in [*named, *([sender] if sender else []), *([user["email"]] if "email" in user else [])]:
        assert address in related["user"]
    if "ip" in doc.get("source", {}):
        assert doc["source"]["ip"] in related["ip"]
    if "email" in user:
        local, _, domain = user["email"].rpartition("@")
        assert (user.get("name"), user.get("domain")) == (local or None, domain.lower() or None)
    for key in ("user", "ip", "hosts"):
        values = related.get(key, [])
        assert values == list(dict.fromkeys(values))  # each once
        assert all(values)  # never empty


@FUZZ
@given(record=ANY_RECORD)
def test_any_record_gives_a_spoolable_event_for_every_log_type(record: Any) -> None:
    """Any JSON-like record gives, for every log type, a spoolable event that keeps the record."""
    fingerprint = dedup_key(record, None)
    for name, log_type in LOG_TYPES.items():
        _check_invariants(name, record)
        event = build_event(log_type, record, "acme", fallback_time=FALLBACK)
        if not isinstance(record, dict):
            assert event.doc["tags"] == [NORMALIZE_ERROR_TAG]
            assert event.doc["mimecast"]["raw"] is record
            continue
        assert set(event.doc["mimecast"]) == set(record)
        if log_type.time_field not in record:
            assert event.doc["tags"] == [NORMALIZE_ERROR_TAG]
            assert event.doc["error"]["message"] == f"KeyError: {log_type.time_field!r}"
    assert dedup_key(record, None) == fingerprint  # the record was not mutated


@FUZZ
@given(record=ANY_RECORD)
def test_build_event_is_deterministic(record: Any) -> None:
    """Building the same record twice gives the same key, time and spooled bytes, for every log type."""
    for log_type in LOG_TYPES.values():
        first = build_event(log_type, record, "acme", fallback_time=FALLBACK)
        second = build_event(log_type, record, "acme", fallback_time=FALLBACK)
        assert (first.key, first.time) == (second.key, second.time)
        assert serialize(first.doc) == serialize(second.doc)


@FUZZ
@given(record=RECORDS, moment=MOMENTS, offset=st.sampled_from(sorted(OFFSETS)))
def test_record_with_valid_time_keeps_every_key_and_its_time(
    record: dict[str, Any], moment: datetime, offset: str
) -> None:
    """A dict with a valid time field normalizes without error tag, timed by it, every key kept under mimecast."""
    expected = calendar.timegm(moment.timetuple()) - OFFSETS[offset]
    timestamp = (datetime(1970, 1, 1) + timedelta(seconds=expected)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    for name, log_type in LOG_TYPES.items():
        # SIEM API 2.0 records carry epoch milliseconds where the others carry an API date
        api_date = moment.strftime("%Y-%m-%dT%H:%M:%S") + offset
        when = expected * 1000 if log_type.time_format is TimeFormat.EPOCH_MS else api_date
        timed = {**record, log_type.time_field: when}
        spooled = _check_invariants(name, timed)
        event = build_event(log_type, timed, "acme", fallback_time=FALLBACK)
        assert "tags" not in event.doc, event.doc.get("error")
        assert event.time == expected
        assert spooled["@timestamp"] == timestamp
        assert set(event.doc["mimecast"]) == set(timed)
        assert all(event.doc["mimecast"][k] is timed[k] for k in timed)


# --- edge cases random generation does not reach -------------------------------------------------


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"1" + b"]" * depth


@pytest.mark.parametrize("name", list(LOG_TYPES))
def test_record_nested_300_deep_is_kept_and_spoolable(name: str) -> None:
    """A record nested 300 deep (orjson.loads accepts up to 1024) neither crashes build_event nor serialize."""
    log_type = LOG_TYPES[name]
    raw = b'{"' + log_type.time_field.encode() + b'":"2024-11-13T13:03:11+0000","junk":' + _nested(300) + b"}"
    record = orjson.loads(raw)  # what the client's parser hands the poller
    event = build_event(log_type, record, "acme", fallback_time=FALLBACK)
    spooled = orjson.loads(serialize(event.doc))
    assert spooled["event"]["id"] == event.key
    assert set(spooled["mimecast"]) == {log_type.time_field, "junk"}


def _url_fields_by_urlsplit(original: str) -> dict[str, Any]:
    """The reference: what urllib.parse.urlsplit says, field by field."""
    out: dict[str, Any] = {"original": original}
    try:
        parts = urlsplit(original)
    except ValueError:
        return out
    for name, value in (
        ("scheme", parts.scheme),
        ("domain", parts.hostname),
        ("path", parts.path),
        ("query", parts.query),
    ):
        if value:
            out[name] = value
    extension = file_extension(parts.path) if parts.path else None
    if extension:
        out["extension"] = extension
    return out


_URL_PIECES = st.sampled_from(
    [
        "http",
        "HTTPS",
        "ftp",
        "x+y",
        "h",
        "",
        "a-b.c",
        "EXAMPLE.com",
        "1.2.3.4",
        "[::1]",
        "user:pw@host",
        ":8080",
        ":",
        "/",
        "/a/b",
        "/%20x",
        "?",
        "?q=1&r=2",
        "#frag",
        "#",
        " ",
        "\t",
        "é",
        "..",
        "=",
        "@",
        ";p",
        "//",
    ]
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_URL_PIECES, max_size=8).map("".join) | st.text(max_size=40))
def test_fast_url_parsing_agrees_with_urlsplit(text: str) -> None:
    """url_fields' fast path gives exactly what urlsplit gives, for any input."""
    candidates = [text, f"https://{text}", f"http://example.com/{text}"]
    for candidate in candidates:
        assert url_fields(candidate) == _url_fields_by_urlsplit(candidate)


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.ip_addresses().map(str), st.text(alphabet="0123456789.:abcdef ", max_size=20)))
def test_fast_ip_parsing_agrees_with_ipaddress(text: str) -> None:
    """ip_or_none's fast path gives exactly what the ipaddress module gives, for any input."""
    try:
        expected: str | None = str(ipaddress.ip_address(text.strip()))
    except ValueError:
        expected = None
    assert ip_or_none(text) == expected
