"""Shared fixtures. Kept free of torch imports: the torch-free test run loads this file too."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from photo_tree import make_photo_tree
from PIL import Image


@pytest.fixture(scope="session")
def photos_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real photos in every format pixquery reads, in flat/, nested/, heic/ and unicode/ (see tests/photo_tree.py),
    generated once per test run from the photos the package ships: no test needs a file outside the repository."""
    return make_photo_tree(tmp_path_factory.mktemp("photos") / "photos")


def write_jpegs(folder: Path, n: int, seed: int = 0, size: int = 96) -> list[Path]:
    """Write n distinct small JPEGs (coloured noise blobs) into folder."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        base = rng.integers(0, 255, size=3)
        pixels = np.clip(base + rng.normal(0, 40, size=(size, size, 3)), 0, 255).astype(np.uint8)
        path = folder / f"img_{i:04d}.jpg"
        Image.fromarray(pixels).save(path, quality=85)
        paths.append(path)
    return paths


@pytest.fixture()
def jpeg_folder(tmp_path: Path) -> Path:
    write_jpegs(tmp_path / "photos", 24)
    return tmp_path / "photos"
