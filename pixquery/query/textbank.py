"""Word lists and the text vectors of a model, embedded once and cached: the one vocabulary system.

Several features embed thousands of short texts with the index's model: names for clusters and open tags, words for
composed-query inversion, the query bank of hubness reduction, labels and prompt ensembles. Embedding is seconds to
minutes on a CPU, so vectors are kept on disk under the cache (`text-banks/`), keyed on the encoder's identity (its
name, precision, dimension and its actual output on a probe text, so a retrained model with the same name never
reads stale vectors) and on the exact texts, and in memory for the life of the process.

Shipped word lists live in `pixquery/data/vocabulary/` (see SOURCE.md there); a user's own file (one word or phrase
per line, `#` starts a comment) or a list can replace them.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import threading
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pixquery.errors import QueryError
from pixquery.fsutil import atomic_file
from pixquery.models.base import Encoder, l2_normalize
from pixquery.paths import cache_dir
from pixquery.progress import ProgressFn, no_progress

VOCABULARY_DIR = Path(__file__).resolve().parents[1] / "data" / "vocabulary"
WORD_LISTS = {
    "common": VOCABULARY_DIR / "common.txt",
    "concepts": VOCABULARY_DIR / "concepts.txt",
    "inversion": VOCABULARY_DIR / "inversion_words.txt",
}
"""Shipped word lists: `common` (a few thousand common, concrete words) names clusters and open tags and makes the
null of the relevance cut-off; `concepts` (17k WordNet nouns) is the broad list a user may ask for by name;
`inversion` describes images for composed queries."""
BATCH = 256
_PROBE_TEXT = "a photo of a red apple on a wooden table"

_identities: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
_memory: dict[tuple[str, str], np.ndarray] = {}
_lock = threading.Lock()


def read_words(path: str | Path) -> list[str]:
    """Words or phrases from a text file, one per line; `#` starts a comment; duplicates dropped, order kept."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise QueryError(f"word list not found: {path} (one word or phrase per line)")
    lines = path.read_text(encoding="utf-8").splitlines()
    return list(dict.fromkeys(w for w in (line.split("#", 1)[0].strip() for line in lines) if w))


def load_words(source: str | Path | Sequence[str] | None = None, default: str = "common") -> list[str]:
    """A word list: the given words, a file, a shipped list by name (a key of `WORD_LISTS`), or (None) the shipped
    list named `default`."""
    if source is None:
        words = read_words(WORD_LISTS[default])
    elif isinstance(source, str | Path) and str(source) in WORD_LISTS and not Path(source).exists():
        words = read_words(WORD_LISTS[str(source)])
    elif isinstance(source, str | Path):
        words = read_words(source)
    else:
        words = list(dict.fromkeys(str(w).strip() for w in source if str(w).strip()))
    if not words:
        raise QueryError("the word list is empty")
    return words


def encoder_identity(encoder: Encoder) -> str:
    """A short hash of the encoder's name, precision, dimension and its embedding of a fixed probe text.

    The probe vector is rounded before hashing, so run-to-run float noise does not change it, while any change of
    weights does.
    """
    with contextlib.suppress(TypeError):
        cached = _identities.get(encoder)
        if cached is not None:
            return cached
    probe = np.round(np.asarray(encoder.encode_texts([_PROBE_TEXT]), np.float64), 3) + 0.0
    head = f"{encoder.name}|{encoder.precision}|{encoder.dim}|".encode()
    digest = hashlib.sha1(head + probe.tobytes()).hexdigest()[:16]
    with contextlib.suppress(TypeError):
        _identities[encoder] = digest
    return digest


def embed_texts(
    encoder: Encoder, texts: Sequence[str], kind: str = "texts", progress: ProgressFn = no_progress,
    use_disk: bool = True,
) -> np.ndarray:
    """Unit vectors of `texts`: from memory, from the disk cache, or embedded now in batches (and saved).

    `kind` names the bank in the cache's file names and is the progress stage ("texts", "vocabulary", "labels").
    """
    texts = list(texts)
    if not texts:
        return np.zeros((0, int(encoder.dim)), np.float32)
    digest = hashlib.sha1("\n".join(texts).encode("utf-8", "surrogatepass")).hexdigest()[:16]
    key = (encoder_identity(encoder), f"{kind}-{digest}")
    with _lock:
        hit = _memory.get(key)
    if hit is not None:
        return hit
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", encoder.name)[:60] or "model"
    path = cache_dir("text-banks") / f"{slug}-{key[0]}-{key[1]}.npy"
    vectors = _read(path, (len(texts), int(encoder.dim))) if use_disk else None
    if vectors is None:
        vectors = np.zeros((len(texts), int(encoder.dim)), np.float32)
        for start in range(0, len(texts), BATCH):
            vectors[start : start + BATCH] = encoder.encode_texts(texts[start : start + BATCH])
            progress(kind, min(start + BATCH, len(texts)), len(texts))
        vectors = l2_normalize(vectors)
        if use_disk:
            with contextlib.suppress(OSError), atomic_file(path, durable=False) as handle:
                np.save(handle, vectors)  # a read-only cache only costs embedding again next time
    with _lock:
        _memory[key] = vectors
    return vectors


def embed_words(
    encoder: Encoder, words: Sequence[str], template: str = "a photo of a {}.", progress: ProgressFn = no_progress
) -> np.ndarray:
    """Unit vectors of `template.format(word)` for each word (cached as `embed_texts`)."""
    if "{}" not in template:
        raise QueryError(f"a word template must contain '{{}}' where the word goes, got {template!r}")
    return embed_texts(encoder, [template.format(w) for w in words], kind="vocabulary", progress=progress)


def _read(path: Path, shape: tuple[int, int]) -> np.ndarray | None:
    try:
        loaded = np.load(path)
    except (OSError, ValueError):  # missing, truncated or foreign: rebuilt, never trusted
        return None
    return loaded if loaded.shape == shape and loaded.dtype == np.float32 else None


def distinguishable(vectors: np.ndarray, decimals: int = 4) -> np.ndarray:
    """Mask of rows whose vector no other row shares.

    A model with a closed vocabulary (such as `mini`) maps every unknown word to one <unk> token, so thousands of
    entries get the very same vector; such entries say nothing about an image and would flood every ranking.
    Real open-vocabulary models never give two different words identical vectors, so nothing is lost there.
    """
    if len(vectors) == 0:
        return np.zeros(0, dtype=bool)
    rounded = np.round(np.asarray(vectors, dtype=np.float32), decimals) + 0.0  # + 0.0 turns -0.0 into 0.0
    _, inverse, counts = np.unique(rounded, axis=0, return_inverse=True, return_counts=True)
    return counts[inverse.reshape(-1)] == 1
