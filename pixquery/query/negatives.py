"""Negative examples ("a beach, without people"): push the query away from them, or penalise results like them.

Two forms, chosen by `QuerySpec.negative_mode`:

* subtract: q' = norm(q − Σ λᵢ·nᵢ). Costs nothing at search time. Moving the query vector also moves it off the
  positive concept when a negative is close to it (e.g. "dog" minus "puppy"), so λ should stay moderate.
* penalty: score'(x) = score(x) − Σ λᵢ·cᵢ·max(0, sim(x, nᵢ) − τᵢ). Only results that look like a negative more
  than τᵢ are touched, so the positive ranking stays intact elsewhere. It runs on the candidate pool of the
  first search. Calibration (both from a sample of the collection): τᵢ = median + z·1.4826·MAD of the
  negative's own scores ("more like the negative than a typical photo is", z = the shared parameter
  `negative_z`, default `TAU_Z`), and cᵢ = spread of the query's scores / spread of the negative's scores, so
  that λ = 1 means "one unit of unusual likeness to the negative costs one unit of unusual likeness to the
  query" whatever the two score scales are. With the shared parameter `negative_tau` the raw form is used
  instead: that fixed τ for every negative and cᵢ = 1.

λᵢ = `negative_scale` (a shared query parameter, default `DEFAULT_SCALE[mode]`) × the negative's weight.

Defaults, from benchmarks/composed_retrieval.py (precision@10 of "a red shape" without "a grey background" on
ShapesWorld, mini model): no negative 0.77; subtract λ 0.25/0.5/1/2: 0.87/0.87/0.70/0.49; penalty z = 1 with
λ 0.5/1/2: 0.90/0.91/0.91 (z = 0 or 2 lower). Penalty is the default mode: better, and flat in λ.
"""

from __future__ import annotations

import numpy as np

from pixquery.models.base import l2_normalize
from pixquery.query.cutoff import robust_stats  # one robust (median, MAD) for the cut-off and the negatives

DEFAULT_SCALE: dict[str, float] = {"subtract": 0.5, "penalty": 1.0}
TAU_Z = 1.0


def subtract(query: np.ndarray, negatives: np.ndarray, lambdas: np.ndarray) -> np.ndarray:
    """norm(q − Σ λᵢ·nᵢ) for unit negative rows `negatives` (n, d) and weights `lambdas` (n,)."""
    if len(negatives) == 0:
        return query
    return l2_normalize(query - (np.asarray(lambdas, np.float32)[:, None] * negatives).sum(0))


def calibrate(query: np.ndarray, negatives: np.ndarray, sample: np.ndarray, z: float = TAU_Z) -> tuple[np.ndarray, ...]:
    """(τ, c) per negative from the score distributions of the query and the negatives over `sample`."""
    if len(sample) == 0:
        return np.zeros(len(negatives), np.float32), np.ones(len(negatives), np.float32)
    _, query_spread = robust_stats(sample @ query)
    scores = sample @ negatives.T
    stats = [robust_stats(scores[:, i]) for i in range(len(negatives))]
    taus = np.array([m + z * s for m, s in stats], np.float32)
    scales = np.array([query_spread / s for _, s in stats], np.float32)
    return taus, scales


def penalty(
    scores: np.ndarray,
    candidates: np.ndarray,
    negatives: np.ndarray,
    lambdas: np.ndarray,
    taus: np.ndarray,
    scales: np.ndarray | None = None,
) -> np.ndarray:
    """score − Σ λᵢ·cᵢ·max(0, sim(x, nᵢ) − τᵢ) for candidate vectors (m, d) with their scores (m,)."""
    if len(negatives) == 0:
        return scores
    sims = candidates @ negatives.T
    excess = np.maximum(0.0, sims - np.asarray(taus, np.float32)[None, :])
    weights = np.asarray(lambdas, np.float32) * (1.0 if scales is None else np.asarray(scales, np.float32))
    return scores - (excess * weights[None, :]).sum(1)
