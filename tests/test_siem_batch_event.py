"""The batch-file fast path (line_event) makes byte for byte the event build_event makes."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

from collector.logtypes import LOG_TYPES, build_event, serialize
from collector.logtypes.base import _epoch_ms_time
from collector.logtypes.siem_batch import CG_TYPES, CI_TYPES, SIEM_CG, SIEM_CI
from collector.logtypes.siem_batch_event import epoch_ms_time, handles, line_event
from collector.simulator.siem_data import siem_records
from tests.test_siem_normalize import fixture

FALLBACK = 1_700_000_000
START = 1_732_000_000
TYPES = [(SIEM_CG, kind) for kind in CG_TYPES] + [(SIEM_CI, kind) for kind in CI_TYPES]


def both(log_type: Any, record: Any) -> tuple[bytes, bytes]:
    """(build_event's spool bytes, line_event's) for the record as a line would parse it."""
    line = orjson.dumps(record)
    expected = build_event(log_type, orjson.loads(line), "acme", FALLBACK)
    got = line_event(log_type, orjson.loads(line), "acme", FALLBACK)
    assert (got.key, got.time, got.normalized) == (expected.key, expected.time, expected.normalized)
    return serialize(expected.doc), serialize(got.doc)


@pytest.mark.parametrize(("family", "kind"), TYPES, ids=[kind for _, kind in TYPES])
def test_generated_records_of_every_type_give_the_same_event(family: Any, kind: str) -> None:
    """200 simulator records of each of the 13 types: same key, time and document, keys in the same order."""
    log_type = family.for_batch_type(kind)
    for record in siem_records(kind, 200, start=START, end=START + 86_400 * 3, seed=7):
        expected, got = both(log_type, record)
        assert got == expected


@pytest.mark.parametrize("name", ["siem_cg", "siem_ci"])
def test_fixture_records_give_the_same_event(name: str) -> None:
    """The captured sample records (the ones pinned in test_siem_normalize) come out the same."""
    for record in fixture(name):
        expected, got = both(LOG_TYPES[name], record)
        assert got == expected


def test_mutated_records_give_the_same_event_including_kept_raw_ones() -> None:
    """Fields removed, nulled, retyped or emptied, timestamps odd or out of range: same outcome either way."""
    rng = random.Random(3)
    odd_values: list[Any] = [None, "", " ", 0, -1, True, [], {}, ["a", 1], "x" * 300, 1.5e300, "12", "::1", "TLSv"]
    odd_times: list[Any] = [None, "1732000000123", "soon", 1.5, True, -(10**15), 10**18, 253_402_300_799_999]
    log_types = [family.for_batch_type(kind) for family, kind in TYPES]
    kept = 0
    for _ in range(600):
        log_type = rng.choice(log_types)
        assert log_type.batch_type is not None
        record: dict[str, Any] = next(siem_records(log_type.batch_type, 1, start=START, end=START + 60))
        for name in rng.sample(sorted(record), 3):
            if rng.random() < 0.3:
                del record[name]
            else:
                record[name] = rng.choice(odd_values)
        if rng.random() < 0.2:
            record["timestamp"] = rng.choice(odd_times)
        expected, got = both(log_type, record)
        assert got == expected
        kept += b"mimecast_normalize_error" in got
    assert kept > 20  # the kept-raw path was exercised too


def test_timestamps_match_the_generic_conversion_across_days_and_edges() -> None:
    """Table-built @timestamp equals the generic one, millisecond for millisecond, over days and eras."""
    rng = random.Random(5)
    values = [0, 999, 1000, 86_399_999, 86_400_000, -1, -86_400_001, 253_402_300_799_999, -62_135_596_800_000]
    values += [rng.randrange(-(10**13), 10**13) for _ in range(5000)]
    for value in values:
        assert epoch_ms_time(value) == _epoch_ms_time(value), value


def test_timestamps_out_of_range_fail_like_the_generic_conversion() -> None:
    """A year past 9999 raises, so the record is kept raw, whether its day was seen before or not."""
    for value in (253_402_300_800_000, 10**18):
        with pytest.raises((ValueError, OverflowError, OSError)):
            epoch_ms_time(value)


def test_only_the_batch_log_types_take_the_fast_path() -> None:
    """The windowed and SIEM API 1.0 log types keep the generic build_event."""
    fast = sorted(name for name, log_type in LOG_TYPES.items() if handles(log_type))
    assert fast == ["siem_cg", "siem_ci"]
