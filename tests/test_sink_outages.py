"""SIEMs go down mid-run: nothing is lost, Elasticsearch never indexes an event twice, other sinks flow."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import orjson

from collector.config import load_config
from collector.logtypes import DEFAULT_STREAMS
from collector.service.app import Collector
from collector.simulator import FakeMimecast
from tests.helpers import delivered_ids, expected_ids, seed, table, write_config
from tests.receivers import FakeElasticsearch, FakeHec, Misbehave

SINK_RETRY = {"retry_max_secs": 1, "batch_max_events": 200, "timeout_secs": 5, "connect_timeout_secs": 2}


def siem_sinks(hec: FakeHec, es: FakeElasticsearch) -> str:
    return table("sinks.splunk", {"type": "splunk_hec", "url": hec.url, "token": hec.token, **SINK_RETRY}) + table(
        "sinks.elastic", {"type": "elasticsearch", "url": es.url, "api_key": es.api_key, **SINK_RETRY}
    )


def es_ids(expected: set[tuple[str, str]]) -> set[str]:
    return {f"acme:{dataset.removeprefix('mimecast.')}:{key}" for dataset, key in expected}


async def wait_for(predicate: Callable[[], bool], secs: float) -> None:
    with anyio.fail_after(secs):
        while not predicate():  # noqa: ASYNC110 - watching other parties' progress
            await anyio.sleep(0.1)


async def test_outages_lose_nothing_and_never_block_the_other_sinks(
    make_sim: Callable[..., Any], tmp_path: Path, state_options: dict[str, Any]
) -> None:
    """HEC answers 429 (Retry-After), ES refuses connections, then 503s, then throttles items: all arrive."""
    sim: FakeMimecast = await make_sim(rate_limit=20, rate_window_ms=1000)
    records = seed(sim, 1000, days=1)
    expected = expected_ids(records)
    hec, es = FakeHec(), FakeElasticsearch()
    await hec.start()
    hec.misbehave = Misbehave(status=429, times=4, retry_after="1")
    config = write_config(
        tmp_path, sim.base_url, state=state_options, account={"page_size": 100}, extra_tables=siem_sinks(hec, es)
    )
    collector = Collector(load_config(config), handle_signals=False)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(collector.run)
            # Elasticsearch is not even listening: the file sink still gets everything.
            await wait_for(lambda: len(delivered_ids(tmp_path / "out")) == len(expected), 60)
            assert es.requests == 0
            es.misbehave = Misbehave(status=503, times=2)  # back, but answering 503 ...
            es.throttle_items = 150  # ... then rejecting items with 429 for a while
            await es.start()
            await wait_for(lambda: len(es.docs) == len(expected) and len(hec.events) == len(expected), 60)
            collector.request_stop()
    finally:
        await hec.stop()
        await es.stop()

    assert sorted(delivered_ids(tmp_path / "out")) == sorted(expected)  # complete, no duplicate
    assert {doc_id for _, doc_id in es.docs} == es_ids(expected)
    assert set(es.created.values()) == {1}  # not one event indexed twice
    assert es.conflicts > 0  # batches were re-sent after item-level 429s, answered 409: harmless
    assert sorted(e.event_id for e in hec.events) == sorted(key for _, key in expected)
    assert hec.problems == []
    assert hec.refused >= 4
    assert hec.gzipped == hec.requests - hec.refused  # every accepted request came compressed
    assert es.problems == []
    assert es.refused == 2


async def test_full_spool_pauses_collection_until_the_sink_returns(
    make_sim: Callable[..., Any], tmp_path: Path, log_buffer: io.StringIO, state_options: dict[str, Any]
) -> None:
    """With max_spool_events = 300 and the only sink down, pollers pause; when it returns, all arrive."""
    sim: FakeMimecast = await make_sim()
    records = seed(sim, 500, days=1)
    expected = expected_ids(records)
    es = FakeElasticsearch()
    config = write_config(tmp_path, sim.base_url, state=state_options, account={"page_size": 100})
    text = (
        config.read_text()
        .split("[sinks.local]")[0]
        .replace("[state]", "[state]\nmax_spool_events = 300\nmax_spool_bytes = 0")
    )
    config.write_text(
        text + table("sinks.elastic", {"type": "elasticsearch", "url": es.url, "api_key": es.api_key, **SINK_RETRY})
    )
    collector = Collector(load_config(config), handle_signals=False)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(collector.run)
            await wait_for(lambda: "spool_full_collection_paused" in log_buffer.getvalue(), 30)
            await anyio.sleep(1.0)
            spooled = sum(
                int(collector.telemetry.sample("mimecast_events_spooled_total", account="acme", log_type=lt))
                for lt in DEFAULT_STREAMS
            )
            assert spooled < len(expected)  # collection really stopped short
            assert spooled <= 300 + len(DEFAULT_STREAMS) * 100  # the limit, overshot by at most one page per stream
            await es.start()
            await wait_for(lambda: len(es.docs) == len(expected), 60)
            collector.request_stop()
    finally:
        await es.stop()

    assert {doc_id for _, doc_id in es.docs} == es_ids(expected)
    events = [orjson.loads(line)["event"] for line in log_buffer.getvalue().splitlines()]
    assert events.count("spool_full_collection_paused") >= 1
    assert "spool_has_room_collection_resumed" in events
    assert collector.telemetry.sample("mimecast_events_dropped_total", sink="elastic") == 0
