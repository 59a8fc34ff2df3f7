"""Approximate stores at scale: build time, latency, recall@10, memory, and a filtered search, per store.

Data: clustered synthetic vectors like image embeddings: `n // 1000` Gaussian clusters in a 64-d latent space,
embedded in 512-d by a random orthonormal map, plus small isotropic noise, normalised onto the sphere. Queries are
fresh draws from the same mixture. Ground truth is exact search over the raw vectors (the `flat` store).

All stores share one raw vector directory (as an index does): each kind derives its own structure from it.
Per store: build seconds, p50/p95 latency of one k=10 query at a time, recall@10 against exact, index bytes per
vector held in memory, process RSS after the build, and one filtered search where 1% of the ids pass, both with
the default policy (at most `exact_filter_max` ids -> exact from raw) and forced inside the index.

    python benchmarks/ann_scale.py                 # n = 100k: a few minutes on 2 cores
    python benchmarks/ann_scale.py --n 1000000     # the README figures (about 2 GB of raw vectors on disk)
    python benchmarks/ann_scale.py --stores hnsw,ivfpq --n 20000

The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pixquery.store.derived import recall_at_k  # noqa: E402
from pixquery.store.flat import FlatStore  # noqa: E402
from pixquery.store.open import open_store  # noqa: E402

DIM, LATENT, K = 512, 64, 10
KINDS = {"hnsw": "faiss-hnsw", "ivfpq": "faiss-ivfpq", "milvus": "milvus:./bench-milvus.db"}


class Mixture:
    """A seeded mixture of anisotropic Gaussian clusters on the unit sphere (see the module docstring)."""

    def __init__(self, clusters: int, seed: int = 0, spread: float = 0.08, noise: float = 0.01) -> None:
        rng = np.random.default_rng(seed)
        self.basis = np.linalg.qr(rng.standard_normal((DIM, LATENT)))[0].astype(np.float32)
        centers = rng.standard_normal((clusters, LATENT))
        self.centers = (centers / np.linalg.norm(centers, axis=1, keepdims=True)).astype(np.float32)
        self.spread, self.noise = spread, noise

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        which = rng.integers(len(self.centers), size=n)
        latent = self.centers[which] + rng.normal(0, self.spread, (n, LATENT)).astype(np.float32)
        x = latent @ self.basis.T + rng.normal(0, self.noise, (n, DIM)).astype(np.float32)
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def fill_raw(directory: Path, n: int, mixture: Mixture, chunk: int = 50_000) -> float:
    """Write n vectors into a flat store in chunks (memory stays flat); returns seconds."""
    start = time.perf_counter()
    store = FlatStore(directory, DIM)
    rng = np.random.default_rng(1)
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        store.add(np.arange(lo, hi, dtype=np.int64), mixture.sample(hi - lo, rng))
        store.flush()
    store.close()
    return time.perf_counter() - start


def timed_queries(store: Any, queries: np.ndarray, allowed: np.ndarray | None = None) -> tuple[np.ndarray, list[float]]:
    """Search one query at a time (the interactive case); returns (ids, per-query milliseconds)."""
    found, times = [], []
    for q in queries:
        start = time.perf_counter()
        _, ids = store.search(q[None, :], K, allowed_ids=allowed)
        times.append((time.perf_counter() - start) * 1000)
        found.append(ids[0])
    return np.array(found), times


def pct(times: list[float], p: float) -> float:
    return round(float(np.percentile(times, p)), 3)


def run_store(name: str, vectors_dir: Path, queries: np.ndarray, truth: np.ndarray, allowed: np.ndarray,
              filtered_truth: np.ndarray, params: dict[str, Any]) -> dict[str, Any]:
    rss_before = rss_mb()
    store = open_store(KINDS[name], vectors_dir, DIM, params=params)
    start = time.perf_counter()
    store.rebuild()
    build = time.perf_counter() - start
    store.search(queries[:5], K)  # warm-up: first-touch page faults are not query latency
    found, times = timed_queries(store, queries)
    filtered, ftimes = timed_queries(store, queries, allowed)
    store.params.update(exact_filter_max=0, exact_filter_fraction=0.0)  # force the filter inside the index too
    forced, fftimes = timed_queries(store, queries, allowed)
    info = store.describe()
    out = {
        "build_s": round(build, 1),
        "p50_ms": pct(times, 50),
        "p95_ms": pct(times, 95),
        "recall10": round(recall_at_k(found, truth), 4),
        "build_recall10": info.get("recall_at_10"),
        "bytes_per_vector": info["index_bytes_per_vector"],
        "index_disk_bytes": info["index_disk_bytes"],
        "rss_mb_delta": round(rss_mb() - rss_before, 1),
        "filtered_recall10": round(recall_at_k(filtered, filtered_truth), 4),
        "filtered_p50_ms": pct(ftimes, 50),
        "filtered_in_index_recall10": round(recall_at_k(forced, filtered_truth), 4),
        "filtered_in_index_p50_ms": pct(fftimes, 50),
        "state": info["state"],
    }
    store.close()
    print(f"{name}: {json.dumps(out)}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--stores", default="hnsw,ivfpq,milvus")
    parser.add_argument("--filter-fraction", type=float, default=0.01)
    parser.add_argument("--threads", type=int, default=None, help="faiss threads (default: all cores)")
    parser.add_argument("--dir", type=Path, default=None, help="work directory (default: a temporary one)")
    args = parser.parse_args()

    work = args.dir or Path(tempfile.mkdtemp(prefix="ann_scale_"))
    vectors_dir = work / "vectors"
    mixture = Mixture(clusters=max(16, args.n // 1000))
    queries = mixture.sample(args.queries, np.random.default_rng(2))
    result: dict[str, Any] = {"n": args.n, "dim": DIM, "queries": args.queries, "cpus": os.cpu_count()}
    try:
        result["generate_s"] = round(fill_raw(vectors_dir, args.n, mixture), 1)
        flat = FlatStore(vectors_dir, DIM, readonly=True)
        truth = flat.search(queries, K)[1]
        allowed = np.sort(np.random.default_rng(3).choice(args.n, int(args.n * args.filter_fraction), replace=False))
        filtered_truth = flat.search(queries, K, allowed_ids=allowed)[1]
        flat_queries = queries[: min(len(queries), 50 if args.n > 200_000 else len(queries))]
        _, times = timed_queries(flat, flat_queries)
        result.update(flat_p50_ms=pct(times, 50), flat_p95_ms=pct(times, 95), flat_bytes_per_vector=DIM * 4)
        print(f"flat: p50 {result['flat_p50_ms']} ms", flush=True)
        flat.close()
        params = {"threads": args.threads} if args.threads else {}
        filtered = []
        for name in [s.strip() for s in args.stores.split(",") if s.strip()]:
            out = run_store(name, vectors_dir, queries, truth, allowed, filtered_truth, params)
            for key, value in out.items():
                result[f"{name}_{key}"] = value
            filtered.append(out["filtered_recall10"])
        result["filtered_recall10"] = min(filtered) if filtered else 1.0
        result["peak_rss_mb"] = round(peak_rss_mb(), 1)
    finally:
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
