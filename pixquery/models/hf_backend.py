"""Hugging Face transformers checkpoints (`ORG/NAME` or a local directory): CLIP, SigLIP and SigLIP 2.

Weights come through weights.py: a local directory as is, else the pixquery cache, else one download.
Each family keeps its own tokenizer (loaded with AutoTokenizer, padded to the context length as the model was
trained) and its own image processor settings, which are turned into the shared numpy preprocessing; the
tests check that it gives the transformers processor's pixels. Fixed-resolution SigLIP 2 checkpoints
(google/siglip2-base-patch16-224, ...) are SiglipModel in transformers with the Gemma tokenizer; the NaFlex
variants (model_type siglip2) take patch sequences rather than square images and are not supported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pixquery.models.base import ModelError
from pixquery.models.families import FAMILIES, REFERENCE_CROP_ROUNDING, Family
from pixquery.models.preprocess import PreprocessConfig
from pixquery.models.weights import resolve_model_dir

EXPECTED_FILES = ("config.json", ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin"))
ALLOW_PATTERNS = ("*.json", "*.safetensors", "*.txt", "*.model", "pytorch_model.bin")
SUPPORTED_TYPES = ("clip", "siglip")
_RESAMPLE_NAMES = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}


def _get(obj: Any, key: str) -> Any:
    """Read a key of a transformers size dict (a dict before v5, a SizeDict object since)."""
    if obj is None:
        return None
    if isinstance(obj, dict):
        return obj.get(key)
    return getattr(obj, key, None)


def preprocess_from_processor(processor: Any) -> PreprocessConfig:
    """The preprocess_cfg equivalent of a transformers CLIP or SigLIP image processor (its centre crop rounds the
    offset down, so `crop_rounding` is "floor" and travels in the preprocess_cfg.json of an export)."""
    size, crop = getattr(processor, "size", None), getattr(processor, "crop_size", None)
    resample = getattr(processor, "resample", 3)
    interpolation = _RESAMPLE_NAMES.get(int(resample)) if resample is not None else "bicubic"
    if interpolation is None:
        raise ModelError(f"unsupported resampling {resample!r} in the image processor")
    if not getattr(processor, "do_rescale", True) or abs(float(processor.rescale_factor) - 1 / 255) > 1e-9:
        raise ModelError(
            "the image processor does not rescale pixels by 1/255; this layout cannot express it"
        )
    shortest = _get(size, "shortest_edge")
    if shortest:
        crop_side = _get(crop, "height") if getattr(processor, "do_center_crop", False) else shortest
        if crop_side != shortest or (crop is not None and _get(crop, "width") != _get(crop, "height")):
            raise ModelError(
                f"the image processor resizes to {shortest} and crops to {crop}; only a square crop of the "
                "resized side is supported"
            )
        mode, side = "shortest", int(shortest)
    else:
        height, width = _get(size, "height"), _get(size, "width")
        if not height or height != width:
            raise ModelError(f"the image processor's size {size} is not square")
        mode, side = "squash", int(height)
    mean = processor.image_mean if getattr(processor, "do_normalize", True) else (0.0, 0.0, 0.0)
    std = processor.image_std if getattr(processor, "do_normalize", True) else (1.0, 1.0, 1.0)
    return PreprocessConfig.from_dict(
        {"size": side, "mean": mean, "std": std, "interpolation": interpolation, "resize_mode": mode,
         "crop_rounding": REFERENCE_CROP_ROUNDING["transformers"]}
    )


def family_of(config: Any) -> Family:
    """The family of a transformers model config."""
    if config.model_type == "clip":
        return FAMILIES["clip"]
    if config.model_type == "siglip":
        return FAMILIES["siglip2" if config.text_config.vocab_size >= 256000 else "siglip"]
    raise ModelError(
        f"model type {config.model_type!r} is not supported; use a CLIP, SigLIP or fixed-resolution SigLIP 2 "
        "checkpoint (NaFlex SigLIP 2 models take patch sequences, not square images)"
    )


def model_dir_for(rest: str, **options: Any) -> Path:
    """Where the checkpoint's files are: the local directory itself, else the cache (downloading once)."""
    path = Path(rest).expanduser()
    if path.is_dir():
        return resolve_model_dir(rest, rest, EXPECTED_FILES, kind="hf", local_dir=path)
    if rest.count("/") != 1:
        raise ModelError(f"{rest!r} is neither a local directory nor a Hugging Face id such as ORG/NAME")
    return resolve_model_dir(
        rest, rest, EXPECTED_FILES, kind="hf", allow_patterns=ALLOW_PATTERNS, revision=options.get("revision")
    )


def load(rest: str, threads: int | None = None, **options: Any) -> Any:
    """A Hugging Face CLIP/SigLIP checkpoint (id or directory) as a TorchEncoder."""
    import torch
    from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoTokenizer

    from pixquery.models.torch_encoder import TorchEncoder, hf_towers, logit_params, quiet_loading

    rest = rest.strip()
    if not rest:
        raise ModelError("a Hugging Face model needs an id (ORG/NAME) or a directory")
    model_dir = model_dir_for(rest, **options)
    try:
        config = AutoConfig.from_pretrained(model_dir)
    except (OSError, ValueError) as exc:
        raise ModelError(f"{model_dir / 'config.json'} is not a transformers model config: {exc}") from exc
    family = family_of(config)
    try:
        with quiet_loading():
            model = AutoModel.from_pretrained(model_dir, dtype=torch.float32).eval()
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        processor = AutoImageProcessor.from_pretrained(model_dir)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load {rest} from {model_dir}: {exc}") from exc
    preprocess = preprocess_from_processor(processor)
    context_length = int(config.text_config.max_position_embeddings)

    def tokenize(texts: list[str], length: int) -> np.ndarray:
        # Both families were trained on text padded to the context length; CLIP ignores the padding anyway.
        batch = tokenizer(
            texts, padding="max_length", max_length=length, truncation=True, return_tensors="np"
        )
        return batch["input_ids"]

    def count_tokens(texts: list[str], length: int) -> np.ndarray:
        ids = tokenizer(texts, truncation=True, max_length=length)["input_ids"]
        return np.array([len(row) for row in ids], dtype=np.int64)

    dim = int(getattr(config, "projection_dim", 0) or config.text_config.hidden_size)
    if family.name.startswith("siglip"):
        dim = int(config.text_config.projection_size or config.text_config.hidden_size)
    image_tower, text_tower = hf_towers(model)
    model_config = {
        "family": family.name,
        "embed_dim": dim,
        "vision_cfg": {
            "image_size": int(config.vision_config.image_size),
            "patch_size": int(config.vision_config.patch_size),
            "width": int(config.vision_config.hidden_size),
            "layers": int(config.vision_config.num_hidden_layers),
        },
        "text_cfg": {
            "context_length": context_length,
            "vocab_size": int(config.text_config.vocab_size),
            "width": int(config.text_config.hidden_size),
            "layers": int(config.text_config.num_hidden_layers),
            "hf_tokenizer_name": rest if not Path(rest).expanduser().is_dir() else None,
            "tokenizer_kwargs": {"clean": family.clean},
        },
        **logit_params(model),
    }
    return TorchEncoder(
        name=rest,
        image_tower=image_tower,
        text_tower=text_tower,
        tokenizer=tokenize,
        preprocess_cfg=preprocess,
        family=family,
        dim=dim,
        model_config=model_config,
        threads=threads,
        export_tokenizer=tokenizer,
        count_tokens=count_tokens,
    )
