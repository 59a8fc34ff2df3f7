"""Relevance cut-off: decide which results are matches, so a search can answer "these 12 match" instead of
returning everything, ranked.

A raw cosine threshold does not transfer between models, queries or collections (CLIP's text-image cosines sit
around 0.2-0.35, an image-image query's around 0.5-0.95), so the rules below calibrate per query:

* ``mad[:z]`` (robust z-score): the query's scores over a fixed random sample of the collection (up to 4096
  stored vectors) form its null distribution, since most photos do not match most queries. A result matches
  when its score exceeds median + z·1.4826·MAD of that sample. Median and MAD ignore the few true matches that
  the sample contains, where mean and standard deviation would be dragged up by them.
* ``zscore[:z]``: the same with mean and standard deviation.
* ``gap[:z]``: among the results whose robust z is at least z, cut at the largest drop between consecutive
  scores: matches often form a block well above the rest.
* ``bank[:z]``: per result, compare its score with the scores the same image gets from a bank of unrelated
  queries (generic captions, or the collection's own images for image queries): z = (score − μₓ)/σₓ. This also
  corrects for images that score high for every query (hubs).
* a number: a raw score threshold, for users who know their model.
* ``auto``: the rule and z chosen by measurement on ShapesWorld (`AUTO_RULE`; see the benchmark).

Measurement (benchmarks/composed_retrieval.py, mini model, generic queries such as "a grey background",
"two shapes", "a red star", F1 of the mean precision and recall of "is a match", tuning seed): the best z of
each rule gives mad 0.35 (z 1.0) / 0.34 (z 1.5), zscore 0.35 (z 1.0), bank 0.34 (z 1.5), gap 0.22 (z 1.0);
the ceiling is the model's ranking (the best threshold per query, chosen with hindsight, averages F1 0.44).
The rules are within noise of each other, so "auto" is the robust z-score, which needs no query bank; at
z = 1.5 rather than 1.0, the stricter end of its flat optimum, since the benchmark's queries match 9% of the
gallery on average and a user's usually match fewer (a looser cut would flood those results).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pixquery.errors import QueryError

RULES: dict[str, float] = {"mad": 1.5, "zscore": 1.0, "gap": 1.0, "bank": 1.5}
"""Rule name -> its default z."""
AUTO_RULE = ("mad", 1.5)
"""What ``cutoff="auto"`` means; chosen by the precision/recall measurement in benchmarks/composed_retrieval.py."""


@dataclass(frozen=True)
class CutoffRule:
    """A parsed cut-off: `rule` is one of `RULES` or "score" (then `value` is a raw threshold)."""

    rule: str
    value: float

    @property
    def needs_bank(self) -> bool:
        """Whether per-item bank statistics are needed."""
        return self.rule == "bank"


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
) -> np.ndarray:
    """Which of `scores` (raw similarities of the ranked results, best first) are matches under `rule`.

    `sample_scores` are the query's scores over the calibration sample; `item_mean`/`item_std` (aligned with
    `scores`) are each result's bank statistics, needed only by the "bank" rule.
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
