"""Metadata filters: a dict of conditions compiled to one SQL WHERE clause over the catalog's `files` table.

The engine turns the clause into the set of allowed catalog ids (`Catalog.select_ids`) and hands it to
`VectorStore.search(..., allowed_ids=...)`, so a selective filter still returns k results from inside the
allowed set instead of k results of which most are then dropped. User values only ever travel as bound
parameters; the SQL text is built from this module's constants alone.

Filter keys (all optional, combined with AND):

    folder        "PATH" or ["PATH", ...]: files in the folder or below it (any of the listed folders)
    glob          "PATTERN" or [...]: shell pattern on the path; a pattern without "/" matches the file name
    taken_from    "YYYY", "YYYY-MM", "YYYY-MM-DD" or a full ISO datetime: taken at or after its start
    taken_to      same forms: taken at or before its end ("2021" includes all of 2021)
    camera_make   "NAME" or [...]: equal, ignoring case and surrounding spaces
    camera_model  "NAME" or [...]: equal, ignoring case and surrounding spaces
    ext           "jpg" or ["jpg", "png", ...]: file type by extension (jpg and jpeg are the same type)
    min_width, max_width, min_height, max_height: pixel bounds (inclusive)
    tags          "LABEL" or [...]: files carrying every listed tag (from `pixquery.tasks` taggers)
    any_tags      [...]: files carrying at least one of the listed tags
    min_tag_score number: only tags scored at least this count for `tags` and `any_tags`
    has_gps       true / false
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from pixquery.errors import QueryError

EXT_ALIASES: dict[str, tuple[str, ...]] = {
    "jpg": ("jpg", "jpeg", "jpe"),
    "jpeg": ("jpg", "jpeg", "jpe"),
    "tif": ("tif", "tiff"),
    "tiff": ("tif", "tiff"),
    "heic": ("heic", "heif"),
    "heif": ("heic", "heif"),
}


@dataclass(frozen=True)
class CompiledFilter:
    """A WHERE clause over `files` and its bound parameters; `where` is "1" when nothing is filtered."""

    where: str
    params: tuple[Any, ...]

    @property
    def empty(self) -> bool:
        """True when the filter lets every file through."""
        return self.where == "1"


def _as_list(key: str, value: Any, kind: type = str) -> list[Any]:
    values = value if isinstance(value, list | tuple) else [value]
    if not values:
        raise QueryError(f"filter {key!r} is an empty list")
    for v in values:
        if not isinstance(v, kind) or isinstance(v, bool) or (kind is str and not v.strip()):
            raise QueryError(f"filter {key!r} expects {'text' if kind is str else kind.__name__} values, got {v!r}")
    return list(values)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _folder(key: str, value: Any) -> tuple[str, list[Any]]:
    parts, params = [], []
    for folder in _as_list(key, value):
        # abspath, not resolve(): the catalog keeps paths as discovered, symlinks included.
        root = os.path.abspath(os.path.expanduser(folder)).rstrip(os.sep) or os.sep
        parts.append("(folder = ? OR folder LIKE ? ESCAPE '\\')")
        params += [root, _escape_like(root.rstrip(os.sep)) + os.sep + "%"]
    return "(" + " OR ".join(parts) + ")", params


def _glob(key: str, value: Any) -> tuple[str, list[Any]]:
    parts, params = [], []
    for pattern in _as_list(key, value):
        parts.append("path GLOB ?")
        params.append(pattern if "/" in pattern else "*/" + pattern)
    return "(" + " OR ".join(parts) + ")", params


_DATE_FORMS = (
    (re.compile(r"^\d{4}$"), "year"),
    (re.compile(r"^\d{4}-\d{2}$"), "month"),
    (re.compile(r"^\d{4}-\d{2}-\d{2}$"), "day"),
)


def date_bounds(text: str) -> tuple[str, str | None]:
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
    except ValueError:
        raise QueryError(
            f"cannot read the date {text!r}: use YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS"
        ) from None


def _taken_from(key: str, value: Any) -> tuple[str, list[Any]]:
    start, _ = date_bounds(_as_list(key, value)[0])
    return "(taken_at IS NOT NULL AND taken_at >= ?)", [start]


def _taken_to(key: str, value: Any) -> tuple[str, list[Any]]:
    start, end = date_bounds(_as_list(key, value)[0])
    if end is None:
        return "(taken_at IS NOT NULL AND taken_at <= ?)", [start]
    return "(taken_at IS NOT NULL AND taken_at < ?)", [end]


def _text_equal(column: str) -> Callable[[str, Any], tuple[str, list[Any]]]:
    def build(key: str, value: Any) -> tuple[str, list[Any]]:
        names = [v.strip().lower() for v in _as_list(key, value)]
        marks = ",".join("?" * len(names))
        return f"(lower(trim({column})) IN ({marks}))", names

    return build


def _ext(key: str, value: Any) -> tuple[str, list[Any]]:
    exts: list[str] = []
    for e in _as_list(key, value):
        e = e.strip().lower().lstrip(".")
        for alias in EXT_ALIASES.get(e, (e,)):
            if alias not in exts:
                exts.append(alias)
    return f"(ext IN ({','.join('?' * len(exts))}))", exts


def _bound(column: str, op: str) -> Callable[[str, Any], tuple[str, list[Any]]]:
    def build(key: str, value: Any) -> tuple[str, list[Any]]:
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise QueryError(f"filter {key!r} expects a non-negative number of pixels, got {value!r}")
        return f"({column} IS NOT NULL AND {column} {op} ?)", [int(value)]

    return build


def _has_gps(key: str, value: Any) -> tuple[str, list[Any]]:
    if not isinstance(value, bool):
        raise QueryError(f"filter {key!r} expects true or false, got {value!r}")
    clause = "(gps_lat IS NOT NULL AND gps_lon IS NOT NULL)" if value else "(gps_lat IS NULL OR gps_lon IS NULL)"
    return clause, []


def _tag_exists(min_score: float | None) -> tuple[str, list[Any]]:
    score = " AND t.score >= ?" if min_score is not None else ""
    return f"EXISTS (SELECT 1 FROM tags t WHERE t.file_id = files.id AND t.label = ?{score})", (
        [min_score] if min_score is not None else []
    )


def _tags(filters: dict[str, Any]) -> tuple[list[str], list[Any]]:
    min_score = filters.get("min_tag_score")
    if min_score is not None and (isinstance(min_score, bool) or not isinstance(min_score, int | float)):
        raise QueryError(f"filter 'min_tag_score' expects a number, got {min_score!r}")
    clauses: list[str] = []
    params: list[Any] = []
    exists, score_params = _tag_exists(min_score)
    if "tags" in filters:
        for label in _as_list("tags", filters["tags"]):
            clauses.append(exists)
            params += [label.strip(), *score_params]
    if "any_tags" in filters:
        labels = _as_list("any_tags", filters["any_tags"])
        clauses.append("(" + " OR ".join([exists] * len(labels)) + ")")
        for label in labels:
            params += [label.strip(), *score_params]
    return clauses, params


BUILDERS: dict[str, Callable[[str, Any], tuple[str, list[Any]]]] = {
    "folder": _folder,
    "glob": _glob,
    "taken_from": _taken_from,
    "taken_to": _taken_to,
    "camera_make": _text_equal("camera_make"),
    "camera_model": _text_equal("camera_model"),
    "ext": _ext,
    "min_width": _bound("width", ">="),
    "max_width": _bound("width", "<="),
    "min_height": _bound("height", ">="),
    "max_height": _bound("height", "<="),
    "has_gps": _has_gps,
}
FILTER_KEYS: tuple[str, ...] = (*BUILDERS, "tags", "any_tags", "min_tag_score")


def compile_filters(filters: dict[str, Any] | None) -> CompiledFilter:
    """Compile a filter dict (keys in the module docstring) to a WHERE clause; `QueryError` on unknown keys/values.

    None values are treated as absent, so a form can send every field.
    """
    filters = {k: v for k, v in (filters or {}).items() if v is not None}
    unknown = sorted(set(filters) - set(FILTER_KEYS))
    if unknown:
        raise QueryError(f"unknown filter {', '.join(map(repr, unknown))}; known filters: {', '.join(FILTER_KEYS)}")
    clauses: list[str] = []
    params: list[Any] = []
    for key, build in BUILDERS.items():
        if key in filters:
            clause, values = build(key, filters[key])
            clauses.append(clause)
            params += values
    tag_clauses, tag_params = _tags(filters)
    clauses += tag_clauses
    params += tag_params
    if not clauses:
        return CompiledFilter("1", ())
    return CompiledFilter(" AND ".join(clauses), tuple(params))
