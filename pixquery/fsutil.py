"""Writing files so that a crash never leaves half of one: write beside, fsync, rename over, fsync the folder.

One implementation for every file pixquery replaces (index config and manifests, caches, thumbnails, beacons).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO


def fsync_dir(path: str | Path) -> None:
    """Make a rename or a new file in `path` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_file(path: str | Path, durable: bool = True) -> Iterator[BinaryIO]:
    """Yield a binary file that replaces `path` atomically when the block ends without an error.

    `durable` also fsyncs the data and the folder (the commit points of an index need it; caches do not).
    A reader sees the old file or the whole new one, never a part; on an error the partial file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(path.parent)


def atomic_write_bytes(path: str | Path, data: bytes, durable: bool = True) -> None:
    """Replace `path` with `data` atomically (see `atomic_file`)."""
    with atomic_file(path, durable) as handle:
        handle.write(data)


def atomic_write_text(path: str | Path, text: str, durable: bool = True) -> None:
    """Replace `path` with UTF-8 `text` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"), durable)


def atomic_write_json(path: str | Path, value: Any, durable: bool = True, indent: int | None = None) -> None:
    """Replace `path` with `value` as JSON atomically."""
    atomic_write_text(path, json.dumps(value, indent=indent) + ("\n" if indent else ""), durable)


def try_write(write: Any, *args: Any, **kwargs: Any) -> bool:
    """Call a writer for a cache file; a read-only or full disk only costs a recomputation later (False)."""
    try:
        write(*args, **kwargs)
    except OSError:
        return False
    return True


def is_under(path: str | Path, roots: Iterable[str | Path]) -> bool:
    """Whether `path` is one of `roots` or lies below one (absolute paths compared as written, not resolved)."""
    text = str(path)
    for root in roots:
        base = str(root)
        if text == base or text.startswith(base.rstrip(os.sep) + os.sep):
            return True
    return False
