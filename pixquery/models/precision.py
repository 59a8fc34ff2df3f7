"""Numeric precision of an ONNX model's towers: which graph file runs, built once and cached next to the model.

Precisions (`--precision`, the registry option `precision=`, or $PIXQUERY_PRECISION):

  fp32          the exported graph as it is (the default)
  int8          dynamic int8 (`onnxruntime.quantization.quantize_dynamic`): int8 weights, activations quantised
                on the fly. Needs no data; suits transformers (MatMul-bound towers)
  int8-static   static int8 in QDQ form (`quantize_static`), activation ranges calibrated on a few hundred
                images (the user's own, or ShapesWorld scenes and the shipped demo photos) and captions
  bf16          the fp32 graph with ONNX Runtime's bf16 fast-math GEMMs, on an ARM64 CPU with bf16. ONNX
                Runtime's CPU provider has no bf16 GEMM on x86 (its AMX path is int8 only), so on x86 bf16 is
                reported unavailable rather than run slowly through casts
  auto          the fastest of these that passes the parity gate on this CPU (`pixquery.models.parity`)

A precision may differ per tower: "image=int8,text=fp32". Variant graphs live in `<model dir>/precision/`, or,
where the model directory is read-only (the shipped `mini`, a system-wide install), under the user cache. Each
variant carries a small JSON saying which fp32 file (size, mtime) and which options it was built from, so an
overwritten export or other quantisation options build it again. Building needs the `onnx` package
(`pip install onnx`); running a built variant needs only onnxruntime.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pixquery.models.base import ModelError

PRECISIONS = ("fp32", "int8", "int8-static", "bf16")
"""Concrete precisions, in the order `auto` tries them."""
CHOICES = (*PRECISIONS, "auto")
ENV_VAR = "PIXQUERY_PRECISION"
DEFAULT_PRECISION = "fp32"
TOWERS = ("visual", "textual")

DEFAULT_CALIBRATION_SIZE = 200
"""Images (and captions) static quantisation calibrates on: a few hundred cover the activation ranges."""
CALIBRATION_STRIDE = 8

_BF16_ARM = {"mlas.enable_gemm_fastmath_arm64_bfloat16": "1"}


class PrecisionUnavailable(ModelError):
    """A precision cannot be built or run here (missing package, no CPU support)."""


@dataclass(frozen=True)
class TowerPrecision:
    """The concrete precision of each tower."""

    image: str = DEFAULT_PRECISION
    text: str = DEFAULT_PRECISION

    def to_dict(self) -> dict[str, str]:
        """The record an index keeps in config.json (`extra["precision"]`)."""
        return {"image": self.image, "text": self.text}

    @classmethod
    def from_record(cls, record: Any) -> TowerPrecision:
        """Read what `to_dict` wrote; an index without a record was built at fp32."""
        if record is None:
            return cls()
        if isinstance(record, str):
            return cls(record, record)
        if not isinstance(record, dict):
            raise ModelError(f"an index's precision record should be an object, not {record!r}")
        return cls(_concrete(str(record.get("image", "fp32"))), _concrete(str(record.get("text", "fp32"))))

    def __str__(self) -> str:
        return self.image if self.image == self.text else f"image={self.image},text={self.text}"


def _concrete(name: str) -> str:
    if name not in PRECISIONS:
        raise ModelError(f"unknown precision {name!r}; use one of {', '.join(CHOICES)}")
    return name


def parse_precision(value: str | TowerPrecision | None) -> TowerPrecision | str:
    """A requested precision: a `TowerPrecision`, or the string "auto". None reads $PIXQUERY_PRECISION.

    Forms: "fp32", "int8", "int8-static", "bf16", "auto", or per tower "image=int8,text=fp32".
    """
    if isinstance(value, TowerPrecision):
        return value
    text = (value if value is not None else os.environ.get(ENV_VAR, "")).strip().lower() or DEFAULT_PRECISION
    if text == "auto":
        return "auto"
    if "=" not in text:
        return TowerPrecision(_concrete(text), _concrete(text))
    parts: dict[str, str] = {}
    for item in text.split(","):
        key, sep, name = item.partition("=")
        key = {"visual": "image", "textual": "text"}.get(key.strip(), key.strip())
        if not sep or key not in ("image", "text"):
            raise ModelError(f"precision {text!r}: per-tower form is image=PRECISION,text=PRECISION")
        parts[key] = _concrete(name.strip())
    return TowerPrecision(parts.get("image", DEFAULT_PRECISION), parts.get("text", DEFAULT_PRECISION))


ONNX_BACKENDS = ("onnx", "immich", "mini", "conse")
"""Registry backends that take a `precision` option (the ONNX-backed ones)."""


def precision_options(spec: str, precision: str | TowerPrecision | None) -> dict[str, Any]:
    """Keyword options for `load_encoder(spec, ...)` carrying `precision` to a backend that understands it.

    A torch backend runs fp32 only: asking it for another precision is an error rather than silently ignored.
    """
    if precision is None:
        return {}
    from pixquery.models.registry import split_spec

    backend, _ = split_spec(spec)
    if backend in ONNX_BACKENDS:
        return {"precision": precision}
    requested = parse_precision(precision)
    if requested != TowerPrecision():
        raise ModelError(
            f"--precision applies to ONNX models (onnx:, immich:, mini, conse); {spec} runs in torch at fp32. "
            f"Export it with `pixquery export-onnx {spec} DIR` and use --model onnx:DIR"
        )
    return {}


# --- where variants live ---------------------------------------------------------------------------------------


def variant_root(model_dir: Path, in_cache: bool = False) -> Path:
    """The directory holding a model's variants and gate report: next to the model, else in the user cache."""
    model_dir = Path(model_dir).resolve()
    local = model_dir / "precision"
    if not in_cache and (local.is_dir() or os.access(model_dir, os.W_OK)):
        return local
    base = os.environ.get("PIXQUERY_CACHE")
    if base:
        cache = Path(base).expanduser()
    else:
        from platformdirs import user_cache_dir

        cache = Path(user_cache_dir("pixquery"))
    return cache / "precision" / hashlib.sha1(str(model_dir).encode("utf-8")).hexdigest()[:16]


def fingerprint(path: Path) -> dict[str, int]:
    """What identifies a source graph cheaply: its size and modification time."""
    stat = Path(path).stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def session_config(precision: str) -> dict[str, str]:
    """ONNX Runtime session config entries a precision needs (bf16 runs the fp32 graph with fast-math GEMMs)."""
    return dict(_BF16_ARM) if precision == "bf16" else {}


def check_available(precision: str) -> None:
    """Raise PrecisionUnavailable when this machine cannot run `precision` usefully."""
    if precision != "bf16":
        return
    import platform

    from pixquery.cpu import cpu_flags

    flags = cpu_flags()
    if platform.machine().lower() in ("aarch64", "arm64"):
        if not flags["arm_bf16"]:
            raise PrecisionUnavailable("bf16: this ARM CPU has no bf16 instructions")
        return
    have = [f for f in ("avx512_bf16", "amx") if flags[f]]
    detail = f"it has {', '.join(have)}, but" if have else "it has neither avx512_bf16 nor amx, and"
    raise PrecisionUnavailable(
        f"bf16: not available on this x86 CPU: {detail} ONNX Runtime's CPU provider has no x86 bf16 GEMM "
        "(its bf16 fast-math is ARM64-only and its AMX kernels are int8); use int8 or fp32"
    )


Feeds = Callable[[], Iterable[dict[str, np.ndarray]]]
"""A source of calibration inputs for one tower: each item maps graph input names to a batch."""


def variant_path(
    source: Path,
    root: Path,
    tower: str,
    precision: str,
    calibration: Feeds | None = None,
    options: dict[str, Any] | None = None,
) -> Path:
    """The graph to run for `tower` at `precision`, building (and caching) it when missing or stale.

    `source` is the fp32 graph. `calibration` feeds int8-static's calibration; `options` (recorded in the
    variant's JSON) are passed to the quantiser, e.g. {"per_channel": True}.
    """
    if precision not in PRECISIONS:
        raise ModelError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    check_available(precision)
    if precision in ("fp32", "bf16"):
        return source
    dest = root / f"{tower}-{precision}.onnx"
    meta_path = dest.with_suffix(".json")
    options = {**default_options(precision), **(options or {})}
    wanted = {"source": fingerprint(source), "options": options, "builder": _builder_version()}
    if dest.is_file() and meta_path.is_file():
        try:
            if json.loads(meta_path.read_text(encoding="utf-8")) == wanted:
                return dest
        except (OSError, json.JSONDecodeError):
            pass  # a damaged record: build again
    build_variant(source, dest, precision, calibration, options)
    _write_atomic(meta_path, json.dumps(wanted, indent=2) + "\n")
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
        _write_atomic(meta_path, json.dumps(wanted, indent=2) + "\n")
    except Exception:  # a read-only cache, or a graph ONNX Runtime cannot save: open the graph itself
        return graph
    finally:
        for leftover in build.glob("*"):
            leftover.unlink(missing_ok=True)
        if build.is_dir():
            build.rmdir()
    return dest


def default_options(precision: str) -> dict[str, Any]:
    """Quantiser options used unless overridden (recorded with each variant)."""
    if precision == "int8":
        # Per-tensor weight scales: onnxruntime's dynamic per-channel MatMul was measured less accurate, not
        # more (a one-projection tower: min cosine 0.9964 per channel against 0.9998 per tensor).
        return {"per_channel": False}
    if precision == "int8-static":
        # Only the weight-heavy ops: quantising every Add, Mul and Softmax between them too (the quantiser's
        # default) wrecked transformer towers (random ViT-B-32 text tower: min cosine 0.16).
        return {"per_channel": True, "calibration_method": "minmax", "op_types": ["Conv", "MatMul", "Gemm"]}
    return {}


def variant_signature() -> dict[str, Any]:
    """What every variant of a model depends on besides its source graph: the quantiser's version and options
    (part of the parity gate's cache key, so a report is never read for variants built differently)."""
    return {"builder": _builder_version(), "options": {p: default_options(p) for p in PRECISIONS}}


def _builder_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


def build_variant(
    source: Path, dest: Path, precision: str, calibration: Feeds | None, options: dict[str, Any]
) -> Path:
    """Quantise `source` into `dest` (written atomically)."""
    try:
        import onnx  # noqa: F401  (onnxruntime.quantization needs it; fail with a clear message)
        from onnxruntime import quantization as q
    except ImportError as exc:
        raise PrecisionUnavailable(
            f"building the {precision} variant needs the onnx package: pip install onnx ({exc})"
        ) from exc
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(f"{dest.stem}.{os.getpid()}.partial.onnx")
    large = Path(source).stat().st_size > 1_500_000_000  # protobuf's 2 GB limit: weights go to a side file
    import logging

    # The quantiser logs a pre-processing hint on every call; it says nothing a user can act on here.
    quant_logger = logging.getLogger()
    level = quant_logger.level
    quant_logger.setLevel(logging.ERROR)
    try:
        if precision == "int8":
            q.quantize_dynamic(
                str(source),
                str(partial),
                weight_type=q.QuantType.QInt8,
                per_channel=bool(options.get("per_channel", False)),
                use_external_data_format=large,
            )
        elif precision == "int8-static":
            if calibration is None:
                raise ModelError("int8-static needs calibration inputs")
            method = {
                "minmax": q.CalibrationMethod.MinMax,
                "entropy": q.CalibrationMethod.Entropy,
                "percentile": q.CalibrationMethod.Percentile,
            }[options.get("calibration_method", "minmax")]
            feeds = list(calibration())
            # Ranges are reduced every STRIDE inputs (onnxruntime's strided calibration) so that memory holds a
            # few inputs' activations, not all of them; the stride must divide the count.
            stride = min(CALIBRATION_STRIDE, len(feeds))
            feeds = feeds[: len(feeds) - len(feeds) % stride] if stride else feeds
            if not feeds:
                raise ModelError("int8-static got no calibration inputs")
            q.quantize_static(
                str(source),
                str(partial),
                _reader(q.CalibrationDataReader, feeds),
                quant_format=q.QuantFormat.QDQ,
                per_channel=bool(options.get("per_channel", False)),
                activation_type=q.QuantType.QUInt8,
                weight_type=q.QuantType.QInt8,
                calibrate_method=method,
                op_types_to_quantize=options.get("op_types"),
                use_external_data_format=large,
                # Not CalibMaxIntermediateOutputs: onnxruntime 1.2x drops the collected data at that limit
                # instead of reducing it, so ranges would come from the last few inputs only.
                extra_options={"CalibStridedMinMax": stride},
            )
        else:
            raise ModelError(f"{precision} has no variant file to build")
        os.replace(partial, dest)
    finally:
        quant_logger.setLevel(level)
        partial.unlink(missing_ok=True)
    return dest


def _reader(base: type, feeds: list[dict[str, np.ndarray]]) -> Any:
    """A `CalibrationDataReader` over a list of feeds, with the range selection strided calibration uses."""

    class _Reader(base):  # type: ignore[misc, valid-type]
        def __init__(self, items: list[dict[str, np.ndarray]]) -> None:
            self._items = items
            self._window: Iterator[dict[str, np.ndarray]] = iter(items)

        def __len__(self) -> int:
            return len(self._items)

        def set_range(self, start_index: int, end_index: int) -> None:
            self._window = iter(self._items[start_index:end_index])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._window, None)

    return _Reader(feeds)
