"""Image preprocessing without torch: PIL resizing and numpy normalisation, driven by a preprocess_cfg.json.

The same code serves every backend, so an image gives the same pixels whether it is embedded by torch or ONNX.
It matches the reference processors (tests/test_models_preprocess.py measures it):

- "shortest" (OpenAI CLIP, OpenCLIP): resize the short side to `size` keeping the aspect ratio (the long side
  truncated to an integer, as transformers and torchvision do), then a centre crop whose offset, when the margin
  is odd, is rounded as the model's reference pipeline rounds it (`crop_rounding`): "half_even" is torchvision's
  CenterCrop, `int(round((h - size) / 2.0))`, which open_clip (and so immich's exports) uses; "floor" is
  transformers' CLIPImageProcessor, `(h - size) // 2`. For a margin of 2k+1 with k odd the two differ by a pixel.
- "squash" (SigLIP, SigLIP 2): resize straight to size x size, as SiglipImageProcessor does.
- "longest": resize the long side to `size` and pad to a square with black, centred (open_clip's mode).

Resizing is PIL's on 8-bit RGB, like the transformers PIL backend and torchvision on PIL images. The object is
immutable after construction, so one instance may be called from many decoding threads at once.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pixquery.models.base import ModelError

_RESAMPLING = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}
RESIZE_MODES = ("shortest", "squash", "longest")
EXACT_ASPECT = 16
"""In "shortest" mode the reference resizes the whole image, short side to the input size, then crops the centre.
Up to this aspect ratio that is what we do (the same pixels); beyond it (a 1 x 100,000 strip would become
224 x 22,400,000 pixels) only the part the crop keeps is resized."""
EXACT_FACTOR = 256
"""Largest downscale factor resized with PIL's exact filter ("squash" and "longest"; see `_bounded_resize`)."""
REDUCING_GAP = 32.0
"""Past `EXACT_FACTOR`, blocks are averaged down to 32 to 64 times the output size, then resized exactly (on random
noise, the worst case, at most 2 or 3 levels from the exact filter, 0.1 on average; 8 gave up to 4)."""
CROP_ROUNDINGS = ("half_even", "floor")


@dataclass(frozen=True)
class PreprocessConfig:
    """The fields of open_clip's preprocess_cfg.json that decide the pixels a model sees."""

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"
    resize_mode: str = "shortest"
    mode: str = "RGB"
    crop_rounding: str = "half_even"
    """How an odd crop margin is split (see the module docstring); open_clip's files lack the key: half_even."""

    def __post_init__(self) -> None:
        if self.size <= 0:
            raise ValueError(f"size must be positive, got {self.size}")
        if self.interpolation not in _RESAMPLING:
            raise ValueError(
                f"unknown interpolation {self.interpolation!r}; use one of {sorted(_RESAMPLING)}"
            )
        if self.resize_mode not in RESIZE_MODES:
            raise ValueError(f"unknown resize_mode {self.resize_mode!r}; use one of {list(RESIZE_MODES)}")
        if self.crop_rounding not in CROP_ROUNDINGS:
            raise ValueError(f"unknown crop_rounding {self.crop_rounding!r}; use one of {list(CROP_ROUNDINGS)}")
        if self.mode != "RGB":
            raise ValueError(f"only RGB input is supported, got mode {self.mode!r}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError("mean and std need three values each, std positive")

    @classmethod
    def from_dict(cls, cfg: Mapping[str, Any]) -> PreprocessConfig:
        """Read open_clip's dict form (`size` may be an int or [h, w]; mean/std may be one number)."""
        size = cfg["size"]
        if isinstance(size, list | tuple):
            if len(set(size)) != 1:
                raise ValueError(f"only square inputs are supported, got size {size}")
            size = size[0]
        return cls(
            size=int(size),
            mean=_three(cfg["mean"]),
            std=_three(cfg["std"]),
            interpolation=str(cfg.get("interpolation", "bicubic")).lower(),
            resize_mode=str(cfg.get("resize_mode", "shortest")),
            mode=str(cfg.get("mode", "RGB")),
            crop_rounding=str(cfg.get("crop_rounding", "half_even")),
        )

    def to_dict(self) -> dict[str, Any]:
        """The preprocess_cfg.json form open_clip and immich read (they ignore `crop_rounding`, which we read)."""
        return {
            "size": [self.size, self.size],
            "mode": self.mode,
            "mean": list(self.mean),
            "std": list(self.std),
            "interpolation": self.interpolation,
            "resize_mode": self.resize_mode,
            "fill_color": 0,
            "crop_rounding": self.crop_rounding,
        }


def _three(value: Any) -> tuple[float, float, float]:
    if isinstance(value, int | float):
        return (float(value),) * 3
    values = tuple(float(v) for v in value)
    if len(values) != 3:
        raise ValueError(f"expected 3 values, got {len(values)}")
    return values  # type: ignore[return-value]


def load_preprocess_cfg(path: Path) -> PreprocessConfig:
    """Read a preprocess_cfg.json; a missing or malformed file raises ModelError naming it."""
    if not path.is_file():
        raise ModelError(f"missing {path}: the model directory needs its image preprocessing config there")
    try:
        return PreprocessConfig.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path} is not valid JSON: {exc}") from exc
    except KeyError as exc:
        raise ModelError(f"{path} lacks the key {exc.args[0]!r}") from exc
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{path} is malformed: {exc}") from exc


def _source_span(offset: int, size: int, resized: int, source: int) -> tuple[float, float]:
    """The source coordinates of pixels [offset, offset + size) of a side resized from `source` to `resized`."""
    if offset == 0 and size == resized:
        return 0.0, float(source)  # the whole side, exactly (a float product could land a hair past its end)
    scale = source / resized
    return offset * scale, min(float(source), (offset + size) * scale)


def _reach(start: float, end: float, scale: float, source: int) -> tuple[int, int]:
    """The source pixels a resampling filter reads for the span [start, end) at `scale`: the span widened by the
    widest filter's support (Lanczos, 3 output pixels) and a pixel of rounding, within the image."""
    margin = 3.0 * max(scale, 1.0) + 2.0
    return max(0, math.floor(start - margin)), min(source, math.ceil(end + margin))


class ImagePreprocessor:
    """Turns a PIL image into the (3, size, size) float32 array a model's image tower takes."""

    def __init__(self, cfg: PreprocessConfig) -> None:
        self.cfg = cfg
        self.size = cfg.size
        self._resample = _RESAMPLING[cfg.interpolation]
        # (x / 255 - mean) / std folded into one multiply-add per pixel.
        std = np.asarray(cfg.std, dtype=np.float32)
        self._scale = (1.0 / (255.0 * std)).astype(np.float32)
        self._shift = (np.asarray(cfg.mean, dtype=np.float32) / std).astype(np.float32)

    def resize(self, img: Image.Image) -> Image.Image:
        """Resize and crop (or pad) to size x size, RGB, before normalisation.

        Ordinary images are resized exactly as the reference pipeline does. The work is bounded for any shape
        (see `EXACT_ASPECT` and `EXACT_FACTOR`): a 1 x 1,000,000 strip costs what a photo does.
        """
        if img.mode != "RGB":
            img = img.convert("RGB")
        size = self.size
        if self.cfg.resize_mode == "squash":
            return self._bounded_resize(img, (size, size))
        width, height = img.size
        if self.cfg.resize_mode == "shortest":
            # The long side truncated, written as transformers writes it: int(size * long / short).
            long_side = int(size * max(width, height) / min(width, height))
            new_size = (size, long_side) if width <= height else (long_side, size)
            left, top = self._offset(new_size[0] - size), self._offset(new_size[1] - size)
            if long_side > EXACT_ASPECT * size:
                return self._crop_box_resize(img, new_size, left, top)
            img = img.resize(new_size, resample=self._resample)
            return img.crop((left, top, left + size, top + size))
        # longest: the long side becomes `size`, the rest is black padding around the centred image.
        scale = size / max(width, height)
        new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
        img = self._bounded_resize(img, new_size)
        canvas = Image.new("RGB", (size, size), (0, 0, 0))
        canvas.paste(img, ((size - new_size[0]) // 2, (size - new_size[1]) // 2))
        return canvas

    def _crop_box_resize(self, img: Image.Image, new_size: tuple[int, int], left: int, top: int) -> Image.Image:
        """What resizing to `new_size` and cropping size x size at (left, top) gives, without making the long side.

        PIL resizes in two passes, one per axis; both run here on just the source rows and columns the crop's
        filter reads (its box in source coordinates widened by the filter's reach), at the sample centres and
        scales of the whole resize, in the order PIL takes for the whole image (vertical first for a tall image
        it shrinks, measured). tests/test_hostile.py checks the pixels against the reference path.
        """
        size, (width, height) = self.size, img.size
        x0, x1 = _source_span(left, size, new_size[0], width)
        y0, y1 = _source_span(top, size, new_size[1], height)
        c0, c1 = _reach(x0, x1, width / new_size[0], width)
        r0, r1 = _reach(y0, y1, height / new_size[1], height)
        strip = img.crop((c0, r0, c1, r1))
        x_box, y_box = (x0 - c0, x1 - c0), (y0 - r0, y1 - r0)
        if height > width and width > size:
            strip = strip.resize((c1 - c0, size), resample=self._resample, box=(0, y_box[0], c1 - c0, y_box[1]))
            return strip.resize((size, size), resample=self._resample, box=(x_box[0], 0, x_box[1], size))
        strip = strip.resize((size, r1 - r0), resample=self._resample, box=(x_box[0], 0, x_box[1], r1 - r0))
        return strip.resize((size, size), resample=self._resample, box=(0, y_box[0], size, y_box[1]))

    def _bounded_resize(self, img: Image.Image, new_size: tuple[int, int]) -> Image.Image:
        """PIL's resize, exact up to a downscale factor of `EXACT_FACTOR` along either side. Past it, PIL first
        averages blocks of pixels (`reducing_gap`), which leaves the result within rounding of the exact one:
        the exact filter would weigh `4 x factor` source pixels per output pixel, and its weights alone take
        32 bytes per source pixel along that side (3.2 GB for a 1 x 100,000,000 strip)."""
        factor = max(img.width / new_size[0], img.height / new_size[1])
        gap = REDUCING_GAP if factor > EXACT_FACTOR else None
        return img.resize(new_size, resample=self._resample, reducing_gap=gap)

    def _offset(self, margin: int) -> int:
        if self.cfg.crop_rounding == "floor":
            return margin // 2
        return int(round(margin / 2.0))  # Python rounds half to even, as torchvision's center_crop does

    def __call__(self, img: Image.Image) -> np.ndarray:
        """Return the normalised (3, size, size) float32 array for one image."""
        pixels = np.asarray(self.resize(img), dtype=np.float32)
        pixels = pixels * self._scale - self._shift
        return np.ascontiguousarray(pixels.transpose(2, 0, 1))

    def batch(self, images: list[Image.Image]) -> np.ndarray:
        """Preprocess several images into one (n, 3, size, size) array."""
        if not images:
            return np.zeros((0, 3, self.size, self.size), dtype=np.float32)
        return np.stack([self(img) for img in images])
