"""The parity gate: a faster precision is only used where it retrieves what fp32 retrieves.

On a fixed probe set (`pixquery.models.probes`: the demo photos, ShapesWorld scenes, photo queries and captions)
every candidate precision of each tower embeds the probes, and each pair (text precision, image precision) is
compared with fp32/fp32:

- per-vector cosine: every probe vector of a tower at precision p against its fp32 vector, minimum >= 0.99;
- top-10 overlap: for each query, the share of fp32's 10 best images that the pair also ranks in its top 10,
  averaged over the queries, >= 0.95.

A pair passes when both towers' cosines and the pair's overlap pass. "Variant p passes" means the pair (p, p)
does; a pair of different precisions passing is the cross-precision check that lets an index built at one
precision be searched with text vectors of another. `auto` takes, among passing pairs, the image precision
with the best images/s (what indexing is bound by) and then the text precision with the lowest query ms that
passes with it; a variant must beat fp32 by `MIN_GAIN` to be chosen at all, since timing noise on a busy
machine is of that order and an accuracy cost for no real gain is a bad trade. With nothing passing it is fp32.

Speed and parity are measured once per model and CPU (int8 arithmetic differs between CPUs with and without
VNNI) and cached with the model's variants as `gate.json`: CPU flags, timings, parity figures, the choice.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pixquery.models.base import ModelError
from pixquery.models.precision import PRECISIONS, TowerPrecision

MIN_COSINE = 0.99
MIN_TOP10_OVERLAP = 0.95
TOP_K = 10
MIN_GAIN = 1.10
"""A variant must be at least this many times faster than fp32 (images/s, or query ms) to be chosen."""
GATE_FILE = "gate.json"
IMAGE_TIMING_BATCH = 16
TEXT_TIMING_QUERIES = 8
REPEATS = 3


@dataclass
class Thresholds:
    """What a pair must reach to pass (defaults read the module constants when created)."""

    min_cosine: float = field(default_factory=lambda: MIN_COSINE)
    min_overlap: float = field(default_factory=lambda: MIN_TOP10_OVERLAP)
    top_k: int = field(default_factory=lambda: TOP_K)


@dataclass
class TowerFigures:
    """One tower at one precision: parity against fp32 and speed."""

    min_cosine: float | None = None
    mean_cosine: float | None = None
    images_per_s: float | None = None
    query_ms: float | None = None
    error: str | None = None


@dataclass
class GateReport:
    """What the gate measured for one model on one CPU, and what `auto` chose."""

    cpu_key: str
    cpu_flags: dict[str, bool]
    fingerprint: dict[str, Any]
    thresholds: Thresholds
    image: dict[str, TowerFigures]
    text: dict[str, TowerFigures]
    pairs: dict[str, float] = field(default_factory=dict)
    """Top-k overlap of each pair with fp32/fp32, keyed "text=T,image=I"."""
    passing: list[str] = field(default_factory=list)
    choice: dict[str, str] = field(default_factory=lambda: {"image": "fp32", "text": "fp32"})
    seconds: float = 0.0

    @staticmethod
    def pair_key(text: str, image: str) -> str:
        return f"text={text},image={image}"

    def passes(self, text: str, image: str) -> bool:
        """Whether text vectors at `text` search image vectors at `image` as fp32 would."""
        return (text == "fp32" and image == "fp32") or self.pair_key(text, image) in self.passing

    def variant_passes(self, precision: str) -> bool:
        """Whether `precision` on both towers (where each tower has it) passes."""
        text = precision if precision in self.text else "fp32"
        image = precision if precision in self.image else "fp32"
        return self.passes(text, image)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GateReport:
        data = dict(data)
        data["thresholds"] = Thresholds(**data["thresholds"])
        for tower in ("image", "text"):
            data[tower] = {name: TowerFigures(**figures) for name, figures in data[tower].items()}
        return cls(**data)


# --- measuring --------------------------------------------------------------------------------------------------


def _seconds(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.einsum("nd,nd->n", a.astype(np.float64), b.astype(np.float64))


def top_k_overlap(queries: np.ndarray, images: np.ndarray, ref_queries: np.ndarray, ref_images: np.ndarray,
                  k: int = TOP_K) -> float:
    """Mean share of the reference top-k images (per query) that also rank in the candidate's top k."""
    k = min(k, len(images))
    ref = np.argsort(-(ref_queries @ ref_images.T), axis=1, kind="stable")[:, :k]
    got = np.argsort(-(queries @ images.T), axis=1, kind="stable")[:, :k]
    return float(np.mean([len(set(r) & set(g)) / k for r, g in zip(ref, got, strict=True)]))


def _embed_images(encoder: Any, batch: np.ndarray) -> np.ndarray:
    step = IMAGE_TIMING_BATCH
    return np.concatenate([encoder.encode_preprocessed(batch[i : i + step]) for i in range(0, len(batch), step)])


def _time(siblings: dict[str, tuple[Any, bool, bool]], batch: np.ndarray, texts: Sequence[str],
          figures: dict[str, dict[str, TowerFigures]]) -> None:
    """Images/s and one-query ms of each precision, best of REPEATS rounds that visit the precisions in turn:
    other processes' work only ever adds time, so the best round is the fairest, and taking turns spreads a
    busy spell over all precisions instead of penalising one."""
    image_s: dict[str, list[float]] = {}
    text_s: dict[str, list[float]] = {}
    timed = batch[:IMAGE_TIMING_BATCH]
    sample = list(texts[:TEXT_TIMING_QUERIES])
    for _ in range(REPEATS):
        for precision, (encoder, with_image, with_text) in siblings.items():
            if with_image:
                image_s.setdefault(precision, []).append(_seconds(lambda e=encoder: e.encode_preprocessed(timed)))
            if with_text:
                # Queries arrive one at a time; the median over different queries, best round of each.
                per_query = [_seconds(lambda e=encoder, t=t: e.encode_texts([t])) for t in sample]
                text_s.setdefault(precision, []).append(float(np.median(per_query)))
    for precision, runs in image_s.items():
        figures["image"][precision].images_per_s = round(len(timed) / min(runs), 2)
    for precision, runs in text_s.items():
        figures["text"][precision].query_ms = round(min(runs) * 1e3, 3)


def measure(
    encoder: Any,
    image_candidates: Sequence[str],
    text_candidates: Sequence[str],
    thresholds: Thresholds,
    probes: tuple[list[Any], list[str]] | None = None,
) -> GateReport:
    """Embed the probe set at fp32 and at each candidate precision and compare (no caching)."""
    from pixquery.cpu import cpu_flags, cpu_key
    from pixquery.models.probes import probe_set

    start = time.perf_counter()
    images, texts = probes or probe_set()
    batch = np.stack([encoder.preprocess(img) for img in images])
    image_vecs: dict[str, np.ndarray] = {}
    text_vecs: dict[str, np.ndarray] = {}
    figures: dict[str, dict[str, TowerFigures]] = {"image": {}, "text": {}}
    siblings: dict[str, tuple[Any, bool, bool]] = {}
    for precision in dict.fromkeys(["fp32", *image_candidates, *text_candidates]):
        with_image = precision == "fp32" or precision in image_candidates
        with_text = precision == "fp32" or precision in text_candidates
        try:
            sibling = encoder.at_precision(
                TowerPrecision(precision if with_image else "fp32", precision if with_text else "fp32")
            )
            if with_image:
                image_vecs[precision] = _embed_images(sibling, batch)
                figures["image"][precision] = TowerFigures()
            if with_text:
                text_vecs[precision] = np.concatenate([sibling.encode_texts([t]) for t in texts])
                figures["text"][precision] = TowerFigures()
            siblings[precision] = (sibling, with_image, with_text)
        except ModelError as exc:  # e.g. bf16 on a CPU without it, or no onnx package to build a variant
            _record_error(figures, precision, with_image, with_text, str(exc))
        except Exception as exc:  # a quantiser or runtime failure on one variant must not stop the others
            _record_error(figures, precision, with_image, with_text, f"{type(exc).__name__}: {exc}")
    _time(siblings, batch, texts, figures)
    if "fp32" not in image_vecs or "fp32" not in text_vecs:
        raise ModelError(f"the parity gate could not run {encoder.name} at fp32: {figures}")
    for tower, vecs in (("image", image_vecs), ("text", text_vecs)):
        for precision, v in vecs.items():
            cos = _cosines(v, vecs["fp32"])
            figures[tower][precision].min_cosine = round(float(cos.min()), 6)
            figures[tower][precision].mean_cosine = round(float(cos.mean()), 6)
    report = GateReport(
        cpu_key=cpu_key(),
        cpu_flags=cpu_flags(),
        fingerprint=encoder.gate_fingerprint(),
        thresholds=thresholds,
        image=figures["image"],
        text=figures["text"],
    )
    for t, tv in text_vecs.items():
        for i, iv in image_vecs.items():
            overlap = top_k_overlap(tv, iv, text_vecs["fp32"], image_vecs["fp32"], thresholds.top_k)
            report.pairs[report.pair_key(t, i)] = round(overlap, 4)
            good = (
                report.text[t].min_cosine >= thresholds.min_cosine
                and report.image[i].min_cosine >= thresholds.min_cosine
                and overlap >= thresholds.min_overlap
            )
            if good:
                report.passing.append(report.pair_key(t, i))
    report.choice = choose(report).to_dict()
    report.seconds = round(time.perf_counter() - start, 2)
    return report


def _record_error(figures: dict[str, dict[str, TowerFigures]], precision: str, image: bool, text: bool,
                  message: str) -> None:
    for tower, wanted in (("image", image), ("text", text)):
        if wanted:
            figures[tower].setdefault(precision, TowerFigures()).error = message


def choose(report: GateReport) -> TowerPrecision:
    """`auto`'s choice from a report (see the module docstring); fp32 when nothing passes."""
    fp32_ips = report.image["fp32"].images_per_s or 0.0
    fp32_ms = report.text["fp32"].query_ms or float("inf")
    images = [
        i for i, fig in report.image.items()
        if fig.images_per_s and (i == "fp32" or fig.images_per_s >= MIN_GAIN * fp32_ips)
        and any(report.passes(t, i) for t in report.text)
    ]
    image = max(images, key=lambda i: report.image[i].images_per_s or 0.0, default="fp32")
    texts = [
        t for t, fig in report.text.items()
        if fig.query_ms and (t == "fp32" or fig.query_ms * MIN_GAIN <= fp32_ms) and report.passes(t, image)
    ]
    text = min(texts, key=lambda t: report.text[t].query_ms or float("inf"), default="fp32")
    if not report.passes(text, image):  # fp32 text with a variant image tower that only passes paired
        image, text = "fp32", "fp32"
    return TowerPrecision(image=image, text=text)


# --- cached gate --------------------------------------------------------------------------------------------------


def _candidates(encoder: Any, which: Sequence[str] | None, attr: str) -> list[str]:
    available = getattr(encoder, attr, ("fp32",))
    wanted = which if which is not None else PRECISIONS
    return [p for p in wanted if p in available and p != "fp32"]


def gate_path(encoder: Any) -> Path:
    """Where an encoder's gate report is cached."""
    return Path(encoder.variant_root) / GATE_FILE


def cached_report(encoder: Any, thresholds: Thresholds | None = None) -> GateReport | None:
    """The cached report for this model, CPU and thresholds, or None (fingerprint or CPU changed)."""
    from pixquery.cpu import cpu_key

    path = gate_path(encoder)
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
        report = GateReport.from_dict(stored["reports"][cpu_key()])
    except (OSError, KeyError, TypeError, ValueError):
        return None
    if report.fingerprint != encoder.gate_fingerprint():
        return None
    if thresholds is not None and report.thresholds != thresholds:
        return None
    return report


def _save(encoder: Any, report: GateReport) -> None:
    path = gate_path(encoder)
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
        reports = dict(stored.get("reports", {}))
    except (OSError, ValueError, AttributeError):
        reports = {}
    reports[report.cpu_key] = report.to_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    partial.write_text(json.dumps({"reports": reports}, indent=2) + "\n", encoding="utf-8")
    os.replace(partial, path)


def run_gate(
    encoder: Any,
    image_candidates: Sequence[str] | None = None,
    text_candidates: Sequence[str] | None = None,
    thresholds: Thresholds | None = None,
    use_cache: bool = True,
    probes: tuple[list[Any], list[str]] | None = None,
) -> GateReport:
    """The gate's report for `encoder` on this CPU: cached, or measured now (and cached).

    Candidates default to every precision the encoder's towers can be built at. A report cached with other
    candidates is measured again.
    """
    thresholds = thresholds or Thresholds()
    images = _candidates(encoder, image_candidates, "image_precisions")
    texts = _candidates(encoder, text_candidates, "text_precisions")
    if use_cache:
        report = cached_report(encoder, thresholds)
        if report is not None and set(report.image) == {"fp32", *images} and set(report.text) == {"fp32", *texts}:
            return report
    report = measure(encoder, images, texts, thresholds, probes)
    _save(encoder, report)
    return report


def auto_precision(encoder: Any) -> TowerPrecision:
    """`--precision auto`: the gate's choice for this model on this CPU (measured on first use, then cached)."""
    return TowerPrecision(**run_gate(encoder).choice)


def spaces_agree(encoder: Any, text: str, image: str) -> bool | None:
    """Whether text vectors at `text` may search image vectors at `image`: True for fp32 with fp32, else the
    gate's cached verdict for the pair, or None when no gate report exists yet."""
    if text == image == "fp32":
        return True
    report = cached_report(encoder)
    if report is None:
        return None
    return report.passes(text, image)


# --- indexes: which text precision may search an index's image vectors --------------------------------------------


def best_text_for(report: GateReport, image: str) -> str:
    """The fastest text precision that passes with image vectors at `image` (fp32 when none does)."""
    passing = [t for t in report.text if report.passes(t, image) and report.text[t].query_ms]
    return min(passing, key=lambda t: report.text[t].query_ms or float("inf"), default="fp32")


def load_index_encoder(spec: str, requested: str | None, record: Any, exists: bool, directory: Path) -> Any:
    """The encoder for an index: a new index gets the requested precision (None: $PIXQUERY_PRECISION or fp32);
    an existing one keeps the image precision it was built at, and its text tower runs at the recorded
    precision, or at the requested one where the gate's cross-precision check passed for that pair."""
    from pixquery.errors import ModelMismatchError
    from pixquery.models.precision import ONNX_BACKENDS, parse_precision, precision_options
    from pixquery.models.registry import load_encoder, split_spec

    if not exists:
        return load_encoder(spec, **precision_options(spec, requested))
    built = TowerPrecision.from_record(record)
    if split_spec(spec)[0] not in ONNX_BACKENDS:
        precision_options(spec, requested)  # raises for a non-fp32 request
        return load_encoder(spec)
    wanted = parse_precision(requested) if requested is not None else built
    if wanted == "auto":
        encoder = load_encoder(spec, precision=built)
        wanted = TowerPrecision(built.image, best_text_for(run_gate(encoder), built.image))
    assert isinstance(wanted, TowerPrecision)
    encoder = load_encoder(spec, precision=TowerPrecision(built.image, wanted.text))
    text = encoder.precision.text  # e.g. conse runs its text tower at fp32 whatever was asked
    verdict = True if text == built.text else spaces_agree(encoder, text, built.image)
    if not verdict:
        why = (
            "the parity gate has not compared them on this CPU (run `pixquery index --precision auto` once)"
            if verdict is None
            else "the parity gate found their rankings differ"
        )
        raise ModelMismatchError(
            f"the index at {directory} holds image vectors made at {built.image} and was searched at "
            f"{built.text}; text vectors at {text} may not search it: {why}. Leave --precision out to search "
            f"at {built.text}."
        )
    return encoder
