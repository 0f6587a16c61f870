"""``type = "file"``: JSON lines on local disk, size-based rotation, fsync per batch.

A batch is written with one ``write`` and (by default) fsynced before ``send_batch`` returns, so the
dispatcher only saves its offset for bytes that are on disk. A torn last line left by a power cut
is trimmed at open: that batch was never acknowledged and is written again from the spool.

:meth:`FileSink.reopen` (SIGHUP, after logrotate moved the file away) closes the file and opens its
path again. It waits for a batch being written, so every batch lands whole in the old file or whole
in the new one.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio

from collector.config.errors import ConfigError
from collector.config.options import WRITE_FILE, option
from collector.sinks.base import OutEvent, SinkContext, SinkError, SinkPlugin, SinkSettings

_TAIL_CHUNK = 64 * 1024


@dataclass(frozen=True, kw_only=True)
class FileSinkSettings(SinkSettings):
    path: Path = option(doc="file to append JSON lines to", path_kind=WRITE_FILE)
    fsync: bool = option(True, doc="fsync after every batch (durable before the offset moves)")
    max_bytes: int = option(100 * 1024 * 1024, min=0, max=2**50, doc="rotate past this size; 0 = never")
    retention: int = option(5, min=0, max=1000, doc="rotated files kept (events.jsonl.1 ... .N)")
    file_mode: str = option("0640", doc="permissions of new files, octal")

    def __post_init__(self) -> None:
        try:
            mode = int(self.file_mode, 8)
        except ValueError:
            mode = -1
        if not 0 <= mode <= 0o777:
            raise ConfigError(
                f"sinks.{self.name}.file_mode",
                f"{self.file_mode!r} is not an octal mode",
                'write e.g. "0640"',
            )


class FileSink:
    def __init__(self, settings: FileSinkSettings) -> None:
        self.settings = settings
        self._fd: int | None = None
        self._size = 0
        self._mode = int(settings.file_mode, 8)
        # One worker-thread operation on the descriptor at a time. The worker is never abandoned on
        # cancellation, so whoever holds this sees the descriptor only between whole operations.
        self._file_lock = anyio.Lock()

    async def open(self) -> None:
        async with self._file_lock:
            await anyio.to_thread.run_sync(self._open)

    async def send_batch(self, events: Sequence[OutEvent]) -> None:
        if not events:
            return
        await self.send_lines(b"\n".join(e.line for e in events) + b"\n", len(events))

    async def send_lines(self, payload: bytes, count: int) -> None:
        if not count:
            return
        async with self._file_lock:
            await anyio.to_thread.run_sync(self._write, payload)

    async def reopen(self) -> None:
        """Close the file and open ``path`` again (creating it): logrotate has moved the old one away.

        A closed sink stays closed: the next batch opens the file anyway. If the path cannot be
        opened now, SinkError; the next batch tries again and stays spooled until it can.
        """
        async with self._file_lock:
            await anyio.to_thread.run_sync(self._reopen)

    async def close(self) -> None:
        async with self._file_lock:
            if self._fd is not None:
                fd, self._fd = self._fd, None
                os.close(fd)

    async def health_check(self) -> None:
        await anyio.to_thread.run_sync(self._check_writable)

    # --- blocking parts, run in a worker thread -----------------------------------------------

    def _open(self) -> None:
        path = self.settings.path
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, self._mode)
            if os.fstat(fd).st_size == 0:
                os.fchmod(fd, self._mode)  # the umask must not widen or narrow what the operator chose
            self._size = _trim_torn_tail(fd)
        except OSError as exc:
            raise SinkError(f"cannot open {path}: {exc.strerror}") from None
        self._fd = fd

    def _reopen(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        os.close(fd)  # the old file was fsynced with its last batch
        self._open()

    def _write(self, payload: bytes) -> None:
        if self._fd is None:
            self._open()
        max_bytes = self.settings.max_bytes
        if max_bytes and self._size and self._size + len(payload) > max_bytes:
            self._rotate()
        assert self._fd is not None
        try:
            write_all(self._fd, payload)
            if self.settings.fsync:
                os.fsync(self._fd)
        except OSError as exc:
            # Whatever part reached the file is trimmed at the next open; the batch is sent again.
            os.close(self._fd)
            self._fd = None
            raise SinkError(f"cannot write {self.settings.path}: {exc.strerror}") from None
        self._size += len(payload)

    def _rotate(self) -> None:
        path, keep = self.settings.path, self.settings.retention
        assert self._fd is not None
        os.close(self._fd)
        self._fd = None
        try:
            _rotated(path, keep + 1).unlink(missing_ok=True)
            for index in range(keep - 1, 0, -1):
                older = _rotated(path, index)
                if older.exists():
                    older.rename(_rotated(path, index + 1))
            if keep:
                path.rename(_rotated(path, 1))
            else:
                path.unlink()
            _fsync_dir(path.parent)
        except OSError as exc:
            raise SinkError(f"cannot rotate {path}: {exc.strerror}") from None
        self._open()

    def _check_writable(self) -> None:
        parent = self.settings.path.parent
        probe = parent if parent.exists() else parent.parent
        if not os.access(probe, os.W_OK):
            raise SinkError(f"{probe} is not writable", retryable=False)


def _rotated(path: Path, index: int) -> Path:
    return path.with_name(f"{path.name}.{index}")


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, payload: bytes) -> None:
    """Write all of ``payload``: os.write may write less (a filling disk) without raising."""
    view = memoryview(payload)
    while view:
        view = view[os.write(fd, view) :]


def _trim_torn_tail(fd: int) -> int:
    """Cut an unterminated last line (from a crash mid-write); return the file's size."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return size
    end = size
    while end > 0:
        start = max(0, end - _TAIL_CHUNK)
        chunk = os.pread(fd, end - start, start)
        newline = chunk.rfind(b"\n")
        if newline >= 0:
            keep = start + newline + 1
            os.ftruncate(fd, keep)
            return keep
        end = start
    os.ftruncate(fd, 0)
    return 0


def _create(settings: SinkSettings, context: SinkContext) -> FileSink:
    assert isinstance(settings, FileSinkSettings)
    return FileSink(settings)


PLUGIN = SinkPlugin("file", FileSinkSettings, _create)
