"""Open the configured state, whichever backend: the one place that chooses between them."""

from __future__ import annotations

from collector.config.model import StateConfig
from collector.state.base import StateStore
from collector.state.pg_store import PostgresStore
from collector.state.store import Store


async def open_store(config: StateConfig, *, read_only: bool = False) -> StateStore:
    """The SQLite file at ``config.path`` or the PostgreSQL schema. ``read_only`` (status): nothing is
    created or migrated, and an unreachable database is an error at once instead of waited for."""
    if config.backend == "postgresql":
        return await PostgresStore.connect(config, create=not read_only, wait=not read_only)
    return await Store.open(config.path, synchronous=config.synchronous, read_only=read_only)
