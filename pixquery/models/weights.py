"""Find a model's files: an explicit local path, then pixquery's cache, then a one-time hub download.

Downloads go straight into the cache directory (one folder per model), so a model fetched once works offline
afterwards and a user without network can put the files there by hand; every failure says which files are
expected and where to put them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from pixquery.models.base import ModelError
from pixquery.paths import cache_dir

Expected = str | tuple[str, ...]
"""A file a model needs, relative to its directory; a tuple means any one of these names will do."""

OFFLINE_VARIABLES = ("PIXQUERY_OFFLINE", "HF_HUB_OFFLINE")


def models_dir() -> Path:
    """Where downloaded models live: `<cache>/models`."""
    return cache_dir("models")


def offline_reason() -> str | None:
    """The environment variable that switches downloads off, or None when downloads are allowed."""
    for variable in OFFLINE_VARIABLES:
        if os.environ.get(variable, "").strip().lower() in ("1", "true", "yes", "on"):
            return f"{variable}={os.environ[variable]}"
    return None


def cache_path(kind: str, repo_id: str) -> Path:
    """The cache folder of one model, e.g. models/immich/ViT-B-32__openai or models/hf/org--name."""
    safe = re.sub(r"[^A-Za-z0-9._+-]", "-", repo_id.replace("/", "--"))
    return models_dir() / kind / safe


def missing_files(directory: Path, expected: Sequence[Expected]) -> list[str]:
    """The expected entries not present under `directory`, written as a user can read them."""
    missing = []
    for entry in expected:
        names = (entry,) if isinstance(entry, str) else entry
        if not any((directory / name).is_file() for name in names):
            missing.append(_describe(entry))
    return missing


def _describe(entry: Expected) -> str:
    if isinstance(entry, str):
        return entry
    return entry[0] + "".join(f" (or {name})" for name in entry[1:])


def _put_them_here(model: str, repo_id: str, target: Path, expected: Sequence[Expected]) -> str:
    listing = ", ".join(_describe(entry) for entry in expected)
    return (
        f"Put the files of {model} ({listing}) in {target}, for example from "
        f"https://huggingface.co/{repo_id} on a machine with network access, or point to a local copy."
    )


def resolve_model_dir(
    model: str,
    repo_id: str,
    expected: Sequence[Expected],
    *,
    kind: str,
    local_dir: Path | None = None,
    allow_patterns: Sequence[str] | None = None,
    ignore_patterns: Sequence[str] | None = None,
    revision: str | None = None,
    cache_name: str | None = None,
) -> Path:
    """Return a directory holding every expected file of `model`, downloading `repo_id` once if needed.

    Order: `local_dir` when given (never downloads over a user's folder), the cache folder for
    (kind, repo_id), then `huggingface_hub.snapshot_download` into that cache folder with a progress bar.
    Offline (an OFFLINE_VARIABLES variable set, or no network) raises ModelError naming the model, the files
    and the folder. `cache_name` names the cache folder (default: the repo id with / written as --).
    """
    if local_dir is not None:
        local_dir = Path(local_dir).expanduser()
        if not local_dir.is_dir():
            raise ModelError(f"model directory {local_dir} does not exist")
        missing = missing_files(local_dir, expected)
        if missing:
            raise ModelError(f"model directory {local_dir} lacks {', '.join(missing)}")
        return local_dir

    target = cache_path(kind, cache_name or repo_id)
    missing = missing_files(target, expected)
    if not missing:
        return target

    reason = offline_reason()
    if reason:
        raise ModelError(
            f"{model} is not in the cache and downloads are off ({reason}). "
            + _put_them_here(model, repo_id, target, expected)
        )
    _download(model, repo_id, target, expected, allow_patterns, ignore_patterns, revision)
    missing = missing_files(target, expected)
    if missing:
        raise ModelError(
            f"downloaded {repo_id} but it lacks {', '.join(missing)}; it may not be a {kind} model. "
            + _put_them_here(model, repo_id, target, expected)
        )
    return target


def _download(
    model: str,
    repo_id: str,
    target: Path,
    expected: Sequence[Expected],
    allow_patterns: Sequence[str] | None,
    ignore_patterns: Sequence[str] | None,
    revision: str | None,
) -> None:
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError
    except ImportError as exc:  # pragma: no cover - huggingface-hub is a core dependency
        raise ModelError(
            f"downloading {model} needs huggingface-hub: pip install huggingface-hub ({exc})"
        ) from exc

    target.mkdir(parents=True, exist_ok=True)
    try:
        # snapshot_download shows a tqdm progress bar per file and resumes partial downloads on a retry.
        snapshot_download(
            repo_id,
            local_dir=target,
            allow_patterns=list(allow_patterns) if allow_patterns else None,
            ignore_patterns=list(ignore_patterns) if ignore_patterns else None,
            revision=revision,
        )
    except (RepositoryNotFoundError, RevisionNotFoundError) as exc:
        raise ModelError(f"{model}: there is no model {repo_id!r} on the Hugging Face hub ({exc})") from exc
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # network errors come from several libraries (httpx, requests, OSError)
        raise ModelError(
            f"could not download {model} from the Hugging Face hub ({type(exc).__name__}: {exc}). "
            + _put_them_here(model, repo_id, target, expected)
        ) from exc
