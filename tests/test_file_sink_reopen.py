"""The file sink's reopen (SIGHUP after logrotate): a fresh file at the path, no batch split, rotation intact."""

from __future__ import annotations

import threading
from pathlib import Path

import anyio
import pytest

from collector.sinks import file as file_sink
from collector.sinks.base import SinkError
from tests.test_file_sink import MakeSink, line, numbers, out


async def test_reopen_after_a_move_writes_to_a_new_file_at_the_path(make_file_sink: MakeSink, tmp_path: Path) -> None:
    """The file is moved away (logrotate), reopen: later batches go to a new file, earlier ones stay moved."""
    sink = make_file_sink()
    await sink.open()
    await sink.send_batch([out(1), out(2)])
    path = tmp_path / "out" / "events.jsonl"
    path.rename(tmp_path / "out" / "events.jsonl-old")

    await sink.reopen()
    await sink.send_batch([out(3)])

    assert (tmp_path / "out" / "events.jsonl-old").read_bytes() == line(1) + line(2)
    assert path.read_bytes() == line(3)


async def test_reopen_without_a_move_keeps_appending_to_the_same_file(make_file_sink: MakeSink, tmp_path: Path) -> None:
    """A SIGHUP with nothing rotated: the same file, appended after what is there."""
    sink = make_file_sink()
    await sink.open()
    await sink.send_batch([out(1)])

    await sink.reopen()
    await sink.send_batch([out(2)])

    assert (tmp_path / "out" / "events.jsonl").read_bytes() == line(1) + line(2)


async def test_reopen_of_a_closed_sink_creates_nothing(make_file_sink: MakeSink, tmp_path: Path) -> None:
    """Reopen after close (a SIGHUP while shutting down) leaves the sink closed and the path absent."""
    sink = make_file_sink()
    await sink.open()
    await sink.close()
    (tmp_path / "out" / "events.jsonl").unlink()

    await sink.reopen()

    assert list((tmp_path / "out").iterdir()) == []


async def test_reopen_waits_for_the_batch_being_written(
    make_file_sink: MakeSink, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reopen asked for mid-write takes effect after that batch: it lands whole in the old file."""
    writing, release = threading.Event(), threading.Event()
    real_write_all = file_sink.write_all

    def held_write_all(fd: int, payload: bytes) -> None:
        if payload == line(2) + line(3):
            writing.set()
            release.wait(10)
        real_write_all(fd, payload)

    monkeypatch.setattr(file_sink, "write_all", held_write_all)
    sink = make_file_sink()
    await sink.open()
    await sink.send_batch([out(1)])
    path = tmp_path / "out" / "events.jsonl"
    async with anyio.create_task_group() as tg:
        tg.start_soon(sink.send_batch, [out(2), out(3)])
        await anyio.to_thread.run_sync(writing.wait, 10)
        path.rename(tmp_path / "out" / "events.jsonl-old")  # logrotate moves it while the batch is written
        tg.start_soon(sink.reopen)
        await anyio.sleep(0.2)  # give an unserialized reopen the chance to swap the descriptor
        release.set()
    await sink.send_batch([out(4)])

    assert numbers(tmp_path / "out" / "events.jsonl-old") == [1, 2, 3]
    assert numbers(path) == [4]


async def test_size_rotation_still_works_after_a_reopen(make_file_sink: MakeSink, tmp_path: Path) -> None:
    """max_bytes 30 counts from the reopened file: it rotates to .1 after two more lines, nothing lost."""
    sink = make_file_sink(max_bytes=30, retention=3)
    await sink.open()
    await sink.send_batch([out(1), out(2)])
    (tmp_path / "out" / "events.jsonl").rename(tmp_path / "out" / "events.jsonl-old")

    await sink.reopen()
    for n in range(3, 7):
        await sink.send_batch([out(n)])

    directory = tmp_path / "out"
    assert sorted(p.name for p in directory.iterdir()) == ["events.jsonl", "events.jsonl-old", "events.jsonl.1"]
    assert numbers(directory / "events.jsonl-old") == [1, 2]
    assert numbers(directory / "events.jsonl.1") == [3, 4]
    assert numbers(directory / "events.jsonl") == [5, 6]


async def test_failed_reopen_is_retried_by_the_next_batch(make_file_sink: MakeSink, tmp_path: Path) -> None:
    """The path cannot be opened at SIGHUP: SinkError; once it can, the next batch opens it and lands."""
    sink = make_file_sink()
    await sink.open()
    await sink.send_batch([out(1)])
    directory = tmp_path / "out"
    directory.rename(tmp_path / "out-old")
    directory.write_text("a file where the directory was")

    with pytest.raises(SinkError, match="cannot open"):
        await sink.reopen()
    directory.unlink()
    await sink.send_batch([out(2)])

    assert numbers(tmp_path / "out-old" / "events.jsonl") == [1]
    assert numbers(directory / "events.jsonl") == [2]
