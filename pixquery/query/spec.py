"""The query spec: what a user asked for, shared by the CLI, the Python API and the HTTP API.

A `QuerySpec` is plain data. `validate()` checks every part against the modules that will run it (composition
methods, filters, cut-off, re-ranking), so a malformed request fails before any model runs, with a message that
names the field and the accepted values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from pixquery.errors import QueryError

NEGATIVE_MODES = ("subtract", "penalty")
HUBNESS_METHODS = ("qbnorm", "csls")
EXPANSION_METHODS = ("aqe", "dba")
SORT_ORDERS = ("score", "date")
MAX_K = 10_000
MAX_WEIGHT = 1000.0
"""Largest |weight| of one part of a query (weights are relative; huge ones only overflow the arithmetic)."""
MAX_TEXT_CHARS = 10_000
"""Longest text one part of a query may be (long texts are split into the model's context and averaged)."""


@dataclass
class WeightedText:
    """A text with a weight (negative texts live in `QuerySpec.negative_texts`; there the weight is λ)."""

    text: str
    weight: float = 1.0


@dataclass
class WeightedImage:
    """An example image: a file path, an already-indexed catalog id, or a decoded PIL image (uploads)."""

    path: str | None = None
    catalog_id: int | None = None
    image: Image.Image | None = field(default=None, repr=False)
    weight: float = 1.0

    def __post_init__(self) -> None:
        if sum(x is not None for x in (self.path, self.catalog_id, self.image)) != 1:
            raise QueryError("an image query needs exactly one of: a path, a catalog id, an image", field="images")


@dataclass
class Rerank:
    """Optional post-processing of the ranked list; every part is off by default.

    Attributes:
        hubness: "qbnorm" (querybank normalisation, dynamic inverted softmax) or "csls"; None for plain cosine.
        expansion: "aqe" (α-weighted query expansion) or "dba" (database-side augmentation); meant for image
            queries, where the top results are reliable neighbours of the query.
        diversity: 0 (plain ranking) to 1 (maximal novelty): maximal marginal relevance with λ = 1 − diversity.
        pool: how many first-stage candidates the re-rankers look at (default: max(4·k, 100)).
        options: tuning knobs of the parts above, e.g. {"beta": 20, "csls_k": 10, "aqe_m": 5, "aqe_alpha": 3}
            (see `pixquery.query.rerank` for each knob and its default).
    """

    hubness: str | None = None
    expansion: str | None = None
    diversity: float = 0.0
    pool: int | None = None
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        """Whether any re-ranking step will run."""
        return bool(self.hubness or self.expansion or self.diversity > 0)

    def validate(self) -> Rerank:
        """Raise `QueryError` naming the bad field."""
        if self.hubness is not None and self.hubness not in HUBNESS_METHODS:
            raise QueryError(
                f"rerank.hubness must be one of {', '.join(HUBNESS_METHODS)} or null, got {self.hubness!r}",
                field="rerank.hubness",
            )
        if self.expansion is not None and self.expansion not in EXPANSION_METHODS:
            raise QueryError(
                f"rerank.expansion must be one of {', '.join(EXPANSION_METHODS)} or null, got {self.expansion!r}",
                field="rerank.expansion",
            )
        if not 0.0 <= float(self.diversity) <= 1.0:
            raise QueryError(f"rerank.diversity must be between 0 and 1, got {self.diversity}",
                             field="rerank.diversity")
        if self.pool is not None and not 1 <= int(self.pool) <= 100_000:
            raise QueryError(f"rerank.pool must be between 1 and 100000, got {self.pool}", field="rerank.pool")
        from pixquery.query.rerank import check_options

        check_options(self.options)
        return self


@dataclass
class QuerySpec:
    """Everything a search needs besides the index: positives, negatives, method, filters, k, cut-off, re-ranking.

    Attributes:
        texts, images: the positive parts, each with a weight.
        negative_texts, negative_images: what results should not look like; each weight is that negative's λ.
        negative_mode: "penalty" (default) lowers the score of results similar to a negative
            (score − λ·max(0, sim(x, n) − τ), calibrated); "subtract" moves the query vector away from the
            negatives (q − λ·n, renormalised). See `pixquery.query.negatives`.
        method: composition of images and texts, a name from `pixquery.query.compose.METHODS` or "auto".
        params: that method's parameters (see each method's docstring), plus the shared "long_text" switch.
        filters: metadata conditions (see `pixquery.query.filters.FILTER_KEYS`), run inside the vector search.
        k: how many results at most.
        cutoff: None (return k results), a raw score threshold, "auto", or "RULE" / "RULE:VALUE" with RULE one
            of `pixquery.query.cutoff.RULES`: return only the results the calibrated threshold calls a match.
        sort: "score" (best first) or "date" (the results, after the cut-off, ordered by date taken).
        rerank: optional post-processing (hubness reduction, query expansion, diversity).
    """

    texts: list[WeightedText] = field(default_factory=list)
    images: list[WeightedImage] = field(default_factory=list)
    negative_texts: list[WeightedText] = field(default_factory=list)
    negative_images: list[WeightedImage] = field(default_factory=list)
    method: str = "auto"
    params: dict[str, Any] = field(default_factory=dict)
    filters: dict[str, Any] = field(default_factory=dict)
    k: int = 20
    cutoff: float | str | None = None
    sort: str = "score"
    negative_mode: str = "penalty"
    rerank: Rerank = field(default_factory=Rerank)

    def validate(self) -> QuerySpec:
        """Raise `QueryError` with a clear message if the spec cannot be run."""
        # Imported here: those modules import this one for the dataclasses.
        from pixquery.query.compose import check_method
        from pixquery.query.cutoff import parse_cutoff
        from pixquery.query.filters import compile_filters

        if not self.texts and not self.images:
            raise QueryError("empty query: give a text, an image, or both", field="texts")
        for t in self.texts + self.negative_texts:
            _check_text(t.text)
        for item in self.texts + self.images + self.negative_texts + self.negative_images:
            weight = item.weight
            if isinstance(weight, bool) or not isinstance(weight, int | float) or not abs(weight) <= MAX_WEIGHT:
                raise QueryError(f"a weight must be a number between -{MAX_WEIGHT:g} and {MAX_WEIGHT:g}, got "
                                 f"{weight!r}", field="weight")
        if isinstance(self.k, bool) or not isinstance(self.k, int) or not 1 <= self.k <= MAX_K:
            raise QueryError(f"k must be an integer between 1 and {MAX_K}, got {self.k!r}", field="k")
        if self.sort not in SORT_ORDERS:
            raise QueryError(f"sort must be 'score' or 'date', got {self.sort!r}", field="sort")
        if self.negative_mode not in NEGATIVE_MODES:
            raise QueryError(f"negative_mode must be one of {', '.join(NEGATIVE_MODES)}, got {self.negative_mode!r}",
                             field="negative_mode")
        for img in self.images + self.negative_images:
            if img.path is not None and not Path(img.path).exists():
                raise QueryError(f"query image not found: {img.path}", field="images")
        check_method(self.method, self.params)
        compile_filters(self.filters)
        parse_cutoff(self.cutoff)
        self.rerank.validate()
        return self

    @classmethod
    def simple(cls, text: str | None = None, images: list[str] | None = None, k: int = 20) -> QuerySpec:
        """A plain text and/or example-image query."""
        spec = cls(k=k)
        if text:
            spec.texts.append(WeightedText(text))
        for path in images or []:
            spec.images.append(WeightedImage(path=str(path)))
        return spec


def _check_text(text: object) -> None:
    """A query text must be non-empty, valid Unicode (no lone surrogates) and of bounded length."""
    if not isinstance(text, str) or not text.strip():
        raise QueryError("a query text is empty", field="texts")
    if len(text) > MAX_TEXT_CHARS:
        raise QueryError(f"a query text is {len(text)} characters; the limit is {MAX_TEXT_CHARS}", field="texts")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise QueryError("a query text is not valid Unicode (it holds a lone surrogate)", field="texts") from None
