"""Tests for :class:`collector.api.pacer.Pacer`: fairness between streams, the in-flight cap, tickets, cancellation.

Most tests use a model that never asks to wait (no rate headers and a zero fallback interval) and a
fake clock that ticks forward on every read, so grants depend only on the pacer's own rules and the
assertions are about order and counts, never durations.
"""

from __future__ import annotations

import itertools
import random
import time
from collections import Counter
from collections.abc import Callable

import anyio
import anyio.lowlevel
import pytest
from anyio.abc import TaskGroup

from collector.api.limiter import RATE_LIMITED, PacingModel, ServerWait, WaitCap
from collector.api.pacer import Pacer, PacerRegistry, Ticket

SEED = 20240611
DEADLINE_SECS = 2.0  # generous bound so a broken pacer fails instead of hanging


class StepClock:
    """Moves 1 µs forward on every read: strictly increasing, so no two grants tie."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1e-6
        return self.now


def free_pacer(max_in_flight: int = 1, clock: Callable[[], float] | None = None) -> Pacer:
    """A pacer whose model never asks to wait: only turns and the in-flight cap decide."""
    model = PacingModel(fallback_interval_secs=0.0, rng=random.Random(SEED))
    return Pacer(model, max_in_flight=max_in_flight, clock=clock or StepClock())


async def checkpoints(n: int = 3) -> None:
    """Let every other ready task run a few steps."""
    for _ in range(n):
        await anyio.lowlevel.checkpoint()


async def take_slots(pacer: Pacer, stream: str, rounds: int, order: list[str]) -> None:
    """Ask for ``rounds`` slots one after another, noting each grant in ``order``."""
    for _ in range(rounds):
        async with pacer.slot(stream) as ticket:
            order.append(stream)
            await checkpoints()
            ticket.done(200, {})


def max_spread(order: list[str], streams: tuple[str, ...]) -> int:
    """Largest difference in grants between two streams over every prefix of the grant order."""
    counts = dict.fromkeys(streams, 0)
    spread = 0
    for stream in order:
        counts[stream] += 1
        spread = max(spread, max(counts.values()) - min(counts.values()))
    return spread


# --- fairness --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("streams", "max_in_flight"),
    [
        (("a", "b"), 1),
        (("a", "b", "c"), 1),
        (("a", "b", "c"), 2),
        (("a", "b"), 3),
    ],
)
async def test_streams_sharing_a_pacer_take_turns(streams: tuple[str, ...], max_in_flight: int) -> None:
    """Streams each asking for 10 slots at once are served in turns: counts never differ by more than 1."""
    pacer = free_pacer(max_in_flight)
    order: list[str] = []

    with anyio.fail_after(DEADLINE_SECS):
        async with anyio.create_task_group() as tg:
            for stream in streams:
                tg.start_soon(take_slots, pacer, stream, 10, order)

    assert Counter(order) == dict.fromkeys(streams, 10)
    assert max_spread(order, streams) <= 1
    assert pacer.granted == 10 * len(streams)
    assert pacer.model.in_flight == 0


@pytest.mark.parametrize("busy_tasks", [1, 3])
async def test_a_stream_that_arrives_is_served_before_a_busy_one(busy_tasks: int) -> None:
    """A quiet stream arriving while a busy one keeps the pacer occupied gets the very next slot."""
    pacer = free_pacer()
    order: list[str] = []
    arrived_at: list[int] = []

    async def quiet() -> None:
        arrived_at.append(len(order))
        async with pacer.slot("quiet") as ticket:
            order.append("quiet")
            ticket.done(200, {})

    async def busy(tg: TaskGroup) -> None:
        for _ in range(8):
            async with pacer.slot("backfill") as ticket:
                order.append("backfill")
                if len(order) == 6:
                    tg.start_soon(quiet)
                await checkpoints()
                ticket.done(200, {})

    with anyio.fail_after(DEADLINE_SECS):
        async with anyio.create_task_group() as tg:
            for _ in range(busy_tasks):
                tg.start_soon(busy, tg)

    assert arrived_at == [6]
    assert order[6] == "quiet"
    assert order.count("backfill") == 8 * busy_tasks


@pytest.mark.parametrize("busy_tasks", [1, 2, 4])
async def test_a_busy_stream_with_several_tasks_gets_only_its_turn(busy_tasks: int) -> None:
    """While a quiet stream is waiting, a busy stream gets one slot between two of the quiet stream's."""
    pacer = free_pacer()
    order: list[str] = []

    with anyio.fail_after(DEADLINE_SECS):
        async with anyio.create_task_group() as tg:
            for _ in range(busy_tasks):
                tg.start_soon(take_slots, pacer, "backfill", 12, order)
            tg.start_soon(take_slots, pacer, "quiet", 6, order)

    quiet_at = [i for i, stream in enumerate(order) if stream == "quiet"]
    busy_between = [later - earlier - 1 for earlier, later in itertools.pairwise(quiet_at)]
    assert len(quiet_at) == 6
    assert quiet_at[0] <= 1
    assert busy_between == [1] * 5, "".join(s[0] for s in order)


# --- in-flight cap ---------------------------------------------------------------------------------


@pytest.mark.parametrize("max_in_flight", [1, 2, 3, 5])
async def test_never_more_than_max_in_flight_slots_held(max_in_flight: int) -> None:
    """Twelve tasks asking for three slots each: at most max_in_flight held at once, and that many reached."""
    pacer = free_pacer(max_in_flight)
    holding = 0
    peak = 0
    served = 0

    async def worker(i: int) -> None:
        nonlocal holding, peak, served
        for _ in range(3):
            async with pacer.slot(f"s{i % 4}") as ticket:
                holding += 1
                peak = max(peak, holding)
                assert pacer.model.in_flight <= max_in_flight
                await checkpoints(5)
                holding -= 1
                served += 1
                ticket.done(200, {})

    with anyio.fail_after(DEADLINE_SECS):
        async with anyio.create_task_group() as tg:
            for i in range(12):
                tg.start_soon(worker, i)

    assert peak == max_in_flight
    assert served == 36
    assert pacer.model.in_flight == 0


# --- tickets ---------------------------------------------------------------------------------------


def report_ok(ticket: Ticket) -> None:
    ticket.done(200, {})


def report_503(ticket: Ticket) -> None:
    ticket.done(503, {})


def report_twice(ticket: Ticket) -> None:
    ticket.done(200, {})
    ticket.done(None, {})


def abandon(ticket: Ticket) -> None:
    ticket.abandon()


def forget(ticket: Ticket) -> None:
    assert not ticket.reported


@pytest.mark.parametrize(
    ("body", "scale"),
    [
        (report_ok, 1.0),
        (report_twice, 1.0),
        (abandon, 1.0),
        (report_503, 0.75),
        (forget, 0.75),
    ],
)
async def test_unreported_ticket_counts_as_a_failure(body: Callable[[Ticket], None], scale: float) -> None:
    """Leaving the slot without done() or abandon() is a failure (scale x0.75); only the first verdict counts."""
    pacer = free_pacer()

    async with pacer.slot("a") as ticket:
        body(ticket)

    assert ticket.reported
    assert pacer.model.scale == pytest.approx(scale)
    assert pacer.model.in_flight == 0


async def test_an_exception_in_the_slot_counts_as_a_failure() -> None:
    """An error escaping the slot propagates, frees the slot and counts as a failure."""
    pacer = free_pacer()

    with pytest.raises(RuntimeError, match="boom"):
        async with pacer.slot("a"):
            raise RuntimeError("boom")

    assert pacer.model.scale == pytest.approx(0.75)
    assert pacer.model.in_flight == 0


async def test_abandon_frees_the_slot_before_the_context_exits() -> None:
    """With one slot, abandon() lets the next waiter in while the first task is still inside its context."""
    pacer = free_pacer(max_in_flight=1)
    events: list[str] = []
    second_granted = anyio.Event()

    async def first() -> None:
        async with pacer.slot("a") as ticket:
            await checkpoints()  # "b" is waiting by now
            events.append("a abandons")
            ticket.abandon()
            await second_granted.wait()
            events.append("a exits")

    async def second() -> None:
        await anyio.lowlevel.checkpoint()
        async with pacer.slot("b") as ticket:
            events.append("b granted")
            second_granted.set()
            ticket.done(200, {})

    with anyio.fail_after(DEADLINE_SECS):
        async with anyio.create_task_group() as tg:
            tg.start_soon(first)
            tg.start_soon(second)

    assert events == ["a abandons", "b granted", "a exits"]
    assert pacer.model.scale == 1.0
    assert pacer.model.in_flight == 0
    assert pacer.granted == 2


# --- cancellation ----------------------------------------------------------------------------------


@pytest.mark.parametrize("cancelled", ["x", "y"])
@pytest.mark.parametrize("how", ["cancel", "timeout"])
async def test_cancelled_waiter_leaves_cleanly(cancelled: str, how: str) -> None:
    """A waiter cancelled (or timed out) while queued is removed: the other waiter and later callers proceed."""
    pacer = free_pacer(max_in_flight=1)
    granted: list[str] = []
    gave_up: list[str] = []
    release = anyio.Event()
    left = anyio.Event()
    scopes: dict[str, anyio.CancelScope] = {}

    async def holder() -> None:
        async with pacer.slot("h") as ticket:
            granted.append("h")
            await release.wait()
            ticket.done(200, {})

    async def waiter(stream: str) -> None:
        with anyio.CancelScope() as scope:
            scopes[stream] = scope
            if how == "timeout" and stream == cancelled:
                scope.deadline = anyio.current_time() + 0.02
            async with pacer.slot(stream) as ticket:
                granted.append(stream)
                ticket.done(200, {})
        if scope.cancelled_caught:
            gave_up.append(stream)
            left.set()

    with anyio.fail_after(DEADLINE_SECS):
        async with anyio.create_task_group() as tg:
            tg.start_soon(holder)
            await checkpoints()
            tg.start_soon(waiter, "x")
            await checkpoints()
            tg.start_soon(waiter, "y")
            await checkpoints()
            if how == "cancel":
                scopes[cancelled].cancel()
            await left.wait()
            release.set()
        async with pacer.slot("z") as ticket:
            granted.append("z")
            ticket.done(200, {})

    survivor = "y" if cancelled == "x" else "x"
    assert gave_up == [cancelled]
    assert granted == ["h", survivor, "z"]
    assert pacer.granted == 3
    assert pacer.model.in_flight == 0
    assert pacer.model.scale == 1.0


# --- the model's verdicts through the pacer --------------------------------------------------------


async def test_a_429_reported_on_a_ticket_holds_the_next_grant_until_the_reset() -> None:
    """A 429 with a 50 ms reset: the next waiter is granted no earlier than 50 ms after the report."""
    pacer = free_pacer(clock=time.monotonic)
    reported_at: list[float] = []
    granted_at: list[float] = []

    async def throttled() -> None:
        async with pacer.slot("a") as ticket:
            await checkpoints()  # "b" is waiting by now
            reported_at.append(time.monotonic())
            ticket.done(429, {"x-ratelimit-reset": "50"})

    async def next_in_line() -> None:
        await anyio.lowlevel.checkpoint()
        async with pacer.slot("b") as ticket:
            granted_at.append(time.monotonic())
            ticket.done(200, {})

    with anyio.fail_after(DEADLINE_SECS):
        async with anyio.create_task_group() as tg:
            tg.start_soon(throttled)
            tg.start_soon(next_in_line)

    assert len(granted_at) == 1
    assert granted_at[0] >= reported_at[0] + 0.05
    assert pacer.model.scale == pytest.approx(0.6)


def test_registry_shares_one_pacer_per_credentials_and_endpoint() -> None:
    """The registry makes one pacer per (credentials, path) and hands the same one back afterwards."""
    registry = PacerRegistry()
    made: list[Pacer] = []

    def make() -> Pacer:
        made.append(free_pacer())
        return made[-1]

    first = registry.get("cred-1", "/api/audit", make)
    again = registry.get("cred-1", "/api/audit", make)
    other_path = registry.get("cred-1", "/api/ttp", make)
    other_cred = registry.get("cred-2", "/api/audit", make)

    assert first is again
    assert len({id(first), id(other_path), id(other_cred)}) == 3
    assert len(made) == 3
    assert [key for key, _ in registry.items()] == [
        ("cred-1", "/api/audit"),
        ("cred-1", "/api/ttp"),
        ("cred-2", "/api/audit"),
    ]


# --- telling the owner about server waits ----------------------------------------------------------


class WaitLog:
    """Collects what a pacer reports: capped waits, and streams starting or ending a server wait."""

    def __init__(self) -> None:
        self.caps: list[WaitCap] = []
        self.waits: list[tuple[str, str | None]] = []

    async def on_wait(self, stream: str, wait: ServerWait | None, now: float) -> None:
        self.waits.append((stream, None if wait is None else wait.reason))


def reporting_pacer(seen: WaitLog, max_wait_secs: float) -> Pacer:
    model = PacingModel(max_wait_secs=max_wait_secs, rng=random.Random(SEED))
    return Pacer(model, on_cap=seen.caps.append, on_wait=seen.on_wait)


async def test_a_capped_wait_is_reported_to_the_owner() -> None:
    """A 429 asking for 31 years: on_cap hears what was asked and what is used."""
    seen = WaitLog()
    pacer = reporting_pacer(seen, max_wait_secs=0.2)
    async with pacer.slot("a") as ticket:
        ticket.done(429, {"retry-after": "999999999"})

    assert seen.caps == [WaitCap("retry-after", 999999999.0, 0.2)]


async def test_a_stream_held_back_by_a_capped_wait_is_reported_waiting_then_free() -> None:
    """The next call waits out the capped 429: on_wait hears "rate limited" first, then that it is over."""
    seen = WaitLog()
    pacer = reporting_pacer(seen, max_wait_secs=0.2)
    async with pacer.slot("a") as ticket:
        ticket.done(429, {"retry-after": "999999999"})

    with anyio.fail_after(DEADLINE_SECS):
        async with pacer.slot("a") as ticket:
            ticket.done(200, {})

    assert seen.waits == [("a", RATE_LIMITED), ("a", None)]


async def test_every_stream_behind_the_gate_is_reported_waiting() -> None:
    """Two streams share the throttled bucket: both are reported waiting, and both as free again."""
    seen = WaitLog()
    pacer = reporting_pacer(seen, max_wait_secs=0.2)
    async with pacer.slot("a") as ticket:
        ticket.done(429, {"retry-after": "999999999"})

    async def call(stream: str) -> None:
        async with pacer.slot(stream) as ticket:
            ticket.done(200, {})

    with anyio.fail_after(DEADLINE_SECS):
        async with anyio.create_task_group() as tg:
            tg.start_soon(call, "a")
            tg.start_soon(call, "b")

    assert Counter(seen.waits) == Counter([("a", RATE_LIMITED), ("a", None), ("b", RATE_LIMITED), ("b", None)])


async def test_a_short_uncapped_wait_is_ordinary_pacing_not_reported() -> None:
    """A 429 saying "reset in 100 ms" holds the next call back, but is not worth a status change."""
    seen = WaitLog()
    pacer = reporting_pacer(seen, max_wait_secs=300.0)
    async with pacer.slot("a") as ticket:
        ticket.done(429, {"x-ratelimit-reset": "100"})

    with anyio.fail_after(DEADLINE_SECS):
        async with pacer.slot("a") as ticket:
            ticket.done(200, {})

    assert (seen.caps, seen.waits) == ([], [])
