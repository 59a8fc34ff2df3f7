"""Vocabulary-free tagging in the manner of CaSED (Conti et al., NeurIPS 2023): tags with no label list.

CaSED retrieves captions near an image, takes their nouns as candidate names and scores each candidate by both the
image and the retrieved text. Here the candidate source is a vocabulary (by default the shipped curated list of ~2,600
common, concrete words people recognise, `pixquery/data/vocabulary/common.txt`; or "concepts", 17k WordNet nouns; or
the user's list), embedded once per model and cached on disk, and the retrieval context is the collection itself:

1. candidates: the `candidates` concepts nearest the image;
2. scores: a mix of two softmax distributions over those candidates, one from the image's similarity and one from the
   similarity of its neighbourhood (the mean of its `neighbours` nearest images in the collection), weighted by
   `context`. The neighbourhood stands in for CaSED's retrieved captions: it votes for what a group of similar images
   shares and damps words that fit one image by accident. Softmax temperatures are the spread (standard deviation)
   of the image's similarities to the whole vocabulary, as in `classify`, so no model-specific logit scale is needed;
3. hubness: generic words ("thing", "photo") are near every image; a CSLS correction (see `open_tags`) removes
   their lead;
4. filtering: concepts the model cannot tell apart (closed-vocabulary models give unknown words one vector) are
   dropped up front, and a tag whose prompt is nearly the same as a better tag's ("kitty" after "cat") is skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pixquery.models.base import Encoder, l2_normalize
from pixquery.organize.templates import SINGLE_TEMPLATE
from pixquery.organize.view import IndexView
from pixquery.progress import ProgressFn, no_progress
from pixquery.query.textbank import distinguishable, embed_words, load_words
from pixquery.store.catalog import Tag

OPEN_SOURCE = "open"
"""The catalog's tag source of open-vocabulary tags."""

DEFAULT_OPEN_TOP = 5
DEFAULT_CANDIDATES = 50
DEFAULT_NEIGHBOURS = 8
DEFAULT_HUB_NEIGHBOURS = 10
DEFAULT_CONTEXT = 0.0
"""Weight of the neighbourhood's vote: off, since it did not help in benchmarks/organize.py (docs/organize.md)."""
REDUNDANT_SIMILARITY = 0.9
"""A tag whose prompt is at least this similar to a better tag's prompt says nothing new."""
_CHUNK_ELEMENTS = 20_000_000


@dataclass
class Vocabulary:
    """Concept names and their unit text vectors for one model, with indistinguishable entries removed."""

    words: list[str]
    vectors: np.ndarray

    @classmethod
    def for_encoder(
        cls,
        encoder: Encoder,
        vocabulary: str | Path | Sequence[str] | None = None,
        template: str = SINGLE_TEMPLATE,
        progress: ProgressFn = no_progress,
    ) -> Vocabulary:
        """Embed (or read from the cache) `vocabulary` (default: the shipped common words) with `encoder`."""
        words = load_words(vocabulary, default="common")
        vectors = embed_words(encoder, words, template, progress=progress)
        keep = distinguishable(vectors)
        return cls([w for w, k in zip(words, keep, strict=True) if k], vectors[keep])

    def __len__(self) -> int:
        return len(self.words)


def neighbourhood(vectors: np.ndarray, k: int = DEFAULT_NEIGHBOURS) -> np.ndarray:
    """Unit mean of each row's `k` nearest other rows (cosine), the collection's context for that image."""
    n = len(vectors)
    if n < 2 or k < 1:
        return vectors.copy()
    k = min(k, n - 1)
    out = np.empty_like(vectors)
    step = max(1, _CHUNK_ELEMENTS // n)
    for start in range(0, n, step):
        sims = vectors[start : start + step] @ vectors.T
        rows = np.arange(len(sims))
        sims[rows, start + rows] = -np.inf  # an image is not its own neighbour
        nearest = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        out[start : start + step] = vectors[nearest].mean(axis=1)
    return l2_normalize(out)


def _softmax_rows(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def word_hubness(images: np.ndarray, vocab: Vocabulary, k: int = DEFAULT_HUB_NEIGHBOURS) -> np.ndarray:
    """Each concept's mean similarity to its `k` nearest images in the collection (CSLS's r term).

    Generic words ("thing", "photo") sit near every image; without this correction they top every image's list.
    """
    k = max(1, min(k, len(images)))
    best = np.full((k, len(vocab)), -np.inf, dtype=np.float32)
    step = max(1, _CHUNK_ELEMENTS // len(vocab))
    for start in range(0, len(images), step):
        sims = images[start : start + step] @ vocab.vectors.T
        merged = np.concatenate([best, sims])
        best = np.partition(merged, len(merged) - k, axis=0)[-k:]
    return best.mean(axis=0)


def open_tags(
    images: np.ndarray,
    vocab: Vocabulary,
    top: int = DEFAULT_OPEN_TOP,
    candidates: int = DEFAULT_CANDIDATES,
    neighbours: int = DEFAULT_NEIGHBOURS,
    context: float = DEFAULT_CONTEXT,
    hubness: bool = True,
) -> list[list[tuple[str, float]]]:
    """Each image's `top` concepts with scores (their share of the candidates' combined probability).

    With `hubness`, similarities are CSLS-corrected (Conneau et al., 2018): a concept's similarity to an image
    minus half its mean similarity to its nearest images in the collection, so words close to everything lose
    their lead. The correction is relative to the collection: in a collection of nothing but cats, "cat" is no
    longer remarkable and more specific words come first.
    """
    images = np.asarray(images, dtype=np.float32)
    if len(images) == 0 or len(vocab) == 0:
        return [[] for _ in range(len(images))]
    candidates = min(max(candidates, top), len(vocab))
    prior = 0.5 * word_hubness(images, vocab) if hubness else np.zeros(len(vocab), dtype=np.float32)
    ctx = neighbourhood(images, neighbours) if context > 0 else images
    results: list[list[tuple[str, float]]] = []
    step = max(1, _CHUNK_ELEMENTS // len(vocab))
    for start in range(0, len(images), step):
        sims = images[start : start + step] @ vocab.vectors.T
        spread = np.maximum(sims.std(axis=1, keepdims=True), 1e-6)
        sims -= prior
        pick = np.argpartition(-sims, candidates - 1, axis=1)[:, :candidates]
        image_part = _softmax_rows(np.take_along_axis(sims, pick, axis=1) / spread)
        score = image_part
        if context > 0:
            ctx_sims = np.einsum("nd,nkd->nk", ctx[start : start + step], vocab.vectors[pick]) - prior[pick]
            score = (1 - context) * image_part + context * _softmax_rows(ctx_sims / spread)
        for row_pick, row_score in zip(pick, score, strict=True):
            results.append(_diverse_top(row_pick, row_score, vocab, top))
    return results


def _diverse_top(pick: np.ndarray, score: np.ndarray, vocab: Vocabulary, top: int) -> list[tuple[str, float]]:
    chosen: list[int] = []
    for j in np.argsort(-score, kind="stable"):
        index = int(pick[j])
        if all(float(vocab.vectors[index] @ vocab.vectors[c]) < REDUNDANT_SIMILARITY for c in chosen):
            chosen.append(index)
            if len(chosen) == top:
                break
    by_index = {int(p): float(s) for p, s in zip(pick, score, strict=True)}
    return [(vocab.words[c], by_index[c]) for c in chosen]


@dataclass
class OpenTagReport:
    """What `tag_open` did: per-image tags and how often each tag was given."""

    vocabulary_size: int
    images: list[dict[str, Any]]
    stored: int

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for image in self.images:
            for tag in image["tags"]:
                counts[tag["label"]] = counts.get(tag["label"], 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def to_dict(self) -> dict[str, Any]:
        return {
            "vocabulary_size": self.vocabulary_size,
            "images": len(self.images),
            "tags_stored": self.stored,
            "counts": self.counts(),
            "results": self.images,
        }


def tag_open(
    view: IndexView,
    vocabulary: str | Path | Sequence[str] | None = None,
    top: int = DEFAULT_OPEN_TOP,
    store: bool = True,
    context: float = DEFAULT_CONTEXT,
    progress: ProgressFn = no_progress,
) -> OpenTagReport:
    """Tag every indexed image with its `top` concepts from `vocabulary` (default: the shipped common words; a file,
    a list, or a shipped list by name such as "concepts").

    The vocabulary's vectors are cached per model (first run: seconds to a minute on a CPU). With `store`, the
    tags replace earlier "open" tags of these images in the catalog.
    """
    if top < 1:
        raise ValueError(f"top must be at least 1, got {top}")
    vocab = Vocabulary.for_encoder(view.encoder, vocabulary, progress=progress)
    ids = view.ids
    tags = open_tags(view.vectors, vocab, top=top, context=context)
    images = [
        {
            "id": int(file_id),
            "path": view.path_of(file_id),
            "tags": [{"label": label, "score": round(score, 4)} for label, score in image_tags],
        }
        for file_id, image_tags in zip(ids.tolist(), tags, strict=True)
    ]
    stored = 0
    if store:
        records = [Tag(int(f), label, score, OPEN_SOURCE) for f, t in zip(ids.tolist(), tags, strict=True)
                   for label, score in t]
        stored = view.catalog.write_tags(ids.tolist(), records, OPEN_SOURCE)
    return OpenTagReport(len(vocab), images, stored)
