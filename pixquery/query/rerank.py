"""Re-ranking of a candidate pool: hubness reduction, query expansion, diversity. Each step is optional.

Hubness: in high-dimensional embedding spaces a few gallery items are the nearest neighbour of very many
queries and crowd every result list. Both remedies below compare an item's similarity to the query with its
similarities to a *query bank* (many unrelated queries of the same kind, embedded once and cached):

* QB-Norm with the dynamic inverted softmax (Bogolin et al., CVPR 2022): score'(x) = β·s(x) − log Σ_b exp(β·s_b(x)),
  the log of exp(β·s) normalised over the bank. "Dynamic": it is applied only when the query's top result is in
  the activation set (items that are the top-1 of some bank query, i.e. potential hubs); otherwise the raw
  ranking is kept, since normalising a non-hub query only adds noise.
* CSLS (Conneau et al., 2018): score'(x) = 2·s(x) − rₓ − r_q, where rₓ is the mean similarity of x to its
  `csls_k` nearest bank queries and r_q that of the query to its `csls_k` nearest candidates.

Query expansion for image queries (the top results of an image query are usually true neighbours):

* α-QE (Radenović et al.): q' = norm(q + Σ_{i≤m} sᵢ^α·xᵢ) over the top m results, then search again.
* DBA (database-side augmentation): each candidate is replaced by norm(Σ_{i≤m} sᵢ^α·xᵢ) over its own m nearest
  stored neighbours (itself included) before scoring. Done on the candidate pool only, so it needs no offline pass.

Diversity: MMR (Carbonell & Goldstein, 1998) picks, one by one, the candidate maximising
λ·relevance − (1 − λ)·max similarity to those already picked, with relevance min-max scaled over the pool so λ
means the same for every score type.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pixquery.errors import QueryError
from pixquery.models.base import l2_normalize

OPTION_DEFAULTS: dict[str, float] = {
    # QB-Norm inverse temperature. On ShapesWorld text->image (mini, tuning seed) R@1 was 0.750 / 0.746 / 0.724 /
    # 0.684 at beta 2 / 5 / 10 / 20 (the paper's 20 is tuned for its models); 5 keeps the inverted softmax a
    # softmax, where 2 nearly reduces it to subtracting each item's mean bank similarity.
    "beta": 5.0,
    "csls_k": 10,  # CSLS neighbourhood size
    "aqe_m": 5,  # α-QE: how many top results expand the query
    "aqe_alpha": 3.0,  # α-QE / DBA weight exponent
    "dba_m": 3,  # DBA: neighbours averaged into each candidate
}
MAX_OPTION = 1000.0
"""Largest value of any option (a temperature of 1e308 only overflows into NaN scores)."""
CHUNK = 8192


def check_options(options: dict[str, Any]) -> None:
    """Raise `QueryError` for unknown re-ranking options or values that are not positive numbers."""
    for name, value in options.items():
        if name not in OPTION_DEFAULTS:
            raise QueryError(f"unknown rerank option {name!r}; options: {', '.join(OPTION_DEFAULTS)}",
                             field="rerank.options")
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= MAX_OPTION:
            raise QueryError(f"rerank option {name!r} must be a positive number at most {MAX_OPTION:g}, got "
                             f"{value!r}", field=f"rerank.options.{name}")


def option(options: dict[str, Any], name: str) -> float:
    """An option's value or its default."""
    return float(options.get(name, OPTION_DEFAULTS[name]))


@dataclass
class BankStats:
    """Per-item statistics of the collection against a query bank, aligned with `ids` (sorted)."""

    ids: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    lse: np.ndarray
    """log Σ_b exp(β·s_b(x)) per item."""
    knn_mean: np.ndarray
    """mean similarity of the item to its csls_k nearest bank queries."""
    active: np.ndarray
    """bool per item: top-1 of at least one bank query (QB-Norm's activation set)."""
    beta: float

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """Row of each id in these statistics (ids must be stored ones)."""
        return np.searchsorted(self.ids, ids)


def bank_statistics(
    ids: np.ndarray,
    vectors: np.ndarray,
    bank: np.ndarray,
    beta: float,
    csls_k: int,
    bank_ids: np.ndarray | None = None,
) -> BankStats:
    """Bank statistics of every stored vector, computed in chunks (memory stays O(chunk × bank)).

    `bank_ids`, when the bank is made of stored items themselves, masks each item's similarity to itself.
    """
    order = np.argsort(ids, kind="stable")
    ids, vectors = np.asarray(ids, np.int64)[order], vectors[order]
    n, nb = len(ids), len(bank)
    mean, std, lse, knn = (np.zeros(n, np.float32) for _ in range(4))
    best_score = np.full(nb, -np.inf, np.float32)
    best_row = np.zeros(nb, np.int64)
    k = max(1, min(int(csls_k), nb))
    for start in range(0, n, CHUNK):
        sims = np.asarray(vectors[start : start + CHUNK], np.float32) @ bank.T
        valid = np.ones_like(sims, bool)
        if bank_ids is not None:
            valid = ids[start : start + CHUNK, None] != np.asarray(bank_ids)[None, :]
        counts = np.maximum(valid.sum(1), 1)
        masked = np.where(valid, sims, 0.0)
        mean[start : start + CHUNK] = masked.sum(1) / counts
        sq = np.where(valid, (sims - mean[start : start + CHUNK, None]) ** 2, 0.0)
        std[start : start + CHUNK] = np.sqrt(sq.sum(1) / counts)
        scaled = np.where(valid, beta * sims, -np.inf)
        top = scaled.max(1, keepdims=True)
        lse[start : start + CHUNK] = (top[:, 0] + np.log(np.exp(scaled - top).sum(1))).astype(np.float32)
        neg = np.where(valid, sims, -np.inf)
        kth = np.partition(-neg, k - 1, axis=1)[:, :k]
        knn[start : start + CHUNK] = np.mean(np.where(np.isfinite(kth), -kth, 0.0), axis=1)
        col_best = neg.max(0)
        better = col_best > best_score
        best_score[better] = col_best[better]
        best_row[better] = start + neg.argmax(0)[better]
    active = np.zeros(n, bool)
    active[best_row[np.isfinite(best_score)]] = True
    return BankStats(ids, mean, std, lse, knn, active, float(beta))


def qbnorm(scores: np.ndarray, ids: np.ndarray, stats: BankStats) -> np.ndarray:
    """Dynamic inverted softmax scores of a pool (in log space); raw scores if the top item is no hub."""
    if len(scores) == 0:
        return scores
    rows = stats.rows(ids)
    if not stats.active[rows[int(np.argmax(scores))]]:
        return scores
    return (stats.beta * scores - stats.lse[rows]).astype(np.float32)


def csls(scores: np.ndarray, ids: np.ndarray, stats: BankStats, k: int) -> np.ndarray:
    """2·s − rₓ − r_q for a pool; r_q is the mean of the query's top-k pool scores."""
    if len(scores) == 0:
        return scores
    k = max(1, min(int(k), len(scores)))
    r_q = float(np.mean(np.sort(scores)[-k:]))
    return (2.0 * scores - stats.knn_mean[stats.rows(ids)] - r_q).astype(np.float32)


def alpha_qe(query: np.ndarray, top_vectors: np.ndarray, top_scores: np.ndarray, alpha: float) -> np.ndarray:
    """α-QE: norm(q + Σ max(sᵢ, 0)^α·xᵢ) over the given top results."""
    weights = np.maximum(np.asarray(top_scores, np.float32), 0.0) ** alpha
    return l2_normalize(query + (weights[:, None] * top_vectors).sum(0))


def dba(neighbour_vectors: np.ndarray, neighbour_scores: np.ndarray, alpha: float) -> np.ndarray:
    """Augmented candidates: norm(Σ_i max(sᵢ, 0)^α·xᵢ) over each candidate's neighbours, (m, n_nb, d) -> (m, d)."""
    weights = np.maximum(np.asarray(neighbour_scores, np.float32), 0.0) ** alpha
    weights = np.where(np.isfinite(weights), weights, 0.0)
    return l2_normalize((weights[..., None] * neighbour_vectors).sum(1))


def mmr(scores: np.ndarray, vectors: np.ndarray, k: int, diversity: float) -> np.ndarray:
    """Indices into the pool of k picks by maximal marginal relevance with λ = 1 − diversity."""
    n = len(scores)
    k = min(int(k), n)
    if k == 0:
        return np.zeros(0, np.int64)
    lam = 1.0 - float(diversity)
    finite = np.isfinite(scores)
    lo, hi = float(np.min(scores[finite])), float(np.max(scores[finite]))
    relevance = np.where(finite, (scores - lo) / max(hi - lo, 1e-9), -np.inf)
    picked = [int(np.argmax(relevance))]
    closest = vectors @ vectors[picked[0]]
    chosen = np.zeros(n, bool)
    chosen[picked[0]] = True
    while len(picked) < k:
        value = lam * relevance - (1.0 - lam) * closest
        value[chosen] = -np.inf
        nxt = int(np.argmax(value))
        picked.append(nxt)
        chosen[nxt] = True
        closest = np.maximum(closest, vectors @ vectors[nxt])
    return np.array(picked, np.int64)
