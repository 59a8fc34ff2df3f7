"""Discrete textual inversion (after FreeDom): describe an image by the vocabulary words nearest to it.

Each vocabulary word w is embedded once per model as f_T(template.format(w)) (default "a photo of a {}"),
cached on disk (`pixquery.query.embedcache`). An image vector v is described by the `top_k` words with the
highest cosine to v, softly weighted by a softmax of those cosines at `temperature`: a low temperature keeps
mostly the best word, a high one spreads the weight. The composition method `inversion` then queries with an
ensemble of texts that combine each word with the edit.

The shipped vocabulary is `pixquery/data/vocabulary/inversion_words.txt` (general concept words); a user's own
file (one word or phrase per line, "#" comments allowed) or a list can replace it.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from pixquery.errors import QueryError
from pixquery.models.base import Encoder
from pixquery.query.embedcache import cached_text_embeddings

DEFAULT_VOCABULARY = Path(__file__).resolve().parent.parent / "data" / "vocabulary" / "inversion_words.txt"
DEFAULT_TEMPLATE = "a photo of a {}"


@lru_cache(maxsize=8)
def _read_words(path: str) -> tuple[str, ...]:
    words: list[str] = []
    seen: set[str] = set()
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            word = line.split("#", 1)[0].strip()
            if word and word not in seen:
                seen.add(word)
                words.append(word)
    return tuple(words)


def load_vocabulary(source: str | Path | list[str] | tuple[str, ...] | None = None) -> list[str]:
    """The words of a vocabulary: a list as given, a file path, or None for the shipped vocabulary."""
    if isinstance(source, list | tuple):
        words = [str(w).strip() for w in source if str(w).strip()]
    else:
        path = Path(source).expanduser() if source is not None else DEFAULT_VOCABULARY
        if not path.is_file():
            raise QueryError(f"vocabulary file not found: {path} (one word or phrase per line)")
        words = list(_read_words(str(path)))
    if not words:
        raise QueryError("the vocabulary is empty")
    return words


def vocabulary_embeddings(encoder: Encoder, words: list[str], template: str = DEFAULT_TEMPLATE) -> np.ndarray:
    """Unit embeddings of `template.format(word)` for every word, cached on disk per model."""
    if "{}" not in template:
        raise QueryError(f"the vocabulary template must contain '{{}}' where the word goes, got {template!r}")
    return cached_text_embeddings(encoder, [template.format(w) for w in words], kind="vocab")


def nearest_words(
    image_vector: np.ndarray, words: list[str], word_vectors: np.ndarray, top_k: int = 3, temperature: float = 0.02
) -> list[tuple[str, float]]:
    """The `top_k` words nearest to `image_vector`, with softmax(cosine / temperature) weights summing to 1."""
    if top_k < 1:
        raise QueryError(f"top_k must be at least 1, got {top_k}")
    if temperature <= 0:
        raise QueryError(f"temperature must be positive, got {temperature}")
    sims = word_vectors @ np.asarray(image_vector, np.float32)
    top_k = min(top_k, len(words))
    best = np.argpartition(-sims, top_k - 1)[:top_k]
    best = best[np.argsort(-sims[best], kind="stable")]
    logits = (sims[best] - sims[best[0]]) / temperature
    weights = np.exp(logits)
    weights /= weights.sum()
    return [(words[int(i)], float(w)) for i, w in zip(best, weights, strict=True)]
