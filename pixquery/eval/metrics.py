"""Retrieval and classification metrics, pure numpy, matching the field's reference implementations.

Nothing here reads files: inputs are score matrices or ranked lists, outputs plain floats.

Conventions
-----------
* Every metric is a fraction in [0, 1] (CLIP_benchmark's and revisitop's convention); CIRR, CIRCO and
  FashionIQ papers print the same numbers multiplied by 100.
* Ranks are 0-based positions; ``inf`` means "not retrieved at all", so ``rank < k`` tests a hit at k.
* Ties: where a score matrix is ranked, equal scores are ordered by lower index first (a stable descending
  sort). The references use ``torch.topk``/``torch.argsort``, whose order on ties is unspecified (on CPU,
  ``topk`` of ``[.5, .9, .9, .1, .9]`` with k=2 returns indices 2 and 4, not 1 and 2), so on exactly tied
  scores a reference run may differ from ours by that arbitrary choice and by nothing else.
* Score matrices must not contain NaN (a NaN has no place in a ranking); ``-inf`` is allowed and ranks last.
* "Ranked lists" are, per query, a sequence of gallery ids (names or indices) best first: a 2-D array of
  shape (n_queries, n_ranked) or a list of 1-D sequences of any lengths.

References checked (read, not copied):
  CLIP_benchmark ``clip_benchmark/metrics/zeroshot_retrieval.py`` and ``zeroshot_classification.py``;
  SEARLE ``src/validate.py`` (CIRR recall and subset recall, FashionIQ recall, CIRCO mAP@K);
  CIRCO ``src/evaluation.py`` (the evaluation server's mAP@K and recall);
  revisitop ``python/evaluate.py`` and ``python/example_evaluate.py`` (compute_ap, compute_map, protocols).
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Iterable, Mapping, Sequence
from itertools import islice
from typing import Any

import numpy as np

# Elements per block when a (queries x gallery) work array is needed: peak memory stays at tens of MB even
# for a 25k x 5k score matrix.
_BLOCK_ELEMENTS = 1 << 22

RankedLists = np.ndarray | Sequence[Sequence[Hashable]]


# ------------------------------------------------------------------------------------------------------
# Ranking a score matrix
# ------------------------------------------------------------------------------------------------------


def _check_scores(scores: Any, name: str = "scores") -> np.ndarray:
    array = np.asarray(scores)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D matrix, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise ValueError(f"{name} must hold real numbers, got dtype {array.dtype}")
    if np.issubdtype(array.dtype, np.floating) and np.isnan(array).any():
        raise ValueError(f"{name} contains NaN")
    if np.issubdtype(array.dtype, np.unsignedinteger):
        array = array.astype(np.float64)  # negating unsigned scores for a descending sort would wrap around
    return array


def _first_positive_rank(scores: np.ndarray, positive: np.ndarray, excluded: np.ndarray | None) -> np.ndarray:
    """Rank of the best positive in each row, counting only non-excluded items; ``inf`` if there is none.

    Equivalent to sorting each row by (score descending, index ascending), dropping excluded items and taking
    the position of the first positive, but without sorting: the items ahead of the best positive are exactly
    those scoring higher, plus those scoring the same with a lower index.
    """
    usable = positive if excluded is None else positive & ~excluded
    has_positive = usable.any(axis=1)
    best = np.where(usable, scores, -np.inf).max(axis=1, initial=-np.inf)
    at_best = usable & (scores == best[:, None])
    best_index = np.argmax(at_best, axis=1)  # first True: the lowest index among tied best positives
    columns = np.arange(scores.shape[1])
    ahead = (scores > best[:, None]) | ((scores == best[:, None]) & (columns[None, :] < best_index[:, None]))
    if excluded is not None:
        ahead &= ~excluded
    return np.where(has_positive, ahead.sum(axis=1).astype(np.float64), np.inf)


def _row_blocks(n_rows: int, n_cols: int) -> Iterable[slice]:
    step = max(1, _BLOCK_ELEMENTS // max(1, n_cols))
    for start in range(0, n_rows, step):
        yield slice(start, min(n_rows, start + step))


def rank_gallery(scores: Any, k: int | None = None) -> np.ndarray:
    """Rank gallery items for each query, best first, ties broken by lower index.

    Args:
        scores: (n_queries, n_gallery) similarity matrix, higher is better.
        k: keep only the top `k` (all if None or larger than the gallery).

    Returns:
        int64 array (n_queries, min(k, n_gallery)) of gallery indices.
    """
    scores = _check_scores(scores)
    n_queries, n_gallery = scores.shape
    if k is not None and k < 1:
        raise ValueError("k must be at least 1")
    keep = n_gallery if k is None else min(k, n_gallery)
    if keep == n_gallery:
        return np.argsort(-scores, axis=1, kind="stable").astype(np.int64)
    out = np.empty((n_queries, keep), dtype=np.int64)
    for i, row in enumerate(scores):
        # Partition finds the k-th best score; every item scoring at least that much is a candidate, and a
        # stable sort of the candidates (already in index order) applies the lower-index-first tie rule.
        kth_best = row[np.argpartition(-row, keep - 1)[keep - 1]]
        candidates = np.flatnonzero(row >= kth_best)
        order = np.argsort(-row[candidates], kind="stable")
        out[i] = candidates[order[:keep]]
    return out


# ------------------------------------------------------------------------------------------------------
# Image-text retrieval (CLIP_benchmark)
# ------------------------------------------------------------------------------------------------------


def retrieval_ranks(scores: Any, caption_to_image: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per-query ranks for text-to-image and image-to-text retrieval.

    Args:
        scores: (n_texts, n_images) similarity of every caption with every image.
        caption_to_image: int array (n_texts,), the image index of each caption.

    Returns:
        ``(t2i, i2t)``: float arrays (n_texts,) and (n_images,). ``t2i[i]`` is the 0-based rank of caption i's
        image among all images; ``i2t[j]`` is the rank of image j's best-ranked caption among all captions,
        ``inf`` for an image without captions (CLIP_benchmark counts such an image as a miss).
    """
    scores = _check_scores(scores)
    n_texts, n_images = scores.shape
    owner = np.asarray(caption_to_image)
    if owner.shape != (n_texts,) or not np.issubdtype(owner.dtype, np.integer):
        raise ValueError(f"caption_to_image must be an int array of shape ({n_texts},)")
    if n_texts and (owner.min() < 0 or owner.max() >= n_images):
        raise ValueError("caption_to_image holds an index outside the image axis of scores")

    t2i = np.empty(n_texts, dtype=np.float64)
    image_columns = np.arange(n_images)
    for rows in _row_blocks(n_texts, n_images):
        positive = image_columns[None, :] == owner[rows, None]
        t2i[rows] = _first_positive_rank(scores[rows], positive, None)

    i2t = np.empty(n_images, dtype=np.float64)
    for cols in _row_blocks(n_images, n_texts):
        block = scores[:, cols].T
        positive = owner[None, :] == image_columns[cols, None]
        i2t[cols] = _first_positive_rank(block, positive, None)
    return t2i, i2t


def recall_from_ranks(ranks: Any, ks: Iterable[int], prefix: str = "r@") -> dict[str, float]:
    """Fraction of queries whose rank is below k, for each k, keyed ``f"{prefix}{k}"``.

    Use it on a slice of `retrieval_ranks` output to report a subset (e.g. ShapesWorld's held-out images).
    """
    ranks = np.asarray(ranks, dtype=np.float64)
    if ranks.size == 0:
        return {f"{prefix}{k}": float("nan") for k in ks}
    return {f"{prefix}{k}": float(np.mean(ranks < _check_k(k))) for k in ks}


def retrieval_recall_at_k(
    scores: Any, caption_to_image: Any, ks: Iterable[int] = (1, 5, 10)
) -> dict[str, float]:
    """Image-text retrieval recall@k in both directions, as CLIP_benchmark computes it.

    Text-to-image: a caption scores a hit if its image is among the top k images. Image-to-text: an image
    scores a hit if any of its captions is among the top k captions. Each is averaged over queries.
    CLIP_benchmark calls these ``image_retrieval_recall@k`` and ``text_retrieval_recall@k``; k larger than the
    gallery is allowed here (every query with a positive is then a hit) where ``torch.topk`` would raise.
    CLIP_benchmark averages in float32, so its values may differ from these float64 means past the 7th digit.

    Args:
        scores: (n_texts, n_images) similarity matrix.
        caption_to_image: int array (n_texts,), each caption's image index.
        ks: cut-offs.

    Returns:
        ``{"t2i_r@1": ..., "i2t_r@1": ..., ...}`` for each k.
    """
    ks = list(ks)
    t2i, i2t = retrieval_ranks(scores, caption_to_image)
    return {**recall_from_ranks(t2i, ks, "t2i_r@"), **recall_from_ranks(i2t, ks, "i2t_r@")}


# ------------------------------------------------------------------------------------------------------
# Classification (CLIP_benchmark)
# ------------------------------------------------------------------------------------------------------


def topk_accuracy(logits: Any, labels: Any, ks: Iterable[int] = (1, 5)) -> dict[str, float]:
    """Top-k accuracy as CLIP_benchmark's ``accuracy``: the true class is among the k highest logits.

    Args:
        logits: (n_samples, n_classes) class scores.
        labels: int array (n_samples,) of true class indices.
        ks: cut-offs; a k above the number of classes gives NaN, as CLIP_benchmark reports acc5 for datasets
            with fewer than 5 classes.

    Returns:
        ``{"acc@1": ..., "acc@5": ...}``. Ties between logits: the lower class index ranks first.
    """
    logits = _check_scores(logits, "logits")
    labels = _check_labels(labels, logits.shape)
    ranks = np.empty(len(labels), dtype=np.float64)
    classes = np.arange(logits.shape[1])
    for rows in _row_blocks(len(labels), logits.shape[1]):
        positive = classes[None, :] == labels[rows, None]
        ranks[rows] = _first_positive_rank(logits[rows], positive, None)
    result = {}
    for k in ks:
        k = _check_k(k)
        result[f"acc@{k}"] = float("nan") if k > logits.shape[1] else float(np.mean(ranks < k))
    return result


def mean_per_class_recall(logits: Any, labels: Any) -> float:
    """Balanced accuracy of the arg-max prediction (CLIP_benchmark's ``mean_per_class_recall``).

    The recall of each class present in `labels` is averaged with equal weight; classes absent from
    `labels` are left out, as scikit-learn's ``balanced_accuracy_score`` does. Arg-max ties go to the lower
    class index, like ``torch.argmax``.
    """
    logits = _check_scores(logits, "logits")
    labels = _check_labels(labels, logits.shape)
    predicted = np.argmax(logits, axis=1)
    present = np.unique(labels)
    recalls = [np.mean(predicted[labels == c] == c) for c in present]
    return float(np.mean(recalls)) if recalls else float("nan")


def _check_labels(labels: Any, shape: tuple[int, ...]) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != (shape[0],) or (labels.size and not np.issubdtype(labels.dtype, np.integer)):
        raise ValueError(f"labels must be an int array of shape ({shape[0]},)")
    if labels.size and (labels.min() < 0 or labels.max() >= shape[1]):
        raise ValueError("labels hold a class index outside the logits")
    return labels


def _check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"cut-off k must be a positive integer, got {k!r}")
    return int(k)


# ------------------------------------------------------------------------------------------------------
# Ranked-list metrics
# ------------------------------------------------------------------------------------------------------


def first_relevant_rank(
    ranked: RankedLists,
    relevant: Sequence[Collection[Hashable]],
    excluded: Sequence[Collection[Hashable]] | None = None,
    allowed: Sequence[Collection[Hashable]] | None = None,
) -> np.ndarray:
    """0-based position of the first relevant item in each ranked list; ``inf`` when none is listed.

    Args:
        ranked: per query, gallery ids best first.
        relevant: per query, the ids that count as correct.
        excluded: per query, ids removed from the list before positions are counted (CIRR's reference).
        allowed: per query, if given, only these ids are kept (CIRR's subset protocol).

    Returns:
        float array (n_queries,). Repeated ids in a list each take a position, as the list says.
    """
    n = _n_queries(ranked, relevant)
    ranks = np.full(n, np.inf)
    for i in range(n):
        row = np.asarray(ranked[i])
        keep = np.ones(row.shape, dtype=bool)
        if excluded is not None:
            keep &= ~_isin(row, excluded[i])
        if allowed is not None:
            keep &= _isin(row, allowed[i])
        hits = np.flatnonzero(keep & _isin(row, relevant[i]))
        if hits.size:
            ranks[i] = np.count_nonzero(keep[: hits[0]])
    return ranks


def recall_at_k(
    ranked: RankedLists, relevant: Sequence[Collection[Hashable]], ks: Iterable[int]
) -> dict[str, float]:
    """Fraction of queries with at least one relevant id in the top k, keyed ``"r@k"``."""
    return recall_from_ranks(first_relevant_rank(ranked, relevant), ks)


def mrr(ranked: RankedLists, relevant: Sequence[Collection[Hashable]], k: int | None = None) -> float:
    """Mean reciprocal rank of the first relevant id (0 for a query with none in the top `k`, or at all)."""
    ranks = first_relevant_rank(ranked, relevant)
    if k is not None:
        ranks = np.where(ranks < _check_k(k), ranks, np.inf)
    return float(np.mean(1.0 / (ranks + 1.0))) if ranks.size else float("nan")


def average_precision_at_k(ranked: Sequence[Hashable], relevant: Collection[Hashable], k: int) -> float:
    """AP@k of one ranked list, normalised by ``min(k, n_relevant)`` as CIRCO defines it.

    ``AP@k = sum_{i<=k} P@i * rel(i) / min(k, |relevant|)``. Relevant ids are a set (a repeated id counts
    once). A repeated id among the top k raises ValueError, as the CIRCO server does, since it would count
    one relevant image twice.
    """
    k = _check_k(k)
    truth = set(_hashable_items(relevant))
    if not truth:
        raise ValueError("average precision needs at least one relevant id")
    top = list(islice(_hashable_items(ranked), k))  # a full-gallery ranking may be 100k+ long
    if len(set(top)) != len(top):
        raise ValueError("the ranked list repeats an id within the top k")
    hits = np.fromiter((item in truth for item in top), dtype=bool, count=len(top))
    precision = np.cumsum(hits) / np.arange(1, len(top) + 1)
    return float(np.sum(precision[hits]) / min(k, len(truth)))


# ------------------------------------------------------------------------------------------------------
# Composed image retrieval: CIRR, CIRCO, FashionIQ
# ------------------------------------------------------------------------------------------------------


def cirr_recall_at_k(
    ranked: RankedLists,
    references: Sequence[Hashable],
    targets: Sequence[Hashable],
    ks: Iterable[int] = (1, 5, 10, 50),
) -> dict[str, float]:
    """CIRR Recall@k: the reference image is removed from each ranking before counting (SEARLE, CIRR server).

    Args:
        ranked: per query, gallery ids best first (the whole gallery, or at least the top max(ks) + 1).
        references: per query, the reference id (every copy of it is removed from the list).
        targets: per query, the ``target_hard`` id.
        ks: cut-offs.

    Returns:
        ``{"r@1": ..., "r@5": ..., "r@10": ..., "r@50": ...}``.
    """
    excluded = [[ref] for ref in references]
    ranks = first_relevant_rank(ranked, [[t] for t in targets], excluded=excluded)
    return recall_from_ranks(ranks, ks)


def cirr_recall_subset_at_k(
    ranked: RankedLists,
    references: Sequence[Hashable],
    targets: Sequence[Hashable],
    subsets: Sequence[Collection[Hashable]],
    ks: Iterable[int] = (1, 2, 3),
) -> dict[str, float]:
    """CIRR Recall_subset@k: ranking restricted to the query's ``img_set`` members, minus the reference.

    `ranked` must contain every subset member (pass the full gallery ranking), since the subset ranking is
    read off it. Returns ``{"subset_r@1": ..., "subset_r@2": ..., "subset_r@3": ...}``.
    """
    excluded = [[ref] for ref in references]
    ranks = first_relevant_rank(ranked, [[t] for t in targets], excluded=excluded, allowed=subsets)
    return recall_from_ranks(ranks, ks, "subset_r@")


def circo_map_at_k(
    ranked_ids: RankedLists, gt_ids: Sequence[Collection[Hashable]], ks: Iterable[int] = (5, 10, 25, 50)
) -> dict[str, float]:
    """CIRCO mAP@k with multiple ground truths (CIRCO ``src/evaluation.py``).

    Per query ``AP@k = sum_{i<=k} P@i * rel(i) / min(k, |gt|)``, then the mean over queries. Ground-truth ids
    are taken as a set: the official code divides by ``len(gt_img_ids)``, which is the same on the released
    annotations (no query repeats an id). Returns ``{"map@5": ..., ...}``.
    """
    ks = [_check_k(k) for k in ks]
    n = _n_queries(ranked_ids, gt_ids)
    if n == 0:
        return {f"map@{k}": float("nan") for k in ks}
    return {
        f"map@{k}": float(np.mean([average_precision_at_k(ranked_ids[i], gt_ids[i], k) for i in range(n)]))
        for k in ks
    }


def circo_recall_at_k(
    ranked_ids: RankedLists, target_ids: Sequence[Hashable], ks: Iterable[int] = (5, 10, 25, 50)
) -> dict[str, float]:
    """CIRCO Recall@k: only ``target_img_id`` (the first ground truth) counts. Returns ``{"r@5": ...}``."""
    return recall_at_k(ranked_ids, [[t] for t in target_ids], ks)


def fashioniq_recall(
    ranked: RankedLists, targets: Sequence[Hashable], ks: Iterable[int] = (10, 50)
) -> dict[str, float]:
    """FashionIQ Recall@k for one category: the target is in the top k (the reference is not removed).

    Returns ``{"r@10": ..., "r@50": ...}``; average categories with `average_over_categories`.
    """
    return recall_at_k(ranked, [[t] for t in targets], ks)


def average_over_categories(per_category: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Unweighted mean of each metric over categories, as FashionIQ results are reported (SEARLE, CIReVL).

    Every category must report the same metric names.
    """
    if not per_category:
        raise ValueError("no categories to average")
    names = [set(metrics) for metrics in per_category.values()]
    if any(n != names[0] for n in names):
        raise ValueError("categories report different metrics")
    return {key: float(np.mean([m[key] for m in per_category.values()])) for key in sorted(names[0])}


# ------------------------------------------------------------------------------------------------------
# Revisited Oxford / Paris (revisitop)
# ------------------------------------------------------------------------------------------------------

REVISITED_PROTOCOLS = ("easy", "medium", "hard")


def revisited_protocol(gnd: Sequence[Mapping[str, Any]], protocol: str) -> list[dict[str, np.ndarray]]:
    """Turn per-query ``easy``/``hard``/``junk`` lists into ``ok``/``junk`` sets for one protocol.

    easy: ok = easy, junk = junk + hard. medium: ok = easy + hard, junk = junk.
    hard: ok = hard, junk = junk + easy. ("E", "M", "H" are accepted too.)
    """
    protocol = {"e": "easy", "m": "medium", "h": "hard"}.get(protocol.lower(), protocol.lower())
    if protocol not in REVISITED_PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {REVISITED_PROTOCOLS}")
    ok_keys, junk_keys = {
        "easy": (("easy",), ("junk", "hard")),
        "medium": (("easy", "hard"), ("junk",)),
        "hard": (("hard",), ("junk", "easy")),
    }[protocol]
    out = []
    for entry in gnd:
        ok = np.concatenate([np.asarray(entry[key], dtype=np.int64).reshape(-1) for key in ok_keys])
        junk = np.concatenate([np.asarray(entry[key], dtype=np.int64).reshape(-1) for key in junk_keys])
        out.append({"ok": ok, "junk": junk})
    return out


def revisited_query_scores(
    ranked: Sequence[int], ok: Any, junk: Any, kappas: Iterable[int] = (1, 5, 10)
) -> tuple[float, np.ndarray]:
    """AP and precision@k of one query, as revisitop's ``compute_map`` scores it.

    Junk images are dropped from the ranking; AP is the trapezoidal area under the precision-recall curve
    over the positives found, divided by ``len(ok)``. Precision@k is taken at ``min(k, position of the last
    positive)``, so a query whose positives all come early is not penalised for having fewer than k.

    Returns:
        ``(ap, precisions)``; ``(nan, nan...)`` for a query without positives (excluded from means).
        A query whose positives are all missing from a truncated `ranked` gets AP 0 and precision 0.
    """
    kappas = [_check_k(k) for k in kappas]
    ok = np.asarray(ok, dtype=np.int64).reshape(-1)
    junk = np.asarray(junk, dtype=np.int64).reshape(-1)
    if ok.size == 0:
        return float("nan"), np.full(len(kappas), np.nan)
    ranked = np.asarray(ranked).reshape(-1)
    positions = np.flatnonzero(np.isin(ranked, ok))
    junk_positions = np.flatnonzero(np.isin(ranked, junk))
    # Each positive moves up by the number of junk images strictly ahead of it.
    positions = positions - np.searchsorted(junk_positions, positions, side="left")
    if positions.size == 0:
        return 0.0, np.zeros(len(kappas))
    found = np.arange(positions.size)
    precision_before = np.where(positions == 0, 1.0, found / np.maximum(positions, 1))
    precision_at = (found + 1) / (positions + 1)
    ap = float(np.sum((precision_before + precision_at) / 2.0) / ok.size)
    one_based = positions + 1
    precisions = np.empty(len(kappas))
    for j, k in enumerate(kappas):
        cut = min(int(one_based.max()), k)
        precisions[j] = np.count_nonzero(one_based <= cut) / cut
    return ap, precisions


def mean_average_precision(
    ranks: RankedLists, gnd: Sequence[Mapping[str, Any]], protocol: str, kappas: Iterable[int] = (1, 5, 10)
) -> dict[str, float]:
    """Revisited Oxford/Paris mAP and mean precision@k for one protocol (revisitop ``compute_map``).

    Args:
        ranks: (n_queries, n_ranked) database indices, best first. Note revisitop's own ``ranks`` is the
            transpose, (db_size, n_queries).
        gnd: per query a mapping with ``easy``, ``hard`` and ``junk`` database indices
            (`InstanceDataset.gnd`).
        protocol: ``"easy"``, ``"medium"`` or ``"hard"``.
        kappas: cut-offs for mP@k.

    Returns:
        ``{"map": ..., "mp@1": ..., "mp@5": ..., "mp@10": ...}``; queries without positives under the protocol
        are left out of the means, as revisitop does.
    """
    kappas = [_check_k(k) for k in kappas]
    n = _n_queries(ranks, gnd)
    aps = np.empty(n)
    precisions = np.empty((n, len(kappas)))
    for i, sets in enumerate(revisited_protocol(gnd, protocol)):
        aps[i], precisions[i] = revisited_query_scores(ranks[i], sets["ok"], sets["junk"], kappas)
    scored = ~np.isnan(aps)
    if not scored.any():
        return {"map": float("nan"), **{f"mp@{k}": float("nan") for k in kappas}}
    result = {"map": float(np.mean(aps[scored]))}
    for j, k in enumerate(kappas):
        result[f"mp@{k}"] = float(np.mean(precisions[scored, j]))
    return result


# ------------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------------


def _n_queries(ranked: RankedLists, per_query: Sequence[Any]) -> int:
    if len(ranked) != len(per_query):
        raise ValueError(f"{len(ranked)} ranked lists for {len(per_query)} queries")
    return len(ranked)


def _hashable_items(values: Iterable[Any]) -> Iterable[Hashable]:
    # numpy scalars hash like Python ones, but converting keeps sets of mixed sources consistent.
    for value in values:
        yield value.item() if isinstance(value, np.generic) else value


def _isin(row: np.ndarray, values: Collection[Hashable]) -> np.ndarray:
    values = list(_hashable_items(values))
    if not values:
        return np.zeros(row.shape, dtype=bool)
    if row.dtype != object:
        candidate = np.asarray(values)
        # Same kind of values (numbers with numbers, strings with strings): numpy's vectorised membership.
        if candidate.dtype != object and (candidate.dtype.kind in "iuf") == (row.dtype.kind in "iuf"):
            return np.isin(row, candidate)
    lookup = set(values)
    return np.fromiter((item in lookup for item in _hashable_items(row)), dtype=bool, count=row.size)
