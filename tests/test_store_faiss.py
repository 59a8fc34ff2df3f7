"""faiss stores against the exact flat store: same answers (HNSW at measured recall), filters inside the search,
removals, persistence and catch-up after a crash, corrupt files rebuilt from the raw vectors, `auto`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("faiss")

from pixquery.store.auto import choose_index, hnsw_bytes, ivf_nlist  # noqa: E402
from pixquery.store.derived import recall_at_k  # noqa: E402
from pixquery.store.faiss_store import FaissStore  # noqa: E402
from pixquery.store.flat import FlatStore  # noqa: E402
from pixquery.store.open import open_store  # noqa: E402

DIM = 32
SMALL_IVF = {"min_train_rows": 1000, "m": 16, "nlist": 32}


def clustered(n: int, seed: int = 0, dim: int = DIM) -> np.ndarray:
    """Unit vectors in 20 clusters (image embeddings are clustered; uniform noise would be unrealistically hard)."""
    centers = np.random.default_rng(1234).standard_normal((20, dim))  # one mixture: every draw is in-distribution
    rng = np.random.default_rng(seed)
    x = centers[rng.integers(20, size=n)] + rng.normal(0, 0.35, (n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def fill(store, n: int, seed: int = 0, chunk: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """Add n vectors in several flushed batches (as indexing does); ids are sparse like catalog ids."""
    vectors = clustered(n, seed)
    ids = np.arange(n, dtype=np.int64) * 3 + 5
    for lo in range(0, n, chunk):
        store.add(ids[lo : lo + chunk], vectors[lo : lo + chunk])
        store.flush()
    return ids, vectors


def exact(directory: Path, queries: np.ndarray, k: int, allowed: np.ndarray | None = None):
    flat = FlatStore(directory, DIM, readonly=True)
    return flat.search(queries, k, allowed_ids=allowed)


@pytest.mark.parametrize("kind,params", [("faiss-hnsw", {}), ("faiss-ivfpq", SMALL_IVF)])
def test_same_top_k_as_flat_at_measured_recall(tmp_path: Path, kind: str, params: dict) -> None:
    store = open_store(kind, tmp_path, DIM, params=params)
    ids, vectors = fill(store, 3000)
    store.rebuild()  # measures recall on a sample at build time
    info = store.describe()
    assert info["state"].startswith("ready") and info["recall_at_10"] >= 0.9
    assert info["count"] == 3000 and info["index_memory_bytes"] > 0 and info["index_disk_bytes"] > 0

    queries = clustered(50, seed=9)
    scores, found = store.search(queries, 10)
    exact_scores, truth = exact(tmp_path, queries, 10)
    recall = recall_at_k(found, truth)
    assert recall >= info["recall_at_10"] - 0.05 and recall >= 0.9
    # Scores are true inner products of the returned vectors, best first.
    for q, row_ids, row_scores in zip(queries, found, scores, strict=True):
        np.testing.assert_allclose(store.get(row_ids) @ q, row_scores, atol=1e-4)
        assert np.all(np.diff(row_scores) <= 1e-6)
    store.close()


def test_ivfpq_stays_exact_until_it_can_train(tmp_path: Path) -> None:
    store = open_store("faiss-ivfpq", tmp_path, DIM, params=SMALL_IVF)
    fill(store, 600)
    assert store.describe()["state"].startswith("exact")
    queries = clustered(20, seed=4)
    np.testing.assert_array_equal(store.search(queries, 10)[1], exact(tmp_path, queries, 10)[1])
    fill(store, 1200, seed=1)  # now 1200 ids (the first 600 replaced), enough to train on
    assert store.describe()["state"] == "ready (ivfpq)"
    store.close()


@pytest.mark.parametrize("kind,params", [("faiss-hnsw", {}), ("faiss-ivfpq", SMALL_IVF)])
def test_filters_run_inside_the_search(tmp_path: Path, kind: str, params: dict) -> None:
    store = open_store(kind, tmp_path, DIM, params={**params, "exact_filter_max": 200})
    ids, _ = fill(store, 3000)
    queries = clustered(30, seed=5)

    wide = ids[::3]  # 1000 allowed: above exact_filter_max, so the index searches with an IDSelector
    _, found = store.search(queries, 10, allowed_ids=wide)
    assert np.isin(found[found >= 0], wide).all()
    assert recall_at_k(found, exact(tmp_path, queries, 10, wide)[1]) >= 0.9

    narrow = ids[::40]  # 75 allowed: answered exactly from the raw vectors
    scores, found = store.search(queries, 10, allowed_ids=narrow)
    exact_scores, truth = exact(tmp_path, queries, 10, narrow)
    np.testing.assert_array_equal(found, truth)
    np.testing.assert_allclose(scores, exact_scores, rtol=1e-6)

    tiny = ids[:3]  # fewer allowed than k: padded with -1 / -inf
    scores, found = store.search(queries[:1], 5, allowed_ids=np.append(tiny, 10**9))
    assert sorted(found[0, :3].tolist()) == sorted(tiny.tolist()) and found[0, 3:].tolist() == [-1, -1]
    assert np.isneginf(scores[0, 3:]).all()
    store.close()


@pytest.mark.parametrize("kind,params", [("faiss-hnsw", {}), ("faiss-ivfpq", SMALL_IVF)])
def test_removed_and_replaced_vectors(tmp_path: Path, kind: str, params: dict) -> None:
    store = open_store(kind, tmp_path, DIM, params=params)
    ids, vectors = fill(store, 2000)
    store.remove(ids[:100])
    replacements = clustered(10, seed=8)
    store.add(ids[100:110], replacements)  # replaced: the old vectors must not be found any more
    store.flush()
    _, found = store.search(vectors[:110], 5)
    assert not np.isin(found, ids[:100]).any()
    scores, found = store.search(vectors[100:110], 1)
    assert not ((found[:, 0] == ids[100:110]) & (scores[:, 0] > 0.999)).any()
    _, found = store.search(replacements, 1)
    assert np.mean(found[:, 0] == ids[100:110]) >= 0.9
    assert store.count() == 1900
    store.close()


def test_reopen_uses_saved_index_and_catches_up_after_a_crash(tmp_path: Path) -> None:
    store = open_store("faiss-hnsw", tmp_path, DIM, params={"save_every": 10**9})
    ids, vectors = fill(store, 1500)
    store.close()  # saves the index file
    manifest = json.loads((tmp_path / "faiss-hnsw.json").read_text())
    assert manifest["cursor"]["rows"] == 1500

    # A writer adds and removes, flushes the raw rows, then dies without saving the index.
    crashed = open_store("faiss-hnsw", tmp_path, DIM, params={"save_every": 10**9})
    extra = clustered(300, seed=7)
    crashed.add(np.arange(300, dtype=np.int64) + 10**6, extra)
    crashed.remove(ids[:50])
    crashed.flush()
    del crashed
    assert json.loads((tmp_path / "faiss-hnsw.json").read_text())["cursor"]["rows"] == 1500

    for readonly in (True, False):  # a search view and the next writer both catch up from the raw rows
        reopened = open_store("faiss-hnsw", tmp_path, DIM, readonly=readonly)
        _, found = reopened.search(extra[:20], 1)
        assert found[:, 0].tolist() == (np.arange(20) + 10**6).tolist()
        _, found = reopened.search(vectors[:50], 3)
        assert not np.isin(found, ids[:50]).any()
        assert reopened.describe()["build_seconds"] == manifest["info"]["build_seconds"]  # loaded, not rebuilt
        reopened.close()


def test_corrupt_or_missing_index_file_is_rebuilt_from_raw(tmp_path: Path) -> None:
    store = open_store("faiss-hnsw", tmp_path, DIM)
    ids, vectors = fill(store, 800)
    store.close()
    manifest = json.loads((tmp_path / "faiss-hnsw.json").read_text())
    index_file = tmp_path / f"faiss-hnsw.{manifest['seq']}.index"
    index_file.write_bytes(b"garbage")
    (tmp_path / "faiss-hnsw.99.index.tmp").write_bytes(b"a save that never reached its manifest")

    reader = open_store("faiss-hnsw", tmp_path, DIM, readonly=True)
    assert reader.describe()["state"].startswith("exact")  # a reader cannot rebuild: it searches exactly
    np.testing.assert_array_equal(reader.search(vectors[:5], 3)[1], exact(tmp_path, vectors[:5], 3)[1])

    writer = open_store("faiss-hnsw", tmp_path, DIM)
    assert not (tmp_path / "faiss-hnsw.99.index.tmp").exists()
    _, found = writer.search(vectors[:20], 1)
    assert found[:, 0].tolist() == ids[:20].tolist()
    assert writer.describe()["state"] == "ready (hnsw)"
    writer.close()
    reader.search(vectors[:1], 1)  # the reader picks up the rebuilt index the writer saved
    assert reader.describe()["state"] == "ready (hnsw)"


def test_compaction_rebuilds_and_read_view_follows_writer(tmp_path: Path) -> None:
    writer = open_store("faiss-hnsw", tmp_path, DIM, params={"save_every": 1})
    ids, vectors = fill(writer, 1000)
    reader = open_store("faiss-hnsw", tmp_path, DIM, readonly=True)
    assert reader.search(vectors[:1], 1)[1][0, 0] == ids[0]
    writer.remove(ids[:400])  # 40% dead: the raw store compacts into a new generation
    writer.flush()
    assert writer.raw.gen == 1 and writer.describe()["state"] == "ready (hnsw)"
    _, found = reader.search(vectors[:400], 1)
    assert not np.isin(found, ids[:400]).any()
    assert reader.count() == 600
    writer.close()


def test_auto_chooses_by_size_and_memory() -> None:
    assert choose_index(5_000, 512) == "flat"
    assert choose_index(2_000_000, 512, memory_budget=64 << 30) == "hnsw"
    assert choose_index(2_000_000, 512, memory_budget=1 << 30) == "ivfpq"
    assert hnsw_bytes(1_000_000, 512) > 2 * 10**9
    assert ivf_nlist(1_000_000) == 4096 and ivf_nlist(100_000) == 1024 and ivf_nlist(20_000) == 512


def test_auto_store_moves_from_flat_to_an_index(tmp_path: Path) -> None:
    store = open_store("auto", tmp_path, DIM, params={"flat_max_rows": 1000, **SMALL_IVF})
    ids, vectors = fill(store, 900)
    assert store.describe()["state"].startswith("exact")
    fill(store, 1500, seed=1)
    assert store.describe()["state"] == "ready (hnsw)"
    store.close()
    lean = FaissStore(tmp_path, DIM, params={"flat_max_rows": 1000, "memory_budget": 1000, **SMALL_IVF}, kind="auto")
    lean.flush()  # the budget no longer fits a graph: rebuilt as IVF-PQ
    assert lean.describe()["state"] == "ready (ivfpq)"
    queries = clustered(20, seed=3)
    assert recall_at_k(lean.search(queries, 10)[1], exact(tmp_path, queries, 10)[1]) >= 0.85
    lean.close()
