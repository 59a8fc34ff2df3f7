"""Indexing on a real local Ray instance stores the same vectors and catalog rows as local indexing."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from pixquery import Library  # noqa: E402
from pixquery.indexing import Indexer  # noqa: E402
from pixquery.models.registry import load_encoder  # noqa: E402
from pixquery.scale.ray_index import embed_pending_with_ray  # noqa: E402
from pixquery.store.catalog import Catalog  # noqa: E402
from pixquery.store.open import open_store  # noqa: E402

MODEL = "random:tiny"


@pytest.fixture(scope="module")
def ray_instance() -> Iterator[None]:
    """One local Ray instance for the module: its start-up is the slow part."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def encoder():
    return load_encoder(MODEL)


def _by_path(catalog: Catalog, store) -> dict[str, np.ndarray]:
    rows = {r.id: r for r in catalog.all_files()}
    ids = store.ids()
    return {rows[int(i)].path: v for i, v in zip(ids, store.get(ids), strict=True)}


@pytest.mark.slow
def test_ray_indexing_equals_local(tmp_path: Path, photos_dir: Path, ray_instance: None, encoder) -> None:
    photos = tmp_path / "photos"
    shutil.copytree(photos_dir, photos)

    with Library.open(tmp_path / "local", encoder=encoder) as lib:
        lib.index([photos], batch_size=8)
        local_vectors = _by_path(lib.catalog, lib.store)
        local_rows = {r.path: r for r in lib.catalog.all_files()}

    index = tmp_path / "ray"
    index.mkdir()
    catalog = Catalog(index / "catalog.sqlite")
    store = open_store("flat", index / "vectors", encoder.dim)
    Indexer(catalog, store, lambda: encoder).sync([photos])
    seen: list[int] = []
    report = embed_pending_with_ray(
        catalog, store, MODEL, actors=2, batch_size=8, progress=lambda stage, done, total: seen.append(done)
    )
    ray_vectors = _by_path(catalog, store)
    ray_rows = {r.path: r for r in catalog.all_files()}

    assert report.embedded == len(local_vectors) > 30
    assert report.failed == sum(r.status == "error" for r in local_rows.values())
    assert seen and seen[-1] == report.embedded + report.failed
    assert set(ray_vectors) == set(local_vectors)
    for path, vector in local_vectors.items():
        assert float(vector @ ray_vectors[path]) >= 0.9999, path
    for path, row in local_rows.items():  # same statuses, error reasons and metadata as local indexing
        other = ray_rows[path]
        assert (other.status, other.error, other.width, other.height, other.format) == (
            row.status, row.error, row.width, row.height, row.format
        )
    assert catalog.counts()["pending"] == 0

    # Resumable: a second run finds nothing pending and embeds nothing again.
    again = embed_pending_with_ray(catalog, store, MODEL, actors=1)
    assert again.embedded == 0 and store.count() == report.embedded
    store.close()
    catalog.close()


@pytest.mark.slow
def test_library_and_cli_index_on_ray(tmp_path: Path, photos_dir: Path, ray_instance: None, encoder) -> None:
    """`Library.index(ray=...)` and `pixquery index --ray` give local indexing's vectors (CLI: its own local Ray)."""
    import json
    import os
    import subprocess
    import sys

    photos = tmp_path / "photos"
    shutil.copytree(photos_dir / "flat", photos)
    with Library.open(tmp_path / "local", encoder=encoder) as lib:
        lib.index([photos], batch_size=8)
        local_vectors = _by_path(lib.catalog, lib.store)
    with Library.open(tmp_path / "ray", model=MODEL) as lib:
        report = lib.index([photos], batch_size=8, ray="local", ray_actors=1)
        ray_vectors = _by_path(lib.catalog, lib.store)
    assert report.embed.embedded == len(local_vectors) > 5
    for path, vector in local_vectors.items():
        assert float(vector @ ray_vectors[path]) >= 0.9999, path

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.run(
        [sys.executable, "-m", "pixquery", "index", str(photos), "--index", str(tmp_path / "cli"), "--model", MODEL,
         "--json", "--ray-actors", "1", "--ray"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["embedded"] == len(local_vectors)
