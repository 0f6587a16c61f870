"""Table-driven :class:`collector.api.limiter.PacingModel` scenarios for server-given waits: every wait is
capped at ``max_wait_secs`` (and the model says so), and a server that sends its rate-limit headers
only on 429s is paced from what the 429 taught, by counting calls, instead of throttled once a period.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest

from collector.api.limiter import (
    BUCKET_EMPTY,
    PACED,
    RATE_LIMITED,
    RateHeaders,
    ServerWait,
    WaitCap,
    throttle_wait_secs,
)
from tests.test_limiter import Answer, drive, make_model, rate_headers, throttled

TEN_YEARS_MS = 10 * 365 * 86_400 * 1000
TEN_YEARS_SECS = TEN_YEARS_MS / 1000
RESET_CAPPED = WaitCap("x-ratelimit-reset", TEN_YEARS_SECS, 300.0)
RETRY_AFTER_CAPPED = WaitCap("retry-after", 999999999.0, 300.0)

# --- capped waits -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "headers", "max_wait", "cap", "not_before", "not_after"),
    [
        # A 200 saying nothing is left for ten years: wait the cap, not the ten years.
        (
            200,
            rate_headers(100, 0, TEN_YEARS_MS),
            300.0,
            WaitCap("x-ratelimit-reset", TEN_YEARS_SECS, 300.0),
            300,
            300.05,
        ),
        (
            429,
            rate_headers(100, 0, TEN_YEARS_MS),
            300.0,
            WaitCap("x-ratelimit-reset", TEN_YEARS_SECS, 300.0),
            300,
            330.05,
        ),
        (429, rate_headers(retry_after="999999999"), 300.0, RETRY_AFTER_CAPPED, 300, 330.05),
        (
            429,
            rate_headers(reset_ms=2000, retry_after="999999999"),
            60.0,
            WaitCap("retry-after", 999999999.0, 60.0),
            60,
            66.05,
        ),
        # Within the cap: nothing capped, the server's own wait.
        (200, rate_headers(100, 0, 5000), 300.0, None, 5.0, 5.05),
        (429, rate_headers(reset_ms=5000), 300.0, None, 5.0, 5.55),
        (429, rate_headers(100, 0, 300_000), 300.0, None, 300.0, 330.05),
    ],
)
def test_server_given_waits_are_capped_and_the_cap_reported(
    status: int, headers: dict[str, str], max_wait: float, cap: WaitCap | None, not_before: float, not_after: float
) -> None:
    """However long a wait the answer asks for, the next call goes by max_wait_secs (plus jitter), and the
    model returns what it capped."""
    model = make_model(max_wait_secs=max_wait)
    model.on_send(99.95)

    assert model.on_response(100.0, status, headers) == cap
    assert 100.0 + not_before <= model.earliest_send(100.0) <= 100.0 + not_after


def test_a_bucket_that_never_refills_is_asked_once_per_max_wait() -> None:
    """Every answer says "nothing left for ten years": the stream keeps calling, one call per max_wait_secs."""
    log = drive(make_model(max_wait_secs=300.0), lambda t: (200, rate_headers(100, 0, TEN_YEARS_MS)), calls=4)

    assert [round(call.sent, 2) for call in log] == [0.0, 300.06, 600.11, 900.16]  # + 5 ms guard + 50 ms latency each


@pytest.mark.parametrize(
    ("headers", "in_a_row", "max_wait", "wait"),
    [
        (RateHeaders(None, None, None, 999_999_999.0), 1, 300.0, 300.0),
        (RateHeaders(None, None, TEN_YEARS_SECS, 2.0), 1, 120.0, 120.0),
        (RateHeaders(None, None, 30.0, None), 1, 300.0, 30.0),
        (RateHeaders(None, None, None, None), 3, 300.0, 4.0),
    ],
)
def test_throttle_wait_is_capped_at_max_wait(headers: RateHeaders, in_a_row: int, max_wait: float, wait: float) -> None:
    assert throttle_wait_secs(headers, in_a_row, 60.0, max_wait) == wait


def test_throttle_wait_is_capped_at_five_minutes_by_default() -> None:
    """The OAuth2 token endpoint's 429 uses the default: a Retry-After of 31 years waits 300 s."""
    assert throttle_wait_secs(RateHeaders(None, None, None, 999_999_999.0), 1, 60.0) == 300.0


@pytest.mark.parametrize(
    ("status", "headers", "reason", "until", "capped"),
    [
        (429, rate_headers(100, 0, TEN_YEARS_MS), RATE_LIMITED, (110.0, 111.05), True),
        (429, rate_headers(reset_ms=5000), RATE_LIMITED, (105.0, 105.55), False),
        (200, rate_headers(100, 0, TEN_YEARS_MS), BUCKET_EMPTY, (110.005, 110.005), True),
        (200, rate_headers(100, 0, 5000), BUCKET_EMPTY, (105.005, 105.005), False),
        (200, rate_headers(100, 10, TEN_YEARS_MS), PACED, (109.95, 109.95), False),
        (200, rate_headers(100, 90, 5000), None, None, False),
        (200, {}, None, None, False),
    ],
)
def test_server_wait_says_why_and_until_when(
    status: int, headers: dict[str, str], reason: str | None, until: tuple[float, float] | None, capped: bool
) -> None:
    """server_wait names what holds calls back (429 gate, empty bucket, spreading), until when, and any cap."""
    model = make_model(max_wait_secs=10.0)
    model.on_send(99.95)
    model.on_response(100.0, status, headers)

    wait = model.server_wait(100.0)

    if reason is None:
        assert wait is None
        return
    assert wait is not None
    assert wait.reason == reason
    assert until is not None
    assert until[0] <= wait.until <= until[1] + 1e-9
    assert (wait.cap is not None) is capped


@pytest.mark.parametrize(
    ("wait", "text"),
    [
        (ServerWait(1.0, RATE_LIMITED, None), "rate limited (HTTP 429)"),
        (
            ServerWait(1.0, RATE_LIMITED, WaitCap("retry-after", 999999999.0, 300.0)),
            "rate limited (HTTP 429); the server asked to wait 999999999 s (retry-after), "
            "capped at max_wait_secs = 300",
        ),
        (
            ServerWait(1.0, BUCKET_EMPTY, WaitCap("x-ratelimit-reset", TEN_YEARS_SECS, 60.0)),
            "rate-limit budget used up until the bucket refills; the server asked to wait 315360000 s "
            "(x-ratelimit-reset), capped at max_wait_secs = 60",
        ),
    ],
)
def test_server_wait_describes_itself_for_operators(wait: ServerWait, text: str) -> None:
    assert wait.describe() == text


# --- headers only on 429 ---------------------------------------------------------------------------


@dataclass
class HeadersOnlyOn429:
    """``limit`` calls per period; 200s carry no headers, 429s carry limit, remaining 0 and the reset.

    ``fixed_beat``: periods are aligned on multiples of the period; otherwise a period starts with the
    first call after the last one ended (as the simulator's buckets do)."""

    limit: int
    window_secs: float
    fixed_beat: bool
    _start: float | None = None
    _used: int = 0

    def __call__(self, t: float) -> Answer:
        if self.fixed_beat:
            start = math.floor(t / self.window_secs) * self.window_secs
            if start != self._start:
                self._start, self._used = start, 0
        elif self._start is None or t >= self._start + self.window_secs:
            self._start, self._used = t, 0
        assert self._start is not None
        if self._used >= self.limit:
            reset_ms = math.ceil((self._start + self.window_secs - t) * 1000)
            return 429, rate_headers(self.limit, 0, reset_ms)
        self._used += 1
        return 200, {}


@pytest.mark.parametrize(
    ("limit", "window_secs", "fixed_beat", "most_429s"),
    [
        # A period that starts with the first call: the first 429 teaches size and period.
        (4, 1.0, False, 1),
        (7, 3.0, False, 1),
        (10, 4.0, False, 1),
        (50, 60.0, False, 1),
        # A fixed beat: one more 429 shows that periods do not wait for the first call.
        (4, 1.0, True, 2),
        (7, 3.0, True, 2),
        (10, 4.0, True, 2),
        (50, 60.0, True, 2),
    ],
)
def test_headers_only_on_429_costs_a_429_or_two_not_one_per_period(
    limit: int, window_secs: float, fixed_beat: bool, most_429s: int
) -> None:
    """30 periods of backlog against a bucket that only speaks on 429: at most one or two 429s in all,
    and nearly the whole budget used (the old model was throttled every period)."""
    server = HeadersOnlyOn429(limit, window_secs, fixed_beat)
    log = drive(make_model(), server, until=30 * window_secs)

    assert 1 <= len(throttled(log)) <= most_429s
    assert sum(1 for call in log if call.status == 200) >= 0.9 * 30 * limit


def test_a_429_teaches_the_bucket_and_header_less_answers_are_counted() -> None:
    """After a 429 (limit 4, refill in 200 ms) each 200 without headers takes one call off the bucket,
    refilled to the limit when the period has passed."""
    model = make_model()
    for t in (0.0, 0.2, 0.4, 0.6):
        model.on_send(t)
        model.on_response(t + 0.01, 200, {})
    model.on_send(0.8)
    model.on_response(0.81, 429, rate_headers(4, 0, 190))
    seen = []
    for t in (1.05, 1.1, 1.4):
        model.on_send(t)
        model.on_response(t + 0.01, 200, {})
        seen.append((model.remaining, round(model.reset_at or 0.0, 3)))

    assert model.counting is True
    assert model.window_secs == pytest.approx(1.0)  # 4 calls since 0.0, refill at 1.0: a 1 s period
    assert seen == [(3, 2.05), (2, 2.05), (1, 2.05)]


def test_headers_on_ordinary_answers_still_win() -> None:
    """Once a 200 carries the bucket headers, the model follows them and stops counting."""
    model = make_model()
    model.on_send(0.0)
    model.on_response(0.01, 429, rate_headers(10, 0, 1000))
    model.on_send(1.1)
    model.on_response(1.11, 200, rate_headers(10, 7, 500))

    assert model.counting is False
    assert model.remaining == 7
    assert model.reset_at == pytest.approx(1.61)
