"""A stream's server-imposed wait (schema 3) and remembered endpoint path (schema 4), on both backends,
and SQLite files of schema 2 brought up to the current schema."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from collector.state.base import StateStore
from collector.state.db import SCHEMA_VERSION
from collector.state.store import Store

# The streams table as schema 2 wrote it: no wait columns.
STREAMS_V2 = """
CREATE TABLE streams (
    id INTEGER PRIMARY KEY,
    account TEXT NOT NULL,
    log_type TEXT NOT NULL,
    window_start INTEGER NOT NULL,
    window_end INTEGER,
    page_token TEXT,
    events_total INTEGER NOT NULL DEFAULT 0,
    last_success_at REAL,
    last_error TEXT,
    last_error_at REAL,
    fatal INTEGER NOT NULL DEFAULT 0,
    UNIQUE (account, log_type)
);
INSERT INTO streams (account, log_type, window_start, events_total) VALUES ('acme', 'ttp_url', 1000, 42);
PRAGMA user_version = 2;
"""


def v2_file(path: Path, *, columns_already_added: bool = False) -> Path:
    """A state file as schema 2 left it (optionally with a migration to 3 cut short after the ALTERs)."""
    conn = sqlite3.connect(path)
    conn.executescript(STREAMS_V2)
    if columns_already_added:
        conn.executescript(
            "ALTER TABLE streams ADD COLUMN waiting_until REAL; ALTER TABLE streams ADD COLUMN waiting_reason TEXT;"
        )
    conn.close()
    return path


def user_version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


@pytest.fixture
def store(state_store: StateStore) -> StateStore:
    """A fresh store, on each backend."""
    return state_store


async def test_record_waiting_shows_in_streams_until_cleared(store: StateStore) -> None:
    """record_waiting stores until when and why; None clears both."""
    await store.stream("acme", "ttp_url", start=1000)
    await store.record_waiting("acme", "ttp_url", 1234.5, "rate limited (HTTP 429)")
    [waiting] = await store.streams()
    await store.record_waiting("acme", "ttp_url", None, None)
    [cleared] = await store.streams()

    assert (waiting["waiting_until"], waiting["waiting_reason"]) == (1234.5, "rate limited (HTTP 429)")
    assert (cleared["waiting_until"], cleared["waiting_reason"]) == (None, None)


async def test_reset_clears_a_recorded_wait(store: StateStore) -> None:
    """Rewinding a stream forgets the wait it was in."""
    await store.stream("acme", "ttp_url", start=1000)
    await store.record_waiting("acme", "ttp_url", 1234.5, "rate limited (HTTP 429)")
    await store.reset_stream("acme", "ttp_url", 500)
    [row] = await store.streams()

    assert (row["waiting_until"], row["waiting_reason"]) == (None, None)


@pytest.mark.parametrize("columns_already_added", [False, True], ids=["v2", "cut-short"])
async def test_a_schema_2_file_migrates_to_the_current_schema_keeping_its_streams(
    tmp_path: Path, columns_already_added: bool
) -> None:
    """Opening a v2 file adds the wait and endpoint columns (also after a migration cut short) and keeps
    every row."""
    path = v2_file(tmp_path / "state.db", columns_already_added=columns_already_added)

    store = await Store.open(path)
    try:
        await store.record_waiting("acme", "ttp_url", 99.0, "rate-limit budget used up")
        [row] = await store.streams()
        state = await store.stream("acme", "ttp_url", start=0)
        await store.save_endpoint_path(state.id, "/api/other")
        again = await store.stream("acme", "ttp_url", start=0)
    finally:
        await store.close()

    assert (row["account"], row["window_start"], row["events_total"]) == ("acme", 1000, 42)
    assert (row["waiting_until"], row["waiting_reason"]) == (99.0, "rate-limit budget used up")
    assert (state.window_start, state.endpoint_path, again.endpoint_path) == (1000, None, "/api/other")
    assert SCHEMA_VERSION == 5
    assert row["cursor"] is None  # v4's columns are added on the way too
    assert user_version(path) == SCHEMA_VERSION


async def test_a_remembered_endpoint_path_survives_a_reopen_and_a_reset(
    open_state: Callable[[], Awaitable[StateStore]],
) -> None:
    """save_endpoint_path is stored for the next process; rewinding the stream keeps it (it is the
    account's API, not the stream's position)."""
    first = await open_state()
    state = await first.stream("acme", "archive_search", start=1000)
    await first.save_endpoint_path(state.id, "/api/archive/get-search-logs")
    await first.reset_stream("acme", "archive_search", 500)
    await first.close()
    second = await open_state()
    reopened = await second.stream("acme", "archive_search", start=0)

    assert (reopened.window_start, reopened.endpoint_path) == (500, "/api/archive/get-search-logs")


async def test_status_reads_a_schema_2_file_without_migrating_it(tmp_path: Path) -> None:
    """A read-only open (status beside an older collector) reads a v2 file as "not waiting" and leaves it at 2."""
    path = v2_file(tmp_path / "state.db")

    store = await Store.open(path, read_only=True)
    try:
        [row] = await store.streams()
    finally:
        await store.close()

    assert (row["events_total"], row["waiting_until"], row["waiting_reason"]) == (42, None, None)
    assert user_version(path) == 2
