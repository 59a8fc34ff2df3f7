"""Negatives on real photos: does "X but not Y" remove what shows Y and keep the rest?

    python benchmarks/negatives_real.py [--photos DIR] [--model conse] [--k 20]

The collection: the 1,000-photo ImageNet sample (`--photos`; `git clone
https://github.com/EliSchwartz/imagenet-sample-images`) plus the 21 photos shipped in pixquery/data/demo_photos
(among them three black cats and two others), indexed with `conse` through the facade. Truth: for the demo photos
the hand labels of benchmarks/data/negatives_truth.json, for the ImageNet photos WordNet (a tabby is a cat, a macaw
is a parrot; benchmarks/data/imagenet_hierarchy.json).

Queries (positive, negative): a cat / black; a bird / a parrot; a dog / a terrier; a fish / a shark; an animal / a
dog. For each negative mode (none, and the two modes `QuerySpec.negative_mode` accepts: subtract, penalty;
`pixquery.query.negatives`), over the top `--k`:
how many results show Y (should fall to 0), and precision of "X and not Y" (should rise), averaged over queries.
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
for extra in (REPO, REPO / "benchmarks"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from imagenet_truth import class_of, load_classes  # noqa: E402

from pixquery.api import Library  # noqa: E402
from pixquery.query.spec import QuerySpec, WeightedText  # noqa: E402

DEFAULT_PHOTOS = Path("/work/bench-photos/imagenet-sample")
DEMO = REPO / "pixquery" / "data" / "demo_photos"
TRUTH = REPO / "benchmarks" / "data" / "negatives_truth.json"
CONCEPTS: dict[str, str | None] = {  # label -> WordNet id that ImageNet photos must descend from (None: no photo)
    "cat": "n02121808", "black cat": None, "bird": "n01503061", "parrot": "n01816887", "dog": "n02084071",
    "terrier": "n02092468", "fish": "n02512053", "shark": "n01482330", "animal": "n00015388",
}
QUERIES: list[tuple[str, str, str, str]] = [  # (positive text, negative text, positive label, negative label)
    ("a cat", "black", "cat", "black cat"),
    ("a bird", "a parrot", "bird", "parrot"),
    ("a dog", "a terrier", "dog", "terrier"),
    ("a fish", "a shark", "fish", "shark"),
    ("an animal", "a dog", "animal", "dog"),
]
MODES = ("none", "subtract", "penalty")  # "none": the query without its negative


def truth_sets(lib: Library) -> dict[str, set[int]]:
    """label -> ids of the photos that show it."""
    classes = load_classes()
    hand = json.loads(TRUTH.read_text(encoding="utf-8"))["labels"]
    view = lib.view()
    out: dict[str, set[int]] = {label: set() for label in CONCEPTS}
    for file_id in view.ids.tolist():
        path = Path(view.path_of(file_id))
        if path.parent.name == "demo":
            for label in CONCEPTS:
                if path.name in hand[label]:
                    out[label].add(int(file_id))
            continue
        found = class_of(path, classes)
        for label, wnid in CONCEPTS.items():
            if found is not None and wnid is not None and found.is_a(wnid):
                out[label].add(int(file_id))
    return out


def run(lib: Library, positive: str, negative: str, mode: str, k: int) -> list[int]:
    spec = QuerySpec(texts=[WeightedText(positive)], k=k)
    if mode != "none":
        spec.negative_texts = [WeightedText(negative)]
        spec.negative_mode = mode
    return [h.id for h in lib.query(spec).hits]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS)
    parser.add_argument("--model", default="conse")
    parser.add_argument("--k", type=int, default=20)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="pixquery-negatives-"))
    results: dict[str, Any] = {}
    try:
        shutil.copytree(DEMO, work / "photos" / "demo")
        shutil.copytree(args.photos, work / "photos" / "imagenet")
        with Library.open(work / "index", model=args.model) as lib:
            lib.index([work / "photos"])
            truth = truth_sets(lib)
            for positive, negative, pos_label, neg_label in QUERIES:
                wanted = truth[pos_label] - truth[neg_label]
                row = {}
                for mode in MODES:
                    hits = run(lib, positive, negative, mode, args.k)
                    row[mode] = {"shows_negative": sum(h in truth[neg_label] for h in hits),
                                 "precision": round(sum(h in wanted for h in hits) / max(1, len(hits)), 3),
                                 "results": len(hits)}
                results[f"{positive} / not {negative}"] = row
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{args.model}, top {args.k}: results showing the negative / precision of 'X and not Y'\n")
    print("| query | " + " | ".join(MODES) + " |")
    print("|---|" + "---|" * len(MODES))
    for query, row in results.items():
        print(f"| {query} | " + " | ".join(f"{row[m]['shows_negative']} / {row[m]['precision']:.2f}" for m in MODES)
              + " |")
    summary = {mode: {"shows_negative": float(np.mean([r[mode]["shows_negative"] for r in results.values()])),
                      "precision": round(float(np.mean([r[mode]["precision"] for r in results.values()])), 3)}
               for mode in MODES}
    print("| mean | " + " | ".join(f"{summary[m]['shows_negative']:.1f} / {summary[m]['precision']:.2f}"
                                   for m in MODES) + " |")
    print(json.dumps({"model": args.model, "k": args.k, "modes": summary,
                      "black_cats_shown": {m: results["a cat / not black"][m]["shows_negative"] for m in MODES}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
