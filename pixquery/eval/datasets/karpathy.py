"""Reader for Karpathy-split caption files: Flickr30K, Flickr8K, MSCOCO and the project's ShapesWorld.

File format (``dataset_flickr30k.json``, ``dataset_coco.json``, ``dataset_shapesworld.json``)::

    {"images": [{"filename": "1000092795.jpg", "filepath": "val2014" (COCO only), "split": "test",
                 "sentences": [{"raw": "Two young guys ...", "tokens": [...], ...}, ...], ...}, ...]}

Captions per image: every sentence listed is kept by default. This is what CLIP_benchmark does: its MSCOCO
loader is torchvision's ``CocoCaptions``, which returns every caption annotated for an image, and a few COCO
images carry 6 or 7, so the 5k Karpathy test split has slightly more than 25,000 captions. Evaluations in the
VSE++/SCAN line keep exactly 5 per image (25,000); pass ``max_captions_per_image=5`` to reproduce those.
Caption text is the ``raw`` field, unmodified, as CLIP_benchmark feeds it to the tokenizer.

Extra scalar fields of image entries (ShapesWorld's ``heldout``, COCO's ``cocoid``) become
``RetrievalDataset.image_tags``; extra scalar fields of sentences become ``caption_tags``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pixquery.eval.datasets._fields import get, load_json, type_name
from pixquery.eval.datasets._paths import check_all_exist, pick_layout
from pixquery.eval.datasets.base import DatasetFormatError, RetrievalDataset

KARPATHY_FILES = {
    "flickr30k": "dataset_flickr30k.json",
    "coco": "dataset_coco.json",
    "flickr8k": "dataset_flickr8k.json",
    "shapesworld": "dataset_shapesworld.json",
}
# Fields of the format itself; anything else scalar on an image or sentence is exposed as a tag.
_IMAGE_FIELDS = frozenset({"filename", "filepath", "split", "sentences", "sentids", "imgid"})
_SENTENCE_FIELDS = frozenset({"raw", "tokens", "imgid", "sentid"})
_IMAGE_DIR_NAMES = ("images", "flickr30k-images", "flickr30k_images", "Images")


def find_karpathy_file(root: Path, name: str | None = None) -> Path:
    """Return the Karpathy JSON under `root` (or `root` itself if it is a file).

    `name` ("flickr30k", "coco", "flickr8k", "shapesworld") picks one when several are present.
    """
    if root.is_file():
        return root
    if not root.is_dir():
        raise DatasetFormatError(root, "dataset directory not found")
    if name is not None:
        if name not in KARPATHY_FILES:
            raise ValueError(f"unknown Karpathy dataset {name!r}; expected one of {sorted(KARPATHY_FILES)}")
        path = root / KARPATHY_FILES[name]
        if not path.is_file():
            raise DatasetFormatError(path, "annotation file not found")
        return path
    present = [root / f for f in KARPATHY_FILES.values() if (root / f).is_file()]
    if len(present) == 1:
        return present[0]
    if not present:
        expected = ", ".join(KARPATHY_FILES.values())
        raise DatasetFormatError(root, f"no Karpathy annotation file found (expected one of {expected})")
    raise ValueError(f"several annotation files in {root}; pass name= one of {sorted(KARPATHY_FILES)}")


def read_karpathy(
    root: str | Path,
    split: str | Sequence[str] = "test",
    *,
    name: str | None = None,
    images_dir: str | Path | None = None,
    max_captions_per_image: int | None = None,
    check_images: bool = True,
) -> RetrievalDataset:
    """Read one split of a Karpathy-format caption file.

    Args:
        root: directory holding ``dataset_*.json`` (or the JSON file itself).
        split: split name(s) to keep, e.g. ``"test"`` or ``("train", "restval")``.
        name: which file to read when `root` holds several (``"flickr30k"``, ``"coco"``...).
        images_dir: folder with the images; by default ``root/images``, ``root/flickr30k-images`` or `root`,
            whichever holds the first image. For COCO, ``filepath`` (e.g. ``val2014``) is tried below it.
        max_captions_per_image: keep only the first N sentences of each image; None keeps all
            (CLIP_benchmark's behaviour, see the module docstring).
        check_images: verify that every image file exists.

    Returns:
        A `RetrievalDataset` with images in file order and their captions grouped by image.
    """
    annotation = find_karpathy_file(Path(root), name)
    base = annotation.parent
    splits = {split} if isinstance(split, str) else set(split)
    if max_captions_per_image is not None and max_captions_per_image < 1:
        raise ValueError("max_captions_per_image must be at least 1")

    data = load_json(annotation)
    entries = get(data, "images", list, annotation, "")

    selected: list[tuple[int, dict[str, Any]]] = []
    for i, entry in enumerate(entries):
        entry_split = get(entry, "split", str, annotation, f"images[{i}]")
        if entry_split in splits:
            selected.append((i, entry))
    if not selected:
        found = sorted({e["split"] for e in entries})
        raise DatasetFormatError(
            annotation,
            f"no image has split {sorted(splits)}; splits present: {found}",
            field="images[].split",
        )

    relative: list[str] = []
    captions: list[str] = []
    caption_to_image: list[int] = []
    sentence_entries: list[tuple[str, dict[str, Any]]] = []
    for image_index, (i, entry) in enumerate(selected):
        where = f"images[{i}]"
        filename = get(entry, "filename", str, annotation, where)
        filepath = get(entry, "filepath", str, annotation, where) if "filepath" in entry else ""
        relative.append(f"{filepath}/{filename}" if filepath else filename)
        sentences = get(entry, "sentences", list, annotation, where)
        if max_captions_per_image is not None:
            sentences = sentences[:max_captions_per_image]
        for j, sentence in enumerate(sentences):
            captions.append(get(sentence, "raw", str, annotation, f"{where}.sentences[{j}]"))
            caption_to_image.append(image_index)
            sentence_entries.append((f"{where}.sentences[{j}]", sentence))

    image_paths = _resolve_images(relative, base, images_dir, annotation, check_images)
    image_tags = _collect_tags([(f"images[{i}]", e) for i, e in selected], _IMAGE_FIELDS, annotation)
    caption_tags = _collect_tags(sentence_entries, _SENTENCE_FIELDS, annotation)
    dataset_name = annotation.stem.removeprefix("dataset_")
    return RetrievalDataset(
        image_paths=image_paths,
        captions=captions,
        caption_to_image=np.asarray(caption_to_image, dtype=np.int64),
        image_tags=image_tags,
        caption_tags=caption_tags,
        name=dataset_name,
        split="+".join(sorted(splits)),
    )


def _resolve_images(
    relative: list[str], base: Path, images_dir: str | Path | None, annotation: Path, check: bool
) -> list[Path]:
    """Turn ``filepath/filename`` strings into paths, finding the folder layout from the first image."""
    hint = "Pass images_dir= the folder that holds the images."
    folders = [Path(images_dir)] if images_dir is not None else [base / d for d in _IMAGE_DIR_NAMES] + [base]
    rules = []
    for folder in folders:
        rules.append(lambda rel, folder=folder: folder / rel)
        # COCO downloads are often unpacked without the val2014/ level that ``filepath`` names.
        rules.append(lambda rel, folder=folder: folder / rel.rsplit("/", 1)[-1])
    rule = pick_layout(rules, relative[0], annotation, hint, required=check)
    paths = [rule(rel) for rel in relative]
    if check:
        check_all_exist(paths, annotation, hint)
    return paths


def _collect_tags(entries: list[tuple[str, dict[str, Any]]], known: frozenset[str], path: Path) -> dict:
    """Gather extra scalar fields into arrays; a field must then be present on every entry."""
    names: dict[str, str] = {}  # tag name -> where it was first seen, for the error message
    for where, entry in entries:
        for key, value in entry.items():
            if key not in known and key not in names and _is_scalar(value):
                names[key] = where
    tags: dict[str, np.ndarray] = {}
    for key, first_seen in names.items():
        first_kind = type_name(_first_value(entries, key))
        values = []
        for where, entry in entries:
            if key not in entry:
                raise DatasetFormatError(
                    path, f"missing here but present on {first_seen}", field=f"{where}.{key}"
                )
            value = entry[key]
            # A tag mixing kinds (true next to "yes") would silently become a string array.
            if type_name(value) != first_kind:
                raise DatasetFormatError(
                    path,
                    f"expected {first_kind} like {first_seen}, got {type_name(value)}",
                    field=f"{where}.{key}",
                )
            values.append(value)
        tags[key] = np.asarray(values)
    return tags


def _first_value(entries: list[tuple[str, dict[str, Any]]], key: str) -> Any:
    return next(entry[key] for _, entry in entries if key in entry)


def _is_scalar(value: object) -> bool:
    return isinstance(value, (bool, int, float, str))
