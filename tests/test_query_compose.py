"""Composition methods: the arithmetic of each method on hand-made vectors, and their parameter checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_query_helpers import FakeEncoder, make_index

from pixquery.errors import QueryError
from pixquery.models.base import l2_normalize
from pixquery.query import rewrite
from pixquery.query.compose import AUTO_METHOD, ComposeInput, check_method, compose, resolve_method
from pixquery.query.engine import execute, query_vector
from pixquery.query.rewrite import Reference
from pixquery.query.spec import QuerySpec, WeightedImage, WeightedText

R = np.array([1, 0, 0, 0], np.float32)
T = np.array([0, 1, 0, 0], np.float32)


def _input(encoder: FakeEncoder, texts: list[str], images: list[np.ndarray], **kw) -> ComposeInput:
    text_vectors = encoder.encode_texts(texts) if texts else None
    image_vectors = np.array(images, np.float32) if images else None
    return ComposeInput(
        encoder=encoder,
        encode_texts=lambda t: l2_normalize(encoder.encode_texts(t)),
        texts=texts,
        text_vectors=text_vectors,
        text_weights=np.ones(len(texts), np.float32),
        image_vectors=image_vectors,
        image_weights=np.ones(len(images), np.float32),
        references=[Reference(v) for v in images],
        **kw,
    )


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PIXQUERY_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_image_and_text_baselines_ignore_the_other_part() -> None:
    inp = _input(FakeEncoder(texts={"blue": T}), ["blue"], [R])
    assert np.allclose(compose("image", inp, {}).vector, R)
    assert np.allclose(compose("text", inp, {}).vector, T)


def test_sum_weights_every_part() -> None:
    enc = FakeEncoder(texts={"blue": T})
    inp = _input(enc, ["blue"], [R])
    inp.text_weights = np.array([3.0], np.float32)
    assert np.allclose(compose("sum", inp, {}).vector, l2_normalize(np.array([1, 3, 0, 0])))


def test_weighted_fusion_follows_alpha() -> None:
    inp = _input(FakeEncoder(texts={"blue": T}), ["blue"], [R])
    q = compose("weighted", inp, {"alpha": 0.25}).vector
    assert np.allclose(q, [0.75 / np.hypot(0.75, 0.25), 0.25 / np.hypot(0.75, 0.25), 0, 0], atol=1e-6)
    assert np.allclose(compose("weighted", inp, {"alpha": 1.0}).vector, T)


def test_several_reference_images_are_averaged_with_their_weights() -> None:
    inp = _input(FakeEncoder(texts={"blue": T}), ["blue"], [R, np.array([0, 0, 1, 0], np.float32)])
    inp.image_weights = np.array([1.0, 1.0], np.float32)
    ref = inp.ref
    assert np.allclose(ref, [2**-0.5, 0, 2**-0.5, 0])


def test_pdv_moves_caption_and_image_along_the_edit_direction() -> None:
    base, target = np.array([1, 1, 0, 0], np.float32), np.array([1, 1, 1, 1], np.float32)
    enc = FakeEncoder(texts={"blue": T, "a cat": base, "a cat, blue": target})

    class Fixed:
        def caption(self, reference: Reference) -> str:
            return "a cat"

    inp = _input(enc, ["blue"], [R], captioner=Fixed())
    q = compose("pdv", inp, {"s_text": 2.0, "s_image": 0.5, "image_weight": 0.25}).vector
    b, t = l2_normalize(base), l2_normalize(target)
    delta = t - b
    text_side, image_side = l2_normalize(b + 2.0 * delta), l2_normalize(R + 0.5 * delta)
    assert np.allclose(q, l2_normalize(0.75 * text_side + 0.25 * image_side), atol=1e-6)


def test_pdv_uses_a_rewriter_for_the_target_when_given() -> None:
    enc = FakeEncoder(texts={"blue": T, "a cat": [1, 0, 0, 0], "a blue cat": [0, 0, 1, 0]})

    class Fixed:
        def caption(self, reference: Reference) -> str:
            return "a cat"

    class Blue:
        def rewrite(self, caption: str, edit: str) -> list[str]:
            return ["a blue cat"]

    inp = _input(enc, ["blue"], [R], captioner=Fixed(), rewriter=Blue())
    composition = compose("pdv", inp, {"image_weight": 0.0, "s_text": 1.0})
    assert composition.notes["targets"] == ["a blue cat"]
    assert np.allclose(composition.vector, [0, 0, 1, 0], atol=1e-6)


def test_inversion_finds_the_nearest_words_and_ensembles_them(cache: Path) -> None:
    words = ["cat", "dog", "car"]
    enc = FakeEncoder(
        texts={
            "blue": T,
            "a photo of a cat": [1, 0, 0, 0],
            "a photo of a dog": [0.8, 0.6, 0, 0],
            "a photo of a car": [0, 0, 0, 1],
            "a cat in blue": [0, 0, 1, 0],
            "a dog in blue": [0, 0, 0, 1],
        }
    )
    inp = _input(enc, ["blue"], [R], vocabulary=words)
    params = {"top_k": 2, "temperature": 0.1, "combine": "a {word} in {edit}", "image_weight": 0.0}
    composition = compose("inversion", inp, params)
    found = composition.notes["words"]
    assert [w for w, _ in found] == ["cat", "dog"]
    w_cat = 1 / (1 + np.exp((0.8 - 1.0) / 0.1))
    assert np.isclose(found[0][1], w_cat, atol=1e-5)
    assert composition.notes["texts"] == ["a cat in blue", "a dog in blue"]
    assert np.allclose(composition.vector, l2_normalize(np.array([0, 0, w_cat, 1 - w_cat])), atol=1e-5)
    # The vocabulary embeddings were cached on disk, so a second query does not embed the words again.
    assert list((cache / "text-banks").glob("*vocabulary*.npy"))


def test_rewrite_searches_by_the_rewritten_caption() -> None:
    enc = FakeEncoder(texts={"blue": T, "a red car": [1, 0, 0, 0], "a blue car": [0, 0, 0, 1]})

    class Captioner:
        def __init__(self, encoder: object) -> None:
            self.encoder = encoder

        def caption(self, reference: Reference) -> str:
            return "a red car"

    class Rewriter:
        def rewrite(self, caption: str, edit: str) -> list[str]:
            return [caption.replace("red", edit)]

    rewrite.register_captioner("test-fixed", Captioner)
    rewrite.register_rewriter("test-colour", Rewriter)
    inp = _input(enc, ["blue"], [R])
    composition = compose("rewrite", inp, {"captioner": "test-fixed", "rewriter": "test-colour", "image_weight": 0.0})
    assert composition.notes["targets"] == ["a blue car"]
    assert np.allclose(composition.vector, [0, 0, 0, 1])
    fused = compose("rewrite", inp, {"captioner": "test-fixed", "rewriter": "test-colour", "image_weight": 0.2})
    assert np.allclose(fused.vector, l2_normalize(np.array([0.2, 0, 0, 0.8])))
    with pytest.raises(QueryError, match="needs a captioner and a rewriter"):
        compose("rewrite", _input(enc, ["blue"], [R]), {})


def test_single_modality_queries_reduce_to_that_modality() -> None:
    enc = FakeEncoder(texts={"blue": T})
    for method in ("weighted", "pdv", "inversion", "rewrite"):
        assert np.allclose(compose(method, _input(enc, ["blue"], []), {}).vector, T)
        assert np.allclose(compose(method, _input(enc, [], [R]), {}).vector, R)


def test_auto_picks_the_measured_default_only_for_composed_queries() -> None:
    assert resolve_method("auto", True, True) == AUTO_METHOD
    assert resolve_method("auto", True, False) == "image"
    assert resolve_method("auto", False, True) == "text"
    assert resolve_method("sum", True, True) == "sum"


def test_parameter_checks_name_the_problem() -> None:
    with pytest.raises(QueryError, match="unknown method 'magic'"):
        check_method("magic", {})
    with pytest.raises(QueryError, match="has no parameter 'gamma'.*alpha"):
        check_method("weighted", {"gamma": 1})
    with pytest.raises(QueryError, match="'alpha' of method 'weighted' must be a number"):
        check_method("weighted", {"alpha": "high"})
    with pytest.raises(QueryError, match="alpha must be between 0 and 1"):
        compose("weighted", _input(FakeEncoder(texts={"b": T}), ["b"], [R]), {"alpha": 1.5})
    check_method("pdv", {"s_text": 2, "template": "{base} {edit}", "long_text": False})


def test_execute_composes_an_indexed_reference_with_a_text(tmp_path: Path) -> None:
    # Gallery: the reference (red), a red-and-blue target, and a pure blue distractor.
    vectors = np.array([[1, 0, 0, 0], [1, 1, 0, 0], [0, 1, 0.3, 0], [0, 0, 0, 1]], np.float32)
    ctx = make_index(tmp_path, vectors, encoder=FakeEncoder(texts={"blue": T}))
    image_only = QuerySpec(images=[WeightedImage(catalog_id=1)], texts=[WeightedText("blue")], method="image", k=2)
    text_only = QuerySpec(images=[WeightedImage(catalog_id=1)], texts=[WeightedText("blue")], method="text", k=1)
    composed = QuerySpec(images=[WeightedImage(catalog_id=1)], texts=[WeightedText("blue")], method="sum", k=1)
    assert [h.id for h in execute(image_only, ctx)] == [1, 2]
    assert execute(text_only, ctx)[0].id == 3
    assert execute(composed, ctx)[0].id == 2
    assert np.allclose(query_vector(composed, ctx), l2_normalize(np.array([1, 1, 0, 0])))
