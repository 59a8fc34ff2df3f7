"""`reindex` switches stores in place from the raw vectors: a round trip gives the same results, and a kill at any
point (a real SIGKILL mid-build, or a crash just before the config switch) leaves a usable index."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("faiss")

from pixquery.api import Library  # noqa: E402
from pixquery.store.config import IndexConfig  # noqa: E402
from pixquery.store.derived import recall_at_k  # noqa: E402
from pixquery.store.flat import FlatStore  # noqa: E402
from pixquery.store.lock import IndexLock  # noqa: E402
from pixquery.store.open import open_store  # noqa: E402
from tests.test_store_faiss import DIM, clustered  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def make_index(path: Path, n: int, dim: int = DIM) -> tuple[np.ndarray, np.ndarray]:
    """An index directory as `pixquery index` leaves it: config.json and raw vectors in vectors/."""
    path.mkdir(parents=True)
    IndexConfig(model="random:tiny", dim=dim).save(path)
    store = FlatStore(path / "vectors", dim)
    vectors = clustered(n, dim=dim)
    ids = np.arange(n, dtype=np.int64) * 2 + 1
    for lo in range(0, n, 20_000):
        store.add(ids[lo : lo + 20_000], vectors[lo : lo + 20_000])
        store.flush()
    store.close()
    return ids, vectors


def reindex(path: Path, kind: str, **params: object) -> dict:
    """`pixquery reindex --store KIND`: the facade's store switch."""
    with Library.open(path) as lib:
        return lib.set_store(kind, **params)


def open_configured(path: Path, dim: int = DIM):
    """Open the store the way the Library does: the kind and parameters recorded in config.json."""
    config = IndexConfig.load(path)
    return open_store(config.store, path / "vectors", dim, readonly=True, params=config.store_params)


def raw_digest(path: Path) -> str:
    digest = hashlib.blake2b()
    for file in sorted((path / "vectors").glob("vectors.*")) + sorted((path / "vectors").glob("ids.*")):
        digest.update(file.read_bytes())
    return digest.hexdigest()


def test_round_trip_flat_faiss_milvus_flat(tmp_path: Path) -> None:
    pytest.importorskip("milvus_lite")
    index = tmp_path / "index"
    ids, _ = make_index(index, 2000)
    queries = clustered(40, seed=11)
    allowed = ids[::7]
    flat = open_configured(index)
    base_scores, base_ids = flat.search(queries, 10)
    base_filtered = flat.search(queries, 10, allowed_ids=allowed)[1]
    digest = raw_digest(index)

    for kind in ("faiss-hnsw", "milvus:./vectors.db"):
        info = reindex(index, kind)
        assert IndexConfig.load(index).store == kind and info["recall_at_10"] >= 0.95
        store = open_configured(index)
        assert store.describe()["state"].startswith("ready")
        assert recall_at_k(store.search(queries, 10)[1], base_ids) >= 0.95
        assert recall_at_k(store.search(queries, 10, allowed_ids=allowed)[1], base_filtered) >= 0.95
        store.close()
        assert raw_digest(index) == digest  # nothing re-embedded or rewritten: the raw vectors are the source
    assert not list((index / "vectors").glob("faiss-*"))  # the faiss files went when milvus took over

    reindex(index, "flat")
    assert not (index / "vectors.db").exists() and not list((index / "vectors").glob("milvus-*"))
    scores, found = open_configured(index).search(queries, 10)
    np.testing.assert_array_equal(found, base_ids)  # exact again, exactly
    np.testing.assert_array_equal(scores, base_scores)


def test_reindex_keeps_parameters_in_config(tmp_path: Path) -> None:
    index = tmp_path / "index"
    make_index(index, 500)
    info = reindex(index, "faiss-hnsw", M=16, efSearch=128)
    config = IndexConfig.load(index)
    assert config.store_params == {"M": 16, "efSearch": 128}
    assert info["params"]["M"] == 16 and info["built_params"] == {"M": 16, "efConstruction": 80}
    assert open_configured(index).describe()["params"]["efSearch"] == 128


def test_crash_before_config_switch_leaves_old_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    index = tmp_path / "index"
    ids, vectors = make_index(index, 1500)
    queries = clustered(20, seed=2)
    before = open_configured(index).search(queries, 10)

    def crash(self: IndexConfig, directory: Path) -> None:
        raise RuntimeError("killed between writing the new structure and the config switch")

    monkeypatch.setattr(IndexConfig, "save", crash)
    with pytest.raises(RuntimeError, match="killed"):
        reindex(index, "faiss-hnsw")
    monkeypatch.undo()
    assert IndexConfig.load(index).store == "flat"
    assert list((index / "vectors").glob("faiss-hnsw.*.index"))  # the new structure is there, unused
    after = open_configured(index).search(queries, 10)
    np.testing.assert_array_equal(after[1], before[1])
    reindex(index, "faiss-hnsw")  # the lock was released; the switch completes on the next try
    assert IndexConfig.load(index).store == "faiss-hnsw"


@pytest.mark.slow
def test_sigkill_during_rebuild_leaves_usable_index(tmp_path: Path) -> None:
    index = tmp_path / "index"
    dim = 64
    _, vectors = make_index(index, 120_000, dim=dim)
    queries = vectors[:10]
    before = open_configured(index, dim).search(queries, 5)
    code = (f"from pixquery.api import Library; Library.open({str(index)!r}).set_store('faiss-hnsw', "
            "efConstruction=200)")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE)
    lock = index / "index.lock"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (lock.exists() and lock.read_text().strip() == str(proc.pid)):
        time.sleep(0.05)
    time.sleep(1.5)  # well inside the graph build
    assert proc.poll() is None, "the rebuild finished before it could be killed; make the data set larger"
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    assert IndexConfig.load(index).store == "flat"
    after = open_configured(index, dim).search(queries, 5)
    np.testing.assert_array_equal(after[1], before[1])
    with IndexLock(index):  # the OS released the dead process's lock
        pass
    info = reindex(index, "faiss-hnsw", efConstruction=16)  # a cheap graph: this test is about the kill
    store = open_configured(index, dim)
    assert store.describe()["state"] == "ready (hnsw)"
    recall = recall_at_k(store.search(queries, 5)[1], before[1])
    assert recall >= 0.75 and recall >= info["recall_at_10"] - 0.15
