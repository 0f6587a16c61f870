"""Telemetry of a stream the server holds back: health, the wait gauge, and the recorder behind status."""

from __future__ import annotations

from collector.service.telemetry import Telemetry
from collector.state.db import StoreError

LABELS = {"account": "acme", "log_type": "ttp_url"}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_the_wait_gauge_counts_down_and_goes_when_the_wait_is_over() -> None:
    """While waiting, mimecast_stream_wait_seconds{reason} reads the seconds left; cleared, the series is gone."""
    clock = Clock()
    telemetry = Telemetry(clock)
    await telemetry.stream_waiting("acme", "ttp_url", 1300.0, "rate_limited", "rate limited (HTTP 429)")
    clock.now = 1100.0
    during = telemetry.registry.get_sample_value("mimecast_stream_wait_seconds", {**LABELS, "reason": "rate_limited"})
    await telemetry.stream_waiting("acme", "ttp_url", None)
    after = telemetry.registry.get_sample_value("mimecast_stream_wait_seconds", {**LABELS, "reason": "rate_limited"})

    assert (during, after) == (200.0, None)
    assert telemetry.health("acme", "ttp_url").waiting_until is None


async def test_a_failing_recorder_does_not_stop_the_stream() -> None:
    """The state file refusing the write only costs `status` the wait: health still has it, nothing raises."""
    telemetry = Telemetry(Clock())

    async def refuse(account: str, log_type: str, until: float | None, why: str | None) -> None:
        raise StoreError("disk full")

    telemetry.record_waiting = refuse
    await telemetry.stream_waiting("acme", "ttp_url", 1300.0, "bucket_empty", "budget used up")

    health = telemetry.health("acme", "ttp_url")
    assert (health.waiting_until, health.waiting_why, health.waiting_reason) == (
        1300.0,
        "budget used up",
        "bucket_empty",
    )
