"""Relevance cut-off: decide which results are matches, so a search can answer "these 12 match" (or "nothing here
matches") instead of returning everything, ranked.

A raw cosine threshold does not transfer between models, queries or collections (CLIP's text-image cosines sit
around 0.2-0.35, ConSE's between 0.15 and 0.9, an image-image query's around 0.5-0.95), so every rule calibrates:

* ``null[:margin]`` (what ``auto`` means): a photo matches a text query when, of every description the model
  could give it, the query is the best — zero-shot classification with an open vocabulary as the null. The
  descriptions are a fixed bank of common, concrete words (`pixquery/data/vocabulary/common.txt`) plus the model's
  own concept names where it has them (`Encoder.known_concepts`: ConSE's ImageNet classes), each in
  `NULL_TEMPLATE` ("a photo of a {}.", embedded once per model and cached); the query is put in the same form
  (`describe`: "a cat" -> "a photo of a cat.") so that raw cosines compare like with like, as CLIP's zero-shot
  classifier compares its prompts. A photo is kept when the query's score is at least its best rival's minus
  `margin` (default 0). Rivals are the bank's words except the query itself (text cosine >= `SAME_WORD_SIMILARITY`
  to the query, as typed or described). A query for something absent is, for every photo, a worse description than
  what the photo shows, so nothing is returned, in a collection of 20 photos as of a million: no statistic of the
  collection is involved. Queries without text (an example image, no words to describe) use the same bank through
  z-scores instead: a photo matches when the query singles it out at least `NULL_ALPHA` times as strongly as the
  photo's best word does, and by at least `null_min_z` (sqrt(2 ln n)).
* ``mad[:z]`` (robust z-score): a result matches when its score exceeds median + z·1.4826·MAD of the query's scores
  over the sample (up to 4096 stored vectors); median and MAD ignore the few true matches the sample contains.
* ``zscore[:z]``: the same with mean and standard deviation.
* ``gap[:z]``: among the results whose robust z is at least z, cut at the largest drop between consecutive scores:
  matches often form a block well above the rest.
* ``bank[:z]``: per result, compare its score with the scores the same image gets from a bank of unrelated queries
  (generic captions, or the collection's own images for image queries): z = (score − μₓ)/σₓ.
* a number: a raw score threshold, for users who know their model.

Measurement (benchmarks/cutoff_real.py, 2026-12-03; benchmarks/README.md has the tables): with `conse` on 897
ImageNet photos (100 classes held out with their WordNet siblings), class names as queries in three styles, the
null rule keeps the present answer 87-93 % of the time (three splits; the misses are photos the model itself
classifies as something else) and returns nothing for 81-89 % of absent concepts (median 0), in every query style,
where ``mad:1.5`` (the old "auto") returned 50 of 50 for an absent concept. With the common words alone (what a CLIP
model gets) the same figures are 0.88-0.94 / 0.67-0.74.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from pixquery.errors import QueryError

NULL_ALPHA = 0.9
"""For a query without text: how strongly, relative to a photo's best bank word, it must single the photo out."""


def null_min_z(n: int) -> float:
    """The least robust z a match of the null rule needs in a collection of `n` photos: sqrt(2 ln n), about the
    largest z that the most extreme of n photos that do not match reaches by chance (the maximum of n standard
    normal draws). A small collection asks less (21 photos: 2.5), a large one more (1,000: 3.7; 100,000: 4.8)."""
    return float(np.sqrt(2.0 * np.log(max(int(n), 3))))

NULL_WORDS = "common"
"""The word list (`textbank.WORD_LISTS`) whose words make the null, in `NULL_TEMPLATE`."""
NULL_TEMPLATE = "a photo of a {}."
SAME_WORD_SIMILARITY = 0.8
"""A bank word whose text vector (alone or in the template) is this close to the query's is the query itself, not a
rival. With ConSE's MiniLM: "a bee"/"bee" 0.90, "a dog"/"dog" 0.84, but "a bee"/"bee eater" 0.77, "a cat"/"persian
cat" 0.71, "a red sports car"/"sports car" 0.77."""
RULES: dict[str, float] = {"null": 0.0, "mad": 1.5, "zscore": 1.0, "gap": 1.0, "bank": 1.5}
"""Rule name -> its default value (the margin for "null", z for the others)."""
AUTO_RULE = ("null", 0.0)
"""What ``cutoff="auto"`` means; chosen by the measurement in benchmarks/cutoff_real.py."""


@dataclass(frozen=True)
class CutoffRule:
    """A parsed cut-off: `rule` is one of `RULES` or "score" (then `value` is a raw threshold)."""

    rule: str
    value: float

    @property
    def needs_bank(self) -> bool:
        """Whether per-item bank statistics are needed."""
        return self.rule == "bank"

    @property
    def needs_null(self) -> bool:
        """Whether the word bank (`WordNull`) is needed."""
        return self.rule == "null"


_ARTICLE = re.compile(r"^(a|an|the|one|two|three|four|five|some|many|several|\d+)\s", re.IGNORECASE)
_ALREADY_A_PHOTO = re.compile(r"^(an?\s+)?(photo|picture|image|photograph|shot|close-up)\b", re.IGNORECASE)


def describe(text: str) -> str:
    """A query text in the form of the bank's descriptions (`NULL_TEMPLATE`), so their scores compare: "tabby cat"
    and "a tabby cat" -> "a photo of a tabby cat.", "books on a shelf" -> "a photo of books on a shelf.", "a photo
    of a dog" stays as it is. A text that starts with an article or a number, or looks plural, gets no "a"."""
    text = " ".join(text.split()).rstrip(" .")
    if _ALREADY_A_PHOTO.match(text):
        return text + "."
    words = text.split()
    plural = len(words) > 0 and len(words) <= 3 and words[-1].lower().endswith("s") and not \
        words[-1].lower().endswith(("ss", "us", "is"))
    if _ARTICLE.match(text) or plural or len(words) > 3:
        return f"a photo of {text}."
    return NULL_TEMPLATE.format(text)


def parse_cutoff(cutoff: float | str | None) -> CutoffRule | None:
    """Read `QuerySpec.cutoff`: None, a number, "auto", "RULE" or "RULE:Z"; `QueryError` names the accepted forms."""
    if cutoff is None:
        return None
    if isinstance(cutoff, bool):
        raise QueryError("cutoff must be a number, 'auto' or a rule name, not true/false", field="cutoff")
    if isinstance(cutoff, int | float):
        if not np.isfinite(cutoff):
            raise QueryError(f"cutoff must be a finite number, got {cutoff}", field="cutoff")
        return CutoffRule("score", float(cutoff))
    text = str(cutoff).strip().lower()
    if text == "auto":
        return CutoffRule(*AUTO_RULE)
    name, _, value = text.partition(":")
    if name not in RULES:
        raise QueryError(
            f"unknown cutoff {str(cutoff)[:40]!r}: use a number, 'auto', or one of {', '.join(RULES)} (optionally "
            "'RULE:Z')",
            field="cutoff",
        )
    if not value:
        return CutoffRule(name, RULES[name])
    try:
        z = float(value)
    except ValueError:
        raise QueryError(f"cutoff {cutoff!r}: {value!r} is not a number", field="cutoff") from None
    if not np.isfinite(z):
        raise QueryError(f"cutoff {cutoff!r}: the value must be finite", field="cutoff")
    return CutoffRule(name, z)


def robust_stats(sample_scores: np.ndarray) -> tuple[float, float]:
    """(median, 1.4826·MAD) of a score sample; the spread is floored so a constant sample cannot divide by 0."""
    median = float(np.median(sample_scores))
    spread = float(np.median(np.abs(sample_scores - median))) * 1.4826
    return median, max(spread, 1e-6)


def match_mask(
    rule: CutoffRule,
    scores: np.ndarray,
    sample_scores: np.ndarray,
    item_mean: np.ndarray | None = None,
    item_std: np.ndarray | None = None,
    item_best_z: np.ndarray | None = None,
    min_z: float | None = None,
    described: np.ndarray | None = None,
    item_rival: np.ndarray | None = None,
) -> np.ndarray:
    """Which of `scores` (raw similarities of the ranked results, best first) are matches under `rule`.

    `sample_scores` are the query's scores over the calibration sample; `item_mean`/`item_std` (aligned with
    `scores`) are each result's bank statistics, needed only by the "bank" rule. The "null" rule of a text query
    reads `described` (each result's score for the query in the bank's form, `describe`) and `item_rival` (each
    result's best rival word's score, `WordNull.best_rival`); that of a query without text reads `item_best_z`
    (`WordNull.best_z`), with the least z `min_z` (default `null_min_z` of the sample's size).
    """
    scores = np.asarray(scores, np.float32)
    if rule.rule == "score":
        return scores >= rule.value
    if rule.rule == "null" and described is not None:
        if item_rival is None:
            raise ValueError("the null cut-off of a text query needs each result's best rival score")
        return np.asarray(described, np.float32) >= np.asarray(item_rival, np.float32) - rule.value
    if len(sample_scores) == 0:
        return np.zeros(len(scores), bool)
    if rule.rule == "zscore":
        mean, std = float(np.mean(sample_scores)), max(float(np.std(sample_scores)), 1e-6)
        return (scores - mean) / std >= rule.value
    median, spread = robust_stats(sample_scores)
    z = (scores - median) / spread
    if rule.rule == "mad":
        return z >= rule.value
    if rule.rule == "null":
        if item_best_z is None:
            raise ValueError("the null cut-off needs each result's best bank-word z")
        least = null_min_z(len(sample_scores)) if min_z is None else min_z
        return (z >= least) & (z >= NULL_ALPHA * np.asarray(item_best_z, np.float32))
    if rule.rule == "bank":
        if item_mean is None or item_std is None:
            raise ValueError("the bank cut-off needs per-item bank statistics")
        return (scores - item_mean) / np.maximum(item_std, 1e-6) >= rule.value
    return _gap_mask(scores, z, rule.value)


def _gap_mask(scores: np.ndarray, z: np.ndarray, z_min: float) -> np.ndarray:
    """Matches = the results above the largest score drop among the results with z ≥ z_min."""
    order = np.argsort(-scores, kind="stable")
    ranked = scores[order]
    eligible = int(np.sum(z[order] >= z_min))
    mask = np.zeros(len(scores), bool)
    if eligible == 0:
        return mask
    following = np.append(ranked[1:], ranked[-1] if len(ranked) else 0.0)
    gaps = (ranked - following)[:eligible]
    cut = int(np.argmax(gaps)) + 1
    mask[order[:cut]] = True
    return mask


@dataclass(frozen=True)
class WordNull:
    """The null of the "null" rule: the bank words' unit vectors (in the template and alone) and, for queries without
    text, each word's robust score statistics over the collection sample, so that any photo's z for every word can
    be computed. The statistics are worked out on first use: a text query never needs them."""

    vectors: np.ndarray
    plain: np.ndarray
    """The same words embedded alone (no template), to recognise a query that *is* one of them."""
    sample: np.ndarray
    """The collection's calibration sample (n, d), which the statistics are taken over."""

    @classmethod
    def build(cls, word_vectors: np.ndarray, sample: np.ndarray, plain: np.ndarray | None = None) -> WordNull:
        """From the bank's unit vectors (words, d) in `NULL_TEMPLATE`, the same words alone (`plain`, default: the
        templated vectors) and the collection's calibration sample (n, d)."""
        plain = word_vectors if plain is None else plain
        if len(word_vectors) == 0 or len(sample) == 0:
            empty = np.zeros((0, word_vectors.shape[1] if word_vectors.ndim == 2 else 0), np.float32)
            return cls(empty, empty, np.asarray(sample, np.float32))
        return cls(np.ascontiguousarray(word_vectors, np.float32), np.ascontiguousarray(plain, np.float32),
                   np.asarray(sample, np.float32))

    @cached_property
    def _stats(self) -> tuple[np.ndarray, np.ndarray]:
        scores = self.sample @ self.vectors.T  # (n, words): 4096 x a few thousand, once per store content
        median = np.median(scores, axis=0).astype(np.float32)
        spread = np.maximum(np.median(np.abs(scores - median), axis=0) * 1.4826, 1e-6).astype(np.float32)
        return median, spread

    @property
    def median(self) -> np.ndarray:
        """Each word's median score over the sample."""
        return self._stats[0]

    @property
    def spread(self) -> np.ndarray:
        """Each word's 1.4826·MAD over the sample (at least 1e-6)."""
        return self._stats[1]

    def rivals(self, queries: Sequence[np.ndarray]) -> np.ndarray:
        """Indices of the bank words that are none of `queries` in other words (text cosine, of the word alone or
        in the template, below `SAME_WORD_SIMILARITY` to each): a query need not beat itself."""
        keep = np.ones(len(self.vectors), bool)
        for query in queries:
            q = np.asarray(query, np.float32)
            keep &= np.maximum(self.vectors @ q, self.plain @ q) < SAME_WORD_SIMILARITY
        return np.flatnonzero(keep)

    def best_rival(self, vectors: np.ndarray, queries: Sequence[np.ndarray]) -> np.ndarray:
        """Per photo vector, the highest raw score of a rival word (`rivals`) in `NULL_TEMPLATE`: the best
        description of the photo that is not the query; -inf with no rival, so that any query wins."""
        words = self.rivals(queries)
        if len(words) == 0 or len(vectors) == 0:
            return np.full(len(vectors), -np.inf, np.float32)
        return (np.asarray(vectors, np.float32) @ self.vectors[words].T).max(axis=1)

    def best_z(self, vectors: np.ndarray, query: np.ndarray | None = None) -> np.ndarray:
        """Per photo vector, the largest robust z any bank word gives it (how strongly its best word singles it
        out); 0 with an empty bank, which leaves the rule's `min_z` alone to decide. With `query`, words that are
        the query itself in other words (text cosine >= `SAME_WORD_SIMILARITY`) are no rivals: a query need not
        beat itself."""
        words = self.rivals([] if query is None else [query])
        if len(words) == 0 or len(vectors) == 0:
            return np.zeros(len(vectors), np.float32)
        scores = np.asarray(vectors, np.float32) @ self.vectors[words].T
        return ((scores - self.median[words]) / self.spread[words]).max(axis=1)
