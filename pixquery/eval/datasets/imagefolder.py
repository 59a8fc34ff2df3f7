"""Reader for ImageNet-style class folders: ``root/<class folder>/**/*.jpg`` plus a class-name list.

Labels follow the sorted class-folder names (torchvision ``ImageFolder`` order), and the class-name list is
read in that same order: line ``i`` of ``classnames.txt`` (or item ``i`` of a JSON list) names the ``i``-th
folder, e.g. ``n01440764`` -> ``tench``. A JSON object ``{"n01440764": "tench", ...}`` is also accepted and
maps by folder name. Without a class-name list the folder names themselves are the class names.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pixquery.eval.datasets._fields import IMAGE_SUFFIXES, expect, load_json, require_dir, require_file
from pixquery.eval.datasets.base import ClassificationDataset, DatasetFormatError

_CLASSNAME_FILES = ("classnames.txt", "classnames.json")


def read_imagefolder(
    root: str | Path,
    classnames: str | Path | Sequence[str] | None = None,
) -> ClassificationDataset:
    """Read a folder-per-class image classification set.

    Args:
        root: folder whose sub-folders are the classes.
        classnames: a ``.txt`` file (one name per line) or ``.json`` file (list, or object keyed by folder),
            or the names themselves; by default ``root/classnames.txt`` or ``root/classnames.json`` if
            present, else the folder names.

    Returns:
        A `ClassificationDataset` with images sorted by class then path.
    """
    root = require_dir(Path(root), "image folder")
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DatasetFormatError(root, "has no class sub-folders")
    names = _classnames(root, folders, classnames)

    image_paths: list[Path] = []
    labels: list[int] = []
    for label, folder in enumerate(folders):
        # Sorted for a reproducible order; hidden files (macOS ._ forks) are not images.
        files = sorted(
            p
            for p in (root / folder).rglob("*")
            if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()
        )
        if not files:
            raise DatasetFormatError(root / folder, "class folder holds no images")
        image_paths.extend(files)
        labels.extend([label] * len(files))
    return ClassificationDataset(image_paths, np.asarray(labels, dtype=np.int64), names, folder_names=folders)


def _classnames(root: Path, folders: list[str], given: str | Path | Sequence[str] | None) -> list[str]:
    if given is None:
        found = [root / f for f in _CLASSNAME_FILES if (root / f).is_file()]
        if not found:
            return list(folders)
        given = found[0]
    if isinstance(given, (str, Path)):
        return _classnames_from_file(Path(given), folders, root)
    names = [str(n) for n in given]
    if len(names) != len(folders):
        raise ValueError(f"{len(names)} class names given for {len(folders)} class folders in {root}")
    return names


def _classnames_from_file(path: Path, folders: list[str], root: Path) -> list[str]:
    if path.suffix.lower() == ".json":
        data = load_json(path, "class-name file")
        if isinstance(data, dict):
            for folder in folders:
                if folder not in data:
                    raise DatasetFormatError(path, "missing (a class folder has no name)", field=folder)
                expect(data[folder], str, path, folder)
            return [data[folder] for folder in folders]
        expect(data, list, path, "<root>")
        for i, name in enumerate(data):
            expect(name, str, path, f"[{i}]")
        names = list(data)
    else:
        require_file(path, "class-name file")
        lines = path.read_text(encoding="utf-8").splitlines()
        while lines and not lines[-1].strip():
            lines.pop()  # a trailing newline is not a class
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                raise DatasetFormatError(path, "empty class name", field=f"line {number}")
        names = [line.strip() for line in lines]
    if len(names) != len(folders):
        raise DatasetFormatError(
            path,
            f"lists {len(names)} class names but {root} has {len(folders)} class folders "
            "(names map to the sorted folders one by one)",
        )
    return names
