"""Names people recognise: cluster names and open tags on real photos, with the broad WordNet vocabulary (before)
and the curated common one (after).

    python benchmarks/naming_real.py [--photos DIR] [--model conse]

The 1,000-photo ImageNet sample (`--photos`; `git clone https://github.com/EliSchwartz/imagenet-sample-images`) is
indexed through the facade. A name or tag is *right* for a photo when it names the photo's class or one of the
class's WordNet ancestors up to `DEPTH` steps up ("tabby", "cat", "domestic cat", "feline", "animal" for a tabby;
benchmarks/data/imagenet_hierarchy.json), or is the class's own name.

* Open tags (`Library.tag_open`, top 5): the share of photos whose first tag is right, and whose top 5 hold a right
  one; and the distinct tags used.
* Clusters (`Library.cluster`, k-means with k chosen by silhouette, the default): the share of photos whose cluster
  name is right for them, and the clusters' names.

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

REPO = Path(__file__).resolve().parents[1]
for extra in (REPO, REPO / "benchmarks"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from imagenet_truth import class_of, load_classes  # noqa: E402

from pixquery.api import Library  # noqa: E402
from pixquery.query.textbank import load_words  # noqa: E402

DEFAULT_PHOTOS = Path("/work/bench-photos/imagenet-sample")
VOCABULARIES = {"before: concepts (WordNet, 17k)": "concepts", "after: common (curated)": "common"}
DEPTH = 6


def evaluate(lib: Library, vocabulary: str) -> dict[str, Any]:
    classes = load_classes()
    right: dict[int, set[str]] = {}
    view = lib.view()
    for file_id in view.ids.tolist():
        found = class_of(view.path_of(file_id), classes)
        if found is not None:
            right[int(file_id)] = found.names_within(DEPTH)
    report = lib.tag_open(vocabulary=vocabulary, top=5, store=False).to_dict()
    first = [r["tags"][0]["label"].lower() in right[r["id"]] for r in report["results"] if r["tags"]]
    any5 = [any(t["label"].lower() in right[r["id"]] for t in r["tags"]) for r in report["results"]]
    clusters = lib.cluster(vocabulary=vocabulary)
    named = [c["name"].lower() in right[m["id"]] for c in clusters["clusters"] for m in c["members"]]
    return {
        "vocabulary_size": report["vocabulary_size"],
        "open_tag_first_right": round(sum(first) / len(first), 3),
        "open_tag_top5_right": round(sum(any5) / len(any5), 3),
        "distinct_tags": len(report["counts"]),
        "most_used_tags": list(report["counts"])[:10],
        "cluster_name_right": round(sum(named) / len(named), 3),
        "clusters": len(clusters["clusters"]),
        "cluster_names": [f"{c['name']} ({c['size']})" for c in clusters["clusters"]],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS)
    parser.add_argument("--model", default="conse")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="pixquery-naming-"))
    results: dict[str, Any] = {}
    try:
        with Library.open(work / "index", model=args.model) as lib:
            lib.index([args.photos])
            for label, vocabulary in VOCABULARIES.items():
                results[label] = evaluate(lib, vocabulary)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\n| vocabulary | words | first open tag right | a right tag in top 5 | distinct tags | cluster name right "
          "(photos) | clusters |")
    print("|---|---|---|---|---|---|---|")
    for label, r in results.items():
        print(f"| {label} | {r['vocabulary_size']} | {r['open_tag_first_right']:.3f} | {r['open_tag_top5_right']:.3f} "
              f"| {r['distinct_tags']} | {r['cluster_name_right']:.3f} | {r['clusters']} |")
    for label, r in results.items():
        print(f"\n{label}: cluster names: {', '.join(r['cluster_names'])}")
        print(f"{label}: most used tags: {', '.join(r['most_used_tags'])}")
    print(f"\ncommon words: {len(load_words('common'))}; the hierarchy counts a name right up to {DEPTH} steps up")
    print(json.dumps({label.split(":")[0]: {k: v for k, v in r.items() if k not in ("cluster_names", "most_used_tags")}
                      for label, r in results.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
