"""The one interface every model backend implements: images and texts in, L2-normalised float32 rows out.

`Encoder` is what callers may rely on (the indexer, the query engine, organising, evaluation, Ray actors);
`EncoderBase` gives every optional part a default, so a backend writes only what it does differently and no caller
ever probes with `getattr`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np
from PIL import Image

from pixquery.errors import PixqueryError

PRECISIONS = ("fp32", "int8")
"""Numeric precisions an index can be built at (an index has exactly one, recorded when it is created)."""

TOKENS_PER_WORD = 1.35
"""Words to tokens for a tokenizer-less estimate (BPE tokenizers give about 1.3 tokens per English word)."""


def estimate_tokens(text: str) -> int:
    """Token count estimate for BPE tokenizers (start and end tokens included), rounded up: errs on the long side."""
    words = len(re.findall(r"\w+|[^\w\s]", text))
    return 2 + math.ceil(TOKENS_PER_WORD * words)


@runtime_checkable
class Encoder(Protocol):
    """Embeds images and texts into one space. Every row returned is float32 and L2-normalised.

    The indexer decodes and preprocesses images on its own threads (`preprocess`, thread-safe) and hands whole
    batches to `encode_preprocessed`; queries call `encode_texts` / `encode_images`.
    """

    name: str
    """The model spec this encoder was resolved from (recorded in an index's config)."""
    dim: int
    """Dimension of the joint embedding space."""
    image_size: int
    """Side of the square input of the image tower."""
    decode_size: int
    """Short side a decoder should keep at least (JPEG reduced-scale decoding); >= image_size."""
    context_length: int
    """Most text tokens one text can have (longer texts are split by `pixquery.query.longtext`)."""
    precision: str
    """The precision the towers run at: one of `PRECISIONS`."""
    meaningless: bool
    """True for random weights: results are meaningless and the faces say so."""
    known_concepts: tuple[str, ...]
    """The names of the concepts a closed-vocabulary model was trained to tell apart (ConSE: its ImageNet classes;
    empty for an open-vocabulary model such as CLIP). The relevance cut-off counts them among the descriptions a
    photo is compared with, since for such a model they are what it can say a photo shows."""

    def preprocess(self, image: Image.Image) -> np.ndarray:
        """One RGB PIL image to the (3, S, S) float32 array the image tower takes (thread-safe)."""
        ...

    def encode_preprocessed(self, batch: np.ndarray) -> np.ndarray:
        """(n, 3, S, S) preprocessed images to (n, dim) unit float32 rows."""
        ...

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Embed RGB PIL images; returns an (n, dim) float32 array of unit rows."""
        ...

    def image_lanes(self) -> list[Callable[[np.ndarray], np.ndarray]]:
        """Functions like `encode_preprocessed` for the indexer to run side by side, one batch each at a time:
        one (that method itself) where one call already uses every core, several where calls side by side, each
        on fewer threads, keep the cores busier than one call on all of them (ONNX Runtime on a CPU)."""
        ...

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts; returns an (n, dim) float32 array of unit rows."""
        ...

    def token_lengths(self, texts: Sequence[str]) -> np.ndarray:
        """Token count of each text under this model's tokenizer, special tokens included."""
        ...


class EncoderBase:
    """Defaults for the optional parts of `Encoder`; backends subclass it and set `name`, `dim`, `image_size`."""

    name: str = ""
    dim: int = 0
    image_size: int = 224
    context_length: int = 77
    precision: str = "fp32"
    meaningless: bool = False
    known_concepts: tuple[str, ...] = ()

    @property
    def decode_size(self) -> int:
        return self.image_size

    def preprocess(self, image: Image.Image) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} must implement preprocess")

    def encode_preprocessed(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} must implement encode_preprocessed")

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.encode_preprocessed(np.stack([self.preprocess(image) for image in images]))

    def image_lanes(self) -> list[Callable[[np.ndarray], np.ndarray]]:
        return [self.encode_preprocessed]

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} must implement encode_texts")

    def token_lengths(self, texts: Sequence[str]) -> np.ndarray:
        # Backends without a tokenizer of their own get the estimate.
        return np.array([estimate_tokens(t) for t in texts], dtype=np.int64)


class ModelError(PixqueryError):
    """A model spec cannot be resolved or its files are missing or malformed."""


def l2_normalize(x: np.ndarray, axis: int = -1, eps: float = 1e-12) -> np.ndarray:
    """Return float32 rows scaled to unit length (zero rows stay zero instead of becoming NaN)."""
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=axis, keepdims=True)
    return (x / np.maximum(norm, eps)).astype(np.float32, copy=False)
