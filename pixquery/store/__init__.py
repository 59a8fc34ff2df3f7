"""Remember what is indexed (the catalog) and find nearest vectors (vector stores)."""

from __future__ import annotations

from pathlib import Path

from pixquery.store.base import VectorStore

STORE_KINDS = ("flat",)


def open_store(kind: str, directory: Path, dim: int, readonly: bool = False) -> VectorStore:
    """Open (or create) the vector store of an index. `directory` is the index's `vectors/` folder."""
    if kind == "flat":
        from pixquery.store.flat import FlatStore

        return FlatStore(directory, dim, readonly=readonly)
    raise ValueError(f"unknown vector store kind {kind!r}; known: {', '.join(STORE_KINDS)}")
