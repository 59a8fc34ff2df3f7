"""Statistics of a collection that some queries need (a calibration sample, query-bank statistics), computed once
per store content and kept in memory, attached to the store object (keyed on its `version`)."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

from pixquery.store.base import VectorStore

_stats: weakref.WeakKeyDictionary[Any, dict[Any, Any]] = weakref.WeakKeyDictionary()


def store_cached(store: VectorStore, key: Any, build: Callable[[], Any]) -> Any:
    """`build()` once per store content and key; later calls while the store is unchanged reuse it."""
    store.refresh()
    signature = (store.version, store.count())
    slot = _stats.setdefault(store, {})
    entry = slot.get(key)
    if entry is not None and entry[0] == signature:
        return entry[1]
    value = build()
    slot[key] = (signature, value)
    return value


def calibration_sample(store: VectorStore, size: int = 4096, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(ids, vectors) of a fixed random sample of up to `size` stored vectors, for score statistics (cached)."""

    def build() -> tuple[np.ndarray, np.ndarray]:
        ids, vectors = store.all_vectors()
        if len(ids) <= size:
            return np.asarray(ids, np.int64), np.ascontiguousarray(vectors, np.float32)
        rows = np.sort(np.random.default_rng(seed).choice(len(ids), size, replace=False))
        return np.asarray(ids, np.int64)[rows], np.ascontiguousarray(vectors[rows], np.float32)

    return store_cached(store, ("sample", size, seed), build)
