"""Which streams and sinks this process runs: all of them (SQLite), or those it holds a lease on.

With PostgreSQL state, :class:`LeaseOwnership` runs one loop per replica, every ``lease_secs / 3``
(and just after another node's lease is due to expire, so a dead replica's work moves within
``lease_secs`` plus one round): heartbeat, renew what it holds (a lease it no longer has stops its
stream or sink at once), then aim for a fair share per kind (:func:`fair_share`): give up
the excess (stopping the work first, then releasing) or claim free and expired leases. Each poller
and dispatcher runs inside :meth:`owned`, which starts it when its lease is granted, cancels it when
the lease goes, and waits for the lease again. A clean stop releases everything at once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Protocol, TypeVar

import anyio

from collector.logs import get_logger
from collector.service.telemetry import Telemetry
from collector.state.base import LeaseLost
from collector.state.pg_store import PostgresStore

T = TypeVar("T")
STOP_WAIT_SECS = 10.0  # how long a given-up stream or sink gets to stop before its lease is released
LEAVE_WAIT_SECS = 5.0  # a clean stop does not hang on an unreachable database: leases expire anyway
MIN_ROUND_SECS = 0.05


def fair_share(items: int, live: int, rank: int) -> int:
    """This node's share when ``live`` nodes split ``items``: the first ``items % live`` nodes by name
    take one more. The shares add up to ``items`` exactly, so a node over its share always has one
    under it to hand to (with ceil(items / live) each, 7 over 3 could stall at 3 + 3 + 1)."""
    return items // live + (1 if rank < items % live else 0)


class Ownership(Protocol):
    async def run(self) -> None: ...

    async def owned(
        self,
        kind: str,
        name: str,
        work: Callable[[], Awaitable[T]],
        *,
        until: anyio.Event | None = None,
        wind_down: Callable[[], None] | None = None,
    ) -> T | None: ...

    def holds(self, kind: str, name: str) -> bool: ...

    async def release_all(self, kind: str) -> None: ...

    async def leave(self) -> None: ...


class SoleOwner:
    """One process on its own state (SQLite): everything is its own, at once."""

    async def run(self) -> None:
        return

    async def owned(
        self,
        kind: str,
        name: str,
        work: Callable[[], Awaitable[T]],
        *,
        until: anyio.Event | None = None,
        wind_down: Callable[[], None] | None = None,
    ) -> T | None:
        return await work()

    def holds(self, kind: str, name: str) -> bool:
        return True

    async def release_all(self, kind: str) -> None:
        return

    async def leave(self) -> None:
        return


class LeaseOwnership:
    def __init__(
        self,
        store: PostgresStore,
        items: Mapping[str, Sequence[str]],
        telemetry: Telemetry,
        *,
        lease_secs: float,
        once: bool = False,
    ) -> None:
        self._store = store
        store.fencing = True
        self._held = store.held
        self._items = {kind: list(names) for kind, names in items.items()}
        self._telemetry = telemetry
        self._lease_secs = lease_secs
        self._once = once
        self._claiming = True
        self._lock = anyio.Lock()
        self._granted: dict[tuple[str, str], anyio.Event] = {}
        self._scopes: dict[tuple[str, str], anyio.CancelScope] = {}
        self._stopped: dict[tuple[str, str], anyio.Event] = {}
        self._first_round = anyio.Event()
        self._wind_downs: dict[tuple[str, str], Callable[[], None]] = {}
        self._winding: set[tuple[str, str]] = set()  # asked to wind down: its return is not the end
        self._live_elsewhere: set[tuple[str, str]] = set()  # once-mode: held by another live replica
        self._log = get_logger(node=store.node)

    def holds(self, kind: str, name: str) -> bool:
        return (kind, name) in self._held

    # --- the loop -----------------------------------------------------------------------------------

    async def run(self) -> None:
        for kind, names in self._items.items():
            await self._store.add_items(kind, names)
        self._log.info("replica_started", lease_secs=self._lease_secs, **{k: len(v) for k, v in self._items.items()})
        while True:
            async with self._lock:
                await self._round()
            self._first_round.set()
            await anyio.sleep(await self._until_next_round())

    async def _round(self) -> None:
        store = self._store
        if self._claiming and not self._once:  # a stopping or once-mode node takes no share: not counted
            await store.heartbeat(self._lease_secs)  # before renewing: see collector/state/leases.py
        asked = dict(self._held)
        renewed = await store.renew(asked, self._lease_secs)
        for key, epoch in asked.items():
            if key not in renewed and self._held.get(key) == epoch:
                self._lose(key, "not renewed: another replica holds it now")
        nodes = await store.live_nodes()
        live, rank = len(nodes), nodes.index(store.node)
        for kind, names in self._items.items():
            mine = sorted(name for k, name in self._held if k == kind)
            target = len(names) if self._once else fair_share(len(names), live, rank)
            if len(mine) > target and not self._once:
                await self._give_up(kind, mine[target:], live)
            elif len(mine) < target and self._claiming:
                free = [name for name in names if (kind, name) not in self._held]
                for name, epoch in (await store.claim(kind, free, target - len(mine), self._lease_secs)).items():
                    self._held[(kind, name)] = epoch
                    self._log.info("lease_acquired", kind=kind, name=name, epoch=epoch, live_nodes=live)
                    self._grant((kind, name))
            self._telemetry.owned.labels(kind).set(sum(1 for k, _ in self._held if k == kind))
        if self._once:  # what a live replica runs is skipped; a dead one's leases are waited out
            self._live_elsewhere = {
                (lease.kind, lease.name)
                for lease in await store.leases()
                if lease.node is not None and lease.node != store.node and lease.node in nodes
            }

    async def _until_next_round(self) -> float:
        wait = self._lease_secs / 3
        if self._claiming:
            expiry = await self._store.next_expiry_secs()
            if expiry is not None:
                wait = min(wait, max(MIN_ROUND_SECS, expiry + MIN_ROUND_SECS))
        return wait

    def _grant(self, key: tuple[str, str]) -> None:
        event = self._granted.pop(key, None)
        if event is not None:
            event.set()

    def _lose(self, key: tuple[str, str], why: str) -> None:
        if self._held.pop(key, None) is not None:
            self._log.warning("lease_lost", kind=key[0], name=key[1], why=why)
        scope = self._scopes.get(key)
        if scope is not None:
            scope.cancel()

    async def _give_up(self, kind: str, names: list[str], live: int) -> None:
        """More than a fair share (another replica came up): stop those, then let them go."""
        for name in names:
            key = (kind, name)
            await self._wind_down(key)
            self._held.pop(key, None)  # from now on its commits fail the fence, even before it stops
            scope, stopped = self._scopes.get(key), self._stopped.get(key)
            if scope is not None:
                scope.cancel()
            if stopped is not None:
                with anyio.move_on_after(STOP_WAIT_SECS):
                    await stopped.wait()
        await self._store.release(kind, names)
        self._log.info("leases_released", kind=kind, names=names, why="fair share", live_nodes=live)

    async def _wind_down(self, key: tuple[str, str]) -> None:
        """Ask work that can stop between two steps (a sink: after the batch it is sending, once
        that is saved) to do so, so a planned handover repeats nothing; then it is cancelled anyway.
        Bounded by a third of a lease: the round waiting here also renews the other leases."""
        wind_down, stopped = self._wind_downs.get(key), self._stopped.get(key)
        if wind_down is None or stopped is None or stopped.is_set():
            return
        self._winding.add(key)
        wind_down()
        with anyio.move_on_after(min(STOP_WAIT_SECS, self._lease_secs / 3)):
            await stopped.wait()

    # --- the work -----------------------------------------------------------------------------------

    async def owned(
        self,
        kind: str,
        name: str,
        work: Callable[[], Awaitable[T]],
        *,
        until: anyio.Event | None = None,
        wind_down: Callable[[], None] | None = None,
    ) -> T | None:
        """Run ``work`` whenever this node holds the lease; None if it never got it before ``until``
        was set (or, once-mode, in the first round: another replica has it). ``wind_down`` asks the
        work to return at its next safe point (see :meth:`_wind_down`)."""
        key = (kind, name)
        if wind_down is not None:
            self._wind_downs[key] = wind_down
        while True:
            if not await self._wait_for(key, until):
                return None
            stopped = anyio.Event()
            self._stopped[key] = stopped
            self._winding.discard(key)
            done, result = False, None
            try:
                with anyio.CancelScope() as scope:
                    self._scopes[key] = scope
                    if key in self._held:  # else lost between the grant and here
                        result, done = await work(), True
            except LeaseLost:
                self._lose(key, "fenced: another replica took it over")
            finally:
                self._scopes.pop(key, None)
                stopped.set()
            if done and key not in self._winding:
                return result
            # Wound down for a handover: the round that asked drops the lease as soon as this stopped.
            while key in self._winding and key in self._held:  # noqa: ASYNC110 - within that round
                await anyio.sleep(0.05)

    async def _wait_for(self, key: tuple[str, str], until: anyio.Event | None) -> bool:
        if self._once:
            await self._first_round.wait()
        while key not in self._held:
            if until is not None and until.is_set():
                return False
            if self._once and key in self._live_elsewhere:
                self._log.info("skipped_owned_elsewhere", kind=key[0], name=key[1])
                return False
            event = self._granted.setdefault(key, anyio.Event())
            with anyio.move_on_after(0.5):  # also looks at `until` now and then
                await event.wait()
        return True

    # --- stopping -----------------------------------------------------------------------------------

    async def release_all(self, kind: str) -> None:
        """Stop claiming; let every lease of ``kind`` go (its work has stopped)."""
        self._claiming = False
        with anyio.CancelScope(shield=True), anyio.move_on_after(LEAVE_WAIT_SECS):
            async with self._lock:
                await self._store.forget_node()  # the others' shares grow at their next round
                names = [name for k, name in self._held if k == kind]
                for name in names:
                    self._held.pop((kind, name), None)
                await self._store.release(kind, names)

    async def leave(self) -> None:
        self._claiming = False
        with anyio.CancelScope(shield=True), anyio.move_on_after(LEAVE_WAIT_SECS):
            async with self._lock:
                self._held.clear()
                await self._store.leave()
                self._log.info("replica_left")
