"""Discrete textual inversion (after FreeDom): describe an image by the vocabulary words nearest to it.

Each vocabulary word w is embedded once per model as f_T(template.format(w)) (default "a photo of a {}"),
cached on disk (`pixquery.query.textbank`). An image vector v is described by the `top_k` words with the
highest cosine to v, softly weighted by a softmax of those cosines at `temperature`: a low temperature keeps
mostly the best word, a high one spreads the weight. The composition method `inversion` then queries with an
ensemble of texts that combine each word with the edit.

The shipped vocabulary is `pixquery/data/vocabulary/inversion_words.txt` (general concept words); a user's own
file (one word or phrase per line, "#" comments allowed) or a list can replace it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pixquery.errors import QueryError
from pixquery.models.base import Encoder
from pixquery.query.textbank import embed_words, load_words

DEFAULT_TEMPLATE = "a photo of a {}"


def invert(
    encoder: Encoder,
    image_vector: np.ndarray,
    vocabulary: str | Path | Sequence[str] | None = None,
    top_k: int = 3,
    temperature: float = 0.02,
    template: str = DEFAULT_TEMPLATE,
) -> list[tuple[str, float]]:
    """The vocabulary words nearest to an image vector, with their weights (see `nearest_words`)."""
    words = load_words(vocabulary, default="inversion")
    return nearest_words(image_vector, words, embed_words(encoder, words, template), top_k, temperature)


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
