"""Zero-shot classification and tagging with a user's labels: prompt ensembles, AutoCLIP, CuPL files, "none of these".

How a label is scored for an image (all vectors unit length, so similarity is the dot product):

* ``single``: one prompt per label, "a photo of a {label}.".
* ``ensemble``: the mean of the label's prompt vectors over the templates (CLIP paper §3.1.4), re-normalised.
* ``autoclip``: AutoCLIP (Metzen et al., TMLR 2024). Per image, each template gets a weight from how well its
  prompts fit the image at all (log-sum-exp over labels of its prompt-image similarities); the weights are a softmax
  whose temperature is set, per image, so that their entropy is 85 % of the uniform weights' entropy. A label's score
  is the weighted mean of its prompt-image similarities.
* CuPL-style descriptions (a JSON file ``{"label": ["description", ...]}``, written by a person or a language model)
  replace the templates: a label's prompts are its descriptions. For AutoCLIP, labels with fewer descriptions reuse
  theirs in turn so that every label has as many prompts as the longest list.

"None of these" (the calibration, against the collection itself): a raw similarity means different things for
different models, labels and images, so each label's single-prompt similarities over the collection being tagged
are its own null: most photos do not show most labels, so the median and MAD of a label's scores say how a photo
*without* it scores. A label's robust z for a photo is (score - median) / (1.4826 MAD), its *confidence* the normal
probability Phi(z), and it counts when the confidence reaches `threshold` (auto: z >= `AUTO_MIN_Z`) and its
probability is at least `RELATIVE_PROBABILITY` of the photo's best label's; a photo none of whose labels counts is
"none of these". Nothing but the labels is embedded (earlier versions compared each label
with a bank of 17,000 vocabulary words, which took minutes to embed). The limit of a collection-based null: a label
that fits most of the collection (every photo a cat) no longer stands out; docs/organize.md reports the measurement.
Scores stored as tags are probabilities over the labels: a softmax of the similarities divided by the labels' typical
spread over the collection, so the temperature follows each model's similarity scale instead of CLIP's fixed logit
scale of 100.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pixquery.models.base import Encoder, l2_normalize
from pixquery.organize.templates import SINGLE_TEMPLATE, resolve_templates
from pixquery.organize.view import IndexView
from pixquery.progress import ProgressFn, no_progress
from pixquery.store.catalog import Tag

LABELS_SOURCE = "labels"
"""The catalog's tag source of tags from the user's labels."""


METHODS: tuple[str, ...] = ("single", "ensemble", "autoclip")
DEFAULT_METHOD = "autoclip"
"""What ``method="auto"`` picks: best or tied-best in every measurement (docs/organize.md)."""
DEFAULT_TEMPLATES: dict[str, str] = {"single": "single", "ensemble": "curated", "autoclip": "imagenet80"}
"""Templates per method when none are given: the curated 7 did better than all 80 for plain averaging, AutoCLIP
was measured (and published) with all 80."""
MAX_DEFAULT_PROMPTS = 20_000
"""Above this many label x template prompts, default templates fall back to the curated 7 (text-encoding time)."""
Threshold = float | str | None
DEFAULT_THRESHOLD: Threshold = "auto"
"""``"auto"``: a label's robust z over the collection must reach `AUTO_MIN_Z` (confidence Phi(AUTO_MIN_Z)).
A number sets the confidence directly; None (or 0) turns "none of these" off."""
AUTO_MIN_Z = 2.0
"""The least robust z of an accepted label; chosen by the leave-one-class-out measurement in benchmarks/organize.py
(docs/organize.md)."""
RELATIVE_PROBABILITY = 0.5
"""A stored label must also reach this fraction of the photo's best label's probability: clearing the collection's
null alone let weak runners-up through (kookaburras tagged "bee" at p = 0.10 while their best label, "bird", fell
short of the null). Measured with 20 common labels (benchmarks/naming_real.py): precision of stored labels 0.71 ->
0.75 on the 21 demo photos and 0.356 -> 0.397 on the 1,000-photo ImageNet sample (right labels 243 -> 240)."""
AUTOCLIP_ENTROPY = 0.85
"""AutoCLIP's target entropy of the template weights, as a fraction of log(number of templates) (the paper's)."""
AUTOCLIP_LOGIT_SCALE = 100.0
"""Sharpness of the log-sum-exp over labels that rates a template for an image (CLIP's logit scale)."""
_CHUNK_ELEMENTS = 20_000_000  # similarities held at once (float32: 80 MB), bounds memory on big collections


# --- labels -----------------------------------------------------------------------------------------------------

@dataclass
class LabelSet:
    """Label names, and for CuPL-style label files each label's descriptions."""

    names: list[str]
    descriptions: dict[str, list[str]] = field(default_factory=dict)


def parse_labels(labels: str | Path | Sequence[str] | dict[str, list[str]]) -> LabelSet:
    """Labels from a list, a comma-separated string, a text file (one per line) or a CuPL JSON file.

    A JSON file holds either a list of names or an object ``{"label": ["a description", ...]}``.
    Raises ValueError when no label is left or a label repeats.
    """
    descriptions: dict[str, list[str]] = {}
    if isinstance(labels, dict):
        descriptions = {str(k): [str(d) for d in v] for k, v in labels.items()}
        names = list(descriptions)
    elif isinstance(labels, Path) or (isinstance(labels, str) and Path(labels).is_file()):
        path = Path(labels)
        if path.suffix.lower() == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data, dict):
                return parse_labels({str(k): list(v) for k, v in data.items()})
            names = [str(x) for x in data]
        else:
            lines = path.read_text(encoding="utf-8").splitlines()
            names = [line.split("#", 1)[0] for line in lines]
    elif isinstance(labels, str):
        names = labels.split(",")
    else:
        names = [str(x) for x in labels]
    names = [n.strip() for n in names if n.strip()]
    if not names:
        raise ValueError("no labels given: pass a list, 'cat,dog,...', a text file or a JSON file")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"labels repeat: {', '.join(repeated)}")
    empty = [n for n in names if n in descriptions and not descriptions[n]]
    if empty:
        raise ValueError(f"labels without descriptions in the description file: {', '.join(empty)}")
    return LabelSet(names, descriptions)


def prompt_grid(labels: LabelSet, templates: Sequence[str]) -> list[list[str]]:
    """Prompts as rows of one text per label: row t is template t (or description t) for every label."""
    if labels.descriptions:
        lists = [labels.descriptions.get(n) or [SINGLE_TEMPLATE.format(n)] for n in labels.names]
        rows = max(len(x) for x in lists)
        # Shorter description lists are reused in turn, so every label has one prompt per row.
        return [[x[t % len(x)] for x in lists] for t in range(rows)]
    return [[t.format(n) for n in labels.names] for t in templates]


def encode_grid(encoder: Encoder, grid: list[list[str]]) -> np.ndarray:
    """(templates, labels, dim) unit text vectors of a prompt grid, in one encoder pass over unique texts."""
    flat = [text for row in grid for text in row]
    unique = list(dict.fromkeys(flat))
    vectors = encoder.encode_texts(unique)
    index = {text: i for i, text in enumerate(unique)}
    rows = np.asarray([index[text] for text in flat]).reshape(len(grid), len(grid[0]))
    return vectors[rows]


# --- scoring ----------------------------------------------------------------------------------------------------

def _entropy(weights: np.ndarray) -> np.ndarray:
    return -(weights * np.log(np.clip(weights, 1e-30, None))).sum(axis=-1)


def _softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    z = np.exp(x - x.max(axis=axis, keepdims=True))
    return z / z.sum(axis=axis, keepdims=True)


def autoclip_weights(similarities: np.ndarray, entropy_fraction: float = AUTOCLIP_ENTROPY) -> np.ndarray:
    """AutoCLIP's per-image template weights from (images, templates, labels) prompt-image similarities.

    Each template is rated by the log-sum-exp over labels of its scaled similarities (how well any of its prompts
    fits the image); the weights are softmax(beta * rating), with beta found per image by bisection (on log beta)
    so that the weights' entropy equals `entropy_fraction` * log(templates). Returns (images, templates).
    """
    n, n_templates, _ = similarities.shape
    if n_templates == 1:
        return np.ones((n, 1), dtype=np.float32)
    logits = similarities.astype(np.float64) * AUTOCLIP_LOGIT_SCALE
    peak = logits.max(axis=2, keepdims=True)
    rating = (peak[..., 0] + np.log(np.exp(logits - peak).sum(axis=2)))  # (n, T), stable log-sum-exp
    rating -= rating.mean(axis=1, keepdims=True)
    target = entropy_fraction * np.log(n_templates)
    low, high = np.full(n, -12.0), np.full(n, 12.0)  # log10 beta; entropy falls as beta grows
    for _ in range(48):
        mid = (low + high) / 2
        too_flat = _entropy(_softmax(rating * (10.0**mid)[:, None])) > target
        low = np.where(too_flat, mid, low)
        high = np.where(too_flat, high, mid)
    return _softmax(rating * (10.0 ** ((low + high) / 2))[:, None]).astype(np.float32)


class LabelScorer:
    """Scores images against a label set with one of `METHODS`; the text side is encoded once."""

    def __init__(self, encoder: Encoder, labels: LabelSet, method: str, templates: Sequence[str]) -> None:
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; expected one of: {', '.join(METHODS)} or auto")
        self.method = method
        self.labels = labels
        if method == "single" and not labels.descriptions:
            templates = [SINGLE_TEMPLATE]
        self.grid = encode_grid(encoder, prompt_grid(labels, templates))  # (T, C, d)
        if method == "single":  # with a description file: each label's first description
            self.grid = self.grid[:1]
        self.mean_vectors = l2_normalize(self.grid.mean(axis=0))  # (C, d): the ensemble's class vectors

    def scores(self, images: np.ndarray) -> np.ndarray:
        """(images, labels) similarities."""
        if self.method != "autoclip":
            return images @ self.mean_vectors.T
        n_templates, n_labels, _ = self.grid.shape
        out = np.empty((len(images), n_labels), dtype=np.float32)
        step = max(1, _CHUNK_ELEMENTS // (n_templates * n_labels))
        for start in range(0, len(images), step):
            chunk = images[start : start + step]
            sims = np.einsum("nd,tcd->ntc", chunk, self.grid)
            weights = autoclip_weights(sims)
            out[start : start + step] = np.einsum("nt,ntc->nc", weights, sims)
        return out


# --- calibration ------------------------------------------------------------------------------------------------

def label_null(label_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(median, spread) of each label's scores over the collection (images x labels): its null, robust to the
    photos that do show it."""
    median = np.median(label_scores, axis=0)
    spread = np.median(np.abs(label_scores - median), axis=0) * 1.4826
    return median, np.maximum(spread, 1e-6)


def normal_cdf(z: np.ndarray) -> np.ndarray:
    """Phi(z), the standard normal distribution function (numpy has no erf; Abramowitz-Stegun 7.1.26, 1e-7)."""
    x = np.abs(np.asarray(z, np.float64)) / np.sqrt(2.0)
    t = 1.0 / (1.0 + 0.3275911 * x)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    erf = 1.0 - poly * np.exp(-x * x)
    return 0.5 * (1.0 + np.sign(z) * erf)


# --- results ----------------------------------------------------------------------------------------------------

@dataclass
class ImageLabels:
    """What one image was given: its labels, best first, or none ("none of these")."""

    file_id: int
    path: str
    labels: list[tuple[str, float, float]]
    """(label, probability over the labels, confidence against the collection's null)."""

    @property
    def none(self) -> bool:
        return not self.labels

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.file_id,
            "path": self.path,
            "labels": [{"label": lb, "score": round(p, 4), "confidence": round(c, 4)} for lb, p, c in self.labels],
            "none_of_these": self.none,
        }


@dataclass
class TagReport:
    """What `tag_library` did: the method used, per-image labels and label counts."""

    method: str
    labels: list[str]
    threshold: float | None
    images: list[ImageLabels]
    stored: int

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(self.labels, 0)
        for image in self.images:
            for label, _, _ in image.labels:
                counts[label] += 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "threshold": self.threshold,
            "images": len(self.images),
            "none_of_these": sum(i.none for i in self.images),
            "tags_stored": self.stored,
            "counts": self.counts(),
            "results": [i.to_dict() for i in self.images],
        }


class ZeroShotClassifier:
    """Labels, method and calibration together: `predict(image_vectors)` gives each image its labels."""

    def __init__(
        self,
        encoder: Encoder,
        labels: str | Path | Sequence[str] | LabelSet,
        method: str = "auto",
        templates: str | Path | Sequence[str] | None = None,
        threshold: Threshold = DEFAULT_THRESHOLD,
    ) -> None:
        self.labels = labels if isinstance(labels, LabelSet) else parse_labels(labels)
        self.method = DEFAULT_METHOD if method == "auto" else method
        if templates is None:
            templates = DEFAULT_TEMPLATES.get(self.method, "curated")
            if len(resolve_templates(templates)) * len(self.labels.names) > MAX_DEFAULT_PROMPTS:
                templates = "curated"
        self.templates = resolve_templates(templates)
        self.scorer = LabelScorer(encoder, self.labels, self.method, self.templates)
        # Calibration reads single-prompt label vectors: one plain prompt per label keeps labels comparable (averaged
        # ensemble vectors sit systematically closer to images than any one prompt does).
        self.single = encode_grid(encoder, [[SINGLE_TEMPLATE.format(n) for n in self.labels.names]])[0]
        self.requested_threshold = threshold
        self.threshold: float | None = None
        """The confidence a label needed in the last `predict` (None when calibration is off)."""

    def predict(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(probabilities, confidence, accepted), each (images, labels), for the collection `images` (which is also
        the calibration's null); accepted marks labels that clear the threshold (all of them when calibration is
        off). Sets `threshold` to the value used."""
        images = np.asarray(images, dtype=np.float32)
        scores = self.scorer.scores(images)
        single = images @ self.single.T
        median, spread = label_null(single) if len(images) else (np.zeros(len(self.single)), np.ones(len(self.single)))
        calibrated = self.requested_threshold is not None and self.requested_threshold != 0
        confidence = normal_cdf((single - median) / spread) if calibrated else np.ones_like(scores)
        if not calibrated:
            self.threshold = None
        elif self.requested_threshold == "auto":
            self.threshold = float(normal_cdf(np.asarray(AUTO_MIN_Z)))
        else:
            self.threshold = float(self.requested_threshold)  # type: ignore[arg-type]
        probabilities = _softmax(scores / float(np.median(spread)), axis=1)
        accepted = confidence >= (self.threshold if self.threshold is not None else -np.inf)
        return probabilities, confidence.astype(np.float32), accepted


def tag_labels(
    view: IndexView,
    labels: str | Path | Sequence[str],
    method: str = "auto",
    templates: str | Path | Sequence[str] | None = None,
    top: int = 3,
    store: bool = True,
    threshold: Threshold = DEFAULT_THRESHOLD,
    progress: ProgressFn = no_progress,
) -> TagReport:
    """Give every indexed image up to `top` of `labels`, each with a calibrated score, or "none of these".

    `method`: "single", "ensemble", "autoclip" or "auto" (`DEFAULT_METHOD`). `templates`: a set name ("single",
    "curated", "imagenet80"), a file or a list (default per method, `DEFAULT_TEMPLATES`). `threshold`: the
    confidence a label needs, "auto" (see `DEFAULT_THRESHOLD`), or None/0 to turn "none of these" off. Only the
    labels' prompts are embedded. With `store`, the tags replace earlier
    "labels" tags of these images in the catalog, where search filters see them (`{"tags": "cat"}`).
    """
    if top < 1:
        raise ValueError(f"top must be at least 1, got {top}")
    classifier = ZeroShotClassifier(view.encoder, labels, method, templates, threshold)
    ids = view.ids
    probabilities, confidence, accepted = classifier.predict(view.vectors)
    progress("score", len(ids), len(ids))
    names = classifier.labels.names
    results = []
    for i, file_id in enumerate(ids.tolist()):
        least = RELATIVE_PROBABILITY * float(probabilities[i].max())
        order = [c for c in np.argsort(-probabilities[i], kind="stable")[:top]
                 if accepted[i, c] and probabilities[i, c] >= least]
        chosen = [(names[c], float(probabilities[i, c]), float(confidence[i, c])) for c in order]
        results.append(ImageLabels(int(file_id), view.path_of(file_id), chosen))
    stored = 0
    if store:
        tags = [Tag(r.file_id, label, p, LABELS_SOURCE) for r in results for label, p, _ in r.labels]
        stored = view.catalog.write_tags(ids.tolist(), tags, LABELS_SOURCE)
    return TagReport(classifier.method, names, classifier.threshold, results, stored)
