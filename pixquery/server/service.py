"""What the HTTP layer asks of an index: searches, rows, thumbnails, statistics, re-indexing; all through the facade.

Searches (and anything else touching the vectors) borrow a `Library` view from a small pool (`pool.py`); catalog
reads for items and thumbnails use the first view's catalog from any thread (SQLite in WAL mode, a serialized
connection, reads only).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from pixquery.errors import IndexFormatError
from pixquery.media.decode import ImageDecodeError
from pixquery.query.engine import Hit
from pixquery.query.spec import QuerySpec
from pixquery.server.jobs import ReindexJob, covering_roots
from pixquery.server.limits import ApiError
from pixquery.server.pool import LibraryPool
from pixquery.server.thumbs import BROWSER_FORMATS, ThumbCache, ThumbWarmer, cache_key
from pixquery.store.catalog import FileRow

STATUS_TTL_S = 2.0
"""`Library.info()` walks the index folder (thumbnails included); a status poll every second must not redo it."""
MAX_FOLDERS = 500


class IndexService:
    """The server's view of one index."""

    def __init__(
        self,
        library_path: str | Path,
        roots: list[str] | None = None,
        warm_thumbs: int = 5000,
        search_threads: int | None = None,
    ) -> None:
        self.pool = LibraryPool(library_path, size=search_threads or min(4, os.cpu_count() or 1))
        library = self.pool.first
        if not library.exists or library.catalog is None:
            raise IndexFormatError(
                f"no index at {library.path}: build one first with `pixquery index FOLDER --index "
                f"{library.path} --model MODEL`"
            )
        self.catalog = library.catalog
        self.thumbs = ThumbCache(library.path)
        self.warmer = ThumbWarmer(self.thumbs, self.catalog, warm_thumbs)
        self.job = ReindexJob(library.path)
        self._roots = list(roots) if roots else None
        self._status: tuple[float, tuple[Any, ...], dict[str, Any]] | None = None
        self._folders: tuple[str | None, list[dict[str, Any]]] | None = None

    def warm_up(self) -> None:
        """Load the model and map the vectors now, so the first search is as fast as the next ones; start making
        thumbnails in the background."""
        self.pool.fill()  # every view now: opening one later could wait on an indexer's write lock
        with self.pool.borrow() as library:
            library.encoder.encode_texts(["a photo"])
            library.store.count()
        self.warmer.start()

    def close(self) -> None:
        """Stop a running re-index and release the index."""
        self.warmer.stop()
        self.job.stop(grace_s=5.0)
        self.job.wait(timeout=10.0)
        self.pool.close()

    # --- searching ----------------------------------------------------------------------------------------
    def search(self, spec: QuerySpec, offset: int = 0, exclude: int | None = None) -> dict[str, Any]:
        """Run a spec (its k already includes `offset`) and return one page of results as JSON-ready data."""
        page_k = spec.k - offset
        if exclude is not None:
            spec.k += 1  # the query image itself is dropped from "more like this"
        start = time.perf_counter()
        with self.pool.borrow() as library:
            hits = library.search(spec=spec)
        took = (time.perf_counter() - start) * 1000
        if exclude is not None:
            hits = [h for h in hits if h.id != exclude][: spec.k - 1]
        page = hits[offset : offset + page_k]
        return {
            "results": [hit_json(h) for h in page],
            "offset": offset,
            "k": page_k,
            "count": len(page),
            "more": len(hits) >= offset + page_k,
            "took_ms": round(took, 2),
            "method": spec.method,
            "params": dict(spec.params),
            "cutoff": spec.cutoff,
        }

    # --- items --------------------------------------------------------------------------------------------
    def row(self, file_id: int) -> FileRow:
        """The catalog row of an indexed file, or a 404."""
        row = self.catalog.get(file_id)
        if row is None or row.status != "indexed":
            raise ApiError(404, "not_found", f"no indexed image has id {file_id}", "id")
        return row

    def thumbnail(self, file_id: int) -> Path:
        """The cached thumbnail of an indexed file (made on first request)."""
        row = self.row(file_id)
        try:
            return self.thumbs.get(row)
        except ImageDecodeError as exc:
            raise ApiError(404, "unreadable", f"the image cannot be read any more: {exc}", "id") from None

    def original(self, file_id: int, download: bool) -> tuple[Path, str, FileRow]:
        """(file to send, media type, row): the original, or a JPEG rendition when a browser cannot show it.

        The media type comes from the decoder's verdict on the content, never from the file name, so no file is
        ever sent as something a browser would run (HTML, SVG); a download is plain bytes.
        """
        row = self.row(file_id)
        if not download:
            try:
                rendition = self.thumbs.display(row)
            except ImageDecodeError as exc:
                raise ApiError(404, "unreadable", f"the image cannot be read any more: {exc}", "id") from None
            if rendition is not None:
                return rendition, "image/jpeg", row
        path = Path(row.path)
        if not path.is_file():
            raise ApiError(404, "missing", "the original file is no longer on disk", "id")
        media_type = "application/octet-stream" if download else BROWSER_FORMATS[(row.format or "").upper()]
        return path, media_type, row

    def item(self, file_id: int) -> dict[str, Any]:
        """Everything the viewer shows about one file."""
        row = self.row(file_id)
        data = {k: v for k, v in row.to_dict().items() if k not in ("mtime_ns", "content_hash", "error", "status")}
        data.update(urls(row))
        data["name"] = os.path.basename(row.path)
        return data

    # --- index --------------------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """Index statistics without server paths (counts instead of the skipped files' paths)."""
        now = time.monotonic()
        job = self.job.status()
        # Recomputed at most every STATUS_TTL_S, and at once when an indexer commits or the job changes state.
        key = (self.catalog.get_meta("last_indexed_at"), job["state"], job["finished_at"])
        if self._status is None or self._status[1] != key or now - self._status[0] > STATUS_TTL_S:
            with self.pool.borrow() as library:
                info = library.info()
            public = {k: v for k, v in info.items() if k not in ("index", "errors", "skipped", "roots")}
            public["errors"] = len(info["errors"])
            public["skipped"] = len(info["skipped"])
            self._status = (now, key, public)
        index = dict(self._status[2])
        if job["running"]:  # live progress: the catalog counts move as the indexer commits each batch
            counts = self.catalog.counts()
            index.update(indexed=counts["indexed"], pending=counts["pending"], files=sum(counts.values()))
        thumbs = {"made": self.warmer.made, "done": self.warmer.done}
        return {"index": index, "reindex": job, "thumbnails": thumbs}

    def folders(self) -> list[dict[str, Any]]:
        """Folders holding indexed files with their counts (for the folder filter), most populated first."""
        stamp = self.catalog.get_meta("last_indexed_at")
        if self._folders is None or self._folders[0] != stamp:
            counts: dict[str, int] = {}
            for row in self.catalog.all_files():
                if row.status == "indexed":
                    counts[row.folder] = counts.get(row.folder, 0) + 1
            ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_FOLDERS]
            self._folders = (stamp, [{"folder": f, "count": n} for f, n in ranked])
        return self._folders[1]

    def roots(self) -> list[str]:
        """The folders a re-index looks at: given to the server, recorded by the indexer, or derived."""
        if self._roots:
            return self._roots
        recorded = self.catalog.get_meta("roots")
        if recorded:
            try:
                roots = json.loads(recorded)
                if isinstance(roots, list) and all(isinstance(r, str) for r in roots):
                    return roots
            except json.JSONDecodeError:
                pass
        return covering_roots(self.catalog.all_files())

    def start_reindex(self) -> dict[str, Any]:
        roots = self.roots()
        if not roots:
            raise ApiError(409, "nothing_to_index", "the index knows no folders yet: run `pixquery index FOLDER` once")
        if not self.job.start(roots):
            raise ApiError(409, "already_running", "a re-index is already running; stop it with DELETE /api/reindex")
        self._status = None
        return self.job.status()

    def stop_reindex(self) -> dict[str, Any]:
        if not self.job.stop():
            raise ApiError(409, "not_running", "no re-index is running")
        return self.job.status()


def urls(row: FileRow) -> dict[str, str]:
    """Thumbnail and image URLs of a row; the version parameter lets browsers cache them for good."""
    version = cache_key(row)
    return {"thumb": f"/api/thumb/{row.id}?v={version}", "image": f"/api/image/{row.id}?v={version}"}


def hit_json(hit: Hit) -> dict[str, Any]:
    """A search result for the API: the hit's fields plus file name, folder and media URLs."""
    data = hit.to_dict()
    data["name"] = os.path.basename(hit.path)
    data["folder"] = hit.row.folder
    data.update(urls(hit.row))
    return data
