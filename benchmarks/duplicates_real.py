"""Duplicates on real photos with real edits: can a user act on what `pixquery duplicates` says?

    python benchmarks/duplicates_real.py [--photos DIR] [--distinct 400] [--edited 150] [--model conse]

The photos: `--photos` is a folder of real JPEGs, by default the 1,000-image ImageNet sample (one photo per class,
the class in the file name; `git clone https://github.com/EliSchwartz/imagenet-sample-images`). From it,
`--distinct` different photos are taken, chosen to include many of the same subjects (every cat class and most dog
breeds, which a model embeds close together: the hard negatives), and `--edited` of them get edited copies of the
kinds people end up with, cycling through: an exact byte copy, half size, a JPEG re-encode (quality 75), a 4 % crop,
+12 % brightness, a PNG conversion; a fifth of those get a second edit of another kind. A few more get a "reframed"
copy (a 25 % off-centre crop: the same scene, another framing, as in a burst), which should be reported as similar,
never removable. Every file gets the same modification time, so no keeper may be chosen as "oldest".

Everything is indexed through the facade (`Library.index`, then `Library.duplicates()` with its defaults) and scored:

* pair precision and recall of the duplicate groups (exact + near) against the true pairs (a photo and its edited
  copies, the copies among themselves); the reframed copies are neither required nor counted against;
* the same per tier: exact (pairs that same-bytes or same-pixels links join, against byte copies and PNG
  conversions) and near (the other pairs of the groups, against the lossy edits);
* recall per edit kind;
* **files marked removable without a true duplicate in their group** (the target is 0);
* "similar" groups: how many, how many reframed copies they found, and that none of their files is removable;
* keeper reasons, and whether the keeper is the original (or a lossless copy of it).

Ablations re-run the near tier without each piece of its evidence (embedding check, aspect check, colour hashes).
The last line printed is one JSON object with the headline figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageEnhance

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # run from a checkout without installing

from pixquery.api import Library  # noqa: E402

DEFAULT_PHOTOS = Path("/work/bench-photos/imagenet-sample")
EDITS = ("exact copy", "half size", "jpeg q75", "crop 4%", "brightness +12%", "png")
REFRAMED = "reframed 25%"
_START = time.time()


def log(message: str) -> None:
    print(f"[{time.time() - _START:6.1f}s] {message}", file=sys.stderr, flush=True)


def choose_distinct(photos: list[Path], n: int, seed: int) -> list[Path]:
    """`n` photos: every cat (ImageNet classes 281-285 and the big cats 286-293) and dog breeds (151-268) first, as
    far as `n` allows half of it, then a random sample of the rest."""
    rng = np.random.default_rng(seed)
    same_subjects = list(range(281, 294)) + list(range(151, 269))
    hard = [photos[i] for i in same_subjects if i < len(photos)][: n // 2]
    rest = [p for p in photos if p not in set(hard)]
    picked = hard + [rest[i] for i in rng.choice(len(rest), n - len(hard), replace=False)]
    return sorted(picked)


def edit(img: Image.Image, kind: str) -> tuple[Image.Image, str]:
    """The edited image and the format to save it in."""
    if kind == "half size":
        return img.resize((max(1, img.width // 2), max(1, img.height // 2)), Image.Resampling.LANCZOS), "JPEG"
    if kind == "jpeg q75":
        return img, "JPEG75"
    if kind == "crop 4%":
        dx, dy = round(img.width * 0.04), round(img.height * 0.04)
        return img.crop((dx // 2, dy // 2, img.width - (dx - dx // 2), img.height - (dy - dy // 2))), "JPEG"
    if kind == "brightness +12%":
        return ImageEnhance.Brightness(img).enhance(1.12), "JPEG"
    if kind == "png":
        return img, "PNG"
    if kind == REFRAMED:
        w, h = round(img.width * 0.75), round(img.height * 0.75)
        return img.crop((img.width - w, 0, img.width, h)), "JPEG"
    raise ValueError(kind)


def build_set(photos: list[Path], n_edited: int, n_reframed: int, folder: Path, seed: int) -> dict[str, Any]:
    """Write the distinct photos and their copies; returns {file name: (original, kind)}."""
    rng = np.random.default_rng(seed)
    truth: dict[str, tuple[str, str]] = {}
    order = rng.permutation(len(photos))
    edited, reframed = order[:n_edited], order[n_edited : n_edited + n_reframed]
    folder.mkdir(parents=True)
    for photo in photos:
        shutil.copyfile(photo, folder / photo.name)
        truth[photo.name] = (photo.name, "original")
    plan: list[tuple[int, str]] = []
    for slot, index in enumerate(edited.tolist()):
        plan.append((index, EDITS[slot % len(EDITS)]))
        if slot % 5 == 0:  # a fifth get a second copy of another kind: groups of three
            plan.append((index, EDITS[(slot + 3) % len(EDITS)]))
    plan += [(index, REFRAMED) for index in reframed.tolist()]
    for index, kind in plan:
        source = photos[index]
        stem = f"{source.stem}__{kind.replace(' ', '_').replace('%', 'pct').replace('+', 'plus')}"
        if kind == "exact copy":
            name = stem + source.suffix
            shutil.copyfile(source, folder / name)
        else:
            with Image.open(source) as opened:
                img = opened.convert("RGB")
            out, fmt = edit(img, kind)
            name = stem + (".png" if fmt == "PNG" else ".jpg")
            out.save(folder / name, format="PNG" if fmt == "PNG" else "JPEG",
                     quality=75 if fmt == "JPEG75" else 92)
        truth[name] = (source.name, kind)
    when = time.time() - 86400
    for path in folder.iterdir():
        os.utime(path, (when, when))  # one date for all: a keeper can never be "oldest"
    return truth


def _pairs(groups: list[list[str]]) -> set[frozenset[str]]:
    return {frozenset(p) for g in groups for p in combinations(sorted(g), 2)}


def true_pairs(truth: dict[str, tuple[str, str]], kinds: Sequence[str]) -> set[frozenset[str]]:
    """Pairs of files that are the same photo, where every non-original member is an edit of `kinds`."""
    by_original: dict[str, list[str]] = {}
    for name, (original, kind) in truth.items():
        if kind == "original" or kind in kinds:
            by_original.setdefault(original, []).append(name)
    return _pairs(list(by_original.values()))


def score(found: list[list[str]], truth: dict[str, tuple[str, str]], kinds: Sequence[str]) -> dict[str, Any]:
    """Pair precision and recall of `found` groups against the pairs of edits of `kinds` (reframed pairs ignored)."""
    expected = true_pairs(truth, kinds)
    ignored = true_pairs(truth, (*EDITS, REFRAMED)) - expected
    got = _pairs(found) - ignored
    hits = len(got & expected)
    return {"precision": round(hits / len(got), 4) if got else 1.0,
            "recall": round(hits / len(expected), 4) if expected else 1.0,
            "pairs_found": len(got), "pairs_true": len(expected), "false_pairs": len(got - expected)}


def names(group: dict[str, Any]) -> list[str]:
    return [Path(m["path"]).name for m in group["members"]]


def exact_parts(groups: list[dict[str, Any]]) -> list[list[str]]:
    """The files that exact evidence alone (same bytes, same pixels) joins, within each duplicate group."""
    parts = []
    for group in groups:
        name = {m["id"]: Path(m["path"]).name for m in group["members"]}
        part_of = {i: {i} for i in name}
        for link in group["links"]:
            if link["kind"] == "exact":
                merged = part_of[link["a"]] | part_of[link["b"]]
                for member in merged:
                    part_of[member] = merged
        parts += [[name[i] for i in part] for part in {frozenset(p) for p in part_of.values()} if len(part) > 1]
    return parts


def evaluate(report: dict[str, Any], truth: dict[str, tuple[str, str]]) -> dict[str, Any]:
    """Every figure of one duplicates report."""
    groups = report["groups"]
    dup = [names(g) for g in groups]
    out: dict[str, Any] = {"exact+near": score(dup, truth, EDITS)}
    exact = exact_parts(groups)
    out["exact"] = score(exact, truth, ("exact copy", "png"))
    near_pairs = _pairs(dup) - _pairs(exact)
    near_truth = true_pairs(truth, EDITS) - true_pairs(truth, ("exact copy", "png"))
    hits = len(near_pairs & near_truth)
    out["near"] = {"precision": round(hits / len(near_pairs), 4) if near_pairs else 1.0,
                   "recall": round(hits / len(near_truth), 4) if near_truth else 1.0,
                   "pairs_found": len(near_pairs), "pairs_true": len(near_truth),
                   "false_pairs": len(near_pairs - near_truth)}
    found_pairs = _pairs(dup)
    out["recall_by_edit"] = {}
    for kind in EDITS:
        pairs = [frozenset((original, name)) for name, (original, k) in truth.items() if k == kind]
        out["recall_by_edit"][kind] = round(sum(p in found_pairs for p in pairs) / len(pairs), 4) if pairs else None
    wrongly_removable = []
    for group in groups:
        members = names(group)
        for member, info in zip(members, group["members"], strict=True):
            if info["keeper"]:
                continue
            original = truth[member][0]
            partners = [m for m in members if m != member and truth[m][0] == original]
            if not partners:
                wrongly_removable.append(member)
    out["removable"] = report["removable"]
    out["removable_without_true_duplicate"] = len(wrongly_removable)
    out["removable_without_true_duplicate_examples"] = wrongly_removable[:10]
    similar = report.get("similar", [])
    reframed_pairs = [frozenset((original, name)) for name, (original, k) in truth.items() if k == REFRAMED]
    similar_pairs = _pairs([names(g) for g in similar])
    out["similar"] = {
        "groups": len(similar),
        "files": sum(len(g["members"]) for g in similar),
        "reframed_found": round(sum(p in similar_pairs | found_pairs for p in reframed_pairs)
                                / max(1, len(reframed_pairs)), 4),
        "any_removable": any(m.get("keeper") is not None and not m["keeper"] for g in similar for m in g["members"]),
        "examples": [names(g) for g in similar[:5]],
    }
    reasons = Counter(g["reason"].split(" (")[0] for g in groups)
    out["keeper_reasons"] = dict(reasons)
    out["keeper_says_oldest"] = sum(g["reason"].startswith("oldest") for g in groups)
    out["keeper_reason_examples"] = sorted({g["reason"] for g in groups})[:8]
    lossless = {"original", "exact copy", "png"}
    out["keeper_is_original_or_lossless_copy"] = round(
        float(np.mean([truth[Path(g["keeper"]["path"]).name][1] in lossless for g in groups])), 4) if groups else None
    out["thresholds"] = report["thresholds"]
    return out


def pair_cosines(lib: Library, truth: dict[str, tuple[str, str]]) -> dict[str, Any]:
    """Embedding cosines behind the near tier's check: of each edit kind with its original (least, 5th
    percentile), and the largest between two different photos (the hard negatives it must refuse)."""
    view = lib.view()
    by_name = {Path(view.path_of(i)).name: v for i, v in zip(view.ids.tolist(), view.vectors, strict=True)}
    out: dict[str, Any] = {}
    for kind in (*EDITS, REFRAMED):
        sims = [float(by_name[n] @ by_name[o]) for n, (o, k) in truth.items() if k == kind and n in by_name]
        if sims:
            out[kind] = {"min": round(min(sims), 4), "p05": round(float(np.quantile(sims, 0.05)), 4)}
    originals = [n for n, (_, k) in truth.items() if k == "original" and n in by_name]
    matrix = np.stack([by_name[n] for n in originals])
    sims = matrix @ matrix.T
    np.fill_diagonal(sims, -1.0)
    out["different photos, largest"] = round(float(sims.max()), 4)
    out["different photos, 99.9th percentile"] = round(float(np.quantile(sims[np.triu_indices(len(sims), 1)],
                                                                          0.999)), 4)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS)
    parser.add_argument("--distinct", type=int, default=400)
    parser.add_argument("--edited", type=int, default=150)
    parser.add_argument("--reframed", type=int, default=20)
    parser.add_argument("--model", default="conse")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-ablations", action="store_true")
    args = parser.parse_args(argv)
    photos = sorted(p for p in args.photos.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    if len(photos) < args.distinct:
        parser.error(f"{args.photos} holds {len(photos)} photos, fewer than --distinct {args.distinct}")
    distinct = choose_distinct(photos, args.distinct, args.seed)
    work = Path(tempfile.mkdtemp(prefix="pixquery-dedup-real-"))
    try:
        truth = build_set(distinct, args.edited, args.reframed, work / "photos", args.seed)
        log(f"{len(truth)} files ({len(distinct)} distinct photos) in {work / 'photos'}")
        with Library.open(work / "index", model=args.model) as lib:
            lib.index([work / "photos"])
            log("indexed")
            start = time.time()
            report = lib.duplicates()
            seconds = time.time() - start
            results = {"default": evaluate(report, truth), "seconds": round(seconds, 1),
                       "cosines": pair_cosines(lib, truth)}
            log(f"duplicates took {seconds:.1f} s (fingerprints included)")
            if not args.no_ablations:
                for label, thresholds in {
                    "near without the embedding check": {"near_cosine": -1.0},
                    "near without the aspect check": {"aspect": 10.0},
                    "near without the colour hashes": {"chroma": 64},
                    "near at 16 bits": {"near": 16},
                    "near at 6 bits": {"near": 6},
                }.items():
                    results[label] = evaluate(lib.duplicates(kinds=("exact", "near"), thresholds=thresholds), truth)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_tables(results)
    d = results["default"]
    print(json.dumps({
        "files": len(truth), "distinct": len(distinct), "model": args.model,
        "precision": d["exact+near"]["precision"], "recall": d["exact+near"]["recall"],
        "exact_precision": d["exact"]["precision"], "exact_recall": d["exact"]["recall"],
        "near_precision": d["near"]["precision"], "near_recall": d["near"]["recall"],
        "removable": d["removable"], "removable_without_true_duplicate": d["removable_without_true_duplicate"],
        "similar_groups": d["similar"]["groups"], "similar_removable": d["similar"]["any_removable"],
        "reframed_found": d["similar"]["reframed_found"], "keeper_says_oldest": d["keeper_says_oldest"],
        "keeper_is_original_or_lossless_copy": d["keeper_is_original_or_lossless_copy"],
        "seconds": results["seconds"],
    }))
    return 0


def print_tables(results: dict[str, Any]) -> None:
    d = results["default"]
    print("\n| tier | precision | recall | pairs found | true pairs | false pairs |")
    print("|---|---|---|---|---|---|")
    for tier in ("exact", "near", "exact+near"):
        s = d[tier]
        print(f"| {tier} | {s['precision']:.3f} | {s['recall']:.3f} | {s['pairs_found']} | {s['pairs_true']} "
              f"| {s['false_pairs']} |")
    print("\nrecall by edit:", json.dumps(d["recall_by_edit"]))
    print(f"removable: {d['removable']}, of them without a true duplicate in their group: "
          f"{d['removable_without_true_duplicate']} {d['removable_without_true_duplicate_examples']}")
    print("similar:", json.dumps(d["similar"]))
    print("keeper reasons:", json.dumps(d["keeper_reasons"]), "| says oldest:", d["keeper_says_oldest"],
          "| keeper is the original or a lossless copy:", d["keeper_is_original_or_lossless_copy"])
    print("thresholds:", json.dumps(d["thresholds"]))
    print("cosines:", json.dumps(results["cosines"]))
    ablations = {k: v for k, v in results.items() if k not in ("default", "seconds", "cosines")}
    if ablations:
        print("\n| near tier variant | exact+near precision | recall | removable without a true duplicate |")
        print("|---|---|---|---|")
        print(f"| default | {d['exact+near']['precision']:.3f} | {d['exact+near']['recall']:.3f} "
              f"| {d['removable_without_true_duplicate']} |")
        for label, r in ablations.items():
            print(f"| {label} | {r['exact+near']['precision']:.3f} | {r['exact+near']['recall']:.3f} "
                  f"| {r['removable_without_true_duplicate']} |")


if __name__ == "__main__":
    raise SystemExit(main())
