"""Metrics against hand-computed cases: ties, duplicates, K beyond the gallery, junk images."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pixquery.eval import metrics as m

# ------------------------------------------------------------------------------------------------------
# Image-text retrieval
# ------------------------------------------------------------------------------------------------------

# 4 captions x 3 images; captions 0 and 1 describe image 0, caption 2 image 1, caption 3 image 2.
SCORES = np.array(
    [
        [0.9, 0.1, 0.3],
        [0.2, 0.8, 0.1],
        [0.5, 0.4, 0.6],
        [0.1, 0.7, 0.7],
    ]
)
OWNER = np.array([0, 0, 1, 2])


def test_retrieval_ranks_by_hand() -> None:
    t2i, i2t = m.retrieval_ranks(SCORES, OWNER)
    # caption 3 ties image 1 and image 2 at 0.7: the lower index (image 1) ranks first.
    assert t2i.tolist() == [0, 1, 2, 1]
    # image 0: its best caption (0, 0.9) is top; image 1: captions 1 (0.8) and 3 (0.7) beat caption 2 (0.4).
    assert i2t.tolist() == [0, 2, 0]


def test_retrieval_recall_by_hand() -> None:
    result = m.retrieval_recall_at_k(SCORES, OWNER, ks=(1, 2, 3))
    assert result == pytest.approx(
        {"t2i_r@1": 0.25, "t2i_r@2": 0.75, "t2i_r@3": 1.0, "i2t_r@1": 2 / 3, "i2t_r@2": 2 / 3, "i2t_r@3": 1.0}
    )


def test_retrieval_k_beyond_gallery() -> None:
    result = m.retrieval_recall_at_k(SCORES, OWNER, ks=(10,))
    assert result == {"t2i_r@10": 1.0, "i2t_r@10": 1.0}


def test_retrieval_ties_break_by_lower_index() -> None:
    scores = np.zeros((3, 3))
    t2i, i2t = m.retrieval_ranks(scores, np.array([0, 1, 2]))
    assert t2i.tolist() == [0, 1, 2]
    assert i2t.tolist() == [0, 1, 2]
    assert m.retrieval_recall_at_k(scores, np.array([0, 1, 2]), ks=(1,)) == pytest.approx(
        {"t2i_r@1": 1 / 3, "i2t_r@1": 1 / 3}
    )


def test_retrieval_image_without_captions_is_a_miss() -> None:
    # CLIP_benchmark divides by the number of positives (0) and the NaN fails its "> 0" test: a miss.
    scores = np.array([[0.9, 0.1, 0.2], [0.8, 0.3, 0.1]])
    t2i, i2t = m.retrieval_ranks(scores, np.array([0, 0]))
    assert t2i.tolist() == [0, 0]
    assert i2t[0] == 0 and math.isinf(i2t[1]) and math.isinf(i2t[2])
    assert m.retrieval_recall_at_k(scores, np.array([0, 0]), ks=(3,))["i2t_r@3"] == pytest.approx(1 / 3)


def test_retrieval_matches_topk_definition_on_random_scores() -> None:
    rng = np.random.default_rng(0)
    scores = rng.standard_normal((60, 15))
    owner = np.repeat(np.arange(15), 4)
    result = m.retrieval_recall_at_k(scores, owner, ks=(1, 3, 5))
    for k in (1, 3, 5):
        top_images = np.argsort(-scores, axis=1)[:, :k]
        t2i = np.mean([owner[i] in top_images[i] for i in range(60)])
        top_texts = np.argsort(-scores.T, axis=1)[:, :k]
        i2t = np.mean([np.any(owner[top_texts[j]] == j) for j in range(15)])
        assert result[f"t2i_r@{k}"] == pytest.approx(t2i)
        assert result[f"i2t_r@{k}"] == pytest.approx(i2t)


def test_retrieval_matches_torch_topk() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    scores = rng.standard_normal((90, 30)).astype(np.float32)
    owner = np.sort(rng.integers(0, 30, 90))
    positive = torch.zeros(scores.shape, dtype=torch.bool)
    positive[torch.arange(90), torch.from_numpy(owner)] = True
    result = m.retrieval_recall_at_k(scores, owner, ks=(1, 5))
    for k in (1, 5):
        for key, s, p in (("t2i", scores, positive), ("i2t", scores.T, positive.T)):
            s = torch.from_numpy(np.ascontiguousarray(s))
            hit = p.gather(1, torch.topk(s, k, dim=1).indices).any(dim=1).double().mean().item()
            assert result[f"{key}_r@{k}"] == pytest.approx(hit)


def test_retrieval_blocks_do_not_change_results(monkeypatch) -> None:
    rng = np.random.default_rng(2)
    scores = rng.integers(0, 4, size=(40, 12)).astype(np.float32)  # many ties
    owner = rng.integers(0, 12, 40)
    whole = m.retrieval_ranks(scores, owner)
    monkeypatch.setattr(m, "_BLOCK_ELEMENTS", 7)
    blocked = m.retrieval_ranks(scores, owner)
    assert np.array_equal(whole[0], blocked[0]) and np.array_equal(whole[1], blocked[1])


def test_retrieval_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="NaN"):
        m.retrieval_recall_at_k(np.array([[np.nan, 1.0]]), np.array([0]))
    with pytest.raises(ValueError, match="outside"):
        m.retrieval_recall_at_k(SCORES, np.array([0, 0, 1, 3]))
    with pytest.raises(ValueError, match="shape"):
        m.retrieval_recall_at_k(SCORES, np.array([0, 1]))
    with pytest.raises(ValueError, match="positive integer"):
        m.retrieval_recall_at_k(SCORES, OWNER, ks=(0,))


def test_recall_from_ranks_on_a_subset() -> None:
    t2i, _ = m.retrieval_ranks(SCORES, OWNER)
    heldout = np.array([False, False, True, True])
    assert m.recall_from_ranks(t2i[heldout], (1, 2)) == {"r@1": 0.0, "r@2": 0.5}
    assert math.isnan(m.recall_from_ranks(np.array([]), (1,))["r@1"])


# ------------------------------------------------------------------------------------------------------
# Ranking a score matrix
# ------------------------------------------------------------------------------------------------------


def test_rank_gallery_ties_and_k() -> None:
    scores = np.array([[0.5, 0.9, 0.9, 0.1, 0.9]])
    assert m.rank_gallery(scores).tolist() == [[1, 2, 4, 0, 3]]
    assert m.rank_gallery(scores, k=2).tolist() == [[1, 2]]
    assert m.rank_gallery(scores, k=4).tolist() == [[1, 2, 4, 0]]
    assert m.rank_gallery(scores, k=50).tolist() == [[1, 2, 4, 0, 3]]
    with pytest.raises(ValueError):
        m.rank_gallery(scores, k=0)


def test_rank_gallery_topk_equals_full_sort_prefix() -> None:
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 5, size=(20, 40)).astype(np.float64)
    full = m.rank_gallery(scores)
    for k in (1, 3, 7, 39):
        assert np.array_equal(m.rank_gallery(scores, k=k), full[:, :k])


# ------------------------------------------------------------------------------------------------------
# Classification
# ------------------------------------------------------------------------------------------------------


def test_topk_accuracy_by_hand() -> None:
    logits = np.array(
        [
            [0.1, 0.7, 0.2, 0.0],  # label 1: top-1 hit
            [0.5, 0.5, 0.0, 0.1],  # label 1 ties class 0, which ranks first: rank 1
            [0.5, 0.5, 0.0, 0.1],  # label 0 wins the same tie: rank 0
            [0.4, 0.3, 0.2, 0.1],  # label 3: last, rank 3
        ]
    )
    labels = np.array([1, 1, 0, 3])
    result = m.topk_accuracy(logits, labels, ks=(1, 2, 4, 5))
    assert result["acc@1"] == 0.5
    assert result["acc@2"] == 0.75
    assert result["acc@4"] == 1.0
    # Fewer classes than k: NaN, as CLIP_benchmark reports acc5 on datasets with under 5 classes.
    assert math.isnan(result["acc@5"])


def test_mean_per_class_recall_by_hand() -> None:
    logits = np.eye(4)[[0, 1, 1, 1]]  # predictions 0, 1, 1, 1
    labels = np.array([0, 0, 1, 2])
    # class 0: 1/2, class 1: 1/1, class 2: 0/1; class 3 never occurs and is left out.
    assert m.mean_per_class_recall(logits, labels) == pytest.approx(0.5)


def test_classification_rejects_bad_labels() -> None:
    with pytest.raises(ValueError, match="outside"):
        m.topk_accuracy(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match="int array"):
        m.topk_accuracy(np.zeros((2, 3)), np.array([0.0, 1.0]))


# ------------------------------------------------------------------------------------------------------
# Ranked lists: recall, MRR, AP@k
# ------------------------------------------------------------------------------------------------------


def test_first_relevant_rank_and_mrr() -> None:
    ranked = [["a", "b", "c"], ["c", "b", "a"], ["a", "a", "b"]]
    relevant = [["b"], ["x"], ["b"]]
    ranks = m.first_relevant_rank(ranked, relevant)
    # A repeated gallery entry ("a" twice) takes two positions, as the list says.
    assert ranks[0] == 1 and math.isinf(ranks[1]) and ranks[2] == 2
    assert m.mrr(ranked, relevant) == pytest.approx((1 / 2 + 0 + 1 / 3) / 3)
    assert m.mrr(ranked, relevant, k=2) == pytest.approx((1 / 2) / 3)
    assert m.recall_at_k(ranked, relevant, (1, 2, 3)) == pytest.approx({"r@1": 0, "r@2": 1 / 3, "r@3": 2 / 3})


def test_first_relevant_rank_with_integer_arrays() -> None:
    ranked = np.array([[4, 2, 0, 1], [1, 0, 2, 4]])
    ranks = m.first_relevant_rank(ranked, [[0, 1], [np.int64(4)]], excluded=[[4], []])
    assert ranks.tolist() == [1, 3]
    with pytest.raises(ValueError, match="2 ranked lists for 1 queries"):
        m.first_relevant_rank(ranked, [[0]])


def test_average_precision_at_k_by_hand() -> None:
    # Hits at positions 1 and 3: (1 + 2/3) / min(5, 3).
    assert m.average_precision_at_k([1, 2, 3, 4, 5], {1, 3, 6}, k=5) == pytest.approx(5 / 9)
    assert m.average_precision_at_k([1, 2, 3, 4, 5], {1, 3, 6}, k=2) == pytest.approx(1 / 2)
    # K beyond the list: only what is listed counts; the divisor is min(K, |gt|) = 1.
    assert m.average_precision_at_k([3, 9], [3], k=50) == pytest.approx(1.0)
    assert m.average_precision_at_k([9, 8], [3], k=50) == 0.0


def test_average_precision_repeated_ground_truth_counts_once() -> None:
    assert m.average_precision_at_k([1, 3, 5], [1, 1, 3], k=5) == pytest.approx(1.0)


def test_average_precision_rejects_duplicate_predictions_and_empty_truth() -> None:
    with pytest.raises(ValueError, match="repeats"):
        m.average_precision_at_k([1, 1, 3], [1], k=5)
    # A repeat beyond k does not affect AP@k and is allowed.
    assert m.average_precision_at_k([1, 2, 1], [1], k=2) == 1.0
    with pytest.raises(ValueError, match="relevant"):
        m.average_precision_at_k([1, 2], [], k=2)


# ------------------------------------------------------------------------------------------------------
# CIRR, CIRCO, FashionIQ
# ------------------------------------------------------------------------------------------------------


def test_cirr_recall_removes_reference() -> None:
    ranked = [
        ["ref0", "t0", "x", "y", "z", "w"],
        ["a", "b", "ref1", "c", "t1", "d"],
        ["ref2", "e", "ref2", "f", "g", "t2"],  # a duplicated reference entry: both copies go
    ]
    result = m.cirr_recall_at_k(ranked, ["ref0", "ref1", "ref2"], ["t0", "t1", "t2"], ks=(1, 3, 4, 5))
    # ranks after removal: 0, 3, 3
    assert result == pytest.approx({"r@1": 1 / 3, "r@3": 1 / 3, "r@4": 1.0, "r@5": 1.0})


def test_cirr_target_equal_to_reference_is_never_found() -> None:
    result = m.cirr_recall_at_k([["r", "a"]], ["r"], ["r"], ks=(2,))
    assert result == {"r@2": 0.0}


def test_cirr_recall_subset() -> None:
    ranked = [
        ["ref0", "x", "s1", "t0", "s2", "y"],
        ["u", "t1", "ref1", "s3", "s4", "v"],
    ]
    subsets = [["ref0", "s1", "t0", "s2"], ["ref1", "s3", "t1", "s4"]]
    result = m.cirr_recall_subset_at_k(ranked, ["ref0", "ref1"], ["t0", "t1"], subsets)
    # subset rankings: [s1, t0, s2] -> rank 1; [t1, s3, s4] -> rank 0
    assert result == pytest.approx({"subset_r@1": 0.5, "subset_r@2": 1.0, "subset_r@3": 1.0})


def test_circo_map_by_hand() -> None:
    ranked = [
        [9761, 5, 489535, 7, 8, 11, 12, 13, 14, 15],
        [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
    ]
    gt = [[9761, 489535], [6]]
    result = m.circo_map_at_k(ranked, gt, ks=(5, 10, 50))
    # query 0: (1 + 2/3) / 2 at every k; query 1: nothing in the top 5, then 1/6 at position 6.
    assert result == pytest.approx({"map@5": 5 / 12, "map@10": 0.5, "map@50": 0.5})
    assert m.circo_recall_at_k(ranked, [9761, 6], ks=(5, 10)) == pytest.approx({"r@5": 0.5, "r@10": 1.0})


def test_circo_map_with_string_ids_and_duplicate_predictions() -> None:
    assert m.circo_map_at_k([["3", "1"]], [["1"]], ks=(5,)) == {"map@5": 0.5}
    with pytest.raises(ValueError, match="repeats"):
        m.circo_map_at_k([["1", "1"]], [["1"]], ks=(5,))


def test_fashioniq_recall_and_category_average() -> None:
    dress = m.fashioniq_recall([["r", "t", "x"], ["a", "b", "c"]], ["t", "c"], ks=(1, 2))
    shirt = m.fashioniq_recall([["t"]], ["t"], ks=(1, 2))
    # The reference is not removed: "r" at position 0 pushes "t" to rank 1.
    assert dress == {"r@1": 0.0, "r@2": 0.5}
    average = m.average_over_categories({"dress": dress, "shirt": shirt})
    # Unweighted over categories (dress has 2 queries, shirt 1), as the papers report it.
    assert average == pytest.approx({"r@1": 0.5, "r@2": 0.75})
    with pytest.raises(ValueError):
        m.average_over_categories({"dress": dress, "shirt": {"r@1": 1.0}})


# ------------------------------------------------------------------------------------------------------
# Revisited Oxford / Paris
# ------------------------------------------------------------------------------------------------------

# Query 0: easy [0, 4], hard [1], junk [2]; query 1: easy [3] only (so it has no hard positives).
GND = [
    {"easy": [0, 4], "hard": [1], "junk": [2]},
    {"easy": [3], "hard": [], "junk": []},
]
RANKS = np.array(
    [
        [5, 2, 0, 7, 3, 1, 4, 6],
        [3, 0, 1, 2, 4, 5, 6, 7],
    ]
)


def test_revisited_protocol_sets() -> None:
    easy, medium, hard = (m.revisited_protocol(GND, p)[0] for p in ("easy", "M", "h"))
    assert easy["ok"].tolist() == [0, 4] and easy["junk"].tolist() == [2, 1]
    assert medium["ok"].tolist() == [0, 4, 1] and medium["junk"].tolist() == [2]
    assert hard["ok"].tolist() == [1] and hard["junk"].tolist() == [2, 0, 4]
    with pytest.raises(ValueError, match="protocol"):
        m.revisited_protocol(GND, "extreme")


def test_revisited_query_scores_with_junk_by_hand() -> None:
    # medium: positives at positions 2, 5, 6; the junk image at position 1 moves them to 1, 4, 5.
    ap, precisions = m.revisited_query_scores(RANKS[0], [0, 4, 1], [2], kappas=(1, 5, 10))
    trapezoids = (0 + 1 / 2) / 2 + (1 / 4 + 2 / 5) / 2 + (2 / 5 + 3 / 6) / 2
    assert ap == pytest.approx(trapezoids / 3)
    # P@k is taken at min(k, last positive position = 6): 0/1, 2/5, 3/6.
    assert precisions.tolist() == pytest.approx([0.0, 0.4, 0.5])


def test_revisited_map_all_protocols_by_hand() -> None:
    easy = m.mean_average_precision(RANKS, GND, "easy")
    query0_easy = ((0 + 1 / 2) / 2 + (1 / 4 + 2 / 5) / 2) / 2  # positives at 1 and 4 after junk removal
    assert easy == pytest.approx({"map": (query0_easy + 1) / 2, "mp@1": 0.5, "mp@5": 0.7, "mp@10": 0.7})

    medium = m.mean_average_precision(RANKS, GND, "medium")
    query0_medium = ((0 + 1 / 2) / 2 + (1 / 4 + 2 / 5) / 2 + (2 / 5 + 3 / 6) / 2) / 3
    assert medium == pytest.approx({"map": (query0_medium + 1) / 2, "mp@1": 0.5, "mp@5": 0.7, "mp@10": 0.75})

    # Query 1 has no hard positive and is left out of the hard means, as revisitop does.
    hard = m.mean_average_precision(RANKS, GND, "hard")
    assert hard == pytest.approx({"map": 0.125, "mp@1": 0.0, "mp@5": 0.25, "mp@10": 0.25})


def test_revisited_truncated_ranking_and_no_positives() -> None:
    ap, precisions = m.revisited_query_scores([3], [0], [], kappas=(1,))
    assert ap == 0.0 and precisions.tolist() == [0.0]
    ap, precisions = m.revisited_query_scores([3, 0], [], [1], kappas=(1,))
    assert math.isnan(ap) and math.isnan(precisions[0])
    nothing = m.mean_average_precision([[0, 1]], [{"easy": [], "hard": [], "junk": [0]}], "easy", kappas=(1,))
    assert math.isnan(nothing["map"]) and math.isnan(nothing["mp@1"])


def test_unsigned_scores_rank_like_signed_ones() -> None:
    scores = np.array([[0, 200, 3]], dtype=np.uint8)
    assert m.rank_gallery(scores).tolist() == [[1, 2, 0]]
    assert m.topk_accuracy(scores, np.array([1]), ks=(1,)) == {"acc@1": 1.0}
