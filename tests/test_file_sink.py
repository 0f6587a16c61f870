"""The file sink on real files: appending, permissions, rotation, torn-tail repair, bad paths, settings."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from collector.config.errors import ConfigError
from collector.sinks.base import OutEvent, SinkError
from collector.sinks.file import FileSink, FileSinkSettings, write_all

MakeSink = Callable[..., FileSink]


def out(n: int) -> OutEvent:
    """Event number ``n``; its line is 11 bytes (12 with the newline)."""
    doc = b'{"n":"%03d"}' % n
    return OutEvent(f"key-{n:03d}", 1_700_000_000 + n, doc, doc)


def line(n: int) -> bytes:
    return b'{"n":"%03d"}\n' % n


def numbers(path: Path) -> list[int]:
    return [int(raw[6:9]) for raw in path.read_bytes().splitlines()]


@pytest.fixture
def umask() -> Iterator[Callable[[int], int]]:
    """Set the process umask for a test (os.umask); the original one is restored afterwards."""
    original = os.umask(0o022)
    yield os.umask
    os.umask(original)


async def test_send_batch_appends_one_line_per_event(make_file_sink: MakeSink, tmp_path: Path) -> None:
    """Each event becomes one line ending in a newline; a second batch is appended after the first."""
    sink = make_file_sink()
    await sink.open()

    await sink.send_batch([out(1), out(2)])
    await sink.send_batch([out(3)])

    assert sink.settings.fsync is True
    assert (tmp_path / "out" / "events.jsonl").read_bytes() == line(1) + line(2) + line(3)


async def test_empty_batch_writes_nothing(make_file_sink: MakeSink, tmp_path: Path) -> None:
    """An empty batch leaves the file untouched (no stray newline)."""
    sink = make_file_sink()
    await sink.open()

    await sink.send_batch([])

    assert (tmp_path / "out" / "events.jsonl").read_bytes() == b""


async def test_appends_to_existing_file_after_reopen(make_file_sink: MakeSink, tmp_path: Path) -> None:
    """A second sink on the same file (a restart) appends after what is there."""
    first = make_file_sink()
    await first.open()
    await first.send_batch([out(1)])
    await first.close()

    second = make_file_sink()
    await second.open()
    await second.send_batch([out(2)])

    assert (tmp_path / "out" / "events.jsonl").read_bytes() == line(1) + line(2)


@pytest.mark.parametrize("mask", [0o022, 0o077])
async def test_new_file_mode_is_0640_whatever_the_umask(
    make_file_sink: MakeSink, tmp_path: Path, umask: Callable[[int], int], mask: int
) -> None:
    """The new file gets file_mode 0640 exactly, whether the umask would widen or narrow it."""
    sink = make_file_sink()
    umask(mask)

    await sink.open()
    await sink.send_batch([out(1)])

    assert stat.S_IMODE((tmp_path / "out" / "events.jsonl").stat().st_mode) == 0o640


async def test_configured_file_mode_is_applied(
    make_file_sink: MakeSink, tmp_path: Path, umask: Callable[[int], int]
) -> None:
    """file_mode "0600" gives a 0600 file under a permissive umask."""
    sink = make_file_sink(file_mode="0600")
    umask(0o000)

    await sink.open()

    assert stat.S_IMODE((tmp_path / "out" / "events.jsonl").stat().st_mode) == 0o600


async def test_rotation_keeps_retention_files_without_loss_or_duplicates(
    make_file_sink: MakeSink, tmp_path: Path
) -> None:
    """max_bytes 30 (two 12-byte lines): 10 events end as .3 .2 .1 and current, oldest file dropped."""
    sink = make_file_sink(max_bytes=30, retention=3)
    await sink.open()

    for n in range(1, 11):
        await sink.send_batch([out(n)])

    directory = tmp_path / "out"
    assert sorted(p.name for p in directory.iterdir()) == [
        "events.jsonl",
        "events.jsonl.1",
        "events.jsonl.2",
        "events.jsonl.3",
    ]
    assert numbers(directory / "events.jsonl.3") == [3, 4]
    assert numbers(directory / "events.jsonl.2") == [5, 6]
    assert numbers(directory / "events.jsonl.1") == [7, 8]
    assert numbers(directory / "events.jsonl") == [9, 10]
    assert all(p.read_bytes().endswith(b"\n") for p in directory.iterdir())


async def test_rotation_with_ample_retention_keeps_every_event_once(make_file_sink: MakeSink, tmp_path: Path) -> None:
    """Batches of 2 and 3 events across rotations: every event is in exactly one file, in order, none split."""
    sink = make_file_sink(max_bytes=40, retention=50)
    await sink.open()

    for start in range(1, 26, 5):
        await sink.send_batch([out(start), out(start + 1)])
        await sink.send_batch([out(start + 2), out(start + 3), out(start + 4)])

    directory = tmp_path / "out"
    files = sorted(directory.iterdir(), key=lambda p: -int(p.suffix[1:]) if p.suffix[1:].isdigit() else 0)
    everything = [n for path in files for n in numbers(path)]
    assert everything == list(range(1, 26))
    assert len(files) == 10
    assert all(p.read_bytes().endswith(b"\n") for p in files)
    assert all(p.stat().st_size <= 40 for p in files)


async def test_retention_zero_keeps_no_rotated_file(make_file_sink: MakeSink, tmp_path: Path) -> None:
    """retention 0: rotation discards the full file; only the current one exists."""
    sink = make_file_sink(max_bytes=30, retention=0)
    await sink.open()

    for n in range(1, 6):
        await sink.send_batch([out(n)])

    directory = tmp_path / "out"
    assert [p.name for p in directory.iterdir()] == ["events.jsonl"]
    assert numbers(directory / "events.jsonl") == [5]


async def test_rotated_file_keeps_configured_mode(make_file_sink: MakeSink, tmp_path: Path) -> None:
    """The file opened after a rotation is new and gets file_mode too."""
    sink = make_file_sink(max_bytes=12, retention=1, file_mode="0600")
    await sink.open()

    await sink.send_batch([out(1)])
    await sink.send_batch([out(2)])

    directory = tmp_path / "out"
    assert numbers(directory / "events.jsonl.1") == [1]
    assert numbers(directory / "events.jsonl") == [2]
    assert stat.S_IMODE((directory / "events.jsonl").stat().st_mode) == 0o600


async def test_torn_last_line_is_trimmed_on_open(make_file_sink: MakeSink, tmp_path: Path) -> None:
    """A file ending in half a line (crash mid-write) is cut back to its last newline; writes continue there."""
    path = tmp_path / "out" / "events.jsonl"
    path.parent.mkdir()
    path.write_bytes(line(1) + line(2) + b'{"n":"0')
    sink = make_file_sink()

    await sink.open()
    assert path.read_bytes() == line(1) + line(2)
    await sink.send_batch([out(3)])

    assert path.read_bytes() == line(1) + line(2) + line(3)


async def test_torn_line_longer_than_a_read_chunk_is_trimmed(make_file_sink: MakeSink, tmp_path: Path) -> None:
    """A torn last line of 200 KiB (beyond the 64 KiB tail chunk) is still cut back to the last newline."""
    path = tmp_path / "out" / "events.jsonl"
    path.parent.mkdir()
    path.write_bytes(line(1) + b'{"n":"' + b"x" * 200_000)
    sink = make_file_sink()

    await sink.open()

    assert path.read_bytes() == line(1)


async def test_file_with_only_a_partial_line_becomes_empty(make_file_sink: MakeSink, tmp_path: Path) -> None:
    """A file holding nothing but an unterminated line is emptied."""
    path = tmp_path / "out" / "events.jsonl"
    path.parent.mkdir()
    path.write_bytes(b'{"n":"00')
    sink = make_file_sink()

    await sink.open()

    assert path.read_bytes() == b""


async def test_file_ending_with_newline_is_untouched(make_file_sink: MakeSink, tmp_path: Path) -> None:
    """A complete file keeps every byte and its mode."""
    path = tmp_path / "out" / "events.jsonl"
    path.parent.mkdir()
    path.write_bytes(line(1) + line(2))
    path.chmod(0o644)
    sink = make_file_sink()

    await sink.open()

    assert path.read_bytes() == line(1) + line(2)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


async def test_parent_directories_are_created(make_file_sink: MakeSink, tmp_path: Path) -> None:
    """Missing parent directories of the target are created on open."""
    path = tmp_path / "a" / "b" / "c" / "events.jsonl"
    sink = make_file_sink(path=path)

    await sink.open()
    await sink.send_batch([out(1)])

    assert path.read_bytes() == line(1)


async def test_unwritable_target_raises_sink_error_on_open(make_file_sink: MakeSink, tmp_path: Path) -> None:
    """The target's parent is a regular file: open raises SinkError naming the path."""
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    path = blocker / "events.jsonl"
    sink = make_file_sink(path=path)

    with pytest.raises(SinkError, match=f"cannot open {path}: File exists"):
        await sink.open()


@pytest.mark.parametrize("mode", ["0999", "abc", "1777", "-1", ""])
def test_bad_file_mode_is_a_config_error(tmp_path: Path, mode: str) -> None:
    """file_mode that is not an octal mode up to 0777 is rejected, naming sinks.<name>.file_mode."""
    with pytest.raises(ConfigError) as raised:
        FileSinkSettings(name="archive", type="file", path=tmp_path / "x.jsonl", file_mode=mode)

    assert raised.value.key == "sinks.archive.file_mode"
    assert str(raised.value) == f'sinks.archive.file_mode: {mode!r} is not an octal mode; fix: write e.g. "0640"'


def test_good_file_mode_is_accepted(tmp_path: Path) -> None:
    """file_mode "0600" builds settings with that string kept as given."""
    settings = FileSinkSettings(name="archive", type="file", path=tmp_path / "x.jsonl", file_mode="0600")

    assert settings.file_mode == "0600"


def test_write_all_finishes_what_a_short_write_left(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """os.write may write less than asked without raising (a disk filling up): the rest still goes out.
    Here the kernel is made to take at most 7 bytes per call."""
    real_write = os.write
    calls: list[int] = []

    def short_write(fd: int, data: bytes | memoryview) -> int:
        calls.append(len(data))
        return real_write(fd, bytes(data[:7]))

    monkeypatch.setattr(os, "write", short_write)
    payload = b'{"a": 1}\n{"b": "two"}\n' * 3
    fd = os.open(tmp_path / "x", os.O_WRONLY | os.O_CREAT)
    try:
        write_all(fd, payload)
    finally:
        os.close(fd)

    assert (tmp_path / "x").read_bytes() == payload
    assert len(calls) == -(-len(payload) // 7)
