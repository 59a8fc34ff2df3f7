"""Read image files safely: every format users have, EXIF orientation, first frame, a pixel limit.

Every failure becomes an `ImageDecodeError` whose message says why, so indexing can record it and move on.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import warnings
from pathlib import Path
from typing import Any, BinaryIO

from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from pixquery.media.files import NOT_AN_IMAGE, UnreadableFile, open_regular
from pixquery.media.metadata import read_metadata

DEFAULT_MAX_MEGAPIXELS = 100.0
"""Refuse images above this many megapixels (a 100 MP RGB image is 300 MB once decoded)."""

# We enforce our own pixel limit with a message that teaches; PIL's bomb check would fire first otherwise.
Image.MAX_IMAGE_PIXELS = None
# A truncated JPEG is still refused (LOAD_TRUNCATED_IMAGES stays False): a half-grey image would index wrongly.
ImageFile.LOAD_TRUNCATED_IMAGES = False

_heif_registered: bool | None = None
_libc: ctypes.CDLL | None | bool = None


def _register_heif() -> bool:
    """Register the HEIC/HEIF opener once, on first use (pillow-heif is optional at import time)."""
    global _heif_registered
    if _heif_registered is None:
        try:
            from pillow_heif import register_heif_opener

            register_heif_opener()
            _heif_registered = True
        except ImportError:
            _heif_registered = False
    return _heif_registered


class ImageDecodeError(UnreadableFile):
    """A file could not be read as an image; the message is the reason shown to the user."""


Source = str | Path | BinaryIO
"""A file to decode: a path (opened with `open_regular`) or an already opened binary file."""


def open_image(
    path: Source,
    max_megapixels: float | None = DEFAULT_MAX_MEGAPIXELS,
    target_size: int | None = None,
) -> Image.Image:
    """Open an image file and return it decoded, upright (EXIF orientation applied) and in RGB.

    Animated files give their first frame. `target_size` lets JPEG decode at a reduced scale (DCT scaling)
    when the model only needs that many pixels on the short side, which is several times faster.
    Raises `ImageDecodeError` with a user-facing reason on any failure.
    """
    return open_image_with_metadata(path, max_megapixels, target_size, with_metadata=False)[0]


def open_image_with_metadata(
    path: Source,
    max_megapixels: float | None = DEFAULT_MAX_MEGAPIXELS,
    target_size: int | None = None,
    with_metadata: bool = True,
) -> tuple[Image.Image, dict[str, Any]]:
    """Like `open_image`, also returning the catalog metadata (original size, format, EXIF date, camera, GPS)."""
    if isinstance(path, str | Path):
        try:
            handle = open_regular(path)
        except UnreadableFile as exc:
            raise ImageDecodeError(str(exc)) from None
        with handle:
            return _decode(handle, max_megapixels, target_size, with_metadata)
    return _decode(path, max_megapixels, target_size, with_metadata)


def _decode(
    handle: BinaryIO, max_megapixels: float | None, target_size: int | None, with_metadata: bool
) -> tuple[Image.Image, dict[str, Any]]:
    _register_heif()  # by content, whatever the file is called
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL warns about odd EXIF/ICC data we do not need
            with Image.open(handle) as img:
                width, height = img.size
                meta: dict[str, Any] = read_metadata(img) if with_metadata else {}
                if max_megapixels is not None and width * height > max_megapixels * 1e6:
                    raise ImageDecodeError(
                        f"it is too large to process ({width * height / 1e6:.1f} MP); the limit is "
                        f"{max_megapixels:g} MP. Raise or disable it with --max-megapixels"
                    )
                if target_size and img.format == "JPEG":
                    # draft() picks the largest DCT scale that keeps both sides >= the request.
                    img.draft("RGB", (target_size, target_size))
                img.seek(0)
                img.load()
                # In place: a copy of every decoded image only to apply an orientation most photos lack is a
                # second full image in memory at the peak.
                ImageOps.exif_transpose(img, in_place=True)
                return _to_rgb(img), meta
    except ImageDecodeError:
        raise
    except UnidentifiedImageError:
        raise ImageDecodeError(f"{NOT_AN_IMAGE}, or a format Pillow cannot read") from None
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(f"refused as a decompression bomb: {exc}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # Truncated or corrupt data surfaces as OSError ("image file is truncated") and friends.
        raise ImageDecodeError(f"corrupt or truncated image data ({exc})") from None
    except MemoryError:
        raise ImageDecodeError("not enough memory to decode it") from None


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any mode to RGB, compositing transparency onto white rather than black."""
    if img.mode == "RGB":
        return img
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit greyscale (PGM, TIFF): scale to 8 bits instead of clipping to white.
        img = img.point(lambda v: v / 256).convert("L")
    return img.convert("RGB")


def release_memory() -> bool:
    """Give memory freed by large decodes back to the system (glibc's `malloc_trim`); False where unavailable.

    glibc keeps freed blocks in per-thread arenas: after four concurrent 49-MP uploads a server kept 1.5 GB it no
    longer used (benchmarks/hostile_memory.py). Trimming after such a request returns it. Cheap (a few ms).
    """
    global _libc
    if _libc is None:
        _libc = False
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                _libc = libc if hasattr(libc, "malloc_trim") else False
            except OSError:
                _libc = False
    if not _libc:
        return False
    _libc.malloc_trim(0)  # type: ignore[union-attr]
    return True
