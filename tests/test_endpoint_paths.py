"""A log type's second endpoint path (archive search) and the API's lookback limit (audit), against the
real simulator and a real state file: the fallback is tried once, remembered across restarts, never
used when a path is configured; a position older than the API answers for is clamped with one warning."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from collector.logtypes import LOG_TYPES
from collector.state.store import Store
from collector.timeutil import iso
from tests.helpers import delivered_ids, expected_ids, seed, write_config
from tests.test_end_to_end import run_once
from tests.test_poller import log_events

ARCHIVE = LOG_TYPES["archive_search"]
DEFAULT, ALT = ARCHIVE.path, ARCHIVE.alt_path
assert ALT is not None
ONLY_ARCHIVE = {"streams": ["archive_search"], "page_size": 50}


def only(records: dict[str, Any], name: str) -> dict[str, Any]:
    return {name: records[name]}


async def remembered_path(tmp_path: Path) -> str | None:
    store = await Store.open(tmp_path / "state" / "collector.db")
    try:
        return (await store.stream("acme", "archive_search", start=0)).endpoint_path
    finally:
        await store.close()


async def rewind(tmp_path: Path, start: float) -> None:
    store = await Store.open(tmp_path / "state" / "collector.db")
    try:
        await store.reset_stream("acme", "archive_search", int(start))
    finally:
        await store.close()


async def test_default_path_404_falls_back_once_and_is_remembered_after_restart(
    make_sim: Callable[..., Any], tmp_path: Path, log_buffer: io.StringIO
) -> None:
    """The reference path answers 404: the other one is tried once, collects everything, is logged and
    saved; the next run (a restart, rewound over the same records so it has pages to fetch) calls it
    straight away and never the 404 path again."""
    sim = await make_sim(missing_paths=(DEFAULT,))
    records = only(seed(sim, 300, days=1), "archive_search")
    config = write_config(tmp_path, sim.base_url, account=ONLY_ARCHIVE)

    first = await run_once(config)
    assert sorted(delivered_ids(tmp_path / "out")) == sorted(expected_ids(records))  # all, once each
    alt_calls_after_first = sim.stats.calls_to(ALT)
    await rewind(tmp_path, time.time() - 2 * 86_400)  # so the restart has pages to fetch again
    second = await run_once(config)

    assert (first.exit_code, second.exit_code) == (0, 0)
    assert set(delivered_ids(tmp_path / "out")) == expected_ids(records)  # a day's rewind re-sends, by design
    assert sim.stats.calls == {(DEFAULT, 404): 1, (ALT, 200): sim.stats.calls_to(ALT)}
    assert sim.stats.calls_to(ALT) > alt_calls_after_first  # the restart used the remembered path
    [chosen] = log_events(log_buffer, "endpoint_path_chosen")
    assert (chosen["path"], chosen["instead_of"]) == (ALT, DEFAULT)
    assert [e["path"] for e in log_events(log_buffer, "endpoint_not_found")] == [DEFAULT]
    assert [e["path"] for e in log_events(log_buffer, "stream_started")] == [DEFAULT, ALT]
    assert await remembered_path(tmp_path) == ALT


async def test_default_path_that_answers_is_used_without_trying_the_other(
    make_sim: Callable[..., Any], tmp_path: Path
) -> None:
    """Where the reference path exists, the other path is never called and nothing is remembered."""
    sim = await make_sim()
    records = only(seed(sim, 120, days=1), "archive_search")
    config = write_config(tmp_path, sim.base_url, account=ONLY_ARCHIVE)

    result = await run_once(config)

    assert result.exit_code == 0
    assert sorted(delivered_ids(tmp_path / "out")) == sorted(expected_ids(records))
    assert sim.stats.calls_to(ALT) == 0
    assert sim.stats.calls_to(DEFAULT) > 0
    assert await remembered_path(tmp_path) is None


async def test_a_configured_path_is_never_second_guessed(make_sim: Callable[..., Any], tmp_path: Path) -> None:
    """A configured path that answers 404 fails the stream; the other path is not tried."""
    sim = await make_sim(missing_paths=(DEFAULT,))
    seed(sim, 50, days=1)
    config = write_config(
        tmp_path,
        sim.base_url,
        account=ONLY_ARCHIVE,
        extra_tables=f'[accounts.acme.archive_search]\npath = "{DEFAULT}"\n',
    )

    result = await run_once(config)

    assert result.exit_code == 1
    assert result.failed_streams == ["acme/archive_search"]
    assert sim.stats.calls == {(DEFAULT, 404): 1}
    assert await remembered_path(tmp_path) is None


async def test_both_paths_404_is_one_clear_fatal_error_for_that_stream(
    make_sim: Callable[..., Any], tmp_path: Path, log_buffer: io.StringIO
) -> None:
    """Neither path exists: each is called once, the stream fails naming both, the others still deliver."""
    sim = await make_sim(missing_paths=(DEFAULT, ALT))
    records = seed(sim, 100, days=1)
    config = write_config(tmp_path, sim.base_url, account={"page_size": 50})

    result = await run_once(config)

    assert result.exit_code == 1
    assert result.failed_streams == ["acme/archive_search"]
    assert (sim.stats.calls[(DEFAULT, 404)], sim.stats.calls[(ALT, 404)]) == (1, 1)
    [failed] = log_events(log_buffer, "stream_failed")
    assert f"neither {DEFAULT} nor {ALT} exists" in failed["error"]
    assert "set it as `path` in the [accounts.acme.archive_search] table" in failed["error"]
    others = {k: v for k, v in records.items() if k != "archive_search"}
    assert set(delivered_ids(tmp_path / "out")) == expected_ids(others)


async def test_audit_start_older_than_60_days_is_clamped_with_one_warning(
    make_sim: Callable[..., Any], tmp_path: Path, log_buffer: io.StringIO
) -> None:
    """`start` 90 days back: audit (the API answers 60 days at most) starts inside the limit, warns once,
    and collects everything; the simulator refuses older starts, and saw none. Other types keep 90 days."""
    sim = await make_sim()
    records = only(seed(sim, 200, days=2), "audit")
    start = time.time() - 90 * 86_400
    config = write_config(
        tmp_path,
        sim.base_url,
        account={"streams": ["audit", "dlp"], "start": iso(start), "max_window_secs": 7 * 86_400},
    )

    result = await run_once(config)

    assert result.exit_code == 0
    assert sim.stats.bad_request.total() == 0  # not one request reached back past the limit
    delivered = delivered_ids(tmp_path / "out")
    assert sorted(d for d in delivered if d[0] == "mimecast.audit") == sorted(expected_ids(records))
    [clamped] = log_events(log_buffer, "start_clamped")
    assert clamped["stream"] == "acme/audit"
    assert clamped["position"] == iso(start)
    assert clamped["max_lookback_days"] == 60
    dlp_started = [e for e in log_events(log_buffer, "stream_started") if e["stream"] == "acme/dlp"]
    assert dlp_started[0]["position"] == iso(start)  # no lookback limit declared: not clamped
