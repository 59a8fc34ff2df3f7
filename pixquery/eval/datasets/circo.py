"""Reader for CIRCO (Composed Image Retrieval on Common Objects in context, Baldrati et al. ICCV 2023).

Layout of the official repository (github.com/miccunifi/CIRCO)::

    CIRCO/annotations/{val,test}.json     [{"id", "reference_img_id", "target_img_id", "relative_caption",
                                            "shared_concept", "gt_img_ids", "semantic_aspects"}, ...]
    CIRCO/COCO2017_unlabeled/annotations/image_info_unlabeled2017.json   (optional; fixes gallery order)
    CIRCO/COCO2017_unlabeled/unlabeled2017/000000243611.jpg ...          (12-digit zero-padded COCO ids)

The gallery is the whole COCO 2017 unlabeled set; names are the decimal image ids as strings ("243611"), the
form the CIRCO server expects in submissions. ``target_img_id``, ``gt_img_ids`` and ``semantic_aspects`` are
absent from the test split, whose queries come back with empty targets.
"""

from __future__ import annotations

from pathlib import Path

from pixquery.eval.datasets._fields import expect, get, load_json, require_dir
from pixquery.eval.datasets._paths import check_all_exist
from pixquery.eval.datasets.base import ComposedDataset, ComposedQuery, DatasetFormatError

_COCO_DIR = "COCO2017_unlabeled"


def read_circo(
    root: str | Path,
    split: str = "val",
    *,
    images_dir: str | Path | None = None,
    check_images: bool = True,
) -> ComposedDataset:
    """Read one CIRCO split.

    Args:
        root: the CIRCO folder (holding ``annotations/``).
        split: ``"val"`` or ``"test"``.
        images_dir: the ``unlabeled2017`` image folder; by default ``root/COCO2017_unlabeled/unlabeled2017``.
        check_images: verify that every gallery image exists (and that references and ground truths are in
            the gallery).

    Returns:
        A `ComposedDataset`: gallery = every unlabeled2017 image (in ``image_info_unlabeled2017.json``
        order if that file is present, else sorted by id); each query has ``targets`` = ``gt_img_ids`` as
        strings (``target_img_id`` first, as in the file), ``subset=None`` and ``extra`` with ``id``,
        ``target_img_id``, ``shared_concept`` and ``semantic_aspects``.
    """
    root = Path(root)
    annotation = root / "annotations" / f"{split}.json"
    folder = Path(images_dir) if images_dir is not None else root / _COCO_DIR / "unlabeled2017"
    info_file = root / _COCO_DIR / "annotations" / "image_info_unlabeled2017.json"

    queries = _read_queries(annotation, has_targets=split != "test")
    if info_file.is_file():
        gallery_names, gallery_paths = _gallery_from_info(info_file, folder)
    else:
        gallery_names, gallery_paths = _gallery_from_folder(folder)
    if check_images:
        check_all_exist(gallery_paths, info_file if info_file.is_file() else folder, "Check images_dir.")
        _check_in_gallery(queries, set(gallery_names), annotation)
    return ComposedDataset(gallery_paths, gallery_names, queries, name="circo", split=split)


def _read_queries(path: Path, has_targets: bool) -> list[ComposedQuery]:
    records = load_json(path)
    expect(records, list, path, "<root>")
    queries = []
    for i, record in enumerate(records):
        where = f"[{i}]"
        reference = get(record, "reference_img_id", int, path, where)
        extra: dict[str, object] = {
            "id": get(record, "id", int, path, where),
            "shared_concept": get(record, "shared_concept", str, path, where),
        }
        targets: list[str] = []
        if has_targets:
            target = get(record, "target_img_id", int, path, where)
            gt_ids = get(record, "gt_img_ids", list, path, where)
            for j, gt in enumerate(gt_ids):
                expect(gt, int, path, f"{where}.gt_img_ids[{j}]")
            if not gt_ids:
                raise DatasetFormatError(path, "empty list", field=f"{where}.gt_img_ids")
            targets = [str(gt) for gt in gt_ids]
            extra["target_img_id"] = str(target)
        if "semantic_aspects" in record:
            extra["semantic_aspects"] = list(get(record, "semantic_aspects", list, path, where))
        caption = get(record, "relative_caption", str, path, where)
        queries.append(ComposedQuery(str(reference), caption, targets, subset=None, extra=extra))
    return queries


def _gallery_from_info(info_file: Path, folder: Path) -> tuple[list[str], list[Path]]:
    info = load_json(info_file, "COCO image info file")
    images = get(info, "images", list, info_file, "")
    names, paths = [], []
    for i, image in enumerate(images):
        names.append(str(get(image, "id", int, info_file, f"images[{i}]")))
        paths.append(folder / get(image, "file_name", str, info_file, f"images[{i}]"))
    return names, paths


def _gallery_from_folder(folder: Path) -> tuple[list[str], list[Path]]:
    require_dir(folder, "COCO unlabeled2017 image folder")
    found = []
    for path in folder.iterdir():
        # COCO names its files with the 12-digit zero-padded image id; anything else is not part of the set.
        if path.suffix.lower() == ".jpg" and path.stem.isdigit():
            found.append((int(path.stem), path))
    if not found:
        raise DatasetFormatError(folder, "holds no COCO images named like 000000243611.jpg")
    found.sort()
    return [str(image_id) for image_id, _ in found], [path for _, path in found]


def _check_in_gallery(queries: list[ComposedQuery], gallery: set[str], path: Path) -> None:
    for i, query in enumerate(queries):
        if query.reference not in gallery:
            raise DatasetFormatError(
                path, f"image {query.reference} is not in the gallery", field=f"[{i}].reference_img_id"
            )
        for j, target in enumerate(query.targets):
            if target not in gallery:
                raise DatasetFormatError(
                    path, f"image {target} is not in the gallery", field=f"[{i}].gt_img_ids[{j}]"
                )
