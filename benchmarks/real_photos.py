"""Text-to-image retrieval on the real photos in ../shared/photos: ConSE against a random-weights baseline.

For each model: embed every photo (decoded with pixquery's own `open_image`), run every query of
benchmarks/data/real_photos_queries.json, and report MRR (mean reciprocal rank of the first relevant photo),
R@1 (share of queries whose top photo is relevant), images/s (decode + preprocess + encode, one process) and
the median time of one text query (encode one text in-process and score all photos; first 10 queries).

    python benchmarks/real_photos.py [--models conse,random:ViT-B-32] [--photos DIR] [--threads N]

The last line printed is one JSON object with conse_mrr, conse_r1, random_mrr, random_r1, images_per_s and
text_query_ms (the last two for conse); a model that cannot be loaded reports null and the reason.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # run from a checkout without installing

from pixquery.errors import PixqueryError  # noqa: E402
from pixquery.media.decode import ImageDecodeError, open_image  # noqa: E402

QUERIES = REPO / "benchmarks" / "data" / "real_photos_queries.json"


@dataclass
class Result:
    """One model's measurements; `error` is set instead when the model could not run."""

    model: str
    mrr: float | None = None
    r1: float | None = None
    images_per_s: float | None = None
    text_query_ms: float | None = None
    ranks: dict[str, int] = field(default_factory=dict)
    error: str | None = None


def load_queries(path: Path = QUERIES) -> tuple[Path, list[dict[str, Any]]]:
    """Read the query set; returns (photos root resolved against the repository, queries)."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    return (REPO / doc["photos_root"]).resolve(), doc["queries"]


def decode_photos(root: Path) -> tuple[list[str], list[Any]]:
    """Decode every image file under `root`, as sorted paths relative to it; non-image files are skipped."""
    names, images = [], []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        try:
            images.append(open_image(path))
        except ImageDecodeError:
            continue  # README.md, not-an-image.txt: the indexer records these, retrieval ignores them
        names.append(path.relative_to(root).as_posix())
    return names, images


def first_relevant_ranks(scores: np.ndarray, names: list[str], queries: list[dict[str, Any]]) -> list[int]:
    """For each query (a row of `scores` over photos), the 1-based rank of its best-ranked relevant photo."""
    ranks = []
    for row, query in zip(scores, queries, strict=True):
        relevant = set(query["relevant"])
        order = np.argsort(-row, kind="stable")
        ranks.append(next(r for r, i in enumerate(order, 1) if names[i] in relevant))
    return ranks


def mrr_r1(ranks: list[int]) -> tuple[float, float]:
    """Mean reciprocal rank and recall@1 from first-relevant ranks."""
    return float(np.mean([1.0 / r for r in ranks])), float(np.mean([r == 1 for r in ranks]))


def measure(
    spec: str, root: Path, queries: list[dict[str, Any]], options: dict[str, Any], timed_queries: int = 10
) -> Result:
    """Load one model, embed the photos, run the queries and time it all."""
    from pixquery.models.registry import load_encoder

    result = Result(spec)
    try:
        encoder = load_encoder(spec, **options)
    except (PixqueryError, ImportError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        return result
    t0 = time.perf_counter()
    names, images = decode_photos(root)
    decode_s = time.perf_counter() - t0
    # First runs allocate and pick kernels; keep them out of the timings.
    encoder.encode_texts(["warm-up"])
    encoder.encode_images(images[:2])
    t0 = time.perf_counter()
    image_vectors = encoder.encode_images(images)
    result.images_per_s = len(images) / (decode_s + time.perf_counter() - t0)

    # Ranking uses one batched call; latency is timed on single queries (the first `timed_queries`), since a
    # slow model would otherwise take minutes to time all of them.
    scores = encoder.encode_texts([q["query"] for q in queries]) @ image_vectors.T
    timings = []
    for query in queries[:timed_queries]:
        t0 = time.perf_counter()
        np.argmax(image_vectors @ encoder.encode_texts([query["query"]])[0])  # what a search does per query
        timings.append(time.perf_counter() - t0)
    result.text_query_ms = 1000 * statistics.median(timings)
    ranks = first_relevant_ranks(scores, names, queries)
    result.ranks = {q["query"]: r for q, r in zip(queries, ranks, strict=True)}
    result.mrr, result.r1 = mrr_r1(ranks)
    return result


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print the tables and the final JSON line; returns that JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="conse,random:ViT-B-32", help="comma-separated model specs")
    parser.add_argument("--photos", type=Path, help="photos folder (default: photos_root of the query set)")
    parser.add_argument("--queries", type=Path, default=QUERIES)
    parser.add_argument("--threads", type=int, help="inference threads for every model")
    parser.add_argument("--timed-queries", type=int, default=10, help="single queries timed per model")
    args = parser.parse_args(argv)

    root, queries = load_queries(args.queries)
    root = args.photos or root
    options = {"threads": args.threads} if args.threads else {}
    specs = [spec.strip() for spec in args.models.split(",") if spec.strip()]
    results = [measure(spec, root, queries, options, args.timed_queries) for spec in specs]

    print(f"{len(queries)} queries on {root}")
    print(f"{'model':<22} {'MRR':>6} {'R@1':>6} {'images/s':>9} {'text ms':>8}")
    for r in results:
        if r.error:
            print(f"{r.model:<22} not run: {r.error}")
            continue
        print(
            f"{r.model:<22} {_fmt(r.mrr, '6.3f')} {_fmt(r.r1, '6.3f')} {_fmt(r.images_per_s, '9.1f')} "
            f"{_fmt(r.text_query_ms, '8.1f')}"
        )
    ran = [r for r in results if not r.error]
    if ran:
        print("\nrank of the first relevant photo per query")
        print(f"{'query':<44} " + " ".join(f"{r.model[:16]:>16}" for r in ran))
        for q in queries:
            print(f"{q['query'][:44]:<44} " + " ".join(f"{r.ranks[q['query']]:>16}" for r in ran))

    by_kind: dict[str, Result] = {}
    for r in results:  # the first model of each kind is the one reported
        by_kind.setdefault("random" if r.model.startswith("random") else r.model.split(":")[0], r)
    conse, rand = by_kind.get("conse", Result("conse")), by_kind.get("random", Result("random"))
    summary = {
        "conse_mrr": conse.mrr,
        "conse_r1": conse.r1,
        "random_mrr": rand.mrr,
        "random_r1": rand.r1,
        "images_per_s": conse.images_per_s,
        "text_query_ms": conse.text_query_ms,
    }
    if conse.error or rand.error:
        summary["errors"] = {r.model: r.error for r in (conse, rand) if r.error}
    rounded = {k: round(v, 4) if isinstance(v, float) else v for k, v in summary.items()}
    print(json.dumps(rounded, ensure_ascii=False))
    return summary


if __name__ == "__main__":
    main()
