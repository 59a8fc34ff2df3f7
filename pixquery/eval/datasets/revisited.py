"""Reader for the revisited Oxford and Paris landmark sets (Radenovic et al. CVPR 2018).

Layout (as ``filipradenovic/revisitop`` ``python/download.py`` leaves it)::

    roxford5k/gnd_roxford5k.pkl   {"imlist": [...], "qimlist": [...],
                                   "gnd": [{"bbx": [x1, y1, x2, y2], "easy": [...], "hard": [...],
                                            "junk": [...]}, ...]}
    roxford5k/jpg/all_souls_000000.jpg ...

``gnd`` indices refer to positions in ``imlist``; query images live in the same ``jpg/`` folder. Query
cropping to ``bbx`` is left to the caller (the protocol crops queries; ``query_bbx`` carries the box).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from pixquery.eval.datasets._fields import expect, require_file, type_name
from pixquery.eval.datasets._paths import check_all_exist
from pixquery.eval.datasets.base import DatasetFormatError, InstanceDataset

REVISITED_NAMES = ("roxford5k", "rparis6k")
_GND_KEYS = ("easy", "hard", "junk")
# Unpickling runs arbitrary code on request, so only the classes a ground-truth file can legitimately hold
# (numpy arrays and scalars, under their numpy 1.x and 2.x module names) may be constructed.
_ALLOWED_CLASSES = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("copy_reg", "_reconstructor"),
    ("copyreg", "_reconstructor"),
}


class _GroundTruthUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_CLASSES:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: not part of a ground-truth file")
        return super().find_class(module, name)


def read_revisited(
    root: str | Path,
    name: str | None = None,
    *,
    images_dir: str | Path | None = None,
    check_images: bool = True,
) -> InstanceDataset:
    """Read rOxford5k or rParis6k.

    Args:
        root: folder holding ``gnd_{name}.pkl``.
        name: ``"roxford5k"`` or ``"rparis6k"``; found from the ``gnd_*.pkl`` file present if omitted.
        images_dir: image folder; ``root/jpg`` by default.
        check_images: verify that every database and query image exists.

    Returns:
        An `InstanceDataset` whose ``gnd`` holds int64 arrays ``easy``/``hard``/``junk`` per query.
    """
    root = Path(root)
    path = _gnd_file(root, name)
    dataset_name = path.stem.removeprefix("gnd_")
    data = _load_pickle(path)
    expect(data, dict, path, "<root>")
    imlist = _names(data, "imlist", path)
    qimlist = _names(data, "qimlist", path)
    if "gnd" not in data:
        raise DatasetFormatError(path, "missing", field="gnd")
    entries = expect(data["gnd"], list, path, "gnd")
    if len(entries) != len(qimlist):
        raise DatasetFormatError(path, f"has {len(entries)} entries for {len(qimlist)} queries", field="gnd")

    gnd = []
    boxes = np.zeros((len(entries), 4), dtype=np.float64)
    for i, entry in enumerate(entries):
        expect(entry, dict, path, f"gnd[{i}]")
        gnd.append({key: _indices(entry, key, len(imlist), path, f"gnd[{i}]") for key in _GND_KEYS})
        boxes[i] = _box(entry, path, f"gnd[{i}]")

    folder = Path(images_dir) if images_dir is not None else root / "jpg"
    gallery_paths = [folder / f"{n}.jpg" for n in imlist]
    query_paths = [folder / f"{n}.jpg" for n in qimlist]
    if check_images:
        check_all_exist(
            gallery_paths + query_paths, path, f"Pass images_dir= the folder with the .jpg files ({folder})."
        )
    return InstanceDataset(
        gallery_paths, query_paths, boxes, gnd, gallery_names=imlist, query_names=qimlist, name=dataset_name
    )


def _gnd_file(root: Path, name: str | None) -> Path:
    if name is not None:
        if name not in REVISITED_NAMES:
            raise ValueError(f"unknown revisited dataset {name!r}; expected one of {REVISITED_NAMES}")
        return require_file(root / f"gnd_{name}.pkl", "ground-truth file")
    if not root.is_dir():
        raise DatasetFormatError(root, "dataset directory not found")
    found = [root / f"gnd_{n}.pkl" for n in REVISITED_NAMES if (root / f"gnd_{n}.pkl").is_file()]
    if len(found) != 1:
        problem = (
            "no ground-truth file gnd_roxford5k.pkl or gnd_rparis6k.pkl" if not found else "several files"
        )
        raise DatasetFormatError(root, f"{problem}; pass name=")
    return found[0]


def _load_pickle(path: Path) -> Any:
    try:
        with path.open("rb") as handle:
            # latin1 lets pickles written by Python 2 load their byte strings.
            return _GroundTruthUnpickler(handle, encoding="latin1").load()
    except Exception as exc:  # any failure to decode the file, whatever its kind, means a malformed file
        raise DatasetFormatError(path, f"not a readable ground-truth pickle ({exc})") from exc


def _names(data: dict, key: str, path: Path) -> list[str]:
    if key not in data:
        raise DatasetFormatError(path, "missing", field=key)
    values = data[key]
    if isinstance(values, np.ndarray):
        values = values.tolist()
    expect(values, list, path, key)
    for i, value in enumerate(values):
        expect(value, str, path, f"{key}[{i}]")
    return list(values)


def _indices(entry: dict, key: str, n_images: int, path: Path, where: str) -> np.ndarray:
    field = f"{where}.{key}"
    if key not in entry:
        raise DatasetFormatError(path, "missing", field=field)
    raw = entry[key]
    values = np.asarray(raw).reshape(-1) if isinstance(raw, (list, tuple, np.ndarray)) else None
    if values is None or (values.size and not np.issubdtype(values.dtype, np.integer)):
        raise DatasetFormatError(path, f"expected a list of image indices, got {type_name(raw)}", field=field)
    values = values.astype(np.int64)
    if values.size and (values.min() < 0 or values.max() >= n_images):
        raise DatasetFormatError(path, f"index outside imlist (0..{n_images - 1})", field=field)
    return values


def _box(entry: dict, path: Path, where: str) -> np.ndarray:
    field = f"{where}.bbx"
    if "bbx" not in entry:
        raise DatasetFormatError(path, "missing", field=field)
    raw = entry["bbx"]
    try:
        box = np.asarray(raw, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        box = np.empty(0)
    if box.shape != (4,):
        raise DatasetFormatError(path, f"expected 4 numbers [x1, y1, x2, y2], got {raw!r}", field=field)
    return box
