"""The windowed poller against the loopback API: windows, overlap, tokens, loops, filters, resumption."""

from __future__ import annotations

import io
import itertools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest

from collector.api.client import Page
from collector.api.errors import Action, ApiError
from collector.collect.poller import Poller, StreamSpec
from collector.config import load_config
from collector.config.model import AccountConfig
from collector.logtypes import DEFAULT_STREAMS, LOG_TYPES
from collector.service.app import Collector
from collector.service.telemetry import Telemetry
from collector.simulator import FakeMimecast, SimRecord, generate
from collector.state.store import Store
from collector.timeutil import iso
from tests.helpers import delivered_ids, expected_ids, seed, write_config
from tests.test_end_to_end import run_once


def log_events(buffer: io.StringIO, name: str) -> list[dict[str, Any]]:
    lines = [orjson.loads(line) for line in buffer.getvalue().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == name]


async def test_expired_page_tokens_restart_the_window(
    make_sim: Callable[..., Any], tmp_path: Path, log_buffer: io.StringIO
) -> None:
    """Tokens that expire mid-window restart it from its first page; nothing lost, nothing duplicated."""
    sim = await make_sim(rate_limit=4, rate_window_ms=1000)
    now = int(time.time())
    records = {"ttp_url": generate("ttp_url", 400, start=now - 7200, end=now - 120)}
    sim.add("ttp_url", records["ttp_url"])
    config = write_config(
        tmp_path,
        sim.base_url,
        account={"streams": ["ttp_url"], "page_size": 50, "start": iso(now - 7300), "max_window_secs": 86400},
    )
    results = []

    async def collect() -> None:
        results.append(await run_once(config))

    async with anyio.create_task_group() as tg:
        tg.start_soon(collect)
        while sim.stats.calls_to("/api/ttp/url/get-logs") < 3:  # noqa: ASYNC110 - polling another party's counter
            await anyio.sleep(0.02)
        sim.expire_page_tokens()

    assert results[0].exit_code == 0
    assert sorted(delivered_ids(tmp_path / "out")) == sorted(expected_ids(records))
    assert sim.stats.bad_request["err_page_token_expired"] == 1
    assert len(log_events(log_buffer, "window_restarted")) == 1


async def test_empty_page_with_a_next_token_ends_the_window(make_sim: Callable[..., Any], tmp_path: Path) -> None:
    """A trailing empty page that still carries `next` ends paging: one extra call per window, no more."""
    sim = await make_sim(trailing_empty_page=True)
    records = seed(sim, 300, days=0.9)
    config = write_config(tmp_path, sim.base_url, account={"max_window_secs": 86400 * 2})

    result = await run_once(config)

    assert result.exit_code == 0
    assert sorted(delivered_ids(tmp_path / "out")) == sorted(expected_ids(records))
    # One window per stream (2-day windows over a 3-day backlog with 1 day of data -> 2 windows, the
    # first empty): pages = 1 data page + 1 empty trap page for the window with data, 1 for the other.
    for log_type in (LOG_TYPES[name] for name in DEFAULT_STREAMS):
        assert sim.stats.calls_to(log_type.path) == 3, log_type.name


async def test_always_repeated_token_shrinks_the_window_until_one_page_holds_it(
    make_sim: Callable[..., Any], tmp_path: Path, log_buffer: io.StringIO
) -> None:
    """An API that always repeats the token is a loop: each page is re-asked twice, then the window
    restarts at half its length, until windows fit in one page (no token to repeat): all delivered."""
    sim = await make_sim(repeat_token_every=1)
    records = seed(sim, 300, days=1)  # 3 pages: a few halvings, not dozens
    config = write_config(
        tmp_path,
        sim.base_url,
        account={
            "streams": ["ttp_url"],
            "page_size": 100,
            "start": iso(time.time() - 86460),
            "max_window_secs": 172800,
        },
    )

    result = await run_once(config)

    assert result.exit_code == 0
    ids = sorted(delivered_ids(tmp_path / "out"))
    assert ids == sorted(i for i in expected_ids(records) if i[0] == "mimecast.ttp_url")
    restarts = log_events(log_buffer, "window_restarted")
    assert restarts
    assert all("pagination loop" in r["reason"] for r in restarts)
    assert all(r["next_window_end"] < r["window_end"] for r in restarts)  # every restart shrank the window
    assert not log_events(log_buffer, "stream_failed")
    assert len(log_events(log_buffer, "page_token_repeated")) == 2 * len(restarts)


async def test_a_window_that_cannot_shrink_fails_after_three_restarts(
    make_sim: Callable[..., Any], tmp_path: Path, log_buffer: io.StringIO
) -> None:
    """At the smallest window (60 s) with more than a page in it, a repeated token restarts the window
    3 times, then the stream fails with the hint: never a loop."""
    sim = await make_sim(repeat_token_every=1)
    now = int(time.time())
    sim.add("ttp_url", generate("ttp_url", 300, start=now - 3600, end=now - 3590, seed=5))  # 300 in 10 s
    config = write_config(
        tmp_path,
        sim.base_url,
        account={"streams": ["ttp_url"], "page_size": 100, "start": iso(now - 3605), "max_window_secs": 60},
    )

    result = await run_once(config)

    assert result.exit_code == 1
    assert result.failed_streams == ["acme/ttp_url"]
    restarts = log_events(log_buffer, "window_restarted")
    assert [r["restart"] for r in restarts] == [1, 2, 3]
    failed = log_events(log_buffer, "stream_failed")
    assert len(failed) == 1
    assert "pagination loop" in failed[0]["error"]
    # Each of the 4 passes: the first page, then the repeated token asked for 3 times.
    assert sim.stats.calls_to("/api/ttp/url/get-logs") == 4 * (1 + 3)


async def test_occasionally_repeated_token_loses_nothing(make_sim: Callable[..., Any], tmp_path: Path) -> None:
    """A token repeated now and then restarts that window; dedup absorbs the re-read pages."""
    sim = await make_sim(repeat_token_every=5)
    records = seed(sim, 1500, days=2)
    config = write_config(tmp_path, sim.base_url, account={"page_size": 50})

    result = await run_once(config)

    assert result.exit_code == 0
    assert sim.stats.faults["repeated_token"] >= 3
    assert sorted(delivered_ids(tmp_path / "out")) == sorted(expected_ids(records))


async def test_overlap_catches_events_on_window_boundaries(make_sim: Callable[..., Any], tmp_path: Path) -> None:
    """With `from` and `to` both exclusive, events on the boundary second are caught only thanks to overlap."""
    now = int(time.time())
    start = now - 6 * 3600
    # Five events exactly on window boundaries (max_window_secs = 3600), plus a few in between.
    times = [start + 3600 * k for k in range(1, 6)] + [start + 1800, start + 5400]
    records = [SimRecord(t, t, generate("ttp_url", 1, start=t, end=t, seed=t)[0].record) for t in times]

    async def collect(overlap: int, directory: Path) -> set[tuple[str, str]]:
        sim: FakeMimecast = await make_sim(exclusive_start=True, exclusive_end=True)
        sim.add("ttp_url", records)
        directory.mkdir()
        config = write_config(
            directory,
            sim.base_url,
            account={"streams": ["ttp_url"], "start": iso(start), "max_window_secs": 3600, "overlap_secs": overlap},
        )
        assert (await run_once(config)).exit_code == 0
        return set(delivered_ids(directory / "out"))

    expected = expected_ids({"ttp_url": records})
    assert len(await collect(0, tmp_path / "no-overlap")) == 2  # the five boundary events are lost
    assert await collect(5, tmp_path / "overlap") == expected


async def test_backlog_is_split_into_bounded_windows(
    make_sim: Callable[..., Any], tmp_path: Path, log_buffer: io.StringIO
) -> None:
    """Three days behind with 6-hour windows: 12 windows per stream, each committed in order."""
    sim = await make_sim()
    records = seed(sim, 600, days=2.9)
    config = write_config(
        tmp_path,
        sim.base_url,
        account={"start": iso(time.time() - 3 * 86400), "max_window_secs": 21600, "page_size": 500},
    )
    result = await run_once(config)

    assert result.exit_code == 0
    assert sorted(delivered_ids(tmp_path / "out")) == sorted(expected_ids(records))
    windows = [w for w in log_events(log_buffer, "window_committed") if w["stream"] == "acme/ttp_url"]
    assert len(windows) == 12
    assert all(a["window_end"] == b["window_start"] for a, b in itertools.pairwise(windows))


async def test_stream_filters_are_sent_on_every_page(make_sim: Callable[..., Any], tmp_path: Path) -> None:
    """route = "inbound" is sent with every page (tokens are bound to it) and only inbound clicks arrive."""
    sim = await make_sim()
    records = seed(sim, 800, days=1)
    config = write_config(
        tmp_path,
        sim.base_url,
        account={"streams": ["ttp_url"], "page_size": 50},
        extra_tables='[accounts.acme.ttp_url]\nroute = "inbound"\n',
    )

    result = await run_once(config)

    inbound = {"ttp_url": [r for r in records["ttp_url"] if r.record["route"] == "inbound"]}
    assert result.exit_code == 0
    assert sim.stats.bad_request.total() == 0
    assert sorted(delivered_ids(tmp_path / "out")) == sorted(expected_ids(inbound))


async def test_restart_resumes_from_the_saved_page_token(make_sim: Callable[..., Any], tmp_path: Path) -> None:
    """Stopped mid-window, the next run continues from the saved token instead of the window start."""
    sim = await make_sim(rate_limit=4, rate_window_ms=1000)
    records = seed(sim, 1000, days=0.5)
    config_path = write_config(
        tmp_path, sim.base_url, account={"streams": ["ttp_url"], "page_size": 50, "max_window_secs": 86400}
    )
    config = load_config(config_path)
    daemon = Collector(config, handle_signals=False)
    async with anyio.create_task_group() as tg:
        tg.start_soon(daemon.run)
        await anyio.sleep(1.5)
        daemon.request_stop()

    store = await Store.open(config.state.path)
    try:
        state = await store.stream("acme", "ttp_url", start=0)
    finally:
        await store.close()
    assert state.page_token is not None  # stopped inside the window
    calls_before = sim.stats.calls_to("/api/ttp/url/get-logs")

    result = await run_once(config_path)

    assert result.exit_code == 0
    assert sorted(delivered_ids(tmp_path / "out")) == sorted(expected_ids({"ttp_url": records["ttp_url"]}))
    assert calls_before >= 4
    pages = -(-len(records["ttp_url"]) // 50)
    # Two empty windows, each page of the third once (none fetched twice), then the short window
    # from where the first run's window ended up to now - lag.
    assert sim.stats.calls_to("/api/ttp/url/get-logs") == 2 + pages + 1


# --- one stream's failures stay that stream's: a scripted client, a real store -----------------------

NOW = 1_731_500_000


class ScriptedClient:
    """Stands in for MimecastClient.fetch_page: each call takes the next item (an exception is raised)."""

    def __init__(self, script: list[Page | BaseException]) -> None:
        self.script = list(script)
        self.calls: list[tuple[int, str | None]] = []  # (page_size, page_token) asked for
        self.pages_done = 0  # page permits handed back (collector/api/inflight.py)

    async def fetch_page(self, *args: Any, page_size: int, page_token: str | None, **kwargs: Any) -> Page:
        self.calls.append((page_size, page_token))
        if not self.script:
            raise anyio.get_cancelled_exc_class()()  # script done: stop the poller as a shutdown would
        item = self.script.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item

    def page_done(self, stream: str) -> None:
        self.pages_done += 1


class Sleeps:
    """The poller's sleep: records each delay, returns at once; the second one stops the poller."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        if len(self.delays) > 1:
            raise anyio.get_cancelled_exc_class()()


async def scripted_poller(
    tmp_path: Path, script: list[Page | BaseException], *, once: bool, page_size: int = 100, **options: Any
) -> tuple[Poller, ScriptedClient, Store, Sleeps]:
    account = AccountConfig(
        name="acme", auth="hmac", base_url="http://127.0.0.1:9", streams=("ttp_url",), start_secs=NOW - 3600, **options
    )
    spec = StreamSpec(account, LOG_TYPES["ttp_url"], "/api/ttp/url/get-logs", page_size)
    store = await Store.open(tmp_path / "state.db")
    fake, sleeps = ScriptedClient(script), Sleeps()
    poller = Poller(
        spec,
        fake,  # type: ignore[arg-type]
        store,
        Telemetry(),
        once_until=NOW - 60 if once else None,
        clock=lambda: float(NOW),
        sleep=sleeps,
    )
    return poller, fake, store, sleeps


async def test_unexpected_exception_in_a_stream_is_logged_and_recorded_not_raised(
    tmp_path: Path, log_buffer: io.StringIO
) -> None:
    """A bug one answer triggers ends that stream's run (once) as failed: stream_crashed logged, error stored."""
    script: list[Page | BaseException] = [RecursionError("maximum recursion depth exceeded")]
    poller, _, store, _ = await scripted_poller(tmp_path, script, once=True)

    assert await poller.run() is False

    [crashed] = log_events(log_buffer, "stream_crashed")
    assert crashed["error"] == "unexpected RecursionError: maximum recursion depth exceeded"
    [row] = await store.streams()
    assert (row["last_error"], row["fatal"]) == ("unexpected RecursionError: maximum recursion depth exceeded", 1)
    await store.close()


async def test_crashed_stream_is_retried_after_fatal_retry_secs(tmp_path: Path) -> None:
    """In the daemon, a crashed stream waits fatal_retry_secs (900 s) and then fetches again."""
    poller, fake, store, sleeps = await scripted_poller(tmp_path, [ValueError("odd"), Page([], None)], once=False)

    with pytest.raises(anyio.get_cancelled_exc_class()):
        await poller.run()

    assert sleeps.delays == [900.0, 60.0]  # fatal_retry_secs, then poll_interval_secs once caught up
    assert fake.calls == [(100, None), (100, None)]
    await store.close()


async def test_cancellation_still_ends_a_stream(tmp_path: Path) -> None:
    """Cancellation is not a crash: it leaves run() at once, nothing logged or slept."""
    poller, fake, store, sleeps = await scripted_poller(tmp_path, [], once=False)

    with pytest.raises(anyio.get_cancelled_exc_class()):
        await poller.run()

    assert (fake.calls, sleeps.delays) == ([(100, None)], [])
    await store.close()


async def test_answer_too_large_for_one_record_fails_the_stream_without_restarting_the_window(
    tmp_path: Path, log_buffer: io.StringIO
) -> None:
    """ANSWER_TOO_LARGE on a page with a token is not a rejected token: the stream fails, the window stays."""
    too_large = ApiError(Action.FATAL, "answer is longer than max_response_bytes", code="answer_too_large")
    first = Page([{"date": "2024-11-13T13:03:11+0000", "url": "https://a.example/"}], "tok-2")
    poller, _, store, _ = await scripted_poller(tmp_path, [first, too_large], once=True)

    assert await poller.run() is False

    assert log_events(log_buffer, "window_restarted") == []
    assert [line["error"] for line in log_events(log_buffer, "stream_failed")] == [
        "answer is longer than max_response_bytes; code=answer_too_large"
    ]
    await store.close()


async def test_smaller_page_size_after_an_oversize_answer_holds_until_the_window_ends(tmp_path: Path) -> None:
    """A page that came back at page size 25: the window's next page asks for 25, the next window for 100 again."""
    record = {"date": "2024-11-13T13:03:11+0000", "url": "https://a.example/"}
    script: list[Page | BaseException] = [
        Page([record], "tok-2", page_size=25),
        Page([{**record, "url": "https://b.example/"}], None, page_size=25),
        Page([], None, page_size=100),
    ]
    poller, fake, store, _ = await scripted_poller(tmp_path, script, once=True, max_window_secs=1800)

    assert await poller.run() is True

    assert fake.calls == [(100, None), (25, "tok-2"), (100, None)]
    await store.close()
