"""Validated access to annotation files, so every reader reports problems the same way.

Each helper raises `DatasetFormatError` naming the file and a field path such as ``[12].img_set.members``,
which is what a user needs to find the broken entry in a multi-megabyte JSON file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pixquery.eval.datasets.base import DatasetFormatError

# Lower-case suffixes accepted as images wherever a reader lists a folder.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"})


def type_name(value: object) -> str:
    """Name a value's type the way JSON users think of it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def require_file(path: Path, what: str) -> Path:
    """Return `path` if it is a file, else raise saying which `what` (e.g. "caption file") is missing."""
    if not path.is_file():
        raise DatasetFormatError(path, f"{what} not found")
    return path


def require_dir(path: Path, what: str) -> Path:
    """Return `path` if it is a directory, else raise saying which `what` is missing."""
    if not path.is_dir():
        raise DatasetFormatError(path, f"{what} not found (expected a directory)")
    return path


def load_json(path: Path, what: str = "annotation file") -> Any:
    """Read a JSON file, turning a missing file or a syntax error into a `DatasetFormatError`."""
    require_file(path, what)
    try:
        with path.open(encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as exc:
        raise DatasetFormatError(
            path, f"not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from exc
    except UnicodeDecodeError as exc:
        raise DatasetFormatError(path, f"not UTF-8 text ({exc.reason})") from exc


def expect(value: Any, kind: type | tuple[type, ...], path: Path, field: str) -> Any:
    """Return `value` if it is of `kind`, else raise naming `field`.

    Booleans are refused where numbers are expected: JSON ``true`` is never a valid id or count.
    """
    kinds = kind if isinstance(kind, tuple) else (kind,)
    wrong_bool = isinstance(value, bool) and bool not in kinds
    if wrong_bool or not isinstance(value, kinds):
        wanted = " or ".join(sorted({_kind_label(k) for k in kinds}))
        raise DatasetFormatError(path, f"expected {wanted}, got {type_name(value)}", field=field)
    return value


def get(entry: Any, key: str, kind: type | tuple[type, ...], path: Path, where: str) -> Any:
    """Return ``entry[key]`` checked against `kind`; `where` is the entry's own field path (e.g. ``[3]``)."""
    expect(entry, dict, path, where or "<root>")
    field = f"{where}.{key}" if where else key
    if key not in entry:
        raise DatasetFormatError(path, "missing", field=field)
    return expect(entry[key], kind, path, field)


def get_str_list(entry: Any, key: str, path: Path, where: str) -> list[str]:
    """Return ``entry[key]`` checked to be a list of strings."""
    values = get(entry, key, list, path, where)
    field = f"{where}.{key}" if where else key
    for i, value in enumerate(values):
        expect(value, str, path, f"{field}[{i}]")
    return list(values)


def _kind_label(kind: type) -> str:
    labels = {str: "string", int: "integer", float: "number", bool: "boolean", list: "list", dict: "object"}
    return labels.get(kind, kind.__name__)
