"""Where things live by default; a light module (no numpy, no model code) so a cold query can import it cheaply."""

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
