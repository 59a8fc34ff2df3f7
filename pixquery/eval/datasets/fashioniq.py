"""Reader for FashionIQ (Wu et al. CVPR 2021), one ``ComposedDataset`` per category.

Layout (github.com/XiaoxiaoGuo/fashion-iq, images as distributed with CLIP4Cir/SEARLE)::

    captions/cap.{dress,shirt,toptee}.{train,val,test}.json  [{"candidate", "target", "captions": [c1, c2]}]
    image_splits/split.{dress,shirt,toptee}.{train,val,test}.json  ["B005X4PL1G", ...]
    images/B005X4PL1G.png   (or .jpg)

Caption joining: each query has two relative captions written by different annotators. Like SEARLE
(``src/validate.py``) and CIReVL (``src/utils.py``) we strip ``.?,`` and spaces from both ends of each and
join them as ``f"{c1} and {c2}"``. SEARLE additionally encodes the reversed order and averages the two text
features; that string is kept in ``extra["caption_reversed"]`` and the raw pair in ``extra["captions"]``.
(Pic2Word instead writes ``f"{c2} and {c1}"`` without stripping.) The gallery is the category's split file;
the reference image is not removed from the ranking, as in all three reference implementations.
"""

from __future__ import annotations

from pathlib import Path

from pixquery.eval.datasets._fields import expect, get, get_str_list, load_json
from pixquery.eval.datasets._paths import check_all_exist, pick_layout
from pixquery.eval.datasets.base import ComposedDataset, ComposedQuery, DatasetFormatError

FASHIONIQ_CATEGORIES = ("dress", "shirt", "toptee")
_STRIP = ".?, "
_SUFFIXES = (".png", ".jpg", ".jpeg")


def join_fashioniq_captions(first: str, second: str) -> str:
    """Join FashionIQ's two relative captions the way SEARLE and CIReVL do."""
    return f"{first.strip(_STRIP)} and {second.strip(_STRIP)}"


def read_fashioniq(
    root: str | Path,
    category: str,
    split: str = "val",
    *,
    images_dir: str | Path | None = None,
    check_images: bool = True,
) -> ComposedDataset:
    """Read one FashionIQ category.

    Args:
        root: the FashionIQ folder holding ``captions/``, ``image_splits/`` and ``images/``.
        category: ``"dress"``, ``"shirt"`` or ``"toptee"``.
        split: ``"train"``, ``"val"`` or ``"test"`` (test queries have no target).
        images_dir: image folder; ``root/images`` by default. Files are ``{asin}.png`` or ``{asin}.jpg``.
        check_images: verify that every gallery image exists.

    Returns:
        A `ComposedDataset` named ``fashioniq-{category}``; each query has ``reference`` = candidate,
        ``caption`` = the joined captions, ``targets`` = ``[target]`` (empty on test).
    """
    if category not in FASHIONIQ_CATEGORIES:
        raise ValueError(f"unknown FashionIQ category {category!r}; expected one of {FASHIONIQ_CATEGORIES}")
    root = Path(root)
    split_file = root / "image_splits" / f"split.{category}.{split}.json"
    captions_file = root / "captions" / f"cap.{category}.{split}.json"
    names = load_json(split_file, "image split file")
    expect(names, list, split_file, "<root>")
    for i, name in enumerate(names):
        expect(name, str, split_file, f"[{i}]")
    if not names:
        raise DatasetFormatError(split_file, "lists no images")

    queries = _read_queries(captions_file, set(names), has_targets=split != "test")
    folder = Path(images_dir) if images_dir is not None else root / "images"
    hint = f"Pass images_dir= the folder with FashionIQ's {{asin}}.png / .jpg files (tried {folder})."
    rules = [lambda name, suffix=suffix: folder / f"{name}{suffix}" for suffix in _SUFFIXES]
    rule = pick_layout(rules, names[0], split_file, hint, required=check_images)
    paths = [rule(name) for name in names]
    if check_images:
        check_all_exist(paths, split_file, hint)
    return ComposedDataset(paths, list(names), queries, name=f"fashioniq-{category}", split=split)


def read_fashioniq_all(
    root: str | Path, split: str = "val", *, images_dir: str | Path | None = None, check_images: bool = True
) -> dict[str, ComposedDataset]:
    """Read the three FashionIQ categories; results are reported per category and then averaged."""
    return {
        category: read_fashioniq(root, category, split, images_dir=images_dir, check_images=check_images)
        for category in FASHIONIQ_CATEGORIES
    }


def _read_queries(path: Path, gallery: set[str], has_targets: bool) -> list[ComposedQuery]:
    records = load_json(path, "caption file")
    expect(records, list, path, "<root>")
    queries = []
    for i, record in enumerate(records):
        where = f"[{i}]"
        reference = get(record, "candidate", str, path, where)
        captions = get_str_list(record, "captions", path, where)
        if len(captions) != 2:
            raise DatasetFormatError(
                path, f"expected 2 captions, got {len(captions)}", field=f"{where}.captions"
            )
        targets: list[str] = []
        if has_targets:
            target = get(record, "target", str, path, where)
            if target not in gallery:
                raise DatasetFormatError(
                    path, f"target {target!r} is not in the category's image split", field=f"{where}.target"
                )
            targets = [target]
        extra = {"captions": captions, "caption_reversed": join_fashioniq_captions(captions[1], captions[0])}
        queries.append(ComposedQuery(reference, join_fashioniq_captions(*captions), targets, extra=extra))
    return queries
