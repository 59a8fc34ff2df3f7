"""Composition methods: turn reference images and (edit) texts into one query vector.

Every method is a small function `compose_<name>(inp, **params) -> Composition`, registered in `METHODS` under its
name; its keyword parameters and their defaults are the method's documented knobs (`QuerySpec.params`). All of
them are linear in the end (a score that is a weighted sum of similarities is a similarity to the weighted sum of
vectors), so each returns a single vector and a search costs one matrix product whatever the method.

Notation: f_I(ref) is the normalised weighted mean of the reference image vectors, f_T(edit) the normalised
weighted mean of the text vectors, and "edit" the texts joined by ", " where a method needs the words.
With only images, or only texts, every method reduces to `image` or `text` (there is nothing to compose).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pixquery.errors import QueryError
from pixquery.models.base import Encoder, l2_normalize
from pixquery.query.inversion import invert
from pixquery.query.rewrite import Captioner, Reference, Rewriter, get_captioner, get_rewriter

AUTO_METHOD = "weighted"
"""The method "auto" picks for an image + text query. Measured with the shipped mini model:

* `benchmarks/composed_retrieval.py` (test seed, 160 seen / 40 held-out edits, R@10; R@1 in brackets), where the
  inversion-based methods describe the reference with ShapesWorld's own 97 words: weighted (α 0.5) 0.76 / 0.85
  (0.25 / 0.13), pdv (s_image 1.0, image_weight 0.35 tuned on another seed) 0.88 / 0.85 (0.43 / 0.38), rewrite
  (ShapesWorld plugins) 0.89 / 0.88, inversion 0.73 / 0.80, image 0.61 / 0.53, text 0.13 / 0.08;
* `pixquery eval shapesworld-cir` (500 queries), with the generic 17k-word vocabulary a real user's pdv gets:
  weighted 65.6 R@10, pdv 56.4 at its defaults and 34.0 at the steps tuned above.

pdv's advantage needs an in-domain vocabulary (and its one-time bank of vocabulary embeddings: minutes for a CLIP
text tower on a CPU); rewrite needs model-specific plugins. "auto" stays the method that works instantly and well
with every model."""

SHARED_PARAMS: dict[str, type | tuple[type, ...]] = {
    "long_text": bool,
    "negative_scale": (int, float),
    "negative_tau": (int, float),
    "negative_z": (int, float),
}
"""Parameters that any method accepts because the engine, not the method, reads them."""


@dataclass
class ComposeInput:
    """What a composition method may use. Vectors are unit rows; weights are per row."""

    encoder: Encoder
    encode_texts: Callable[[list[str]], np.ndarray]
    texts: list[str] = field(default_factory=list)
    text_vectors: np.ndarray | None = None
    text_weights: np.ndarray | None = None
    image_vectors: np.ndarray | None = None
    image_weights: np.ndarray | None = None
    references: list[Reference] = field(default_factory=list)
    captioner: Captioner | None = None
    rewriter: Rewriter | None = None
    vocabulary: list[str] | str | None = None

    @property
    def has_texts(self) -> bool:
        """Whether the query has at least one text."""
        return self.text_vectors is not None and len(self.text_vectors) > 0

    @property
    def has_images(self) -> bool:
        """Whether the query has at least one reference image."""
        return self.image_vectors is not None and len(self.image_vectors) > 0

    @property
    def ref(self) -> np.ndarray:
        """f_I(ref): the normalised weighted mean of the reference image vectors."""
        return _weighted_mean(self.image_vectors, self.image_weights)

    @property
    def edit(self) -> np.ndarray:
        """f_T(edit): the normalised weighted mean of the text vectors."""
        return _weighted_mean(self.text_vectors, self.text_weights)

    @property
    def edit_text(self) -> str:
        """The texts as one edit instruction."""
        return ", ".join(t.strip() for t in self.texts)


@dataclass
class Composition:
    """A composed query: the vector to search with, and what the method found on the way (for explanations)."""

    vector: np.ndarray
    notes: dict[str, Any] = field(default_factory=dict)


def _weighted_mean(vectors: np.ndarray | None, weights: np.ndarray | None) -> np.ndarray:
    if vectors is None or len(vectors) == 0:
        raise QueryError("this composition needs at least one vector of that kind")
    w = np.ones(len(vectors), np.float32) if weights is None else np.asarray(weights, np.float32)
    return l2_normalize((w[:, None] * vectors).sum(0))


def _fuse(a: np.ndarray, b: np.ndarray, weight_b: float) -> np.ndarray:
    """norm((1 − w)·norm(a) + w·norm(b))."""
    return l2_normalize((1.0 - weight_b) * l2_normalize(a) + weight_b * l2_normalize(b))


def _single_modality(inp: ComposeInput) -> Composition | None:
    if not inp.has_images:
        return Composition(inp.edit)
    if not inp.has_texts:
        return Composition(inp.ref)
    return None


def _check_unit_interval(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise QueryError(f"{name} must be between 0 and 1, got {value}", field=f"params.{name}")


# --- methods ----------------------------------------------------------------------------------------------------


def compose_image(inp: ComposeInput) -> Composition:
    """The reference image(s) alone (f_I(ref)); texts are ignored. The baseline every report shows."""
    return Composition(inp.ref if inp.has_images else inp.edit)


def compose_text(inp: ComposeInput) -> Composition:
    """The text(s) alone (f_T(edit)); images are ignored. The other baseline."""
    return Composition(inp.edit if inp.has_texts else inp.ref)


def compose_sum(inp: ComposeInput) -> Composition:
    """norm(Σ wᵢ·vᵢ) over every text and image vector with its own weight: the plain multi-part query."""
    vectors = [v for v in (inp.text_vectors, inp.image_vectors) if v is not None and len(v)]
    weights = [w for v, w in ((inp.text_vectors, inp.text_weights), (inp.image_vectors, inp.image_weights))
               if v is not None and len(v)]
    stacked = np.concatenate(vectors)
    w = np.concatenate([np.ones(len(v), np.float32) if ww is None else np.asarray(ww, np.float32)
                        for v, ww in zip(vectors, weights, strict=True)])
    return Composition(l2_normalize((w[:, None] * stacked).sum(0)))


def compose_weighted(inp: ComposeInput, alpha: float = 0.5) -> Composition:
    """WeiMoCIR's query side: q = norm((1 − α)·f_I(ref) + α·f_T(edit)).

    Args:
        alpha: the text's share, 0 (image only) to 1 (text only); 0.5 was best on ShapesWorld (tuned over
            0.3-0.8), where it equals `sum` for one image and one text.
    """
    _check_unit_interval("alpha", alpha)
    single = _single_modality(inp)
    if single is not None:
        return single
    return Composition(_fuse(inp.ref, inp.edit, alpha), {"alpha": alpha})


def _describe_reference(
    inp: ComposeInput,
    captioner: str | None,
    vocabulary: str | None,
    top_k: int,
    temperature: float,
    word_template: str,
) -> tuple[list[str], np.ndarray, dict[str, Any]]:
    """Texts describing the reference and their weights: a caption if a captioner is at hand, else inverted words."""
    chosen = get_captioner(captioner, inp.encoder) if captioner else inp.captioner
    if chosen is not None:
        captions = [chosen.caption(ref) for ref in inp.references]
        weights = np.ones(len(captions), np.float32) / len(captions)
        return captions, weights, {"captions": captions}
    found = invert(inp.encoder, inp.ref, vocabulary if vocabulary is not None else inp.vocabulary, top_k,
                   temperature, word_template)
    return [word_template.format(w) for w, _ in found], np.array([s for _, s in found], np.float32), {"words": found}


def compose_pdv(
    inp: ComposeInput,
    s_text: float = 1.0,
    s_image: float = 0.5,
    image_weight: float = 0.5,
    template: str = "{base}, {edit}",
    captioner: str | None = None,
    rewriter: str | None = None,
    vocabulary: str | None = None,
    top_k: int = 1,
    temperature: float = 0.02,
    word_template: str = "a photo of a {}",
) -> Composition:
    """Prompt Directional Vectors: move both the reference's description and its image along the edit's direction.

    base = a caption of the reference (from a captioner) or its nearest vocabulary words (inversion);
    Δ = f_T(target) − f_T(base), where target = the rewriter's output when a rewriter is given, else
    `template` filled with base and edit; composed text = f_T(base) + s_text·Δ, composed image =
    f_I(ref) + s_image·Δ, and q = norm((1 − image_weight)·norm(text) + image_weight·norm(image)).

    Args:
        s_text, s_image: step sizes along Δ for the text and the image side.
        image_weight: share of the composed image in the fusion.
        template: how base and edit are joined into the target text when no rewriter is used.
        captioner, rewriter: registered plugin names (see `pixquery.query.rewrite`).
        vocabulary, top_k, temperature, word_template: the inversion used for `base` when there is no
            captioner (base = word_template filled with each of the top_k words).
    """
    _check_unit_interval("image_weight", image_weight)
    single = _single_modality(inp)
    if single is not None:
        return single
    bases, weights, notes = _describe_reference(inp, captioner, vocabulary, top_k, temperature, word_template)
    chosen_rewriter = get_rewriter(rewriter) if rewriter else inp.rewriter
    targets: list[list[str]] = []
    for base in bases:
        if chosen_rewriter is not None:
            targets.append(chosen_rewriter.rewrite(base, inp.edit_text) or [base])
        else:
            targets.append([template.format(base=base, edit=inp.edit_text)])
    flat = [t for group in targets for t in group]
    vectors = inp.encode_texts(bases + flat)
    base_vectors, target_vectors = vectors[: len(bases)], vectors[len(bases) :]
    delta = np.zeros_like(inp.ref)
    base_vector = np.zeros_like(inp.ref)
    start = 0
    for i, group in enumerate(targets):
        target = target_vectors[start : start + len(group)].mean(0)
        start += len(group)
        delta += weights[i] * (target - base_vectors[i])
        base_vector += weights[i] * base_vectors[i]
    composed_text = base_vector + s_text * delta
    composed_image = inp.ref + s_image * delta
    notes["targets"] = flat
    return Composition(_fuse(composed_text, composed_image, image_weight), notes)


def compose_inversion(
    inp: ComposeInput,
    top_k: int = 3,
    temperature: float = 0.02,
    combine: str = "a photo of a {word}, {edit}",
    image_weight: float = 0.5,
    vocabulary: str | None = None,
    word_template: str = "a photo of a {}",
) -> Composition:
    """FreeDom-style discrete textual inversion: the reference's nearest words, each combined with the edit.

    The `top_k` vocabulary words nearest to f_I(ref) (via f_T(word_template), cached per model) get
    softmax weights at `temperature`; each fills `combine` with the edit, and the query is the weighted
    ensemble of those texts' vectors, optionally fused with the reference image (`image_weight`).

    Args:
        top_k: how many words describe the reference.
        temperature: softmax temperature of the word weights (lower keeps mostly the best word).
        combine: text template with {word} and {edit}.
        image_weight: share of f_I(ref) in the final fusion (0 = text ensemble only).
        vocabulary: a vocabulary file (default: the shipped general vocabulary, or `SearchContext.vocabulary`).
        word_template: how a word is embedded to compare it with the image ("{}" marks the word).
    """
    _check_unit_interval("image_weight", image_weight)
    if "{word}" not in combine:
        raise QueryError(f"combine must contain {{word}}, got {combine!r}", field="params.combine")
    single = _single_modality(inp)
    if single is not None:
        return single
    found = invert(inp.encoder, inp.ref, vocabulary if vocabulary is not None else inp.vocabulary, top_k,
                   temperature, word_template)
    texts = [combine.format(word=w, edit=inp.edit_text) for w, _ in found]
    vectors = inp.encode_texts(texts)
    weights = np.array([s for _, s in found], np.float32)
    text_query = (weights[:, None] * vectors).sum(0)
    return Composition(_fuse(text_query, inp.ref, image_weight), {"words": found, "texts": texts})


def compose_rewrite(
    inp: ComposeInput, captioner: str | None = None, rewriter: str | None = None, image_weight: float = 0.4
) -> Composition:
    """CIReVL-style: caption the reference, rewrite the caption with the edit, search by the rewritten text(s).

    Needs a captioner and a rewriter: registered names in the parameters, or the ones set on the
    `SearchContext`. Several rewrites (and several references) are ensembled by averaging their vectors.

    Args:
        captioner, rewriter: registered plugin names (see `pixquery.query.rewrite`).
        image_weight: share of f_I(ref) fused into the final query (0 = text search only, as in CIReVL; 0.4
            was best on ShapesWorld among 0-0.6, where a caption cannot say where everything is).
    """
    _check_unit_interval("image_weight", image_weight)
    single = _single_modality(inp)
    if single is not None:
        return single
    chosen_captioner = get_captioner(captioner, inp.encoder) if captioner else inp.captioner
    chosen_rewriter = get_rewriter(rewriter) if rewriter else inp.rewriter
    if chosen_captioner is None or chosen_rewriter is None:
        raise QueryError(
            "the rewrite method needs a captioner and a rewriter: pass params captioner=/rewriter= with registered "
            "names (e.g. 'shapesworld') or set them on the SearchContext"
        )
    captions = [chosen_captioner.caption(ref) for ref in inp.references]
    targets = [t for c in captions for t in (chosen_rewriter.rewrite(c, inp.edit_text) or [c])]
    text_query = inp.encode_texts(targets).mean(0)
    return Composition(_fuse(text_query, inp.ref, image_weight), {"captions": captions, "targets": targets})


METHODS: dict[str, Callable[..., Composition]] = {
    "image": compose_image,
    "text": compose_text,
    "sum": compose_sum,
    "weighted": compose_weighted,
    "pdv": compose_pdv,
    "inversion": compose_inversion,
    "rewrite": compose_rewrite,
}


def resolve_method(method: str, has_images: bool, has_texts: bool) -> str:
    """The method that runs: "auto" becomes `AUTO_METHOD` for image + text queries, else the single modality."""
    if method != "auto":
        return method
    if has_images and has_texts:
        return AUTO_METHOD
    return "image" if has_images else "text"


def method_params(method: str) -> dict[str, inspect.Parameter]:
    """The keyword parameters of a method (its documented knobs) by name."""
    if method == "auto":
        method = AUTO_METHOD
    return dict(list(inspect.signature(METHODS[method]).parameters.items())[1:])


def check_method(method: str, params: dict[str, Any]) -> None:
    """Raise `QueryError` if the method is unknown or a parameter is unknown or of the wrong type."""
    if method != "auto" and method not in METHODS:
        raise QueryError(f"unknown method {method!r}; methods: auto, {', '.join(METHODS)}", field="method")
    known = method_params(method)
    for name, value in params.items():
        if name in SHARED_PARAMS:
            expected = SHARED_PARAMS[name]
        elif name in known:
            default = known[name].default
            expected = (int, float) if isinstance(default, int | float) and not isinstance(default, bool) else str
            if isinstance(default, bool):
                expected = bool
        else:
            accepted = ", ".join([*known, *SHARED_PARAMS])
            raise QueryError(f"method {method!r} has no parameter {name!r}; it accepts: {accepted}", field="params")
        is_bool = isinstance(value, bool)
        wants_bool = expected is bool
        if not isinstance(value, expected) or (is_bool and not wants_bool):
            names = {str: "text", bool: "true/false"}.get(expected, "a number")  # type: ignore[arg-type]
            raise QueryError(f"parameter {name!r} of method {method!r} must be {names}, got {value!r}",
                             field=f"params.{name}")


def compose(method: str, inp: ComposeInput, params: dict[str, Any]) -> Composition:
    """Run a composition method with the user's parameters (shared engine parameters are left out)."""
    name = resolve_method(method, inp.has_images, inp.has_texts)
    own = {k: v for k, v in params.items() if k not in SHARED_PARAMS}
    if method == "auto" and name != AUTO_METHOD:
        own = {}
    composition = METHODS[name](inp, **own)
    composition.notes.setdefault("method", name)
    return composition
