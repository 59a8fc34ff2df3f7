"""Reader for CIRR (Composed Image Retrieval on Real-life images, Liu et al. ICCV 2021).

Layout of the official annotation branch (github.com/Cuberick-Orion/CIRR)::

    cirr/captions/cap.rc2.{train,val,test1}.json      [{"pairid", "reference", "target_hard", "target_soft",
                                                        "caption", "img_set": {"id", "members", ...}}, ...]
    cirr/image_splits/split.rc2.{train,val,test1}.json  {"dev-190-0-img0": "./dev/dev-190-0-img0.png", ...}
    cirr/img_raw/{train/<n>,dev,test1}/*.png          (the NLVR2 raw images)

Image paths in the split file are relative to ``img_raw``; SEARLE-style setups instead keep ``dev/`` and
``test1/`` next to the ``cirr/`` folder, so both places are tried. The test split ("test" or "test1") has no
``target_hard``: its queries come back with empty targets, for writing server submissions.
"""

from __future__ import annotations

from pathlib import Path

from pixquery.eval.datasets._fields import expect, get, get_str_list, load_json
from pixquery.eval.datasets._paths import check_all_exist, pick_layout
from pixquery.eval.datasets.base import ComposedDataset, ComposedQuery, DatasetFormatError

_VERSION = "rc2"


def read_cirr(
    root: str | Path,
    split: str = "val",
    *,
    images_dir: str | Path | None = None,
    check_images: bool = True,
) -> ComposedDataset:
    """Read one CIRR split.

    Args:
        root: the ``cirr`` folder (holding ``captions/`` and ``image_splits/``) or its parent.
        split: ``"train"``, ``"val"`` or ``"test"`` (alias of ``"test1"``).
        images_dir: folder the split file's ``./dev/...`` paths are relative to; by default
            ``cirr/img_raw``, ``cirr`` or the parent of ``cirr``, whichever holds the first image.
        check_images: verify that every gallery image exists.

    Returns:
        A `ComposedDataset` whose gallery is the split file's images (in file order) and whose queries carry
        ``targets=[target_hard]`` (empty on test), ``subset`` = the ``img_set`` members, and ``extra`` with
        ``pairid``, ``target_soft`` and ``img_set_id``.
    """
    split = "test1" if split == "test" else split
    ann_root = _annotation_root(Path(root))
    captions_file = ann_root / "captions" / f"cap.{_VERSION}.{split}.json"
    split_file = ann_root / "image_splits" / f"split.{_VERSION}.{split}.json"

    name_to_rel = load_json(split_file, "image split file")
    expect(name_to_rel, dict, split_file, "<root>")
    gallery_names = list(name_to_rel)
    if not gallery_names:
        raise DatasetFormatError(split_file, "lists no images")
    for name in gallery_names:
        expect(name_to_rel[name], str, split_file, name)

    queries = _read_queries(captions_file, split, set(gallery_names))
    gallery_paths = _resolve_images(name_to_rel, ann_root, images_dir, split_file, check_images)
    return ComposedDataset(gallery_paths, gallery_names, queries, name="cirr", split=split)


def _annotation_root(root: Path) -> Path:
    """Accept both the ``cirr`` folder itself and the folder that contains it."""
    if (root / "captions").is_dir() or not (root / "cirr").is_dir():
        return root
    return root / "cirr"


def _read_queries(path: Path, split: str, gallery: set[str]) -> list[ComposedQuery]:
    records = load_json(path, "caption file")
    expect(records, list, path, "<root>")
    has_targets = split != "test1"
    queries = []
    for i, record in enumerate(records):
        where = f"[{i}]"
        reference = get(record, "reference", str, path, where)
        caption = get(record, "caption", str, path, where)
        img_set = get(record, "img_set", dict, path, where)
        members = get_str_list(img_set, "members", path, f"{where}.img_set")
        targets: list[str] = []
        if has_targets:
            target = get(record, "target_hard", str, path, where)
            if target not in gallery:
                raise DatasetFormatError(
                    path, f"target {target!r} is not in the split's image list", field=f"{where}.target_hard"
                )
            targets = [target]
        if reference not in gallery:
            raise DatasetFormatError(
                path, f"reference {reference!r} is not in the split's image list", field=f"{where}.reference"
            )
        extra = {
            "pairid": get(record, "pairid", int, path, where),
            "img_set_id": img_set.get("id"),
        }
        if "target_soft" in record:
            extra["target_soft"] = get(record, "target_soft", dict, path, where)
        queries.append(ComposedQuery(reference, caption, targets, subset=members, extra=extra))
    return queries


def _resolve_images(
    name_to_rel: dict[str, str], ann_root: Path, images_dir: str | Path | None, split_file: Path, check: bool
) -> list[Path]:
    hint = "Pass images_dir= the folder the split file's './dev/...' paths are relative to (CIRR's img_raw)."
    bases = (
        [Path(images_dir)] if images_dir is not None else [ann_root / "img_raw", ann_root, ann_root.parent]
    )
    rules = [lambda rel, base=base: base / rel for base in bases]
    relative = list(name_to_rel.values())
    rule = pick_layout(rules, relative[0], split_file, hint, required=check)
    paths = [rule(rel) for rel in relative]
    if check:
        check_all_exist(paths, split_file, hint)
    return paths
