"""Thumbnails and browser-friendly renditions of indexed images, cached on disk under the index's `thumbs/`.

Files are named by catalog id and content hash, so a changed photo gets a fresh thumbnail and a URL carrying the
hash can be cached by the browser forever. Images are read by id through the facade (`Library.read_image`), which
checks that the file is still the one indexed; no request ever names a path.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from pixquery.api import Item, Library
from pixquery.fsutil import atomic_file

THUMB_SIZE = 400
"""Longest side of a grid thumbnail: sharp on a 2x screen at the grid's ~200 px cells."""
PREVIEW_SIZE = 2048
"""Longest side of the rendition shown in the viewer for formats browsers cannot display (TIFF, HEIC, PNM...)."""
BROWSER_FORMATS = {
    "JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "WEBP": "image/webp", "BMP": "image/bmp",
    "AVIF": "image/avif",
}
"""Decoder format names whose files a browser shows as they are, and the media type they are sent with."""
_STRIPES = 64


Reader = Callable[[int, int], Image.Image]
"""read(file_id, size): the indexed image decoded near `size` (raises a PixqueryError when it cannot)."""


def cache_key(row: Item) -> str:
    """The version part of a cached file name and of its URL: changes whenever the file's content does."""
    return row.content_hash[:12]


class ThumbCache:
    """Makes and remembers downscaled JPEG renditions of catalog rows."""

    def __init__(self, root: Path, read: Reader, quality: int = 82) -> None:
        self.root = Path(root)
        self.read = read
        self.quality = quality
        # Striped locks: two requests for one thumbnail decode it once, unrelated thumbnails run in parallel.
        self._locks = [threading.Lock() for _ in range(_STRIPES)]

    def path_for(self, row: Item, size: int) -> Path:
        """Where the rendition of `row` at `size` lives (sharded so no folder grows to 100k entries)."""
        return self.root / str(size) / f"{row.id % 256:02x}" / f"{row.id}-{cache_key(row)}.jpg"

    def get(self, row: Item, size: int = THUMB_SIZE) -> Path:
        """The cached rendition's path, made now if missing; raises the reader's error when the original cannot be
        read (gone, changed since indexing, corrupt)."""
        path = self.path_for(row, size)
        if path.exists():
            return path
        with self._locks[row.id % _STRIPES]:
            if path.exists():
                return path
            self._make(row, size, path)
        return path

    def _make(self, row: Item, size: int, path: Path) -> None:
        # The reader applies the EXIF orientation and, for JPEG, decodes at a reduced DCT scale near `size`.
        image = self.read(row.id, size)
        image.thumbnail((size, size), Image.Resampling.LANCZOS, reducing_gap=2.0)
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in path.parent.glob(f"{row.id}-*.jpg"):
            stale.unlink(missing_ok=True)  # an older version of this file
        # Written beside and renamed, so a reader never sees half a JPEG and a crash leaves no broken cache entry.
        with atomic_file(path, durable=False) as handle:
            image.save(handle, "JPEG", quality=self.quality, optimize=True, progressive=size > THUMB_SIZE)

    def display(self, row: Item) -> Path | None:
        """A rendition the viewer can show, or None when the original is already a browser format."""
        if (row.format or "").upper() in BROWSER_FORMATS:
            return None
        return self.get(row, PREVIEW_SIZE)


class ThumbWarmer:
    """Makes missing thumbnails in one low-priority background thread, newest files first, up to `limit`.

    Done at start and again whenever the index changes, so the grid's first paint rarely waits for a decode.
    """

    def __init__(self, cache: ThumbCache, library: Library, limit: int, recheck_s: float = 30.0) -> None:
        self.cache = cache
        self.library = library
        self.limit = max(0, int(limit))
        self.recheck_s = recheck_s
        self.made = 0
        self.done = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pixquery-thumbs", daemon=True)

    def start(self) -> ThumbWarmer:
        if self.limit:
            self._thread.start()
        else:
            self.done = True
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _run(self) -> None:
        with contextlib.suppress(OSError, AttributeError):  # Linux: lower this thread's priority only
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 15)
        seen = object()
        while not self._stop.is_set():
            stamp = self.library.meta("last_indexed_at")
            if stamp != seen:
                seen = stamp
                self._pass()
                self.done = True
            self._stop.wait(self.recheck_s)

    def _pass(self) -> None:
        # Rows are read in one query (no cursor held open across the pass, which would pin the WAL).
        for row in self.library.browse(sort="added", limit=self.limit):
            if self._stop.is_set():
                return
            if self.cache.path_for(row, THUMB_SIZE).exists():
                continue
            try:
                self.cache.get(row)
                self.made += 1
            except Exception:  # an unreadable file is reported when it is asked for; the pass goes on
                continue
