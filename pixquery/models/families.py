"""Model families as data: what differs between CLIP, SigLIP, SigLIP 2 and M-CLIP at the edges of the graph.

A family never changes code paths by name; it supplies values (tokenizer cleaning, whether the text tower may
run at the real token length, default preprocessing) that the torch-free ONNX backend, the exporter and the
torch backends all read. Values found in a model's own files (config.json, preprocess_cfg.json,
tokenizer_config.json, the ONNX graph) always win over these defaults.

Preprocessing defaults are those of the immich ONNX layout, which is open_clip's: a centre crop rounded as
torchvision's CenterCrop rounds it ("half_even"). transformers checkpoints crop as CLIPImageProcessor does
("floor"); their backend and the exports made from them say so in their own configs (`REFERENCE_CROP_ROUNDING`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pixquery.models.preprocess import PreprocessConfig

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)

REFERENCE_CROP_ROUNDING = {"open_clip": "half_even", "transformers": "floor"}
"""How each reference pipeline rounds a centre crop's offset when the margin is odd: torchvision's CenterCrop
(open_clip, hence immich's exports) takes `int(round((h - size) / 2.0))`, Python's round being half to even;
transformers' CLIPImageProcessor takes `(h - size) // 2`."""

CLIP_PREPROCESS: Mapping[str, Any] = {
    "mode": "RGB",
    "mean": OPENAI_MEAN,
    "std": OPENAI_STD,
    "interpolation": "bicubic",
    "resize_mode": "shortest",
    "crop_rounding": REFERENCE_CROP_ROUNDING["open_clip"],
}
"""OpenAI's normalisation, short side resized then centre-cropped (CLIP, OpenCLIP, M-CLIP's image towers)."""

SIGLIP_PREPROCESS: Mapping[str, Any] = {
    "mode": "RGB",
    "mean": (0.5, 0.5, 0.5),
    "std": (0.5, 0.5, 0.5),
    "interpolation": "bicubic",
    "resize_mode": "squash",
}
"""SigLIP's: resized straight to the square input (no crop), pixels to [-1, 1]."""


@dataclass(frozen=True)
class Family:
    """Conventions one family of two-tower models shares."""

    name: str
    description: str
    causal_text: bool
    """True when padding after EOS cannot change the pooled output, so a query may run at its real length."""
    context_length: int
    clean: str
    """Text cleaning before tokenizing, as open_clip names it: whitespace, lower, canonicalize."""
    pad_token: str
    """Pad token used when tokenizer_config.json names none."""
    preprocess: Mapping[str, Any]
    """Default preprocess_cfg.json values (open_clip form, without the size)."""
    has_logit_bias: bool = False
    """Sigmoid-loss models: a calibrated logit_scale and logit_bias make a relevance cut-off meaningful."""

    def preprocess_config(self, size: int, **overrides: Any) -> PreprocessConfig:
        """The family's default preprocessing at input side `size` (e.g. crop_rounding="floor" for transformers)."""
        return PreprocessConfig.from_dict({**self.preprocess, "size": size, **overrides})


FAMILIES: dict[str, Family] = {
    family.name: family
    for family in (
        Family("clip", "OpenAI CLIP and OpenCLIP with the CLIP BPE tokenizer (causal text, pooled at EOS)",
               causal_text=True, context_length=77, clean="lower", pad_token="<|endoftext|>",
               preprocess=CLIP_PREPROCESS),
        Family("siglip", "SigLIP: sigmoid loss, SentencePiece text padded to fixed length, last-token pooling",
               causal_text=False, context_length=64, clean="canonicalize", pad_token="</s>",
               preprocess=SIGLIP_PREPROCESS, has_logit_bias=True),
        Family("siglip2", "SigLIP 2 fixed-resolution: SigLIP's architecture, Gemma tokenizer (vocab 256000)",
               causal_text=False, context_length=64, clean="canonicalize", pad_token="<pad>",
               preprocess=SIGLIP_PREPROCESS, has_logit_bias=True),
        Family("mclip", "M-CLIP multilingual text (XLM-R/LaBSE; mean pooling over the mask, projection)",
               causal_text=False, context_length=77, clean="whitespace", pad_token="<pad>",
               preprocess=CLIP_PREPROCESS),
        Family("hf-text", "OpenCLIP with a Hugging Face text tower (XLM-R, NLLB), padding masked in the graph",
               causal_text=False, context_length=77, clean="whitespace", pad_token="<pad>",
               preprocess=CLIP_PREPROCESS),
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
