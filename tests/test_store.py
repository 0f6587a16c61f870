"""The store's guarantees on both backends (streams, dedup, the spool, sink offsets, reopening), and
the SQLite file's own failures (corruption, side connections, page size, read-only opens)."""

from __future__ import annotations

import functools
import gc
import random
import sqlite3
import subprocess
import sys
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from collector.logtypes.base import Event
from collector.state.base import StateStore
from collector.state.db import StoreError
from collector.state.store import PageResult, SpoolRow, Store, StreamState

START = 1_000
CORRUPT = random.Random(7).randbytes(8192)


def ev(key: str, time: int = 100) -> Event:
    return Event(key, time, {"k": key})


def doc(key: str) -> bytes:
    return b'{"k":"' + key.encode() + b'"}'


def dedup_keys(path: Path) -> list[tuple[int, str, int]]:
    """The dedup table as a second, plain sqlite3 connection sees it."""
    with sqlite3.connect(path) as db:
        return db.execute("SELECT stream_id, key, seen_until FROM dedup ORDER BY stream_id, key").fetchall()


@pytest.fixture
def store(state_store: StateStore) -> StateStore:
    """A fresh store, on each backend."""
    return state_store


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[Store]:
    """A fresh SQLite store on a real file, for tests that reach into the file; closed after the test."""
    opened = await Store.open(tmp_path / "state.db")
    yield opened
    await opened.close()


@pytest.fixture
def reap_leaked_connections() -> Iterator[None]:
    """Collect connections a failed open left behind (see the hang test), so pytest itself can exit."""
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


# --- streams ---------------------------------------------------------------------------------------


async def test_stream_is_created_at_start_once(store: StateStore) -> None:
    """The first call creates the stream at `start`; later calls return the saved state and ignore `start`."""
    first = await store.stream("acme", "ttp_url", start=START)
    await store.commit_page([], first.next_page(2_000, "tok-1"), seen_until=2_000, now=5.0)

    again = await store.stream("acme", "ttp_url", start=9_999)

    assert first == StreamState(first.id, "acme", "ttp_url", START, None, None)
    assert again == StreamState(first.id, "acme", "ttp_url", START, 2_000, "tok-1")


async def test_streams_of_other_accounts_and_types_are_separate(store: StateStore) -> None:
    """Each (account, log type) pair is its own stream with its own id and start."""
    a = await store.stream("acme", "ttp_url", start=1)
    b = await store.stream("acme", "archive_search", start=2)
    c = await store.stream("other", "ttp_url", start=3)

    assert len({a.id, b.id, c.id}) == 3
    assert (a.window_start, b.window_start, c.window_start) == (1, 2, 3)


# --- commit_page and dedup -------------------------------------------------------------------------


async def test_commit_page_spools_new_events_and_counts_duplicates(store: StateStore) -> None:
    """Duplicates within a page and against earlier pages are counted, not spooled; the position is saved.

    A key always comes with the same event time (every log type's key covers its time field).
    """
    state = await store.stream("acme", "ttp_url", start=START)

    first = await store.commit_page(
        [ev("a", 10), ev("b", 11), ev("a", 10)], state.next_page(2_000, "t1"), seen_until=2_000, now=5.0
    )
    second = await store.commit_page(
        [ev("b", 11), ev("c", 13), ev("c", 13), ev("a", 10)], state.window_done(2_000), seen_until=2_000, now=6.0
    )

    assert first == PageResult(new=2, duplicates=1)
    assert second == PageResult(new=1, duplicates=3)
    assert await store.read_spool(0, 100) == [
        SpoolRow(1, "a", 10, doc("a"), "acme", "ttp_url"),
        SpoolRow(2, "b", 11, doc("b"), "acme", "ttp_url"),
        SpoolRow(3, "c", 13, doc("c"), "acme", "ttp_url"),
    ]
    assert await store.stream("acme", "ttp_url", start=0) == StreamState(state.id, "acme", "ttp_url", 2_000, None, None)
    [row] = await store.streams()
    assert row["events_total"] == 3
    assert row["last_success_at"] == 6.0


async def test_failed_commit_changes_neither_dedup_nor_position(sqlite_store: Store) -> None:
    """The spool INSERT fails mid-transaction: dedup keys and the stream position stay as they were."""
    state = await sqlite_store.stream("acme", "ttp_url", start=START)
    await sqlite_store.commit_page([ev("a")], state.next_page(2_000, "t1"), seen_until=2_000, now=5.0)
    with sqlite3.connect(sqlite_store.path) as other:
        other.execute("DROP TABLE spool")

    with pytest.raises(StoreError, match="no such table: spool"):
        await sqlite_store.commit_page([ev("a"), ev("b")], state.window_done(2_000), seen_until=3_000, now=6.0)

    assert dedup_keys(sqlite_store.path) == [(state.id, "a", 2_000)]
    assert await sqlite_store.stream("acme", "ttp_url", start=0) == StreamState(
        state.id, "acme", "ttp_url", START, 2_000, "t1"
    )


async def test_every_read_turns_a_sqlite_failure_into_a_store_error(sqlite_store: Store) -> None:
    """Reads outside a transaction fail like commits do: a StoreError that says why (exit 74), never a
    raw sqlite3 error (which would crash the collector with exit 70)."""
    await sqlite_store.stream("acme", "ttp_url", start=START)
    await sqlite_store.sink_offset("siem")
    with sqlite3.connect(sqlite_store.path) as other:
        other.execute("DROP TABLE spool")
        other.execute("DROP TABLE sinks")
        other.execute("DROP TABLE streams")

    reads: list[Callable[[], Awaitable[object]]] = [
        sqlite_store.usage,
        functools.partial(sqlite_store.backlog, 0),
        functools.partial(sqlite_store.read_spool, 0, 10),
        sqlite_store.sinks,
        sqlite_store.streams,
    ]
    for read in reads:
        with pytest.raises(StoreError, match="no such table"):
            await read()


async def test_commit_failing_at_the_position_update_spools_nothing(sqlite_store: Store) -> None:
    """The last statement (position update) fails: the page's spool rows and dedup keys are rolled back too."""
    state = await sqlite_store.stream("acme", "ttp_url", start=START)
    with sqlite3.connect(sqlite_store.path) as other:
        other.execute("CREATE TRIGGER refuse BEFORE UPDATE ON streams BEGIN SELECT RAISE(ABORT, 'refused'); END")

    with pytest.raises(StoreError, match="refused"):
        await sqlite_store.commit_page([ev("a"), ev("b")], state.window_done(2_000), seen_until=2_000, now=5.0)

    assert await sqlite_store.read_spool(0, 100) == []
    assert dedup_keys(sqlite_store.path) == []
    with sqlite3.connect(sqlite_store.path) as other:
        other.execute("DROP TRIGGER refuse")
    retried = await sqlite_store.commit_page([ev("a"), ev("b")], state.window_done(2_000), seen_until=2_000, now=6.0)
    assert retried == PageResult(new=2, duplicates=0)
    assert [r.key for r in await sqlite_store.read_spool(0, 100)] == ["a", "b"]


async def test_commit_runs_without_yielding_to_other_tasks(sqlite_store: Store) -> None:
    """No other task runs between BEGIN and COMMIT: a page's transaction cannot be cut by a cancel."""
    state = await sqlite_store.stream("acme", "ttp_url", start=START)
    ticks = [0]
    seen: dict[str, int] = {}

    def trace(statement: str) -> None:
        for word in ("BEGIN", "COMMIT"):
            if statement.startswith(word):
                seen[word] = ticks[0]

    async def ticker() -> None:
        while True:
            ticks[0] += 1
            await anyio.lowlevel.checkpoint()

    sqlite_store._db._conn.set_trace_callback(trace)
    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        await anyio.sleep(0.01)
        await sqlite_store.commit_page(
            [ev(str(i)) for i in range(400)], state.window_done(2_000), seen_until=2_000, now=5.0
        )
        tg.cancel_scope.cancel()
    assert seen["BEGIN"] == seen["COMMIT"] > 0


async def test_commit_cancelled_while_queued_leaves_nothing(sqlite_store: Store) -> None:
    """A commit cancelled while it waits for the store leaves no trace, and the store stays usable."""
    state = await sqlite_store.stream("acme", "ttp_url", start=START)
    async with sqlite_store._lock, anyio.create_task_group() as tg:  # the lock: another transaction is running
        tg.start_soon(
            functools.partial(sqlite_store.commit_page, [ev("a")], state.window_done(2_000), seen_until=2_000, now=5.0)
        )
        await anyio.sleep(0.05)
        tg.cancel_scope.cancel()

    assert dedup_keys(sqlite_store.path) == []
    assert await sqlite_store.read_spool(0, 100) == []
    assert await sqlite_store.stream("acme", "ttp_url", start=0) == state
    again = await sqlite_store.commit_page([ev("a")], state.window_done(2_000), seen_until=2_000, now=6.0)
    assert again == PageResult(new=1, duplicates=0)


async def test_dedup_is_per_stream(store: StateStore) -> None:
    """The same key in two streams is spooled once for each."""
    url = await store.stream("acme", "ttp_url", start=START)
    search = await store.stream("acme", "archive_search", start=START)

    first = await store.commit_page([ev("same")], url.window_done(2_000), seen_until=2_000, now=5.0)
    second = await store.commit_page([ev("same")], search.window_done(2_000), seen_until=2_000, now=5.0)

    assert (first, second) == (PageResult(1, 0), PageResult(1, 0))
    assert [r.key for r in await store.read_spool(0, 100)] == ["same", "same"]


async def test_prune_before_drops_old_keys_of_that_stream_only(store: StateStore) -> None:
    """Keys first seen before `prune_before` are forgotten for that stream; other streams' keys stay.

    A key keeps the end of the window that first returned it: the API answered it for a query ending
    there, so once windows start past that point (plus overlap) it cannot come back.
    """
    url = await store.stream("acme", "ttp_url", start=START)
    search = await store.stream("acme", "archive_search", start=START)
    await store.commit_page([ev("old"), ev("kept")], url.window_done(2_000), seen_until=100, now=5.0)
    await store.commit_page([ev("old")], search.window_done(2_000), seen_until=100, now=5.0)
    again = await store.commit_page([ev("kept"), ev("new")], url.window_done(3_000), seen_until=300, now=6.0)
    assert again == PageResult(new=1, duplicates=1)

    await store.commit_page([], url.window_done(4_000), seen_until=400, prune_before=200, now=7.0)

    # Through the store itself, so both backends answer: a forgotten key is new again, a kept one is not.
    search_again = await store.commit_page([ev("old")], search.window_done(5_000), seen_until=500, now=8.0)
    assert search_again == PageResult(new=0, duplicates=1)
    url_again = await store.commit_page(
        [ev("new"), ev("old"), ev("kept")], url.window_done(5_000), seen_until=500, now=8.0
    )
    assert url_again == PageResult(new=2, duplicates=1)
    assert [r.key for r in await store.read_spool(0, 100)][-2:] == ["old", "kept"]


# --- spool and sinks -------------------------------------------------------------------------------


async def fill(store: StateStore, keys: list[str]) -> None:
    state = await store.stream("acme", "ttp_url", start=START)
    await store.commit_page([ev(k) for k in keys], state.window_done(2_000), seen_until=2_000, now=5.0)


async def test_read_spool_returns_rows_after_offset_in_order_with_limit(store: StateStore) -> None:
    """Rows strictly after the offset, in seq order, at most `limit` of them."""
    await fill(store, ["a", "b", "c", "d", "e"])

    rows = await store.read_spool(2, 2)

    assert rows == [
        SpoolRow(3, "c", 100, doc("c"), "acme", "ttp_url"),
        SpoolRow(4, "d", 100, doc("d"), "acme", "ttp_url"),
    ]
    assert [r.seq for r in await store.read_spool(4, 10)] == [5]
    assert await store.read_spool(5, 10) == []


async def test_ack_deletes_only_rows_every_sink_has(store: StateStore) -> None:
    """A fast sink's ack keeps rows the slow sink still needs; the slow sink's ack then frees them."""
    await fill(store, ["a", "b", "c", "d", "e"])
    assert (await store.sink_offset("fast"), await store.sink_offset("slow")) == (0, 0)

    await store.ack("fast", 4, 4, now=10.0, sinks=["fast", "slow"])
    assert [r.seq for r in await store.read_spool(0, 100)] == [1, 2, 3, 4, 5]

    await store.ack("slow", 2, 2, now=11.0, sinks=["fast", "slow"])
    assert [r.seq for r in await store.read_spool(0, 100)] == [3, 4, 5]
    assert (await store.sink_offset("fast"), await store.sink_offset("slow")) == (4, 2)


async def test_new_sink_starts_at_zero_and_sees_everything_still_spooled(store: StateStore) -> None:
    """A sink added later starts at offset 0 and reads every row not yet deleted."""
    await fill(store, ["a", "b", "c", "d"])
    await store.sink_offset("old")
    await store.ack("old", 2, 2, now=10.0, sinks=["old"])

    offset = await store.sink_offset("new")

    assert offset == 0
    assert [r.key for r in await store.read_spool(offset, 100)] == ["c", "d"]
    await store.ack("old", 4, 2, now=11.0, sinks=["old", "new"])
    assert [r.key for r in await store.read_spool(0, 100)] == ["c", "d"]


async def test_configured_sink_without_offset_blocks_deletion(store: StateStore) -> None:
    """A configured sink that never registered an offset keeps every row spooled."""
    await fill(store, ["a", "b"])
    await store.sink_offset("one")

    await store.ack("one", 2, 2, now=10.0, sinks=["one", "not_started_yet"])

    assert [r.seq for r in await store.read_spool(0, 100)] == [1, 2]


async def test_seq_is_never_reused_after_deletion(open_state: Callable[[], Awaitable[StateStore]]) -> None:
    """After every row is delivered and deleted, new rows get higher seq numbers (also after reopening)."""
    store = await open_state()
    await fill(store, ["a", "b", "c"])
    await store.sink_offset("only")
    await store.ack("only", 3, 3, now=10.0, sinks=["only"])
    assert await store.read_spool(0, 100) == []

    state = await store.stream("acme", "ttp_url", start=START)
    await store.commit_page([ev("d")], state.window_done(3_000), seen_until=3_000, now=11.0)
    await store.close()
    reopened = await open_state()
    await reopened.commit_page([ev("e")], state.window_done(4_000), seen_until=4_000, now=12.0)
    rows = await reopened.read_spool(0, 100)

    assert [(r.seq, r.key) for r in rows] == [(4, "d"), (5, "e")]


# --- errors, resets, reporting ---------------------------------------------------------------------


async def test_reset_stream_rewinds_and_clears_paging_and_errors(store: StateStore) -> None:
    """reset_stream sets window_start, clears window_end, page token, last error and fatal."""
    state = await store.stream("acme", "ttp_url", start=START)
    await store.commit_page([ev("a")], state.next_page(5_000, "tok"), seen_until=5_000, now=5.0)
    await store.record_error(state.id, "403 forbidden", fatal=True, now=6.0)

    assert await store.reset_stream("acme", "ttp_url", 500) is True

    assert await store.stream("acme", "ttp_url", start=0) == StreamState(state.id, "acme", "ttp_url", 500, None, None)
    [row] = await store.streams()
    assert (row["last_error"], row["fatal"], row["paging"]) == (None, 0, 0)


async def test_reset_stream_creates_a_missing_stream(store: StateStore) -> None:
    """Resetting a stream that does not exist yet creates it at the given start."""
    assert await store.reset_stream("acme", "archive_search", 777) is True

    state = await store.stream("acme", "archive_search", start=0)

    assert (state.window_start, state.window_end, state.page_token) == (777, None, None)


async def test_record_error_and_streams_report(store: StateStore) -> None:
    """streams() shows position, paging, last error and fatal; a successful commit clears the error."""
    state = await store.stream("acme", "ttp_url", start=START)
    await store.commit_page([ev("a"), ev("b")], state.next_page(2_000, "t"), seen_until=2_000, now=5.0)
    await store.record_error(state.id, "binding expired", fatal=True, now=9.0)

    assert await store.streams() == [
        {
            "account": "acme",
            "log_type": "ttp_url",
            "window_start": START,
            "window_end": 2_000,
            "paging": 1,
            "events_total": 2,
            "last_success_at": 5.0,
            "last_error": "binding expired",
            "last_error_at": 9.0,
            "fatal": 1,
            "waiting_until": None,
            "waiting_reason": None,
            "cursor": None,
        }
    ]
    await store.commit_page([], state.window_done(2_000), seen_until=2_000, now=10.0)
    [row] = await store.streams()
    assert (row["last_error"], row["fatal"], row["paging"]) == (None, 0, 0)


async def test_sinks_report_offset_delivered_error_and_backlog(store: StateStore) -> None:
    """sinks() shows each sink's offset, total delivered, last error and backlog; an ack clears the error."""
    await fill(store, ["a", "b", "c"])
    await store.sink_offset("siem")
    await store.sink_offset("file")
    await store.ack("file", 1, 1, now=20.0, sinks=["siem", "file"])
    await store.record_sink_error("siem", "connection refused")

    assert await store.sinks() == [
        {
            "name": "file",
            "offset": 1,
            "delivered_total": 1,
            "last_delivery_at": 20.0,
            "last_error": None,
            "backlog": 2,
        },
        {
            "name": "siem",
            "offset": 0,
            "delivered_total": 0,
            "last_delivery_at": None,
            "last_error": "connection refused",
            "backlog": 3,
        },
    ]
    assert await store.backlog(1) == 2
    await store.ack("siem", 3, 3, now=21.0, sinks=["siem", "file"])
    [_, siem] = await store.sinks()
    assert (siem["last_error"], siem["backlog"], siem["delivered_total"]) == (None, 0, 3)


# --- reopening; the SQLite file: corruption, bad paths -------------------------------------------------------


async def test_state_survives_reopen(open_state: Callable[[], Awaitable[StateStore]]) -> None:
    """Close and open again: stream positions, dedup keys, spool rows and sink offsets are all there."""
    first = await open_state()
    state = await first.stream("acme", "ttp_url", start=START)
    await first.commit_page([ev("a"), ev("b")], state.next_page(2_000, "tok"), seen_until=2_000, now=5.0)
    await first.sink_offset("siem")
    await first.ack("siem", 1, 1, now=6.0, sinks=["siem", "file"])
    await first.close()

    second = await open_state()
    assert await second.stream("acme", "ttp_url", start=0) == StreamState(
        state.id, "acme", "ttp_url", START, 2_000, "tok"
    )
    assert await second.sink_offset("siem") == 1
    assert [r.key for r in await second.read_spool(0, 100)] == ["a", "b"]
    again = await second.commit_page([ev("a")], state.window_done(2_000), seen_until=2_000, now=7.0)
    assert again == PageResult(new=0, duplicates=1)


def page_size(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("PRAGMA page_size").fetchone()[0])


async def test_new_state_file_uses_16k_pages_and_a_4k_file_keeps_working(tmp_path: Path) -> None:
    """New files get 16 KiB pages (cheaper commits); a file from before keeps its 4 KiB pages and works."""
    fresh = await Store.open(tmp_path / "new.db")
    await fresh.close()
    assert page_size(tmp_path / "new.db") == 16384

    old = tmp_path / "old.db"
    with sqlite3.connect(old) as db:
        db.execute("PRAGMA page_size = 4096")
        db.execute("CREATE TABLE placeholder (x)")  # the page size is fixed once the file has content
    store = await Store.open(old)
    try:
        state = await store.stream("acme", "ttp_url", start=START)
        page = await store.commit_page([ev("a")], state.window_done(2_000), seen_until=2_000, now=5.0)
        assert page == PageResult(new=1, duplicates=0)
        assert [r.key for r in await store.read_spool(0, 10)] == ["a"]
    finally:
        await store.close()
    assert page_size(old) == 4096


async def test_read_only_open_reads_existing_state(tmp_path: Path) -> None:
    """A read-only store (as `status` uses) sees what the writer saved."""
    path = tmp_path / "state.db"
    writer = await Store.open(path)
    await writer.stream("acme", "ttp_url", start=START)
    await writer.close()

    reader = await Store.open(path, read_only=True)
    try:
        assert [(s["account"], s["window_start"]) for s in await reader.streams()] == [("acme", START)]
    finally:
        await reader.close()


@pytest.mark.usefixtures("reap_leaked_connections")
async def test_open_corrupt_file_says_corrupt_and_what_to_do(tmp_path: Path) -> None:
    """A file of random bytes: StoreError says it is corrupt and to move it aside."""
    path = tmp_path / "state.db"
    path.write_bytes(CORRUPT)

    with pytest.raises(StoreError) as raised:
        await Store.open(path)

    message = str(raised.value)
    assert message.startswith(f"state file {path} is corrupt (file is not a database)")
    assert "stop the collector, move the file aside and start again" in message


@pytest.mark.usefixtures("reap_leaked_connections")
async def test_read_only_open_of_corrupt_file_says_corrupt(tmp_path: Path) -> None:
    """`status` on a corrupt file gets the same corrupt-file message."""
    path = tmp_path / "state.db"
    path.write_bytes(CORRUPT)

    with pytest.raises(StoreError, match=r"is corrupt \(file is not a database\)"):
        await Store.open(path, read_only=True)


def test_failed_open_does_not_keep_the_process_alive(tmp_path: Path) -> None:
    """A process whose Store.open failed on a corrupt file exits on its own (no leftover worker thread)."""
    path = tmp_path / "state.db"
    path.write_bytes(CORRUPT)
    path.chmod(0o600)  # as the collector leaves it, so no mode warning joins the output
    script = (
        "import asyncio, sys\n"
        "from pathlib import Path\n"
        "from collector.state.db import StoreError\n"
        "from collector.state.store import Store\n"
        "async def main():\n"
        "    try:\n"
        "        await Store.open(Path(sys.argv[1]))\n"
        "    except StoreError:\n"
        "        print('store error')\n"
        "asyncio.run(main())\n"
    )
    try:
        done = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, timeout=8, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail("process still running 8 s after Store.open raised: the aiosqlite connection was never closed")
    assert (done.returncode, done.stdout) == (0, b"store error\n")


async def test_open_under_a_regular_file_says_what_to_fix(tmp_path: Path) -> None:
    """The state path's parent is a regular file: StoreError names the path and says to fix the directory."""
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("x")
    path = blocker / "state.db"

    with pytest.raises(StoreError) as raised:
        await Store.open(path)

    message = str(raised.value)
    assert str(path) in message
    assert "check that its directory exists and is writable" in message


async def test_read_only_open_of_missing_file_fails(tmp_path: Path) -> None:
    """A read-only open of a file that does not exist raises StoreError and creates nothing."""
    path = tmp_path / "missing.db"

    with pytest.raises(StoreError, match="does not exist yet; run the collector first"):
        await Store.open(path, read_only=True)

    assert not path.exists()


async def test_raw_kept_record_is_a_duplicate_in_the_next_window(store: StateStore) -> None:
    """A record kept raw takes its window's end as time; fetched again by the next window it is still a duplicate."""
    state = await store.stream("acme", "ttp_url", start=START)
    first = await store.commit_page(
        [Event("broken", 2_000, {"k": "broken"}, normalized=False)], state.window_done(2_000), seen_until=2_000, now=1.0
    )
    again = await store.commit_page(
        [Event("broken", 3_000, {"k": "broken"}, normalized=False)], state.window_done(3_000), seen_until=3_000, now=2.0
    )
    assert (first, again) == (PageResult(new=1, duplicates=0), PageResult(new=0, duplicates=1))


async def test_a_cursor_commits_with_its_events_and_reset_clears_it(store: StateStore) -> None:
    """A non-windowed stream's cursor is saved in the events' transaction, survives reopening, and
    `reset` clears it so the stream begins again at the new start."""
    state = await store.stream("acme", "siem_cg.receipt", start=START)
    moved = state.moved_to('{"page": "p2", "file": 1, "lines": 300}', newest=START + 50)
    result = await store.commit_page([ev("a"), ev("b")], moved, seen_until=START + 50, now=5.0)

    assert result == PageResult(new=2, duplicates=0)
    again = await store.stream("acme", "siem_cg.receipt", start=0)
    assert (again.cursor, again.window_start) == ('{"page": "p2", "file": 1, "lines": 300}', START + 50)
    # newest never moves the position back
    assert again.moved_to("{}", newest=START).window_start == START + 50

    await store.reset_stream("acme", "siem_cg.receipt", 500)
    rewound = await store.stream("acme", "siem_cg.receipt", start=0)
    assert (rewound.cursor, rewound.window_start) == (None, 500)
