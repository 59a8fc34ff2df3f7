"""The `milvus:` store: raw vectors in the flat files plus a Milvus collection derived from them.

`milvus:./vectors.db` (a path; relative to the index directory) runs Milvus Lite embedded in this process, with
nothing to install or start beyond `pip install pymilvus milvus-lite`. `milvus:http://HOST:19530` talks to a
Milvus server or cluster with the same code, which is how a collection outgrows one machine (docs/scale.md).

The collection holds one entity per live vector: the catalog id (int64 primary key) and the float vector, indexed
with HNSW for inner product. Filters become a boolean expression inside the search (`id in [...]`); catalog-level
conditions (folder, date, camera) are resolved by the catalog's SQL first, so no scalar fields are duplicated into
Milvus. The raw vectors stay the canonical copy: the collection follows them at every `flush()` (delete what died,
upsert what was appended since the cursor in `milvus-<key>.json`), and `reindex` or a lost collection rebuilds it.

Milvus Lite serves one process per database file. A read-only view that cannot open it (an indexer holds it), or
that sees raw rows the collection does not have yet, answers exactly from the raw vectors instead: slower, never
wrong. Use a Milvus server when a search service and an indexer must run at the same time.
"""

from __future__ import annotations

import hashlib
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from pixquery.store.derived import Cursor, Delta, DerivedStore, read_manifest, write_manifest
from pixquery.store.flat import RawView

MILVUS_PARAMS: dict[str, Any] = {
    "index_type": "HNSW",
    "M": 32,  # same graph settings as faiss-hnsw, chosen by the same measurements
    "efConstruction": 80,
    "ef": 64,
    "exact_filter_max": 4096,
    "insert_batch": 2000,  # rows per insert call: bounded message size
    "collection": None,  # None = a fresh name per index, kept in the manifest
    "token": None,  # for a secured server: "user:password" or an API key
    "connect_timeout": 10.0,  # seconds
}
ID_FIELD, VECTOR_FIELD = "id", "vector"


def is_remote(uri: str) -> bool:
    return uri.startswith(("http://", "https://", "tcp://", "grpc://"))


def resolve_uri(uri: str, directory: Path) -> str:
    """A server URL as given; a Milvus Lite path made absolute against the index directory (the store dir's parent)."""
    if is_remote(uri):
        return uri
    path = Path(uri).expanduser()
    return str(path if path.is_absolute() else (Path(directory).parent / path).resolve())


def manifest_path(directory: Path, uri: str) -> Path:
    key = hashlib.blake2b(uri.encode(), digest_size=5).hexdigest()
    return Path(directory) / f"milvus-{key}.json"


class MilvusStore(DerivedStore):
    """Raw vectors in a flat store plus a Milvus collection (Milvus Lite for a path, a server for a URL)."""

    default_params = dict(MILVUS_PARAMS)
    applies_when_readonly = False  # a read-only view never writes to the collection

    def __init__(
        self, directory: Path, dim: int, readonly: bool = False, params: dict[str, Any] | None = None, uri: str = ""
    ) -> None:
        if not uri:
            raise ValueError("a milvus store needs a path or URL: milvus:./vectors.db or milvus:http://HOST:19530")
        self.kind = f"milvus:{uri}"
        super().__init__(directory, dim, readonly, params)
        self.uri = resolve_uri(uri, self.dir)
        self.manifest_path = manifest_path(self.dir, uri)
        self._explicit = dict(params or {})
        self._stamp: tuple[int, int] | None = None
        self.client: Any = None
        self.unavailable: str | None = None
        self.collection = ""
        self._built = False
        self._load()
        self._connect()

    # --- connection and manifest --------------------------------------------------------------------------
    def _connect(self) -> None:
        from pymilvus import MilvusClient

        try:
            token = self.params.get("token")
            options = {"timeout": float(self.params["connect_timeout"]), **({"token": token} if token else {})}
            self.client = MilvusClient(self.uri, **options)
        except Exception as exc:  # Lite held by another process, server down: a writer must fail, a reader copes
            if not self.readonly:
                raise
            self.client, self.unavailable = None, f"{type(exc).__name__}: {exc}"
            return
        if self._built and self.client.has_collection(self.collection):
            self.client.load_collection(self.collection)
        else:
            self._built = False

    def _load(self) -> None:
        self._stamp = self._manifest_stamp()
        manifest = read_manifest(self.manifest_path) or {}
        self.params = {**self.default_params, **manifest.get("params", {}), **self._explicit}
        self.collection = self.params["collection"] or manifest.get("collection") or f"pixquery_{uuid.uuid4().hex[:12]}"
        self.info = manifest.get("info", {})
        self._built = "cursor" in manifest
        self.cursor = Cursor.from_json(manifest["cursor"]) if self._built else Cursor()

    def _reload_if_changed(self) -> None:
        if self._manifest_stamp() != self._stamp:
            self._load()
            if self.client is not None and self._built:
                self.client.load_collection(self.collection)

    def _save(self) -> None:
        if self.readonly or self.client is None:
            return
        self.client.flush(self.collection)  # durable in Milvus before the manifest says the rows are covered
        manifest = {
            "uri": self.uri,
            "collection": self.collection,
            "cursor": self.cursor.to_json(),
            "params": {key: value for key, value in self.params.items() if key != "token"},
            "info": self.info,
        }
        write_manifest(self.manifest_path, manifest)
        self._stamp = self._manifest_stamp()

    # --- building and following ---------------------------------------------------------------------------
    def _ready(self) -> bool:
        return self.client is not None and self._built

    def _build(self, view: RawView) -> None:
        from pymilvus import DataType, MilvusClient

        client = self.client
        if client.has_collection(self.collection):
            client.drop_collection(self.collection)
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field(ID_FIELD, DataType.INT64, is_primary=True)
        schema.add_field(VECTOR_FIELD, DataType.FLOAT_VECTOR, dim=self.dim)
        index_params = client.prepare_index_params()
        build = {"M": int(self.params["M"]), "efConstruction": int(self.params["efConstruction"])}
        index_params.add_index(
            field_name=VECTOR_FIELD,
            index_type=self.params["index_type"],
            metric_type="IP",
            params=build if self.params["index_type"] == "HNSW" else {},
        )
        client.create_collection(self.collection, schema=schema, index_params=index_params)
        self._upsert(view, view.live_rows())
        client.flush(self.collection)
        # Reload after the bulk insert: a collection loaded while it was empty keeps searching its growing
        # segments by brute force (measured several times slower) until it is loaded again.
        client.release_collection(self.collection)
        client.load_collection(self.collection)
        self._built = True

    def _build_info(self) -> dict[str, Any]:
        return {"collection": self.collection, "uri": self.uri}

    def _upsert(self, view: RawView, rows: np.ndarray) -> None:
        batch = int(self.params["insert_batch"])
        for start in range(0, len(rows), batch):
            chunk = rows[start : start + batch]
            vectors = np.asarray(view.matrix[chunk], np.float32)
            data = [
                {ID_FIELD: int(i), VECTOR_FIELD: v}
                for i, v in zip(view.row_ids[chunk].tolist(), vectors, strict=True)
            ]
            self.client.upsert(self.collection, data)

    def _apply(self, view: RawView, delta: Delta) -> None:
        new_live = delta.new_rows[view.live[delta.new_rows]]
        # A replaced id died at an old row and lives at a new one: the upsert replaces it, no delete needed.
        gone = np.setdiff1d(view.row_ids[delta.dead_rows], view.row_ids[new_live])
        if len(gone):
            self.client.delete(self.collection, ids=gone.tolist())
        self._upsert(view, new_live)

    # --- searching ----------------------------------------------------------------------------------------
    def _search(
        self, queries: np.ndarray, k: int, view: RawView, rows: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        expr = ""
        ef = int(self.params["ef"])
        if rows is not None:
            expr = f"{ID_FIELD} in [{','.join(map(str, view.row_ids[rows].tolist()))}]"
            # Same widening as faiss-hnsw under a filter passing a fraction p: sqrt(1/p).
            ef = int(ef * np.sqrt(max(1.0, view.live_count / max(len(rows), 1))))
        params = {"metric_type": "IP", "params": {"ef": max(ef, k)} if self.params["index_type"] == "HNSW" else {}}
        results = self.client.search(
            self.collection,
            data=[q.tolist() for q in queries],
            limit=k,
            filter=expr,
            search_params=params,
            output_fields=[ID_FIELD],
        )
        scores = np.full((len(queries), k), -np.inf, np.float32)
        ids = np.full((len(queries), k), -1, np.int64)
        for q, hits in enumerate(results):
            for j, hit in enumerate(list(hits)[:k]):
                ids[q, j], scores[q, j] = int(hit["id"]), float(hit["distance"])
        return scores, ids

    def _current_view(self) -> RawView | None:
        if self.client is None:
            return None
        return super()._current_view()

    # --- reporting and clean-up ---------------------------------------------------------------------------
    def _state(self) -> str:
        if self.client is None:
            return f"exact (milvus unavailable: {self.unavailable})"
        return "ready" if self._built else "exact (collection not built)"

    def _memory_bytes(self) -> int:
        if not self._built:
            return 0
        # Milvus does not report it; HNSW holds the float32 vectors plus about 2*M links of 4 bytes each.
        return int(self.raw.count() * (self.dim * 4 + 2 * int(self.params["M"]) * 4))

    def _disk_bytes(self) -> int:
        if is_remote(self.uri) or not Path(self.uri).exists():
            return 0
        path = Path(self.uri)
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size

    def close(self) -> None:
        super().close()
        if self.client is not None:
            self.client.close()
            self.client = None

    @classmethod
    def discard(cls, directory: Path, uri: str) -> None:
        """Drop the collection this index derived (and a Milvus Lite file left empty), then forget its manifest."""
        from pymilvus import MilvusClient

        path = manifest_path(directory, uri)
        manifest = read_manifest(path)
        resolved = resolve_uri(uri, Path(directory))
        if manifest is not None:
            client = MilvusClient(resolved)
            try:
                if client.has_collection(manifest["collection"]):
                    client.drop_collection(manifest["collection"])
                empty = not client.list_collections()
            finally:
                client.close()
            if empty and not is_remote(resolved):
                target = Path(resolved)
                shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink(missing_ok=True)
        path.unlink(missing_ok=True)
