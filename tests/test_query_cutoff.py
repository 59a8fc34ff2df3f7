"""Relevance cut-off: parsing, each calibration rule on known score distributions, and a search that says
"these N match"."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_query_helpers import FakeEncoder, make_index

from pixquery.errors import QueryError
from pixquery.query.cutoff import (
    AUTO_RULE,
    RULES,
    CutoffRule,
    WordNull,
    describe,
    match_mask,
    null_min_z,
    parse_cutoff,
)
from pixquery.query.engine import run_query
from pixquery.query.spec import QuerySpec, WeightedText


def test_parse_accepts_numbers_auto_and_rules() -> None:
    assert parse_cutoff(None) is None
    assert parse_cutoff(0.3) == CutoffRule("score", 0.3)
    assert parse_cutoff("auto") == CutoffRule(*AUTO_RULE) and AUTO_RULE[0] == "null"
    assert parse_cutoff("null:0.02") == CutoffRule("null", 0.02) and AUTO_RULE[1] == 0.0
    assert parse_cutoff("mad") == CutoffRule("mad", RULES["mad"])
    assert parse_cutoff("bank:1.5") == CutoffRule("bank", 1.5)
    for bad, message in [("often", "unknown cutoff"), ("mad:x", "not a number"), (True, "not true/false")]:
        with pytest.raises(QueryError, match=message):
            parse_cutoff(bad)


SAMPLE = np.random.default_rng(0).normal(0.2, 0.02, 4000).astype(np.float32)


def test_mad_rule_keeps_scores_far_above_the_collection() -> None:
    scores = np.array([0.40, 0.33, 0.29, 0.25, 0.22], np.float32)
    # median 0.2, 1.4826*MAD ~ 0.02: z = 10, 6.5, 4.5, 2.5, 1
    assert match_mask(CutoffRule("mad", 4.0), scores, SAMPLE).tolist() == [True, True, True, False, False]
    assert match_mask(CutoffRule("mad", 7.0), scores, SAMPLE).tolist() == [True, False, False, False, False]


def test_robust_rule_ignores_the_matches_inside_the_sample_where_zscore_does_not() -> None:
    contaminated = np.concatenate([SAMPLE[:3000], np.full(1000, 0.6, np.float32)])  # a quarter of all match
    scores = np.array([0.6], np.float32)
    assert match_mask(CutoffRule("mad", 4.0), scores, contaminated).tolist() == [True]
    assert match_mask(CutoffRule("zscore", 3.0), scores, contaminated).tolist() == [False]


def test_gap_rule_cuts_at_the_largest_drop_among_high_scores() -> None:
    scores = np.array([0.50, 0.49, 0.48, 0.30, 0.29, 0.21], np.float32)
    assert match_mask(CutoffRule("gap", 3.0), scores, SAMPLE).tolist() == [True] * 3 + [False] * 3
    assert not match_mask(CutoffRule("gap", 3.0), np.array([0.21, 0.2], np.float32), SAMPLE).any()


def test_bank_rule_compares_each_result_with_its_own_bank_scores() -> None:
    scores = np.array([0.5, 0.5], np.float32)
    # The first image scores 0.5 for every query (a hub): not a match; the second usually scores 0.1.
    mask = match_mask(CutoffRule("bank", 2.5), scores, SAMPLE, np.array([0.5, 0.1]), np.array([0.05, 0.05]))
    assert mask.tolist() == [False, True]


def test_null_rule_keeps_a_photo_only_where_the_query_describes_it_best() -> None:
    scores = np.array([0.40, 0.36, 0.33], np.float32)
    described = np.array([0.30, 0.28, 0.25], np.float32)  # the query as "a photo of a ...", like the bank's words
    rival = np.array([0.29, 0.31, 0.26], np.float32)  # each photo's best other description
    assert match_mask(CutoffRule("null", 0.0), scores, SAMPLE, described=described, item_rival=rival).tolist() == [
        True, False, False]
    # The margin lets a query that nearly ties with the photo's best word through.
    assert match_mask(CutoffRule("null", 0.02), scores, SAMPLE, described=described, item_rival=rival).tolist() == [
        True, False, True]


@pytest.mark.parametrize(("text", "described"), [
    ("tabby cat", "a photo of a tabby cat."), ("a tabby cat", "a photo of a tabby cat."),
    ("  a photo of a dog. ", "a photo of a dog."), ("books on a shelf", "a photo of books on a shelf."),
    ("red roses", "a photo of red roses."), ("two birds on a branch", "a photo of two birds on a branch."),
    ("glass", "a photo of a glass."), ("an owl", "a photo of an owl."),
])
def test_a_query_is_described_like_the_bank_words(text: str, described: str) -> None:
    assert describe(text) == described


def test_null_rule_of_a_query_without_text_needs_more_than_the_photos_best_word_and_the_chance_extreme() -> None:
    scores = np.array([0.40, 0.36, 0.33], np.float32)  # z = 10, 8, 6.5 against SAMPLE (median 0.2, spread 0.02)
    best_word_z = np.array([8.0, 12.0, 3.0], np.float32)  # the second photo is better described by a word
    mask = match_mask(CutoffRule("null", 0.0), scores, SAMPLE, item_best_z=best_word_z)
    assert mask.tolist() == [True, False, True]
    # The least z is the chance extreme of the collection's size: sqrt(2 ln n).
    assert null_min_z(21) == pytest.approx(2.47, abs=0.01) and null_min_z(100_000) == pytest.approx(4.80, abs=0.01)
    weak = np.array([0.27], np.float32)  # z = 3.5: the most extreme of 4000 unrelated photos reaches ~4.1
    assert not match_mask(CutoffRule("null", 0.0), weak, SAMPLE, item_best_z=np.zeros(1)).any()


def test_word_null_gives_each_photo_the_z_of_the_word_that_singles_it_out_most() -> None:
    rng = np.random.default_rng(1)
    sample = rng.normal(size=(500, 8)).astype(np.float32)
    sample /= np.linalg.norm(sample, axis=1, keepdims=True)
    words = np.eye(8, dtype=np.float32)[:3]
    null = WordNull.build(words, sample)
    photo = np.array([[0.9, 0.1, 0, 0, 0, 0, 0, 0.1]], np.float32)
    z = (photo @ words.T - null.median) / null.spread
    assert null.best_z(photo)[0] == pytest.approx(float(z.max()))
    assert WordNull.build(np.zeros((0, 8), np.float32), sample).best_z(photo).tolist() == [0.0]
    # The best rival is the best raw score of a word that is not the query itself.
    assert null.best_rival(photo, [words[1]])[0] == pytest.approx(0.9)
    assert null.best_rival(photo, [words[0]])[0] == pytest.approx(0.1)
    assert WordNull.build(np.zeros((0, 8), np.float32), sample).best_rival(photo, []).tolist() == [-np.inf]


def test_raw_threshold() -> None:
    assert match_mask(CutoffRule("score", 0.3), np.array([0.31, 0.29]), SAMPLE).tolist() == [True, False]


def test_search_with_auto_cutoff_returns_only_the_matches(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    concept, other = np.eye(64, dtype=np.float32)[:2]
    noise = rng.normal(size=(300, 64))
    noise[:, :2] = 0
    vectors = noise / np.linalg.norm(noise, axis=1, keepdims=True)
    vectors[:7] = 0.9 * concept + 0.1 * vectors[:7]  # seven photos show the concept, none the other
    # The bank's words are the fake encoder's random vectors: each photo's best word scores about 0.4.
    texts = {"concept": concept, "a photo of a concept.": concept, "other": other, "a photo of an other.": other}
    ctx = make_index(tmp_path, vectors, encoder=FakeEncoder(64, texts=texts))
    outcome = run_query(QuerySpec(texts=[WeightedText("concept")], k=20, cutoff="auto"), ctx)
    assert sorted(h.id for h in outcome.hits) == list(range(1, 8))
    assert outcome.matches == 7
    assert run_query(QuerySpec(texts=[WeightedText("an other")], k=20, cutoff="auto"), ctx).hits == []
    plain = run_query(QuerySpec(texts=[WeightedText("concept")], k=20), ctx)
    assert len(plain.hits) == 20 and plain.matches is None


DEMO_PHOTOS = Path(__file__).resolve().parents[1] / "pixquery" / "data" / "demo_photos"


@pytest.fixture(scope="module")
def demo_lib(tmp_path_factory: pytest.TempPathFactory):
    from pixquery.api import Library

    with Library.open(tmp_path_factory.mktemp("demo-index"), model="conse") as lib:
        lib.index([DEMO_PHOTOS])
        yield lib


@pytest.mark.parametrize("text", ["a red sports car", "a snowy mountain", "a plate of sushi"])
def test_an_absent_concept_returns_nothing_on_real_photos(demo_lib, text: str) -> None:
    outcome = demo_lib.query(QuerySpec(texts=[WeightedText(text)], k=20, cutoff="auto"))
    assert outcome.hits == [] and outcome.matches == 0
    assert len(demo_lib.query(QuerySpec(texts=[WeightedText(text)], k=20)).hits) == 20  # top k stays the default


def test_a_present_concept_keeps_its_photos_on_real_photos(demo_lib) -> None:
    hits = demo_lib.query(QuerySpec(texts=[WeightedText("a bee")], k=20, cutoff="auto")).hits
    assert [Path(h.path).name for h in hits] == ["bee.jpg"]
