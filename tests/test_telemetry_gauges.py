"""The gauges the dashboard and the alert rules need: stream fatal, spool usage and its limits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from collector.config.model import StateConfig
from collector.delivery.backpressure import SpoolGate
from collector.delivery.dispatcher import SpoolSignal
from collector.service.telemetry import Telemetry
from collector.state.store import Store
from tests.test_dispatcher import MemorySink, dispatcher, drained, settings, spool


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(tmp_path / "state.db")
    yield opened
    await opened.close()


def test_stream_fatal_is_a_series_from_the_start_and_follows_the_stream() -> None:
    """0 once the stream is known (so "no stream fatal" is a series), 1 on a fatal error, 0 again on success."""
    telemetry = Telemetry()
    labels = {"account": "acme", "log_type": "ttp_url"}
    assert telemetry.registry.get_sample_value("mimecast_stream_fatal", labels) is None
    telemetry.health("acme", "ttp_url")
    assert telemetry.registry.get_sample_value("mimecast_stream_fatal", labels) == 0
    telemetry.stream_error("acme", "ttp_url", "binding expired", fatal=True)
    assert telemetry.sample("mimecast_stream_fatal", **labels) == 1
    telemetry.stream_error("acme", "ttp_url", "HTTP 503", fatal=False)
    assert telemetry.sample("mimecast_stream_fatal", **labels) == 0
    telemetry.stream_error("acme", "ttp_url", "binding expired", fatal=True)
    telemetry.stream_ok("acme", "ttp_url")
    assert telemetry.sample("mimecast_stream_fatal", **labels) == 0


async def test_spool_limits_and_usage_are_exported(store: Store) -> None:
    """The gate exports the configured limits and what it measured; a delivery updates the usage."""
    telemetry = Telemetry()
    await spool(store, ["a", "b", "c", "d"])
    gate = SpoolGate(store, StateConfig(max_spool_events=10, max_spool_bytes=4096), telemetry, SpoolSignal(), dict)
    assert telemetry.sample("mimecast_spool_limit_events") == 10
    assert telemetry.sample("mimecast_spool_limit_bytes") == 4096
    await gate.before_fetch()
    usage = await store.usage()
    assert telemetry.sample("mimecast_spool_events") == 4
    assert telemetry.sample("mimecast_spool_bytes") == usage.bytes > 0

    with anyio.fail_after(10):  # one sink delivers everything: the spool is empty afterwards
        await dispatcher(store, MemorySink(), settings(), telemetry=telemetry).run(until_drained=drained())
    assert telemetry.sample("mimecast_spool_events") == 0
    assert telemetry.sample("mimecast_spool_bytes") == 0
    assert telemetry.sample("mimecast_spool_backlog_events", sink="mem") == 0
