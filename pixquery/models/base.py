"""The one interface every model backend implements: images and texts in, L2-normalised float32 rows out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
from PIL import Image

from pixquery.errors import PixqueryError


@runtime_checkable
class Encoder(Protocol):
    """Embeds images and texts into one space.

    Every row returned is float32 and L2-normalised, so similarity is the dot product.
    """

    name: str
    """The model spec this encoder was resolved from (recorded in an index's config)."""
    dim: int
    """Dimension of the joint embedding space."""

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Embed RGB PIL images; returns an (n, dim) float32 array of unit rows."""
        ...

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts; returns an (n, dim) float32 array of unit rows."""
        ...


class ModelError(PixqueryError):
    """A model spec cannot be resolved or its files are missing or malformed."""


def l2_normalize(x: np.ndarray, axis: int = -1, eps: float = 1e-12) -> np.ndarray:
    """Return float32 rows scaled to unit length (zero rows stay zero instead of becoming NaN)."""
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=axis, keepdims=True)
    return (x / np.maximum(norm, eps)).astype(np.float32, copy=False)
