"""build_event's shortcuts give what the general code gives: the same keys, times and documents, and
no dict shared between events (the expected values were computed with the code before the shortcuts)."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import pytest

from collector.logtypes import LOG_TYPES, build_event, dedup_key
from tests import logtype_cases

FALLBACK = 1_700_000_000
IMPOSSIBLE_DAY = "ValueError: day is out of range for month"
TTP_URL = LOG_TYPES["ttp_url"]
PARTIAL_CLICK = {"date": "2024-11-13T13:03:11+0000", "url": "https://x.example/a", "userEmailAddress": "a@corp.example"}
FULL_CLICK: dict[str, Any] = {**dict.fromkeys(TTP_URL.dedup_fields or ()), **PARTIAL_CLICK}


def test_key_of_a_record_missing_key_fields_is_unchanged() -> None:
    """A record without most of its key fields keeps the key it always had (keys are persisted)."""
    assert dedup_key(PARTIAL_CLICK, TTP_URL.dedup_fields) == "1bfdcd6e510c8b36a62b7c04fa52b1ca"


def test_key_of_a_record_with_every_key_field_is_unchanged() -> None:
    """A record with all its key fields (the one-call path) keeps the key it always had."""
    assert dedup_key(FULL_CLICK, TTP_URL.dedup_fields) == "a6dfbd177bd8839e90448af5cb3fb2f0"


def test_key_of_a_mapping_that_is_no_dict_is_the_same() -> None:
    """A Mapping other than dict (the general path) gives the same key as the dict."""
    assert dedup_key(OrderedDict(FULL_CLICK), TTP_URL.dedup_fields) == "a6dfbd177bd8839e90448af5cb3fb2f0"


@pytest.mark.parametrize(
    ("released", "time", "timestamp", "error"),
    [
        ("2015-11-25T14:49:18+00:00", 1448462958, "2015-11-25T14:49:18.000Z", None),
        ("2015-11-25T14:49:18+01:00", 1448459358, "2015-11-25T13:49:18.000Z", None),
        ("2016-02-30T14:49:18+00:00", FALLBACK, "2023-11-14T22:13:20.000Z", IMPOSSIBLE_DAY),
    ],
)
def test_colon_offset_times_read_as_before(released: str, time: int, timestamp: str, error: str | None) -> None:
    """+00:00 times (held release logs) give the same time, @timestamp or error as the general parser."""
    event = build_event(LOG_TYPES["held_release"], {"released": released}, "acme", FALLBACK)
    assert (event.time, event.doc["@timestamp"], event.doc.get("error", {}).get("message")) == (time, timestamp, error)


@pytest.mark.parametrize(
    ("date", "time", "timestamp"),
    [
        ("2024-11-13T13:03:11+0000", 1731502991, "2024-11-13T13:03:11.000Z"),
        # An ISO week date parses too (the same length): @timestamp must still be a calendar date.
        ("2024-W46-3T13:03:11+0000", 1731502991, "2024-11-13T13:03:11.000Z"),
    ],
)
def test_timestamp_is_a_calendar_date_whatever_iso_form_the_time_came_in(date: str, time: int, timestamp: str) -> None:
    event = build_event(TTP_URL, {**PARTIAL_CLICK, "date": date}, "acme", FALLBACK)
    assert (event.time, event.doc["@timestamp"], event.normalized) == (time, timestamp, True)


def test_attachment_file_and_email_attachment_are_separate_dicts() -> None:
    """file.* and email.attachments[0].file are equal but distinct: editing one leaves the other."""
    record = logtype_cases.TTP_ATTACHMENT_RECORDS[0]
    doc = build_event(LOG_TYPES["ttp_attachment"], record, "acme", FALLBACK).doc
    attached = doc["email"]["attachments"][0]["file"]
    assert attached == doc["file"]
    doc["file"]["hash"]["sha256"] = "edited"
    assert attached["hash"]["sha256"] == "eaeef09b60a59b913e9bfc0a4373e25d6182beff388957473fba517cc09345e3"


def test_audit_category_is_not_shared_between_events() -> None:
    """Editing one audit event's event.category does not change the next event's."""
    record = {"eventTime": "2024-11-13T13:03:11+0000", "category": "authentication_logs", "auditType": "Logon"}
    first = build_event(LOG_TYPES["audit"], record, "acme", FALLBACK).doc
    first["event"]["category"].append("edited")
    assert build_event(LOG_TYPES["audit"], record, "acme", FALLBACK).doc["event"]["category"] == ["authentication"]
