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

`precision` picks which graph of both towers runs: the fp32 export, or the int8 variants built from it once
(`pixquery.models.precision`); "auto" takes int8 where the parity gate passed. Tower sessions are created on
first use, so a text query never loads the image tower.

This module never imports torch, transformers or open_clip, directly or indirectly: it is what queries run.
"""

from __future__ import annotations

import functools
import json
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from pixquery.models.base import PRECISIONS, EncoderBase, ModelError, l2_normalize
from pixquery.models.families import Family, detect_family, text_clean_mode
from pixquery.models.precision import int8_graph, load_ready, variant_root
from pixquery.models.precision import resolve as resolve_precision
from pixquery.models.preprocess import ImagePreprocessor, load_preprocess_cfg
from pixquery.models.tokenize import TextTokenizer, read_tokenizer

if TYPE_CHECKING:
    from tokenizers import Tokenizer

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


MAX_LANES = 4
"""At most this many image-tower sessions run side by side while indexing (see `default_lanes`)."""


def default_lanes(threads: int | None = None) -> int:
    """Image-tower lanes for indexing: `PIXQUERY_LANES` if set (at most MAX_LANES), else one session on every core.

    Several single-threaded sessions side by side (`image_lanes`) were expected to beat one session on every core,
    whose operators wait for each other at every step, and did under heavy load from other jobs; on a quiet 2-core
    AVX2 machine they do not (benchmarks/index_throughput.py, 12-MP JPEGs, batch 32): ViT-B-32-256 fp32 forward
    9.7-9.9 images/s with 2 lanes against 11.9-12.3 with one session, ViT-B-32 int8 25.1-25.2 against 29.5-30.2.
    So one lane is the default; a machine where lanes measure faster sets PIXQUERY_LANES. An explicit `threads`
    asks for one session on that many threads.
    """
    if threads:
        return 1
    wanted = os.environ.get("PIXQUERY_LANES", "").strip()
    return max(1, min(MAX_LANES, int(wanted))) if wanted.isdigit() else 1


def session_options(threads: int | None = None) -> Any:
    """onnxruntime options: `threads` intra-op threads (default: every core), full graph optimisation."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads) if threads else (os.cpu_count() or 1)
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Decoding threads run beside the model while indexing; spinning idle ORT workers would steal their cores.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


class _InThread:
    """`fn(*args)` started on a thread of its own now; `result()` waits for it and returns it or raises its error."""

    def __init__(self, fn: Callable[..., Any], *args: Any) -> None:
        self._value: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fn, args), daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        try:
            self._value = fn(*args)
        except BaseException as exc:  # handed to the caller of result()
            self._error = exc

    def result(self) -> Any:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value


_NUMPY_TYPES = {"tensor(int32)": np.int32, "tensor(int64)": np.int64, "tensor(float)": np.float32}


class OnnxTower:
    """One ONNX graph (image or text tower) and what its inputs accept."""

    def __init__(
        self,
        path: Path,
        threads: int | None,
        providers: Sequence[str] | None = None,
    ) -> None:
        import onnxruntime as ort

        self.path = path
        try:
            self.session = ort.InferenceSession(
                str(path),
                sess_options=session_options(threads),
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


class OnnxEncoder(EncoderBase):
    """An `Encoder` over an immich-layout model directory, with the indexer's preprocessing hooks."""

    def __init__(
        self,
        name: str,
        model_dir: Path,
        threads: int | None = None,
        providers: Sequence[str] | None = None,
        precision: str = "fp32",
        variant_dir: Path | None = None,
        fast_load: bool = True,
        lanes: int | None = None,
    ) -> None:
        """`precision`: fp32, int8 or auto (`pixquery.models.precision`), resolved on first use. `variant_dir`:
        where the int8 variants and the gate's record live (default: `precision/` in the model directory, or
        the user cache when that is read-only). `fast_load`: open the text tower from a cached fast-loading
        copy (`precision.load_ready`; costs one copy of its weights on disk). `lanes`: image-tower sessions the
        indexer runs side by side (`image_lanes`; default `default_lanes`); every other caller of the image tower
        gets one session on every core (or `threads`).
        """
        if precision not in (*PRECISIONS, "auto"):
            raise ModelError(f"unknown precision {precision!r}; use fp32, int8 or auto")
        self.name = name
        self.model_dir = Path(model_dir)
        self.threads = threads
        self.providers = providers
        self._requested_precision = precision
        self._precision: str | None = None
        self.variant_root = Path(variant_dir) if variant_dir else variant_root(self.model_dir)
        self.fast_load = fast_load
        self.lanes = max(1, int(lanes)) if lanes else default_lanes(threads)
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
        self._precision_lock = threading.Lock()
        self._visual: OnnxTower | None = None
        self._lanes: list[OnnxTower] = []  # the indexer's image-tower sessions, made by `image_lanes`
        self._textual: OnnxTower | None = None
        self._tokenizer: TextTokenizer | None = None
        self._family: Family | None = None

    def _embed_dim(self) -> int:
        dim = self.config.get("embed_dim")
        if not isinstance(dim, int) or dim <= 0:
            raise ModelError(f"{self.model_dir / 'config.json'} lacks a positive integer 'embed_dim'")
        return dim

    # -- precision ------------------------------------------------------------------------------------------

    @property
    def precision(self) -> str:
        """The precision both towers run at, "fp32" or "int8" ("auto" is resolved here, once)."""
        with self._precision_lock:
            if self._precision is None:
                self._precision = resolve_precision(self, self._requested_precision)
            return self._precision

    def graph(self, tower: str) -> Path:
        """The fp32 graph of `tower` ("visual" or "textual")."""
        return self.model_dir / tower / "model.onnx"

    def at_precision(self, precision: str) -> OnnxEncoder:
        """The same model running `precision` as built, without consulting the parity gate (which uses it).
        Its text tower opens the graph itself, not a fast-loading copy: the gate has no cold start to save."""
        sibling = OnnxEncoder(self.name, self.model_dir, self.threads, self.providers, "fp32", self.variant_root,
                              fast_load=False, lanes=self.lanes)
        sibling._precision = precision
        return sibling

    def _tower_file(self, tower: str) -> Path:
        graph = self.graph(tower) if self.precision == "fp32" else int8_graph(self.variant_root, tower)
        if tower == "textual" and self.fast_load:
            # A query's latency is mostly opening this session: keep a copy that opens several times faster.
            return load_ready(graph, self.variant_root, f"{tower}-{self.precision}")
        return graph

    # -- towers ---------------------------------------------------------------------------------------------

    def _visual_tower(self) -> OnnxTower:
        """The image tower's session on every core (or `threads`)."""
        with self._lock:
            if self._visual is None:
                self._visual = self._open_visual(self.threads)
            return self._visual

    def _open_visual(self, threads: int | None) -> OnnxTower:
        tower = OnnxTower(self._tower_file("visual"), threads, self.providers)
        self._check_image_input(tower)
        return tower

    def image_lanes(self) -> list[Callable[[np.ndarray], np.ndarray]]:
        """`lanes` functions like `encode_preprocessed`, each on its own image-tower session on cores // lanes
        threads, for the indexer to run side by side (just `encode_preprocessed` when lanes is 1)."""
        if self.lanes == 1:
            return [self.encode_preprocessed]
        with self._lock:
            threads = max(1, (os.cpu_count() or 1) // self.lanes)
            while len(self._lanes) < self.lanes:
                self._lanes.append(self._open_visual(threads))
        return [functools.partial(self._encode_on, tower) for tower in self._lanes]

    def _check_image_input(self, tower: OnnxTower) -> None:
        image_input = tower.input_names[0]
        for axis in (2, 3):
            fixed = tower.dim_size(image_input, axis)
            if fixed is not None and fixed != self.image_size:
                raise ModelError(
                    f"{tower.path} takes {fixed}-pixel images but visual/preprocess_cfg.json says "
                    f"size {self.image_size}"
                )

    def _text_tower(self) -> tuple[OnnxTower, TextTokenizer, Family]:
        with self._lock:
            if self._textual is None:
                # Parsing tokenizer.json holds the interpreter lock; opening a session releases it: side by side,
                # a cold query pays for the longer of the two instead of both.
                reading = _InThread(read_tokenizer, self.model_dir / "textual")
                tower = OnnxTower(self._tower_file("textual"), self.threads, self.providers)
                self._tokenizer, self._family = self._text_parts(tower, *reading.result())
                self._textual = tower
            assert self._tokenizer is not None and self._family is not None
            return self._textual, self._tokenizer, self._family

    def _text_parts(self, tower: OnnxTower, raw: Tokenizer, pad_token: str | None) -> tuple[TextTokenizer, Family]:
        """The tokenizer and family a text graph's inputs call for, around the parsed tokenizer file."""
        family = detect_family(self.config, tower.input_names)
        unknown = [n for n in tower.input_names if n not in ("text", "input_ids", "attention_mask")]
        if unknown:
            raise ModelError(f"{tower.path} has text inputs {unknown} this loader does not know how to feed")
        text_cfg = self.config.get("text_cfg") or {}
        graph_length = tower.dim_size(tower.input_names[0], 1)
        context_length = graph_length or int(text_cfg.get("context_length", family.context_length))
        tokenizer = TextTokenizer(raw, context_length, pad_token or family.pad_token,
                                  text_clean_mode(self.config, family), owned=True)
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
        return self._encode_on(None, batch)

    def _encode_on(self, tower: OnnxTower | None, batch: np.ndarray) -> np.ndarray:
        """`encode_preprocessed` on `tower` (None: the session on every core)."""
        batch = np.asarray(batch, dtype=np.float32)
        if batch.ndim != 4 or batch.shape[1:] != (3, self.image_size, self.image_size):
            raise ValueError(f"expected (n, 3, {self.image_size}, {self.image_size}), got {batch.shape}")
        if len(batch) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        tower = tower or self._visual_tower()
        return self._checked(tower.run({tower.input_names[0]: batch}), tower)

    # -- texts ----------------------------------------------------------------------------------------------

    @property
    def context_length(self) -> int:
        """Most tokens a text can have (the text graph's fixed length, else config.json's, else the family's)."""
        return self.tokenizer.context_length

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


ENCODER_OPTIONS = ("providers", "precision", "variant_dir", "fast_load", "lanes")
"""The registry options an OnnxEncoder takes (the rest belong to the spec's resolver)."""


def _encoder_options(options: dict[str, Any]) -> dict[str, Any]:
    return {key: options[key] for key in ENCODER_OPTIONS if key in options}


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
