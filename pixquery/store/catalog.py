"""The catalog: one SQLite row per file, the index's source of truth.

WAL mode lets searches read while an indexer writes. A row's `status` is `pending` (known, not yet embedded),
`indexed` (its vector is in the vector store) or `error` (it could not be read; `error` says why).

File names are whatever bytes the disk holds. Python gives a name that is not valid UTF-8 as a str with surrogate
escapes, which SQLite cannot store as TEXT; such a path (and its folder) is stored as a BLOB of its bytes instead,
and read back to the very same str. Every valid name stays TEXT, so each path has exactly one stored form and the
UNIQUE constraint, equality and prefix comparisons keep working. Only this module knows.
"""

from __future__ import annotations

import sqlite3
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pixquery.store.where import Filter

SCHEMA_VERSION = 3

SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    path          TEXT NOT NULL UNIQUE,   -- absolute path, as discovered
    folder        TEXT NOT NULL,          -- parent directory of path (for folder filters)
    ext           TEXT NOT NULL,          -- lower-case extension without the dot ("jpg")
    size          INTEGER NOT NULL,       -- bytes
    mtime_ns      INTEGER NOT NULL,
    content_hash  TEXT NOT NULL,          -- blake2b of the bytes: detects moves and true changes
    status        TEXT NOT NULL CHECK (status IN ('pending', 'indexed', 'error')),
    error         TEXT,                   -- why the file was skipped, when status = 'error'
    width         INTEGER,
    height        INTEGER,
    format        TEXT,                   -- the decoder's format name ("JPEG", "HEIF", ...)
    taken_at      TEXT,                   -- EXIF date taken, ISO 8601 local time
    camera_make   TEXT,
    camera_model  TEXT,
    gps_lat       REAL,
    gps_lon       REAL,
    added_at      REAL NOT NULL,          -- unix time the row was created
    indexed_at    REAL,                   -- unix time the vector was stored
    device        INTEGER,                -- st_dev and st_ino of the file read at indexing: a file swapped in at
    inode         INTEGER,                -- the same path later is told apart from the one indexed
    ctime_ns      INTEGER                 -- its st_ctime then (no one can set it: a recycled inode still differs)
);
CREATE INDEX IF NOT EXISTS files_status ON files(status);
CREATE INDEX IF NOT EXISTS files_hash ON files(content_hash);
CREATE INDEX IF NOT EXISTS files_folder ON files(folder);
CREATE INDEX IF NOT EXISTS files_taken ON files(taken_at);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tags (
    file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
    label   TEXT NOT NULL,
    score   REAL NOT NULL,
    source  TEXT NOT NULL,                -- which tagger produced it ("labels", "open", ...)
    PRIMARY KEY (file_id, label, source)
);
CREATE INDEX IF NOT EXISTS tags_label ON tags(label);
"""

PATH_COLUMNS = ("path", "folder")


def to_db_path(path: str) -> str | bytes:
    """How a path is stored: as text when it is valid UTF-8, else as the bytes of the name (lossless)."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return path.encode("utf-8", "surrogateescape")


def from_db_path(value: str | bytes) -> str:
    """A stored path back as Python gives it (surrogate escapes for bytes that are not UTF-8)."""
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value


def _db_text(value: Any) -> Any:
    """A message or metadata text made storable: characters that are not valid Unicode shown as escapes."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


def _db_params(params: Sequence[Any]) -> list[Any]:
    """Bound parameters of a filter: a path or pattern that is not valid UTF-8 compared in its stored form."""
    out = []
    for value in params:
        if isinstance(value, str):
            try:
                value = to_db_path(value)
            except UnicodeEncodeError:  # a lone surrogate no file name can hold: it matches nothing
                value = value.encode("utf-8", "surrogatepass")
        out.append(value)
    return out


METADATA_COLUMNS = ("width", "height", "format", "taken_at", "camera_make", "camera_model", "gps_lat", "gps_lon")


@dataclass(frozen=True)
class FileRow:
    """One catalog row."""

    id: int
    path: str
    folder: str
    ext: str
    size: int
    mtime_ns: int
    content_hash: str
    status: str
    error: str | None
    width: int | None
    height: int | None
    format: str | None
    taken_at: str | None
    camera_make: str | None
    camera_model: str | None
    gps_lat: float | None
    gps_lon: float | None
    added_at: float
    indexed_at: float | None
    device: int | None = None
    inode: int | None = None
    ctime_ns: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the row."""
        return dict(self.__dict__)

    def metadata(self) -> dict[str, Any]:
        """What a search result shows about the photo: size, format, date taken, camera, position."""
        return {key: getattr(self, key) for key in METADATA_COLUMNS}


def _row(record: sqlite3.Row) -> FileRow:
    values = dict(record)
    for column in PATH_COLUMNS:
        values[column] = from_db_path(values[column])
    return FileRow(**values)


@dataclass(frozen=True)
class Tag:
    """One tag of one file; `source` says which tagger wrote it ("labels", "open")."""

    file_id: int
    label: str
    score: float
    source: str

    def to_dict(self) -> dict[str, object]:
        return {"file_id": self.file_id, "label": self.label, "score": round(self.score, 4), "source": self.source}


class Catalog:
    """SQLite catalog of an index. Safe to read from several threads (one connection per Catalog object)."""

    def __init__(self, path: Path, readonly: bool = False) -> None:
        self.path = Path(path)
        if readonly:
            uri = f"file:{self.path}?mode=ro"
            self.db = sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=30)
        else:
            self.db = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
            self.db.execute("PRAGMA journal_mode=WAL")
            # NORMAL is durable in WAL mode across application crashes; only an OS crash may lose the last commit.
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(SCHEMA)
            self._migrate()
        self.db.execute("PRAGMA foreign_keys=ON")
        self.db.row_factory = sqlite3.Row

    def _migrate(self) -> None:
        """Bring a catalog written by an older pixquery to this schema (columns are only ever added)."""
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(files)")}
        with self.db:
            for column in ("device", "inode", "ctime_ns"):
                if column not in columns:  # schema 1 had no file identity, schema 2 no ctime
                    self.db.execute(f"ALTER TABLE files ADD COLUMN {column} INTEGER")
        if self.get_meta("schema_version") != str(SCHEMA_VERSION):
            self.set_meta("schema_version", str(SCHEMA_VERSION))

    def close(self) -> None:
        self.db.close()

    # --- meta ---------------------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def set_meta(self, key: str, value: str) -> None:
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    # --- reading ------------------------------------------------------------------------------------------
    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[FileRow]:
        return [_row(r) for r in self.db.execute(sql, params)]

    def get(self, file_id: int) -> FileRow | None:
        rows = self._rows("SELECT * FROM files WHERE id = ?", (int(file_id),))
        return rows[0] if rows else None

    def get_many(self, ids: Iterable[int]) -> dict[int, FileRow]:
        """Rows by id, fetched in chunks (SQLite limits the number of bound parameters)."""
        ids = [int(i) for i in ids]
        out: dict[int, FileRow] = {}
        for start in range(0, len(ids), 900):
            chunk = ids[start : start + 900]
            marks = ",".join("?" * len(chunk))
            for row in self._rows(f"SELECT * FROM files WHERE id IN ({marks})", chunk):
                out[row.id] = row
        return out

    def by_path(self, path: str) -> FileRow | None:
        try:
            stored = to_db_path(path)
        except UnicodeEncodeError:
            return None  # a lone surrogate that no file name on disk can hold
        rows = self._rows("SELECT * FROM files WHERE path = ?", (stored,))
        return rows[0] if rows else None

    def all_files(self) -> Iterator[FileRow]:
        for r in self.db.execute("SELECT * FROM files ORDER BY id"):
            yield _row(r)

    def ids_with_status(self, status: str) -> list[int]:
        return [r[0] for r in self.db.execute("SELECT id FROM files WHERE status = ? ORDER BY id", (status,))]

    def counts(self) -> dict[str, int]:
        counts = {"pending": 0, "indexed": 0, "error": 0}
        for status, n in self.db.execute("SELECT status, COUNT(*) FROM files GROUP BY status"):
            counts[status] = n
        return counts

    def errors(self) -> list[FileRow]:
        return self._rows("SELECT * FROM files WHERE status = 'error' ORDER BY path")

    def select_ids(self, where: Filter) -> list[int]:
        """Ids of indexed files matching a filter (built from a query spec by pixquery.query.filters)."""
        clause, params = where.sql()
        sql = f"SELECT id FROM files WHERE status = 'indexed' AND ({clause}) ORDER BY id"
        return [r[0] for r in self.db.execute(sql, _db_params(params))]

    def browse(self, where: Filter, order: str = "added", offset: int = 0, limit: int = 100) -> list[FileRow]:
        """Indexed files matching `where`, newest first: by date taken (`order="taken"`, undated last) or by when
        they were added (`order="added"`), a page at a time."""
        clause, params = where.sql()
        orders = {"taken": "taken_at IS NULL, taken_at DESC, id DESC", "added": "id DESC"}
        if order not in orders:
            raise ValueError(f"order must be one of {', '.join(orders)}")
        sql = f"SELECT * FROM files WHERE status = 'indexed' AND ({clause}) ORDER BY {orders[order]} LIMIT ? OFFSET ?"
        return self._rows(sql, (*_db_params(params), int(limit), int(offset)))

    def folders(self, limit: int | None = None) -> list[tuple[str, int]]:
        """(folder, number of indexed files) for every folder holding some, most populated first."""
        sql = "SELECT folder, COUNT(*) AS n FROM files WHERE status = 'indexed' GROUP BY folder ORDER BY n DESC, folder"
        rows = self.db.execute(sql + (" LIMIT ?" if limit else ""), (limit,) if limit else ())
        return [(from_db_path(folder), int(n)) for folder, n in rows]

    def data_version(self) -> tuple[int, int]:
        """Changes whenever the catalog changes: SQLite's data_version (other connections) and our own changes."""
        return int(self.db.execute("PRAGMA data_version").fetchone()[0]), int(self.db.total_changes)

    # --- tags ---------------------------------------------------------------------------------------------
    def write_tags(self, file_ids: Sequence[int], tags: Iterable[Tag], source: str) -> int:
        """Replace `source`'s tags of `file_ids` with `tags` (those of that source) in one transaction.

        Files in `file_ids` that get no tag lose their old ones too: a re-run that finds "none of these" must not
        leave the previous run's answer behind. Returns how many tags were written.
        """
        rows = [(t.file_id, t.label, float(t.score), source) for t in tags if t.source == source]
        with self.db:
            stale = [(int(i), source) for i in file_ids]
            self.db.executemany("DELETE FROM tags WHERE file_id = ? AND source = ?", stale)
            # OR REPLACE: a label may come twice for one file (e.g. two vocabulary spellings), keep the last.
            self.db.executemany("INSERT OR REPLACE INTO tags(file_id, label, score, source) VALUES (?, ?, ?, ?)", rows)
        return len(rows)

    def read_tags(self, file_ids: Iterable[int] | None = None, source: str | None = None) -> dict[int, list[Tag]]:
        """Tags per file id, best score first; all files when `file_ids` is None, every source when `source` is."""
        sql = "SELECT file_id, label, score, source FROM tags"
        params: list[Any] = []
        if source is not None:
            sql += " WHERE source = ?"
            params.append(source)
        wanted = None if file_ids is None else {int(i) for i in file_ids}
        out: dict[int, list[Tag]] = defaultdict(list)
        for file_id, label, score, src in self.db.execute(sql + " ORDER BY file_id, score DESC", params):
            if wanted is None or file_id in wanted:
                out[int(file_id)].append(Tag(int(file_id), str(label), float(score), str(src)))
        return dict(out)

    def tag_counts(self, source: str | None = None) -> list[tuple[str, int]]:
        """(label, number of files) for every label, most frequent first."""
        where, params = ("WHERE source = ?", [source]) if source is not None else ("", [])
        sql = f"SELECT label, COUNT(DISTINCT file_id) AS n FROM tags {where} GROUP BY label ORDER BY n DESC, label"
        return [(str(label), int(n)) for label, n in self.db.execute(sql, params)]

    # --- writing ------------------------------------------------------------------------------------------
    def insert(
        self, path: str, folder: str, ext: str, size: int, mtime_ns: int, content_hash: str,
        device: int | None = None, inode: int | None = None, ctime_ns: int | None = None,
    ) -> int:
        cur = self.db.execute(
            "INSERT INTO files(path, folder, ext, size, mtime_ns, content_hash, status, added_at, device, inode, "
            "ctime_ns) VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?)",
            (to_db_path(path), to_db_path(folder), _db_text(ext), size, mtime_ns, content_hash, time.time(), device,
             inode, ctime_ns),
        )
        return int(cur.lastrowid)

    def mark_changed(
        self, file_id: int, size: int, mtime_ns: int, content_hash: str, device: int | None = None,
        inode: int | None = None, ctime_ns: int | None = None,
    ) -> None:
        self.db.execute(
            "UPDATE files SET size = ?, mtime_ns = ?, content_hash = ?, device = ?, inode = ?, ctime_ns = ?, "
            "status = 'pending', error = NULL WHERE id = ?",
            (size, mtime_ns, content_hash, device, inode, ctime_ns, file_id),
        )

    def touch(
        self, file_id: int, size: int, mtime_ns: int, device: int | None = None, inode: int | None = None,
        ctime_ns: int | None = None,
    ) -> None:
        """Record the new size, times and inode of a file whose content did not change (`touch`, a rewrite)."""
        self.db.execute(
            "UPDATE files SET size = ?, mtime_ns = ?, device = ?, inode = ?, ctime_ns = ? WHERE id = ?",
            (size, mtime_ns, device, inode, ctime_ns, file_id),
        )

    def move(
        self, file_id: int, path: str, folder: str, ext: str, mtime_ns: int, device: int | None = None,
        inode: int | None = None, ctime_ns: int | None = None,
    ) -> None:
        self.db.execute(
            "UPDATE files SET path = ?, folder = ?, ext = ?, mtime_ns = ?, device = ?, inode = ?, ctime_ns = ? "
            "WHERE id = ?",
            (to_db_path(path), to_db_path(folder), _db_text(ext), mtime_ns, device, inode, ctime_ns, file_id),
        )

    def delete(self, ids: Iterable[int]) -> None:
        self.db.executemany("DELETE FROM files WHERE id = ?", [(int(i),) for i in ids])

    def mark_indexed(self, file_id: int, metadata: dict[str, Any]) -> None:
        cols = ", ".join(f"{c} = ?" for c in METADATA_COLUMNS)
        values = [_db_text(metadata.get(c)) for c in METADATA_COLUMNS]
        self.db.execute(
            f"UPDATE files SET status = 'indexed', error = NULL, indexed_at = ?, {cols} WHERE id = ?",
            (time.time(), *values, file_id),
        )

    def mark_error(self, file_id: int, reason: str) -> None:
        self.db.execute("UPDATE files SET status = 'error', error = ? WHERE id = ?", (_db_text(reason), file_id))

    def mark_pending(self, ids: Iterable[int]) -> None:
        self.db.executemany("UPDATE files SET status = 'pending' WHERE id = ?", [(int(i),) for i in ids])

    def commit(self) -> None:
        self.db.commit()

    def rollback(self) -> None:
        self.db.rollback()
