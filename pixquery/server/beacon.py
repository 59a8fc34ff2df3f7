"""The resident-server beacon: how a cold `pixquery search` finds a running `pixquery serve` for its index.

`pixquery serve` writes `server.json` into the index directory once its model is loaded (URL, process id,
whether a token is needed) and deletes it when it stops. A plain text search from the command line reads it
and, when that server is alive and open, asks it instead of loading the model itself: the answer then costs an
HTTP round trip, not a process's imports and a model load. Anything unexpected (no file, a dead process, a
refused connection, an error reply, a slow server) falls back to searching locally, so the beacon can only make
a query faster, never different: the server searches the same index with the same query spec.

Kept free of heavy imports: it runs on the cold query path.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pixquery.fsutil import atomic_write_json
from pixquery.layout import IndexLayout

ASK_TIMEOUT_S = 5.0
DISABLE_ENV = "PIXQUERY_NO_SERVER"


def write_beacon(index_dir: str | Path, url: str, token_required: bool) -> Path:
    """Announce a server for `index_dir` (atomically: a reader never sees half a file)."""
    path = IndexLayout(Path(index_dir)).beacon
    atomic_write_json(path, {"url": url, "pid": os.getpid(), "token_required": token_required}, durable=False)
    return path


def remove_beacon(index_dir: str | Path) -> None:
    """Withdraw this process's beacon (a beacon another live server wrote since is left alone)."""
    path = IndexLayout(Path(index_dir)).beacon
    try:
        if json.loads(path.read_text(encoding="utf-8")).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def live_server(index_dir: str | Path) -> str | None:
    """The URL of a running, token-free server for `index_dir`, or None."""
    if os.environ.get(DISABLE_ENV):
        return None
    try:
        data = json.loads(IndexLayout(Path(index_dir)).beacon.read_text(encoding="utf-8"))
        url, pid = str(data["url"]), int(data["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if data.get("token_required") or not _alive(pid):
        return None
    return url


def ask_server(url: str, spec_json: dict[str, Any], timeout: float = ASK_TIMEOUT_S) -> list[dict[str, Any]] | None:
    """POST a JSON query spec to a server's /api/search; its results, or None on any failure."""
    # http.client, not urllib.request: half the import time on a path that exists to start fast; and only here,
    # once a live server was found (it imports the email package: ~40 ms a query without a server would pay).
    import http.client

    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        return None
    connection = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
    try:
        connection.request("POST", "/api/search", body=json.dumps(spec_json).encode("utf-8"),
                           headers={"Content-Type": "application/json"})
        reply = connection.getresponse()
        if reply.status != 200:
            return None
        results = json.loads(reply.read().decode("utf-8"))["results"]
    except (OSError, ValueError, KeyError, TypeError, http.client.HTTPException):
        return None
    finally:
        connection.close()
    return results if isinstance(results, list) else None
