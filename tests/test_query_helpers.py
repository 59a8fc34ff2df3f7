"""Shared test doubles for the query tests: a fake encoder with fixed vectors and a real index built in tmp_path."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image

from pixquery.models.base import EncoderBase, l2_normalize
from pixquery.query.engine import SearchContext
from pixquery.store.catalog import Catalog
from pixquery.store.flat import FlatStore


class FakeEncoder(EncoderBase):
    """Texts map to fixed vectors (unknown texts to a seeded random unit vector); an image maps to the unit
    vector of its top-left pixel's RGB values, padded with zeros, so tests can make image vectors by colour."""

    def __init__(self, dim: int = 4, texts: dict[str, list[float]] | None = None, name: str = "fake") -> None:
        self.name = name
        self.dim = dim
        self.texts = {k: l2_normalize(np.asarray(v, np.float32)) for k, v in (texts or {}).items()}
        self.text_calls: list[list[str]] = []

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        self.text_calls.append(list(texts))
        rows = []
        for t in texts:
            if t in self.texts:
                rows.append(self.texts[t])
            else:
                seed = int.from_bytes(hashlib.sha1(t.encode()).digest()[:4], "little")
                rows.append(l2_normalize(np.random.default_rng(seed).normal(size=self.dim)))
        return np.array(rows, np.float32).reshape(len(texts), self.dim)

    def encode_images(self, images: list[Image.Image]) -> np.ndarray:
        rows = []
        for image in images:
            rgb = np.asarray(image.convert("RGB").getpixel((0, 0)), np.float32)
            rows.append(l2_normalize(np.pad(rgb, (0, max(0, self.dim - 3)))[: self.dim]))
        return np.array(rows, np.float32).reshape(len(images), self.dim)


def make_index(
    tmp_path: Path,
    vectors: np.ndarray,
    metadata: list[dict] | None = None,
    folders: list[str] | None = None,
    encoder: FakeEncoder | None = None,
) -> SearchContext:
    """A real Catalog + FlatStore holding one indexed file per vector (ids 1..n, in order)."""
    vectors = l2_normalize(np.asarray(vectors, np.float32))
    catalog = Catalog(tmp_path / "catalog.sqlite")
    store = FlatStore(tmp_path / "vectors", vectors.shape[1])
    ids = []
    for i in range(len(vectors)):
        folder = (folders[i] if folders else str(tmp_path / "photos")).rstrip("/")
        meta = metadata[i] if metadata else {}
        ext = meta.pop("ext", "jpg")
        path = f"{folder}/img{i:04d}.{ext}"
        file_id = catalog.insert(path, folder, ext, 1000, 0, f"hash{i}")
        catalog.mark_indexed(file_id, meta)
        ids.append(file_id)
    catalog.commit()
    store.add(np.array(ids), vectors)
    store.flush()
    return SearchContext(encoder or FakeEncoder(vectors.shape[1]), store, catalog)


def test_fake_encoder_is_deterministic_and_unit() -> None:
    enc = FakeEncoder(texts={"x": [3, 4, 0, 0]})
    assert np.allclose(enc.encode_texts(["x"])[0], [0.6, 0.8, 0, 0])
    a, b = enc.encode_texts(["unknown", "unknown"])
    assert np.allclose(a, b) and np.isclose(np.linalg.norm(a), 1.0)
    red = enc.encode_images([Image.new("RGB", (4, 4), (255, 0, 0))])[0]
    assert np.allclose(red, [1, 0, 0, 0])


def test_make_index_builds_a_searchable_index(tmp_path: Path) -> None:
    ctx = make_index(tmp_path, np.eye(4), metadata=[{"width": 10 * (i + 1)} for i in range(4)])
    scores, ids = ctx.store.search(np.array([[0, 0, 1, 0]], np.float32), 1)
    assert ids[0][0] == 3 and np.isclose(scores[0][0], 1.0)
    assert ctx.catalog.get(3).width == 30
