"""The API at its worst: every fault kind at once, plus records no normalizer can make sense of."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from collector.logtypes import LOG_TYPES, dedup_key
from collector.logtypes.base import NORMALIZE_ERROR_TAG
from collector.simulator import FakeMimecast, SimRecord
from tests.helpers import expected_ids, read_events, seed, write_config
from tests.test_end_to_end import run_once

BROKEN: list[dict[str, Any]] = [
    {"userEmailAddress": "no-date@corp.example", "url": "https://x.example/"},  # no time field at all
    {"date": "not a date", "url": None, "userEmailAddress": 42},  # wrong types, unparsable time
    {"date": None, "tagMap": {"deep": [[[{}]]]}},  # null time, nested junk
    {"date": "2026-11-25T10:00:00+0000", "url": "h" * 100_000, "subject": "\udcff broken surrogate"},
]


async def test_every_fault_at_once_loses_nothing(
    make_sim: Callable[..., Any], tmp_path: Path, log_buffer: io.StringIO
) -> None:
    """5xx, HTML 503s, truncated JSON, resets, slow answers, expired and repeated tokens, a trailing
    empty page with a token, and malformed records: every event arrives once, the bad ones tagged."""
    sim: FakeMimecast = await make_sim(
        fault_rate=0.12,
        slow_secs=1.5,
        expire_token_every=23,
        repeat_token_every=17,
        trailing_empty_page=True,
        seed=11,
    )
    records = seed(sim, 2000, days=2)
    now_ish = records["ttp_url"][-1].time
    sim.add("ttp_url", [SimRecord(now_ish, now_ish, record) for record in BROKEN])
    config = write_config(tmp_path, sim.base_url, account={"page_size": 100, "request_timeout_secs": 1})

    result = await run_once(config)

    assert result.exit_code == 0
    events = read_events(tmp_path / "out")
    delivered = [(e["event"]["dataset"], e["event"]["id"]) for e in events]
    broken_ids = {("mimecast.ttp_url", dedup_key(r, LOG_TYPES["ttp_url"].dedup_fields)) for r in BROKEN}
    assert sorted(delivered) == sorted(expected_ids(records) | broken_ids)  # all, once each
    tagged = [e for e in events if NORMALIZE_ERROR_TAG in e.get("tags", [])]
    assert {(e["event"]["dataset"], e["event"]["id"]) for e in tagged} == broken_ids - {
        ("mimecast.ttp_url", dedup_key(BROKEN[3], LOG_TYPES["ttp_url"].dedup_fields))  # this one has a valid date
    }
    assert all(e["error"]["message"] and e["mimecast"] for e in tagged)  # kept raw, with the reason
    for kind in ("500", "503_html", "truncated", "reset", "slow", "retryable_fail", "expired_token", "repeated_token"):
        assert sim.stats.faults[kind] >= 1, kind
    assert sim.stats.bad_auth.total() == 0
    logged = [orjson.loads(line)["event"] for line in log_buffer.getvalue().splitlines()]
    assert "window_restarted" in logged
    assert "records_kept_raw" in logged
