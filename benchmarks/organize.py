"""Organising a collection without labels, measured: zero-shot classification, clusters, duplicates.

    python benchmarks/organize.py [--shapes-model mini] [--photos-model conse] [--n 40] [--skip-photos]

1. Zero-shot classification on ShapesWorld's labelled sets (shape, colour, background; images showing held-out
   colour+shape combinations reported apart) with the `mini` model, and on the real photos (labels from their file
   names) with `conse`: single prompt, ensembles (curated 7, all 80 templates) and AutoCLIP (all 80; curated 7).
   "None of these": for each class, the classifier is run without it; the share of that class's images rejected
   (out-of-set) and of the other images accepted with the right label (in-set) are reported per threshold.
2. Clusters of single-object ShapesWorld scenes and of the photos: NMI and ARI against each known attribute, for
   k-means with automatic k, k-means with the true number of values, and HDBSCAN.
3. Duplicates: planted variants (JPEG q30/q60/q90, resize x0.5/x0.75, 5/12/20 % crops, 3 degree rotation, colour
   jitter, PNG/WebP format change) of the photos and of ShapesWorld scenes, mixed with distinct images (the other
   originals, one-attribute edits of each scene, unrelated scenes). Pairwise precision and recall per kind and all
   kinds together, recall per transform, the pHash and cosine distributions behind the thresholds, and how often the
   suggested keeper is the original.

The last line printed is one JSON object with every headline figure (cls_single_acc, cls_ensemble_acc,
cls_autoclip_acc, cluster_nmi, dedup_precision, dedup_recall, ...).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageEnhance
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # run from a checkout without installing

from pixquery.api import Library  # noqa: E402
from pixquery.eval.datasets import read_imagefolder  # noqa: E402
from pixquery.media.decode import open_image  # noqa: E402
from pixquery.models.base import Encoder  # noqa: E402
from pixquery.models.registry import load_encoder  # noqa: E402
from pixquery.organize.classify import DEFAULT_THRESHOLD, LabelSet, ZeroShotClassifier, normal_cdf  # noqa: E402
from pixquery.organize.cluster import cluster_vectors  # noqa: E402
from pixquery.organize.dedup import KINDS, fingerprint  # noqa: E402
from pixquery.organize.open_tags import Vocabulary, open_tags  # noqa: E402
from pixquery.synth.emit import write_set  # noqa: E402
from pixquery.synth.render import render_scene  # noqa: E402
from pixquery.synth.world import DEFAULT_HELDOUT, sample_scene  # noqa: E402

PHOTOS = REPO.parent / "shared" / "photos"
THRESHOLDS = tuple(round(float(normal_cdf(np.asarray(z))), 5) for z in (1.0, 1.5, 2.0, 2.5, 3.0, 4.0))
"""Confidences Phi(z) of the collection-calibrated "none of these" for z = 1 ... 4."""
CONFIGS: dict[str, tuple[str, str]] = {  # name -> (method, templates)
    "single": ("single", "single"),
    "ensemble": ("ensemble", "curated"),
    "ensemble80": ("ensemble", "imagenet80"),
    "autoclip": ("autoclip", "imagenet80"),
    "autoclip7": ("autoclip", "curated"),
}
# Word in a photo's file name -> category, for classification and clustering truth on the real photos. Checked in
# order: "parrot-looks-into-the-camera" is a bird.
PHOTO_CATEGORIES = {"parrot": "bird", "kookaburras": "bird", "magpie": "bird", "duck": "bird", "鳥": "bird",
                    "bee": "bee", "kitty": "cat", "cat": "cat", "camera": "camera", "chess": "chess",
                    "boats": "boat", "books": "book", "cake": "cake", "tree": "tree"}


_START = time.time()


def log(message: str) -> None:
    print(f"[{time.time() - _START:6.1f}s] {message}", file=sys.stderr, flush=True)


def embed(encoder: Encoder, paths: Sequence[Path], batch: int = 64) -> np.ndarray:
    out = []
    for start in range(0, len(paths), batch):
        out.append(encoder.encode_images([open_image(p) for p in paths[start : start + batch]]))
    return np.concatenate(out) if out else np.zeros((0, int(encoder.dim)), dtype=np.float32)


def photo_category(path: Path) -> str | None:
    for key, category in PHOTO_CATEGORIES.items():
        if key in path.name.lower():
            return category
    return None


def unique_photos(root: Path = PHOTOS) -> list[Path]:
    """One file per distinct photo: flat/ holds every photo once (bee_animated.gif is bee.jpg animated), unicode/
    one more."""
    files = [*(root / "flat").iterdir(), *(root / "unicode").iterdir()]
    return sorted(p for p in files if photo_category(p) is not None and p.name != "bee_animated.gif")


# --- 1. classification ------------------------------------------------------------------------------------------

def accuracy_by_config(
    encoder: Encoder, vectors: np.ndarray, labels: np.ndarray, names: list[str], subsets: dict[str, np.ndarray]
) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for config, (method, templates) in CONFIGS.items():
        clf = ZeroShotClassifier(encoder, LabelSet(list(names)), method, templates, threshold=None)
        predicted = clf.scorer.scores(vectors).argmax(axis=1)
        out[config] = {name: float((predicted[mask] == labels[mask]).mean()) if mask.any() else float("nan")
                       for name, mask in subsets.items()}
    return out


def none_of_these(
    encoder: Encoder, vectors: np.ndarray, labels: np.ndarray, names: list[str]
) -> dict[str, dict[str, float]]:
    """Per threshold: out-of-set images rejected, in-set images accepted with the right label (leave-one-class-out).

    "auto" is the default rule (a label's robust z over the collection >= AUTO_MIN_Z, confidence Phi(z)); its value is
    reported as "auto_threshold".
    """
    keys = [*map(str, THRESHOLDS), "auto"]
    rejected: dict[str, list[bool]] = {k: [] for k in keys}
    accepted: dict[str, list[bool]] = {k: [] for k in keys}
    auto_values = []
    for left_out in range(len(names)):
        kept = [c for c in range(len(names)) if c != left_out]
        clf = ZeroShotClassifier(encoder, LabelSet([names[c] for c in kept]), "auto", None, threshold="auto")
        probabilities, confidence, _ = clf.predict(vectors)
        auto_values.append(clf.threshold)
        best = probabilities.argmax(axis=1)
        best_conf = confidence[np.arange(len(vectors)), best]
        truth = np.asarray([kept.index(int(y)) if int(y) != left_out else -1 for y in labels])
        for key in keys:
            t = float(clf.threshold or 0.0) if key == "auto" else float(key)
            rejected[key] += (best_conf[truth < 0] < t).tolist()
            accepted[key] += ((best_conf[truth >= 0] >= t) & (best[truth >= 0] == truth[truth >= 0])).tolist()
    out: dict[str, Any] = {key: {"out_of_set_rejected": float(np.mean(rejected[key])),
                                 "in_set_accepted": float(np.mean(accepted[key]))} for key in keys}
    out["auto_threshold"] = round(float(np.mean(auto_values)), 4)
    return out


def shapes_classification(encoder: Encoder, root: Path, n: int) -> dict[str, Any]:
    write_set(root, n=n, seed=7, kinds=("classification",), overwrite=True, progress=False)
    results: dict[str, Any] = {}
    for task in ("shape", "colour", "background"):
        data = read_imagefolder(root / "classification" / task)
        flags = {r["file"]: r["heldout"] for r in json.loads((root / "classification" / task / "labels.json")
                                                                   .read_text(encoding="utf-8"))}
        base = root / "classification" / task
        held = np.asarray([flags[str(Path(p).relative_to(base))] for p in data.image_paths])
        vectors = embed(encoder, data.image_paths)
        subsets = {"all": np.ones(len(held), bool), "seen": ~held, "heldout": held}
        results[task] = {"accuracy": accuracy_by_config(encoder, vectors, data.labels, data.classnames, subsets),
                         "none_of_these": none_of_these(encoder, vectors, data.labels, data.classnames),
                         "images": len(held), "heldout_images": int(held.sum())}
        log(f"  classification/{task}: " + json.dumps({k: round(v["all"], 3)
                                                       for k, v in results[task]["accuracy"].items()}))
    return results


def photos_classification(encoder: Encoder) -> dict[str, Any]:
    paths = unique_photos()
    names = sorted({photo_category(p) for p in paths if photo_category(p)})
    labels = np.asarray([names.index(photo_category(p)) for p in paths])
    vectors = embed(encoder, paths)
    all_mask = {"all": np.ones(len(paths), bool)}
    return {"accuracy": accuracy_by_config(encoder, vectors, labels, names, all_mask),
            "none_of_these": none_of_these(encoder, vectors, labels, names), "images": len(paths)}


# --- 1b. vocabulary-free tags ----------------------------------------------------------------------------------

OPEN_CONFIGS: dict[str, dict[str, Any]] = {
    "csls": {"context": 0.0, "hubness": True},
    "csls+context0.3": {"context": 0.3, "hubness": True},
    "plain": {"context": 0.0, "hubness": False},
}


def open_tag_hits(vectors: np.ndarray, vocab: Vocabulary, truth: list[set[str]], top: int = 3) -> dict[str, float]:
    """Share of images whose `top` open tags contain one of its true words (as a whole word of a tag)."""
    out = {}
    for name, options in OPEN_CONFIGS.items():
        tags = open_tags(vectors, vocab, top=top, **options)
        hits = [bool(words & {part for tag, _ in image for part in tag.split()})
                for words, image in zip(truth, tags, strict=True)]
        out[name] = round(float(np.mean(hits)), 4)
    return out


# --- 2. clusters ------------------------------------------------------------------------------------------------

def cluster_scores(vectors: np.ndarray, truths: dict[str, np.ndarray]) -> dict[str, Any]:
    """NMI and ARI against each attribute for each clustering choice, and chance NMI (shuffled k-means labels)."""
    out: dict[str, Any] = {}
    choices: list[tuple[str, dict[str, Any]]] = [("kmeans_auto", {"k": "auto", "method": "kmeans"}),
                                                  ("hdbscan", {"method": "hdbscan"})]
    choices += [(f"kmeans_k={len(set(t.tolist()))}({name})", {"k": len(set(t.tolist())), "method": "kmeans"})
                for name, t in truths.items()]
    assignments = {}
    for label, kwargs in choices:
        assigned, info = cluster_vectors(vectors, **kwargs)
        assignments[label] = assigned
        out[label] = {"k": info["k"], **{
            f"{name}_{metric}": round(float(fn(truth, assigned)), 4)
            for name, truth in truths.items()
            for metric, fn in (("nmi", normalized_mutual_info_score), ("ari", adjusted_rand_score))
        }}
    shuffled = np.random.default_rng(0).permutation(assignments["kmeans_auto"])
    out["chance_nmi"] = {name: round(float(normalized_mutual_info_score(t, shuffled)), 4) for name, t in truths.items()}
    return out


def shapes_clusters(encoder: Encoder, n: int) -> dict[str, Any]:
    """Clusters of single-object scenes, and the open tags of the same scenes (top 3 name the shape or colour?)."""
    rng = np.random.default_rng(11)
    scenes = [sample_scene(rng, DEFAULT_HELDOUT, split="train", n_objects=1) for _ in range(n)]
    vectors = encoder.encode_images([render_scene(s, 64, rng) for s in scenes])
    truths = {attribute: np.unique([getattr(s.objects[0], attribute) if attribute != "background" else s.background
                                    for s in scenes], return_inverse=True)[1]
              for attribute in ("shape", "colour", "background")}
    words = [{s.objects[0].shape, s.objects[0].colour} for s in scenes]
    return cluster_scores(vectors, truths) | {"open_tags_top3_hit": open_tag_hits(
        vectors, Vocabulary.for_encoder(encoder), words)}


def photos_clusters(encoder: Encoder) -> dict[str, Any]:
    paths = unique_photos()
    categories = [photo_category(p) for p in paths]
    truth = np.unique(categories, return_inverse=True)[1]
    vectors = embed(encoder, paths)
    words = [{str(c).split()[0]} for c in categories]
    return cluster_scores(vectors, {"category": truth}) | {"open_tags_top5_hit": open_tag_hits(
        vectors, Vocabulary.for_encoder(encoder), words, top=5)}


# --- 3. duplicates ----------------------------------------------------------------------------------------------

def _jpeg(img: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def _crop(img: Image.Image, fraction: float) -> Image.Image:
    w, h = img.size
    cw, ch = round(w * (1 - fraction)), round(h * (1 - fraction))
    left, top = (w - cw) // 3, (h - ch) * 2 // 3  # off-centre, like a user's crop
    return img.crop((left, top, left + cw, top + ch))


# name -> (transform, file suffix, save options). The file suffix gives the format change.
VARIANTS: dict[str, tuple[Callable[[Image.Image], Image.Image], str]] = {
    "jpeg q30": (lambda im: _jpeg(im, 30), ".jpg"),
    "jpeg q60": (lambda im: _jpeg(im, 60), ".jpg"),
    "jpeg q90": (lambda im: _jpeg(im, 90), ".jpg"),
    "resize x0.5": (lambda im: im.resize((max(1, im.width // 2), max(1, im.height // 2)), Image.Resampling.LANCZOS),
                    ".png"),
    "resize x0.75": (lambda im: im.resize((max(1, im.width * 3 // 4), max(1, im.height * 3 // 4)),
                                          Image.Resampling.LANCZOS), ".png"),
    "crop 5%": (lambda im: _crop(im, 0.05), ".png"),
    "crop 12%": (lambda im: _crop(im, 0.12), ".png"),
    "crop 20%": (lambda im: _crop(im, 0.20), ".png"),
    "rotate 3deg": (lambda im: _crop(im.rotate(3, resample=Image.Resampling.BICUBIC), 0.06), ".png"),
    "colour jitter": (lambda im: ImageEnhance.Contrast(ImageEnhance.Color(ImageEnhance.Brightness(im).enhance(1.1))
                                                       .enhance(0.85)).enhance(1.05), ".png"),
    "format png": (lambda im: im, ".png"),
    "format webp": (lambda im: im, ".webp"),
}


def plant(originals: list[tuple[str, Image.Image]], distinct: list[tuple[str, Image.Image]], folder: Path
          ) -> tuple[dict[str, int], dict[str, str]]:
    """Write originals, their variants and distinct images; returns (file -> truth group, file -> transform)."""
    folder.mkdir(parents=True, exist_ok=True)
    group, transform = {}, {}
    old = time.time() - 10 * 86400
    for g, (name, img) in enumerate(originals):
        path = folder / f"{name}__original.png"
        img.save(path)
        os.utime(path, (old, old))  # originals are older than their copies, as in real life
        group[path.name], transform[path.name] = g, "original"
        for v, (label, (fn, suffix)) in enumerate(VARIANTS.items()):
            vpath = folder / f"{name}__v{v:02d}{suffix}"
            options = {"lossless": True} if suffix == ".webp" else {"quality": 95} if suffix == ".jpg" else {}
            fn(img).save(vpath, **options)
            group[vpath.name], transform[vpath.name] = g, label
    for d, (name, img) in enumerate(distinct):
        path = folder / f"{name}__distinct.png"
        img.save(path)
        group[path.name], transform[path.name] = len(originals) + d, "distinct"
    return group, transform


def _pairs(groups: list[list[str]]) -> set[tuple[str, str]]:
    return {(a, b) if a < b else (b, a) for g in groups for i, a in enumerate(g) for b in g[i + 1:]}


def score_groups(found: list[list[str]], truth: dict[str, int], transform: dict[str, str]) -> dict[str, Any]:
    by_group: dict[int, list[str]] = {}
    for name, g in truth.items():
        by_group.setdefault(g, []).append(name)
    true_pairs = _pairs(list(by_group.values()))
    found_pairs = _pairs(found)
    hits = true_pairs & found_pairs
    per_transform: dict[str, list[bool]] = {}
    for a, b in true_pairs:  # recall of variant <-> its original, per transform
        if "original" in (transform[a], transform[b]):
            variant = b if transform[a] == "original" else a
            per_transform.setdefault(transform[variant], []).append((a, b) in found_pairs)
    return {
        "true_pairs": len(true_pairs), "found_pairs": len(found_pairs), "correct_pairs": len(hits),
        "precision": len(hits) / len(found_pairs) if found_pairs else 1.0,
        "recall": len(hits) / len(true_pairs) if true_pairs else 1.0,
        "recall_by_transform": {k: round(float(np.mean(v)), 3) for k, v in sorted(per_transform.items())},
    }


def pair_distributions(folder: Path, vectors: dict[str, np.ndarray], truth: dict[str, int]) -> dict[str, Any]:
    """pHash distances and cosines of duplicate pairs and of distinct pairs, and the best threshold of each."""
    names = sorted(truth)
    hashes = np.asarray([fingerprint(open_image(folder / n, target_size=256)).phash for n in names], dtype=np.uint64)
    distance = np.bitwise_count(hashes[:, None] ^ hashes[None, :])
    matrix = np.stack([vectors[n] for n in names])
    cosine = matrix @ matrix.T
    same = np.asarray([[truth[a] == truth[b] for b in names] for a in names])
    upper = np.triu(np.ones_like(same), 1).astype(bool)

    def best(values: np.ndarray, grid: Sequence[float], below: bool) -> dict[str, float]:
        best_f1, best_t = -1.0, grid[0]
        for t in grid:
            predicted = (values <= t) if below else (values >= t)
            tp = (predicted & same & upper).sum()
            p = tp / max(1, (predicted & upper).sum())
            r = tp / max(1, (same & upper).sum())
            f1 = 2 * p * r / max(1e-9, p + r)
            if f1 > best_f1:
                best_f1, best_t = f1, t
        return {"threshold": float(best_t), "f1": round(float(best_f1), 4)}

    dup, other = upper & same, upper & ~same

    def precision_recall(predicted: np.ndarray) -> dict[str, float]:
        tp = (predicted & dup).sum()
        return {"precision": round(float(tp / max(1, (predicted & upper).sum())), 4),
                "recall": round(float(tp / max(1, dup.sum())), 4)}

    return {
        "phash_sweep": {str(t): precision_recall(distance <= t) for t in (6, 8, 10, 12, 14, 16)},
        "phash_dup_quantiles": np.quantile(distance[dup], [0.5, 0.8, 0.9, 1.0]).tolist(),
        "phash_distinct_min": int(distance[other].min()),
        "phash_distinct_p1": float(np.quantile(distance[other], 0.01)),
        "phash_best": best(distance, list(range(0, 25)), below=True),
        "cosine_dup_quantiles": np.round(np.quantile(cosine[dup], [0.05, 0.1, 0.25, 0.5]), 4).tolist(),
        "cosine_distinct_max": round(float(cosine[other].max()), 4),
        "cosine_distinct_p99": round(float(np.quantile(cosine[other], 0.99)), 4),
        "cosine_best": best(cosine, list(np.round(np.arange(0.80, 1.0, 0.0025), 4)), below=False),
    }


def merge_overlapping(groups: list[list[str]]) -> list[list[str]]:
    """Groups that share a member, joined."""
    merged: list[set[str]] = []
    for group in groups:
        touching = [m for m in merged if m & set(group)]
        union = set(group).union(*touching)
        merged = [m for m in merged if not m & set(group)] + [union]
    return [sorted(m) for m in merged]


def dedup_set(model: str, originals: list[tuple[str, Image.Image]], distinct: list[tuple[str, Image.Image]],
              work: Path) -> dict[str, Any]:
    folder, index = work / "images", work / "index"
    truth, transform = plant(originals, distinct, folder)
    with Library.open(index, model=model) as lib:
        lib.index([folder])
        view = lib.view()
        vectors = {Path(view.path_of(i)).name: v for i, v in zip(view.ids.tolist(), view.vectors, strict=True)}
        results: dict[str, Any] = {"images": len(truth), "originals": len(originals), "distinct": len(distinct)}
        for kinds in [(k,) for k in KINDS] + [KINDS]:
            report = lib.duplicates(kinds=kinds)
            used = report["thresholds"]
            # Found at all, in either tier: a similar group holds a duplicate group's keeper, so they are merged.
            found = merge_overlapping([[Path(m["path"]).name for m in g["members"]]
                                       for g in report["groups"] + report["similar"]])
            label = "+".join(kinds) if len(kinds) > 1 else kinds[0]
            results[label] = score_groups(found, truth, transform) | {"thresholds": used}
            if len(kinds) == len(KINDS):
                keepers = [transform[Path(g["keeper"]["path"]).name] for g in report["groups"] if g["size"] > 1]
                results["keeper_is_original"] = round(float(np.mean(
                    [k in ("original", "format png", "format webp") for k in keepers])), 3) if keepers else None
                results["keeper_choices"] = {k: keepers.count(k) for k in sorted(set(keepers))}
    results["distributions"] = pair_distributions(folder, vectors, truth)
    return results


def shapes_dedup_images(n: int) -> tuple[list[tuple[str, Image.Image]], list[tuple[str, Image.Image]]]:
    """`n` scenes to copy, plus distinct ones: a one-attribute edit of each and `n` unrelated scenes."""
    from pixquery.synth.edits import apply_edit, sample_edit

    rng = np.random.default_rng(23)
    originals, distinct = [], []
    for i in range(n):
        scene = sample_scene(rng, DEFAULT_HELDOUT, split="train")
        originals.append((f"scene{i:03d}", render_scene(scene, 64, rng)))
        edited = apply_edit(scene, sample_edit(scene, rng, DEFAULT_HELDOUT, split="train"), rng)
        distinct.append((f"edit{i:03d}", render_scene(edited, 64, rng)))
        distinct.append((f"other{i:03d}", render_scene(sample_scene(rng, DEFAULT_HELDOUT, split="train"), 64, rng)))
    return originals, distinct


def photo_dedup_images(n_originals: int) -> tuple[list[tuple[str, Image.Image]], list[tuple[str, Image.Image]]]:
    """Half the distinct photos get copies; the other half are the distinct images they are mixed with."""
    photos = [(p.stem.replace(" ", "_"), open_image(p)) for p in unique_photos()]
    for _, img in photos:
        img.thumbnail((640, 640))  # keeps the run short; the photos are 0.3-1.2 MP
    return photos[:n_originals], photos[n_originals:]


# --- main -------------------------------------------------------------------------------------------------------

def _pick(results: dict[str, Any], *path: str) -> Any:
    for key in path:
        if not isinstance(results, dict) or key not in results:
            return None
        results = results[key]
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes-model", default="mini")
    parser.add_argument("--photos-model", default="conse")
    parser.add_argument("--n", type=int, default=40, help="ShapesWorld images per classification task")
    parser.add_argument("--skip-photos", action="store_true")
    parser.add_argument("--out", type=Path, default=None, help="also write the full results JSON here")
    args = parser.parse_args(argv)
    started = time.time()
    results: dict[str, Any] = {"shapes_model": args.shapes_model, "photos_model": args.photos_model}
    work = Path(tempfile.mkdtemp(prefix="pixquery-organize-"))
    try:
        try:
            shapes = load_encoder(args.shapes_model)
        except Exception as exc:  # noqa: BLE001 - report any failure to load and go on with the photos
            shapes = None
            results["shapes_error"] = f"{type(exc).__name__}: {exc}"
            log(f"shapes model {args.shapes_model} unavailable: {exc}")
        if shapes is not None:
            log("ShapesWorld classification ...")
            results["shapes_classification"] = shapes_classification(shapes, work / "synth", args.n)
            log("ShapesWorld clusters ...")
            results["shapes_clusters"] = shapes_clusters(shapes, 8 * args.n)
            log("ShapesWorld duplicates ...")
            results["shapes_dedup"] = dedup_set(args.shapes_model, *shapes_dedup_images(max(10, args.n // 2)),
                                                work / "shapes_dedup")
        if not args.skip_photos and PHOTOS.exists():
            photos = load_encoder(args.photos_model)
            log("photos classification ...")
            results["photos_classification"] = photos_classification(photos)
            log("photos clusters ...")
            results["photos_clusters"] = photos_clusters(photos)
            log("photos duplicates ...")
            results["photos_dedup"] = dedup_set(args.photos_model, *photo_dedup_images(11), work / "photos_dedup")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["seconds"] = round(time.time() - started, 1)
    print(json.dumps(results, indent=1, default=float))
    if args.out:
        args.out.write_text(json.dumps(results, indent=1, default=float), encoding="utf-8")
    print(json.dumps(headline(results), default=float))
    return 0


def _mean(values: list[float]) -> float | None:
    return round(float(np.mean(values)), 4) if values else None


def headline(results: dict[str, Any]) -> dict[str, Any]:
    """The figures the last line reports; ShapesWorld ones when the shapes model ran, else the photos'."""
    source = "shapes" if "shapes_classification" in results else "photos"
    tasks = results.get(f"{source}_classification", {})
    task_results = [tasks[t] for t in ("shape", "colour", "background") if t in tasks] or ([tasks] if tasks else [])

    def mean_acc(config: str, subset: str = "all") -> float | None:
        values = [_pick(t, "accuracy", config, subset) for t in task_results]
        values = [v for v in values if v is not None and v == v]
        return round(float(np.mean(values)), 4) if values else None

    clusters = results.get(f"{source}_clusters", {}).get("kmeans_auto", {})
    nmis = {k: v for k, v in clusters.items() if k.endswith("_nmi")}
    dedups = [results[k]["exact+near+similar"] for k in ("shapes_dedup", "photos_dedup") if k in results]
    correct = sum(d["correct_pairs"] for d in dedups)
    found = sum(d["found_pairs"] for d in dedups)
    true = sum(d["true_pairs"] for d in dedups)
    none = [_pick(t, "none_of_these", str(DEFAULT_THRESHOLD)) for t in task_results]
    none = [n for n in none if n]
    return {
        "source": source,
        "cls_single_acc": mean_acc("single"),
        "cls_ensemble_acc": mean_acc("ensemble"),
        "cls_ensemble80_acc": mean_acc("ensemble80"),
        "cls_autoclip_acc": mean_acc("autoclip"),
        "cls_autoclip7_acc": mean_acc("autoclip7"),
        "cls_ensemble_heldout_acc": mean_acc("ensemble", "heldout"),
        "photos_single_acc": _pick(results, "photos_classification", "accuracy", "single", "all"),
        "photos_ensemble_acc": _pick(results, "photos_classification", "accuracy", "ensemble", "all"),
        "photos_autoclip_acc": _pick(results, "photos_classification", "accuracy", "autoclip", "all"),
        "photos_autoclip7_acc": _pick(results, "photos_classification", "accuracy", "autoclip7", "all"),
        "none_out_of_set_rejected": _mean([n["out_of_set_rejected"] for n in none]),
        "none_in_set_accepted": _mean([n["in_set_accepted"] for n in none]),
        "photos_none_out_of_set_rejected": _pick(results, "photos_classification", "none_of_these", "auto",
                                                 "out_of_set_rejected"),
        "photos_none_in_set_accepted": _pick(results, "photos_classification", "none_of_these", "auto",
                                             "in_set_accepted"),
        "cluster_nmi": max(nmis.values()) if nmis else None,
        "cluster_nmi_by_attribute": nmis,
        "cluster_k": clusters.get("k"),
        "dedup_precision": round(correct / found, 4) if found else None,
        "dedup_recall": round(correct / true, 4) if true else None,
        "seconds": results.get("seconds"),
    }


if __name__ == "__main__":
    raise SystemExit(main())
