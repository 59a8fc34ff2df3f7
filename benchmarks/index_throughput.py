"""Indexing throughput: the full `pixquery index` pipeline against the pure model forward, in one run.

The model forward is the floor of indexing time on a CPU; decoding, resizing, hashing and storage must hide behind
it. efficiency = pipeline images/s / model images/s (goal >= 0.9).

    python benchmarks/index_throughput.py [--n 300] [--model random:ViT-B-32] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pixquery import Library  # noqa: E402
from pixquery.media.decode import open_image  # noqa: E402
from pixquery.models.registry import load_encoder  # noqa: E402


def write_photos(folder: Path, n: int, seed: int = 0) -> None:
    """Photo-sized JPEGs (800x600, smooth gradients plus noise, like camera output after resizing)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    yy, xx = np.mgrid[0:600, 0:800]
    for i in range(n):
        a, b, c = rng.uniform(0, 1, 3)
        base = np.stack([xx * a / 4, yy * b / 3, (xx + yy) * c / 6], -1) % 255
        pixels = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"photo_{i:04d}.jpg", quality=88)


def model_throughput(encoder, folder: Path, n: int, batch_size: int) -> float:
    """Images/s of encode_preprocessed alone, on the same images already decoded and preprocessed."""
    paths = sorted(folder.iterdir())[:n]
    batch = np.stack([encoder.preprocess(open_image(p)) for p in paths])
    encoder.encode_preprocessed(batch[:batch_size])  # warm-up
    start = time.perf_counter()
    for i in range(0, len(batch), batch_size):
        encoder.encode_preprocessed(batch[i : i + batch_size])
    return len(batch) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--model", default="random:ViT-B-32")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="pixquery-bench-"))
    try:
        write_photos(work / "photos", args.n)
        encoder = load_encoder(args.model)
        encoder.encode_preprocessed(np.zeros((2, 3, encoder.image_size, encoder.image_size), np.float32))
        model_ips = model_throughput(encoder, work / "photos", min(args.n, 128), args.batch_size)
        lib = Library.open(work / "index", encoder=encoder)
        start = time.perf_counter()
        report = lib.index([work / "photos"], batch_size=args.batch_size, workers=args.workers)
        total = time.perf_counter() - start
        lib.close()
        assert report.embed.embedded == args.n
        pipeline_ips = args.n / total
        figures = {
            "model": args.model,
            "n": args.n,
            "batch_size": args.batch_size,
            "pipeline_images_per_s": round(pipeline_ips, 2),
            "model_images_per_s": round(model_ips, 2),
            "efficiency": round(pipeline_ips / model_ips, 3),
            "embed_phase_images_per_s": round(report.embed.images_per_s, 2),
            "cpus": os.cpu_count(),
            "machine": platform.processor() or platform.machine(),
        }
        print(f"model forward only : {model_ips:8.2f} images/s")
        print(f"full index pipeline: {pipeline_ips:8.2f} images/s (decode, hash, preprocess, store, catalog)")
        print(f"efficiency         : {pipeline_ips / model_ips:8.3f}")
        print(json.dumps(figures))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
