"""Conditions over the catalog's files, as values: the query layer builds them, the catalog turns them into SQL.

User values only ever travel as bound parameters; the SQL text comes from this module's constants alone, and a
column name must be one of the fixed columns below.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

TEXT_COLUMNS = ("camera_make", "camera_model")
PIXEL_COLUMNS = ("width", "height")


def _stored_bytes(text: str) -> bytes:
    """The bytes of a path as the catalog stores it (surrogate escapes are the name's own bytes)."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate no file name holds; the catalog binds it the same way
        return text.encode("utf-8", "surrogatepass")


@dataclass(frozen=True)
class FolderUnder:
    """Files in one of these folders or below (absolute paths, as the catalog keeps them)."""

    folders: tuple[str, ...]

    def sql(self) -> tuple[str, list[Any]]:
        parts, params = [], []
        for folder in self.folders:
            prefix = folder.rstrip(os.sep) + os.sep
            # A prefix comparison, not LIKE: any folder name works, however long or full of wildcard characters.
            # Compared as bytes: the catalog stores a name that is not valid UTF-8 as a BLOB of its bytes.
            parts.append("(folder = ? OR substr(CAST(folder AS BLOB), 1, ?) = CAST(? AS BLOB))")
            params += [folder, len(_stored_bytes(prefix)), prefix]
        return "(" + " OR ".join(parts) + ")", params


@dataclass(frozen=True)
class PathGlob:
    """Paths matching one of these shell patterns (SQLite GLOB: case-sensitive, `*`, `?`, `[...]`)."""

    patterns: tuple[str, ...]

    def sql(self) -> tuple[str, list[Any]]:
        return "(" + " OR ".join(["path GLOB ?"] * len(self.patterns)) + ")", list(self.patterns)


@dataclass(frozen=True)
class TakenFrom:
    """Taken at or after `start` (an ISO date or datetime string)."""

    start: str

    def sql(self) -> tuple[str, list[Any]]:
        return "(taken_at IS NOT NULL AND taken_at >= ?)", [self.start]


@dataclass(frozen=True)
class TakenBefore:
    """Taken before `end` (or at it, when `inclusive`)."""

    end: str
    inclusive: bool = False

    def sql(self) -> tuple[str, list[Any]]:
        return f"(taken_at IS NOT NULL AND taken_at {'<=' if self.inclusive else '<'} ?)", [self.end]


@dataclass(frozen=True)
class TextIn:
    """A text column equal to one of `values`, ignoring case and surrounding spaces (values given lower-cased)."""

    column: str
    values: tuple[str, ...]

    def sql(self) -> tuple[str, list[Any]]:
        if self.column not in TEXT_COLUMNS:
            raise ValueError(f"not a text column: {self.column}")
        return f"(lower(trim({self.column})) IN ({','.join('?' * len(self.values))}))", list(self.values)


@dataclass(frozen=True)
class ExtIn:
    """File extension (lower case, no dot) one of `exts`."""

    exts: tuple[str, ...]

    def sql(self) -> tuple[str, list[Any]]:
        return f"(ext IN ({','.join('?' * len(self.exts))}))", list(self.exts)


@dataclass(frozen=True)
class PixelBound:
    """`column` (width or height) at least (`at_least`) or at most `value` pixels."""

    column: str
    value: int
    at_least: bool

    def sql(self) -> tuple[str, list[Any]]:
        if self.column not in PIXEL_COLUMNS:
            raise ValueError(f"not a pixel column: {self.column}")
        return f"({self.column} IS NOT NULL AND {self.column} {'>=' if self.at_least else '<='} ?)", [self.value]


@dataclass(frozen=True)
class HasGps:
    """Files with (or without) a GPS position."""

    value: bool

    def sql(self) -> tuple[str, list[Any]]:
        if self.value:
            return "(gps_lat IS NOT NULL AND gps_lon IS NOT NULL)", []
        return "(gps_lat IS NULL OR gps_lon IS NULL)", []


@dataclass(frozen=True)
class Tagged:
    """Files carrying every one of `labels` (or at least one, with `any_of`), scored at least `min_score`."""

    labels: tuple[str, ...]
    any_of: bool = False
    min_score: float | None = None

    def sql(self) -> tuple[str, list[Any]]:
        score = " AND t.score >= ?" if self.min_score is not None else ""
        exists = f"EXISTS (SELECT 1 FROM tags t WHERE t.file_id = files.id AND t.label = ?{score})"
        params: list[Any] = []
        for label in self.labels:
            params += [label] + ([self.min_score] if self.min_score is not None else [])
        joined = (" OR " if self.any_of else " AND ").join([exists] * len(self.labels))
        return f"({joined})", params


Condition = FolderUnder | PathGlob | TakenFrom | TakenBefore | TextIn | ExtIn | PixelBound | HasGps | Tagged


@dataclass(frozen=True)
class Filter:
    """Conditions that must all hold (an empty filter lets every file through). Hashable: caches key on it."""

    conditions: tuple[Condition, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.conditions

    def sql(self) -> tuple[str, tuple[Any, ...]]:
        """(WHERE clause over `files`, bound parameters)."""
        if not self.conditions:
            return "1", ()
        clauses, params = [], []
        for condition in self.conditions:
            clause, values = condition.sql()
            clauses.append(clause)
            params += values
        return " AND ".join(clauses), tuple(params)
