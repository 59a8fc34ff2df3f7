"""Tags in the catalog's `tags(file_id, label, score, source)` table: write, read, count, clear.

Taggers write here and search filters read it (`{"tags": "cat"}` in a query spec, see pixquery.query.filters).
`source` says which tagger wrote a tag ("labels" for `tag_library`, "open" for `tag_open`); re-running a tagger
replaces its own tags on the files it tagged and leaves other sources alone.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pixquery.store.catalog import Catalog

LABELS_SOURCE = "labels"
OPEN_SOURCE = "open"


@dataclass(frozen=True)
class Tag:
    """One tag of one file."""

    file_id: int
    label: str
    score: float
    source: str

    def to_dict(self) -> dict[str, object]:
        return {"file_id": self.file_id, "label": self.label, "score": round(self.score, 4), "source": self.source}


def write_tags(catalog: Catalog, file_ids: Sequence[int], tags: Iterable[Tag], source: str) -> int:
    """Replace `source`'s tags of `file_ids` with `tags` (all of that source) in one transaction; returns the count.

    Files in `file_ids` that get no tag lose their old ones too: a re-run that finds "none of these" must not leave
    the previous run's answer behind.
    """
    rows = [(t.file_id, t.label, float(t.score), source) for t in tags if t.source == source]
    ids = [(int(i), source) for i in file_ids]
    with catalog.db:
        catalog.db.executemany("DELETE FROM tags WHERE file_id = ? AND source = ?", ids)
        # OR REPLACE: a label may come twice for one file (e.g. two vocabulary spellings), keep the last.
        catalog.db.executemany("INSERT OR REPLACE INTO tags(file_id, label, score, source) VALUES (?, ?, ?, ?)", rows)
    return len(rows)


def read_tags(
    catalog: Catalog, file_ids: Iterable[int] | None = None, source: str | None = None
) -> dict[int, list[Tag]]:
    """Tags per file id, best score first; all files when `file_ids` is None, every source when `source` is None."""
    sql = "SELECT file_id, label, score, source FROM tags"
    clauses, params = [], []
    if source is not None:
        clauses.append("source = ?")
        params.append(source)
    out: dict[int, list[Tag]] = defaultdict(list)
    wanted = None if file_ids is None else {int(i) for i in file_ids}
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    for file_id, label, score, src in catalog.db.execute(sql + " ORDER BY file_id, score DESC", params):
        if wanted is None or file_id in wanted:
            out[int(file_id)].append(Tag(int(file_id), str(label), float(score), str(src)))
    return dict(out)


def tag_counts(catalog: Catalog, source: str | None = None) -> list[tuple[str, int]]:
    """(label, number of files) for every label, most frequent first."""
    where, params = ("WHERE source = ?", [source]) if source is not None else ("", [])
    sql = f"SELECT label, COUNT(DISTINCT file_id) AS n FROM tags {where} GROUP BY label ORDER BY n DESC, label"
    return [(str(label), int(n)) for label, n in catalog.db.execute(sql, params)]


def files_with_tag(catalog: Catalog, label: str, min_score: float | None = None) -> list[int]:
    """Ids of files carrying `label` (from any source), optionally only with a score of at least `min_score`."""
    sql = "SELECT DISTINCT file_id FROM tags WHERE label = ?"
    params: list[object] = [label]
    if min_score is not None:
        sql += " AND score >= ?"
        params.append(float(min_score))
    return [int(r[0]) for r in catalog.db.execute(sql + " ORDER BY file_id", params)]


def clear_tags(catalog: Catalog, source: str | None = None) -> int:
    """Delete every tag (of one source); returns how many were deleted."""
    with catalog.db:
        if source is None:
            cur = catalog.db.execute("DELETE FROM tags")
        else:
            cur = catalog.db.execute("DELETE FROM tags WHERE source = ?", (source,))
    return int(cur.rowcount)
