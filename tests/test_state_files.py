"""The state file, its SQLite side files and the lock on disk: private modes whatever the umask, one real path."""

from __future__ import annotations

import io
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import orjson
import pytest

from collector.logtypes.base import Event
from collector.state.db import StoreError
from collector.state.lock import StateLock
from collector.state.store import Store

# A crashed collector of an older version, run under umask 022: the state, -wal and -shm stay behind, 0644.
LEAVE_LOOSE_STATE = """
import os, sqlite3, sys
os.umask(0o022)
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("PRAGMA journal_mode = WAL")
db.execute("CREATE TABLE t (x)")
db.execute("INSERT INTO t VALUES (1)")
open(sys.argv[1] + ".lock", "ab").close()
os._exit(0)
"""


@pytest.fixture
def umask() -> Iterator[None]:
    """Restores the process umask a test changes."""
    original = os.umask(0o022)
    yield
    os.umask(original)


def modes(state: Path) -> dict[str, str]:
    """Octal mode of the state file and of each file beside it that shares its name."""
    return {p.name: f"{stat.S_IMODE(p.stat().st_mode):04o}" for p in sorted(state.parent.glob(state.name + "*"))}


async def commit_one(store: Store) -> None:
    state = await store.stream("acme", "ttp_url", start=0)
    await store.commit_page([Event("k1", 10, {"k": "k1"})], state.window_done(20), seen_until=20, now=30.0)


@pytest.mark.parametrize("mask", [0o022, 0o000], ids=["umask-022", "umask-000"])
async def test_new_state_wal_shm_and_lock_are_0600_whatever_the_umask(tmp_path: Path, umask: None, mask: int) -> None:
    """A fresh state under a loose umask: the database, -wal, -shm and .lock are all created 0600."""
    os.umask(mask)
    state = tmp_path / "state" / "collector.db"
    lock = StateLock(state)
    lock.acquire()
    store = await Store.open(state)
    try:
        await commit_one(store)
        seen = modes(state)
    finally:
        await store.close()
        lock.release()
    assert seen == {
        "collector.db": "0600",
        "collector.db-shm": "0600",
        "collector.db-wal": "0600",
        "collector.db.lock": "0600",
    }


async def test_existing_loose_state_files_are_narrowed_with_one_warning_each(
    tmp_path: Path, umask: None, log_buffer: io.StringIO
) -> None:
    """State, -wal, -shm and .lock left 0644 by an older run become 0600, each named in one warning."""
    state = tmp_path / "collector.db"
    await anyio.run_process([sys.executable, "-c", LEAVE_LOOSE_STATE, str(state)])
    assert set(modes(state).values()) == {"0644"}

    lock = StateLock(state)
    lock.acquire()
    store = await Store.open(state)
    try:
        await commit_one(store)
        seen = modes(state)
    finally:
        await store.close()
        lock.release()
    assert seen == {
        "collector.db": "0600",
        "collector.db-shm": "0600",
        "collector.db-wal": "0600",
        "collector.db.lock": "0600",
    }
    warnings = [
        (Path(line["path"]).name, line["mode_was"], line["mode"])
        for line in map(orjson.loads, log_buffer.getvalue().splitlines())
        if line["event"] == "state_file_mode_tightened"
    ]
    assert sorted(warnings) == [
        ("collector.db", "0644", "0600"),
        ("collector.db-shm", "0644", "0600"),
        ("collector.db-wal", "0644", "0600"),
        ("collector.db.lock", "0644", "0600"),
    ]


async def test_private_state_files_are_left_alone_without_warning(
    tmp_path: Path, umask: None, log_buffer: io.StringIO
) -> None:
    """Reopening a state that is already 0600 changes nothing and warns about nothing."""
    for _ in range(2):
        lock = StateLock(tmp_path / "collector.db")
        lock.acquire()
        store = await Store.open(tmp_path / "collector.db")
        await commit_one(store)
        await store.close()
        lock.release()
    assert "state_file_mode_tightened" not in log_buffer.getvalue()
    assert modes(tmp_path / "collector.db") == {"collector.db": "0600", "collector.db.lock": "0600"}


def test_lock_through_a_symlink_meets_the_lock_of_the_real_file(tmp_path: Path) -> None:
    """A state path that is a symlink to a locked state file is refused: the lock goes by the real path."""
    real = tmp_path / "real" / "collector.db"
    real.parent.mkdir()
    real.touch()
    link = tmp_path / "elsewhere" / "collector.db"
    link.parent.mkdir()
    link.symlink_to(real)
    first = StateLock(real)
    first.acquire()
    try:
        second = StateLock(link)
        with pytest.raises(StoreError, match=r"another collector is using .*real/collector\.db; stop it first"):
            second.acquire()
    finally:
        first.release()
    assert not (tmp_path / "elsewhere" / "collector.db.lock").exists()


def test_a_symlink_in_place_of_the_lock_file_is_not_followed(tmp_path: Path, umask: None) -> None:
    """A symlink planted as the .lock file: refused with the lock error; its target is neither locked nor changed."""
    target = tmp_path / "someone-elses-file"
    target.write_text("keep me")
    target.chmod(0o644)
    (tmp_path / "collector.db.lock").symlink_to(target)

    with pytest.raises(StoreError, match=r"^cannot create lock file .*collector\.db\.lock: Too many levels"):
        StateLock(tmp_path / "collector.db").acquire()

    assert (target.read_text(), f"{stat.S_IMODE(target.stat().st_mode):04o}") == ("keep me", "0644")
