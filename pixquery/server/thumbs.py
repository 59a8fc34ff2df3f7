"""Thumbnails and browser-friendly renditions of indexed images, cached on disk under the index's `thumbs/`.

Files are named by catalog id and content hash, so a changed photo gets a fresh thumbnail and a URL carrying the
hash can be cached by the browser forever. Paths always come from the catalog, never from a request.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from pathlib import Path

from PIL import Image

from pixquery.media.decode import open_image
from pixquery.store.catalog import Catalog, FileRow

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


def cache_key(row: FileRow) -> str:
    """The version part of a cached file name and of its URL: changes whenever the file's content does."""
    return row.content_hash[:12]


class ThumbCache:
    """Makes and remembers downscaled JPEG renditions of catalog rows."""

    def __init__(self, index_dir: Path, max_megapixels: float | None = 100.0, quality: int = 82) -> None:
        self.root = Path(index_dir) / "thumbs"
        self.max_megapixels = max_megapixels
        self.quality = quality
        # Striped locks: two requests for one thumbnail decode it once, unrelated thumbnails run in parallel.
        self._locks = [threading.Lock() for _ in range(_STRIPES)]

    def path_for(self, row: FileRow, size: int) -> Path:
        """Where the rendition of `row` at `size` lives (sharded so no folder grows to 100k entries)."""
        return self.root / str(size) / f"{row.id % 256:02x}" / f"{row.id}-{cache_key(row)}.jpg"

    def get(self, row: FileRow, size: int = THUMB_SIZE) -> Path:
        """The cached rendition's path, made now if missing. Raises `ImageDecodeError` if the original is unreadable."""
        path = self.path_for(row, size)
        if path.exists():
            return path
        with self._locks[row.id % _STRIPES]:
            if path.exists():
                return path
            self._make(row, size, path)
        return path

    def _make(self, row: FileRow, size: int, path: Path) -> None:
        # open_image applies the EXIF orientation and, for JPEG, decodes at a reduced DCT scale near `size`.
        image = open_image(row.path, self.max_megapixels, target_size=size)
        image.thumbnail((size, size), Image.Resampling.LANCZOS, reducing_gap=2.0)
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in path.parent.glob(f"{row.id}-*.jpg"):
            stale.unlink(missing_ok=True)  # an older version of this file
        # Write then rename, so a reader never sees half a JPEG and a crash leaves no broken cache entry.
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".part")
        try:
            with os.fdopen(fd, "wb") as f:
                image.save(f, "JPEG", quality=self.quality, optimize=True, progressive=size > THUMB_SIZE)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def display(self, row: FileRow) -> Path | None:
        """A rendition the viewer can show, or None when the original is already a browser format."""
        if (row.format or "").upper() in BROWSER_FORMATS:
            return None
        return self.get(row, PREVIEW_SIZE)


class ThumbWarmer:
    """Makes missing thumbnails in one low-priority background thread, newest files first, up to `limit`.

    Done at start and again whenever the index changes, so the grid's first paint rarely waits for a decode.
    """

    def __init__(self, cache: ThumbCache, catalog: Catalog, limit: int, recheck_s: float = 30.0) -> None:
        self.cache = cache
        self.catalog = catalog
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
            stamp = self.catalog.get_meta("last_indexed_at")
            if stamp != seen:
                seen = stamp
                self._pass()
                self.done = True
            self._stop.wait(self.recheck_s)

    def _pass(self) -> None:
        # Ids are read in one query (no cursor held open across the pass, which would pin the WAL).
        ids = self.catalog.ids_with_status("indexed")[::-1][: self.limit]
        for file_id in ids:
            if self._stop.is_set():
                return
            row = self.catalog.get(file_id)
            if row is None or self.cache.path_for(row, THUMB_SIZE).exists():
                continue
            try:
                self.cache.get(row)
                self.made += 1
            except Exception:  # an unreadable file is reported when it is asked for; the pass goes on
                continue
