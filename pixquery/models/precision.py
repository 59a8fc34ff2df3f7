"""An index's one precision: fp32, or dynamic int8 where the parity gate finds it retrieves what fp32 retrieves.

  fp32   the exported graphs as they are
  int8   `onnxruntime.quantization.quantize_dynamic` of each tower's MatMul and Gemm ops: int8 weights,
         activations quantised on the fly. Convolutions stay fp32: ONNX Runtime's dynamic ConvInteger is
         several times slower than its fp32 convolution. Measured on image towers, batch 32, 2 threads, int8
         images/s over fp32's (with the convolutions quantised too in brackets): random ViT-B-32 1.75x
         (14.9 -> 26.0; 1.6x), the mini CNN 1.04x (0.13x), conse's EfficientNet-Lite0 1.00x (130 -> 130; 0.08x).

Both towers of a model always run at the one precision of its index. The int8 graphs are built once per model
in `precision/` beside it (or, where the model directory is read-only, as for the shipped `mini`, under the user
cache), and the parity gate runs then, once, on the probe set (`pixquery.models.probes`: real photos and photo
queries that ship with the package), comparing int8 with fp32:

- per tower, the cosine of each probe vector to its fp32 vector: the minimum must reach `MIN_COSINE`;
- text->image: for each probe query, the share of fp32's top-10 probe images that int8 also ranks in its top 10,
  averaged over the queries, must reach `MIN_TOP10_OVERLAP`.

Its figures are cached in `gate.json` beside the variants, keyed by the fp32 graphs (size, mtime), the
onnxruntime version and the probe set's version; written last, it is also the variants' commit record.
`resolve("auto")` reads it: int8 when the gate passed, else fp32. Nothing here runs at query time beyond
reading that record to choose which file to open. Building needs the `onnx` package (in the [torch] extra);
running a built variant needs only onnxruntime.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from pixquery.fsutil import atomic_write_json
from pixquery.models.base import PRECISIONS, Encoder, ModelError

TOWERS = ("visual", "textual")
QUANTIZED_OPS = ("MatMul", "Gemm")
MIN_COSINE = 0.99
MIN_TOP10_OVERLAP = 0.95
TOP_K = 10
GATE_FILE = "gate.json"
IMAGE_BATCH = 16


class PrecisionUnavailable(ModelError):
    """int8 cannot be built here (the onnx package is missing, the quantiser failed, nowhere to write)."""


class Quantizable(Protocol):
    """What the gate needs of an encoder whose towers are ONNX graphs (`OnnxEncoder`)."""

    name: str
    variant_root: Path

    def graph(self, tower: str) -> Path:
        """The fp32 graph of `tower` ("visual" or "textual")."""
        ...

    def at_precision(self, precision: str) -> Encoder:
        """The same model running `precision` as built, without consulting the gate (the gate uses it)."""
        ...


# --- where variants live ------------------------------------------------------------------------------------


def variant_root(model_dir: Path, in_cache: bool = False) -> Path:
    """The directory holding a model's variants and gate record: beside the model, else in the user cache."""
    from pixquery.paths import cache_root

    model_dir = Path(model_dir).resolve()
    local = model_dir / "precision"
    if not in_cache and (local.is_dir() or os.access(model_dir, os.W_OK)):
        return local
    return cache_root() / "precision" / hashlib.sha1(str(model_dir).encode("utf-8")).hexdigest()[:16]


def fingerprint(path: Path) -> dict[str, int]:
    """What identifies a source graph cheaply: its size and modification time."""
    stat = Path(path).stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def int8_graph(root: Path, tower: str) -> Path:
    return Path(root) / f"{tower}-int8.onnx"


# --- the gate's record ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TowerParity:
    """One tower at int8 against fp32 on the probes."""

    min_cosine: float
    mean_cosine: float


@dataclass(frozen=True)
class GateReport:
    """What the parity gate measured for one model; `passed` judges it against the current thresholds."""

    image: TowerParity
    text: TowerParity
    top10_overlap: float
    probes: dict[str, int]
    """How many probe images and texts were embedded."""
    key: dict[str, Any]
    """What the record is valid for: the fp32 graphs, onnxruntime's version, the probe set's version."""
    seconds: float

    @property
    def failures(self) -> list[str]:
        """What fell short of the thresholds (empty when the gate passes)."""
        out = [
            f"{tower} cosine {parity.min_cosine:.4f} < {MIN_COSINE}"
            for tower, parity in (("image", self.image), ("text", self.text))
            if parity.min_cosine < MIN_COSINE
        ]
        if self.top10_overlap < MIN_TOP10_OVERLAP:
            out.append(f"top-{TOP_K} overlap {self.top10_overlap:.3f} < {MIN_TOP10_OVERLAP}")
        return out

    @property
    def passed(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        """One line for a user: the figures and the verdict."""
        figures = (
            f"min cosine to fp32: image {self.image.min_cosine:.4f}, text {self.text.min_cosine:.4f}; "
            f"top-{TOP_K} overlap {self.top10_overlap:.3f}"
        )
        verdict = "passes" if self.passed else "fails (" + "; ".join(self.failures) + ")"
        return f"int8 {verdict}: {figures}"

    def to_dict(self) -> dict[str, Any]:
        thresholds = {"min_cosine": MIN_COSINE, "min_top10_overlap": MIN_TOP10_OVERLAP, "top_k": TOP_K}
        return {**asdict(self), "passed": self.passed, "thresholds": thresholds}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GateReport:
        return cls(
            image=TowerParity(**data["image"]),
            text=TowerParity(**data["text"]),
            top10_overlap=float(data["top10_overlap"]),
            probes=dict(data["probes"]),
            key=dict(data["key"]),
            seconds=float(data["seconds"]),
        )


def gate_key(encoder: Quantizable) -> dict[str, Any]:
    """What a gate record (and the variants it commits) depends on."""
    import onnxruntime

    from pixquery.models.probes import VERSION

    return {
        **{tower: fingerprint(encoder.graph(tower)) for tower in TOWERS},
        "onnxruntime": onnxruntime.__version__,
        "quantized_ops": list(QUANTIZED_OPS),
        "probes": VERSION,
    }


def gate_report(encoder: Quantizable) -> GateReport | None:
    """The cached gate record of this model, or None when the int8 variants are not built (or are stale)."""
    root = Path(encoder.variant_root)
    try:
        report = GateReport.from_dict(json.loads((root / GATE_FILE).read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if report.key != gate_key(encoder) or not all(int8_graph(root, t).is_file() for t in TOWERS):
        return None
    return report


# --- building the variants and running the gate ---------------------------------------------------------------


def build_int8(encoder: Quantizable) -> GateReport:
    """Quantise both towers, run the parity gate on them and cache its record (the variants' commit point)."""
    root = Path(encoder.variant_root)
    start = time.perf_counter()
    key = gate_key(encoder)
    for tower in TOWERS:
        quantize(encoder.graph(tower), int8_graph(root, tower))
    images, texts, overlap, probes = measure(encoder.at_precision("fp32"), encoder.at_precision("int8"))
    report = GateReport(images, texts, overlap, probes, key, round(time.perf_counter() - start, 2))
    try:
        atomic_write_json(root / GATE_FILE, report.to_dict(), durable=False, indent=2)
    except OSError as exc:
        raise PrecisionUnavailable(f"cannot record the parity gate's verdict in {root}: {exc}") from exc
    return report


def resolve(encoder: Quantizable, requested: str) -> str:
    """The concrete precision for `requested` ("fp32", "int8" or "auto"), building int8 once if needed.

    auto: int8 where it can be built and the gate passes, else fp32. int8: refused with a ModelError when the
    gate fails (or when int8 cannot be built here).
    """
    if requested not in (*PRECISIONS, "auto"):
        raise ModelError(f"unknown precision {requested!r}; use fp32, int8 or auto")
    if requested == "fp32":
        return "fp32"
    try:
        report = gate_report(encoder) or build_int8(encoder)
    except PrecisionUnavailable:
        if requested == "auto":
            return "fp32"
        raise
    if report.passed:
        return "int8"
    if requested == "auto":
        return "fp32"
    raise ModelError(
        f"{encoder.name} at int8 fails the parity gate, so it would not retrieve what fp32 retrieves "
        f"({report.summary()}). Use precision fp32 (--precision fp32); an index built at int8 with this model "
        "must be built again at fp32 (a new --index)"
    )


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.einsum("nd,nd->n", a.astype(np.float64), b.astype(np.float64))


def top_k_overlap(
    queries: np.ndarray, images: np.ndarray, ref_queries: np.ndarray, ref_images: np.ndarray, k: int = TOP_K
) -> float:
    """Mean share of the reference top-k images (per query) that also rank in the candidate's top k."""
    k = min(k, len(images))
    ref = np.argsort(-(ref_queries @ ref_images.T), axis=1, kind="stable")[:, :k]
    got = np.argsort(-(queries @ images.T), axis=1, kind="stable")[:, :k]
    return float(np.mean([len(set(r) & set(g)) / k for r, g in zip(ref, got, strict=True)]))


def measure(fp32: Encoder, int8: Encoder) -> tuple[TowerParity, TowerParity, float, dict[str, int]]:
    """Embed the probes with both encoders and compare: (image parity, text parity, top-10 overlap, counts)."""
    from pixquery.models.probes import probe_images, probe_texts

    images, texts = probe_images(), probe_texts()
    batch = np.stack([fp32.preprocess(image) for image in images])
    vectors = {}
    for name, encoder in (("fp32", fp32), ("int8", int8)):
        rows = [encoder.encode_preprocessed(batch[i : i + IMAGE_BATCH]) for i in range(0, len(batch), IMAGE_BATCH)]
        vectors[name] = (np.concatenate(rows), encoder.encode_texts(texts))
    parities = []
    for tower in (0, 1):
        cos = _cosines(vectors["int8"][tower], vectors["fp32"][tower])
        parities.append(TowerParity(round(float(cos.min()), 6), round(float(cos.mean()), 6)))
    overlap = top_k_overlap(vectors["int8"][1], vectors["int8"][0], vectors["fp32"][1], vectors["fp32"][0])
    return parities[0], parities[1], round(overlap, 4), {"images": len(images), "texts": len(texts)}


def quantize(source: Path, dest: Path) -> Path:
    """Dynamic int8 of `source`'s MatMul and Gemm ops into `dest`, written so a reader never sees half of it."""
    try:
        import onnx  # noqa: F401  (onnxruntime.quantization needs it; fail with a clear message)
        from onnxruntime import quantization as q
    except ImportError as exc:
        raise PrecisionUnavailable(f"building int8 needs the onnx package: pip install onnx ({exc})") from exc
    build = dest.parent / f".build-{os.getpid()}"
    # The quantiser logs a pre-processing hint on every call; it says nothing a user can act on here.
    quant_logger = logging.getLogger()
    level = quant_logger.level
    quant_logger.setLevel(logging.ERROR)
    try:
        build.mkdir(parents=True, exist_ok=True)
        q.quantize_dynamic(
            str(source),
            str(build / dest.name),
            weight_type=q.QuantType.QInt8,
            per_channel=False,  # per-channel dynamic MatMul was measured less accurate, not more
            op_types_to_quantize=list(QUANTIZED_OPS),
            use_external_data_format=Path(source).stat().st_size > 1_500_000_000,  # protobuf's 2 GB limit
        )
        # A large graph names a side file for its weights: the side file moves in first, then the graph.
        for built in sorted(build.iterdir(), key=lambda p: p.name == dest.name):
            os.replace(built, dest.parent / built.name)
    except Exception as exc:
        why = f"{type(exc).__name__}: {exc}"
        raise PrecisionUnavailable(f"could not build the int8 variant of {source}: {why}") from exc
    finally:
        quant_logger.setLevel(level)
        for leftover in build.glob("*") if build.is_dir() else ():
            leftover.unlink(missing_ok=True)
        if build.is_dir():
            build.rmdir()
    return dest


def load_ready(graph: Path, root: Path, name: str) -> Path:
    """A copy of `graph` that loads fast, built once: optimised by ONNX Runtime (level "extended", which is not
    specific to the CPU's instruction set) and with its weights in a side file, which ONNX Runtime maps into
    memory instead of parsing them out of the protobuf. Measured on ViT-B-32's text tower (2 busy cores): the
    session opens in ~0.65 s instead of ~1.2 s at fp32, and in ~0.12 s instead of ~1.1 s at int8.

    This is what makes a cold `pixquery search` quick, so the text towers get it; needs only onnxruntime.
    Where the copy cannot be written (read-only cache), `graph` itself is returned.
    """
    import onnxruntime as ort

    dest = root / f"{name}.ready.onnx"
    meta_path = root / f"{name}.ready.json"
    wanted = {"source": fingerprint(graph), "path": str(Path(graph).resolve()), "builder": ort.__version__}
    try:
        if dest.is_file() and json.loads(meta_path.read_text(encoding="utf-8")) == wanted:
            return dest
    except (OSError, json.JSONDecodeError):
        pass  # missing or damaged record: build again
    build = root / f".build-{os.getpid()}"
    try:
        build.mkdir(parents=True, exist_ok=True)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.optimized_model_filepath = str(build / dest.name)
        options.add_session_config_entry(
            "session.optimized_model_external_initializers_file_name", f"{dest.name}.data"
        )
        options.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
        ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
        # The graph names its side file; both move in, the data first, so a reader never sees a graph without it.
        os.replace(build / f"{dest.name}.data", root / f"{dest.name}.data")
        os.replace(build / dest.name, dest)
        atomic_write_json(meta_path, wanted, durable=False, indent=2)
    except Exception:  # a read-only cache, or a graph ONNX Runtime cannot save: open the graph itself
        return graph
    finally:
        for leftover in build.glob("*"):
            leftover.unlink(missing_ok=True)
        if build.is_dir():
            build.rmdir()
    return dest
