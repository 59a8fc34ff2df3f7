"""How the command line writes: results and reports to stdout, progress and diagnostics to stderr.

Kept light (no rich, no numpy at import): a cold `pixquery search --json` prints through here.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def display(text: str) -> str:
    """A path or name safe to print: bytes that are not UTF-8 (kept losslessly in the index as surrogate escapes)
    are shown as \\xNN instead of breaking the output."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def print_json(data: Any) -> None:
    """JSON to stdout. Names that are not valid UTF-8 are written as JSON \\u escapes (still lossless)."""
    text = json.dumps(data, indent=2, ensure_ascii=False, default=str)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(data, indent=2, ensure_ascii=True, default=str)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def out(line: str = "") -> None:
    """A line of results or of a report, to stdout."""
    sys.stdout.write(display(line) + "\n")


def note(line: str) -> None:
    """A diagnostic (a hint, a warning, a summary of what happened) to stderr."""
    sys.stderr.write(display(line) + "\n")


def warn(line: str) -> None:
    note(f"warning: {line}")


def error(message: str) -> None:
    """One line, whatever the message holds: a library's exception quoted inside it may span several."""
    note("error: " + " ".join(part.strip() for part in message.splitlines() if part.strip()))


def table(headers: list[str], rows: list[list[str]], right: tuple[int, ...] = ()) -> None:
    """A plain text table to stdout: columns padded to their widest cell, `right` columns right-aligned."""
    cells = [headers, *[[display(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        parts = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        out("  ".join(parts).rstrip())
        if n == 0:
            out("  ".join("-" * w for w in widths))


def print_hits(hits: list[dict[str, Any]]) -> None:
    """Search results as a table (rank, score, id, path), or "no results"."""
    if not hits:
        out("no results")
        return
    rows = [[str(rank), f"{hit['score']:.3f}", str(hit["id"]), str(hit["path"])] for rank, hit in enumerate(hits, 1)]
    table(["#", "score", "id", "path"], rows, right=(0, 1, 2))
