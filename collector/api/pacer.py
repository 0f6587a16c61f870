"""Runs a :class:`~collector.api.limiter.PacingModel` for concurrent tasks, fairly.

Streams that share a bucket (same credentials, same endpoint) take turns: among the waiters, the
stream served longest ago goes next, so a busy backfill cannot starve a quiet stream.

It also tells its owner what the model only knows: ``on_cap`` hears every server wait the model
capped, and ``on_wait`` hears when a stream starts waiting on the server (a capped wait, or one of
at least :data:`WAIT_SHOWN_SECS`) and when that wait is over, so status and metrics can show it.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio

from collector.api.limiter import PacingModel, ServerWait, WaitCap

WAIT_SHOWN_SECS = 10.0  # shorter uncapped waits are ordinary pacing, not worth a status change
#: (stream, the wait or None when it is over, the pacer's clock when it was seen)
WaitListener = Callable[[str, ServerWait | None, float], Awaitable[None]]


@dataclass(eq=False)
class _Waiter:
    arrival: int
    stream: str


class Ticket:
    """One granted call. Report its answer with :meth:`done`; an unreported ticket counts as a failure."""

    def __init__(self, pacer: Pacer) -> None:
        self._pacer = pacer
        self.reported = False

    def done(self, status: int | None, headers: Mapping[str, str]) -> None:
        if not self.reported:
            self.reported = True
            cap = self._pacer.model.on_response(self._pacer.clock(), status, headers)
            if cap is not None and self._pacer.on_cap is not None:
                self._pacer.on_cap(cap)
            self._pacer.wake()

    def abandon(self) -> None:
        """Nothing was sent (e.g. the credential could not be obtained): free the slot, no verdict."""
        if not self.reported:
            self.reported = True
            self._pacer.model.on_abandon()
            self._pacer.wake()


class Pacer:
    def __init__(
        self,
        model: PacingModel,
        *,
        max_in_flight: int = 1,
        clock: Callable[[], float] = time.monotonic,
        on_cap: Callable[[WaitCap], None] | None = None,
        on_wait: WaitListener | None = None,
    ) -> None:
        self.model = model
        self.max_in_flight = max_in_flight
        self.clock = clock
        self.on_cap = on_cap
        self.on_wait = on_wait
        self._waiters: list[_Waiter] = []
        self._last_served: dict[str, float] = {}
        self._arrivals = itertools.count()
        self._changed = anyio.Event()
        self.granted = 0

    def wake(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    @asynccontextmanager
    async def slot(self, stream: str) -> AsyncIterator[Ticket]:
        """Wait for this stream's turn and the model's permission, then hold one in-flight call."""
        await self._acquire(stream)
        ticket = Ticket(self)
        try:
            yield ticket
        finally:
            ticket.done(None, {})

    async def _acquire(self, stream: str) -> None:
        me = _Waiter(next(self._arrivals), stream)
        self._waiters.append(me)
        shown: ServerWait | None = None  # the wait this stream was last reported to be in
        try:
            while True:
                now = self.clock()
                wait = self._wait_to_show(now, shown)
                if wait != shown and self.on_wait is not None and (wait is not None or shown is not None):
                    # Reported before any grant: an await after on_send could be cancelled and lose the slot.
                    shown = wait
                    await self.on_wait(stream, wait, now)
                    continue
                # Rank by each stream's latest grant now, not when its task began to wait.
                first = min(self._waiters, key=lambda w: (self._last_served.get(w.stream, float("-inf")), w.arrival))
                delay: float | None = None
                if first is me and self.model.in_flight < self.max_in_flight:
                    delay = self.model.earliest_send(now) - now
                    if delay <= 0:
                        self.model.on_send(now)
                        self._last_served[stream] = now
                        self.granted += 1
                        return
                changed = self._changed
                with anyio.move_on_after(delay if delay is not None else 3600.0):
                    await changed.wait()
        finally:
            self._waiters.remove(me)
            self.wake()

    def _wait_to_show(self, now: float, shown: ServerWait | None) -> ServerWait | None:
        """The server's wait if it is worth showing; one already shown stays shown until it is over."""
        wait = self.model.server_wait(now)
        if wait is None or wait == shown:
            return wait
        if wait.cap is None and wait.until - now < WAIT_SHOWN_SECS:
            return None
        return wait


class PacerRegistry:
    """One pacer per (credentials, endpoint), created on first use and shared from then on."""

    def __init__(self) -> None:
        self._pacers: dict[tuple[str, str], Pacer] = {}

    def get(self, credential_id: str, path: str, make: Callable[[], Pacer]) -> Pacer:
        key = (credential_id, path)
        if key not in self._pacers:
            self._pacers[key] = make()
        return self._pacers[key]

    def items(self) -> list[tuple[tuple[str, str], Pacer]]:
        return list(self._pacers.items())
