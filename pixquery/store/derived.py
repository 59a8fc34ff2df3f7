"""Structures derived from the raw vectors: kept in step with them and rebuilt from them.

Every index keeps its raw float32 vectors in the flat store's files, keyed by catalog id: the canonical copy.
An approximate structure (a faiss graph or inverted file, a Milvus collection) is *derived* from those rows and can
always be rebuilt from them without embedding anything again.

A derived structure records a cursor: the raw generation, how many raw rows it covers and which of those were dead
at the time. Comparing the cursor with the raw store gives the delta to apply (rows appended since, rows that died
since). A cursor from another generation (the raw store compacted itself, which it does once a quarter of its rows
are dead) means the structure is rebuilt: that is when deletions are finally paid for.

Switching an index to another kind in place (`Library.set_store`) builds the new structure from the raw rows under
the index lock, then atomically rewrites `config.json`: a kill at any moment leaves the old or the new store usable.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pixquery.fsutil import atomic_write_json
from pixquery.store.flat import FlatStore, RawView, file_stamp, top_k

RECALL_K = 10


def exact_search_rows(view: RawView, queries: np.ndarray, k: int, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k among the given raw rows (sorted rows read the memory map in order)."""
    if len(rows) == 0:
        return top_k(np.zeros((len(queries), 0), np.float32), np.zeros(0, np.int64), k)
    return top_k(queries @ view.matrix[rows].T, view.row_ids[rows], k)


def rerank(view: RawView, queries: np.ndarray, candidate_rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact scores for each query's candidate rows (-1 = none), best k first, as (scores, catalog ids)."""
    out_scores = np.full((len(queries), k), -np.inf, np.float32)
    out_ids = np.full((len(queries), k), -1, np.int64)
    for q, (query, cand) in enumerate(zip(queries, candidate_rows, strict=True)):
        cand = np.unique(cand[cand >= 0])  # unique also sorts: ordered reads of the memory map
        if len(cand):
            scores, ids = top_k((view.matrix[cand] @ query)[None, :], view.row_ids[cand], k)
            out_scores[q], out_ids[q] = scores[0], ids[0]
    return out_scores, out_ids


@dataclass
class Cursor:
    """What part of the raw store a derived structure reflects."""

    gen: int = -1
    rows: int = 0
    dead: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    @classmethod
    def of(cls, view: RawView) -> Cursor:
        return cls(view.gen, view.rows, np.flatnonzero(~view.live).astype(np.int64))

    def to_json(self) -> dict[str, Any]:
        return {"gen": self.gen, "rows": self.rows, "dead": self.dead.tolist()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Cursor:
        return cls(int(data["gen"]), int(data["rows"]), np.array(data["dead"], np.int64))

    def matches(self, view: RawView) -> bool:
        """True when the structure reflects exactly these rows (dead rows never come back within a generation)."""
        return self.gen == view.gen and self.rows == view.rows and len(self.dead) == view.dead_count


@dataclass(frozen=True)
class Delta:
    """Rows appended since a cursor (live or not) and rows below the cursor that died since."""

    new_rows: np.ndarray
    dead_rows: np.ndarray


def delta_since(cursor: Cursor, view: RawView) -> Delta | None:
    """The changes from `cursor` to `view`, or None when only a rebuild can catch up (another generation)."""
    if cursor.gen != view.gen or cursor.rows > view.rows:
        return None
    dead_now = np.flatnonzero(~view.live[: cursor.rows])
    return Delta(np.arange(cursor.rows, view.rows, dtype=np.int64), np.setdiff1d(dead_now, cursor.dead))


def sample_queries(view: RawView, n: int, seed: int = 0) -> np.ndarray:
    """Queries that look like the collection: stored vectors nudged by noise, unit length."""
    live = view.live_rows()
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(live, size=min(n, len(live)), replace=False))
    dim = view.matrix.shape[1]
    queries = np.asarray(view.matrix[rows]) + rng.normal(0, 0.5 / np.sqrt(dim), (len(rows), dim))
    return (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)


def exact_top_ids(view: RawView, queries: np.ndarray, k: int, chunk: int = 1 << 16) -> np.ndarray:
    """Exact top-k catalog ids over all live rows, read in chunks so memory stays flat at any collection size."""
    best_scores = np.full((len(queries), 0), -np.inf, np.float32)
    best_ids = np.zeros((len(queries), 0), np.int64)
    live = view.live
    for start in range(0, view.rows, chunk):
        scores = queries @ np.asarray(view.matrix[start : start + chunk]).T
        scores[:, ~live[start : start + chunk]] = -np.inf
        ids = np.broadcast_to(view.row_ids[start : start + chunk], scores.shape)
        merged_scores = np.concatenate([best_scores, scores], axis=1)
        merged_ids = np.concatenate([best_ids, ids], axis=1)
        order = np.argsort(-merged_scores, axis=1, kind="stable")[:, :k]
        best_scores = np.take_along_axis(merged_scores, order, axis=1)
        best_ids = np.take_along_axis(merged_ids, order, axis=1)
    return best_ids


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of each query's true top-k found in its returned top-k."""
    k = truth.shape[1]
    hits = [len(set(f[f >= 0].tolist()) & set(t[t >= 0].tolist())) for f, t in zip(found, truth, strict=True)]
    return float(np.mean(hits) / k) if hits else 1.0


class DerivedStore:
    """A flat store (raw, canonical) plus a structure derived from its rows. Subclasses supply the structure.

    Writes go to the raw store; the structure follows at `flush()` (writer) or at the next search (a read-only
    view catches up in memory where it can). Until a structure exists, or whenever it cannot be trusted, searches
    run exactly over the raw rows, so results are never wrong, only slower.
    """

    kind = "derived"
    default_params: dict[str, Any] = {}
    applies_when_readonly = True
    """Whether a read-only view may catch the structure up itself (in memory); if not, it searches exactly."""

    def __init__(self, directory: Path, dim: int, readonly: bool = False, params: dict[str, Any] | None = None):
        self.dir = Path(directory)
        self.dim = int(dim)
        self.readonly = readonly
        self.raw = FlatStore(self.dir, self.dim, readonly=readonly)
        self.params: dict[str, Any] = {**self.default_params, **(params or {})}
        self.cursor = Cursor()
        self.info: dict[str, Any] = {}  # build facts kept in the manifest: build seconds, measured recall, ...

    def _manifest_stamp(self) -> tuple[int, int] | None:
        """The stamp of this structure's manifest (subclasses define `manifest_path`)."""
        return file_stamp(self.manifest_path)  # type: ignore[attr-defined]

    # --- raw layer ----------------------------------------------------------------------------------------
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self.raw.add(ids, vectors)

    def remove(self, ids: np.ndarray) -> None:
        self.raw.remove(ids)

    def get(self, ids: np.ndarray) -> np.ndarray:
        return self.raw.get(ids)

    def ids(self) -> np.ndarray:
        return self.raw.ids()

    def count(self) -> int:
        return self.raw.count()

    def all_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of every live row, from the raw store."""
        return self.raw.all_vectors()

    def refresh(self) -> bool:
        """For a read-only view: pick up what the writer committed (searches also do this by themselves)."""
        changed = self.raw.refresh()
        if self.readonly:
            self._reload_if_changed()
        return changed

    # --- keeping the structure in step --------------------------------------------------------------------
    def flush(self) -> None:
        """Commit the raw rows, bring the structure up to them, and record how far it got."""
        self.raw.flush()
        self._follow(self.raw.raw_view())
        self._save_after_flush()

    def rebuild(self) -> None:
        """Build the structure again from every live raw row (used by `reindex` and after compaction)."""
        self.raw.flush()
        view = self.raw.raw_view()
        start = time.perf_counter()
        if self._wanted(view):
            self._build(view)
        else:
            self._drop()
        self.cursor = Cursor.of(view)
        self.info = {
            "built_rows": view.live_count,
            "build_seconds": round(time.perf_counter() - start, 3),
            **self._build_info(),
        }
        if self._ready():
            self.info.update(self._measure_recall(view))
        self._save()

    def _follow(self, view: RawView) -> bool:
        """Apply the delta since the cursor; rebuild when that is impossible or due. True if the structure is usable."""
        if self._ready() and self.cursor.matches(view) and not self._rebuild_due(view):
            return True  # the common case, checked on every search: nothing changed since the last look
        if self.readonly and not self.applies_when_readonly:
            return False
        if not self._wanted(view):
            had_structure = self._ready()
            self._drop()
            self.cursor = Cursor.of(view)
            if had_structure and not self.readonly:
                self._save()
            return False
        delta = None if not self._ready() else delta_since(self.cursor, view)
        if delta is None or self._rebuild_due(view):
            if self.readonly:
                return False
            self.rebuild()
            return self._ready()
        if len(delta.new_rows) or len(delta.dead_rows):
            self._apply(view, delta)
            self.cursor = Cursor.of(view)
        return True

    def _measure_recall(self, view: RawView, n: int = 100) -> dict[str, Any]:
        """recall@10 of the structure against exact search, on queries sampled from the collection."""
        queries = sample_queries(view, n)
        truth = exact_top_ids(view, queries, RECALL_K)
        found = self._search(queries, RECALL_K, view, None)[1]
        return {"recall_at_10": round(recall_at_k(found, truth), 4), "recall_queries": len(queries)}

    # --- searching ----------------------------------------------------------------------------------------
    def search(
        self, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        queries = np.atleast_2d(np.asarray(queries, np.float32))
        view = self._current_view()
        if view is None:
            return self.raw.search(queries, k, allowed_ids)
        if allowed_ids is None:
            return self._search(queries, k, view, None)
        rows = self.raw.rows_of(allowed_ids)
        if self._exact_for_filter(len(rows), view):
            return exact_search_rows(view, queries, k, rows)
        return self._search(queries, k, view, rows)

    def _exact_for_filter(self, allowed: int, view: RawView) -> bool:
        """Whether a filter leaving `allowed` vectors is better answered exactly from the raw rows."""
        return allowed <= int(self.params.get("exact_filter_max", 4096))

    def _current_view(self) -> RawView | None:
        """The raw rows the structure reflects now, or None when the search must be exact."""
        if self.readonly:
            self.raw.refresh()
            self._reload_if_changed()
        view = self.raw.raw_view()
        if not self._ready() and not self._wanted(view):
            return None
        return view if self._follow(view) else None

    def close(self) -> None:
        self._save_on_close()
        self.raw.close()

    @property
    def version(self) -> int:
        """Changes whenever the raw rows change (the derived structure follows them)."""
        return self.raw.version

    def describe(self) -> dict[str, Any]:
        """Kind, parameters, sizes and the recall measured at build time."""
        raw_bytes = self.raw.raw_disk_bytes()
        count = self.count()
        memory = self._memory_bytes()
        return {
            "kind": self.kind,
            "state": self._state(),
            "params": dict(self.params),
            "count": count,
            "raw_disk_bytes": raw_bytes,
            "index_memory_bytes": memory,
            "index_disk_bytes": self._disk_bytes(),
            "index_bytes_per_vector": round(memory / count, 1) if count else 0.0,
            **self.info,
        }

    # --- for subclasses -----------------------------------------------------------------------------------
    def _wanted(self, view: RawView) -> bool:
        """Whether a structure should exist for this many rows (below a size, exact search is the better choice)."""
        return True

    def _ready(self) -> bool:
        raise NotImplementedError

    def _build(self, view: RawView) -> None:
        raise NotImplementedError

    def _apply(self, view: RawView, delta: Delta) -> None:
        raise NotImplementedError

    def _rebuild_due(self, view: RawView) -> bool:
        return False

    def _build_info(self) -> dict[str, Any]:
        """Facts about the last build to keep in the manifest (type, resolved parameters)."""
        return {}

    def _drop(self) -> None:
        """Forget the in-memory structure (the collection shrank below the size that wants one)."""

    def _search(
        self, queries: np.ndarray, k: int, view: RawView, rows: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(scores, catalog ids) from the structure, restricted to `rows` when given."""
        raise NotImplementedError

    def _save(self) -> None:
        """Make the structure and its cursor durable (atomically)."""

    def _save_after_flush(self) -> None:
        self._save()

    def _save_on_close(self) -> None:
        """Called by close(); by default nothing (the structure saves at flush)."""

    def _reload_if_changed(self) -> None:
        """Read-only views: pick up a structure the writer saved since."""

    def _state(self) -> str:
        return "ready" if self._ready() else "exact"

    def _memory_bytes(self) -> int:
        return 0

    def _disk_bytes(self) -> int:
        return 0


def write_manifest(path: Path, data: dict[str, Any]) -> None:
    """Atomically replace a derived structure's manifest (its commit point)."""
    atomic_write_json(path, data)


def read_manifest(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
