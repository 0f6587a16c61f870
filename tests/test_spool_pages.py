"""The spool keeps one row per committed page, on both backends: reads, acks and drops that cut across
pages; and SQLite files of schema 4 (one row per event) carried over with their numbers and sink offsets."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson
import pytest

from collector.logtypes import Event, serialize
from collector.state.base import StateStore
from collector.state.db import SCHEMA_VERSION
from collector.state.pg_store import PostgresStore
from collector.state.store import Store


def event(key: str, time: int = 100) -> Event:
    return Event(key, time, {"id": key, "n": time})


@pytest.fixture
def store(state_store: StateStore) -> StateStore:
    """A fresh store, on each backend."""
    return state_store


async def commit(store: StateStore, keys: list[str], *, account: str = "acme", log_type: str = "ttp_url") -> None:
    state = await store.stream(account, log_type, start=0)
    events = [event(k, 100 + i) for i, k in enumerate(keys)]
    await store.commit_page(events, state.window_done(1000), seen_until=1000, now=1.0)


async def page_rows(store: StateStore) -> list[tuple[int, int]]:
    """(first_seq, events) of every spooled page, straight from the table (the file, or the schema)."""
    query = "SELECT first_seq, events FROM spool ORDER BY first_seq"
    if isinstance(store, PostgresStore):
        rows = await store.run(lambda conn: conn.fetch(query), write=False)
        return [(int(a), int(b)) for a, b in rows]
    assert isinstance(store, Store)
    with sqlite3.connect(store.path) as conn:
        return [(int(a), int(b)) for a, b in conn.execute(query)]


async def test_a_page_is_one_row_and_reads_cut_across_pages_in_order(store: StateStore) -> None:
    """Three pages of 3, 2 and 4 events are three rows; any (offset, limit) reads the right events,
    each with its own account and log type."""
    await commit(store, ["a", "b", "c"])
    await commit(store, ["d", "e"], log_type="ttp_impersonation")
    await commit(store, ["f", "g", "h", "i"], account="other")

    assert await page_rows(store) == [(1, 3), (4, 2), (6, 4)]
    keys = "abcdefghi"
    for after in range(10):
        for limit in (1, 2, 3, 5, 100):
            rows = await store.read_spool(after, limit)
            assert [r.key for r in rows] == list(keys[after : after + limit])
            assert [r.seq for r in rows] == list(range(after + 1, after + 1 + len(rows)))
    rows = await store.read_spool(2, 4)
    assert [(r.key, r.event_time, r.account, r.log_type) for r in rows] == [
        ("c", 102, "acme", "ttp_url"),
        ("d", 100, "acme", "ttp_impersonation"),
        ("e", 101, "acme", "ttp_impersonation"),
        ("f", 100, "other", "ttp_url"),
    ]
    assert rows[0].doc == serialize(event("c", 102).doc)


async def test_pages_read_whole_keep_their_stored_documents_and_cut_ones_are_sliced(store: StateStore) -> None:
    """read_pages: one slice per page touched, contiguous, its documents one blob as stored (a page read
    whole is not split at all); through() cuts a slice inside it."""
    await commit(store, ["a", "b", "c"])
    await commit(store, ["d", "e"], log_type="ttp_impersonation")
    await commit(store, ["f", "g", "h", "i"], account="other")
    times = dict(zip("abcdefghi", [100, 101, 102, 100, 101, 100, 101, 102, 103], strict=True))
    keys = "abcdefghi"
    for after in range(10):
        for limit in (1, 2, 3, 5, 100):
            pages = await store.read_pages(after, limit)
            wanted = keys[after : after + limit]
            assert [p.first_seq for p in pages] == [
                after + 1 + sum(p.events for p in pages[:i]) for i in range(len(pages))
            ]
            assert b"\n".join(p.docs for p in pages).split(b"\n") == (
                [serialize(event(k, times[k]).doc) for k in wanted] if wanted else [b""]
            )
            assert [r.key for p in pages for r in p.rows()] == list(wanted)
    [whole] = await store.read_pages(3, 2)  # exactly the second page
    assert (whole.first_seq, whole.events, whole.log_type) == (4, 2, "ttp_impersonation")
    [last] = await store.read_pages(5, 100)
    cut = last.through(7)
    assert cut is not None
    assert (cut.first_seq, cut.last_seq, [r.key for r in cut.rows()]) == (6, 7, ["f", "g"])
    assert cut.docs == serialize(event("f", 100).doc) + b"\n" + serialize(event("g", 101).doc)
    assert last.through(5) is None
    assert last.through(9) is last


async def test_an_ack_inside_a_page_cuts_it_to_what_is_still_owed(store: StateStore) -> None:
    """Two sinks; the slower one stops inside the second page: the first page goes, the second keeps
    only its undelivered events, and counts and bytes follow exactly."""
    await commit(store, ["a", "b", "c"])
    await commit(store, ["d", "e", "f", "g"])
    for name in ("fast", "slow"):
        await store.sink_offset(name)
    await store.ack("fast", 7, 7, now=2.0, sinks=["fast", "slow"])
    await store.ack("slow", 5, 5, now=2.0, sinks=["fast", "slow"])

    usage = await store.usage()
    assert await page_rows(store) == [(6, 2)]
    assert (usage.events, usage.first_seq, usage.last_seq) == (2, 6, 7)
    assert usage.bytes == sum(len(serialize(event(k, 100 + i).doc)) for i, k in enumerate("fg", start=2))
    assert [(r.seq, r.key) for r in await store.read_spool(5, 10)] == [(6, "f"), (7, "g")]
    assert await store.backlog(5) == 2

    await store.ack("slow", 7, 2, now=3.0, sinks=["fast", "slow"])
    assert await page_rows(store) == []
    assert (await store.usage()).bytes == 0
    await commit(store, ["h"])
    assert [(r.seq, r.key) for r in await store.read_spool(7, 10)] == [(8, "h")]  # numbers go on


async def test_drop_oldest_takes_whole_pages_then_part_of_one(store: StateStore) -> None:
    """Nine events in pages of 4, 3 and 2; a limit of 4 drops the first page whole and one event of
    the second, which then starts at 6."""
    await commit(store, ["a", "b", "c", "d"])
    await commit(store, ["e", "f", "g"])
    await commit(store, ["h", "i"])

    assert await store.drop_oldest(max_events=4, max_bytes=0) == (1, 5)

    assert await page_rows(store) == [(6, 2), (8, 2)]
    assert [r.key for r in await store.read_spool(0, 100)] == ["f", "g", "h", "i"]
    assert (await store.usage()).bytes == sum(len(r.doc) for r in await store.read_spool(0, 100))


# The spool as schema 4 wrote it: one row per event, numbered by AUTOINCREMENT.
SCHEMA_4 = """
CREATE TABLE streams (id INTEGER PRIMARY KEY, account TEXT NOT NULL, log_type TEXT NOT NULL,
    window_start INTEGER NOT NULL, window_end INTEGER, page_token TEXT, events_total INTEGER NOT NULL DEFAULT 0,
    last_success_at REAL, last_error TEXT, last_error_at REAL, fatal INTEGER NOT NULL DEFAULT 0,
    waiting_until REAL, waiting_reason TEXT, endpoint_path TEXT, cursor TEXT, UNIQUE (account, log_type));
CREATE TABLE dedup (stream_id INTEGER NOT NULL, event_time INTEGER NOT NULL, key TEXT NOT NULL,
    seen_until INTEGER NOT NULL, PRIMARY KEY (stream_id, event_time, key)) WITHOUT ROWID;
CREATE TABLE spool (seq INTEGER PRIMARY KEY AUTOINCREMENT, stream_id INTEGER NOT NULL, key TEXT NOT NULL,
    event_time INTEGER NOT NULL, doc BLOB NOT NULL);
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE sinks (name TEXT PRIMARY KEY, offset INTEGER NOT NULL, delivered_total INTEGER NOT NULL DEFAULT 0,
    last_delivery_at REAL, last_error TEXT);
INSERT INTO streams (account, log_type, window_start) VALUES ('acme', 'ttp_url', 1000);
PRAGMA user_version = 4;
"""


def v4_file(path: Path) -> Path:
    """Six events spooled, the first two delivered and deleted, sink `siem` at offset 3."""
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA_4)
    for i in range(1, 7):
        conn.execute(
            "INSERT INTO spool (stream_id, key, event_time, doc) VALUES (1, ?, ?, ?)",
            (f"k{i}", 1000 + i, orjson.dumps({"id": f"k{i}"})),
        )
    conn.execute("DELETE FROM spool WHERE seq <= 2")
    conn.execute("INSERT INTO meta VALUES ('spool_bytes', (SELECT sum(length(doc)) FROM spool))")
    conn.execute("INSERT INTO sinks (name, offset) VALUES ('siem', 3)")
    conn.commit()
    conn.close()
    return path


async def test_a_schema_4_spool_is_carried_over_with_its_numbers_and_offsets(tmp_path: Path) -> None:
    """Every undelivered event keeps its number, key, time and document; the sink resumes where it
    was; new events are numbered after the highest number schema 4 ever gave out."""
    path = v4_file(tmp_path / "state.db")

    store = await Store.open(path)
    try:
        offset = await store.sink_offset("siem")
        rows = await store.read_spool(offset, 100)
        usage = await store.usage()
        await commit(store, ["new"])
        after = await store.read_spool(6, 100)
    finally:
        await store.close()

    assert offset == 3
    assert [(r.seq, r.key, r.event_time, orjson.loads(r.doc)) for r in rows] == [
        (i, f"k{i}", 1000 + i, {"id": f"k{i}"}) for i in (4, 5, 6)
    ]
    assert (usage.events, usage.first_seq, usage.last_seq) == (4, 3, 6)
    assert usage.bytes == sum(len(orjson.dumps({"id": f"k{i}"})) for i in range(3, 7))
    assert [(r.seq, r.key) for r in after] == [(7, "new")]
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "spool_v4" not in tables


async def test_status_reads_a_schema_4_spool_without_migrating_it(tmp_path: Path) -> None:
    """A read-only open beside an older collector counts its per-event spool and leaves the file at 4."""
    path = v4_file(tmp_path / "state.db")

    store = await Store.open(path, read_only=True)
    try:
        usage = await store.usage()
        [sink] = await store.sinks()
    finally:
        await store.close()

    assert (usage.events, usage.first_seq, usage.last_seq) == (4, 3, 6)
    assert sink["backlog"] == 3
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 4
