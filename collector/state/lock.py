"""The lock beside a SQLite state file: one collector (or ``reset``) per file at a time."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from collector.state.db import StoreError, create_private, narrow_mode


class StateLock:
    """An exclusive lock beside the state file: one collector (or reset) per state at a time.

    Both the lock and the database go by the state file's real path (symlinks resolved), so a second
    instance that names the same file through a symlink or another relative spelling meets the same
    lock instead of writing beside the first. Open the database at :attr:`state_path`.
    """

    def __init__(self, state_path: Path) -> None:
        self.state_path = Path(os.path.realpath(state_path))
        self.path = self.state_path.with_name(self.state_path.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = create_private(self.path, follow=False)
            except FileExistsError:  # never through a symlink planted in its place
                fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
                try:
                    narrow_mode(self.path, fd)
                except OSError:
                    os.close(fd)
                    raise
        except OSError as exc:
            raise StoreError(
                f"cannot create lock file {self.path}: {exc.strerror}; check that the state directory "
                "exists and is writable by this user"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise StoreError(f"another collector is using {self.state_path}; stop it first (state lock held)") from None
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)
