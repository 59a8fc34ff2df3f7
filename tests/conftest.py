"""Shared fixtures. Kept free of torch imports: the torch-free test run loads this file too."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "photos"


@pytest.fixture(scope="session")
def photos_dir() -> Path:
    """The real photos of many formats in ../shared/photos (skips when absent)."""
    if not PHOTOS.exists():
        pytest.skip("../shared/photos is not present")
    return PHOTOS


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
