"""Names people recognise: cluster names, open tags and stored labels on real photos, with the broad WordNet vocabulary
("before" in the JSON) and the curated common one ("after"); the old automatic k and the old label rule beside them.

    python benchmarks/naming_real.py [--photos DIR] [--model conse]

The 1,000-photo ImageNet sample (`--photos`; `git clone https://github.com/EliSchwartz/imagenet-sample-images`) is
indexed through the facade. A name or tag is *right* for a photo when it names the photo's class or one of the
class's WordNet ancestors up to `DEPTH` steps up ("tabby", "cat", "domestic cat", "feline", "animal" for a tabby;
benchmarks/data/imagenet_hierarchy.json), or is the class's own name.

* Open tags (`Library.tag_open`, top 5): the share of photos whose first tag is right, and whose top 5 hold a right
  one; and the distinct tags used.
* Clusters (`Library.cluster`, k-means with k="auto", the default): the share of photos whose cluster name is right
  for them, the number of clusters, their names, and the adjusted mutual information (AMI) of the clusters with a
  coarse WordNet grouping (each photo's class replaced by its ancestor `COARSE_STEPS` steps up, 110 groups on the
  sample). Beside it, in the same run, the old automatic k (the best silhouette over 2..20, which picked k=2).
* Labels (`Library.tag` with `LABELS`, 20 common words): the share of stored labels that are right, and how many,
  with the rule of issue #19 (a stored label reaches half the best label's probability) and without it.

The figures of the code before issue #19 (old vocabulary, k and names): run this script from a checkout of it.

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
from pixquery.organize import classify  # noqa: E402
from pixquery.query.textbank import load_words  # noqa: E402

DEFAULT_PHOTOS = Path("/work/bench-photos/imagenet-sample")
VOCABULARIES = {"before: concepts (WordNet, 17k)": "concepts", "after: common (curated)": "common"}
DEPTH = 6
COARSE_STEPS = 4
LABELS = ["cat", "dog", "bird", "car", "boat", "flower", "tree", "food", "insect", "fish", "snake", "person",
          "building", "book", "camera", "bottle", "chair", "horse", "monkey", "bee"]


def coarse_group(found: Any) -> str:
    """The class's ancestor `COARSE_STEPS` steps up (the farthest one where its chain is shorter)."""
    steps = max(d for d, _ in found.ancestors.values() if d <= COARSE_STEPS)
    return min(w for w, (d, _) in found.ancestors.items() if d == steps)


def cluster_figures(clusters: dict[str, Any], right: dict[int, set[str]], coarse: dict[int, str]) -> dict[str, Any]:
    from sklearn.metrics import adjusted_mutual_info_score

    named = [c["name"].lower() in right[m["id"]] for c in clusters["clusters"] for m in c["members"]]
    members = [(m["id"], n) for n, c in enumerate(clusters["clusters"]) for m in c["members"]]
    return {
        "cluster_name_right": round(sum(named) / len(named), 3),
        "clusters": len(clusters["clusters"]),
        "cluster_ami_coarse": round(float(adjusted_mutual_info_score([coarse[i] for i, _ in members],
                                                                     [n for _, n in members])), 3),
        "cluster_names": [f"{c['name']} ({c['size']})" for c in clusters["clusters"]],
    }


def evaluate(lib: Library, vocabulary: str) -> dict[str, Any]:
    right, coarse = truth_of(lib)
    report = lib.tag_open(vocabulary=vocabulary, top=5, store=False).to_dict()
    first = [r["tags"][0]["label"].lower() in right[r["id"]] for r in report["results"] if r["tags"]]
    any5 = [any(t["label"].lower() in right[r["id"]] for t in r["tags"]) for r in report["results"]]
    clusters = lib.cluster(vocabulary=vocabulary)
    return {
        "vocabulary_size": report["vocabulary_size"],
        "open_tag_first_right": round(sum(first) / len(first), 3),
        "open_tag_top5_right": round(sum(any5) / len(any5), 3),
        "distinct_tags": len(report["counts"]),
        "most_used_tags": list(report["counts"])[:10],
        "silhouette": clusters["selection"].get("silhouette", {}),
    } | cluster_figures(clusters, right, coarse)


def truth_of(lib: Library) -> tuple[dict[int, set[str]], dict[int, str]]:
    """Per photo id: the names right for it, and its coarse group."""
    classes = load_classes()
    view = lib.view()
    found = {int(i): class_of(view.path_of(i), classes) for i in view.ids.tolist()}
    found = {i: c for i, c in found.items() if c is not None}
    return ({i: c.names_within(DEPTH) for i, c in found.items()}, {i: coarse_group(c) for i, c in found.items()})


def label_precision(lib: Library, relative: float) -> dict[str, Any]:
    """Stored labels with `classify.RELATIVE_PROBABILITY` set to `relative` (0: the rule before issue #19)."""
    classes = load_classes()
    kept, classify.RELATIVE_PROBABILITY = classify.RELATIVE_PROBABILITY, relative
    try:
        report = lib.tag(LABELS, store=False)
    finally:
        classify.RELATIVE_PROBABILITY = kept
    stored = right = 0
    for image in report.images:
        found = class_of(image.path, classes)
        if found is None:
            continue
        truth = found.names_within(DEPTH)
        stored += len(image.labels)
        right += sum(label in truth for label, _, _ in image.labels)
    return {"labels_stored": stored, "labels_right": right, "label_precision": round(right / max(stored, 1), 3)}


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
            after = results["after: common (curated)"]
            silhouettes = after.pop("silhouette")
            old_k = int(max(silhouettes, key=lambda k: silhouettes[k]))  # what k="auto" chose before issue #19
            extra = {"old_auto_k": old_k} | {
                f"old_k_{key}": value for key, value in cluster_figures(
                    lib.cluster(k=old_k, vocabulary="common"), *truth_of(lib)).items()
            }
            labels = {"before": label_precision(lib, 0.0), "after": label_precision(lib, classify.RELATIVE_PROBABILITY)}
            results["before: concepts (WordNet, 17k)"].pop("silhouette")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\n| vocabulary | words | first open tag right | a right tag in top 5 | distinct tags | cluster name right "
          "(photos) | clusters |")
    print("|---|---|---|---|---|---|---|")
    for label, r in results.items():
        print(f"| {label} | {r['vocabulary_size']} | {r['open_tag_first_right']:.3f} | {r['open_tag_top5_right']:.3f} "
              f"| {r['distinct_tags']} | {r['cluster_name_right']:.3f} | {r['clusters']} |")
    print(f"\nclusters (common words) with the old automatic k={extra['old_auto_k']} (best silhouette over 2..20): "
          f"name right {extra['old_k_cluster_name_right']:.3f}, AMI with the coarse grouping "
          f"{extra['old_k_cluster_ami_coarse']:.3f}; with the new k={after['clusters']}: name right "
          f"{after['cluster_name_right']:.3f}, AMI {after['cluster_ami_coarse']:.3f}")
    print(f"old-k cluster names: {', '.join(extra['old_k_cluster_names'])}")
    for when, r in labels.items():
        print(f"labels ({len(LABELS)} common words), {when}: {r['labels_stored']} stored, {r['labels_right']} right, "
              f"precision {r['label_precision']:.3f}")
    for label, r in results.items():
        print(f"\n{label}: cluster names: {', '.join(r['cluster_names'])}")
        print(f"{label}: most used tags: {', '.join(r['most_used_tags'])}")
    print(f"\ncommon words: {len(load_words('common'))}; the hierarchy counts a name right up to {DEPTH} steps up")
    figures: dict[str, Any] = {label.split(":")[0]: {k: v for k, v in r.items()
                                                     if k not in ("cluster_names", "most_used_tags")}
                               for label, r in results.items()}
    figures["old_auto_k"] = {k: v for k, v in extra.items() if k != "old_k_cluster_names"}
    figures["labels"] = labels
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
