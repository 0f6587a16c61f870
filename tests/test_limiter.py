"""Table-driven scenarios for :class:`collector.api.limiter.PacingModel` on a fake clock.

A tiny fixed-window server (``limit`` calls per ``window_secs``, windows aligned on multiples of the
window) answers with the Mimecast rate-limit headers; :func:`drive` runs the model against it the way
the pacer does for a single stream: wait until the model allows, send, read the answer.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from collector.api.limiter import PacingModel, RateHeaders, throttle_wait_secs

SEED = 20240611
LATENCY = 0.05

Answer = tuple[int | None, dict[str, str]]
Server = Callable[[float], Answer]


def rate_headers(
    limit: int | None = None,
    remaining: int | None = None,
    reset_ms: int | None = None,
    retry_after: str | None = None,
) -> dict[str, str]:
    """Response headers as the client sees them: strings, only those given."""
    headers: dict[str, str] = {}
    if limit is not None:
        headers["x-ratelimit-limit"] = str(limit)
    if remaining is not None:
        headers["x-ratelimit-remaining"] = str(remaining)
    if reset_ms is not None:
        headers["x-ratelimit-reset"] = str(reset_ms)
    if retry_after is not None:
        headers["retry-after"] = retry_after
    return headers


@dataclass
class FixedWindowServer:
    """``limit`` calls per window; answers 429 once the window's calls are spent."""

    limit: int
    window_secs: float
    _window: int | None = field(default=None, init=False)
    _used: int = field(default=0, init=False)

    def __call__(self, t: float) -> Answer:
        window = math.floor(t / self.window_secs)
        if window != self._window:
            self._window, self._used = window, 0
        # Milliseconds until the window rolls over, never under-reported.
        reset_ms = math.ceil(((window + 1) * self.window_secs - t) * 1000)
        if self._used >= self.limit:
            return 429, rate_headers(self.limit, 0, reset_ms)
        self._used += 1
        return 200, rate_headers(self.limit, self.limit - self._used, reset_ms)


@dataclass(frozen=True)
class Call:
    sent: float
    answered: float
    status: int | None
    headers: dict[str, str]


def drive(
    model: PacingModel,
    server: Server,
    *,
    calls: int | None = None,
    until: float | None = None,
    latency: float = LATENCY,
) -> list[Call]:
    """Send calls one at a time as early as the model allows, stopping after ``calls`` or at ``until``."""
    assert calls is not None or until is not None
    now, log = 0.0, list[Call]()
    while (calls is None or len(log) < calls) and (until is None or now < until):
        t = max(now, model.earliest_send(now))
        model.on_send(t)
        status, headers = server(t + latency)
        now = t + latency
        model.on_response(now, status, headers)
        log.append(Call(t, now, status, headers))
    return log


def make_model(
    *,
    max_requests_per_minute: float | None = None,
    max_backoff_secs: float = 60.0,
    max_wait_secs: float = 300.0,
    seed: int = SEED,
) -> PacingModel:
    return PacingModel(
        max_requests_per_minute=max_requests_per_minute,
        max_backoff_secs=max_backoff_secs,
        max_wait_secs=max_wait_secs,
        rng=random.Random(seed),
    )


def gaps(log: list[Call]) -> list[float]:
    return [b.sent - a.sent for a, b in itertools.pairwise(log)]


def throttled(log: list[Call]) -> list[Call]:
    return [call for call in log if call.status == 429]


# --- fresh bucket -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("limit", "window_secs", "calls", "sent"),
    [
        # Periods no longer than max_wait_secs (300 s): the whole bucket back to back (LATENCY apart),
        # then the next period's first call at the reset (answer + x-ratelimit-reset) + the 5 ms guard.
        (10, 1.0, 12, [0.05 * i for i in range(10)] + [1.005, 1.055]),
        (3, 2.0, 7, [0.0, 0.05, 0.1, 2.005, 2.055, 2.105, 4.005]),
        (1, 300.0, 3, [0.0, 300.005, 600.005]),
    ],
)
def test_short_periods_go_back_to_back_then_wait_for_the_reset(
    limit: int, window_secs: float, calls: int, sent: list[float]
) -> None:
    """A period that ends within max_wait_secs is spent at once; the next call waits for the refill; no 429."""
    log = drive(make_model(), FixedWindowServer(limit, window_secs), calls=calls)

    assert throttled(log) == []
    assert [call.sent for call in log] == pytest.approx(sent, abs=0.0015)  # the reset header is whole ms


@pytest.mark.parametrize(
    ("limit", "window_secs", "max_wait", "burst_calls", "spread_gap"),
    [
        # burst_calls: calls answered while more than half the bucket is left, plus the one after;
        # spread_gap: (reset - last burst send) / (calls left + 1), so the last lands before the reset;
        # once the reset is max_wait away or less, the rest go back to back.
        (10, 1.0, 0.3, 5, (1.0 - 0.20) / 6),
        (7, 3.0, 1.0, 4, (3.0 - 0.15) / 4),
        (100, 10.0, 2.0, 50, (10.0 - 2.45) / 51),
        (50, 3600.0, 300.0, 25, (3600.0 - 1.20) / 26),
    ],
)
def test_long_periods_burst_then_spread_until_the_reset_is_near(
    limit: int, window_secs: float, max_wait: float, burst_calls: int, spread_gap: float
) -> None:
    """A period longer than max_wait_secs: back to back while over half is left, then spaced about
    reset/remaining apart (so an empty bucket never waits longer than max_wait), and back to back
    again within max_wait of the reset."""
    log = drive(make_model(max_wait_secs=max_wait), FixedWindowServer(limit, window_secs), calls=limit)
    first_window = [call for call in log if call.answered < window_secs]
    between = gaps(first_window)
    spreading = [gap for gap, call in zip(between, first_window[1:], strict=True) if window_secs - call.sent > max_wait]
    near_reset = [
        gap for gap, call in zip(between, first_window[1:], strict=True) if window_secs - call.sent < max_wait
    ]

    assert throttled(log) == []
    assert len(first_window) == limit
    assert log[0].sent == 0.0
    assert between[: burst_calls - 1] == pytest.approx([LATENCY] * (burst_calls - 1))
    spread = spreading[burst_calls - 1 :]
    assert len(spread) >= 2
    assert all(0.8 * spread_gap <= gap <= 1.2 * spread_gap for gap in spread), spread
    assert near_reset[1:] == pytest.approx([LATENCY] * (len(near_reset) - 1))


@dataclass(frozen=True)
class Run:
    """N calls against an L-per-W bucket; the last call is sent between lowest and highest seconds."""

    limit: int
    window_secs: float
    calls: int
    latency: float
    lowest: float  # (N - L) * W / L
    highest: float  # 1.15 * lowest + W


@pytest.mark.parametrize(
    "run",
    [
        Run(10, 1.0, 100, 0.0, 9.0, 11.35),
        Run(10, 1.0, 100, 0.05, 9.0, 11.35),
        Run(7, 3.0, 50, 0.01, 18.43, 24.2),
        Run(20, 5.0, 95, 0.05, 18.75, 26.57),
        Run(100, 10.0, 500, 0.05, 40.0, 56.0),
        Run(50, 60.0, 200, 0.05, 180.0, 267.0),
        Run(1000, 3600.0, 3000, 0.2, 7200.0, 11880.0),
    ],
    ids=str,
)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_many_windows_without_a_single_429(run: Run, seed: int) -> None:
    """N calls over many windows: zero 429s, and the last call lands within the expected time."""
    server = FixedWindowServer(run.limit, run.window_secs)
    log = drive(make_model(seed=seed), server, calls=run.calls, latency=run.latency)

    assert len(log) == run.calls
    assert throttled(log) == []
    assert run.lowest <= log[-1].sent <= run.highest


# --- exhausted bucket and 429s -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("reset_ms", "latency", "not_before", "not_after"),
    [
        (5000, 0.05, 10.05 + 5.0, 10.05 + 5.0 + 0.05 * 5.1 + 0.05),
        (1000, 0.0, 10.0 + 1.0, 10.0 + 1.0 + 0.05 * 1.05 + 0.05),
        (60_000, 0.3, 10.3 + 60.0, 10.3 + 60.0 + 0.05 * 60.35 + 0.05),
    ],
)
def test_remaining_zero_waits_for_the_reset(reset_ms: int, latency: float, not_before: float, not_after: float) -> None:
    """An answer saying nothing is left: the next call goes only after the reset, plus a little jitter."""
    model = make_model()
    model.on_send(10.0)
    model.on_response(10.0 + latency, 200, rate_headers(100, 0, reset_ms))

    at = model.earliest_send(10.0 + latency)

    assert not_before <= at <= not_after


@pytest.mark.parametrize(
    ("headers", "not_before"),
    [
        (rate_headers(reset_ms=5000), 5.0),
        (rate_headers(100, 0, 5000), 5.0),
        (rate_headers(100, 0, 2000, retry_after="30"), 30.0),
        (rate_headers(reset_ms=2000, retry_after="30"), 30.0),
        (rate_headers(100, 0, 8000, retry_after="3"), 8.0),
        (rate_headers(retry_after="7"), 7.0),
        (rate_headers(100, 0, 0, retry_after="1.5"), 1.5),
    ],
)
def test_429_closes_the_gate_until_reset_or_retry_after(headers: dict[str, str], not_before: float) -> None:
    """A 429 closes the gate until the later of x-ratelimit-reset and Retry-After."""
    model = make_model()
    model.on_send(99.95)
    model.on_response(100.0, 429, headers)

    assert model.earliest_send(100.0) >= 100.0 + not_before
    assert model.earliest_send(100.0 + not_before - 0.001) >= 100.0 + not_before


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        (rate_headers(reset_ms=5000), 5.0),
        (rate_headers(reset_ms=2000, retry_after="30"), 30.0),
        (rate_headers(retry_after="7"), 7.0),
        # With the bucket headers present the model also knows remaining is 0: same wait expected.
        (rate_headers(100, 0, 5000), 5.0),
        (rate_headers(100, 0, 1000), 1.0),
        (rate_headers(10_000, 0, 3_600_000), 3600.0),
    ],
)
def test_429_reopens_soon_after_the_wait(headers: dict[str, str], wait: float) -> None:
    """After a 429 the next call may go by the server's wait plus the gate jitter (10% + 50 ms), not twice it."""
    model = make_model(max_wait_secs=3600.0)
    model.on_send(99.95)
    model.on_response(100.0, 429, headers)

    assert 100.0 + wait <= model.earliest_send(100.0) <= 100.0 + 1.1 * wait + 0.15


@pytest.mark.parametrize(
    ("max_backoff_secs", "waits"),
    [
        (60.0, [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]),
        (10.0, [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]),
        (1.0, [1.0, 1.0, 1.0]),
    ],
)
def test_429_without_hints_backs_off_exponentially(max_backoff_secs: float, waits: list[float]) -> None:
    """429s without any header close the gate for 1, 2, 4... seconds, capped at max_backoff (plus jitter)."""
    model = make_model(max_backoff_secs=max_backoff_secs)
    now = 0.0
    for wait in waits:
        model.on_send(now)
        now += LATENCY
        model.on_response(now, 429, {})
        assert now + wait <= model.gate_until <= now + 1.1 * wait + 0.05
        assert model.earliest_send(now) >= now + wait
        now = model.earliest_send(now)


def test_hours_of_hintless_429s_keep_the_backoff_at_its_cap() -> None:
    """The 429 counter only resets on a good answer: after 2,000 in a row the wait is still the cap
    (2.0 ** 1024 would overflow a float and kill the poller)."""
    model = make_model(max_backoff_secs=60.0)
    now = 0.0
    for _ in range(2000):
        model.on_send(now)
        now += LATENCY
        model.on_response(now, 429, {})
        now = model.earliest_send(now)
    assert model.throttled_in_a_row == 2000
    model.on_send(now)
    model.on_response(now + LATENCY, 429, {})
    assert now + LATENCY + 60.0 <= model.gate_until <= now + LATENCY + 66.05


@pytest.mark.parametrize(
    ("headers", "in_a_row", "wait"),
    [
        (RateHeaders(None, None, 2.5, None), 1, 2.5),
        (RateHeaders(None, None, 2.5, 7.0), 9, 7.0),
        (RateHeaders(None, None, None, None), 1, 1.0),
        (RateHeaders(None, None, None, None), 4, 8.0),
        (RateHeaders(None, None, None, None), 1025, 60.0),
        (RateHeaders(None, None, None, None), 10**6, 60.0),
    ],
)
def test_throttle_wait_takes_the_larger_hint_else_doubles_to_the_cap(
    headers: RateHeaders, in_a_row: int, wait: float
) -> None:
    assert throttle_wait_secs(headers, in_a_row, 60.0) == wait


def test_success_restarts_the_exponential_backoff() -> None:
    """A good answer between hint-less 429s starts the backoff over at 1 s."""
    model = make_model()
    for status in (429, 429, 429, 200):
        model.on_send(0.0)
        model.on_response(0.0, status, {})
    model.on_send(0.0)
    model.on_response(500.0, 429, {})

    assert 501.0 <= model.gate_until <= 501.0 + 0.1 + 0.05


# --- AIMD ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("statuses", "scale"),
    [
        ([200], 1.0),
        ([429], 0.5),
        ([429, 429], 0.25),
        ([500], 0.75),
        ([503], 0.75),
        ([None], 0.75),
        ([None, 502], 0.5625),
        ([429, 200], 0.6),
        ([429, 200, 200, 200, 200, 200], 1.0),
        ([503, 200, 200, 200], 1.0),
        ([429] * 10, 0.05),
        ([None] * 20, 0.05),
        ([429] * 10 + [200, 200], 0.25),
        ([404], 1.0),
    ],
)
def test_scale_follows_aimd(statuses: list[int | None], scale: float) -> None:
    """429 halves the scale, 5xx and no answer cut it by a quarter, good answers add 0.1 up to 1.0."""
    model = make_model()
    for i, status in enumerate(statuses):
        model.on_send(float(i))
        model.on_response(float(i) + LATENCY, status, {})

    assert model.scale == pytest.approx(scale)
    assert model.in_flight == 0


@pytest.mark.parametrize(
    ("failures", "factor"),
    [
        ([503], 1 / 0.75),
        ([None], 1 / 0.75),
        ([500, None], 1 / 0.5625),
    ],
)
def test_reduced_scale_widens_spacing(failures: list[int | None], factor: float) -> None:
    """The same bucket headers give spacing wider by 1/scale once failures have cut the scale."""
    headers = rate_headers(100, 10, 10_000)  # spread phase: (10.1 s) / (10 + 1) apart at full scale
    healthy, strained = make_model(max_wait_secs=5.0), make_model(max_wait_secs=5.0)
    healthy.on_send(0.0)
    healthy.on_response(0.1, 200, headers)
    for status in failures[:-1]:
        strained.on_response(0.0, status, {})
    strained.on_send(0.0)
    strained.on_response(0.1, failures[-1], headers)

    healthy_gap = healthy.earliest_send(0.1)
    strained_gap = strained.earliest_send(0.1)

    assert 10.1 / 11 <= healthy_gap <= 1.05 * 10.1 / 11
    assert strained_gap == pytest.approx(healthy_gap * factor)


def test_reduced_scale_slows_the_burst_until_good_answers_restore_it() -> None:
    """After four 5xx (scale ~0.32) a fresh burst goes steady/scale apart, tightening as scale recovers."""
    healthy, strained = make_model(), make_model()
    for _ in range(4):
        strained.on_response(0.0, 503, {})
    healthy_log = drive(healthy, FixedWindowServer(100, 10.0), calls=10)
    strained_log = drive(strained, FixedWindowServer(100, 10.0), calls=10)
    strained_gaps = gaps(strained_log)

    assert gaps(healthy_log) == pytest.approx([LATENCY] * 9)
    # steady spacing 10 s / 100 = 0.1 s, divided by the scale 0.42, 0.52, ... after each good answer
    assert 0.1 / 0.42 <= strained_gaps[0] <= 0.1 / 0.41 * 1.05
    assert all(later < earlier for earlier, later in itertools.pairwise(strained_gaps[:6]))
    assert strained_gaps[-1] == pytest.approx(LATENCY)
    assert strained.scale == healthy.scale == 1.0


# --- ceiling ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("rpm", [6000.0, 600.0, 120.0, 60.0])
def test_requests_per_minute_is_a_ceiling_headers_cannot_lift(rpm: float) -> None:
    """Headers claiming a huge budget never bring calls closer than 60/rpm seconds."""
    huge = rate_headers(1_000_000, 1_000_000, 1000)
    log = drive(make_model(max_requests_per_minute=rpm), lambda t: (200, dict(huge)), calls=50, latency=0.0)
    spacing = 60.0 / rpm

    assert min(gaps(log)) >= spacing
    assert max(gaps(log)) <= spacing * 1.05 + 1e-9


# --- garbled headers -------------------------------------------------------------------------------

NOTHING = RateHeaders(limit=None, remaining=None, reset_secs=None, retry_after_secs=None)


@pytest.mark.parametrize(
    ("headers", "parsed"),
    [
        ({}, NOTHING),
        (rate_headers(retry_after=""), NOTHING),
        (
            {"x-ratelimit-limit": "abc", "x-ratelimit-remaining": "", "x-ratelimit-reset": "soon", "retry-after": "x"},
            NOTHING,
        ),
        (
            {"x-ratelimit-limit": "-5", "x-ratelimit-remaining": "-1", "x-ratelimit-reset": "-1000"},
            NOTHING,
        ),
        (
            {"x-ratelimit-limit": "nan", "x-ratelimit-remaining": "NaN", "x-ratelimit-reset": "nan"},
            NOTHING,
        ),
        (
            {"x-ratelimit-limit": "inf", "x-ratelimit-remaining": "1e400", "x-ratelimit-reset": "-inf"},
            NOTHING,
        ),
        (
            {"x-ratelimit-limit": "0", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "0"},
            RateHeaders(limit=None, remaining=0, reset_secs=0.0, retry_after_secs=None),
        ),
        (
            {"x-ratelimit-limit": " 100 ", "x-ratelimit-remaining": "12.7", "x-ratelimit-reset": "1500"},
            RateHeaders(limit=100, remaining=12, reset_secs=1.5, retry_after_secs=None),
        ),
        (rate_headers(retry_after="Wed, 21 Oct 2015 07:28:00 GMT"), NOTHING),
        (
            rate_headers(retry_after="2.5"),
            RateHeaders(limit=None, remaining=None, reset_secs=None, retry_after_secs=2.5),
        ),
    ],
)
def test_rate_headers_parse_tolerates_garbage(headers: dict[str, str], parsed: RateHeaders) -> None:
    """Header values are strings: garbage, negatives, NaN, infinities and empties read as absent."""
    assert RateHeaders.parse(headers) == parsed


GARBLED = [
    {"x-ratelimit-limit": "abc", "x-ratelimit-remaining": "", "x-ratelimit-reset": "soon"},
    {"x-ratelimit-limit": "-5", "x-ratelimit-remaining": "-1", "x-ratelimit-reset": "-1000"},
    {"x-ratelimit-limit": "nan", "x-ratelimit-remaining": "nan", "x-ratelimit-reset": "nan", "retry-after": "nan"},
    {"x-ratelimit-limit": "", "x-ratelimit-remaining": "", "x-ratelimit-reset": "", "retry-after": ""},
    {"x-ratelimit-reset": "1e400", "retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"},
    {},
]


@pytest.mark.parametrize("headers", GARBLED)
def test_garbled_headers_fall_back_to_the_default_interval(headers: dict[str, str]) -> None:
    """Good answers with unusable headers: calls go about fallback_interval (0.2 s) apart."""
    log = drive(make_model(), lambda t: (200, dict(headers)), calls=20)

    assert all(0.2 <= gap <= 0.2 * 1.05 + 1e-9 for gap in gaps(log))


@pytest.mark.parametrize("headers", GARBLED)
def test_garbled_headers_on_429_fall_back_to_exponential_backoff(headers: dict[str, str]) -> None:
    """A 429 with unusable headers pauses like a 429 without headers: 1 s, then 2 s."""
    model = make_model()
    model.on_send(0.0)
    model.on_response(0.0, 429, headers)
    first = model.earliest_send(0.0)
    model.on_send(first)
    model.on_response(first, 429, headers)
    second = model.earliest_send(first)

    assert 1.0 <= first <= 1.15
    assert first + 2.0 <= second <= first + 2.25


# --- adapting to the server -------------------------------------------------------------------------


@dataclass
class HalvingServer:
    """A fixed-window server whose limit drops to half at ``at`` seconds."""

    bucket: FixedWindowServer
    at: float
    halved: bool = False

    def __call__(self, t: float) -> Answer:
        if t >= self.at and not self.halved:
            self.bucket.limit, self.halved = self.bucket.limit // 2, True
        return self.bucket(t)


@pytest.mark.parametrize(
    ("limit", "window_secs", "at"),
    [
        (100, 10.0, 1.0),
        (100, 10.0, 5.0),
        (100, 10.0, 25.0),
        (10, 1.0, 3.3),
        (60, 60.0, 90.0),
    ],
)
def test_server_halving_its_limit_costs_at_most_a_few_429s(limit: int, window_secs: float, at: float) -> None:
    """The limit halves mid-run: at most two 429s, none after two windows, and calls keep flowing."""
    server = HalvingServer(FixedWindowServer(limit, window_secs), at)
    log = drive(make_model(), server, until=at + 10 * window_secs)

    assert len(throttled(log)) <= 2
    assert [call for call in throttled(log) if call.answered > at + 2 * window_secs] == []
    assert sum(1 for call in log if call.sent > at + 2 * window_secs and call.status == 200) >= 6 * (limit // 2)


STORM_HEADERS = [
    rate_headers(reset_ms=1000),
    rate_headers(100, 0, 1000),
    rate_headers(reset_ms=1000, retry_after="abc"),
]


def storm_server(headers: dict[str, str], until: float) -> Server:
    """429 for every call before ``until`` (with ``headers``), then a healthy 100-per-10-s bucket."""
    bucket = FixedWindowServer(100, 10.0)

    def answer(t: float) -> Answer:
        if t < until:
            return 429, dict(headers)
        return bucket(t)

    return answer


@pytest.mark.parametrize("headers", STORM_HEADERS)
def test_429_storm_never_sends_before_the_reset(headers: dict[str, str]) -> None:
    """60 s of 429s with a 1000 ms reset: every next call waits out the reset, and paging resumes after."""
    log = drive(make_model(), storm_server(headers, 60.0), until=120.0)

    for throttled_call, next_call in itertools.pairwise(log):
        if throttled_call.status == 429:
            assert next_call.sent >= throttled_call.answered + 1.0
    assert sum(1 for call in log if call.status == 200) >= 100
    assert [call for call in throttled(log) if call.answered >= 70.0] == []


@pytest.mark.parametrize("headers", STORM_HEADERS)
def test_429_storm_recovery_is_prompt(headers: dict[str, str]) -> None:
    """Once a 429 storm (1000 ms resets) ends, the first good answer comes within 5 s."""
    log = drive(make_model(), storm_server(headers, 60.0), until=120.0)
    first_good = next(call for call in log if call.status == 200)

    assert first_good.answered <= 65.0


# --- bookkeeping -----------------------------------------------------------------------------------


@pytest.mark.parametrize("now", [0.0, 1234.5])
def test_first_call_goes_at_once_and_the_next_after_the_fallback(now: float) -> None:
    """Nothing known yet: the first call may go now, the second fallback_interval (0.2 s) later."""
    model = make_model()
    assert model.earliest_send(now) == now

    model.on_send(now)
    model.on_response(now + LATENCY, 200, {})

    assert now + 0.2 <= model.earliest_send(now + LATENCY) <= now + 0.2 * 1.05


@pytest.mark.parametrize(
    ("before", "sends", "abandons", "in_flight", "scale"),
    [
        ([], 1, 1, 0, 1.0),
        ([], 3, 1, 2, 1.0),
        ([], 1, 3, 0, 1.0),
        ([503], 2, 2, 0, 0.75),
        ([429, 200], 1, 1, 0, 0.6),
        ([429], 2, 1, 1, 0.5),
    ],
)
def test_on_abandon_frees_the_slot_without_a_verdict(
    before: list[int | None], sends: int, abandons: int, in_flight: int, scale: float
) -> None:
    """on_abandon lowers in_flight (never below 0) and leaves scale and the 429 streak alone."""
    model = make_model()
    for status in before:
        model.on_send(0.0)
        model.on_response(0.0, status, {})
    streak = model.throttled_in_a_row
    for _ in range(sends):
        model.on_send(1.0)
    for _ in range(abandons):
        model.on_abandon()

    assert model.in_flight == in_flight
    assert model.scale == pytest.approx(scale)
    assert model.throttled_in_a_row == streak


def test_abandoned_calls_give_their_budget_back() -> None:
    """Calls in flight count against what is left; abandoning them restores the back-to-back pace."""
    model = make_model(max_wait_secs=5.0)
    model.on_send(0.0)
    model.on_response(0.1, 200, rate_headers(100, 53, 10_000))  # 53 left: burst while over 50 available
    model.on_send(0.1)
    model.on_send(0.1)
    model.on_send(0.1)  # 50 available: spread phase
    spread = model.earliest_send(0.1)
    model.on_abandon()  # 51 available: burst again

    assert spread > 0.1 + 0.15
    assert model.earliest_send(0.1) == 0.1
