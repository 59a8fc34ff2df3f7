"""The exact `flat` vector store: float32 rows on disk, memory-mapped, searched with one matrix product.

Layout in the store directory:
  vectors.<gen>.f32   raw rows, appended in order
  ids.<gen>.i64       the catalog id of each row, same order
  manifest.json       {"dim", "gen", "rows", "dead": [row numbers replaced or removed]} -- the commit point

Appends go past the committed end of the files; `flush()` fsyncs them and then atomically replaces the manifest.
A crash at any moment leaves the last manifest valid; bytes past its `rows` are ignored and truncated on open.
Compaction writes a new generation and switches to it with the same atomic manifest replace.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pixquery.fsutil import atomic_write_json

MANIFEST = "manifest.json"
COMPACT_DEAD_FRACTION = 0.25
RAW_PREFIXES = ("vectors", "ids")
"""File-name prefixes of the raw rows (what every store kind keeps)."""


@dataclass(frozen=True)
class RawView:
    """The raw rows at one moment, without copying: row -> catalog id, which rows are live, and the vectors.

    Derived structures (faiss, Milvus) address rows by number through this view instead of keeping a second id map.
    """

    gen: int
    row_ids: np.ndarray
    live: np.ndarray
    matrix: np.ndarray
    dead_count: int

    @property
    def rows(self) -> int:
        return len(self.row_ids)

    @property
    def live_count(self) -> int:
        return self.rows - self.dead_count

    def live_rows(self) -> np.ndarray:
        return np.flatnonzero(self.live)


class FlatStore:
    """Exact nearest-neighbour search over memory-mapped float32 vectors keyed by catalog id."""

    kind = "flat"

    def __init__(self, directory: Path, dim: int, readonly: bool = False) -> None:
        self.dir = Path(directory)
        self.dim = int(dim)
        self.readonly = readonly
        if not readonly:
            self.dir.mkdir(parents=True, exist_ok=True)
        manifest_path = self.dir / MANIFEST
        if manifest_path.exists():
            manifest = json.loads(manifest_path.read_text())
            if int(manifest["dim"]) != self.dim:
                raise ValueError(f"vector store dimension is {manifest['dim']}, expected {self.dim}")
        else:
            manifest = {"dim": self.dim, "gen": 0, "rows": 0, "dead": []}
            if not readonly:
                self._vec_path(0).touch()
                self._ids_path(0).touch()
                atomic_write_json(manifest_path, manifest)
        self._manifest_stamp = self._stamp()
        self.gen: int = int(manifest["gen"])
        self.rows: int = int(manifest["rows"])
        self._dead: set[int] = {int(r) for r in manifest["dead"]}
        if not readonly:
            self._discard_uncommitted()
        self._pending_vectors: list[np.ndarray] = []
        self._pending_ids: list[np.ndarray] = []
        self.version = 0
        """Changes whenever the rows change (in this process, or a writer's commit seen by `refresh`)."""
        self._load()

    def _stamp(self) -> tuple[int, int] | None:
        return file_stamp(self.dir / MANIFEST)

    def refresh(self) -> bool:
        """For a read-only view: pick up what a writer committed since we opened. Returns True if reloaded."""
        stamp = self._stamp()
        if not self.readonly or stamp == self._manifest_stamp or stamp is None:
            return False
        manifest = json.loads((self.dir / MANIFEST).read_text())
        self._manifest_stamp = stamp
        self.gen, self.rows = int(manifest["gen"]), int(manifest["rows"])
        self._dead = {int(r) for r in manifest["dead"]}
        self._load()
        self.version += 1
        return True

    # --- files --------------------------------------------------------------------------------------------
    def _vec_path(self, gen: int) -> Path:
        return self.dir / f"vectors.{gen}.f32"

    def _ids_path(self, gen: int) -> Path:
        return self.dir / f"ids.{gen}.i64"

    def _discard_uncommitted(self) -> None:
        """Truncate bytes written after the last commit and delete files of abandoned generations."""
        for path, width in ((self._vec_path(self.gen), 4 * self.dim), (self._ids_path(self.gen), 8)):
            if path.exists() and path.stat().st_size > self.rows * width:
                with open(path, "r+b") as f:
                    f.truncate(self.rows * width)
        keep = {self._vec_path(self.gen).name, self._ids_path(self.gen).name, MANIFEST}
        for path in self.dir.iterdir():
            if path.name not in keep and path.name.split(".")[0] in ("vectors", "ids", "manifest"):
                path.unlink()

    def _load(self) -> None:
        """Map the committed rows and build the id -> row lookup."""
        if self.rows:
            self._vectors = np.memmap(self._vec_path(self.gen), np.float32, "r", shape=(self.rows, self.dim))
            self._row_ids = np.fromfile(self._ids_path(self.gen), np.int64, count=self.rows)
        else:
            self._vectors = np.zeros((0, self.dim), np.float32)
            self._row_ids = np.zeros(0, np.int64)
        self._live = np.ones(self.rows, bool)
        if self._dead:
            self._live[np.fromiter(self._dead, np.int64)] = False
        self._row_of: dict[int, int] = {int(i): r for r, i in enumerate(self._row_ids) if self._live[r]}

    # --- protocol -----------------------------------------------------------------------------------------
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids = np.asarray(ids, np.int64).reshape(-1)
        vectors = np.ascontiguousarray(vectors, np.float32)
        if vectors.shape != (len(ids), self.dim):
            raise ValueError(f"expected vectors of shape ({len(ids)}, {self.dim}), got {vectors.shape}")
        if len(np.unique(ids)) != len(ids):
            raise ValueError("duplicate ids in one add()")
        self._pending_ids.append(ids)
        self._pending_vectors.append(vectors)

    def remove(self, ids: np.ndarray) -> None:
        self._write_pending()
        for i in np.asarray(ids, np.int64).reshape(-1):
            row = self._row_of.pop(int(i), None)
            if row is not None:
                self._dead.add(row)
                self._live[row] = False
                self.version += 1

    def _write_pending(self) -> None:
        """Append pending adds to the files (not yet committed) and map them, so reads see them.

        Appending to the file instead of growing an in-memory copy keeps indexing linear in the collection size.
        """
        if not self._pending_ids:
            return
        if self.readonly:
            raise PermissionError("the store was opened read-only")
        ids = np.concatenate(self._pending_ids)
        vectors = np.concatenate(self._pending_vectors)
        self._pending_ids, self._pending_vectors = [], []
        self.version += 1
        with open(self._vec_path(self.gen), "ab") as f:
            f.write(vectors.tobytes())
        with open(self._ids_path(self.gen), "ab") as f:
            f.write(ids.tobytes())
        start = len(self._row_ids)
        for offset, i in enumerate(ids.tolist()):
            old = self._row_of.get(i)
            if old is not None:
                self._dead.add(old)
            self._row_of[i] = start + offset
        total = start + len(ids)
        self._row_ids = np.concatenate([self._row_ids, ids])
        self._vectors = np.memmap(self._vec_path(self.gen), np.float32, "r", shape=(total, self.dim))
        self._live = np.ones(total, bool)
        if self._dead:
            self._live[np.fromiter(self._dead, np.int64)] = False

    def flush(self) -> None:
        if self.readonly:
            raise PermissionError("the store was opened read-only")
        self._write_pending()
        for path in (self._vec_path(self.gen), self._ids_path(self.gen)):
            with open(path, "ab") as f:
                os.fsync(f.fileno())
        self.rows = len(self._row_ids)
        self._write_manifest()
        if self._dead and len(self._dead) > COMPACT_DEAD_FRACTION * max(self.rows, 1):
            self.compact()

    def _write_manifest(self) -> None:
        manifest = {"dim": self.dim, "gen": self.gen, "rows": self.rows, "dead": sorted(self._dead)}
        atomic_write_json(self.dir / MANIFEST, manifest)

    def compact(self) -> None:
        """Rewrite only the live rows into a new generation, then switch to it atomically."""
        live_rows = np.flatnonzero(self._live)
        new_gen = self.gen + 1
        vectors = np.ascontiguousarray(np.asarray(self._vectors)[live_rows])
        for path, data in ((self._vec_path(new_gen), vectors), (self._ids_path(new_gen), self._row_ids[live_rows])):
            with open(path, "wb") as f:
                f.write(data.tobytes())
                f.flush()
                os.fsync(f.fileno())
        old_gen = self.gen
        self.gen, self.rows, self._dead = new_gen, len(live_rows), set()
        self._write_manifest()
        for path in (self._vec_path(old_gen), self._ids_path(old_gen)):
            path.unlink(missing_ok=True)
        self._load()

    def _matrix(self) -> np.ndarray:
        if self.readonly:
            self.refresh()
        self._write_pending()
        return np.asarray(self._vectors)

    def search(
        self, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        queries = np.atleast_2d(np.asarray(queries, np.float32))
        matrix = self._matrix()
        if allowed_ids is not None and len(allowed_ids) * 8 >= len(self._row_ids):
            # A broad filter: score everything and mask, rather than copying most of the matrix row by row.
            allowed = np.isin(self._row_ids, np.asarray(allowed_ids, np.int64)) & self._live
            candidate_ids = self._row_ids
            scores = queries @ matrix.T
            scores[:, ~allowed] = -np.inf
        elif allowed_ids is not None:
            rows = np.array([self._row_of[i] for i in np.asarray(allowed_ids).tolist() if i in self._row_of], np.int64)
            candidate_ids = self._row_ids[rows] if len(rows) else np.zeros(0, np.int64)
            scores = queries @ matrix[rows].T if len(rows) else np.zeros((len(queries), 0), np.float32)
        else:
            candidate_ids = self._row_ids
            scores = queries @ matrix.T
            if not self._live.all():
                scores[:, ~self._live] = -np.inf
        return top_k(scores, candidate_ids, k)

    def get(self, ids: np.ndarray) -> np.ndarray:
        matrix = self._matrix()
        rows = [self._row_of[int(i)] for i in np.asarray(ids).reshape(-1)]
        return np.array(matrix[rows], np.float32).reshape(len(rows), self.dim)

    def ids(self) -> np.ndarray:
        self._matrix()
        return np.array(sorted(self._row_of), np.int64)

    def count(self) -> int:
        self._matrix()
        return len(self._row_of)

    def all_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of every live row, for clustering, duplicates and rebuilding other stores."""
        matrix = self._matrix()
        rows = np.flatnonzero(self._live)
        return self._row_ids[rows], np.asarray(matrix[rows])

    def raw_view(self) -> RawView:
        """Every row written so far (pending adds included), numbered, without copying."""
        matrix = self._matrix()
        # The dead-row count comes from the store's set, not a pass over `live`: a search checks it every time.
        return RawView(self.gen, self._row_ids, self._live, matrix, len(self._dead))

    def rows_of(self, ids: np.ndarray) -> np.ndarray:
        """Sorted row numbers of the live vectors of these catalog ids (unknown ids are skipped)."""
        row_of = self._row_of
        rows = [row_of[i] for i in np.asarray(ids, np.int64).reshape(-1).tolist() if i in row_of]
        return np.sort(np.array(rows, np.int64))

    def raw_disk_bytes(self) -> int:
        """Bytes of the raw row files on disk."""
        return sum(p.stat().st_size for p in self.dir.iterdir() if p.name.split(".")[0] in RAW_PREFIXES)

    def describe(self) -> dict[str, Any]:
        """Kind, sizes and recall (exact: 1.0), in the form every store's `describe()` has."""
        return {
            "kind": self.kind,
            "state": "exact",
            "params": {},
            "count": self.count(),
            "raw_disk_bytes": self.raw_disk_bytes(),
            "index_memory_bytes": 0,
            "index_disk_bytes": 0,
            "index_bytes_per_vector": 0.0,
            "recall_at_10": 1.0,
        }

    def rebuild(self) -> None:
        """Exact search derives nothing from the rows: only commit what is pending."""
        if not self.readonly:
            self.flush()

    def close(self) -> None:
        self._vectors = np.zeros((0, self.dim), np.float32)


def file_stamp(path: Path) -> tuple[int, int] | None:
    """(mtime ns, inode) of a manifest, or None: an atomic replace changes it, so a reader knows to reload."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_mtime_ns, st.st_ino


def top_k(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best k (score, id) per row of `scores`, best first; ties broken by the lower id; pads with (-inf, -1)."""
    n_queries, n = scores.shape
    k = int(k)
    out_scores = np.full((n_queries, k), -np.inf, np.float32)
    out_ids = np.full((n_queries, k), -1, np.int64)
    if n == 0 or k <= 0:
        return out_scores, out_ids
    take = min(k, n)
    if take < n:
        part = np.argpartition(-scores, take - 1, axis=1)[:, :take]
    else:
        part = np.broadcast_to(np.arange(n), (n_queries, n))
    part_scores = np.take_along_axis(scores, part, axis=1)
    part_ids = ids[part]
    order = np.lexsort((part_ids, -part_scores), axis=1)
    sorted_scores = np.take_along_axis(part_scores, order, axis=1)
    sorted_ids = np.take_along_axis(part_ids, order, axis=1)
    valid = np.isfinite(sorted_scores)
    out_scores[:, :take] = np.where(valid, sorted_scores, -np.inf)
    out_ids[:, :take] = np.where(valid, sorted_ids, -1)
    return out_scores, out_ids
