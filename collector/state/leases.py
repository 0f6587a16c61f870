"""The lease rows: who owns each stream and sink, at which epoch, renewed when.

All times are the database server's (``now()``), so replicas' clocks never have to agree. A lease
is free when its node is NULL (released) or it was not renewed for ``lease_secs``; taking it adds
one to its epoch, which fences the previous owner (collector/state/pg_store.py). ``nodes`` holds a
heartbeat per replica, written before its renewals, so a replica counts as gone no later than its
leases expire, and the survivors' fair share grows in the same round that frees them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg

from collector.state.db import StoreError

if TYPE_CHECKING:
    from collector.state.pg import Conn

T = TypeVar("T")


@dataclass(frozen=True)
class Lease:
    kind: str
    name: str
    node: str | None
    epoch: int
    age_secs: float | None  # since its last renewal; None when never held


class LeaseTable:
    """Lease operations of :class:`~collector.state.pg_store.PostgresStore` (mixed in; one connection pool)."""

    node: str
    instance: str
    beats: int

    if TYPE_CHECKING:  # provided by PgDatabase

        async def run(self, operation: Callable[[Conn], Awaitable[T]], *, write: bool = True) -> T: ...

    async def heartbeat(self, lease_secs: float) -> None:
        """This node is alive. Its name is its identity in leases (a restart under the same name takes
        its dead predecessor's leases back at once), so a second live process writing heartbeats
        under it is refused: the two would take each other's leases every round."""

        async def op(conn: Conn) -> Any:
            row = await conn.fetchrow(
                "WITH prev AS (SELECT instance, heartbeat_at >= now() - make_interval(secs => lease_secs) AS live "
                "FROM nodes WHERE node = $1) "
                "INSERT INTO nodes (node, started_at, heartbeat_at, lease_secs, instance) "
                "VALUES ($1, now(), now(), $2, $3) "
                "ON CONFLICT (node) DO UPDATE SET heartbeat_at = now(), lease_secs = excluded.lease_secs, "
                "instance = excluded.instance RETURNING (SELECT instance FROM prev), (SELECT live FROM prev)",
                self.node,
                lease_secs,
                self.instance,
            )
            # Replicas that went away long ago would only make the nodes table grow.
            await conn.execute("DELETE FROM nodes WHERE heartbeat_at < now() - interval '7 days'")
            return row

        row = await self.run(op)
        # At the first beat another instance may be the process this one replaces (killed, not yet
        # expired); after that, another instance's beat in between means it is alive.
        if self.beats and row is not None and row[0] not in (None, self.instance) and row[1]:
            raise StoreError(
                f"another live process uses node name {self.node!r} on this state; give each replica its own "
                "[state] node (or leave it unset: host name + pid + a random part)"
            )
        self.beats += 1

    async def forget_node(self) -> None:
        """This node stops counting as live (it is stopping), so the others take their full shares now."""

        async def op(conn: Conn) -> None:
            await conn.execute("DELETE FROM nodes WHERE node = $1 AND instance = $2", self.node, self.instance)

        await self.run(op)

    async def live_nodes(self) -> list[str]:
        """The nodes that sent a heartbeat within their lease_secs (this one always), by name."""

        async def op(conn: Conn) -> list[str]:
            rows = await conn.fetch(
                "SELECT node FROM nodes WHERE heartbeat_at >= now() - make_interval(secs => lease_secs) "
                "OR node = $1 ORDER BY node",
                self.node,
            )
            names = [str(row[0]) for row in rows]
            return names if self.node in names else sorted([*names, self.node])

        return await self.run(op, write=False)

    async def add_items(self, kind: str, names: Sequence[str]) -> None:
        async def op(conn: Conn) -> None:
            await conn.execute(
                "INSERT INTO leases (kind, name) SELECT $1, unnest($2::text[]) ON CONFLICT DO NOTHING",
                kind,
                list(names),
            )

        await self.run(op)

    async def renew(self, held: dict[tuple[str, str], int], lease_secs: float) -> set[tuple[str, str]]:
        """Renew every lease in ``held`` this node still has at that epoch; the ones renewed."""
        if not held:
            return set()
        kinds, names, epochs = zip(*((k, n, e) for (k, n), e in held.items()), strict=True)

        async def op(conn: Conn) -> list[asyncpg.Record]:
            return await conn.fetch(
                "UPDATE leases l SET renewed_at = now(), lease_secs = $5 "
                "FROM unnest($2::text[], $3::text[], $4::bigint[]) AS h(kind, name, epoch) "
                "WHERE l.kind = h.kind AND l.name = h.name AND l.epoch = h.epoch AND l.node = $1 "
                "RETURNING l.kind, l.name",
                self.node,
                list(kinds),
                list(names),
                list(epochs),
                lease_secs,
            )

        return {(row[0], row[1]) for row in await self.run(op)}

    async def claim(self, kind: str, names: Sequence[str], count: int, lease_secs: float) -> dict[str, int]:
        """Take up to ``count`` of ``names`` that are free or expired: {name: new epoch}.

        A lease still under this node's own name is taken too: the caller does not hold it, so it
        is an earlier process of this node that died (a restart with `node` configured); the new
        epoch fences that one instead of waiting ``lease_secs`` for it to expire.

        Rows locked by a commit in flight are skipped this round. Each node tries them in its own
        order (a hash of name and node), so replicas claiming at once mostly take different ones.
        """
        if count <= 0 or not names:
            return {}

        async def op(conn: Conn) -> list[asyncpg.Record]:
            return await conn.fetch(
                "WITH free AS (SELECT kind, name FROM leases WHERE kind = $2 AND name = ANY($4::text[]) "
                "AND (node IS NULL OR node = $1 OR renewed_at IS NULL "
                "OR renewed_at < now() - make_interval(secs => lease_secs)) "
                "ORDER BY md5(name || $1) LIMIT $5 FOR UPDATE SKIP LOCKED) "
                "UPDATE leases l SET node = $1, epoch = l.epoch + 1, renewed_at = now(), lease_secs = $3 FROM free "
                "WHERE l.kind = free.kind AND l.name = free.name RETURNING l.name, l.epoch",
                self.node,
                kind,
                lease_secs,
                list(names),
                count,
            )

        return {row[0]: int(row[1]) for row in await self.run(op)}

    async def release(self, kind: str, names: Sequence[str]) -> None:
        """Give leases up at once (a clean stop, or more than a fair share): another node may take them."""
        if not names:
            return

        async def op(conn: Conn) -> None:
            await conn.execute(
                "UPDATE leases SET node = NULL, renewed_at = NULL "
                "WHERE node = $1 AND kind = $2 AND name = ANY($3::text[])",
                self.node,
                kind,
                list(names),
            )

        await self.run(op)

    async def leave(self) -> None:
        """This node stops: everything it holds is free, and it no longer counts as live."""

        async def op(conn: Conn) -> None:
            await conn.execute("UPDATE leases SET node = NULL, renewed_at = NULL WHERE node = $1", self.node)
            await conn.execute("DELETE FROM nodes WHERE node = $1 AND instance = $2", self.node, self.instance)

        await self.run(op)

    async def next_expiry_secs(self) -> float | None:
        """Seconds until the next lease held by another node expires (None: none will)."""

        async def op(conn: Conn) -> Any:
            return await conn.fetchval(
                "SELECT extract(epoch FROM min(renewed_at + make_interval(secs => lease_secs)) - now())::float8 "
                "FROM leases WHERE node IS NOT NULL AND node <> $1 "
                "AND renewed_at + make_interval(secs => lease_secs) > now()",  # expired ones: no reason to hurry
                self.node,
            )

        value = await self.run(op, write=False)
        return None if value is None else float(value)

    async def leases(self) -> list[Lease]:
        async def op(conn: Conn) -> list[asyncpg.Record]:
            return await conn.fetch(
                "SELECT kind, name, node, epoch, extract(epoch FROM now() - renewed_at)::float8 FROM leases "
                "ORDER BY kind, name"
            )

        return [Lease(r[0], r[1], r[2], int(r[3]), r[4]) for r in await self.run(op, write=False)]

    async def owners(self) -> dict[tuple[str, str], tuple[str | None, float | None]]:
        return {(lease.kind, lease.name): (lease.node, lease.age_secs) for lease in await self.leases()}


async def take_over(conn: Conn, kind: str, name: str, *, force: bool) -> Lease | None:
    """For ``reset``, inside its transaction: free the lease with a new epoch (fencing any owner)
    unless a live node holds it and not ``force``; returns the lease that blocks, or None."""
    await conn.execute("INSERT INTO leases (kind, name) VALUES ($1, $2) ON CONFLICT DO NOTHING", kind, name)
    row = await conn.fetchrow(
        "SELECT kind, name, node, epoch, extract(epoch FROM now() - renewed_at)::float8, "
        "(node IS NULL OR renewed_at IS NULL OR renewed_at < now() - make_interval(secs => lease_secs)) "
        "FROM leases WHERE kind = $1 AND name = $2 FOR UPDATE",
        kind,
        name,
    )
    assert row is not None  # inserted above
    if not row[5] and not force:
        return Lease(row[0], row[1], row[2], int(row[3]), row[4])
    await conn.execute(
        "UPDATE leases SET node = NULL, renewed_at = NULL, epoch = epoch + 1 WHERE kind = $1 AND name = $2", kind, name
    )
    return None
