"""Negatives and re-ranking: the arithmetic of each step, and their effect through `execute`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_query_helpers import FakeEncoder, make_index

from pixquery.errors import QueryError
from pixquery.models.base import l2_normalize
from pixquery.query import negatives as neg
from pixquery.query import rerank as rr
from pixquery.query.engine import execute
from pixquery.query.spec import QuerySpec, Rerank, WeightedImage, WeightedText

E = np.eye(4, dtype=np.float32)


# --- negatives ---------------------------------------------------------------------------------------------------


def test_subtract_moves_the_query_away_from_the_negative() -> None:
    q = l2_normalize(np.array([1, 1, 0, 0]))
    out = neg.subtract(q, E[1:2], np.array([0.5]))
    assert np.allclose(out, l2_normalize(q - 0.5 * E[1]))
    assert np.allclose(neg.subtract(q, np.zeros((0, 4)), np.zeros(0)), q)


def test_penalty_only_touches_results_more_like_the_negative_than_tau() -> None:
    candidates = np.array([[1, 0, 0, 0], [0.6, 0.8, 0, 0]], np.float32)
    scores = np.array([0.9, 0.9], np.float32)
    out = neg.penalty(scores, candidates, E[1:2], np.array([2.0]), np.array([0.5]))
    assert np.allclose(out, [0.9, 0.9 - 2.0 * (0.8 - 0.5)])


def test_penalty_calibration_uses_robust_statistics_of_both_score_distributions() -> None:
    sample = np.zeros((101, 4), np.float32)
    sample[:, 0] = np.linspace(0.0, 0.5, 101)  # query e0 scores 0..0.5: spread 1.4826 * 0.125
    sample[:, 1] = np.linspace(0.0, 1.0, 101)  # negative e1 scores 0..1: median 0.5, spread 1.4826 * 0.25
    taus, scales = neg.calibrate(E[0], E[1:2], sample, z=1.0)
    assert np.isclose(taus[0], 0.5 + 1.4826 * 0.25, atol=1e-4)
    assert np.isclose(scales[0], 0.5, atol=1e-4)
    out = neg.penalty(np.array([1.0]), np.array([[0, 1, 0, 0]], np.float32), E[1:2], np.array([1.0]), taus, scales)
    assert np.isclose(out[0], 1.0 - 0.5 * (1.0 - taus[0]), atol=1e-5) and out[0] < 1.0


@pytest.fixture
def beach_index(tmp_path: Path):
    dog, beach = E[0], E[1]
    vectors = np.array([dog + 0.4 * beach, dog + 0.5 * E[2], beach, E[2], E[3]], np.float32)
    return make_index(tmp_path, vectors, encoder=FakeEncoder(texts={"dog": dog, "beach": beach}))


def test_negative_text_demotes_the_unwanted_scene_in_both_modes(beach_index) -> None:
    assert [h.id for h in execute(QuerySpec(texts=[WeightedText("dog")], k=2), beach_index)] == [1, 2]
    for mode in ("subtract", "penalty"):
        spec = QuerySpec(texts=[WeightedText("dog")], k=2, negative_texts=[WeightedText("beach")], negative_mode=mode)
        assert [h.id for h in execute(spec, beach_index)] == [2, 1], mode


# --- hubness -----------------------------------------------------------------------------------------------------


def _bank_stats_brute(vectors: np.ndarray, bank: np.ndarray, beta: float, k: int) -> dict[str, np.ndarray]:
    sims = vectors @ bank.T
    lse = np.log(np.exp(beta * sims).sum(1))
    knn = np.sort(sims, axis=1)[:, -k:].mean(1)
    active = np.zeros(len(vectors), bool)
    active[sims.argmax(0)] = True
    return {"mean": sims.mean(1), "std": sims.std(1), "lse": lse, "knn": knn, "active": active}


def test_bank_statistics_match_a_brute_force_computation_in_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    vectors = l2_normalize(rng.normal(size=(50, 8)))
    bank = l2_normalize(rng.normal(size=(20, 8)))
    monkeypatch.setattr(rr, "CHUNK", 7)
    ids = np.arange(100, 150)[::-1].copy()  # unsorted ids: statistics come back sorted by id
    stats = rr.bank_statistics(ids, vectors, bank, beta=10.0, csls_k=3)
    brute = _bank_stats_brute(vectors[::-1], bank, 10.0, 3)
    assert np.array_equal(stats.ids, np.arange(100, 150))
    assert np.allclose(stats.mean, brute["mean"], atol=1e-5)
    assert np.allclose(stats.std, brute["std"], atol=1e-5)
    assert np.allclose(stats.lse, brute["lse"], atol=1e-4)
    assert np.allclose(stats.knn_mean, brute["knn"], atol=1e-5)
    assert np.array_equal(stats.active, brute["active"])


def test_bank_statistics_mask_self_matches_of_an_image_bank() -> None:
    vectors = l2_normalize(np.array([[1, 0], [0.9, 0.1], [0, 1]], np.float32))
    stats = rr.bank_statistics(np.array([1, 2, 3]), vectors, vectors, beta=1.0, csls_k=1, bank_ids=np.array([1, 2, 3]))
    # Item 1's nearest bank entry other than itself is item 2.
    assert np.isclose(stats.knn_mean[0], vectors[0] @ vectors[1])


def test_qbnorm_demotes_a_hub_when_the_top_result_is_one() -> None:
    stats = rr.BankStats(
        ids=np.array([1, 2]), mean=np.zeros(2), std=np.ones(2), lse=np.array([5.0, 1.0]),
        knn_mean=np.zeros(2), active=np.array([True, False]), beta=10.0,
    )
    scores = np.array([0.5, 0.45], np.float32)
    out = rr.qbnorm(scores, np.array([1, 2]), stats)
    assert np.allclose(out, [10 * 0.5 - 5.0, 10 * 0.45 - 1.0])
    assert out[1] > out[0]
    # When the top result is not a potential hub, the raw ranking stays.
    assert np.allclose(rr.qbnorm(np.array([0.4, 0.45]), np.array([1, 2]), stats), [0.4, 0.45])


def test_csls_subtracts_the_neighbourhood_densities() -> None:
    stats = rr.BankStats(np.array([1, 2, 3]), *(np.zeros(3),) * 3, np.array([0.5, 0.1, 0.0]),
                         np.ones(3, bool), 1.0)
    scores = np.array([0.6, 0.5, 0.1], np.float32)
    out = rr.csls(scores, np.array([1, 2, 3]), stats, k=2)
    r_q = (0.6 + 0.5) / 2
    assert np.allclose(out, 2 * scores - np.array([0.5, 0.1, 0.0]) - r_q)


def test_hubness_reduction_through_execute_with_a_query_bank(tmp_path: Path) -> None:
    hub = l2_normalize(np.array([1, 1, 1, 1], np.float32))
    target = l2_normalize(np.array([0, 1.0, 0.3, 0], np.float32))
    vectors = np.array([hub, target, E[2], E[3], E[0]], np.float32)
    texts = {"query": [0.5, 1, 0.6, 0.5], "b1": [1, 0, 1, 0], "b2": [0, 0, 1, 1], "b3": [1, 0, 0, 1]}
    ctx = make_index(tmp_path, vectors, encoder=FakeEncoder(texts=texts))
    ctx.query_bank = ["b1", "b2", "b3"]
    plain = QuerySpec(texts=[WeightedText("query")], k=1)
    assert execute(plain, ctx)[0].id == 1  # the hub wins on raw cosine
    for method in ("qbnorm", "csls"):
        spec = QuerySpec(texts=[WeightedText("query")], k=1, rerank=Rerank(hubness=method, options={"csls_k": 2}))
        assert execute(spec, ctx)[0].id == 2, method


# --- expansion and diversity -------------------------------------------------------------------------------------


def test_alpha_qe_adds_the_top_results_weighted_by_score_power() -> None:
    q = E[0]
    top = np.array([[0.8, 0.6, 0, 0], [0.6, 0, 0.8, 0]], np.float32)
    out = rr.alpha_qe(q, top, np.array([0.8, 0.6]), alpha=2.0)
    assert np.allclose(out, l2_normalize(q + 0.64 * top[0] + 0.36 * top[1]))


def test_dba_averages_each_candidate_with_its_neighbours() -> None:
    neighbours = np.array([[[1, 0, 0, 0], [0, 1, 0, 0]]], np.float32)
    out = rr.dba(neighbours, np.array([[1.0, 0.5]]), alpha=1.0)
    assert np.allclose(out[0], l2_normalize(np.array([1, 0.5, 0, 0])))


def test_mmr_trades_relevance_for_novelty() -> None:
    vectors = l2_normalize(np.array([[1, 0, 0, 0], [0.99, 0.1, 0, 0], [0.7, 0.7, 0, 0], [0, 0, 1, 0]], np.float32))
    scores = np.array([0.9, 0.89, 0.7, 0.1], np.float32)  # relevance scaled over the pool: 1, 0.99, 0.75, 0
    assert rr.mmr(scores, vectors, 2, diversity=0.0).tolist() == [0, 1]
    assert rr.mmr(scores, vectors, 2, diversity=0.5).tolist() == [0, 2]


def test_image_query_expansion_and_diversity_through_execute(tmp_path: Path) -> None:
    # Item 1 is the query image; 2 and 3 near-duplicates of it; 4 a different view of the same place.
    vectors = l2_normalize(np.array([[1, 0, 0, 0], [1, 0.05, 0, 0], [1, 0.06, 0, 0], [0.8, 0, 0.6, 0],
                                     [0, 0, 0, 1]], np.float32))
    ctx = make_index(tmp_path, vectors)
    image = [WeightedImage(catalog_id=1)]
    assert [h.id for h in execute(QuerySpec(images=image, k=3), ctx)] == [1, 2, 3]
    diverse = QuerySpec(images=image, k=3, rerank=Rerank(diversity=0.6))
    assert 4 in [h.id for h in execute(diverse, ctx)]
    for expansion in ("aqe", "dba"):
        spec = QuerySpec(images=image, k=4, rerank=Rerank(expansion=expansion))
        assert [h.id for h in execute(spec, ctx)][:3] == [1, 2, 3], expansion


def test_rerank_options_are_checked() -> None:
    with pytest.raises(QueryError, match="unknown rerank option 'gamma'"):
        Rerank(options={"gamma": 1}).validate()
    with pytest.raises(QueryError, match="must be a positive number"):
        Rerank(options={"beta": -1}).validate()
    with pytest.raises(QueryError, match="rerank.hubness must be one of"):
        Rerank(hubness="magic").validate()
    with pytest.raises(QueryError, match="diversity must be between 0 and 1"):
        Rerank(diversity=2).validate()


def test_hubness_for_image_queries_uses_the_collection_as_its_bank(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    vectors = rng.normal(size=(60, 8))
    ctx = make_index(tmp_path, vectors, encoder=FakeEncoder(8))
    for method in ("qbnorm", "csls"):
        spec = QuerySpec(images=[WeightedImage(catalog_id=7)], k=5, rerank=Rerank(hubness=method))
        hits = execute(spec, ctx)
        assert len(hits) == 5 and len({h.id for h in hits}) == 5
        assert hits[0].id == 7, method  # the image itself stays its own best match


DEMO_PHOTOS = Path(__file__).resolve().parents[1] / "pixquery" / "data" / "demo_photos"
PARROTS = {"parrot-and-flowers.jpg", "parrot-looks-into-the-camera.jpg"}
OTHER_BIRDS = {"duck.jpg", "kookaburras.jpg", "magpie.jpg"}


def test_a_negative_removes_what_it_names_on_real_photos(tmp_path: Path) -> None:
    """"Birds but not parrots" on the shipped demo photos (five birds, two of them parrots) with conse."""
    from pixquery.api import Library

    with Library.open(tmp_path / "index", model="conse") as lib:
        lib.index([DEMO_PHOTOS])

        def top(spec: QuerySpec) -> set[str]:
            return {Path(h.path).name for h in lib.query(spec).hits}

        plain = top(QuerySpec(texts=[WeightedText("a bird")], k=3))
        assert plain & PARROTS  # without the negative a parrot is among the first three
        assert QuerySpec(texts=[WeightedText("x")]).negative_mode == "penalty"  # the default mode, measured
        without = top(QuerySpec(texts=[WeightedText("a bird")], k=3, negative_texts=[WeightedText("a parrot")]))
        assert without == OTHER_BIRDS  # the parrots are gone, the other birds stay
