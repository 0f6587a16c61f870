"""Adaptive pacing per (credentials, endpoint): pure logic on an injected clock.

Mimecast answers every call with ``x-ratelimit-limit`` (bucket size), ``x-ratelimit-remaining`` and
``x-ratelimit-reset`` (milliseconds until calls come back). :class:`PacingModel` turns that into
"the next call may go at time t":

* while plenty of the bucket is left (more than ``burst_fraction`` of it), calls go back to back,
  so a backlog starts draining at once;
* below that, the calls left are spread evenly until the reset (about reset/remaining apart), so
  the budget lasts exactly until it refills and no call is throttled;
* with nothing left, nothing goes until the reset has passed, plus jitter;
* a 429 closes the gate until ``x-ratelimit-reset`` or ``Retry-After`` (whichever is later), or an
  exponential pause when neither header came, and halves the pace; 5xx and transport failures
  ("strain") cut it by a quarter; every good answer gives a tenth back (AIMD);
* ``max_requests_per_minute`` is a ceiling no header can lift.

The model never sleeps and never reads a clock: callers pass ``now``. :mod:`collector.pacer` runs it.
"""

from __future__ import annotations

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


def throttle_wait_secs(headers: RateHeaders, in_a_row: int, max_secs: float) -> float:
    """How long a 429 shuts the gate: the larger of the server's reset and Retry-After, or without
    either, 1 s doubled for each 429 in a row, at most ``max_secs``."""
    hints = [w for w in (headers.reset_secs, headers.retry_after_secs) if w is not None]
    return max(hints) if hints else doubling_secs(1.0, in_a_row, max_secs)


class PacingModel:
    """When may the next call to one endpoint go? Shared by every stream using the same bucket."""

    def __init__(
        self,
        *,
        max_requests_per_minute: float | None = None,
        burst_fraction: float = 0.5,
        fallback_interval_secs: float = 0.2,
        max_backoff_secs: float = 60.0,
        rng: random.Random | None = None,
    ) -> None:
        self.ceiling_spacing = 60.0 / max_requests_per_minute if max_requests_per_minute else 0.0
        self.burst_fraction = burst_fraction
        self.fallback_interval = fallback_interval_secs
        self.max_backoff = max_backoff_secs
        self._rng = rng or random.Random()
        self.limit: int | None = None
        self.remaining: int | None = None
        self.reset_at: float | None = None
        self.window_secs: float | None = None  # longest reset seen: the bucket's refill period
        self.gate_until = 0.0
        self.scale = 1.0
        self.in_flight = 0
        self.last_send: float | None = None
        self.throttled_in_a_row = 0
        self._jitter = 1.0

    # --- decisions ------------------------------------------------------------------------------

    def earliest_send(self, now: float) -> float:
        """The earliest time the next call may be sent (may be in the past: send now)."""
        if self.last_send is None:
            return max(self.gate_until, now)
        at = max(self.gate_until, self.last_send + self._spacing(now) * self._jitter)
        refill = self._refill_at(now)
        return at if refill is None else max(at, refill)

    def _refill_at(self, now: float) -> float | None:
        """With the bucket empty, the moment calls come back; the pace factor does not stretch it."""
        if self.remaining is None or self.reset_at is None or now >= self.reset_at + GATE_JITTER_SECS:
            return None
        if self.remaining - self.in_flight > 0:
            return None
        return self.reset_at + GATE_JITTER_SECS

    def _spacing(self, now: float) -> float:
        spacing = self._header_spacing(now)
        if self.scale < 1.0:
            spacing = max(spacing, self.steady_spacing()) / self.scale
        return max(spacing, self.ceiling_spacing)

    def _header_spacing(self, now: float) -> float:
        if self.limit is None or self.remaining is None or self.reset_at is None:
            return self.fallback_interval
        assert self.last_send is not None
        if now >= self.reset_at:  # the bucket has refilled since the last answer we saw
            available = self.limit - self.in_flight
            return 0.0 if available > self.limit * self.burst_fraction else self.steady_spacing()
        available = self.remaining - self.in_flight
        if available <= 0 or available > self.limit * self.burst_fraction:
            return 0.0  # empty: _refill_at decides; plenty left: no need to wait
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

    def on_abandon(self) -> None:
        """A granted call was never sent."""
        self.in_flight = max(0, self.in_flight - 1)

    def on_response(self, now: float, status: int | None, headers: Mapping[str, str]) -> None:
        """Record one answer; ``status`` None means no answer (timeout, reset connection)."""
        self.in_flight = max(0, self.in_flight - 1)
        parsed = RateHeaders.parse(headers)
        if parsed.limit is not None:
            self.limit = parsed.limit
        if parsed.remaining is not None and parsed.reset_secs is not None:
            self.remaining = parsed.remaining
            self.reset_at = now + parsed.reset_secs
            self.window_secs = max(self.window_secs or 0.0, parsed.reset_secs)
        if status == 429:
            self._throttled(now, parsed)
        elif status is None or status >= 500:
            self.scale = max(MIN_SCALE, self.scale * STRAIN_FACTOR)
        else:
            self.throttled_in_a_row = 0
            self.scale = min(1.0, self.scale + RECOVERY_STEP)

    def _throttled(self, now: float, parsed: RateHeaders) -> None:
        self.throttled_in_a_row += 1
        self.scale = max(MIN_SCALE, self.scale * THROTTLE_FACTOR)
        self.remaining = 0
        wait = throttle_wait_secs(parsed, self.throttled_in_a_row, self.max_backoff)
        self.reset_at = now + wait
        jitter = self._rng.uniform(0.0, 0.1 * wait + GATE_JITTER_SECS)
        self.gate_until = max(self.gate_until, now + wait + jitter)
