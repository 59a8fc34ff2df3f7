"""Camera-size JPEGs made from real photos, for the indexing benchmarks (index_throughput.py, vs_rclip.py).

Real photos of ordinary camera sizes are what users index, and what decoding costs depends on: a 12-megapixel JPEG
takes ten times longer to decode in full than a 500×375 one. The ImageNet sample (1,000 real photos, one per class;
`git clone https://github.com/EliSchwartz/imagenet-sample-images`, here at /work/bench-photos/imagenet-sample) is
only ~500×375, so each photo is enlarged to a camera size (12 MP phone 4032×3024 by default, landscape or portrait
as the source is), given a little sensor-like grain so that the file's entropy (and so its decoding cost and its
size, ~3–5 MB) is that of a camera file rather than of a smooth upscale, and saved as a quality-90 JPEG with 4:2:0
chroma, as phone cameras write them.

    python benchmarks/camera_photos.py SRC DEST [--n 400] [--size 4032x3024]

Files already made are kept, so a second run costs nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
DEFAULT_SIZE = (4032, 3024)


def source_photos(src: Path, n: int) -> list[Path]:
    """The first `n` photos of `src` by name (a fixed, reproducible selection)."""
    photos = sorted(p for p in Path(src).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if len(photos) < n:
        raise SystemExit(f"{src} holds {len(photos)} photos; {n} are needed")
    return photos[:n]


def camera_photo(source: Path, dest: Path, size: tuple[int, int], seed: int) -> None:
    """One source photo enlarged to `size` (swapped for a portrait source), with grain, as a camera JPEG."""
    with Image.open(source) as img:
        img = img.convert("RGB")
        width, height = size if img.width >= img.height else size[::-1]
        big = img.resize((width, height), Image.Resampling.BICUBIC)
    rng = np.random.default_rng(seed)
    pixels = np.asarray(big, dtype=np.int16)
    grain = rng.integers(-6, 7, size=(height, width, 1), dtype=np.int16)  # luminance grain, like a sensor's
    pixels = np.clip(pixels + grain, 0, 255).astype(np.uint8)
    tmp = dest.with_suffix(".part")
    Image.fromarray(pixels).save(tmp, format="JPEG", quality=90, subsampling="4:2:0")
    tmp.replace(dest)


def make_camera_photos(src: Path, dest: Path, n: int, size: tuple[int, int] = DEFAULT_SIZE,
                       progress: bool = True) -> list[Path]:
    """`n` camera-size JPEGs in `dest` made from the first `n` photos of `src` (kept from an earlier run)."""
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for i, source in enumerate(source_photos(src, n)):
        path = dest / f"{source.stem}.jpg"
        if not path.exists():
            camera_photo(source, path, size, seed=i)
        out.append(path)
        if progress and (i + 1) % 50 == 0:
            print(f"  camera photos: {i + 1}/{n}", file=sys.stderr)
    return out


def parse_size(text: str) -> tuple[int, int]:
    width, height = (int(v) for v in text.lower().split("x"))
    return width, height


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", type=Path)
    parser.add_argument("dest", type=Path)
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--size", type=parse_size, default=DEFAULT_SIZE, help="WxH of a landscape photo")
    args = parser.parse_args()
    paths = make_camera_photos(args.src, args.dest, args.n, args.size)
    total = sum(p.stat().st_size for p in paths)
    print(f"{len(paths)} photos in {args.dest}, {total / len(paths) / 1e6:.1f} MB each on average")


if __name__ == "__main__":
    main()
