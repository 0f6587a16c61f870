"""The collector's named telemetry: Prometheus metrics plus per-stream health, one object per run.

Each run gets its own registry so several collectors (tests, the demo) can live in one process.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge

from collector.config.errors import CollectorError
from collector.logs import get_logger

STREAM = ("account", "log_type")


@dataclass
class StreamHealth:
    last_success: float | None = None  # wall clock of the last answered call
    last_error: str | None = None
    fatal: bool = False
    waiting_until: float | None = None  # wall clock until which the server holds the stream back
    waiting_why: str | None = None
    waiting_reason: str | None = None  # the metric label: rate_limited, bucket_empty or paced


#: Persists a stream's wait (account, log type, until or None, why): the store's record_waiting.
WaitingRecorder = Callable[[str, str, float | None, str | None], Awaitable[None]]


class Telemetry:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.events_fetched = Counter("mimecast_events_fetched", "Records received from the API", STREAM, registry=r)
        self.events_spooled = Counter("mimecast_events_spooled", "New events written to the spool", STREAM, registry=r)
        self.events_duplicate = Counter(
            "mimecast_events_duplicate",
            "Records dropped as already spooled (overlap, re-fetch)",
            STREAM,
            registry=r,
        )
        self.normalize_errors = Counter(
            "mimecast_normalize_errors",
            "Records kept raw because they could not be normalized",
            STREAM,
            registry=r,
        )
        self.events_delivered = Counter("mimecast_events_delivered", "Events delivered", ("sink",), registry=r)
        self.events_dropped = Counter("mimecast_events_dropped", "Events dropped by policy", ("sink",), registry=r)
        self.events_dead_lettered = Counter(
            "mimecast_events_dead_lettered",
            "Events the target refused for good, kept in a dead-letter file",
            ("sink",),
            registry=r,
        )
        self.sink_failures = Counter("mimecast_sink_failures", "Failed batch deliveries", ("sink",), registry=r)
        self.api_calls = Counter(
            "mimecast_api_calls", "API calls by answer status", ("account", "endpoint", "status"), registry=r
        )
        self.api_retries = Counter("mimecast_api_retries", "API calls retried", ("account", "endpoint"), registry=r)
        self.api_throttled = Counter("mimecast_api_throttled", "HTTP 429 answers", ("account", "endpoint"), registry=r)
        self.api_waits_capped = Counter(
            "mimecast_api_waits_capped",
            "Waits a rate-limit answer asked for that were cut to max_wait_secs",
            ("account", "endpoint"),
            registry=r,
        )
        self.stream_wait = Gauge(
            "mimecast_stream_wait_seconds",
            "Seconds until the stream may call the API again, while the server's rate limit holds it back",
            (*STREAM, "reason"),
            registry=r,
        )
        self.ratelimit_remaining = Gauge(
            "mimecast_ratelimit_remaining", "Last x-ratelimit-remaining", ("account", "endpoint"), registry=r
        )
        self.window_lag = Gauge("mimecast_window_lag_seconds", "Now minus the stream's position", STREAM, registry=r)
        self.spool_backlog = Gauge("mimecast_spool_backlog_events", "Events waiting for a sink", ("sink",), registry=r)
        self.last_success = Gauge(
            "mimecast_last_success_timestamp_seconds",
            "Wall clock of the last good API answer",
            STREAM,
            registry=r,
        )
        self.last_delivery = Gauge(
            "mimecast_sink_last_delivery_timestamp_seconds",
            "Wall clock of the last delivered batch",
            ("sink",),
            registry=r,
        )
        self.stream_fatal = Gauge(
            "mimecast_stream_fatal",
            "1 while the stream is stopped by an error only an operator can fix (e.g. an expired binding)",
            STREAM,
            registry=r,
        )
        self.spool_events = Gauge("mimecast_spool_events", "Events held in the spool", registry=r)
        self.spool_bytes = Gauge("mimecast_spool_bytes", "Bytes of events held in the spool", registry=r)
        # The configured limits as gauges, so an alert can say "80% of the limit" (0 = no limit).
        self.spool_limit_events = Gauge(
            "mimecast_spool_limit_events", "state.max_spool_events (0 = no limit)", registry=r
        )
        self.spool_limit_bytes = Gauge("mimecast_spool_limit_bytes", "state.max_spool_bytes (0 = no limit)", registry=r)
        self.sink_unacked_batches = Gauge(
            "mimecast_sink_unacked_batches",
            "Batches sent but not yet acknowledged by the target's indexers (Splunk HEC use_ack)",
            ("sink",),
            registry=r,
        )
        self.sink_resent_events = Counter(
            "mimecast_sink_resent_events",
            "Events sent again because their acknowledgement did not come in time (possible duplicates)",
            ("sink",),
            registry=r,
        )
        # Several replicas on PostgreSQL (README: Running more than one).
        self.state_up = Gauge(
            "mimecast_state_up", "1 while the state database answers, 0 while it does not", registry=r
        )
        self.state_up.set(1)
        self.state_available = True
        self.owned = Gauge("mimecast_owned", "Streams and sinks this replica holds the lease of", ("kind",), registry=r)
        # Worker processes ([service] workers; collector/workers).
        self.workers = Gauge(
            "mimecast_workers", "Worker processes normalizing pages (0 until the first big page)", registry=r
        )
        self.worker_restarts = Counter(
            "mimecast_worker_restarts", "Worker pools replaced because a worker process died", registry=r
        )
        self.streams: dict[tuple[str, str], StreamHealth] = {}
        self.record_waiting: WaitingRecorder | None = None

    def health(self, account: str, log_type: str) -> StreamHealth:
        health = self.streams.get((account, log_type))
        if health is None:  # the fatal gauge exists from the start, so "no stream is fatal" is a series
            health = self.streams[(account, log_type)] = StreamHealth()
            self.stream_fatal.labels(account, log_type).set(0)
        return health

    def stream_ok(self, account: str, log_type: str) -> None:
        now = self.clock()
        health = self.health(account, log_type)
        health.last_success, health.last_error, health.fatal = now, None, False
        self.last_success.labels(account, log_type).set(now)
        self.stream_fatal.labels(account, log_type).set(0)

    def stream_error(self, account: str, log_type: str, summary: str, *, fatal: bool) -> None:
        health = self.health(account, log_type)
        health.last_error, health.fatal = summary, fatal
        self.stream_fatal.labels(account, log_type).set(1 if fatal else 0)

    async def stream_waiting(
        self, account: str, log_type: str, until: float | None, reason: str | None = None, why: str | None = None
    ) -> None:
        """The server holds the stream back until ``until`` (wall clock), or, with None, no longer."""
        health = self.health(account, log_type)
        if health.waiting_reason is not None:
            with suppress(KeyError):
                self.stream_wait.remove(account, log_type, health.waiting_reason)
        health.waiting_until, health.waiting_why, health.waiting_reason = until, why, reason
        if until is not None and reason is not None:
            self.stream_wait.labels(account, log_type, reason).set_function(lambda: max(0.0, until - self.clock()))
        if self.record_waiting is not None:
            try:
                await self.record_waiting(account, log_type, until, why)
            # The store's StoreError: only `status` misses the wait; collecting goes on, the next commit says more.
            except CollectorError as error:
                get_logger().warning("stream_wait_not_recorded", account=account, log_type=log_type, error=str(error))

    def spool_usage(self, events: int, size_bytes: int) -> None:
        self.spool_events.set(events)
        self.spool_bytes.set(size_bytes)

    def state_availability(self, up: bool) -> None:
        """The state database answers again (True) or stopped answering (False)."""
        self.state_available = up
        self.state_up.set(1 if up else 0)

    def sample(self, name: str, **labels: str) -> float:
        """Current value of one sample, e.g. ``sample("mimecast_events_spooled_total", account=..)``."""
        return self.registry.get_sample_value(name, labels) or 0.0

    def total(self, counter: Counter) -> float:
        """Sum of a counter over all its label values (for the shutdown summary)."""
        return sum(
            sample.value for metric in counter.collect() for sample in metric.samples if sample.name.endswith("_total")
        )
