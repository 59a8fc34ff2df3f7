"""The vector store interface: remember vectors by catalog id and find the nearest ones."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class VectorStore(Protocol):
    """Vectors keyed by catalog id (int64). Vectors are float32 and unit length; similarity is the dot product.

    Writes become durable at `flush()`: a crash before it may lose the unflushed adds, never corrupt the store.
    The catalog is the source of truth; `pixquery.indexing.reconcile` repairs any difference on open.
    """

    kind: str
    """Store backend name, e.g. "flat", "faiss-hnsw"."""
    dim: int

    @property
    def version(self) -> int:
        """A counter that changes whenever the stored vectors change (caches of collection statistics key on it)."""
        ...

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add or replace the vectors of these catalog ids."""
        ...

    def remove(self, ids: np.ndarray) -> None:
        """Forget these catalog ids (unknown ids are ignored)."""
        ...

    def search(
        self, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return (scores, ids), each (n_queries, k), best first; missing slots have id -1 and score -inf.

        `allowed_ids` restricts the search to those catalog ids *inside* the search (not by over-fetching).
        """
        ...

    def get(self, ids: np.ndarray) -> np.ndarray:
        """Return the stored vectors of these ids, (len(ids), dim); KeyError for an unknown id."""
        ...

    def ids(self) -> np.ndarray:
        """All catalog ids currently stored (int64)."""
        ...

    def all_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of every stored vector, for clustering, duplicates and collection statistics."""
        ...

    def count(self) -> int:
        """Number of stored vectors."""
        ...

    def describe(self) -> dict[str, Any]:
        """Kind, parameters, sizes, and the recall@10 measured at build time (1.0 for exact search)."""
        ...

    def rebuild(self) -> None:
        """Build any structure derived from the raw vectors again from all of them (nothing for exact search)."""
        ...

    def refresh(self) -> bool:
        """A read-only view picks up what a writer committed since; True when something changed."""
        ...

    def flush(self) -> None:
        """Make every add/remove so far durable on disk."""
        ...

    def close(self) -> None:
        """Release files and memory maps."""
        ...
