"""Locate image folders whose exact place differs between downloads of the same dataset."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from pixquery.eval.datasets.base import DatasetFormatError


def pick_layout(
    candidates: Sequence[Callable[[str], Path]],
    probe: str,
    annotation: Path,
    hint: str,
    required: bool = True,
) -> Callable[[str], Path]:
    """Return the first path rule under which image `probe` exists.

    Datasets are unpacked in several ways (an ``images/`` folder or not, COCO's ``val2014/`` kept or not), so
    readers try each known layout on one image and then apply the winner to all images consistently. When no
    layout matches, raise if `required`, else fall back to the first rule (for callers skipping image checks).
    """
    for rule in candidates:
        if rule(probe).is_file():
            return rule
    if not required:
        return candidates[0]
    tried = ", ".join(str(rule(probe)) for rule in candidates)
    raise DatasetFormatError(annotation, f"image {probe!r} not found; tried {tried}. {hint}")


def check_all_exist(paths: Sequence[Path], annotation: Path, hint: str) -> None:
    """Raise naming the first missing image (and how many are missing) if any path is not a file."""
    missing = [p for p in paths if not p.is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more of {len(paths)} images)" if len(missing) > 1 else ""
        raise DatasetFormatError(annotation, f"image {missing[0]} not found{more}. {hint}")
