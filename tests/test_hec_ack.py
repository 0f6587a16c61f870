"""Splunk HEC indexer acknowledgement (use_ack) against a loopback HEC that implements channels and acks.

The dispatcher runs on a real SQLite store; the sink is the one ``type = "splunk_hec"`` builds. The
offset may only move over batches HEC confirmed, and every event must end up indexed whatever the
acks do: late, lost, forgotten by a restart, or refused with a channel error.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiohttp import web

from collector.config import load_config
from collector.config.errors import ConfigError
from collector.config.options import Context, build
from collector.delivery.dispatcher import Dispatcher, SpoolSignal
from collector.logtypes.base import Event
from collector.service.app import Collector, check_sinks
from collector.service.telemetry import Telemetry
from collector.simulator import FakeMimecast
from collector.sinks import SinkContext, create_sink
from collector.sinks.base import Acknowledging, OutEvent, SinkError
from collector.sinks.hec_ack import default_channel
from collector.sinks.splunk_hec import SplunkHecSettings, SplunkHecSink
from collector.state.store import Store
from tests.helpers import expected_ids, seed, table, write_config
from tests.receivers import FakeHec

TOKEN = "hec-token-0000-1111"  # FakeHec's default
FAST = {"ack_poll_interval_secs": 0.1, "retry_max_secs": 0.5, "batch_max_events": 3}


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(tmp_path / "state.db")
    yield opened
    await opened.close()


@pytest.fixture
async def hec() -> AsyncIterator[FakeHec]:
    fake = FakeHec(ack_enabled=True)
    await fake.start()
    yield fake
    await fake.stop()


def hec_settings(url: str, tmp_path: Path, **options: Any) -> SplunkHecSettings:
    table_ = {"url": url, "token": TOKEN, "use_ack": True, **FAST, **options}
    return build(SplunkHecSettings, table_, "sinks.splunk", Context({}, tmp_path), name="splunk", type="splunk_hec")


async def spool(store: Store, keys: list[str]) -> None:
    state = await store.stream("acme", "ttp_url", start=1_000)
    doc = {"labels": {"mimecast_account": "acme", "mimecast_log_type": "ttp_url"}}
    events = [Event(k, 1_700_000_000 + i, {"event": {"id": k}, **doc}) for i, k in enumerate(keys)]
    end = state.window_start + 1_000
    await store.commit_page(events, state.window_done(end), seen_until=end, now=5.0)


class Delivery:
    """One acknowledging HEC sink and its dispatcher on the store; ``run`` until ``drained`` is set."""

    def __init__(self, store: Store, url: str, tmp_path: Path, **options: Any) -> None:
        self.settings = hec_settings(url, tmp_path, **options)
        self.telemetry = Telemetry()
        self.sink = create_sink(self.settings, SinkContext(tmp_path, self.telemetry))
        assert isinstance(self.sink, Acknowledging)
        self.store = store
        self.drained = anyio.Event()
        self.worker = Dispatcher(self.settings, self.sink, store, self.telemetry, SpoolSignal(), all_sinks=["splunk"])

    async def run(self) -> None:
        try:
            await self.worker.run(until_drained=self.drained)
        finally:
            await self.sink.close()

    async def saved_offset(self) -> int:
        return await self.store.sink_offset("splunk")

    def resent(self) -> float:
        return self.telemetry.sample("mimecast_sink_resent_events_total", sink="splunk")


def indexed(hec: FakeHec) -> Counter[str]:
    return Counter(str(e.envelope["event"]["event"]["id"]) for e in hec.events)


async def until(condition: Callable[[], bool], limit_secs: float = 20) -> None:
    with anyio.fail_after(limit_secs):
        while not condition():  # noqa: ASYNC110 - polling a fake's state
            await anyio.sleep(0.02)


KEYS = [f"e{n}" for n in range(1, 8)]


async def test_offset_moves_only_over_confirmed_batches(store: Store, hec: FakeHec, tmp_path: Path) -> None:
    """HEC received all three batches but confirms none: the offset stays at 0 and nothing is indexed.
    Once the acks come, the offset moves to the end and each event is indexed once."""
    hec.acks.late_queries = 10_000
    await spool(store, KEYS)
    delivery = Delivery(store, hec.url, tmp_path)
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(delivery.run)
            await until(lambda: len(hec.pending) == 3)
            await anyio.sleep(0.3)  # several poll rounds, all answered false
            assert hec.ack_queries >= 2
            assert await delivery.saved_offset() == 0
            assert hec.events == []
            assert delivery.telemetry.sample("mimecast_sink_unacked_batches", sink="splunk") == 3
            for pending in hec.pending.values():
                pending.queries_left = 0
            delivery.drained.set()
    assert await delivery.saved_offset() == 7
    assert indexed(hec) == Counter(KEYS)
    assert delivery.telemetry.sample("mimecast_events_delivered_total", sink="splunk") == 7
    assert delivery.telemetry.sample("mimecast_sink_unacked_batches", sink="splunk") == 0
    assert len(hec.channels) == 1
    assert hec.problems == []


async def test_late_acks_are_waited_for_not_resent(store: Store, hec: FakeHec, tmp_path: Path) -> None:
    """Acks that need three polls each: everything confirmed, nothing sent twice."""
    hec.acks.late_queries = 3
    await spool(store, KEYS)
    delivery = Delivery(store, hec.url, tmp_path, ack_timeout_secs=60)
    delivery.drained.set()
    with anyio.fail_after(30):
        await delivery.run()
    assert indexed(hec) == Counter(KEYS)
    assert hec.requests == 3  # three batches, three POSTs: no resend
    assert delivery.resent() == 0
    assert await delivery.saved_offset() == 7


async def test_window_bounds_batches_in_flight(store: Store, hec: FakeHec, tmp_path: Path) -> None:
    """max_unacked_batches = 2: with no ack coming, a third batch is not sent."""
    hec.acks.late_queries = 10_000
    await spool(store, KEYS)
    delivery = Delivery(store, hec.url, tmp_path, max_unacked_batches=2)
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(delivery.run)
            await until(lambda: len(hec.pending) == 2)
            await anyio.sleep(0.5)
            assert hec.requests == 2
            for pending in hec.pending.values():
                pending.queries_left = 0
            hec.acks.late_queries = 0
            delivery.drained.set()
    assert indexed(hec) == Counter(KEYS)
    assert hec.requests == 3


async def test_acks_that_never_arrive_are_resent_nothing_lost(store: Store, hec: FakeHec, tmp_path: Path) -> None:
    """Every ack lost (the events are indexed, HEC's answer never reads true): after ack_timeout_secs
    the batches go again; the duplicates are exactly the resent events, counted in the metric."""
    hec.acks.lost_rate = 1.0
    await spool(store, KEYS)
    delivery = Delivery(store, hec.url, tmp_path, ack_timeout_secs=1)
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(delivery.run)
            await until(lambda: delivery.resent() > 0)
            assert await delivery.saved_offset() == 0
            hec.acks.lost_rate = 0.0  # the next sends' acks arrive
            delivery.drained.set()
    counts = indexed(hec)
    assert set(counts) == set(KEYS)
    duplicates = sum(counts.values()) - len(KEYS)
    assert 0 < duplicates <= delivery.resent()
    assert await delivery.saved_offset() == 7


async def test_indexer_restart_reusing_ack_ids_loses_nothing(store: Store, hec: FakeHec, tmp_path: Path) -> None:
    """Two batches pending when the indexer restarts: it loses them and starts ackIds at 0 again. The
    next batches get ids 0 and 1, which a naive client would take for the lost ones' confirmations;
    the sink sees the ids go back, sends the lost batches again at once (long before
    ack_timeout_secs), and every event is indexed exactly once."""
    hec.acks.late_queries = 10_000
    await spool(store, KEYS[:6])
    delivery = Delivery(store, hec.url, tmp_path, ack_timeout_secs=3600, max_unacked_batches=6)
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(delivery.run)
            await until(lambda: len(hec.pending) == 2)
            await hec.stop()
            hec.restart_indexer()
            hec.acks.late_queries = 0
            await hec.start()
            await spool(store, ["f1", "f2", "f3", "f4", "f5", "f6"])
            await until(lambda: hec.requests >= 4)  # the new batches, on reused ids 0 and 1
            delivery.drained.set()
    assert hec.lost_batches == 2
    assert indexed(hec) == Counter([*KEYS[:6], "f1", "f2", "f3", "f4", "f5", "f6"])
    assert delivery.resent() == 6
    assert await delivery.saved_offset() == 12


async def test_channel_errors_are_refusals_with_the_fix(hec: FakeHec, tmp_path: Path) -> None:
    """HEC's channel error codes come back as non-retryable errors naming what to change."""
    sink = create_sink(hec_settings(hec.url, tmp_path), SinkContext(tmp_path))
    plain = create_sink(hec_settings(hec.url, tmp_path, use_ack=False), SinkContext(tmp_path))
    assert isinstance(plain, SplunkHecSink)
    assert not isinstance(plain, Acknowledging)
    events = [_event("x1")]
    try:
        hec.acks.channel_code = 11
        with pytest.raises(SinkError, match="set channel to a GUID") as invalid:
            await sink.send_batch(events)
        assert invalid.value.retryable is False
        hec.acks.channel_code = None
        with pytest.raises(SinkError, match="set use_ack = true") as missing:  # acks on, sink without
            await plain.send_batch(events)
        assert missing.value.retryable is False
        assert missing.value.status == 400
        assert hec.events == []
    finally:
        await sink.close()
        await plain.close()


async def test_token_without_acks_is_caught_by_validate_and_at_send(tmp_path: Path) -> None:
    """A token with acknowledgement off: the health check (validate) says so with code 14; a send
    that comes back without an ackId is refused rather than counted as confirmed."""
    hec = FakeHec(ack_enabled=False)
    await hec.start()
    sink = create_sink(hec_settings(hec.url, tmp_path), SinkContext(tmp_path))
    try:
        with pytest.raises(SinkError, match="indexer acknowledgement is disabled for this token"):
            await sink.health_check()
        with pytest.raises(SinkError, match="gave no ackId") as no_id:
            await sink.send_batch([_event("x1")])
        assert no_id.value.retryable is False
        hec.ack_enabled = True
        await sink.health_check()
    finally:
        await sink.close()
        await hec.stop()


async def test_validate_reports_acks_disabled(make_sim: Callable[..., Any], tmp_path: Path) -> None:
    """`validate`'s sink check fails a use_ack sink whose token has acknowledgement off."""
    hec = FakeHec(ack_enabled=False)
    await hec.start()
    try:
        sim: FakeMimecast = await make_sim()
        sinks = table("sinks.splunk", {"type": "splunk_hec", "url": hec.url, "token": TOKEN, "use_ack": True})
        config = load_config(write_config(tmp_path, sim.base_url, extra_tables=sinks))
        problems = await check_sinks(config)
        assert problems["local"] is None
        assert "indexer acknowledgement is disabled for this token" in (problems["splunk"] or "")
        hec.ack_enabled = True
        assert (await check_sinks(config))["splunk"] is None
    finally:
        await hec.stop()


def test_channel_is_stable_per_sink_and_host_and_configurable(tmp_path: Path) -> None:
    assert default_channel("splunk", "host-a") == default_channel("splunk", "host-a")
    assert default_channel("splunk", "host-a") != default_channel("splunk", "host-b")
    assert default_channel("splunk", "host-a") != default_channel("other", "host-a")
    chosen = "0f8e6c1a-2b3d-4e5f-8a9b-0c1d2e3f4a5b"
    assert hec_settings("http://127.0.0.1:1", tmp_path, channel=chosen).channel == chosen
    with pytest.raises(Exception, match=r"sinks\.splunk\.channel"):
        hec_settings("http://127.0.0.1:1", tmp_path, channel="not-a-guid")


async def test_done_when_lossy_acks_and_one_restart(make_sim: Callable[..., Any], tmp_path: Path) -> None:
    """The issue's bar: the whole collector against an HEC that loses 20% of its acks, answers late,
    and restarts once mid-run: every event indexed, none lost, duplicates within the resent events
    (the documented bound)."""
    sim: FakeMimecast = await make_sim()
    records = seed(sim, 400, days=1)
    hec = FakeHec(ack_enabled=True)
    hec.acks.lost_rate, hec.acks.late_queries, hec.acks.seed = 0.2, 1, 7
    await hec.start()
    options = {
        "type": "splunk_hec",
        "url": hec.url,
        "token": TOKEN,
        "use_ack": True,
        "ack_timeout_secs": 1,
        "ack_poll_interval_secs": 0.1,
        "max_unacked_batches": 4,
        "batch_max_events": 50,
        "retry_max_secs": 0.5,
    }
    path = write_config(tmp_path, sim.base_url, account={"page_size": 100}, extra_tables=table("sinks.splunk", options))
    collector = Collector(load_config(path), once=True, handle_signals=False)
    restarted = False

    async def restart_once() -> None:
        nonlocal restarted
        await until(lambda: hec.requests >= 8 and bool(hec.pending), limit_secs=60)
        await hec.stop()
        hec.restart_indexer()
        await anyio.sleep(0.3)  # connection refused meanwhile
        await hec.start()
        restarted = True

    try:
        started = time.monotonic()
        async with anyio.create_task_group() as tg:
            tg.start_soon(restart_once)
            with anyio.fail_after(120):
                result = await collector.run()
        assert result.exit_code == 0
        assert restarted, f"the HEC restart never happened ({time.monotonic() - started:.1f} s)"
    finally:
        await hec.stop()
    want = {event_id for _, event_id in expected_ids(records)}
    counts = indexed(hec)
    resent = collector.telemetry.sample("mimecast_sink_resent_events_total", sink="splunk")
    duplicates = sum(counts.values()) - len(counts)
    assert set(counts) == want, f"lost {len(want - set(counts))}"
    assert resent > 0
    assert duplicates <= resent
    assert hec.lost_batches > 0 or duplicates > 0  # the restart and the lost acks did bite
    print(
        f"indexed {len(counts)} events, duplicates {duplicates}, resent {resent:.0f}, restart lost "
        f"{hec.lost_batches} batches in HEC, ack queries {hec.ack_queries}"
    )


def _event(key: str) -> OutEvent:
    return OutEvent(key, 1_700_000_000, b"{}", b'{"event":{"id":"%s"}}' % key.encode(), "acme", "ttp_url")


def test_ack_timeout_must_leave_room_for_polls(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"sinks\.splunk\.ack_timeout_secs"):
        hec_settings("http://127.0.0.1:1", tmp_path, ack_timeout_secs=1, ack_poll_interval_secs=0.5)


class HostileHec(FakeHec):
    """Answers event POSTs correctly but the ack endpoint with ``ack_answer``."""

    ack_answer: bytes = b"{}"

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/services/collector/event", self._event)
        app.router.add_post("/services/collector/ack", self._hostile)

    async def _hostile(self, _: web.Request) -> web.Response:
        return web.Response(body=self.ack_answer, content_type="application/json")


@pytest.mark.parametrize(
    ("answer", "raises"),
    [
        (b"<html>proxy error</html>", True),
        (b'{"acks": [true]}', True),
        (b"[]", True),
        (b"\xff\xfe", True),
        (b'{"acks": {"0": "yes", "x": true, "-0": true}}', False),
    ],
)
async def test_malformed_ack_answers_confirm_nothing(answer: bytes, raises: bool, tmp_path: Path) -> None:
    """Whatever the ack endpoint says, only a well-formed true confirms a batch: anything else is a
    retryable error or a false, the batch stays unconfirmed."""
    hec = HostileHec(ack_enabled=True)
    hec.ack_answer = answer
    await hec.start()
    sink = create_sink(hec_settings(hec.url, tmp_path), SinkContext(tmp_path))
    assert isinstance(sink, Acknowledging)
    try:
        await sink.send_batch([_event("x1")])
        if raises:
            with pytest.raises(SinkError, match="HEC ack answer is not") as error:
                await sink.acknowledged(wait=False)
            assert error.value.retryable
        else:
            assert await sink.acknowledged(wait=False) == 0
        assert hec.events == []  # HostileHec never indexes: nothing may count as confirmed
    finally:
        await sink.close()
        await hec.stop()


@pytest.mark.parametrize("answer", [b'{"text": "Success", "code": 0, "ackId": "7"}', b'{"ackId": -1}', b"ok"])
async def test_event_answer_without_a_usable_ack_id_is_refused(answer: bytes, tmp_path: Path) -> None:
    receiver = RawAnswer(answer)
    await receiver.start()
    sink = create_sink(hec_settings(receiver.url, tmp_path), SinkContext(tmp_path))
    try:
        with pytest.raises(SinkError, match="gave no ackId"):
            await sink.send_batch([_event("x1")])
    finally:
        await sink.close()
        await receiver.stop()


class RawAnswer(FakeHec):
    def __init__(self, answer: bytes) -> None:
        super().__init__(ack_enabled=True)
        self.answer = answer

    async def _event(self, request: web.Request) -> web.Response:
        return web.Response(body=self.answer, content_type="application/json")
