"""Group a collection into clusters, name each one, and pick the images that show it best.

* k-means (scikit-learn) on the unit image vectors; with ``k="auto"`` the number of clusters is the one with the
  best silhouette score (cosine) over 2..`max_k`, the usual label-free criterion.
* HDBSCAN (scikit-learn) finds the number of clusters itself and leaves outliers unclustered.
* Names: the vocabulary concepts that fit a cluster's centre and *not* the other clusters' centres (similarity to
  the own centroid minus the highest similarity to any other centroid), so two clusters of animals are called
  "cat" and "dog" rather than both "animal". Each cluster gets a different name.
* Representatives: the members nearest the centroid.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.cluster import HDBSCAN, KMeans
from sklearn.metrics import silhouette_score

from pixquery.models.base import l2_normalize
from pixquery.organize.open_tags import Vocabulary, word_hubness
from pixquery.organize.view import IndexView
from pixquery.progress import ProgressFn, no_progress

CLUSTER_METHODS: tuple[str, ...] = ("kmeans", "hdbscan")
DEFAULT_MAX_K = 20
SELECTION_SAMPLE = 5000
SILHOUETTE_SAMPLE = 3000
"""Silhouette on at most this many images: its cost grows with the square of the sample."""
N_REPRESENTATIVES = 6
N_NAMES = 3
NAME_CANDIDATES = 30


def choose_k(vectors: np.ndarray, max_k: int = DEFAULT_MAX_K, seed: int = 0) -> tuple[int, dict[int, float]]:
    """The k in 2..max_k with the best cosine silhouette of k-means, and every k's silhouette.

    Large collections choose k on a random sample of `SELECTION_SAMPLE` images: 19 k-means fits of the whole
    collection would cost minutes, and the best k of a 5000-image sample is the same in all but contrived cases.
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
    return max(scores, key=lambda k: scores[k]), scores


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
    centres: np.ndarray, vocab: Vocabulary, hub: np.ndarray | None = None, n_names: int = N_NAMES,
    candidates: int = NAME_CANDIDATES,
) -> list[list[tuple[str, float]]]:
    """Per cluster, `n_names` (concept, distinctiveness) pairs; the first concepts of all clusters differ.

    Candidates are the `candidates` concepts nearest the cluster's centre (after the CSLS hubness correction `hub`,
    see `open_tags.word_hubness`, so "thing" and "photo" do not qualify); among them, names are ranked by
    distinctiveness = similarity to the own centre minus the highest similarity to another cluster's centre.
    Restricting to near concepts first keeps odd words that are merely *less far* from this cluster out.
    """
    if len(centres) == 0 or len(vocab) == 0:
        return [[] for _ in range(len(centres))]
    sims = centres @ vocab.vectors.T  # (clusters, words)
    near = sims - (0.5 * hub if hub is not None else 0.0)
    if len(centres) > 1:
        others = np.stack([np.delete(sims, c, axis=0).max(axis=0) for c in range(len(centres))])
        score = sims - others
    else:
        score = sims
    pool = np.argsort(-near, axis=1)[:, : max(candidates, n_names)]
    ranked = np.take_along_axis(pool, np.argsort(-np.take_along_axis(score, pool, axis=1), axis=1), axis=1)
    taken: set[int] = set()
    chosen: dict[int, list[tuple[str, float]]] = {}
    # The most distinctive clusters choose first, so a weakly separated cluster does not take another's best name.
    for c in np.argsort(-score[np.arange(len(centres)), ranked[:, 0]]).tolist():
        words = [int(w) for w in ranked[c] if int(w) not in taken][:n_names] or [int(ranked[c][0])]
        taken.add(words[0])
        chosen[c] = [(vocab.words[w], float(score[c, w])) for w in words]
    return [chosen[c] for c in range(len(centres))]


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
    names = name_clusters(centres, vocab, word_hubness(vectors, vocab)) if vocab is not None else []

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
