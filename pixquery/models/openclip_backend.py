"""`open_clip:ARCH/PRETRAINED`: an open_clip model, e.g. open_clip:ViT-B-32/laion2b_s34b_b79k.

open_clip imports torchvision (for its transforms) and timm at import time, so it needs a torchvision build
that matches the installed torch; without one this backend raises a ModelError that says so. Images still go
through pixquery's numpy preprocessing, configured from open_clip's own preprocess config for the model, so
indexing and the exported ONNX model see the same pixels. Weights download once through open_clip into
pixquery's cache (models/open_clip).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from pixquery.models.base import ModelError
from pixquery.models.families import detect_family
from pixquery.models.preprocess import PreprocessConfig
from pixquery.models.weights import models_dir, offline_reason, resolve_model_dir

DEFAULT_HF_TOKENIZER = "openai/clip-vit-base-patch32"
"""The tokenizer immich's exporter saves for open_clip models whose config names none (the CLIP BPE)."""


def import_open_clip() -> Any:
    """Import open_clip; a missing or broken torchvision/timm becomes a ModelError that says what to do."""
    try:
        import open_clip
    except Exception as exc:  # ImportError, or RuntimeError from a torchvision built for another torch
        raise ModelError(
            "open_clip needs torchvision (and timm) built for the installed torch, and it cannot be imported "
            f"here ({type(exc).__name__}: {exc}). Install matching versions, e.g. pip install "
            "open_clip_torch torchvision==<the release paired with your torch>, or use the same model "
            "through a Hugging Face id or an immich: ONNX export"
        ) from exc
    return open_clip


def parse_spec(rest: str) -> tuple[str, str]:
    """Split "ARCH/PRETRAINED" into its two parts."""
    arch, sep, pretrained = rest.strip().partition("/")
    if not sep or not arch or not pretrained:
        raise ModelError(f"open_clip:{rest}: write open_clip:ARCH/PRETRAINED, e.g. open_clip:ViT-B-32/openai")
    return arch, pretrained


def _hf_tokenizer_loader(name: str) -> Callable[[], Any]:
    """Load, on first export only, the transformers tokenizer immich saves beside an open_clip text tower."""

    def load_tokenizer() -> Any:
        from transformers import AutoTokenizer

        directory = resolve_model_dir(
            f"tokenizer {name}",
            name,
            ("tokenizer_config.json",),
            kind="hf",
            allow_patterns=("*.json", "*.txt", "*.model"),
        )
        return AutoTokenizer.from_pretrained(directory)

    return load_tokenizer


def token_counter(open_clip: Any, clip_tokenizer: Any) -> Callable[[list[str], int], np.ndarray] | None:
    """Real token counts from open_clip's tokenizer: CLIP's SimpleTokenizer (BPE ids plus start and end of
    text) or an HFTokenizer (the transformers tokenizer inside); None (an estimate) for any other kind."""
    if isinstance(clip_tokenizer, open_clip.tokenizer.SimpleTokenizer):
        return lambda texts, length: np.array([min(len(clip_tokenizer.encode(t)) + 2, length) for t in texts])
    if isinstance(clip_tokenizer, open_clip.tokenizer.HFTokenizer):
        hf = clip_tokenizer.tokenizer
        return lambda texts, length: np.array(
            [len(ids) for ids in hf(texts, truncation=True, max_length=length)["input_ids"]]
        )
    return None


def load(rest: str, threads: int | None = None, **options: Any) -> Any:
    """`open_clip:ARCH/PRETRAINED` as a TorchEncoder (needs open_clip, torchvision and timm)."""
    from pixquery.models.torch_encoder import FeatureTower, TorchEncoder, logit_params

    arch, pretrained = parse_spec(rest)
    open_clip = import_open_clip()
    model_cfg = open_clip.get_model_config(arch)
    if model_cfg is None:
        raise ModelError(f"open_clip has no architecture {arch!r}; see open_clip.list_models()")
    if offline_reason():
        # huggingface_hub then serves open_clip's weights from the cache only, or fails fast.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        model = open_clip.create_model(
            arch, pretrained=pretrained, cache_dir=str(models_dir() / "open_clip"), require_pretrained=True
        )
    except Exception as exc:
        raise ModelError(
            f"could not load open_clip:{rest} ({type(exc).__name__}: {exc}). The weights download once into "
            f"{models_dir() / 'open_clip'}; offline, put them there first"
        ) from exc
    model.eval()
    family = detect_family(model_cfg)
    preprocess = PreprocessConfig.from_dict(open_clip.get_model_preprocess_cfg(model))
    text_cfg = dict(model_cfg.get("text_cfg") or {})
    context_length = int(text_cfg.get("context_length", family.context_length))
    clip_tokenizer = open_clip.get_tokenizer(arch)

    def tokenize(texts: list[str], length: int) -> np.ndarray:
        return clip_tokenizer(texts, context_length=length).numpy()

    model_config = {
        **model_cfg,
        "family": family.name,
        "text_cfg": {**text_cfg, "context_length": context_length},
        **logit_params(model),
    }
    return TorchEncoder(
        name=f"open_clip:{rest}",
        image_tower=FeatureTower(model, "encode_image"),
        text_tower=FeatureTower(model, "encode_text", cast_long=True),
        tokenizer=tokenize,
        preprocess_cfg=preprocess,
        family=family,
        dim=int(model_cfg["embed_dim"]),
        model_config=model_config,
        threads=threads,
        export_tokenizer=_hf_tokenizer_loader(text_cfg.get("hf_tokenizer_name") or DEFAULT_HF_TOKENIZER),
        count_tokens=token_counter(open_clip, clip_tokenizer),
    )
