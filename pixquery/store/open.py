"""Open the vector store of an index by its kind (the `store` of its config.json); see the package docstring."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pixquery.store.base import VectorStore

STORE_KINDS = ("flat", "faiss-hnsw", "faiss-ivfpq", "auto", "milvus:PATH_OR_URL")
FAISS_KINDS = ("faiss-hnsw", "faiss-ivfpq", "auto")


def check_kind(kind: str) -> str:
    """`kind` if it names a store kind, else a ValueError listing the kinds."""
    if kind == "flat" or kind in FAISS_KINDS or (kind.startswith("milvus:") and len(kind) > len("milvus:")):
        return kind
    raise ValueError(f"unknown vector store kind {kind!r}; known: {', '.join(STORE_KINDS)}")


def open_store(
    kind: str, directory: Path, dim: int, readonly: bool = False, params: Mapping[str, Any] | None = None
) -> VectorStore:
    """Open (or create) the vector store of an index. `directory` is the index's `vectors/` folder.

    `params` tunes an approximate store (e.g. {"efSearch": 128}); it is ignored by `flat`.
    """
    check_kind(kind)
    if kind == "flat":
        from pixquery.store.flat import FlatStore

        return FlatStore(directory, dim, readonly=readonly)
    if kind in FAISS_KINDS:
        from pixquery.store.faiss_store import FaissStore

        return FaissStore(directory, dim, readonly=readonly, params=dict(params or {}), kind=kind)
    from pixquery.store.milvus_store import MilvusStore

    return MilvusStore(directory, dim, readonly=readonly, params=dict(params or {}), uri=kind[len("milvus:") :])


def discard_store(kind: str, directory: Path) -> None:
    """Delete what only the store `kind` derived from the raw vectors (never the raw vectors themselves)."""
    if kind in FAISS_KINDS:
        from pixquery.store.faiss_store import FaissStore

        FaissStore.discard(directory, kind)
    elif kind.startswith("milvus:"):
        from pixquery.store.milvus_store import MilvusStore

        MilvusStore.discard(directory, kind[len("milvus:") :])
