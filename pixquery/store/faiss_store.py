"""Approximate stores on faiss: an HNSW graph (`faiss-hnsw`, fast) or IVF-PQ (`faiss-ivfpq`, lean), or `auto`.

Raw vectors stay in the flat store's files (the canonical copy); the faiss index is derived from them and labels
each vector with its raw *row number*, so no second id map is kept and any row range can be re-added after a crash
(see `pixquery.store.derived`). Files, beside the raw ones in the store directory:

  faiss-<type>.json          manifest (the commit point): index file, cursor over the raw rows, parameters, recall
  faiss-<type>.<seq>.index   the serialised faiss index it names

Saving writes a new numbered index file, fsyncs it, then atomically replaces the manifest; the old file is deleted
afterwards. A crash while saving (or rebuilding) therefore leaves the previous index in use, and rows it lacks are
added again from the raw files on the next open. The writer saves every `save_every` rows and on close, not at every
flush: a 1M-vector index file is gigabytes, and catching up a few thousand rows on open costs seconds.

Removals: IVF with 8-bit PQ removes the rows (`remove_ids`). HNSW cannot, and IVF with 4-bit fast-scan codes (the
default) loses vectors added after a removal, so there dead rows are masked out with an `IDSelectorBitmap` inside
the search; once a quarter of the raw rows are dead the raw store compacts and the index is rebuilt.

Filters run inside the search with an `IDSelectorBitmap` of the allowed rows (never by over-fetching and dropping);
a filter that leaves at most `exact_filter_max` vectors is answered exactly from the raw vectors instead, which is
both faster and exact at that size. IVF-PQ re-ranks `refine * k` candidates with the raw vectors (read from the
memory map), so the codes can stay small.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from pixquery.fsutil import fsync_dir
from pixquery.store.auto import choose_index, ivf_nlist
from pixquery.store.derived import Cursor, Delta, DerivedStore, read_manifest, rerank, write_manifest
from pixquery.store.flat import RawView

KIND_TYPES = {"faiss-hnsw": "hnsw", "faiss-ivfpq": "ivfpq", "auto": "auto"}

# Chosen with benchmarks/ann_scale.py (see docs/scale.md for the measurements behind each value).
COMMON_PARAMS: dict[str, Any] = {
    "exact_filter_max": 4096,  # filters selecting at most this many vectors are answered exactly from raw rows
    "threads": None,  # faiss OpenMP threads; None = all cores
    "save_every": 20_000,  # writer saves the index file after this many new rows (and on close)
}
HNSW_PARAMS: dict[str, Any] = {
    "M": 32,
    "efConstruction": 80,
    "efSearch": 64,
    "efSearch_max": 1024,  # cap on the widened search under a filter
    # A graph walk under a filter passing under 2% of the vectors needs efSearch in the thousands for 0.95 recall
    # (measured: 30k vectors, 1% pass: ef 640 -> 0.85, 1024 -> 0.90, 2048 -> 0.997 at 55 ms, while exact over the
    # 300 allowed rows takes 0.7 ms), so such filters are answered exactly from the raw rows.
    "exact_filter_fraction": 0.02,
}
IVFPQ_PARAMS: dict[str, Any] = {
    "nlist": None,  # None = by collection size (pixquery.store.auto.ivf_nlist)
    "m": 64,  # PQ sub-quantizers; with 4-bit codes, 32 bytes per vector
    "nbits": 4,  # 4-bit "fast-scan" codes: 13x faster to train than 8-bit PQ32; recall@10 0.986 vs 0.995 at refine 40
    "opq": False,  # a learnt rotation: measured too slow to train on 2 cores, and re-ranking already recovers recall
    "nprobe": 16,
    "refine": 40,  # candidates re-ranked with the raw vectors = refine * k
    "min_train_rows": 20_000,  # below this many vectors, search stays exact
    "train_sample": 50_000,
    "retrain_factor": 4,  # rebuild (re-train, more lists) once the collection grew this many times
}
AUTO_PARAMS: dict[str, Any] = {"memory_budget": None, "flat_max_rows": None}
BUILD_KEYS = {"hnsw": ("M", "efConstruction"), "ivfpq": ("nlist", "m", "nbits", "opq")}
ADD_CHUNK = 65_536


def _set_threads(threads: int | None) -> None:
    faiss.omp_set_num_threads(int(threads or os.cpu_count() or 1))


class FaissStore(DerivedStore):
    """Raw vectors in a flat store plus a derived faiss index (HNSW or IVF-PQ, or chosen by size with `auto`)."""

    default_params = {**COMMON_PARAMS, **HNSW_PARAMS, **IVFPQ_PARAMS, **AUTO_PARAMS}

    def __init__(
        self,
        directory: Path,
        dim: int,
        readonly: bool = False,
        params: dict[str, Any] | None = None,
        kind: str = "faiss-hnsw",
    ) -> None:
        if kind not in KIND_TYPES:
            raise ValueError(f"unknown faiss store kind {kind!r}; known: {', '.join(KIND_TYPES)}")
        self.kind = kind
        self.requested = KIND_TYPES[kind]
        super().__init__(directory, dim, readonly, params)
        self._explicit = dict(params or {})
        self.index: faiss.Index | None = None
        self.built_type: str | None = None
        self.seq = 0
        self._saved_rows = 0
        self._stamp: tuple[int, int] | None = None
        self._mask_cache: tuple[tuple[int, int, int], np.ndarray] | None = None
        self._last_build: dict[str, Any] = {}
        _set_threads(self.params.get("threads"))
        self._load()
        if not readonly:
            self._discard_unreferenced()

    # --- files --------------------------------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.dir / f"faiss-{self.requested}.json"

    def _index_path(self, seq: int) -> Path:
        return self.dir / f"faiss-{self.requested}.{seq}.index"

    def _load(self) -> None:
        """Read the manifest and the index it names (a missing or unreadable index means: rebuild from raw)."""
        self._stamp = self._manifest_stamp()
        manifest = read_manifest(self.manifest_path)
        self.index, self.built_type, self.cursor = None, None, Cursor()
        if manifest is None:
            return
        self.params = {**self.default_params, **manifest.get("params", {}), **self._explicit}
        self.info = manifest.get("info", {})
        self.seq = int(manifest.get("seq", 0))
        if manifest.get("type") is None:
            return
        try:
            self.index = faiss.read_index(str(self._index_path(self.seq)))
        except RuntimeError:
            # Corrupt, or replaced by the writer between our manifest read and now: retry at the next search
            # (a writer rebuilds a corrupt file from the raw vectors).
            self._stamp = None
            return
        self.built_type = manifest["type"]
        self.cursor = Cursor.from_json(manifest["cursor"])
        self._saved_rows = self.cursor.rows

    def _discard_unreferenced(self) -> None:
        """Delete index files a crash left behind (a save that never reached its manifest, or an old one)."""
        keep = self._index_path(self.seq).name
        prefix = f"faiss-{self.requested}."
        for path in self.dir.iterdir():
            if path.name.startswith(prefix) and path.name != keep and path.suffix in (".index", ".tmp"):
                path.unlink(missing_ok=True)

    def _save(self) -> None:
        """Write the index to a new file, then switch the manifest to it atomically."""
        if self.readonly:
            return
        seq = self.seq + 1
        if self.index is not None:
            tmp = self._index_path(seq).with_suffix(".tmp")
            faiss.write_index(self.index, str(tmp))
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, self._index_path(seq))
            fsync_dir(self.dir)
        manifest = {
            "type": self.built_type if self.index is not None else None,
            "seq": seq,
            "cursor": self.cursor.to_json(),
            "params": {key: value for key, value in self.params.items() if key in self.default_params},
            "info": self.info,
        }
        write_manifest(self.manifest_path, manifest)
        self._index_path(self.seq).unlink(missing_ok=True)
        self.seq, self._saved_rows, self._stamp = seq, self.cursor.rows, self._manifest_stamp()

    def _save_after_flush(self) -> None:
        if self.index is not None and self.cursor.rows - self._saved_rows >= int(self.params["save_every"]):
            self._save()

    def _save_on_close(self) -> None:
        # Only rows the raw store has committed may be recorded as covered: uncommitted ones vanish on a crash.
        unsaved = self.index is not None and self.cursor.rows != self._saved_rows
        committed = self.cursor.rows == self.raw.rows and self.cursor.gen == self.raw.gen
        if not self.readonly and unsaved and committed:
            self._save()

    def _reload_if_changed(self) -> None:
        if self._manifest_stamp() != self._stamp:
            self._load()

    # --- choosing and building ----------------------------------------------------------------------------
    def _target_type(self, live: int) -> str:
        """The index type the collection should have now ("flat" means exact search, no index)."""
        if self.requested == "hnsw":
            return "hnsw"
        if self.requested == "ivfpq":
            return "ivfpq" if live >= int(self.params["min_train_rows"]) else "flat"
        flat_max = self.params.get("flat_max_rows")
        return choose_index(
            live,
            self.dim,
            memory_budget=self.params.get("memory_budget"),
            hnsw_m=int(self.params["M"]),
            **({"flat_max_rows": int(flat_max)} if flat_max is not None else {}),
        )

    def _wanted(self, view: RawView) -> bool:
        return self._target_type(view.live_count) != "flat"

    def _ready(self) -> bool:
        return self.index is not None

    def _drop(self) -> None:
        self.index, self.built_type = None, None

    def _rebuild_due(self, view: RawView) -> bool:
        live = view.live_count
        target = self._target_type(live)
        if target != self.built_type:
            return True
        if target == "hnsw" and self.index is not None and self.index.ntotal != self.cursor.rows:
            return True  # graph node numbers must be raw row numbers; a mismatch can only be repaired by a rebuild
        built = self.info.get("built_params", {})
        if any(built.get(key) != self._build_params(target).get(key) for key in BUILD_KEYS[target]):
            return True
        return target == "ivfpq" and live > float(self.params["retrain_factor"]) * self.info.get("built_rows", live)

    def _build_params(self, index_type: str) -> dict[str, Any]:
        return {key: self.params[key] for key in BUILD_KEYS[index_type]}

    def _build(self, view: RawView) -> None:
        live = view.live_count
        index_type = self._target_type(live)
        if index_type == "hnsw":
            index = faiss.IndexHNSWFlat(self.dim, int(self.params["M"]), faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = int(self.params["efConstruction"])
            # Every row goes in, dead ones too: the graph's node number must equal the raw row number.
            self._add_rows(index, view, np.arange(view.rows, dtype=np.int64), with_ids=False)
            extra: dict[str, Any] = {}
        else:
            nlist = self.params["nlist"] or ivf_nlist(live)
            index = self._new_ivfpq(nlist)
            sample_size = min(live, max(int(self.params["train_sample"]), 39 * nlist))
            rng = np.random.default_rng(0)
            sample = np.sort(rng.choice(view.live_rows(), size=sample_size, replace=False))
            index.train(np.ascontiguousarray(view.matrix[sample]))
            self._add_rows(index, view, view.live_rows(), with_ids=True)
            extra = {"nlist": int(nlist), "train_rows": int(sample_size)}
        self.index, self.built_type = index, index_type
        self._mask_cache = None
        self._last_build = {"type": index_type, "built_params": self._build_params(index_type), **extra}

    def _build_info(self) -> dict[str, Any]:
        return self._last_build if self.index is not None else {"type": None}

    def _new_ivfpq(self, nlist: int) -> faiss.Index:
        m, nbits = int(self.params["m"]), int(self.params["nbits"])
        key = f"IVF{nlist},PQ{m}x{nbits}" + ("fs" if nbits == 4 else "")
        if self.params["opq"]:
            key = f"OPQ{m},{key}"
        return faiss.index_factory(self.dim, key, faiss.METRIC_INNER_PRODUCT)

    @staticmethod
    def _add_rows(index: faiss.Index, view: RawView, rows: np.ndarray, with_ids: bool) -> None:
        for start in range(0, len(rows), ADD_CHUNK):
            chunk = rows[start : start + ADD_CHUNK]
            vectors = np.ascontiguousarray(view.matrix[chunk], dtype=np.float32)
            if with_ids:
                index.add_with_ids(vectors, chunk)
            else:
                index.add(vectors)

    def _apply(self, view: RawView, delta: Delta) -> None:
        assert self.index is not None
        if self.built_type == "hnsw":
            self._add_rows(self.index, view, delta.new_rows, with_ids=False)
        else:
            if len(delta.dead_rows) and self._removes_rows():
                self.index.remove_ids(faiss.IDSelectorBatch(delta.dead_rows))
            new_live = delta.new_rows[view.live[delta.new_rows]]
            self._add_rows(self.index, view, new_live, with_ids=True)
        self._mask_cache = None

    def _removes_rows(self) -> bool:
        """Whether dead rows are removed from the index (else masked in every search until the next rebuild).

        IVF with 8-bit PQ removes them. HNSW cannot, and with faiss's 4-bit fast-scan lists, vectors added after
        a `remove_ids` are no longer found (measured on faiss 1.15: 9 of 10 lost), so those mask instead.
        """
        return self.built_type == "ivfpq" and int(self.params["nbits"]) != 4

    # --- searching ----------------------------------------------------------------------------------------
    def _exact_for_filter(self, allowed: int, view: RawView) -> bool:
        if super()._exact_for_filter(allowed, view):
            return True
        return self.built_type == "hnsw" and allowed < float(self.params["exact_filter_fraction"]) * view.live_count

    def _live_bitmap(self, view: RawView) -> np.ndarray | None:
        """Packed bitmap of live rows (None when none is dead), cached until rows change."""
        if view.dead_count == 0:
            return None
        key = (view.gen, view.rows, view.dead_count)
        if self._mask_cache is None or self._mask_cache[0] != key:
            self._mask_cache = (key, np.packbits(view.live, bitorder="little"))
        return self._mask_cache[1]

    def _search(
        self, queries: np.ndarray, k: int, view: RawView, rows: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        assert self.index is not None
        if rows is not None:
            mask = np.zeros(view.rows, bool)
            mask[rows] = True
            bitmap: np.ndarray | None = np.packbits(mask, bitorder="little")
            # A filter passing a fraction p of the vectors: the nearest allowed vectors are farther away, so widen
            # the search: 1/p for the graph (capped by efSearch_max), sqrt(1/p) lists for IVF (1% pass: nprobe 160
            # gave recall@10 0.998 on 100k). Measured in benchmarks/ann_scale.py.
            inverse = max(1.0, view.live_count / max(len(rows), 1))
            boost = inverse if self.built_type == "hnsw" else math.sqrt(inverse)
        else:
            bitmap, boost = (None if self._removes_rows() else self._live_bitmap(view)), 1.0
        selector = faiss.IDSelectorBitmap(view.rows, faiss.swig_ptr(bitmap)) if bitmap is not None else None
        queries = np.ascontiguousarray(queries, np.float32)
        if self.built_type == "hnsw":
            ef = min(int(self.params["efSearch_max"]), max(k, int(int(self.params["efSearch"]) * boost)))
            params = faiss.SearchParametersHNSW(efSearch=max(ef, k), sel=selector)
            scores, labels = self.index.search(queries, k, params=params)
            ids = np.where(labels >= 0, view.row_ids[np.clip(labels, 0, None)], -1)
            return np.where(labels >= 0, scores, -np.inf).astype(np.float32), ids.astype(np.int64)
        ivf = faiss.extract_index_ivf(self.index)
        nprobe = min(ivf.nlist, int(int(self.params["nprobe"]) * boost))
        params = faiss.SearchParametersIVF(nprobe=nprobe, sel=selector)
        _, candidates = self.index.search(queries, k * int(self.params["refine"]), params=params)
        return rerank(view, queries, candidates, k)

    # --- reporting ----------------------------------------------------------------------------------------
    def _state(self) -> str:
        if self.index is None:
            return "exact (no index: below the size that wants one, or not built yet)"
        return f"ready ({self.built_type})"

    def _memory_bytes(self) -> int:
        index = self.index
        if index is None:
            return 0
        if self.built_type == "hnsw":
            hnsw = faiss.downcast_index(index).hnsw
            links = hnsw.neighbors.size() * 4 + hnsw.offsets.size() * 8 + hnsw.levels.size() * 4
            return int(index.ntotal * self.dim * 4 + links)
        ivf = faiss.extract_index_ivf(index)
        codes = ivf.invlists.compute_ntotal() * (ivf.code_size + 8)
        pq_tables = (1 << int(self.params["nbits"])) * self.dim * 4
        tables = ivf.nlist * self.dim * 4 + pq_tables + (self.dim * self.dim * 4 if self.params["opq"] else 0)
        return int(codes + tables)

    def _disk_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.dir.glob(f"faiss-{self.requested}.*") if p.is_file())

    @classmethod
    def discard(cls, directory: Path, kind: str) -> None:
        """Delete the derived files of `kind` (the raw vectors stay)."""
        for path in Path(directory).glob(f"faiss-{KIND_TYPES[kind]}.*"):
            path.unlink(missing_ok=True)
