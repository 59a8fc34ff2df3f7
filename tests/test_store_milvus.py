"""The `milvus:` store on a real embedded Milvus Lite: same answers as flat, filters as Milvus expressions inside
the search, catch-up after a crash, a lost collection rebuilt from the raw vectors, exact fallback when unreachable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")

from pymilvus import MilvusClient  # noqa: E402

from pixquery.store.derived import recall_at_k  # noqa: E402
from pixquery.store.flat import FlatStore  # noqa: E402
from pixquery.store.open import discard_store, open_store  # noqa: E402
from tests.test_store_faiss import DIM, clustered, fill  # noqa: E402

KIND = "milvus:./vectors.db"


def exact(directory: Path, queries: np.ndarray, k: int, allowed: np.ndarray | None = None):
    return FlatStore(directory, DIM, readonly=True).search(queries, k, allowed_ids=allowed)


def test_milvus_lite_matches_flat_with_filters_and_writes(tmp_path: Path) -> None:
    vectors_dir = tmp_path / "vectors"
    store = open_store(KIND, vectors_dir, DIM, params={"exact_filter_max": 100})
    ids, vectors = fill(store, 1500)
    assert (tmp_path / "vectors.db").exists()  # relative to the index directory, not the store directory
    info = store.describe()
    assert info["state"] == "ready" and info["count"] == 1500 and info["recall_at_10"] >= 0.95

    queries = clustered(30, seed=9)
    scores, found = store.search(queries, 10)
    exact_scores, truth = exact(vectors_dir, queries, 10)
    assert recall_at_k(found, truth) >= 0.95
    for q, row_ids, row_scores in zip(queries, found, scores, strict=True):
        np.testing.assert_allclose(store.get(row_ids) @ q, row_scores, atol=1e-4)

    wide = ids[::4]  # 375 allowed: an `id in [...]` expression inside the Milvus search
    _, found = store.search(queries, 10, allowed_ids=wide)
    assert np.isin(found[found >= 0], wide).all()
    assert recall_at_k(found, exact(vectors_dir, queries, 10, wide)[1]) >= 0.95
    narrow = ids[::50]  # 30 allowed: exact from the raw vectors
    narrow_truth = exact(vectors_dir, queries, 10, narrow)[1]
    np.testing.assert_array_equal(store.search(queries, 10, allowed_ids=narrow)[1], narrow_truth)

    reader = open_store(KIND, vectors_dir, DIM, readonly=True)  # a search view in the same process
    replacements = clustered(10, seed=8)
    store.remove(ids[:100])
    store.add(ids[100:110], replacements)
    store.flush()
    for view in (store, reader):
        _, found = view.search(vectors[:100], 3)
        assert not np.isin(found, ids[:100]).any()
        _, found = view.search(replacements, 1)
        assert found[:, 0].tolist() == ids[100:110].tolist()
    assert reader.count() == 1400
    reader.close()
    store.close()

    discard_store(KIND, vectors_dir)  # what reindex does when switching away: the raw vectors stay
    assert not (tmp_path / "vectors.db").exists() and not list(vectors_dir.glob("milvus-*.json"))
    assert FlatStore(vectors_dir, DIM, readonly=True).count() == 1400


def test_catch_up_after_crash_and_rebuild_of_a_lost_collection(tmp_path: Path) -> None:
    vectors_dir = tmp_path / "vectors"
    store = open_store(KIND, vectors_dir, DIM)
    ids, vectors = fill(store, 800)
    collection = store.collection
    # A crash after the raw rows were committed but before Milvus followed: only the raw layer saw the writes.
    extra = clustered(50, seed=3)
    store.raw.add(np.arange(50, dtype=np.int64) + 10**6, extra)
    store.raw.remove(ids[:20])
    store.raw.flush()
    store.client.close()
    del store

    reader = open_store(KIND, vectors_dir, DIM, readonly=True)
    assert reader.search(extra[:5], 1)[1][:, 0].tolist() == list(range(10**6, 10**6 + 5))  # exact fallback
    reader.close()
    writer = open_store(KIND, vectors_dir, DIM)
    writer.flush()
    assert writer.search(extra[:5], 1)[1][:, 0].tolist() == list(range(10**6, 10**6 + 5))
    assert not np.isin(writer.search(vectors[:20], 3)[1], ids[:20]).any()
    writer.client.drop_collection(collection)  # the collection is lost (a wiped server): rebuilt from raw
    writer.close()
    again = open_store(KIND, vectors_dir, DIM)
    again.flush()
    assert again.search(vectors[30:35], 1)[1][:, 0].tolist() == ids[30:35].tolist()
    client = MilvusClient(str(tmp_path / "vectors.db"))
    assert client.get_collection_stats(collection)["row_count"] == 830
    again.close()


def test_unreachable_server_read_view_answers_exactly(tmp_path: Path) -> None:
    flat = FlatStore(tmp_path, DIM)
    ids, vectors = fill(flat, 300)
    view = open_store("milvus:http://127.0.0.1:9", tmp_path, DIM, readonly=True, params={"connect_timeout": 1})
    assert view.describe()["state"].startswith("exact (milvus unavailable")
    np.testing.assert_array_equal(view.search(vectors[:5], 4)[1], flat.search(vectors[:5], 4)[1])
