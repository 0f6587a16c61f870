"""The PostgreSQL database under the shared state: pool, schema, and what an outage does.

Every operation is one function of a connection, run by :meth:`PgDatabase.run`, in a transaction
unless it only reads. When the server is unreachable or restarting, ``run`` waits and tries again
with backoff (1 s doubling to 30 s), logging ``state_unavailable`` once and ``state_available`` on
recovery: pollers and sinks simply wait inside their commit, so nothing is fetched that could not be
kept, and nothing is lost. A retried commit is harmless: its dedup keys are there or not, with the
position, in one transaction. Errors that waiting cannot fix (a wrong password, no such database,
no right to create the schema) are a :class:`StoreError` naming the fix, as for SQLite.
"""

from __future__ import annotations

import random
import ssl
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Self, TypeAlias, TypeVar

import anyio
import asyncpg

from collector.config.model import StateConfig
from collector.logs import get_logger, mask_url_credentials, redact
from collector.state.base import LeaseLost
from collector.state.db import StoreError

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    Conn: TypeAlias = PoolConnectionProxy[asyncpg.Record]

T = TypeVar("T")
SCHEMA_VERSION = 1
RETRY_FIRST_SECS = 1.0
RETRY_MAX_SECS = 30.0
COMMAND_TIMEOUT_SECS = 60.0  # one statement; a page commit takes milliseconds
POOL_MAX = 8

#: What waiting fixes: the server is down, restarting, refusing connections for now, or cut one of
#: ours (a deadlock victim or a killed idle transaction is simply run again).
TRANSIENT: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, cannot connect now, cancelled
    asyncpg.exceptions.InsufficientResourcesError,  # too many connections, the server's disk full
    asyncpg.exceptions.TransactionRollbackError,  # deadlock, serialization failure
    asyncpg.exceptions.InvalidTransactionStateError,  # idle-in-transaction timeout killed the session
    asyncpg.InternalClientError,  # a connection the server's shutdown left mid-protocol (see run)
)

#: What waiting does not fix although it looks like a connection problem: a certificate that does
#: not verify, an sslmode or option asyncpg does not know. A StoreError naming it, at once.
PERMANENT: tuple[type[BaseException], ...] = (
    ssl.SSLCertVerificationError,
    asyncpg.exceptions.ClientConfigurationError,
    asyncpg.exceptions.UnsupportedClientFeatureError,
)

# Tables: as the SQLite file's (collector/state/db.py), plus what sharing needs. spool_head is the
# one row every commit that spools updates last: its lock, held to COMMIT, hands out event numbers in
# commit order, so a reader never sees seq n + 1 before seq n. leases and nodes: ownership.
TABLES = """
CREATE TABLE IF NOT EXISTS meta (key text PRIMARY KEY, value bigint NOT NULL);
CREATE TABLE IF NOT EXISTS streams (
    id bigserial PRIMARY KEY,
    account text NOT NULL,
    log_type text NOT NULL,
    window_start bigint NOT NULL,
    window_end bigint,
    page_token text,
    events_total bigint NOT NULL DEFAULT 0,
    last_success_at double precision,
    last_error text,
    last_error_at double precision,
    fatal boolean NOT NULL DEFAULT false,
    waiting_until double precision,
    waiting_reason text,
    endpoint_path text,
    cursor text,
    written_by text,  -- the node and lease epoch of the last position written: fencing made visible
    written_epoch bigint,
    UNIQUE (account, log_type)
);
CREATE TABLE IF NOT EXISTS dedup (
    stream_id bigint NOT NULL,
    event_time bigint NOT NULL,
    key text NOT NULL,
    seen_until bigint NOT NULL,
    PRIMARY KEY (stream_id, event_time, key)
);
CREATE TABLE IF NOT EXISTS spool (
    first_seq bigint PRIMARY KEY,
    stream_id bigint NOT NULL,
    events integer NOT NULL,
    bytes bigint NOT NULL,
    keys bytea NOT NULL,
    times bytea NOT NULL,
    docs bytea NOT NULL
);
CREATE TABLE IF NOT EXISTS spool_head (
    id integer PRIMARY KEY CHECK (id = 1),
    last_seq bigint NOT NULL,
    bytes bigint NOT NULL
);
INSERT INTO spool_head (id, last_seq, bytes) VALUES (1, 0, 0) ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS sinks (
    name text PRIMARY KEY,
    offset_seq bigint NOT NULL,
    delivered_total bigint NOT NULL DEFAULT 0,
    last_delivery_at double precision,
    last_error text,
    written_by text,
    written_epoch bigint
);
CREATE TABLE IF NOT EXISTS leases (
    kind text NOT NULL,  -- 'stream' (account/log_type) or 'sink'
    name text NOT NULL,
    node text,  -- NULL: free
    epoch bigint NOT NULL DEFAULT 0,  -- +1 at every takeover: what fences the previous owner
    renewed_at timestamptz,
    lease_secs double precision NOT NULL DEFAULT 0,  -- the holder's: it decides when the lease expires
    PRIMARY KEY (kind, name)
);
CREATE TABLE IF NOT EXISTS nodes (
    node text PRIMARY KEY,
    started_at timestamptz NOT NULL,
    heartbeat_at timestamptz NOT NULL,
    lease_secs double precision NOT NULL,
    instance text NOT NULL DEFAULT ''  -- the process behind the name: two live ones are a mistake
);
"""


class Outage:
    """Whether the server answers, logged once each way (``state_unavailable`` / ``state_available``)
    and told to ``on_change`` (telemetry: /readyz, metrics)."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.down_since: float | None = None
        self.on_change: Callable[[bool], None] = lambda up: None
        self._log = get_logger()

    def down(self, exc: BaseException, retry_in_secs: float) -> None:
        if self.down_since is None:
            self.down_since = anyio.current_time()
            self._log.warning("state_unavailable", database=self.where, error=_reason(exc), retry_in_secs=retry_in_secs)
            self.on_change(False)

    def up(self) -> None:
        if self.down_since is not None:
            self.down_since = None
            self._log.info("state_available", database=self.where)
            self.on_change(True)


async def _retrying(attempt: Callable[[], Awaitable[T]], config: StateConfig, outage: Outage, *, wait: bool) -> T:
    """``attempt()``, again with backoff while the server is unavailable (``wait``; else a StoreError
    at once); errors waiting cannot fix are a StoreError naming the fix (see the module docstring)."""
    delay = RETRY_FIRST_SECS
    while True:
        try:
            result = await attempt()
        except LeaseLost:
            raise
        except PERMANENT as exc:
            raise StoreError(describe_pg_failure(config, exc)) from None
        except TRANSIENT as exc:
            if not wait:  # a command (status, reset, migrate) says so instead of hanging
                raise StoreError(f"cannot reach the state database {outage.where}: {_reason(exc)}") from None
            outage.down(exc, delay)
            await anyio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(RETRY_MAX_SECS, delay * 2)
            continue
        except asyncpg.PostgresError as exc:
            raise StoreError(describe_pg_failure(config, exc)) from None
        outage.up()
        return result


class PgDatabase:
    def __init__(self, pool: asyncpg.Pool, config: StateConfig, outage: Outage, *, wait: bool = True) -> None:
        self._pool = pool
        self.config = config
        self.schema = config.schema
        self._outage = outage
        self.wait = wait  # while the server is unavailable, wait (the collector) or fail (a command)

    @property
    def on_availability(self) -> Callable[[bool], None]:
        """Told True/False when the server comes back or goes away (telemetry: /readyz, metrics)."""
        return self._outage.on_change

    @on_availability.setter
    def on_availability(self, callback: Callable[[bool], None]) -> None:
        self._outage.on_change = callback

    @classmethod
    async def connect(
        cls, config: StateConfig, *, create: bool = True, wait: bool = True, must_exist: bool = True
    ) -> Self:
        """Connect and (with ``create``) create or migrate the schema; without, check that it exists
        (``must_exist``: status) or that this user could create it (validate). With ``wait``, an
        unreachable server is waited for (a collector started before its database); without, it is a
        StoreError."""
        assert config.url is not None  # the config refuses backend = "postgresql" without a url
        url = config.url
        password = config.password.reveal() if config.password is not None else None
        settings = {
            "application_name": "mimecast-collector",
            "search_path": config.schema,
            # A replica frozen inside a transaction (SIGSTOP, a VM pause) must not hold row locks the
            # others wait for (the spool head's stalls every commit): the server ends such a session
            # after a third of a lease, 5 s at most. Our transactions never idle: they are milliseconds.
            "idle_in_transaction_session_timeout": str(max(1000, min(5000, int(config.lease_secs * 1000 / 3)))),
        }

        async def pool() -> asyncpg.Pool:
            return await asyncpg.create_pool(
                url,
                password=password,
                min_size=1,
                max_size=POOL_MAX,
                command_timeout=COMMAND_TIMEOUT_SECS,
                server_settings=settings,
                timeout=10,
            )

        outage = Outage(describe_target(config))
        db = cls(await _retrying(pool, config, outage, wait=wait), config, outage, wait=wait)
        try:
            check = db._check_exists if must_exist else db._check_can_create
            await db.run(db._migrate if create else check, write=create)
        except BaseException:
            await db._pool.close()
            raise
        return db

    async def close(self) -> None:
        with anyio.CancelScope(shield=True):
            try:
                with anyio.fail_after(10):
                    await self._pool.close()
            except TimeoutError:
                self._pool.terminate()

    async def run(self, operation: Callable[[Conn], Awaitable[T]], *, write: bool = True) -> T:
        """``operation`` on a pooled connection, in one transaction if ``write``; retried while the
        server is unavailable (see the module docstring)."""

        async def attempt() -> T:
            async with self._pool.acquire() as conn:
                try:
                    if not write:
                        return await operation(conn)
                    async with conn.transaction():
                        return await operation(conn)
                except asyncpg.InternalClientError:
                    # A session the server ended mid-query can come back from the pool still
                    # waiting for that query's end ("cannot switch to state 15; another operation
                    # (2) is in progress", MagicStack/asyncpg#784): every later use fails the same
                    # way, so it is closed, and the pool connects afresh for the retry.
                    conn.terminate()
                    raise

        return await _retrying(attempt, self.config, self._outage, wait=self.wait)

    @property
    def where(self) -> str:
        return self._outage.where

    async def _check_exists(self, conn: Conn) -> None:
        if not await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f'"{self.schema}".spool_head'):
            raise StoreError(
                f"the state database {self.where} has no collector state yet; run the collector first "
                "(it creates the schema)"
            )

    async def _check_can_create(self, conn: Conn) -> None:
        exists = await conn.fetchval("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", self.schema)
        allowed = await conn.fetchval(
            "SELECT has_schema_privilege($1, 'CREATE')"
            if exists
            else "SELECT has_database_privilege(current_database(), 'CREATE')",
            *([self.schema] if exists else []),
        )
        if not allowed:
            raise StoreError(
                f"the state database {self.where} does not let this user create the collector's tables; "
                f"GRANT CREATE ON DATABASE to it, or create schema {self.schema} owned by it"
            )

    async def _migrate(self, conn: Conn) -> None:
        # One replica at a time: two starting together would race on CREATE TABLE IF NOT EXISTS.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"mimecast-collector:{self.schema}")
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
        found = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f'"{self.schema}".meta')
        version = 0
        if found:
            version = await conn.fetchval(f"SELECT value FROM \"{self.schema}\".meta WHERE key = 'schema_version'") or 0  # noqa: S608
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"state schema {self.schema} in {self.where} was written by a newer mimecast-collector "
                f"(schema {version}); upgrade this replica, or point [state] schema at a new one"
            )
        await conn.execute(TABLES)
        await conn.execute(
            "INSERT INTO meta (key, value) VALUES ('schema_version', $1) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            SCHEMA_VERSION,
        )


def describe_target(config: StateConfig) -> str:
    """The database as logs and errors show it: the URL without any credentials, and the schema."""
    url = mask_url_credentials(config.url or "").split("?", 1)[0]  # query values may hold secrets (sslkey...)
    return f"{url} (schema {config.schema})"


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return redact(f"{type(exc).__name__}: {text}"[:300])


def describe_pg_failure(config: StateConfig, exc: BaseException) -> str:
    """One line an operator can act on, for the usual ways a state database refuses."""
    where = describe_target(config)
    reason = _reason(exc)
    if isinstance(exc, asyncpg.exceptions.InvalidAuthorizationSpecificationError):
        return f"the state database {where} refused the login ({reason}); check state.url's user and state.password"
    if isinstance(exc, asyncpg.exceptions.InvalidCatalogNameError):
        return f"the state database {where} does not exist ({reason}); create it (createdb) or fix state.url"
    if isinstance(exc, asyncpg.exceptions.InsufficientPrivilegeError):
        return (
            f"the state database {where} does not let this user create or write the schema ({reason}); "
            f"GRANT CREATE ON DATABASE to it, or create schema {config.schema} owned by it"
        )
    return f"state database {where}: {reason}"
