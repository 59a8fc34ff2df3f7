"""Indexing with several image-tower lanes (sessions side by side) stores what one lane stores, commits batch by
batch in order, and stops and resumes like before."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pixquery.api import Library
from pixquery.models.registry import load_encoder
from tests.conftest import write_jpegs


def vectors_by_name(index: Path) -> dict[str, np.ndarray]:
    with Library.open(index) as lib:
        ids, vectors = lib.store.all_vectors()
        rows = lib.items(ids.tolist())
        return {Path(rows[int(i)].path).name: vectors[k] for k, i in enumerate(ids)}


def test_the_onnx_encoder_gives_the_indexer_one_session_per_lane() -> None:
    encoder = load_encoder("mini", precision="fp32", lanes=3)
    lanes = encoder.image_lanes()
    assert len(lanes) == 3
    assert len({id(tower) for tower in encoder._lanes}) == 3  # type: ignore[attr-defined]
    batch = np.random.default_rng(0).normal(size=(4, 3, encoder.image_size, encoder.image_size)).astype(np.float32)
    alone = encoder.encode_preprocessed(batch)
    for lane in lanes:
        assert np.allclose(lane(batch), alone, atol=1e-5)
    assert load_encoder("mini", precision="fp32", lanes=1).image_lanes()[0].__name__ == "encode_preprocessed"


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_lanes_store_what_one_lane_stores(tmp_path: Path, precision: str) -> None:
    write_jpegs(tmp_path / "photos", 45, seed=4)
    for lanes in (1, 2):
        encoder = load_encoder("mini", precision=precision, lanes=lanes)
        with Library.open(tmp_path / f"index-{lanes}", encoder=encoder) as lib:
            report = lib.index([tmp_path / "photos"], batch_size=8)
        assert report.embed.embedded == 45 and report.embed.failed == 0
    one, two = vectors_by_name(tmp_path / "index-1"), vectors_by_name(tmp_path / "index-2")
    assert one.keys() == two.keys() and len(one) == 45
    # The same batches go through the same graph (only the thread count differs): int8 quantises each batch alike.
    assert all(np.allclose(one[name], two[name], atol=1e-5) for name in one)


def test_a_stop_after_a_batch_keeps_what_was_committed_and_resumes(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    write_jpegs(photos, 40, seed=5)
    (photos / "broken.jpg").write_bytes(b"not a jpeg")
    encoder = load_encoder("mini", precision="fp32", lanes=2)
    seen: list[int] = []

    def stop_after_two_batches(stage: str, done: int, total: int) -> None:
        if stage == "embed":
            seen.append(done)
            if len(seen) == 2:
                raise KeyboardInterrupt

    with Library.open(tmp_path / "index", encoder=encoder) as lib:
        with pytest.raises(KeyboardInterrupt):
            lib.index([photos], batch_size=8, progress=stop_after_two_batches)
        counts = lib.counts()
        assert seen == [8, 16]  # progress follows the commits, in order
        assert counts["indexed"] + counts.get("error", 0) == 16 and counts["pending"] == 41 - 16
        assert lib.store.count() == counts["indexed"]  # every committed vector, nothing more
        report = lib.index([photos], batch_size=8)
        assert report.sync.resumed == 41 - 16
        counts = lib.counts()
        assert counts["indexed"] == 40 and counts["error"] == 1 and counts["pending"] == 0
        assert lib.store.count() == 40
