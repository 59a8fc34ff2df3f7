"""What the HTTP layer asks of an index: searches, items, files, thumbnails, statistics, re-indexing.

Everything goes through the facade (`pixquery.api.Library`). Text searches that arrive together run as one batch
(`batcher.py`, `Library.query_many`); a search with an image runs alone, so embedding a picture never holds up the
text searches. Either borrows a `Library` view from a small pool (`pool.py`); item, thumbnail and file requests use
the first view from any thread (SQLite in WAL mode, a serialized connection, reads only). Facade errors become HTTP
errors here and only here.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pixquery.api import Hit, Item, Library, QueryOutcome, QuerySpec, is_not_an_image
from pixquery.errors import IndexFormatError, NotFoundError, PixqueryError, QueryError, StaleFileError
from pixquery.progress import ProgressFn
from pixquery.server.batcher import QueryBatcher
from pixquery.server.jobs import ReindexJob
from pixquery.server.limits import ApiError
from pixquery.server.organizing import Organizer, Run
from pixquery.server.pool import LibraryPool
from pixquery.server.queries import query_error
from pixquery.server.thumbs import BROWSER_FORMATS, ThumbCache, ThumbWarmer, cache_key

STATUS_TTL_S = 2.0
"""`Library.info()` walks the index folder (thumbnails included); a status poll every second must not redo it."""
MAX_FOLDERS = 500
STREAM_CHUNK = 256 * 1024
BROWSE_FIELDS = {"filters.tags": "tag"}
"""Filter keys the browse form names differently from a search form (see `queries.FORM_FIELDS`)."""


class IndexService:
    """The server's view of one index."""

    def __init__(
        self,
        library_path: str | Path,
        roots: list[str] | None = None,
        warm_thumbs: int = 5000,
        search_threads: int | None = None,
        batch_searches: bool = True,
    ) -> None:
        """`batch_searches`: run concurrent text searches as one batch (False runs each alone, as before batching:
        a baseline for benchmarks)."""
        self.pool = LibraryPool(library_path, size=search_threads or min(4, os.cpu_count() or 1))
        self.library = self.pool.first
        if not self.library.exists:
            raise IndexFormatError(
                f"no index at {self.library.path}: build one first with `pixquery index FOLDER --index "
                f"{self.library.path} --model MODEL`"
            )
        # One runner: a batch already uses every core (the encoder's threads, the matrix product's), and the
        # queries that arrive while it runs make the next batch bigger rather than competing with it.
        self.batcher = QueryBatcher(self._run_batch, runners=1) if batch_searches else None
        self.thumbs = ThumbCache(self.library.layout.thumbs, self._read)
        self.warmer = ThumbWarmer(self.thumbs, self.library, warm_thumbs)
        self.job = ReindexJob(self.library.path)
        self._roots = list(roots) if roots else None
        self._status: tuple[float, tuple[Any, ...], dict[str, Any]] | None = None
        self._folders: tuple[str | None, list[dict[str, Any]]] | None = None
        self.organizer = Organizer({"clusters": _make_clusters, "duplicates": _find_duplicates},
                                   self.library.view_for_thread, self.version)

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
        self.organizer.close()
        if self.batcher is not None:
            self.batcher.close()
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
        if self.batcher is None or spec.images or spec.negative_images:
            with self.pool.borrow() as library:
                outcome = library.query(spec)
        else:
            outcome = self.batcher.submit(spec)
        took = (time.perf_counter() - start) * 1000
        hits = outcome.hits
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
            "matches": outcome.matches,
        }

    def _run_batch(self, specs: list[QuerySpec]) -> list[QueryOutcome | Exception]:
        with self.pool.borrow() as library:
            return library.query_many(specs)

    def browse(self, filters: dict[str, Any], sort: str, offset: int, k: int) -> dict[str, Any]:
        """Indexed images without a query, newest first (by date taken or by when they were added); `filters` as a
        query spec's (a bad value is a 422 naming the form field)."""
        try:
            rows = self.library.browse(filters, "taken" if sort == "date" else "added", offset, k + 1)
        except QueryError as exc:
            error = query_error(exc, form=True)
            error.field = BROWSE_FIELDS.get(error.field or "", error.field)
            raise error from None
        page = rows[:k]
        return {"results": [item_json(row) for row in page], "offset": offset, "k": k, "count": len(page),
                "more": len(rows) > k}

    # --- items --------------------------------------------------------------------------------------------
    def row(self, file_id: int) -> Item:
        """The catalog row of an indexed file, or a 404."""
        try:
            return self.library.item(file_id)
        except NotFoundError as exc:
            raise ApiError(404, "not_found", str(exc), "id") from None

    def _read(self, file_id: int, size: int) -> Any:
        return self.library.read_image(file_id, size)

    def thumbnail(self, file_id: int) -> Path:
        """The cached thumbnail of an indexed file (made on first request)."""
        with _file_errors(file_id):
            return self.thumbs.get(self.row(file_id))

    def rendition(self, file_id: int) -> tuple[Path, Item] | None:
        """A JPEG rendition for the viewer when browsers cannot show the original's format, else None."""
        row = self.row(file_id)
        with _file_errors(file_id):
            path = self.thumbs.display(row)
        return None if path is None else (path, row)

    def original(self, file_id: int, download: bool) -> tuple[Iterator[bytes], str, Item]:
        """(bytes of the original, media type, row), checked to be the file indexed before anything is sent.

        The media type comes from the decoder's verdict on the content, never from the file name, so no file is
        ever sent as something a browser would run (HTML, SVG); a download is plain bytes.
        """
        stack = contextlib.ExitStack()
        with _file_errors(file_id):
            handle, row = stack.enter_context(self.library.open_file(file_id))

        def chunks() -> Iterator[bytes]:
            with stack:
                while chunk := handle.read(STREAM_CHUNK):
                    yield chunk

        media_type = "application/octet-stream" if download else BROWSER_FORMATS.get((row.format or "").upper(),
                                                                                      "application/octet-stream")
        return chunks(), media_type, row

    def item(self, file_id: int) -> dict[str, Any]:
        """Everything the viewer shows about one file."""
        return item_json(self.row(file_id), detail=True)

    # --- index --------------------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """Index statistics without server paths (counts instead of the skipped files' paths)."""
        now = time.monotonic()
        job = self.job.status()
        # Recomputed at most every STATUS_TTL_S, and at once when an indexer commits or the job changes state.
        key = (self.library.meta("last_indexed_at"), job["state"], job["finished_at"])
        if self._status is None or self._status[1] != key or now - self._status[0] > STATUS_TTL_S:
            with self.pool.borrow() as library:
                info = library.info()
            public = {k: v for k, v in info.items() if k not in ("index", "errors", "skipped", "roots")}
            public["errors"] = len(info["errors"])
            public["skipped"] = len(info["skipped"])
            # What a person needs to know apart: files that are no images at all (a README, a .txt; nothing to
            # fix) and images that could not be read (corrupt, truncated, too large, a broken link).
            problems = [entry.get("reason") or "" for entry in (*info["errors"], *info["skipped"])]
            public["not_images"] = sum(is_not_an_image(reason) for reason in problems)
            public["unreadable"] = len(problems) - public["not_images"]
            self._status = (now, key, public)
        index = dict(self._status[2])
        if job["running"]:  # live progress: the catalog counts move as the indexer commits each batch
            counts = self.library.counts()
            index.update(indexed=counts["indexed"], pending=counts["pending"], files=sum(counts.values()))
        thumbs = {"made": self.warmer.made, "done": self.warmer.done}
        return {"index": index, "reindex": job, "thumbnails": thumbs}

    def folders(self) -> list[dict[str, Any]]:
        """Folders holding indexed files with their counts (for the folder filter), most populated first."""
        stamp = self.library.meta("last_indexed_at")
        if self._folders is None or self._folders[0] != stamp:
            ranked = self.library.folders(MAX_FOLDERS)
            self._folders = (stamp, [{"folder": f, "count": n} for f, n in ranked])
        return self._folders[1]

    def version(self) -> str | None:
        """The index's version: changes whenever an indexing run finishes."""
        return self.library.meta("last_indexed_at")

    def tags(self) -> list[dict[str, Any]]:
        """Stored tags with how many images carry each, most frequent first."""
        return [{"tag": tag, "count": n} for tag, n in self.library.tag_counts()]

    # --- organising (clusters, duplicates): made in the background, kept per index version ------------------
    def organized(self, kind: str) -> tuple[Run | None, dict[str, Any]]:
        """The latest run of `kind` and its public state (without its result)."""
        run, version = self.organizer.latest(kind)
        if run is None:
            return None, {"state": "idle", "params": None, "current": False, "progress": None, "error": None,
                          "started_at": None, "finished_at": None, "took_s": None}
        return run, run.public(version)

    def start_organizing(self, kind: str, params: dict[str, Any]) -> dict[str, Any]:
        """Queue a run of `kind` (unless an equal one is queued, running or current) and report its state."""
        run, _ = self.organizer.start(kind, params)
        return run.public(self.version())

    def clusters(self) -> dict[str, Any]:
        """The latest clustering: its state and, once made, the clusters with their representatives (members are
        paged by `cluster_members`)."""
        run, data = self.organized("clusters")
        result = run.result if run is not None else None
        if result is None:
            return {**data, "result": None}
        reps = [ref["id"] for c in result["clusters"] for ref in c["representatives"]]
        rows = self.library.items(reps)
        clusters = [
            {key: value for key, value in c.items() if key not in ("members", "representatives")}
            | {"representatives": [item_json(rows[r["id"]]) for r in c["representatives"] if r["id"] in rows]}
            for c in result["clusters"]
        ]
        summary = {key: value for key, value in result.items() if key not in ("clusters", "unclustered")}
        summary.update(clusters=clusters, unclustered=len(result.get("unclustered", [])))
        return {**data, "result": summary}

    def cluster_members(self, cluster_id: int, offset: int, k: int) -> dict[str, Any]:
        """One page of a cluster's members (of the latest clustering), nearest the centre first."""
        run, _ = self.organized("clusters")
        if run is None or run.result is None:
            raise ApiError(409, "not_ready", "no clustering has been made yet: POST /api/clusters first")
        found = [c for c in run.result["clusters"] if c["id"] == cluster_id]
        if not found:
            raise ApiError(404, "not_found", f"the latest clustering has no cluster {cluster_id}", "cluster_id")
        cluster = found[0]
        ids = [m["id"] for m in cluster["members"]]
        return {"cluster": {"id": cluster["id"], "name": cluster["name"], "size": cluster["size"]},
                **self._page_of_ids(ids, offset, k)}

    def duplicates(self, offset: int, k: int) -> dict[str, Any]:
        """The latest duplicate finding: its state and, once made, one page of its groups, each member with its
        thumbnail and image URLs (a member gone since is marked `gone`)."""
        run, data = self.organized("duplicates")
        result = run.result if run is not None else None
        if result is None:
            return {**data, "result": None}
        groups = result["groups"][offset : offset + k]
        rows = self.library.items([m["id"] for g in groups for m in g["members"]])

        def member(entry: dict[str, Any]) -> dict[str, Any]:
            row = rows.get(entry["id"])
            return {**entry, **item_json(row)} if row is not None else {**entry, "gone": True}

        page = [{**g, "members": [member(m) for m in g["members"]]} for g in groups]
        summary = {key: value for key, value in result.items() if key != "groups"}
        summary.update(groups=page, offset=offset, k=k, count=len(page), total=len(result["groups"]),
                       more=offset + k < len(result["groups"]))
        return {**data, "result": summary}

    def _page_of_ids(self, ids: list[int], offset: int, k: int) -> dict[str, Any]:
        page_ids = ids[offset : offset + k]
        rows = self.library.items(page_ids)
        results = [item_json(rows[i]) for i in page_ids if i in rows]
        return {"results": results, "offset": offset, "k": k, "count": len(results),
                "more": offset + k < len(ids)}

    def roots(self) -> list[str]:
        """The folders a re-index looks at: given to the server, else those the index covers."""
        return self._roots or self.library.roots()

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


def _make_clusters(library: Library, params: dict[str, Any], progress: ProgressFn) -> dict[str, Any]:
    return library.cluster(k=params["k"], method=params["method"], progress=progress)


def _find_duplicates(library: Library, params: dict[str, Any], progress: ProgressFn) -> dict[str, Any]:
    return library.duplicates(progress=progress)


@contextlib.contextmanager
def _file_errors(file_id: int) -> Iterator[None]:
    """The facade's file errors as HTTP errors: gone or outside the roots 404, changed since indexing 409,
    unreadable 404 (with the reason and a hint to re-index)."""
    try:
        yield
    except StaleFileError as exc:
        raise ApiError(409, "changed", f"{exc}", "id") from None
    except NotFoundError as exc:
        raise ApiError(404, "missing", f"{exc}; re-index to update the index", "id") from None
    except PixqueryError as exc:
        raise ApiError(404, "unreadable", f"image {file_id} cannot be read any more: {exc}", "id") from None


def urls(row: Item) -> dict[str, str]:
    """Thumbnail and image URLs of a row; the version parameter lets browsers cache them for good."""
    version = cache_key(row)
    return {"thumb": f"/api/thumb/{row.id}?v={version}", "image": f"/api/image/{row.id}?v={version}"}


def item_json(row: Item, detail: bool = False) -> dict[str, Any]:
    """An indexed image for the API: id, name, folder, metadata and media URLs (`detail`: every catalog field
    a viewer shows)."""
    data: dict[str, Any] = {"id": row.id, "path": row.path, **row.metadata()}
    if detail:
        hidden = ("mtime_ns", "content_hash", "error", "status", "device", "inode")
        data.update({k: v for k, v in row.to_dict().items() if k not in hidden})
    data["name"] = os.path.basename(row.path)
    data["folder"] = row.folder
    data.update(urls(row))
    return data


def hit_json(hit: Hit) -> dict[str, Any]:
    """A search result for the API: the hit's fields plus file name, folder and media URLs."""
    data = hit.to_dict()
    data["name"] = os.path.basename(hit.path)
    data["folder"] = hit.row.folder
    data.update(urls(hit.row))
    return data
