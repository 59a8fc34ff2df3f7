"""The parity gate's fixed probes: real photos and photo-style queries that ship with the package.

Images: the demo photos (pixquery/data/demo_photos), each also mirrored and centre-cropped, so 21 photos make
63 probes with the views a real collection has (near-duplicates, other framings). Texts: the queries in
pixquery/data/probes/queries.txt. Deterministic and offline; decoding goes through `pixquery.media`.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from PIL import Image, ImageOps

VERSION = 1
"""Part of every gate record's key: bump it when the probes change, so that every model is judged again."""
CROP = 0.7
"""Side of the centre crop, as a share of each side of the photo."""


def _data(relative: str) -> Path:
    return Path(str(resources.files("pixquery").joinpath("data", relative)))


def probe_photo_paths() -> list[Path]:
    """The package's demo photos, sorted by name."""
    return sorted(p for p in _data("demo_photos").glob("*.jpg") if p.is_file())


def probe_images() -> list[Image.Image]:
    """Each demo photo as it is, mirrored, and centre-cropped to `CROP` of its sides."""
    from pixquery.media.decode import open_image

    images = []
    for path in probe_photo_paths():
        photo = open_image(path)
        width, height = photo.size
        left, top = round(width * (1 - CROP) / 2), round(height * (1 - CROP) / 2)
        crop = photo.crop((left, top, width - left, height - top))
        images += [photo, ImageOps.mirror(photo), crop]
    return images


def probe_texts() -> list[str]:
    """The photo queries of pixquery/data/probes/queries.txt (comments and blank lines skipped)."""
    lines = _data("probes/queries.txt").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]
