"""Acceptance: `run --once` against the loopback API delivers every event exactly once."""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from collector.config import load_config
from collector.logtypes import DEFAULT_STREAMS
from collector.service.app import Collector, RunResult
from collector.simulator import FakeMimecast
from tests.helpers import delivered_ids, expected_ids, seed, write_config

SEVEN = ("ttp_url", "ttp_impersonation", "archive_search", "ttp_attachment", "dlp", "audit", "held_release")


async def run_once(config_path: Path) -> RunResult:
    collector = Collector(load_config(config_path), once=True, handle_signals=False)
    return await collector.run()


def assert_clean_traffic(sim: FakeMimecast) -> None:
    """Nothing the API would reject: signatures, dates, bodies, request ids."""
    assert sim.stats.bad_auth == Counter()
    assert sim.stats.bad_request == Counter()
    assert sim.stats.reused_request_ids == 0


async def test_seven_log_types_over_two_days_arrive_exactly_once(
    make_sim: Callable[..., Any], tmp_path: Path, state_options: dict[str, Any]
) -> None:
    """The seven windowed log types, listed in the config, x 3,000 events over two days: every one
    delivered once, no 429, no rejected call."""
    sim = await make_sim(rate_limit=20, rate_window_ms=1000)
    records = seed(sim, 3000, days=2)
    config = write_config(
        tmp_path, sim.base_url, state=state_options, account={"page_size": 200, "streams": list(SEVEN)}
    )

    result = await run_once(config)

    assert set(SEVEN) == set(DEFAULT_STREAMS) == set(records)
    assert result.exit_code == 0
    delivered = delivered_ids(tmp_path / "out")
    assert len(delivered) == 7 * 3000
    assert sorted(delivered) == sorted(expected_ids(records))  # none lost, none twice
    assert sim.stats.throttled == 0
    assert_clean_traffic(sim)
    assert sum(sim.stats.calls.values()) >= 7 * 3000 // 200
    for name in SEVEN:
        assert sim.stats.records_served[name] >= 3000, name


async def test_second_run_delivers_nothing_new(
    make_sim: Callable[..., Any], tmp_path: Path, state_options: dict[str, Any]
) -> None:
    """A second `run --once` resumes from the saved positions: no event is delivered twice."""
    sim = await make_sim()
    records = seed(sim, 500, days=1)
    config = write_config(tmp_path, sim.base_url, state=state_options)

    first = await run_once(config)
    second = await run_once(config)

    assert (first.exit_code, second.exit_code) == (0, 0)
    delivered = delivered_ids(tmp_path / "out")
    assert len(delivered) == 500 * len(DEFAULT_STREAMS)
    assert set(delivered) == expected_ids(records)


async def test_ten_percent_faults_still_deliver_everything(make_sim: Callable[..., Any], tmp_path: Path) -> None:
    """500s, HTML 503s, truncated JSON, resets, slow answers on 10% of calls: nothing lost, exit 0."""
    sim = await make_sim(fault_rate=0.10, slow_secs=1.5, seed=7)
    records = seed(sim, 3000, days=2)
    config = write_config(tmp_path, sim.base_url, account={"page_size": 50, "request_timeout_secs": 1})

    result = await run_once(config)

    assert result.exit_code == 0
    delivered = delivered_ids(tmp_path / "out")
    assert sorted(delivered) == sorted(expected_ids(records))
    assert sum(sim.stats.faults.values()) >= 10, sim.stats.faults
    assert set(sim.stats.faults) == {"500", "503_html", "truncated", "reset", "slow", "retryable_fail"}
    assert_clean_traffic(sim)


async def test_oauth2_tokens_expiring_every_few_seconds(
    make_sim: Callable[..., Any], tmp_path: Path, log_buffer: io.StringIO
) -> None:
    """OAuth2 tokens that live 1.5 s are refreshed as needed; nothing is lost and no token is logged."""
    sim = await make_sim(token_lifetime_secs=1.5, rate_limit=5, rate_window_ms=1000)
    records = seed(sim, 1500, days=2)
    config = write_config(tmp_path, sim.base_url, auth="oauth2", account={"page_size": 50})

    result = await run_once(config)

    assert result.exit_code == 0
    assert sorted(delivered_ids(tmp_path / "out")) == sorted(expected_ids(records))
    assert sim.stats.tokens_issued >= 3
    assert sim.stats.bad_auth.get("unknown bearer token", 0) == 0
    logs = log_buffer.getvalue()
    assert "page_committed" in logs  # debug lines were written
    for token in sim.issued_tokens:
        assert token not in logs
    assert sim.settings.client_secret not in logs


async def test_fatal_error_fails_only_that_stream(
    make_sim: Callable[..., Any], tmp_path: Path, state_options: dict[str, Any]
) -> None:
    """A 403-style rejection of one stream exits non-zero, names it, and the other streams still deliver."""
    sim = await make_sim()
    records = seed(sim, 300, days=1)
    config = write_config(
        tmp_path,
        sim.base_url,
        state=state_options,
        extra_tables='[accounts.acme.archive_search]\npath = "/api/archive/no-such-endpoint"\n',
    )

    result = await run_once(config)

    assert result.exit_code == 1
    assert result.failed_streams == ["acme/archive_search"]
    delivered = set(delivered_ids(tmp_path / "out"))
    expected = expected_ids({k: v for k, v in records.items() if k != "archive_search"})
    assert delivered == expected


async def test_file_sink_json_lines_are_ecs_shaped(make_sim: Callable[..., Any], tmp_path: Path) -> None:
    """Every delivered line is one JSON object with @timestamp, ecs.version, dataset, id, related.* and
    the original record."""
    sim = await make_sim()
    seed(sim, 50, days=1)
    config = write_config(tmp_path, sim.base_url)

    await run_once(config)

    lines = (tmp_path / "out" / "events.jsonl").read_bytes().splitlines()
    assert len(lines) == 50 * len(DEFAULT_STREAMS)
    for line in lines:
        event = orjson.loads(line)
        assert event["@timestamp"].endswith("Z")
        assert event["ecs"] == {"version": "8.11.0"}
        assert event["event"]["dataset"].startswith("mimecast.")
        name = event["labels"]["mimecast_log_type"]
        if name == "audit":  # Mimecast's own unique id
            assert event["event"]["id"] == event["mimecast"]["id"]
        else:
            assert len(event["event"]["id"]) == 32
        if name == "audit" and not event["mimecast"]["user"]:  # a system event (directory sync): nobody
            assert "related" not in event
        else:
            assert event["related"]["user"], name
        assert event["labels"]["mimecast_account"] == "acme"
        assert isinstance(event["mimecast"], dict)
        assert event["mimecast"]
