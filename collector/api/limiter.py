"""Adaptive pacing per (credentials, endpoint): pure logic on an injected clock.

Mimecast answers every call with ``x-ratelimit-limit`` (bucket size), ``x-ratelimit-remaining`` and
``x-ratelimit-reset`` (milliseconds until calls come back). :class:`PacingModel` turns that into
"the next call may go at time t":

* while plenty of the bucket is left (more than ``burst_fraction`` of it), calls go back to back,
  so a backlog starts draining at once;
* below that, the calls left are spread evenly until the reset (about reset/remaining apart), so
  the budget lasts until it refills and no wait for an empty bucket exceeds ``max_wait_secs`` (which
  would cut it short and cost a 429); once the reset is at most ``max_wait_secs`` away, that risk is
  gone and the rest go back to back too: spreading spends the same budget, only later, and leaves
  the last period of a drain half idle (with short periods, the whole bucket goes at once);
* with nothing left, nothing goes until the reset has passed, plus a guard: a few milliseconds
  when the server said when (its reset counts from before our answer arrived, so it errs late), the
  jitter of a 429 gate when the model counts the bucket itself (its period start is our send time,
  earlier than the server's by the trip there);
* a 429 closes the gate until ``x-ratelimit-reset`` or ``Retry-After`` (whichever is later), or an
  exponential pause when neither header came, and halves the pace; 5xx and transport failures
  ("strain") cut it by a quarter; every good answer gives a tenth back (AIMD);
* ``max_requests_per_minute`` is a ceiling no header can lift;
* no wait a server asks for lasts longer than ``max_wait_secs``: a reset of ten years is a bug or
  an attack, and waiting it out would stall the stream for good. The model says when it capped
  (:class:`WaitCap`) and what holds calls back now (:meth:`PacingModel.server_wait`); callers log it.

Mimecast is reported to send no ``x-ratelimit-*`` headers at all until a call is throttled. Then the
429 is the only lesson: it gives the bucket size and when it refills, and from then on the model
counts calls itself (``remaining`` less one per answer, back to ``limit`` every refill period) so a
backlog is not throttled once per period. Headers on ordinary answers, when they come, win.

The model never sleeps and never reads a clock: callers pass ``now``. :mod:`collector.api.pacer` runs it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass

from collector.timeutil import doubling_secs

MIN_SCALE = 0.05
STRAIN_FACTOR = 0.75
THROTTLE_FACTOR = 0.5
RECOVERY_STEP = 0.1
MAX_JITTER_FRACTION = 0.05
GATE_JITTER_SECS = 0.05
# After a refill the server said the time of: its x-ratelimit-reset is whole milliseconds (maybe cut
# down), counted before the answer reached us, so a few milliseconds cover the rounding.
HEADER_REFILL_GUARD_SECS = 0.005
DEFAULT_MAX_WAIT_SECS = 300.0

# Why the server holds calls back (a metric label, so a short fixed set).
RATE_LIMITED = "rate_limited"  # a 429 closed the gate
BUCKET_EMPTY = "bucket_empty"  # nothing left in the bucket until it refills
PACED = "paced"  # what is left is spread until the reset
WAIT_TEXT = {
    RATE_LIMITED: "rate limited (HTTP 429)",
    BUCKET_EMPTY: "rate-limit budget used up until the bucket refills",
    PACED: "spreading the rest of the rate-limit budget until the bucket refills",
}


@dataclass(frozen=True)
class RateHeaders:
    limit: int | None
    remaining: int | None
    reset_secs: float | None
    retry_after_secs: float | None

    @classmethod
    def parse(cls, headers: Mapping[str, str]) -> RateHeaders:
        """Read the rate-limit headers, tolerating absent or garbled values (they are strings)."""

        def number(name: str) -> float | None:
            raw = headers.get(name)
            if raw is None:
                return None
            try:
                value = float(str(raw).strip())
            except ValueError:
                return None
            return value if 0 <= value < float("inf") else None  # also rejects NaN

        limit, remaining, reset_ms = (number(f"x-ratelimit-{k}") for k in ("limit", "remaining", "reset"))
        return cls(
            limit=int(limit) if limit is not None and limit >= 1 else None,
            remaining=int(remaining) if remaining is not None else None,
            reset_secs=reset_ms / 1000.0 if reset_ms is not None else None,
            retry_after_secs=number("retry-after"),
        )


@dataclass(frozen=True)
class WaitCap:
    """A server asked for a longer wait than ``max_wait_secs``: what it asked for and what is used."""

    header: str  # "x-ratelimit-reset" or "retry-after"
    asked_secs: float
    used_secs: float


@dataclass(frozen=True)
class ServerWait:
    """The server's answers hold calls back until ``until`` (the model's clock), for ``reason``."""

    until: float
    reason: str  # RATE_LIMITED, BUCKET_EMPTY or PACED
    cap: WaitCap | None

    def describe(self) -> str:
        text = WAIT_TEXT[self.reason]
        if self.cap is not None:
            text += (
                f"; the server asked to wait {self.cap.asked_secs:.0f} s ({self.cap.header}), "
                f"capped at max_wait_secs = {self.cap.used_secs:g}"
            )
        return text


def throttle_hint(headers: RateHeaders) -> tuple[float, str] | None:
    """The wait a 429 asks for, the larger of the reset and Retry-After, and the header that said it."""
    hints = [
        (secs, name)
        for secs, name in ((headers.reset_secs, "x-ratelimit-reset"), (headers.retry_after_secs, "retry-after"))
        if secs is not None
    ]
    return max(hints) if hints else None


def throttle_wait_secs(
    headers: RateHeaders, in_a_row: int, max_secs: float, max_wait_secs: float = DEFAULT_MAX_WAIT_SECS
) -> float:
    """How long a 429 shuts the gate: the larger of the server's reset and Retry-After, at most
    ``max_wait_secs``, or without either, 1 s doubled for each 429 in a row, at most ``max_secs``."""
    hint = throttle_hint(headers)
    return min(hint[0], max_wait_secs) if hint else doubling_secs(1.0, in_a_row, max_secs)


class PacingModel:
    """When may the next call to one endpoint go? Shared by every stream using the same bucket."""

    def __init__(
        self,
        *,
        max_requests_per_minute: float | None = None,
        burst_fraction: float = 0.5,
        fallback_interval_secs: float = 0.2,
        max_backoff_secs: float = 60.0,
        max_wait_secs: float = DEFAULT_MAX_WAIT_SECS,
        rng: random.Random | None = None,
    ) -> None:
        self.ceiling_spacing = 60.0 / max_requests_per_minute if max_requests_per_minute else 0.0
        self.burst_fraction = burst_fraction
        self.fallback_interval = fallback_interval_secs
        self.max_backoff = max_backoff_secs
        self.max_wait = max_wait_secs
        self._rng = rng or random.Random()
        self.limit: int | None = None
        self.remaining: int | None = None
        self.reset_at: float | None = None  # when the bucket refills, as the server said (never capped)
        self.window_secs: float | None = None  # the bucket's refill period, as far as it is known
        self.gate_until = 0.0
        self.scale = 1.0
        self.in_flight = 0
        self.last_send: float | None = None
        self.throttled_in_a_row = 0
        self.counting = False  # the bucket is counted here: answers other than 429 carry no headers
        self.cap: WaitCap | None = None  # how the last answer's wait was shortened, if it was
        self._jitter = 1.0
        self._remaining_at = 0.0  # when `remaining` was last set: a capped refill wait runs from here
        self._headers_on_success = False  # an answer other than a 429 carried the bucket headers
        self._period_start: float | None = None  # first call of the refill period being counted
        self._period_calls = 0  # answers other than 429 since then
        self._fixed_beat = False  # refill periods follow a fixed beat, not the first call after a refill

    # --- decisions ------------------------------------------------------------------------------

    def earliest_send(self, now: float) -> float:
        """The earliest time the next call may be sent (may be in the past: send now)."""
        if self.last_send is None:
            return max(self.gate_until, now)
        at = max(self.gate_until, self.last_send + self._spacing(now) * self._jitter)
        refill = self._refill_at(now)
        return at if refill is None else max(at, refill)

    def server_wait(self, now: float) -> ServerWait | None:
        """What the server's answers hold calls back for at ``now``, if anything (for status and metrics)."""
        if self.gate_until > now:
            return ServerWait(self.gate_until, RATE_LIMITED, self.cap)
        refill = self._refill_at(now)
        if refill is not None:
            return ServerWait(refill, BUCKET_EMPTY, self.cap)
        if self.last_send is not None and None not in (self.limit, self.remaining, self.reset_at):
            paced_until = self.last_send + min(self._header_spacing(now), self.max_wait)
            if paced_until > now:
                return ServerWait(paced_until, PACED, self.cap)
        return None

    def _refill_at(self, now: float) -> float | None:
        """With the bucket empty, the moment calls come back; the pace factor does not stretch it."""
        if self.remaining is None or self.reset_at is None or self.remaining - self.in_flight > 0:
            return None
        guard = GATE_JITTER_SECS if self.counting else HEADER_REFILL_GUARD_SECS
        at = min(self.reset_at, self._remaining_at + self.max_wait) + guard
        return at if now < at else None

    def _spacing(self, now: float) -> float:
        spacing = self._header_spacing(now)
        if self.scale < 1.0:
            spacing = max(spacing, self.steady_spacing()) / self.scale
        return max(min(spacing, self.max_wait), self.ceiling_spacing)

    def _header_spacing(self, now: float) -> float:
        if self.limit is None or self.remaining is None or self.reset_at is None:
            return self.fallback_interval
        assert self.last_send is not None
        if now >= self.reset_at:  # the bucket has refilled since the last answer we saw
            available = self.limit - self.in_flight
            if self.window_secs is not None and self.window_secs <= self.max_wait:
                return 0.0  # a new period that ends within max_wait: spend it at once, as below
            return 0.0 if available > self.limit * self.burst_fraction else self.steady_spacing()
        available = self.remaining - self.in_flight
        if available <= 0 or available > self.limit * self.burst_fraction:
            return 0.0  # empty: _refill_at decides; plenty left: no need to wait
        if self.reset_at - now <= self.max_wait:
            # Emptying the bucket now costs a wait for the refill that max_wait does not cut short:
            # spreading would spend the same calls later, and leave the last period of a drain idle.
            return 0.0
        # Spread what is left so the last call still lands before the reset: A calls, A+1 gaps.
        return max(0.0, self.reset_at - self.last_send) / (available + 1)

    def steady_spacing(self) -> float:
        """Spacing that spends one full bucket per refill period: the highest sustainable pace."""
        if self.limit and self.window_secs:
            return self.window_secs / self.limit
        return self.fallback_interval

    # --- what happened ----------------------------------------------------------------------------

    def on_send(self, now: float) -> None:
        self.last_send = now
        self.in_flight += 1
        self._jitter = 1.0 + self._rng.uniform(0.0, MAX_JITTER_FRACTION)
        if self._period_start is None:
            self._period_start = now

    def on_abandon(self) -> None:
        """A granted call was never sent."""
        self.in_flight = max(0, self.in_flight - 1)

    def on_response(self, now: float, status: int | None, headers: Mapping[str, str]) -> WaitCap | None:
        """Record one answer; ``status`` None means no answer (timeout, reset connection).

        Returns how the server's wait was capped, if it was (the caller logs it)."""
        self.in_flight = max(0, self.in_flight - 1)
        self.cap = None
        parsed = RateHeaders.parse(headers)
        if parsed.limit is not None:
            self.limit = parsed.limit
        if status == 429:
            self._throttled(now, parsed)
            return self.cap
        if parsed.remaining is not None and parsed.reset_secs is not None:
            self._headers_on_success, self.counting = True, False
            self._bucket_from_headers(now, parsed.remaining, parsed.reset_secs)
        elif self.counting:
            self._count_answer(now)
        self._period_calls += 1
        if status is None or status >= 500:
            self.scale = max(MIN_SCALE, self.scale * STRAIN_FACTOR)
        else:
            self.throttled_in_a_row = 0
            self.scale = min(1.0, self.scale + RECOVERY_STEP)
        return self.cap

    def _bucket_from_headers(self, now: float, remaining: int, reset_secs: float) -> None:
        self.remaining, self._remaining_at = remaining, now
        self.reset_at = now + reset_secs
        self.window_secs = max(self.window_secs or 0.0, reset_secs)
        if remaining == 0 and reset_secs > self.max_wait:
            self.cap = WaitCap("x-ratelimit-reset", reset_secs, self.max_wait)

    def _count_answer(self, now: float) -> None:
        """No headers: take one call off the bucket, refilling it first if its period has passed."""
        if self.limit is None or self.remaining is None or self.reset_at is None:
            return
        if now >= self.reset_at and self.window_secs:
            if self._fixed_beat:
                start = self.reset_at + math.floor((now - self.reset_at) / self.window_secs) * self.window_secs
            else:
                # Until a 429 says otherwise, assume a period starts with the first call after a refill
                # (the simulator's buckets do): counting from the old reset would run ahead of it.
                start = self.last_send if self.last_send is not None and self.last_send >= self.reset_at else now
            self.reset_at = start + self.window_secs
            self.remaining = self.limit
            self._period_start, self._period_calls = start, 0
        self.remaining, self._remaining_at = max(0, self.remaining - 1), now

    def _throttled(self, now: float, parsed: RateHeaders) -> None:
        self.throttled_in_a_row += 1
        self.scale = max(MIN_SCALE, self.scale * THROTTLE_FACTOR)
        hint = throttle_hint(parsed)
        if hint is None:
            asked = wait = doubling_secs(1.0, self.throttled_in_a_row, self.max_backoff)
        else:
            asked, header = hint
            wait = min(asked, self.max_wait)
            if asked > self.max_wait:
                self.cap = WaitCap(header, asked, self.max_wait)
        if parsed.reset_secs is not None:
            self._learn_period(now, parsed.reset_secs)
        self.remaining, self._remaining_at = 0, now
        self.reset_at = now + asked
        self._period_start, self._period_calls = None, 0
        jitter = self._rng.uniform(0.0, 0.1 * wait + GATE_JITTER_SECS)
        self.gate_until = max(self.gate_until, now + wait + jitter)

    def _learn_period(self, now: float, reset_secs: float) -> None:
        """What a 429's reset says about the refill period; without headers elsewhere, start counting."""
        period = max(self.window_secs or 0.0, reset_secs)
        if self.counting and self.reset_at is not None and now + reset_secs < self.reset_at - GATE_JITTER_SECS:
            # The server's period ends before the one counted from its first call: its periods keep a
            # fixed beat, so count them from its reset on, whenever the first call comes.
            self._fixed_beat = True
        if not self._headers_on_success and self.limit is not None:
            self.counting = True
            # Exactly `limit` calls answered since this period's first call, and the bucket is full:
            # that first call is in the server's window, so the window reaches back at least as far.
            recent = self.reset_at is None or now <= self.reset_at + period
            if self._period_start is not None and self._period_calls == self.limit and recent:
                period = max(period, now + reset_secs - self._period_start)
        self.window_secs = period
