"""Group a collection into clusters, name each one, and pick the images that show it best.

* k-means (scikit-learn) on the unit image vectors; with ``k="auto"`` the number of clusters is the one with the
  best silhouette score (cosine) over 2..`max_k` where that shows clear structure, and otherwise the best among
  enough clusters to browse (`choose_k`).
* HDBSCAN (scikit-learn) finds the number of clusters itself and leaves outliers unclustered.
* Names: the concepts most of a cluster's members carry among their best open tags (a vote), so a cluster is called
  what a person reads off its photos; each cluster gets a different first name.
* Representatives: the members nearest the centroid.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.cluster import HDBSCAN, KMeans
from sklearn.metrics import silhouette_score

from pixquery.models.base import l2_normalize
from pixquery.organize.open_tags import Vocabulary, open_tags
from pixquery.organize.view import IndexView
from pixquery.progress import ProgressFn, no_progress

CLUSTER_METHODS: tuple[str, ...] = ("kmeans", "hdbscan")
DEFAULT_MAX_K = 20
SELECTION_SAMPLE = 5000
SILHOUETTE_SAMPLE = 3000
"""Silhouette on at most this many images: its cost grows with the square of the sample."""
STRUCTURE_SILHOUETTE = 0.25
"""Below this silhouette a clustering has "no substantial structure" (Kaufman & Rousseeuw, Finding Groups in Data,
1990); `choose_k` then stops trusting the silhouette's preference for few clusters."""
N_REPRESENTATIVES = 6
N_NAMES = 3
VOTES_PER_IMAGE = 3
"""Open tags each member votes with: 3 named clusters best on the ImageNet sample (1 and 5 measured too)."""


def least_k(n: int) -> int:
    """The fewest groups `choose_k` gives a collection without clear structure: half of the sqrt(n / 2) rule of
    thumb (Mardia et al., Multivariate Analysis, 1979), at least 2 (1,000 photos: 12)."""
    return max(2, math.ceil(math.sqrt(n / 2) / 2))


def choose_k(vectors: np.ndarray, max_k: int = DEFAULT_MAX_K, seed: int = 0) -> tuple[int, dict[int, float]]:
    """The number of k-means clusters, and every k's cosine silhouette over 2..max_k.

    Where the best silhouette shows substantial structure (>= `STRUCTURE_SILHOUETTE`, Kaufman & Rousseeuw's
    bound), that k wins: clearly separated groups are found as they are. Below it there is no clear grouping to
    find, and the silhouette of high-dimensional embeddings then peaks at k=2 (the 1,000 one-per-class ImageNet
    photos: 0.141 at k=2, 0.08-0.11 elsewhere, two useless halves); the k is then the best silhouette among
    k >= `least_k(n)`, a number of groups one can browse. Large collections choose k on a random sample of
    `SELECTION_SAMPLE` images: 19 k-means fits of the whole collection would cost minutes.
    """
    if len(vectors) > SELECTION_SAMPLE:
        vectors = vectors[np.random.default_rng(seed).choice(len(vectors), SELECTION_SAMPLE, replace=False)]
    n = len(vectors)
    upper = min(max_k, n - 1)
    if upper < 2:
        return 1, {}
    scores: dict[int, float] = {}
    sample = min(n, SILHOUETTE_SAMPLE)
    for k in range(2, upper + 1):
        labels = KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(vectors)
        if len(set(labels.tolist())) < 2:
            continue
        scores[k] = float(silhouette_score(vectors, labels, metric="cosine", sample_size=sample, random_state=seed))
    if not scores:
        return 1, {}
    best = max(scores, key=lambda k: scores[k])
    if scores[best] >= STRUCTURE_SILHOUETTE:
        return best, scores
    browsable = {k: v for k, v in scores.items() if k >= min(least_k(n), upper)}
    return max(browsable, key=lambda k: browsable[k]), scores


def cluster_vectors(
    vectors: np.ndarray,
    k: int | str = "auto",
    method: str = "kmeans",
    max_k: int = DEFAULT_MAX_K,
    min_cluster_size: int | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Cluster labels per row (-1: unclustered, HDBSCAN only) and how they were chosen."""
    n = len(vectors)
    if method not in CLUSTER_METHODS:
        raise ValueError(f"unknown clustering method {method!r}; expected one of: {', '.join(CLUSTER_METHODS)}")
    if n == 0:
        return np.zeros(0, dtype=np.int64), {"k": 0}
    if method == "hdbscan":
        size = min_cluster_size or max(3, n // 50)
        if n < size:
            return np.zeros(n, dtype=np.int64), {"k": 1, "min_cluster_size": size}
        # Unit vectors: Euclidean distance is a monotone function of cosine, and the tree algorithms need Euclidean.
        labels = HDBSCAN(min_cluster_size=size, copy=True).fit_predict(vectors)
        return labels.astype(np.int64), {"k": int(labels.max() + 1), "min_cluster_size": size}
    if k == "auto":
        chosen, scores = choose_k(vectors, max_k, seed)
        info: dict[str, Any] = {"k": chosen, "silhouette": {str(key): round(v, 4) for key, v in scores.items()}}
    else:
        chosen, info = int(k), {"k": int(k)}
        if chosen < 1:
            raise ValueError(f"k must be at least 1, got {chosen}")
    chosen = min(chosen, n)
    if chosen == 1:
        return np.zeros(n, dtype=np.int64), info | {"k": 1}
    labels = KMeans(n_clusters=chosen, n_init=4, random_state=seed).fit_predict(vectors)
    return labels.astype(np.int64), info


def centroids(vectors: np.ndarray, labels: np.ndarray) -> tuple[list[int], np.ndarray]:
    """(cluster ids in order, their unit mean vectors); the unclustered (-1) are not a cluster."""
    ids = sorted(int(c) for c in set(labels.tolist()) if c >= 0)
    if not ids:
        return [], np.zeros((0, vectors.shape[1]), dtype=np.float32)
    return ids, l2_normalize(np.stack([vectors[labels == c].mean(axis=0) for c in ids]))


def name_clusters(
    vectors: np.ndarray, labels: np.ndarray, cluster_ids: Sequence[int], vocab: Vocabulary, n_names: int = N_NAMES,
    votes_per_image: int = VOTES_PER_IMAGE,
) -> list[list[tuple[str, float]]]:
    """Per cluster, `n_names` (concept, share of its members that vote for it) pairs; first names never repeat.

    Each member votes for its `votes_per_image` best open tags (`open_tags.open_tags`: nearest concepts after the
    CSLS hubness correction); a cluster is named by the concepts most of its members vote for. Naming by the
    members' own tags instead of by the centre's most distinctive word ("setup", "tidy" for mixed clusters on
    the 1,000-photo ImageNet sample) gives the words a person reads off the photos ("dog", "vehicle", "insect"):
    benchmarks/naming_real.py. Larger clusters choose first, so a small cluster does not take a big one's name; a
    cluster whose voted words are all taken gets the free word nearest its centre (share 0), so first names differ
    whenever the vocabulary has as many words as there are clusters.
    """
    if len(cluster_ids) == 0 or len(vocab) == 0:
        return [[] for _ in cluster_ids]
    tags = open_tags(vectors, vocab, top=votes_per_image)
    taken: set[str] = set()
    chosen: dict[int, list[tuple[str, float]]] = {}
    sizes = [int((labels == c).sum()) for c in cluster_ids]
    for position in sorted(range(len(cluster_ids)), key=lambda p: -sizes[p]):
        members = np.flatnonzero(labels == cluster_ids[position])
        votes = Counter(word for i in members.tolist() for word, _ in tags[i])
        ranked = [(w, n / len(members)) for w, n in sorted(votes.items(), key=lambda kv: (-kv[1], kv[0]))]
        fresh = [pair for pair in ranked if pair[0] not in taken]
        if not fresh:  # every voted word is taken (a small vocabulary, many clusters): the nearest free word
            centre = l2_normalize(vectors[members].mean(axis=0, keepdims=True))[0]
            free = [w for w in np.argsort(-(vocab.vectors @ centre)).tolist() if vocab.words[w] not in taken]
            fresh = [(vocab.words[w], 0.0) for w in free[:1]]
        names = (fresh + [pair for pair in ranked if pair not in fresh])[:n_names]
        taken.add(names[0][0])
        chosen[position] = names
    return [chosen[p] for p in range(len(cluster_ids))]


def representatives(vectors: np.ndarray, members: np.ndarray, centre: np.ndarray, n: int) -> np.ndarray:
    """Indices (into `vectors`) of the `n` members nearest the centre, nearest first."""
    order = np.argsort(-(vectors[members] @ centre), kind="stable")[:n]
    return members[order]


def cluster_images(
    view: IndexView,
    k: int | str = "auto",
    method: str = "kmeans",
    vocabulary: str | Path | Sequence[str] | None = None,
    max_k: int = DEFAULT_MAX_K,
    n_representatives: int = N_REPRESENTATIVES,
    seed: int = 0,
    progress: ProgressFn = no_progress,
) -> dict[str, Any]:
    """Cluster every indexed image and name the clusters; a JSON-ready dict.

    ``{"method", "k", "selection", "images", "clusters": [{"id", "name", "names", "size", "members": [{"id",
    "path"}], "representatives": [{"id", "path"}]}], "unclustered": [{"id", "path"}]}``, largest cluster first.
    """
    ids, vectors = view.ids, view.vectors
    labels, selection = cluster_vectors(vectors, k, method, max_k=max_k, seed=seed)
    cluster_ids, centres = centroids(vectors, labels)
    vocab = Vocabulary.for_encoder(view.encoder, vocabulary, progress=progress) if len(centres) else None
    names = name_clusters(vectors, labels, cluster_ids, vocab) if vocab is not None else []

    def ref(i: int) -> dict[str, Any]:
        file_id = int(ids[i])
        return {"id": file_id, "path": view.path_of(file_id)}

    clusters = []
    for position, (cluster, centre) in enumerate(zip(cluster_ids, centres, strict=True)):
        members = np.flatnonzero(labels == cluster)
        reps = representatives(vectors, members, centre, n_representatives)
        cluster_names = names[position] if names else []
        clusters.append({
            "id": cluster,
            "name": cluster_names[0][0] if cluster_names else f"cluster {cluster}",
            "names": [{"name": w, "score": round(s, 4)} for w, s in cluster_names],
            "size": int(len(members)),
            "members": [ref(int(i)) for i in members],
            "representatives": [ref(int(i)) for i in reps],
        })
    clusters.sort(key=lambda c: (-c["size"], c["id"]))
    return {
        "method": method,
        "k": len(clusters),
        "selection": selection,
        "images": int(len(ids)),
        "clusters": clusters,
        "unclustered": [ref(int(i)) for i in np.flatnonzero(labels < 0)],
    }
