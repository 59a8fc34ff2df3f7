"""Metadata filters: a user's dict of conditions, checked and turned into a `Filter` value for the catalog.

The engine asks the catalog for the allowed catalog ids (`Catalog.select_ids(filter)`, which alone writes SQL) and
hands them to `VectorStore.search(..., allowed_ids=...)`, so a selective filter still returns k results from inside
the allowed set instead of k results of which most are then dropped.

Filter keys (all optional, combined with AND):

    folder        "PATH" or ["PATH", ...]: files in the folder or below it (any of the listed folders)
    glob          "PATTERN" or [...]: shell pattern on the path; a pattern without "/" matches the file name
    taken_from    "YYYY", "YYYY-MM", "YYYY-MM-DD" or a full ISO datetime: taken at or after its start
    taken_to      same forms: taken at or before its end ("2021" includes all of 2021)
    camera_make   "NAME" or [...]: equal, ignoring case and surrounding spaces
    camera_model  "NAME" or [...]: equal, ignoring case and surrounding spaces
    ext           "jpg" or ["jpg", "png", ...]: file type by extension (jpg and jpeg are the same type)
    min_width, max_width, min_height, max_height: pixel bounds (inclusive)
    tags          "LABEL" or [...]: files carrying every listed tag (from `pixquery.organize` taggers)
    any_tags      [...]: files carrying at least one of the listed tags
    min_tag_score number: only tags scored at least this count for `tags` and `any_tags`
    has_gps       true / false
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

from pixquery.errors import QueryError
from pixquery.store.where import (
    Condition,
    ExtIn,
    Filter,
    FolderUnder,
    HasGps,
    PathGlob,
    PixelBound,
    Tagged,
    TakenBefore,
    TakenFrom,
    TextIn,
)

EXT_ALIASES: dict[str, tuple[str, ...]] = {
    "jpg": ("jpg", "jpeg", "jpe"),
    "jpeg": ("jpg", "jpeg", "jpe"),
    "tif": ("tif", "tiff"),
    "tiff": ("tif", "tiff"),
    "heic": ("heic", "heif"),
    "heif": ("heic", "heif"),
}
MAX_VALUES = 100
"""Most values one filter key may list."""
MAX_VALUE_CHARS = 4096
"""Longest text one filter value may be (a folder path, a pattern, a label)."""


def _fail(key: str, message: str) -> QueryError:
    return QueryError(f"filter {key!r} {message}", field=f"filters.{key}")


def _as_list(key: str, value: Any, kind: type = str) -> list[Any]:
    values = value if isinstance(value, list | tuple) else [value]
    if not values:
        raise _fail(key, "is an empty list")
    if len(values) > MAX_VALUES:
        raise _fail(key, f"lists {len(values)} values; the limit is {MAX_VALUES}")
    for v in values:
        if not isinstance(v, kind) or isinstance(v, bool) or (kind is str and not v.strip()):
            raise _fail(key, f"expects {'text' if kind is str else kind.__name__} values, got {v!r}")
        if kind is str and len(v) > MAX_VALUE_CHARS:
            raise _fail(key, f"has a value of {len(v)} characters; the limit is {MAX_VALUE_CHARS}")
    return list(values)


def _folder(key: str, value: Any) -> Condition:
    # abspath, not resolve(): the catalog keeps paths as discovered, symlinks included.
    roots = (os.path.abspath(os.path.expanduser(f)).rstrip(os.sep) or os.sep for f in _as_list(key, value))
    return FolderUnder(tuple(roots))


def _glob(key: str, value: Any) -> Condition:
    return PathGlob(tuple(p if "/" in p else "*/" + p for p in _as_list(key, value)))


_DATE_FORMS = (
    (re.compile(r"^\d{4}$"), "year"),
    (re.compile(r"^\d{4}-\d{2}$"), "month"),
    (re.compile(r"^\d{4}-\d{2}-\d{2}$"), "day"),
)


def date_bounds(text: str, key: str = "date") -> tuple[str, str | None]:
    """(start, end) of a partial ISO date as comparable strings; end is exclusive, or None for a full datetime.

    "2021" -> ("2021-01-01", "2022-01-01"); "2021-06-01T10:00:00" -> ("2021-06-01T10:00:00", None).
    """
    text = str(text).strip()
    try:
        for pattern, unit in _DATE_FORMS:
            if not pattern.match(text):
                continue
            if unit == "year":
                start = date(int(text), 1, 1)
                return start.isoformat(), date(start.year + 1, 1, 1).isoformat()
            if unit == "month":
                year, month = (int(p) for p in text.split("-"))
                start = date(year, month, 1)
                nxt = date(year + month // 12, month % 12 + 1, 1)
                return start.isoformat(), nxt.isoformat()
            start = date.fromisoformat(text)
            return start.isoformat(), (start + timedelta(days=1)).isoformat()
        return datetime.fromisoformat(text).isoformat(), None
    except (ValueError, OverflowError):
        raise QueryError(
            f"cannot read the date {text[:40]!r}: use YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS",
            field=f"filters.{key}",
        ) from None


def _taken_from(key: str, value: Any) -> Condition:
    start, _ = date_bounds(_as_list(key, value)[0], key)
    return TakenFrom(start)


def _taken_to(key: str, value: Any) -> Condition:
    start, end = date_bounds(_as_list(key, value)[0], key)
    return TakenBefore(start, inclusive=True) if end is None else TakenBefore(end)


def _text_equal(column: str) -> Callable[[str, Any], Condition]:
    def build(key: str, value: Any) -> Condition:
        return TextIn(column, tuple(v.strip().lower() for v in _as_list(key, value)))

    return build


def _ext(key: str, value: Any) -> Condition:
    exts: list[str] = []
    for e in _as_list(key, value):
        e = e.strip().lower().lstrip(".")
        for alias in EXT_ALIASES.get(e, (e,)):
            if alias not in exts:
                exts.append(alias)
    return ExtIn(tuple(exts))


def _bound(column: str, at_least: bool) -> Callable[[str, Any], Condition]:
    def build(key: str, value: Any) -> Condition:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
            raise _fail(key, f"expects a non-negative number of pixels, got {value!r}")
        return PixelBound(column, int(min(value, 2**62)), at_least)

    return build


def _has_gps(key: str, value: Any) -> Condition:
    if not isinstance(value, bool):
        raise _fail(key, f"expects true or false, got {value!r}")
    return HasGps(value)


def _tags(filters: dict[str, Any]) -> list[Condition]:
    min_score = filters.get("min_tag_score")
    if min_score is not None and (
        isinstance(min_score, bool) or not isinstance(min_score, int | float) or not math.isfinite(min_score)
    ):
        raise _fail("min_tag_score", f"expects a number, got {min_score!r}")
    score = float(min_score) if min_score is not None else None
    out: list[Condition] = []
    if "tags" in filters:
        out.append(Tagged(tuple(t.strip() for t in _as_list("tags", filters["tags"])), False, score))
    if "any_tags" in filters:
        out.append(Tagged(tuple(t.strip() for t in _as_list("any_tags", filters["any_tags"])), True, score))
    return out


BUILDERS: dict[str, Callable[[str, Any], Condition]] = {
    "folder": _folder,
    "glob": _glob,
    "taken_from": _taken_from,
    "taken_to": _taken_to,
    "camera_make": _text_equal("camera_make"),
    "camera_model": _text_equal("camera_model"),
    "ext": _ext,
    "min_width": _bound("width", True),
    "max_width": _bound("width", False),
    "min_height": _bound("height", True),
    "max_height": _bound("height", False),
    "has_gps": _has_gps,
}
FILTER_KEYS: tuple[str, ...] = (*BUILDERS, "tags", "any_tags", "min_tag_score")


def compile_filters(filters: dict[str, Any] | None) -> Filter:
    """Check a filter dict (keys in the module docstring) and turn it into a `Filter`; `QueryError` names the key.

    None values are treated as absent, so a form can send every field.
    """
    if filters is not None and not isinstance(filters, dict):
        raise QueryError("filters must be an object of filter keys", field="filters")
    filters = {k: v for k, v in (filters or {}).items() if v is not None}
    unknown = sorted(set(filters) - set(FILTER_KEYS))
    if unknown:
        shown = ", ".join(repr(str(k)[:40]) for k in unknown[:5])
        raise QueryError(f"unknown filter {shown}; known filters: {', '.join(FILTER_KEYS)}",
                         field=f"filters.{str(unknown[0])[:40]}")
    conditions = [build(key, filters[key]) for key, build in BUILDERS.items() if key in filters]
    return Filter(tuple(conditions + _tags(filters)))
