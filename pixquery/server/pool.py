"""A few read views of one index, so searches run in parallel while each view is used by one thread at a time.

A `Library`'s read-only store view reloads itself when an indexer commits, and that reload must not interleave
with a search on the same view; separate views never share that state. They share the loaded model (encoders
run inference re-entrantly: ONNX Runtime sessions and torch modules in eval mode) and the operating system's page
cache of the memory-mapped vectors, so an extra view costs little more than its id lookup table.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pixquery.api import Library


class LibraryPool:
    """Up to `size` `Library` views of the index at `path`, made on demand, handed out one borrower at a time."""

    def __init__(self, path: str | Path, size: int = 2) -> None:
        self.first = Library.open(path)
        self.size = max(1, int(size))
        self._views = [self.first]
        self._idle: queue.LifoQueue[Library] = queue.LifoQueue()
        self._idle.put(self.first)
        self._lock = threading.Lock()

    @contextmanager
    def borrow(self) -> Iterator[Library]:
        """A view for this thread alone until the block ends (waits when all `size` views are busy)."""
        try:
            view = self._idle.get_nowait()
        except queue.Empty:
            view = self._grow() or self._idle.get()
        try:
            yield view
        finally:
            self._idle.put(view)

    def fill(self) -> None:
        """Open every view now (each opens the catalog, which waits if an indexer holds SQLite's write lock)."""
        while (view := self._grow()) is not None:
            self._idle.put(view)

    def _grow(self) -> Library | None:
        with self._lock:
            if len(self._views) >= self.size:
                return None
            view = self.first.view_for_thread()
            self._views.append(view)
            return view

    def close(self) -> None:
        with self._lock:
            for view in self._views:
                view.close()
