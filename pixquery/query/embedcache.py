"""Caches that keep queries cheap: text-bank embeddings on disk per model, collection statistics in memory per store.

Text banks (the inversion vocabulary, the query bank of hubness reduction and of the cut-off) hold thousands of
texts; embedding them is seconds to minutes on a CPU, so they are embedded once per model and kept in
``$PIXQUERY_CACHE`` (or the platform's user cache directory) under ``text-embeddings/``. The file name carries a
fingerprint of the encoder's actual output, so a retrained model with the same name never reads stale vectors.

Collection statistics (a calibration sample of the stored vectors, per-item bank statistics) depend on the store's
content; they live in memory, attached to the store object, and are recomputed when the store's size changes.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pixquery.models.base import Encoder, l2_normalize
from pixquery.store.base import VectorStore

_PROBE_TEXT = "a photo of a red apple on a wooden table"
BATCH = 256

_fingerprints: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
_memory: dict[tuple[str, str], np.ndarray] = {}
_store_stats: weakref.WeakKeyDictionary[Any, dict[Any, Any]] = weakref.WeakKeyDictionary()


def cache_dir() -> Path:
    """The pixquery cache directory: ``$PIXQUERY_CACHE`` if set, else the platform's user cache directory."""
    env = os.environ.get("PIXQUERY_CACHE")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("pixquery"))


def encoder_fingerprint(encoder: Encoder) -> str:
    """A short hash of the encoder's name and of its embedding of a fixed probe text.

    Rounded before hashing, so run-to-run float noise does not change it, while any change of weights does.
    """
    try:
        cached = _fingerprints.get(encoder)
    except TypeError:  # objects that cannot be weakly referenced are fingerprinted every time
        cached = None
    if cached is not None:
        return cached
    probe = np.round(np.asarray(encoder.encode_texts([_PROBE_TEXT]), np.float64), 3) + 0.0
    digest = hashlib.sha1(f"{encoder.name}|{encoder.dim}|".encode() + probe.tobytes()).hexdigest()[:16]
    with contextlib.suppress(TypeError):
        _fingerprints[encoder] = digest
    return digest


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:60] or "model"


def encode_in_batches(encode: Callable[[list[str]], np.ndarray], texts: Sequence[str], dim: int) -> np.ndarray:
    """Encode texts in batches (bounded memory for long banks); returns unit float32 rows."""
    out = np.zeros((len(texts), dim), np.float32)
    for start in range(0, len(texts), BATCH):
        out[start : start + BATCH] = encode(list(texts[start : start + BATCH]))
    return l2_normalize(out)


def cached_text_embeddings(encoder: Encoder, texts: Sequence[str], kind: str, use_disk: bool = True) -> np.ndarray:
    """Unit embeddings of `texts` by `encoder`, from memory, from the disk cache, or freshly computed and saved.

    `kind` names the bank in the file name (e.g. "vocab", "bank") so the cache directory stays readable.
    """
    texts = list(texts)
    digest = hashlib.sha1("\n".join(texts).encode()).hexdigest()[:16]
    key = (encoder_fingerprint(encoder), f"{kind}-{digest}")
    hit = _memory.get(key)
    if hit is not None:
        return hit
    path = cache_dir() / "text-embeddings" / f"{_safe(encoder.name)}-{key[0]}-{kind}-{digest}.npy"
    vectors = None
    if use_disk and path.is_file():
        try:
            loaded = np.load(path)
            if loaded.shape == (len(texts), encoder.dim) and loaded.dtype == np.float32:
                vectors = loaded
        except (OSError, ValueError):  # a truncated or foreign file is rebuilt, never trusted
            vectors = None
    if vectors is None:
        vectors = encode_in_batches(encoder.encode_texts, texts, encoder.dim)
        if use_disk:
            _save(path, vectors)
    _memory[key] = vectors
    return vectors


def _save(path: Path, vectors: np.ndarray) -> None:
    """Write atomically, so a concurrent reader sees the old file or the whole new one; a read-only cache is fine."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npy")
        np.save(tmp, vectors)
        os.replace(tmp, path)
    except OSError:
        pass


def store_signature(store: VectorStore) -> tuple[int, ...]:
    """Identity of a store's content: its `version` counter where the backend keeps one (O(1)), else
    (count, id sum, max id) read from its ids, which changes whenever vectors are added or removed."""
    version = getattr(store, "version", None)
    if isinstance(version, int):
        return (version, store.count())
    ids = np.asarray(store.ids(), np.int64)
    return (len(ids), int(ids.sum()) if len(ids) else 0, int(ids.max()) if len(ids) else -1)


def store_cached(store: VectorStore, key: Any, build: Callable[[], Any]) -> Any:
    """`build()` once per store content and key; later calls with the same store content reuse it."""
    signature = store_signature(store)
    try:
        slot = _store_stats.setdefault(store, {})
    except TypeError:
        return build()
    entry = slot.get(key)
    if entry is not None and entry[0] == signature:
        return entry[1]
    value = build()
    slot[key] = (signature, value)
    return value


def all_vectors(store: VectorStore) -> tuple[np.ndarray, np.ndarray]:
    """(ids, vectors) of the whole store, through `all_vectors()` where the backend has it."""
    getter = getattr(store, "all_vectors", None)
    if callable(getter):
        ids, vectors = getter()
        return np.asarray(ids, np.int64), np.asarray(vectors, np.float32)
    ids = np.asarray(store.ids(), np.int64)
    return ids, np.asarray(store.get(ids), np.float32)


def calibration_sample(store: VectorStore, size: int = 4096, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(ids, vectors) of a fixed random sample of up to `size` stored vectors, for score statistics (cached)."""

    def build() -> tuple[np.ndarray, np.ndarray]:
        ids, vectors = all_vectors(store)
        if len(ids) <= size:
            return ids, np.ascontiguousarray(vectors, np.float32)
        rows = np.sort(np.random.default_rng(seed).choice(len(ids), size, replace=False))
        return ids[rows], np.ascontiguousarray(vectors[rows], np.float32)

    return store_cached(store, ("sample", size, seed), build)
