"""The torch encoder shared by the random, transformers and open_clip backends, and its export hooks.

A backend hands over two `nn.Module` towers (image batch -> embedding, token ids -> embedding), a tokenizer
and a preprocessing config. Inference runs exactly the modules the ONNX exporter traces, so a torch encoder
and its export can only differ by what the ONNX conversion itself changes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from pixquery.models.base import EncoderBase, l2_normalize
from pixquery.models.families import Family
from pixquery.models.preprocess import ImagePreprocessor, PreprocessConfig
from pixquery.models.tokenize import TextTokenizer, clean_text


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """Load transformers weights without the "Loading weights" tqdm bar transformers >= 5 draws on stderr: a
    library call must not print (the CLI shows its own progress). The setting is restored afterwards."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def pooled(output: Any) -> torch.Tensor:
    """The features of a transformers get_*_features call (a tensor before v5, an output object since)."""
    if isinstance(output, torch.Tensor):
        return output
    pooled_output = getattr(output, "pooler_output", None)
    if pooled_output is None:
        raise TypeError(f"cannot find features in {type(output).__name__}")
    return pooled_output


class FeatureTower(nn.Module):
    """One tower of a two-tower model as module(x) -> L2-normalised embedding: what ONNX export traces."""

    def __init__(
        self, model: nn.Module, method: str, keyword: str | None = None, cast_long: bool = False
    ) -> None:
        super().__init__()
        self.model = model
        self.method = method
        self.keyword = keyword
        self.cast_long = cast_long

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # ONNX text inputs are int32 as in immich's exports; embedding lookups want int64.
        x = x.long() if self.cast_long else x
        fn = getattr(self.model, self.method)
        out = fn(**{self.keyword: x}) if self.keyword else fn(x)
        return nn.functional.normalize(pooled(out).float(), dim=-1)


def hf_towers(model: nn.Module) -> tuple[FeatureTower, FeatureTower]:
    """Image and text towers of a transformers CLIPModel or SiglipModel (no attention mask: CLIP is causal and
    pools at EOS, SigLIP was trained on fixed-length padded text without one)."""
    return (
        FeatureTower(model, "get_image_features", "pixel_values"),
        FeatureTower(model, "get_text_features", "input_ids", cast_long=True),
    )


def logit_params(model: nn.Module) -> dict[str, float]:
    """A model's learned logit scale (exp applied: the multiplier) and, for SigLIP, bias, for config.json."""
    params: dict[str, float] = {}
    scale = getattr(model, "logit_scale", None)
    if isinstance(scale, torch.Tensor):
        params["logit_scale"] = float(scale.detach().exp())
    bias = getattr(model, "logit_bias", None)
    if isinstance(bias, torch.Tensor):
        params["logit_bias"] = float(bias.detach().reshape(-1)[0])
    return params


@dataclass
class ExportParts:
    """What `export.write_immich_layout` needs from a torch-backed encoder."""

    image_tower: nn.Module
    text_tower: nn.Module
    tokenizer: Any
    """A TextTokenizer (saved with .save) or a transformers tokenizer (saved with .save_pretrained)."""
    preprocess_cfg: PreprocessConfig
    model_config: dict[str, Any]
    context_length: int
    dynamic_text_length: bool
    """True for causal EOS-pooled text towers: the export gets a dynamic sequence axis."""
    text_input: str = "text"
    tokenize: Callable[[Sequence[str]], np.ndarray] | None = None
    """Token ids the torch side feeds (padded to the context length), for the post-export check."""


class TorchEncoder(EncoderBase):
    """An `Encoder` over torch towers (fp32), with the indexer's preprocessing hooks and an export hook."""

    def __init__(
        self,
        name: str,
        image_tower: nn.Module,
        text_tower: nn.Module,
        tokenizer: TextTokenizer | Callable[[list[str], int], np.ndarray],
        preprocess_cfg: PreprocessConfig,
        family: Family,
        dim: int,
        model_config: dict[str, Any],
        threads: int | None = None,
        meaningless: bool = False,
        export_tokenizer: Any = None,
        count_tokens: Callable[[list[str], int], np.ndarray] | None = None,
    ) -> None:
        """`tokenizer` is a TextTokenizer or a function (texts, context_length) -> (n, context_length) ids.

        `export_tokenizer` is what an export saves next to the text tower (default: `tokenizer` when it is a
        TextTokenizer). `count_tokens(cleaned texts, context_length)` gives real token counts where `tokenizer`
        is a function (a TextTokenizer counts its own).
        """
        if threads:
            torch.set_num_threads(int(threads))
        self.name = name
        self.dim = int(dim)
        self.family = family
        self.meaningless = meaningless
        self.model_config = model_config
        self.image_tower = image_tower.eval()
        self.text_tower = text_tower.eval()
        self.preprocess_cfg = preprocess_cfg
        self.image_size = preprocess_cfg.size
        self._preprocessor = ImagePreprocessor(preprocess_cfg)
        self._tokenizer = tokenizer
        self._export_tokenizer = export_tokenizer if export_tokenizer is not None else tokenizer
        self.context_length = int(model_config["text_cfg"]["context_length"])
        self.clean = (model_config["text_cfg"].get("tokenizer_kwargs") or {}).get("clean", family.clean)
        self.logit_scale = model_config.get("logit_scale")
        self.logit_bias = model_config.get("logit_bias")
        self._count_tokens = count_tokens

    def token_lengths(self, texts: Sequence[str]) -> np.ndarray:
        """Real token counts (special tokens included, capped at the context length); an estimate only where
        the backend gave no way to count."""
        if isinstance(self._tokenizer, TextTokenizer):
            return self._tokenizer.token_lengths(texts)
        if self._count_tokens is None:
            return super().token_lengths(texts)
        cleaned = [clean_text(text, self.clean) for text in texts]
        return np.asarray(self._count_tokens(cleaned, self.context_length), dtype=np.int64)

    def preprocess(self, img: Image.Image) -> np.ndarray:
        """One PIL image to the (3, S, S) float32 array the image tower takes (numpy only, thread-safe)."""
        return self._preprocessor(img)

    def encode_preprocessed(self, batch: np.ndarray) -> np.ndarray:
        """(n, 3, S, S) preprocessed images to (n, dim) unit float32 rows."""
        batch = np.asarray(batch, dtype=np.float32)
        if len(batch) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        with torch.inference_mode():
            out = self.image_tower(torch.from_numpy(np.ascontiguousarray(batch)))
        return l2_normalize(out.numpy())

    def token_ids(self, texts: Sequence[str]) -> np.ndarray:
        """(n, context_length) int64 ids the text tower is fed."""
        if isinstance(self._tokenizer, TextTokenizer):
            return self._tokenizer.encode(list(texts)).ids
        cleaned = [clean_text(text, self.clean) for text in texts]
        return np.asarray(self._tokenizer(cleaned, self.context_length), dtype=np.int64)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts; (n, dim) float32 unit rows."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        ids = torch.from_numpy(self.token_ids(texts))
        with torch.inference_mode():
            out = self.text_tower(ids)
        return l2_normalize(out.numpy())

    def export_parts(self) -> ExportParts:
        """The towers, tokenizer and configs `export.write_immich_layout` writes out."""
        return ExportParts(
            image_tower=self.image_tower,
            text_tower=self.text_tower,
            tokenizer=self._export_tokenizer,
            preprocess_cfg=self.preprocess_cfg,
            model_config=self.model_config,
            context_length=self.context_length,
            dynamic_text_length=self.family.causal_text,
            tokenize=self.token_ids,
        )
