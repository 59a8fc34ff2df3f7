"""One writer per index: an advisory file lock, released by the OS even when the process is killed."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from pixquery.errors import IndexLockedError
from pixquery.layout import IndexLayout


class IndexLock:
    """Exclusive, non-blocking lock on `DIR/index.lock`. Readers (searches) do not take it."""

    def __init__(self, directory: Path) -> None:
        self.path = IndexLayout(Path(directory)).lock
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="ignore").strip() or "unknown"
            os.close(fd)
            raise IndexLockedError(
                f"index is locked: another pixquery process (pid {holder}) is indexing {self.path.parent}. "
                "Wait for it to finish, or stop it; searches can run meanwhile."
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> IndexLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
