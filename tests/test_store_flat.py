"""The exact store: correct top-k, durable flushes, crash-safe files, filters inside the search."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pixquery.models.base import l2_normalize
from pixquery.store.flat import FlatStore, top_k


def _vectors(n: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    return l2_normalize(np.random.default_rng(seed).normal(size=(n, dim)))


def test_search_matches_brute_force(tmp_path: Path) -> None:
    store = FlatStore(tmp_path, 16)
    vecs = _vectors(200)
    ids = np.arange(1000, 1200)
    store.add(ids, vecs)
    store.flush()
    queries = _vectors(5, seed=1)
    scores, got = store.search(queries, 10)
    expected = ids[np.argsort(-(queries @ vecs.T), axis=1)[:, :10]]
    assert (got == expected).all()
    assert np.allclose(scores, np.sort(queries @ vecs.T, axis=1)[:, ::-1][:, :10], atol=1e-6)


def test_flush_is_durable_and_unflushed_adds_vanish_after_a_crash(tmp_path: Path) -> None:
    store = FlatStore(tmp_path, 16)
    store.add(np.arange(10), _vectors(10))
    store.flush()
    store.add(np.arange(10, 20), _vectors(10, seed=2))
    store._write_pending()  # bytes reach the file, but the manifest (the commit point) is never written
    reopened = FlatStore(tmp_path, 16)
    assert reopened.count() == 10
    assert (tmp_path / "vectors.0.f32").stat().st_size == 10 * 16 * 4  # uncommitted tail truncated


def test_torn_append_is_ignored(tmp_path: Path) -> None:
    store = FlatStore(tmp_path, 16)
    store.add(np.arange(3), _vectors(3))
    store.flush()
    with open(tmp_path / "vectors.0.f32", "ab") as f:
        f.write(b"\x00" * 37)  # a partial row from a killed writer
    assert FlatStore(tmp_path, 16).count() == 3


def test_replace_remove_and_compaction(tmp_path: Path) -> None:
    store = FlatStore(tmp_path, 16)
    vecs = _vectors(20)
    store.add(np.arange(20), vecs)
    store.flush()
    store.add(np.array([3]), vecs[7:8])  # replace id 3 with another vector
    store.remove(np.arange(10, 20))
    store.flush()  # half the rows are dead now: compaction runs
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["gen"] == 1 and manifest["dead"] == []
    assert not (tmp_path / "vectors.0.f32").exists()
    reopened = FlatStore(tmp_path, 16)
    assert sorted(reopened.ids().tolist()) == list(range(10))
    assert np.allclose(reopened.get(np.array([3])), vecs[7])
    _, ids = reopened.search(vecs[7:8], 2)
    assert set(ids[0].tolist()) == {3, 7}


def test_allowed_ids_restrict_inside_the_search(tmp_path: Path) -> None:
    store = FlatStore(tmp_path, 16)
    vecs = _vectors(100)
    store.add(np.arange(100), vecs)
    store.flush()
    allowed = np.array([5, 17, 42, 99, 12345])  # an unknown id is ignored
    scores, ids = store.search(vecs[0:1], 10, allowed_ids=allowed)
    assert set(ids[0][ids[0] >= 0].tolist()) == {5, 17, 42, 99}
    assert (ids[0][4:] == -1).all() and np.isneginf(scores[0][4:]).all()


def test_broad_filter_masks_and_matches_the_narrow_path(tmp_path: Path) -> None:
    store = FlatStore(tmp_path, 16)
    vecs = _vectors(100)
    store.add(np.arange(100), vecs)
    store.remove(np.array([3]))
    store.flush()
    broad = np.array([i for i in range(100) if i % 4 != 1])  # 75 of 100 ids (plus a deleted one): the mask path
    scores, ids = store.search(vecs[:3], 100, allowed_ids=broad)
    for q in range(3):
        found = ids[q][ids[q] >= 0]
        assert set(found.tolist()) == set(broad.tolist()) - {3}
        expected = np.sort(vecs[found] @ vecs[q])[::-1]
        assert np.allclose(scores[q][: len(found)], expected, atol=1e-5)


def test_readonly_view_follows_a_writer(tmp_path: Path) -> None:
    writer = FlatStore(tmp_path, 16)
    writer.add(np.arange(5), _vectors(5))
    writer.flush()
    reader = FlatStore(tmp_path, 16, readonly=True)
    assert reader.count() == 5
    writer.add(np.arange(5, 9), _vectors(4, seed=3))
    writer.flush()
    assert reader.count() == 9
    with pytest.raises(PermissionError):
        reader.flush()


def test_dimension_mismatch_is_refused(tmp_path: Path) -> None:
    FlatStore(tmp_path, 16)
    with pytest.raises(ValueError, match="dimension is 16"):
        FlatStore(tmp_path, 32)


def test_top_k_breaks_ties_by_lower_id_and_pads() -> None:
    scores = np.array([[0.5, 0.9, 0.5, 0.9]], np.float32)
    s, i = top_k(scores, np.array([40, 30, 20, 10]), 6)
    assert i[0].tolist() == [10, 30, 20, 40, -1, -1]
    assert np.isneginf(s[0, 4:]).all()
