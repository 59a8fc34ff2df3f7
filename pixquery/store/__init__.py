"""Remember what is indexed (the catalog) and find nearest vectors (vector stores).

Store kinds (the `store` of an index's config.json):
  flat                    exact search over the raw vectors (the default)
  faiss-hnsw              raw vectors + a faiss HNSW graph: fast, holds the vectors in memory
  faiss-ivfpq             raw vectors + faiss IVF-PQ codes re-ranked from disk: lean on memory
  auto                    flat, HNSW or IVF-PQ, chosen by collection size and a memory budget
  milvus:PATH_OR_URL      raw vectors + a Milvus collection: embedded Milvus Lite for a path (relative paths are
                          relative to the index directory), a Milvus server or cluster for http(s)://HOST:PORT

Every kind keeps the raw vectors in the flat store's files, so `pixquery.store.rebuild.reindex` can switch kinds
without embedding anything again.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pixquery.store.base import VectorStore

STORE_KINDS = ("flat", "faiss-hnsw", "faiss-ivfpq", "auto", "milvus:PATH_OR_URL")
FAISS_KINDS = ("faiss-hnsw", "faiss-ivfpq", "auto")


def open_store(
    kind: str, directory: Path, dim: int, readonly: bool = False, params: Mapping[str, Any] | None = None
) -> VectorStore:
    """Open (or create) the vector store of an index. `directory` is the index's `vectors/` folder.

    `params` tunes an approximate store (e.g. {"efSearch": 128}); it is ignored by `flat`.
    """
    if kind == "flat":
        from pixquery.store.flat import FlatStore

        return FlatStore(directory, dim, readonly=readonly)
    if kind in FAISS_KINDS:
        from pixquery.store.faiss_store import FaissStore

        return FaissStore(directory, dim, readonly=readonly, params=dict(params or {}), kind=kind)
    if kind.startswith("milvus:"):
        from pixquery.store.milvus_store import MilvusStore

        return MilvusStore(directory, dim, readonly=readonly, params=dict(params or {}), uri=kind[len("milvus:") :])
    raise ValueError(f"unknown vector store kind {kind!r}; known: {', '.join(STORE_KINDS)}")


def discard_store(kind: str, directory: Path) -> None:
    """Delete what only the store `kind` derived from the raw vectors (never the raw vectors themselves)."""
    if kind in FAISS_KINDS:
        from pixquery.store.faiss_store import FaissStore

        FaissStore.discard(directory, kind)
    elif kind.startswith("milvus:"):
        from pixquery.store.milvus_store import MilvusStore

        MilvusStore.discard(directory, kind[len("milvus:") :])
