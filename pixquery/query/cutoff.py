"""Relevance cut-off: decide which results are matches, so a search can answer "these 12 match" (or "nothing here
matches") instead of returning everything, ranked.

A raw cosine threshold does not transfer between models, queries or collections (CLIP's text-image cosines sit
around 0.2-0.35, ConSE's between 0.15 and 0.9, an image-image query's around 0.5-0.95), so every rule calibrates:

* ``null[:alpha]`` (what ``auto`` means): calibrated against a *null* of unrelated texts. Two normalisations make
  scores comparable: a query's score for a photo becomes a robust z-score against the query's own scores over a fixed
  sample of the collection (median and MAD: how unusual this photo is *for this query*), and the same is done for
  every word of a fixed bank of common, concrete words (`pixquery/data/vocabulary/common.txt`, "a photo of a {}.",
  embedded once per model and cached). A photo matches when the query singles it out at least `alpha` times as
  strongly as the bank word that singles it out most (the word that describes it best), and by a z that the most
  extreme of the collection's unrelated photos would not reach by chance (`null_min_z`: sqrt(2 ln n)). A query for
  something absent singles out no photo more than that photo's own words do, so nothing is returned; a query for what
  a photo shows competes with the photo's best word and keeps it. A rule that looks only at the query's own
  distribution cannot do this: it returns the top few percent of any collection, relevant or not.
* ``mad[:z]`` (robust z-score): a result matches when its score exceeds median + z·1.4826·MAD of the query's scores
  over the sample (up to 4096 stored vectors); median and MAD ignore the few true matches the sample contains.
* ``zscore[:z]``: the same with mean and standard deviation.
* ``gap[:z]``: among the results whose robust z is at least z, cut at the largest drop between consecutive scores:
  matches often form a block well above the rest.
* ``bank[:z]``: per result, compare its score with the scores the same image gets from a bank of unrelated queries
  (generic captions, or the collection's own images for image queries): z = (score − μₓ)/σₓ.
* a number: a raw score threshold, for users who know their model.

Measurement (benchmarks/cutoff_real.py, 2026-12-03; docs/organize.md has the tables): with `conse` on 897 real
photos, class names as queries in three styles, the null rule keeps the present answer 88-90 % of the time and
returns nothing for 46-66 % of absent concepts (median 0-1 results), where ``mad:1.5`` (the old "auto") returned 50
of 50 for an absent concept. That misses issue #19's target (80 % empty), and the rule hides present matches where
the query's concept is common in the collection or the model's scores are flat: 0.18 recall on the 21 demo photos,
0 on ShapesWorld with `mini` (the query's own-distribution z of true matches stays under `null_min_z`). `NULL_ALPHA`
and the least z are the best trade-off of the measured grid on ImageNet, not a rule that meets the target.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pixquery.errors import QueryError

NULL_ALPHA = 0.9
"""How strongly, relative to a photo's best bank word, a query must single the photo out (the null rule's value)."""
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
RULES: dict[str, float] = {"null": NULL_ALPHA, "mad": 1.5, "zscore": 1.0, "gap": 1.0, "bank": 1.5}
"""Rule name -> its default value (alpha for "null", z for the others)."""
AUTO_RULE = ("null", NULL_ALPHA)
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
        """Whether each result's best bank-word z (`WordNull.best_z`) is needed."""
        return self.rule == "null"


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
) -> np.ndarray:
    """Which of `scores` (raw similarities of the ranked results, best first) are matches under `rule`.

    `sample_scores` are the query's scores over the calibration sample; `item_mean`/`item_std` (aligned with
    `scores`) are each result's bank statistics, needed only by the "bank" rule; `item_best_z` (aligned too) is
    each result's `WordNull.best_z`, needed only by the "null" rule, whose least z is `min_z` (default
    `null_min_z` of the sample's size).
    """
    scores = np.asarray(scores, np.float32)
    if rule.rule == "score":
        return scores >= rule.value
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
        return (z >= least) & (z >= rule.value * np.asarray(item_best_z, np.float32))
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
    """The null of the "null" rule: bank words' unit vectors and each word's robust score statistics over the
    collection sample, so that any photo's z for every word can be computed."""

    vectors: np.ndarray
    median: np.ndarray
    spread: np.ndarray
    plain: np.ndarray
    """The same words embedded alone (no template), to recognise a query that *is* one of them."""

    @classmethod
    def build(cls, word_vectors: np.ndarray, sample: np.ndarray, plain: np.ndarray | None = None) -> WordNull:
        """From the bank's unit vectors (words, d) in `NULL_TEMPLATE`, the same words alone (`plain`, default: the
        templated vectors) and the collection's calibration sample (n, d)."""
        plain = word_vectors if plain is None else plain
        if len(word_vectors) == 0 or len(sample) == 0:
            empty = np.zeros((0, word_vectors.shape[1] if word_vectors.ndim == 2 else 0), np.float32)
            return cls(empty, np.zeros(0, np.float32), np.ones(0, np.float32), empty)
        scores = sample @ word_vectors.T  # (n, words): 4096 x a few thousand, once per store content
        median = np.median(scores, axis=0)
        spread = np.maximum(np.median(np.abs(scores - median), axis=0) * 1.4826, 1e-6)
        return cls(np.ascontiguousarray(word_vectors, np.float32), median.astype(np.float32),
                   spread.astype(np.float32), np.ascontiguousarray(plain, np.float32))

    def best_z(self, vectors: np.ndarray, query: np.ndarray | None = None) -> np.ndarray:
        """Per photo vector, the largest robust z any bank word gives it (how strongly its best word singles it
        out); 0 with an empty bank, which leaves the rule's `min_z` alone to decide. With `query`, words that are
        the query itself in other words (text cosine >= `SAME_WORD_SIMILARITY`) are no rivals: a query need not
        beat itself."""
        words = np.arange(len(self.vectors))
        if query is not None and len(words):
            q = np.asarray(query, np.float32)
            words = words[np.maximum(self.vectors @ q, self.plain @ q) < SAME_WORD_SIMILARITY]
        if len(words) == 0 or len(vectors) == 0:
            return np.zeros(len(vectors), np.float32)
        scores = np.asarray(vectors, np.float32) @ self.vectors[words].T
        return ((scores - self.median[words]) / self.spread[words]).max(axis=1)
