"""Model families as data: what differs between CLIP, SigLIP, SigLIP 2 and M-CLIP at the edges of the graph.

A family never changes code paths by name; it supplies values (tokenizer cleaning, default text input names,
whether the text tower may run at the real token length, default preprocessing) that the torch-free ONNX
backend, the exporter and the torch backends all read. Values found in a model's own files (config.json,
preprocess_cfg.json, tokenizer_config.json, the ONNX graph) always win over these defaults.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class Family:
    """Conventions one family of two-tower models shares."""

    name: str
    description: str
    text_inputs: tuple[str, ...]
    """Text input names an immich export of this family has (the graph's own names are read first)."""
    pooling: str
    """How the text tower pools: eos_argmax (highest id = EOS), last (fixed-length), mean (attention mask)."""
    causal_text: bool
    """True when padding after EOS cannot change the pooled output, so a query may run at its real length."""
    context_length: int
    clean: str
    """Text cleaning before tokenizing, as open_clip names it: whitespace, lower, canonicalize."""
    pad_token: str
    """Pad token used when tokenizer_config.json names none."""
    preprocess: Mapping[str, Any] = field(default_factory=dict)
    """Default preprocess_cfg.json values (open_clip form)."""
    has_logit_bias: bool = False
    """Sigmoid-loss models: a calibrated logit_scale and logit_bias make a relevance cut-off meaningful."""


FAMILIES: dict[str, Family] = {
    family.name: family
    for family in (
        Family(
            name="clip",
            description="OpenAI CLIP and OpenCLIP with the CLIP BPE tokenizer (causal text, EOS pooling)",
            text_inputs=("text",),
            pooling="eos_argmax",
            causal_text=True,
            context_length=77,
            clean="lower",
            pad_token="<|endoftext|>",
            preprocess={
                "mode": "RGB",
                "mean": OPENAI_MEAN,
                "std": OPENAI_STD,
                "interpolation": "bicubic",
                "resize_mode": "shortest",
            },
        ),
        Family(
            name="siglip",
            description="SigLIP: sigmoid loss, SentencePiece text padded to fixed length, last-token pooling",
            text_inputs=("text",),
            pooling="last",
            causal_text=False,
            context_length=64,
            clean="canonicalize",
            pad_token="</s>",
            preprocess={
                "mode": "RGB",
                "mean": (0.5, 0.5, 0.5),
                "std": (0.5, 0.5, 0.5),
                "interpolation": "bicubic",
                "resize_mode": "squash",
            },
            has_logit_bias=True,
        ),
        Family(
            name="siglip2",
            description="SigLIP 2 fixed-resolution: SigLIP's architecture, Gemma tokenizer (vocab 256000)",
            text_inputs=("text",),
            pooling="last",
            causal_text=False,
            context_length=64,
            clean="canonicalize",
            pad_token="<pad>",
            preprocess={
                "mode": "RGB",
                "mean": (0.5, 0.5, 0.5),
                "std": (0.5, 0.5, 0.5),
                "interpolation": "bicubic",
                "resize_mode": "squash",
            },
            has_logit_bias=True,
        ),
        Family(
            name="mclip",
            description="M-CLIP multilingual text (XLM-R/LaBSE; mean pooling over the mask, projection)",
            text_inputs=("input_ids", "attention_mask"),
            pooling="mean",
            causal_text=False,
            context_length=77,
            clean="whitespace",
            pad_token="<pad>",
            preprocess={
                "mode": "RGB",
                "mean": OPENAI_MEAN,
                "std": OPENAI_STD,
                "interpolation": "bicubic",
                "resize_mode": "shortest",
            },
        ),
        Family(
            name="hf-text",
            description="OpenCLIP with a Hugging Face text tower (XLM-R, NLLB), padding masked in the graph",
            text_inputs=("text",),
            pooling="mean",
            causal_text=False,
            context_length=77,
            clean="whitespace",
            pad_token="<pad>",
            preprocess={
                "mode": "RGB",
                "mean": OPENAI_MEAN,
                "std": OPENAI_STD,
                "interpolation": "bicubic",
                "resize_mode": "shortest",
            },
        ),
    )
}


def detect_family(model_cfg: Mapping[str, Any], text_inputs: Sequence[str] = ()) -> Family:
    """Pick the family of a model from its open_clip config.json and its text graph's input names.

    An explicit "family" key (our exporter writes one) wins; then the graph's input names (M-CLIP takes
    input_ids and attention_mask); then config keys only sigmoid-loss models have; then a Hugging Face
    text tower; anything else is CLIP.
    """
    explicit = model_cfg.get("family")
    if isinstance(explicit, str) and explicit in FAMILIES:
        return FAMILIES[explicit]
    if "input_ids" in text_inputs and "attention_mask" in text_inputs:
        return FAMILIES["mclip"]
    text_cfg = model_cfg.get("text_cfg") or {}
    if "init_logit_bias" in model_cfg or "logit_bias" in model_cfg:
        tokenizer_name = str(text_cfg.get("hf_tokenizer_name", "")).lower()
        if "siglip2" in tokenizer_name or "gemma" in tokenizer_name or text_cfg.get("vocab_size") == 256000:
            return FAMILIES["siglip2"]
        return FAMILIES["siglip"]
    if text_cfg.get("hf_model_name"):
        return FAMILIES["hf-text"]
    return FAMILIES["clip"]


def text_clean_mode(model_cfg: Mapping[str, Any], family: Family) -> str:
    """The text cleaning config.json asks for (open_clip's tokenizer_kwargs.clean), else the family's."""
    kwargs = (model_cfg.get("text_cfg") or {}).get("tokenizer_kwargs") or {}
    clean = kwargs.get("clean")
    return clean if isinstance(clean, str) else family.clean
