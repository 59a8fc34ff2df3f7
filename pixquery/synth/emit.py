"""Write ShapesWorld evaluation sets to disk in the field's own file formats.

Evaluation code reads these through the same readers as the real benchmarks:

* ``retrieval/``: Karpathy-split JSON (Flickr30K/COCO style), 5 captions per image.
* ``cir/``: CIRR layout (``captions/cap.rc2.val.json``, ``image_splits/split.rc2.val.json``, ``img_raw/dev``).
* ``circo/``: CIRCO layout (``annotations/val.json``, 12-digit ``images/000000000001.jpg``).
* ``classification/<task>/``: ImageNet-style class folders plus ``classnames.txt``.
* ``dedup/``: near-duplicate groups and pairs.

Every kind draws from its own generator seeded by ``(seed, kind)``, so adding or dropping a kind never
changes the files of another. Output is byte-identical for equal arguments: PIL writes no timestamps,
JSON is written with a fixed layout, and nothing depends on time or the file system order.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pixquery.progress import ProgressFn, rich_progress
from pixquery.synth.captions import (
    complete_relation_caption,
    describe,
    join_list,
    noun_phrase,
    tokenize,
)
from pixquery.synth.edits import Edit, apply_edit, near_misses, sample_edit
from pixquery.synth.render import render_scene
from pixquery.synth.world import (
    BACKGROUNDS,
    COLOURS,
    DEFAULT_HELDOUT,
    SHAPES,
    HeldOut,
    Scene,
    heldout_facts,
    involves_heldout,
    parse_heldout,
    sample_scene,
)

GENERATOR_VERSION = "shapesworld-1"
ALL_KINDS: tuple[str, ...] = ("retrieval", "cir", "classification", "dedup")
#: Output folder(s) each kind writes; "cir" writes both composed-retrieval layouts.
KIND_DIRS: dict[str, tuple[str, ...]] = {
    "retrieval": ("retrieval",), "cir": ("cir", "circo"), "cirr": ("cir",), "circo": ("circo",),
    "classification": ("classification",), "dedup": ("dedup",),
}
#: Fixed salts so every kind has its own random stream (stable across versions of this file).
_SALT = {"retrieval": 101, "cir": 202, "circo": 303, "classification": 404, "dedup": 505}
HELDOUT_FRACTION = 0.2
CAPTIONS_PER_IMAGE = 5
CIRR_SET_SIZE = 6
CLASSIFICATION_TASKS: tuple[str, ...] = ("shape", "colour", "background")
CIRCO_SEMANTIC_ASPECTS = {
    "colour": ["direct addressing"], "shape": ["direct addressing"], "size": ["comparative"],
    "remove": ["negation"], "add": ["addition"], "move": ["spatial relations"],
    "background": ["conservation"],
}


# --- small file helpers ---------------------------------------------------------------------------

def _save_png(img: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # PIL adds no time chunks, so equal pixels give equal bytes. Level 1: the per-pixel noise leaves
    # little to compress, and the default level spent most of the emit time in zlib.
    img.save(path, format="PNG", compress_level=1)


def _save_jpeg(img: Image.Image, path: Path, quality: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format="JPEG", quality=quality)


def _write_json(path: Path, data: Any, indent: int | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=indent, ensure_ascii=True) + "\n", encoding="utf-8")


def _rng(seed: int, kind: str) -> np.random.Generator:
    return np.random.default_rng([seed, _SALT[kind]])


def _heldout_flags(n: int, rng: np.random.Generator, heldout: HeldOut) -> list[bool]:
    """Exactly round(n * HELDOUT_FRACTION) items are held-out ones, at random positions."""
    n_held = 0 if heldout.is_empty() else int(round(n * HELDOUT_FRACTION))
    order = rng.permutation(n)
    return [bool(order[i] < n_held) for i in range(n)]


class _Progress:
    """Counts written items and reports them through a `ProgressFn` (one bar for all the sets)."""

    def __init__(self, progress: ProgressFn, total: int) -> None:
        self._progress, self._total, self._done = progress, total, 0

    def describe(self, text: str) -> None:
        """The set being written (shown by the bar's label)."""

    def advance(self, steps: int = 1) -> None:
        self._done += steps
        self._progress("Writing ShapesWorld sets", self._done, self._total)


@contextmanager
def _progress(total: int, enabled: bool) -> Iterator[_Progress]:
    with rich_progress(enabled) as progress:
        yield _Progress(progress, total)


# --- caption retrieval (Karpathy) ------------------------------------------------------------------

def _retrieval_captions(scene: Scene, rng: np.random.Generator, heldout: HeldOut) -> list[str]:
    captions = describe(scene, rng, n=CAPTIONS_PER_IMAGE, style="complete")
    # A held-out relation lives only in positions; state it in one caption so the text carries it too.
    held_relations = [f for f in heldout_facts(scene, heldout) if len(f) == 3]
    if held_relations:
        fact = held_relations[int(rng.integers(len(held_relations)))]
        captions[0] = complete_relation_caption(scene, rng, fact=fact)  # type: ignore[arg-type]
    return captions


def write_retrieval(out: Path, n: int, seed: int, heldout: HeldOut, size: int, progress: _Progress) -> dict:
    """Karpathy-format caption retrieval set: ``images/``, ``dataset_shapesworld.json`` and extras."""
    rng = _rng(seed, "retrieval")
    flags = _heldout_flags(n, rng, heldout)
    images, scenes, held_ids = [], [], []
    progress.describe("retrieval")
    for imgid, held in enumerate(flags):
        scene = sample_scene(rng, heldout, split="heldout" if held else "train")
        filename = f"shapesworld_{imgid:06d}.png"
        _save_png(render_scene(scene, size, rng), out / "images" / filename)
        captions = _retrieval_captions(scene, rng, heldout)
        sentids = [imgid * CAPTIONS_PER_IMAGE + k for k in range(CAPTIONS_PER_IMAGE)]
        images.append({
            "filename": filename, "filepath": "images", "imgid": imgid, "split": "test",
            "sentids": sentids,
            "sentences": [{"raw": c, "tokens": tokenize(c), "imgid": imgid, "sentid": s}
                          for c, s in zip(captions, sentids, strict=True)],
            "heldout": held,
        })
        scenes.append({"imgid": imgid, "heldout": held, "heldout_facts": [list(f) for f in
                                                                           heldout_facts(scene, heldout)],
                       "scene": scene.to_dict()})
        if held:
            held_ids.append(imgid)
        progress.advance()
    _write_json(out / "dataset_shapesworld.json", {"images": images, "dataset": "shapesworld"})
    _write_json(out / "heldout_imgids.json", held_ids)
    _write_json(out / "scenes.json", scenes)
    return {"images": n, "captions": n * CAPTIONS_PER_IMAGE, "heldout_images": len(held_ids)}


# --- composed retrieval ---------------------------------------------------------------------------

def _edited_triplet(rng: np.random.Generator, heldout: HeldOut, held: bool,
                    n_negatives: int) -> tuple[Scene, Edit, Scene, list[Scene]]:
    """A training-split reference, an edit (held-out or not), its target and near-miss scenes."""
    for _ in range(1000):
        reference = sample_scene(rng, heldout, split="train")
        try:
            edit = sample_edit(reference, rng, heldout, split="heldout" if held else "train")
        except ValueError:
            continue  # this reference admits no edit of the wanted split; draw another
        target = apply_edit(reference, edit, rng)
        negatives = near_misses(reference, edit, rng, k=n_negatives, heldout=None if held else heldout)
        if len(negatives) == n_negatives:
            return reference, edit, target, negatives
    raise RuntimeError("could not build a composed-retrieval triplet; is the held-out set too large?")


def write_cirr(out: Path, n: int, seed: int, heldout: HeldOut, size: int, progress: _Progress) -> dict:
    """CIRR-format composed retrieval (val split, which has ground truth); one 6-image set per triplet.

    Each set holds the reference, the target and four near-misses; image roles are shuffled within the
    set so names leak nothing. The gallery is every image of the split file.
    """
    rng = _rng(seed, "cir")
    flags = _heldout_flags(n, rng, heldout)
    triplets, split_files = [], {}
    progress.describe("cir (CIRR)")
    for pairid, held in enumerate(flags):
        reference, edit, target, negatives = _edited_triplet(rng, heldout, held, CIRR_SET_SIZE - 2)
        scenes = [reference, target, *negatives]
        slots = rng.permutation(CIRR_SET_SIZE)
        # CIRR names images "dev-<set>-<pair>-img<0|1>" (NLVR2 heritage); keep that shape.
        names = [f"dev-{pairid}-{int(slots[k]) // 2}-img{int(slots[k]) % 2}" for k in range(CIRR_SET_SIZE)]
        for scene, name in sorted(zip(scenes, names, strict=True), key=lambda item: item[1]):
            _save_png(render_scene(scene, size, rng), out / "img_raw" / "dev" / f"{name}.png")
            split_files[name] = f"./dev/{name}.png"
        triplets.append({
            "pairid": pairid, "reference": names[0], "target_hard": names[1],
            "target_soft": {names[1]: 1.0}, "caption": edit.text,
            "img_set": {"id": pairid, "members": sorted(names)},
            "heldout": held, "edit": edit.to_dict(),
        })
        progress.advance()
    _write_json(out / "captions" / "cap.rc2.val.json", triplets)
    _write_json(out / "image_splits" / "split.rc2.val.json", dict(sorted(split_files.items())))
    return {"triplets": n, "images": len(split_files), "heldout_triplets": sum(flags)}


def _shared_concept(reference: Scene, target: Scene, edit: Edit) -> str:
    """What reference and target have in common, phrased like CIRCO's ``shared_concept``."""
    def key(o: Any) -> tuple[Any, ...]:
        return (o.shape, o.colour, o.size, o.cell)

    kept = {key(o) for o in target.objects}
    unchanged = [o for o in reference.reading_order() if key(o) in kept]
    if unchanged:
        return join_list([noun_phrase(o) for o in unchanged])
    edited = reference.get(edit.shape) if edit.shape and reference.has(edit.shape) else reference.objects[0]
    if edit.kind == "shape":
        return f"a {edited.colour} shape"
    return noun_phrase(edited, colour=edit.kind != "colour")


def write_circo(out: Path, n: int, seed: int, heldout: HeldOut, size: int, progress: _Progress) -> dict:
    """CIRCO-format composed retrieval: several ground truths per query (re-renders of the target)."""
    rng = _rng(seed, "circo")
    flags = _heldout_flags(n, rng, heldout)
    queries, next_id = [], 1

    def save(scene: Scene) -> int:
        nonlocal next_id
        img_id, next_id = next_id, next_id + 1
        _save_jpeg(render_scene(scene, size, rng), out / "images" / f"{img_id:012d}.jpg", quality=95)
        return img_id

    progress.describe("circo")
    for qid, held in enumerate(flags):
        reference, edit, target, negatives = _edited_triplet(rng, heldout, held, 3)
        ref_id = save(reference)
        gt_ids = [save(target) for _ in range(2 + int(rng.integers(2)))]
        for negative in negatives:
            save(negative)
        queries.append({
            "id": qid, "reference_img_id": ref_id, "target_img_id": gt_ids[0],
            "relative_caption": edit.text, "shared_concept": _shared_concept(reference, target, edit),
            "gt_img_ids": gt_ids, "semantic_aspects": CIRCO_SEMANTIC_ASPECTS[edit.kind],
            "heldout": held, "edit": edit.to_dict(),
        })
        progress.advance()
    _write_json(out / "annotations" / "val.json", queries)
    return {"queries": n, "images": next_id - 1, "heldout_queries": sum(flags)}


# --- classification -------------------------------------------------------------------------------

def _class_names(task: str) -> tuple[str, ...]:
    return {"shape": SHAPES, "colour": COLOURS, "background": BACKGROUNDS}[task]


def _folder(label: str) -> str:
    return label.replace(" ", "_")


def _labelled_scene(rng: np.random.Generator, task: str, label: str, heldout: HeldOut,
                    want_heldout: bool) -> Scene | None:
    """A scene whose largest object (or background) has ``label``; None if no such scene suits."""
    pairs = [p for p in sorted(heldout.colour_shape) if label in p]
    if want_heldout and task != "background" and not pairs:
        return None
    for _ in range(2000):
        scene = sample_scene(rng, heldout, split="any", n_objects=int(rng.integers(1, 4)))
        main, rest = scene.objects[0], scene.objects[1:]
        changes: dict[str, str] = {"size": "large"}
        if task == "shape":
            changes["shape"] = label
        elif task == "colour":
            changes["colour"] = label
        if want_heldout and task != "background":
            colour, shape = pairs[int(rng.integers(len(pairs)))]
            changes |= {"colour": colour, "shape": shape}
        objects = (replace(main, **changes), *(replace(o, size="small") for o in rest))
        try:
            candidate = Scene(objects=objects, background=label if task == "background" else scene.background)
        except ValueError:
            continue  # label shape already used, or colour not allowed on this background
        if involves_heldout(candidate, heldout) == want_heldout:
            return candidate
    return None


def write_classification(out: Path, n: int, seed: int, heldout: HeldOut, size: int,
                         progress: _Progress) -> dict:
    """ImageNet-style folders for each task; about a fifth of the images show held-out combinations.

    Labels are always seen classes: a held-out red star is still labelled "star" (shape task) or
    "red" (colour task). ``labels.json`` lists every file with its label and held-out flag.
    """
    rng = _rng(seed, "classification")
    counts: dict[str, Any] = {}
    for task in CLASSIFICATION_TASKS:
        progress.describe(f"classification/{task}")
        names = _class_names(task)
        folders = sorted(_folder(c) for c in names)
        by_folder = {_folder(c): c for c in names}
        flags = _heldout_flags(n, rng, heldout)
        records = []
        for i, held in enumerate(flags):
            label = by_folder[folders[i % len(folders)]]
            scene = _labelled_scene(rng, task, label, heldout, held)
            if scene is None:  # e.g. no held-out pair uses this class: fall back to a seen example
                held = False
                scene = _labelled_scene(rng, task, label, heldout, False)
                assert scene is not None
            rel = f"{_folder(label)}/{task}_{i:06d}.png"
            _save_png(render_scene(scene, size, rng), out / task / rel)
            records.append({"file": rel, "label": label, "class_index": folders.index(_folder(label)),
                            "heldout": held})
            progress.advance()
        (out / task).mkdir(parents=True, exist_ok=True)
        (out / task / "classnames.txt").write_text("".join(by_folder[f] + "\n" for f in folders),
                                                   encoding="utf-8")
        _write_json(out / task / "labels.json", records)
        n_held = sum(r["heldout"] for r in records)
        counts[task] = {"images": n, "classes": len(folders), "heldout_images": n_held}
    return counts


# --- near-duplicates ------------------------------------------------------------------------------

def _crop(img: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, float]:
    frac = float(rng.uniform(0.05, 0.20))
    w, h = img.size
    cw, ch = round(w * (1 - frac)), round(h * (1 - frac))
    left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    return img.crop((left, top, left + cw, top + ch)).resize((w, h), Image.Resampling.BICUBIC), frac


def write_dedup(out: Path, n: int, seed: int, heldout: HeldOut, size: int, progress: _Progress) -> dict:
    """``n`` duplicate groups (re-render, resize, JPEG recompression, crop) plus distinct scenes.

    Each group comes with one hard negative (the same scene with one attribute edited) and every
    second group with an unrelated scene; ``pairs.json`` lists positive and negative pairs.
    """
    rng = _rng(seed, "dedup")
    groups, distinct, pairs = [], [], []
    images = out / "images"
    progress.describe("dedup")
    for g in range(n):
        scene = sample_scene(rng, heldout, split="train")
        base = render_scene(scene, size, rng)
        members = {f"g{g:05d}_original.png": ("original", base)}
        members[f"g{g:05d}_rerender.png"] = ("re-rendered", render_scene(scene, size, rng))
        scale = float(rng.choice([0.5, 0.75, 1.5, 2.0]))
        members[f"g{g:05d}_resize.png"] = (f"resized x{scale}",
                                           base.resize((round(size * scale),) * 2, Image.Resampling.BICUBIC))
        cropped, frac = _crop(base, rng)
        members[f"g{g:05d}_crop.png"] = (f"cropped {frac:.0%}", cropped)
        quality = int(rng.integers(40, 91))
        transforms = {}
        for name, (how, img) in members.items():
            _save_png(img, images / name)
            transforms[name] = how
        jpeg_name = f"g{g:05d}_jpeg.jpg"
        _save_jpeg(base, images / jpeg_name, quality=quality)
        transforms[jpeg_name] = f"jpeg q{quality}"
        files = sorted(transforms)
        groups.append({"group": g, "files": files, "transforms": transforms, "scene": scene.to_dict()})
        original = f"g{g:05d}_original.png"
        pairs += [{"a": original, "b": f, "duplicate": True, "kind": transforms[f]}
                  for f in files if f != original]
        edit = sample_edit(scene, rng, heldout, split="train")
        negative = f"n{g:05d}_edited.png"
        _save_png(render_scene(apply_edit(scene, edit, rng), size, rng), images / negative)
        distinct.append(negative)
        pairs.append({"a": original, "b": negative, "duplicate": False, "kind": f"edited: {edit.text}"})
        if g % 2 == 0:
            other = f"d{g:05d}_distinct.png"
            _save_png(render_scene(sample_scene(rng, heldout, split="train"), size, rng), images / other)
            distinct.append(other)
            pairs.append({"a": original, "b": other, "duplicate": False, "kind": "unrelated scene"})
        progress.advance()
    _write_json(out / "pairs.json", {"groups": groups, "distinct": distinct, "pairs": pairs})
    n_files = sum(len(g["files"]) for g in groups) + len(distinct)
    return {"groups": n, "images": n_files, "distinct": len(distinct), "pairs": len(pairs)}


# --- entry points ---------------------------------------------------------------------------------

_WRITERS = {"retrieval": write_retrieval, "cir": write_cirr, "circo": write_circo,
            "classification": write_classification, "dedup": write_dedup}
_STEPS = {"retrieval": 1, "cir": 1, "circo": 1, "classification": len(CLASSIFICATION_TASKS), "dedup": 1}


def write_set(out_dir: Path | str, n: int, seed: int, heldout: HeldOut = DEFAULT_HELDOUT, size: int = 64,
              kinds: tuple[str, ...] | list[str] = ALL_KINDS, overwrite: bool = False,
              progress: bool = True) -> dict:
    """Write ShapesWorld evaluation sets under ``out_dir`` and return the manifest.

    ``n`` is per kind: retrieval images, CIRR triplets, CIRCO queries, classification images per task,
    dedup groups. ``kinds`` takes "retrieval", "cir" (= "cirr" + "circo"), "cirr", "circo",
    "classification", "dedup". Existing output folders are an error unless ``overwrite``, in which case
    only those folders are replaced (stale images would otherwise join the galleries). The manifest is
    also written to ``out_dir/manifest.json``.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    unknown = [k for k in kinds if k not in KIND_DIRS]
    if unknown:
        raise ValueError(f"unknown kinds {unknown}; expected some of: {', '.join(KIND_DIRS)}")
    targets = list(dict.fromkeys(d for k in kinds for d in KIND_DIRS[k]))
    out_dir = Path(out_dir)
    for name in targets:
        path = out_dir / name
        if path.exists() and any(path.iterdir()):
            if not overwrite:
                raise FileExistsError(f"{path} already exists and is not empty; pass overwrite to replace it")
            shutil.rmtree(path)
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = {}
    with _progress(sum(n * _STEPS[t] for t in targets), progress) as bar:
        for name in targets:
            counts[name] = _WRITERS[name](out_dir / name, n, seed, heldout, size, bar)
    manifest = {
        "generator": "pixquery.synth (ShapesWorld)", "version": GENERATOR_VERSION, "seed": seed, "n": n,
        "size": size, "heldout": heldout.to_dict(), "heldout_spec": heldout.to_spec(),
        "heldout_fraction": HELDOUT_FRACTION, "kinds": targets, "counts": counts,
        "paths": {
            "retrieval": "retrieval/dataset_shapesworld.json", "cir": "cir/captions/cap.rc2.val.json",
            "circo": "circo/annotations/val.json", "classification": "classification",
            "dedup": "dedup/pairs.json",
        },
    }
    manifest["paths"] = {k: v for k, v in manifest["paths"].items() if k in targets}
    _write_json(out_dir / "manifest.json", manifest, indent=1)
    return manifest


def synth_command(out_dir: Path, n: int, seed: int, heldout: str | None, size: int,
                  overwrite: bool = False) -> dict:
    """CLI entry (``pixquery synth OUT_DIR --n N --seed S --heldout SPEC``): parse the spec, write it all."""
    return write_set(out_dir, n=n, seed=seed, heldout=parse_heldout(heldout), size=size, overwrite=overwrite)
