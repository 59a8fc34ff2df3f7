"""Where things live by default: the index, the cache. A light module (no numpy, no model code), so a cold query
can import it cheaply; every other module asks here instead of resolving directories itself."""

from __future__ import annotations

import os
from pathlib import Path


def default_index_dir() -> Path:
    """`$PIXQUERY_INDEX`, else the platform's user data dir (e.g. ~/.local/share/pixquery/index)."""
    env = os.environ.get("PIXQUERY_INDEX")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("pixquery")) / "index"


def cache_root() -> Path:
    """pixquery's cache directory: `$PIXQUERY_CACHE`, else the platform's user cache dir (~/.cache/pixquery).

    Everything rebuildable lives under it, one sub-folder per kind: models/, text-banks/, eval/, conse/, precision/.
    """
    env = os.environ.get("PIXQUERY_CACHE")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("pixquery"))


def cache_dir(kind: str) -> Path:
    """The cache sub-folder for one kind of data (not created here)."""
    return cache_root() / kind
