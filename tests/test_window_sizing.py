"""Window sizes against the loopback API: a backlog is one window, later windows hold about 100 pages,
a window restarted after a rejected token is cut to that size; and a caught-up stream waits a poll."""

from __future__ import annotations

import io
import itertools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from collector.api.client import Page
from collector.collect.poller import Poller, StreamSpec
from collector.collect.windowed import WINDOW_TARGET_PAGES
from collector.config.model import AccountConfig
from collector.logtypes import LOG_TYPES
from collector.service.telemetry import Telemetry
from collector.simulator import SimRecord, generate
from collector.state.store import Store
from collector.timeutil import iso, parse_config_time
from tests.helpers import delivered_ids, expected_ids, write_config
from tests.test_end_to_end import run_once
from tests.test_poller import NOW, ScriptedClient, Sleeps, log_events

OVERLAP = 5  # the default overlap_secs


def in_query(records: list[SimRecord], window: dict[str, Any]) -> int:
    """How many records the window's query [start - overlap, end] answers (both ends inclusive)."""
    start, end = parse_config_time(window["window_start"]), parse_config_time(window["window_end"])
    return sum(1 for r in records if start - OVERLAP <= r.time <= end)


def length(window: dict[str, Any]) -> int:
    return parse_config_time(window["window_end"]) - parse_config_time(window["window_start"])


async def collect(make_sim: Callable[..., Any], tmp_path: Path, count: int, **options: Any) -> tuple[Any, Any, Any]:
    sim = await make_sim(**options.pop("sim", {}))
    now = int(time.time())
    records = generate("ttp_url", count, start=now - 2 * 86400, end=now - 120)
    sim.add("ttp_url", records)
    config = write_config(
        tmp_path, sim.base_url, account={"streams": ["ttp_url"], "start": iso(now - 2 * 86400 - 600), **options}
    )
    result = await run_once(config)
    assert result.exit_code == 0
    assert sorted(delivered_ids(tmp_path / "out")) == sorted(expected_ids({"ttp_url": records}))
    return sim, records, result


@pytest.mark.parametrize(("count", "page_size", "calls"), [(1000, 100, 10), (1000, 300, 4), (10, 500, 1)])
async def test_a_backlog_within_max_window_secs_is_one_window_of_minimum_pages(
    make_sim: Callable[..., Any], tmp_path: Path, log_buffer: io.StringIO, count: int, page_size: int, calls: int
) -> None:
    """Two days behind, default max_window_secs (7 days): one window, and no call beyond the minimum pages."""
    sim, _, _ = await collect(make_sim, tmp_path, count, page_size=page_size)

    assert len(log_events(log_buffer, "window_committed")) == 1
    assert sim.stats.calls_to(LOG_TYPES["ttp_url"].path) == calls


async def test_later_windows_are_sized_from_the_density_of_the_one_before(
    make_sim: Callable[..., Any], tmp_path: Path, log_buffer: io.StringIO
) -> None:
    """3000 records over two days, 10 a page, at most a day a window: the first window is a day (~150
    pages), each later one as long as the one before, scaled to hold 100 pages at its density."""
    _, records, _ = await collect(make_sim, tmp_path, 3000, page_size=10, max_window_secs=86400)
    windows = log_events(log_buffer, "window_committed")
    target = WINDOW_TARGET_PAGES * 10

    assert length(windows[0]) == 86400
    assert len(windows) >= 3
    for before, after in itertools.pairwise(windows[:-1]):  # the last one ends at now - lag instead
        assert length(after) == min(86400, int(length(before) * target / in_query(records, before)))
    assert all(a["window_end"] == b["window_start"] for a, b in itertools.pairwise(windows))


async def test_a_restarted_window_is_cut_to_what_a_sized_window_holds(
    make_sim: Callable[..., Any], tmp_path: Path, log_buffer: io.StringIO
) -> None:
    """The 150th page token of a 300-page window expires: the window starts again from its start, ending
    where the 1500 records already read say 100 pages end; nothing is lost or duplicated."""
    _, records, _ = await collect(make_sim, tmp_path, 3000, page_size=10, sim={"expire_token_every": 150})
    restart = log_events(log_buffer, "window_restarted")[0]  # every 150th token: later windows restart too
    first = log_events(log_buffer, "window_committed")[0]
    start = parse_config_time(restart["window_start"])
    # Oldest first: the 150 pages before the expired token held the window's first 1500 records.
    newest = sorted(r.time for r in records if r.time >= start - OVERLAP)[1499]

    assert first["window_start"] == restart["window_start"]
    assert length(first) == int((newest - start) * WINDOW_TARGET_PAGES * 10 / 1500)
    assert parse_config_time(first["window_end"]) < parse_config_time(restart["window_end"])


class SlowClient(ScriptedClient):
    """Every call takes two seconds of the clock: what a call is like with hundreds of streams."""

    def __init__(self, script: list[Page | BaseException], clock: list[float]) -> None:
        super().__init__(script)
        self._clock = clock

    async def fetch_page(self, *args: Any, page_size: int, page_token: str | None, **kwargs: Any) -> Page:
        self._clock[0] += 2
        return await super().fetch_page(*args, page_size=page_size, page_token=page_token, **kwargs)


async def test_a_caught_up_stream_waits_a_poll_interval_even_when_its_call_took_seconds(tmp_path: Path) -> None:
    """Once a window reaches now - lag the stream sleeps poll_interval_secs, though the seconds its call
    took would make a next window: one call per poll, not one after another."""
    clock = [float(NOW)]
    account = AccountConfig(
        name="acme", auth="hmac", base_url="http://127.0.0.1:9", streams=("ttp_url",), start_secs=NOW - 3600
    )
    store = await Store.open(tmp_path / "state.db")
    fake, sleeps = SlowClient([Page([], None)] * 5, clock), Sleeps()
    poller = Poller(
        StreamSpec(account, LOG_TYPES["ttp_url"], "/api/ttp/url/get-logs", 100),
        fake,  # type: ignore[arg-type]
        store,
        Telemetry(),
        once_until=None,
        clock=lambda: clock[0],
        sleep=sleeps,
    )

    with pytest.raises(anyio.get_cancelled_exc_class()):
        await poller.run()

    assert sleeps.delays == [60.0, 60.0]  # poll_interval_secs after each window; the second sleep stops it
    assert len(fake.calls) == 2
    await store.close()
