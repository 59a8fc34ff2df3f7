"""Torch-free encoder for models in the immich ONNX layout (`onnx:DIR`, `immich:NAME`).

Layout (what immich's exporter writes, and what `pixquery export-onnx` writes):

    config.json                  open_clip model config: embed_dim, vision_cfg, text_cfg.context_length, ...
    visual/model.onnx            input `image` float32 [batch, 3, S, S] -> output `embedding` (L2-normalised)
    visual/preprocess_cfg.json   size, mean, std, interpolation, resize_mode
    textual/model.onnx           input `text` int32 [batch, context_length] (M-CLIP: input_ids,
                                 attention_mask) -> output `embedding`
    textual/tokenizer.json       Hugging Face fast tokenizer, plus tokenizer_config.json (names the pad token)

Published immich exports have a fixed batch of 1; the graph says so and the encoder then loops one row at a
time. A text graph with a dynamic sequence axis (our CLIP exports) runs each query at its real token length.

`precision` picks which graph of each tower runs: the fp32 export, or an int8 variant built from it once
(`pixquery.models.precision`); "auto" takes the fastest variant that passes the parity gate on this CPU.
Tower sessions are created on first use, so a text query never loads the image tower.

This module never imports torch, transformers or open_clip, directly or indirectly: it is what queries run.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pixquery.models.base import ModelError, l2_normalize
from pixquery.models.families import Family, detect_family, text_clean_mode
from pixquery.models.precision import (
    DEFAULT_CALIBRATION_SIZE,
    PRECISIONS,
    TowerPrecision,
    load_ready,
    parse_precision,
    session_config,
    variant_path,
    variant_root,
)
from pixquery.models.preprocess import ImagePreprocessor, load_preprocess_cfg
from pixquery.models.tokenize import TextTokenizer

LAYOUT_FILES = (
    "config.json",
    "visual/model.onnx",
    "visual/preprocess_cfg.json",
    "textual/model.onnx",
    "textual/tokenizer.json",
    "textual/tokenizer_config.json",
)
"""Every file an immich-layout model directory must have."""

IMMICH_ORG = "immich-app"
# What an immich model repository holds besides ONNX: accelerator builds we never run.
IMMICH_IGNORE = ("*/rknpu/*", "*/armnn/*", "*/openvino/*", "*.rknn", "*.armnn", "README.md")


def read_json(path: Path) -> dict[str, Any]:
    """Read a JSON object from a model file; a missing or malformed file raises ModelError naming it."""
    if not path.is_file():
        raise ModelError(f"missing {path}")
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ModelError(f"{path} should hold a JSON object, not {type(value).__name__}")
    return value


def session_options(threads: int | None = None, config: dict[str, str] | None = None) -> Any:
    """onnxruntime options: `threads` intra-op threads (default: every core), full graph optimisation, and
    `config` session entries (e.g. a precision's fast-math switch)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads) if threads else (os.cpu_count() or 1)
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Decoding threads run beside the model while indexing; spinning idle ORT workers would steal their cores.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    for key, value in (config or {}).items():
        options.add_session_config_entry(key, value)
    return options


_NUMPY_TYPES = {"tensor(int32)": np.int32, "tensor(int64)": np.int64, "tensor(float)": np.float32}


class OnnxTower:
    """One ONNX graph (image or text tower) and what its inputs accept."""

    def __init__(
        self,
        path: Path,
        threads: int | None,
        providers: Sequence[str] | None = None,
        config: dict[str, str] | None = None,
    ) -> None:
        import onnxruntime as ort

        self.path = path
        try:
            self.session = ort.InferenceSession(
                str(path),
                sess_options=session_options(threads, config),
                providers=list(providers or ["CPUExecutionProvider"]),
            )
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf/NoSuchFile classes
            raise ModelError(f"{path} is not a loadable ONNX model: {exc}") from exc
        self._describe()

    @classmethod
    def from_session(cls, path: Path, session: Any) -> OnnxTower:
        """A tower over an already built session (used for a graph edited in memory)."""
        tower = cls.__new__(cls)
        tower.path = path
        tower.session = session
        tower._describe()
        return tower

    def _describe(self) -> None:
        self.inputs = {arg.name: arg for arg in self.session.get_inputs()}
        self.input_names = tuple(self.inputs)
        outputs = [arg.name for arg in self.session.get_outputs()]
        if not outputs:
            raise ModelError(f"{self.path} has no outputs")
        # immich names the output `embedding`; fall back to the first output for other exports.
        self.output = "embedding" if "embedding" in outputs else outputs[0]
        first = self.session.get_inputs()[0]
        if len(first.shape) < 2:
            raise ModelError(
                f"{self.path}: input {first.name!r} has shape {first.shape}, expected a batch axis"
            )
        self.fixed_batch = first.shape[0] if isinstance(first.shape[0], int) else None

    def dim_size(self, name: str, axis: int) -> int | None:
        """The fixed size of an input axis, or None when the axis is dynamic."""
        shape = self.inputs[name].shape
        return shape[axis] if axis < len(shape) and isinstance(shape[axis], int) else None

    def numpy_type(self, name: str) -> type:
        """The numpy dtype an input takes."""
        kind = self.inputs[name].type
        if kind not in _NUMPY_TYPES:
            raise ModelError(f"{self.path}: input {name!r} has unsupported type {kind}")
        return _NUMPY_TYPES[kind]

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """Run rows through the graph (one at a time if its batch is fixed at 1) and return unit rows."""
        feeds = {name: value.astype(self.numpy_type(name), copy=False) for name, value in feeds.items()}
        rows = len(next(iter(feeds.values())))
        if rows == 0:
            return np.zeros((0, 0), dtype=np.float32)
        if self.fixed_batch is None or self.fixed_batch == rows:
            out = self.session.run([self.output], feeds)[0]
        elif self.fixed_batch == 1:
            out = np.concatenate(
                [
                    self.session.run([self.output], {k: v[i : i + 1] for k, v in feeds.items()})[0]
                    for i in range(rows)
                ]
            )
        else:
            raise ModelError(
                f"{self.path} has a fixed batch of {self.fixed_batch}; only 1 or dynamic is supported"
            )
        out = np.asarray(out, dtype=np.float32).reshape(rows, -1)
        # Exports normalise already; normalising again costs nothing and guards against one that does not.
        return l2_normalize(out)


class OnnxEncoder:
    """An `Encoder` over an immich-layout model directory, with the indexer's preprocessing hooks."""

    meaningless = False

    def __init__(
        self,
        name: str,
        model_dir: Path,
        threads: int | None = None,
        providers: Sequence[str] | None = None,
        batch: str = "fixed",
        precision: str | TowerPrecision | None = None,
        variant_dir: Path | None = None,
        calibration_images: Sequence[str | Path] | None = None,
        calibration_size: int = DEFAULT_CALIBRATION_SIZE,
        fast_load: bool = True,
    ) -> None:
        """`batch`: "fixed" runs a batch-1 image graph one image at a time; "auto" first tries to declare its
        batch axis dynamic and keeps that only when proven equal (onnx_batch; measured useless on immich's
        and transformers' exports, whose batch is folded into constants, hence not the default).

        `precision`: see the module docstring (None reads $PIXQUERY_PRECISION, else fp32). `variant_dir`: where
        variants and the gate report are cached (default: `precision/` in the model directory, or the user
        cache when that is read-only). `calibration_images`: image files int8-static calibrates on
        (`calibration_size` of them; default: demo photos and ShapesWorld scenes). `fast_load`: open the text
        tower from a cached fast-loading copy (`precision.load_ready`; costs one copy of its weights on disk).
        """
        if batch not in ("auto", "fixed"):
            raise ModelError(f"batch must be 'auto' or 'fixed', got {batch!r}")
        self.batch_policy = batch
        self.name = name
        self.model_dir = Path(model_dir)
        self.threads = threads
        self.providers = providers
        self._requested_precision = parse_precision(precision)
        self._precision: TowerPrecision | None = None
        self.variant_root = Path(variant_dir) if variant_dir else variant_root(self.model_dir)
        self.calibration_images = list(calibration_images or [])
        self.calibration_size = int(calibration_size)
        self.fast_load = fast_load
        missing = [rel for rel in LAYOUT_FILES if not (self.model_dir / rel).is_file()]
        if missing:
            raise ModelError(
                f"{self.model_dir} is not a complete immich-layout model: missing {', '.join(missing)} "
                f"(expected {', '.join(LAYOUT_FILES)})"
            )
        self.config = read_json(self.model_dir / "config.json")
        self.dim = self._embed_dim()
        self.preprocess_cfg = load_preprocess_cfg(self.model_dir / "visual" / "preprocess_cfg.json")
        self._preprocessor = ImagePreprocessor(self.preprocess_cfg)
        self.image_size = self.preprocess_cfg.size
        self.logit_scale = _optional_float(self.config, "logit_scale", self.model_dir / "config.json")
        self.logit_bias = _optional_float(self.config, "logit_bias", self.model_dir / "config.json")
        # Towers load on first use: a query needs only the text tower, an indexer mostly the image one.
        self._lock = threading.Lock()
        self._visual: OnnxTower | None = None
        self._textual: OnnxTower | None = None
        self._tokenizer: TextTokenizer | None = None
        self._family: Family | None = None

    def _embed_dim(self) -> int:
        dim = self.config.get("embed_dim")
        if not isinstance(dim, int) or dim <= 0:
            raise ModelError(f"{self.model_dir / 'config.json'} lacks a positive integer 'embed_dim'")
        return dim

    # -- precision ------------------------------------------------------------------------------------------

    image_precisions = PRECISIONS
    text_precisions = PRECISIONS
    """The precisions each tower can be built at (the parity gate tries these)."""

    @property
    def precision(self) -> TowerPrecision:
        """The precision each tower runs at; "auto" is resolved here (the gate's cached choice, or a gate run)."""
        if self._precision is None:
            if self._requested_precision == "auto":
                from pixquery.models.parity import auto_precision

                self._precision = auto_precision(self)
            else:
                assert isinstance(self._requested_precision, TowerPrecision)
                self._precision = self._requested_precision
        return self._precision

    def at_precision(self, precision: TowerPrecision) -> OnnxEncoder:
        """A sibling encoder over the same model at another precision (sharing the variant cache)."""
        return OnnxEncoder(
            self.name,
            self.model_dir,
            threads=self.threads,
            providers=self.providers,
            batch=self.batch_policy,
            precision=precision,
            variant_dir=self.variant_root,
            calibration_images=self.calibration_images,
            calibration_size=self.calibration_size,
            fast_load=self.fast_load,
        )

    def gate_fingerprint(self) -> dict[str, Any]:
        """What the parity gate's cached verdict depends on: the fp32 graphs (size, mtime), how variants are built."""
        from pixquery.models.precision import fingerprint, variant_signature

        sources = {tower: fingerprint(self.model_dir / tower / "model.onnx") for tower in ("visual", "textual")}
        return {**sources, "variants": variant_signature()}

    def _tower_file(self, tower: str, precision: str) -> Path:
        source = self.model_dir / tower / "model.onnx"
        feeds = self._image_feeds if tower == "visual" else self._text_feeds
        # Recorded with the variant, so another calibration set builds it again.
        calibration = {"calibration_size": self.calibration_size, "calibration_files": len(self.calibration_images)}
        options = calibration if precision == "int8-static" else None
        graph = variant_path(source, self.variant_root, tower, precision, calibration=feeds, options=options)
        if tower == "textual" and self.fast_load:
            # A query's latency is mostly opening this session: keep a copy that opens several times faster.
            return load_ready(graph, self.variant_root, f"{tower}-{precision}")
        return graph

    def _image_feeds(self) -> Iterator[dict[str, np.ndarray]]:
        """Calibration inputs for int8-static: one preprocessed image per feed (any batch axis accepts 1)."""
        from pixquery.models.probes import calibration_images

        for image in calibration_images(self.calibration_size, self.calibration_images):
            yield {"image": self.preprocess(image)[None]}

    def _text_feeds(self) -> Iterator[dict[str, np.ndarray]]:
        """Calibration inputs for int8-static: one caption per feed, at real length where the graph allows."""
        from pixquery.models.probes import calibration_texts

        # The variant does not exist yet, so the fp32 graph says what the inputs are (a one-off cost).
        tower = OnnxTower(self.model_dir / "textual" / "model.onnx", self.threads, self.providers)
        tokenizer, family = self._text_parts(tower)
        pad_to = 0 if _real_length(tower, family) else None
        for text in calibration_texts(self.calibration_size):
            tokens = tokenizer.encode([text], pad_to=pad_to)
            yield {
                name: (tokens.attention_mask if name == "attention_mask" else tokens.ids).astype(
                    tower.numpy_type(name)
                )
                for name in tower.input_names
            }

    # -- towers ---------------------------------------------------------------------------------------------

    def _visual_tower(self) -> OnnxTower:
        with self._lock:
            if self._visual is None:
                image_precision = self.precision.image
                tower = OnnxTower(
                    self._tower_file("visual", image_precision),
                    self.threads,
                    self.providers,
                    session_config(image_precision),
                )
                image_input = tower.input_names[0]
                for axis in (2, 3):
                    fixed = tower.dim_size(image_input, axis)
                    if fixed is not None and fixed != self.image_size:
                        raise ModelError(
                            f"{tower.path} takes {fixed}-pixel images but visual/preprocess_cfg.json says "
                            f"size {self.image_size}"
                        )
                if self.batch_policy == "auto" and tower.fixed_batch == 1:
                    from pixquery.models.onnx_batch import dynamic_batch_tower

                    tower = dynamic_batch_tower(tower, self.threads, self.providers) or tower
                self._visual = tower
            return self._visual

    def _text_tower(self) -> tuple[OnnxTower, TextTokenizer, Family]:
        with self._lock:
            if self._textual is None:
                text_precision = self.precision.text
                tower = OnnxTower(
                    self._tower_file("textual", text_precision),
                    self.threads,
                    self.providers,
                    session_config(text_precision),
                )
                self._tokenizer, self._family = self._text_parts(tower)
                self._textual = tower
            assert self._tokenizer is not None and self._family is not None
            return self._textual, self._tokenizer, self._family

    def _text_parts(self, tower: OnnxTower) -> tuple[TextTokenizer, Family]:
        """The tokenizer and family a text graph's inputs call for."""
        family = detect_family(self.config, tower.input_names)
        unknown = [n for n in tower.input_names if n not in ("text", "input_ids", "attention_mask")]
        if unknown:
            raise ModelError(f"{tower.path} has text inputs {unknown} this loader does not know how to feed")
        text_cfg = self.config.get("text_cfg") or {}
        graph_length = tower.dim_size(tower.input_names[0], 1)
        context_length = graph_length or int(text_cfg.get("context_length", family.context_length))
        tokenizer = TextTokenizer.from_dir(
            self.model_dir / "textual",
            context_length=context_length,
            default_pad_token=family.pad_token,
            clean=text_clean_mode(self.config, family),
        )
        return tokenizer, family

    @property
    def family(self) -> Family:
        """The model family (loads the text tower to read its input names)."""
        return self._text_tower()[2]

    @property
    def tokenizer(self) -> TextTokenizer:
        """The text tokenizer (loads the text tower)."""
        return self._text_tower()[1]

    # -- images ---------------------------------------------------------------------------------------------

    def preprocess(self, img: Image.Image) -> np.ndarray:
        """One PIL image to the (3, S, S) float32 array the image tower takes (numpy only, thread-safe)."""
        return self._preprocessor(img)

    def encode_preprocessed(self, batch: np.ndarray) -> np.ndarray:
        """(n, 3, S, S) preprocessed images to (n, dim) unit float32 rows."""
        batch = np.asarray(batch, dtype=np.float32)
        if batch.ndim != 4 or batch.shape[1:] != (3, self.image_size, self.image_size):
            raise ValueError(f"expected (n, 3, {self.image_size}, {self.image_size}), got {batch.shape}")
        if len(batch) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        tower = self._visual_tower()
        return self._checked(tower.run({tower.input_names[0]: batch}), tower)

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Embed PIL images; (n, dim) float32 unit rows."""
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.encode_preprocessed(np.stack([self.preprocess(img) for img in images]))

    # -- texts ----------------------------------------------------------------------------------------------

    def token_lengths(self, texts: Sequence[str]) -> np.ndarray:
        """Real token counts of texts under this model's tokenizer (specials included)."""
        return self.tokenizer.token_lengths(texts)

    def runs_at_real_length(self) -> bool:
        """Whether queries run at their real token length (dynamic sequence axis, pooling that allows it)."""
        tower, _, family = self._text_tower()
        return _real_length(tower, family)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts; (n, dim) float32 unit rows."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        tower, tokenizer, _ = self._text_tower()
        if self.runs_at_real_length() and tower.fixed_batch == 1:
            # Each text alone at its own length: no padding work at all.
            rows = [self._run_text(tower, tokenizer, [text], pad_to=0) for text in texts]
            return np.concatenate(rows)
        pad_to = 0 if self.runs_at_real_length() else None
        return self._run_text(tower, tokenizer, list(texts), pad_to=pad_to)

    def _run_text(
        self, tower: OnnxTower, tokenizer: TextTokenizer, texts: list[str], pad_to: int | None
    ) -> np.ndarray:
        tokens = tokenizer.encode(texts, pad_to=pad_to)
        feeds = {}
        for name in tower.input_names:
            feeds[name] = tokens.attention_mask if name == "attention_mask" else tokens.ids
        return self._checked(tower.run(feeds), tower)

    def _checked(self, out: np.ndarray, tower: OnnxTower) -> np.ndarray:
        if out.shape[1] != self.dim:
            raise ModelError(
                f"{tower.path} returns {out.shape[1]}-d embeddings but config.json says {self.dim}"
            )
        return out


def _real_length(tower: OnnxTower, family: Family) -> bool:
    """A dynamic sequence axis and pooling that ignores what follows the real tokens (causal, or masked)."""
    dynamic = tower.dim_size(tower.input_names[0], 1) is None
    return dynamic and (family.causal_text or "attention_mask" in tower.input_names)


def _encoder_options(options: dict[str, Any]) -> dict[str, Any]:
    """The registry options an OnnxEncoder takes (the rest belong to the spec's resolver)."""
    keys = ("providers", "batch", "precision", "variant_dir", "calibration_images", "calibration_size", "fast_load")
    return {key: options[key] for key in keys if key in options}


def _optional_float(config: dict[str, Any], key: str, path: Path) -> float | None:
    value = config.get(key)
    if value is None:
        return None
    if not isinstance(value, int | float):
        raise ModelError(f"{path}: {key!r} should be a number")
    return float(value)


def load(rest: str, threads: int | None = None, **options: Any) -> OnnxEncoder:
    """`onnx:DIR`: a local directory in the immich layout."""
    if not rest:
        raise ModelError("onnx: needs a directory, e.g. onnx:./models/ViT-B-32__openai")
    path = Path(rest).expanduser()
    if not path.is_dir():
        raise ModelError(f"onnx model directory {path} does not exist")
    return OnnxEncoder(f"onnx:{rest}", path, threads=threads, **_encoder_options(options))


def load_immich(rest: str, threads: int | None = None, **options: Any) -> OnnxEncoder:
    """`immich:NAME`: an immich-published model (hub repo immich-app/NAME), downloaded once into the cache."""
    from pixquery.models.weights import resolve_model_dir

    name = rest.strip()
    if not name or "/" in name:
        raise ModelError(f"immich: needs a model name such as ViT-B-32__openai, got {rest!r}")
    repo_id = f"{IMMICH_ORG}/{name}"
    model_dir = resolve_model_dir(
        f"immich:{name}",
        repo_id,
        LAYOUT_FILES,
        kind="immich",
        local_dir=options.get("local_dir"),
        ignore_patterns=IMMICH_IGNORE,
        revision=options.get("revision"),
        cache_name=name,
    )
    return OnnxEncoder(f"immich:{name}", model_dir, threads=threads, **_encoder_options(options))
