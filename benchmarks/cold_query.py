"""Cold-query timing shared by benchmarks/speed.py and benchmarks/footprint.py.

A cold `pixquery search` costs the interpreter start, the imports, opening the text tower and one matrix
product over the index; how the index's vectors were computed plays no part. So a 1,000-image index for a
big model is built here with random unit vectors standing in for the image embeddings (recorded under the
real model's spec and precision, so that the query loads the real text tower), which takes seconds instead of
1,000 forward passes. Run as a script it builds such an index with whichever interpreter runs it:

    python benchmarks/cold_query.py build INDEX_DIR --model onnx:DIR --dim 512 [--n 1000] [--precision int8]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

QUERIES = ("a red car", "a dog running on the beach", "two cats asleep on a sofa", "a mountain lake at sunset")


def write_small_images(folder: Path, n: int, size: int = 48, seed: int = 0) -> Path:
    """`n` distinct small JPEGs (noise over a random colour), enough for a catalog and its metadata."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        path = folder / f"img_{i:04d}.jpg"
        if not path.exists():
            base = rng.integers(0, 255, 3)
            pixels = np.clip(base + rng.normal(0, 30, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(path, quality=80)
    return folder


class RandomVectors:
    """An encoder that stands in for `name` while an index is built: seeded random unit image vectors."""

    def __init__(self, name: str, dim: int, precision: str | None = None) -> None:
        self.name = name
        self.dim = dim
        self.precision = precision or "fp32"
        self._rng = np.random.default_rng(0)

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        vectors = self._rng.standard_normal((len(images), self.dim)).astype(np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        raise RuntimeError("stand-in encoder: queries load the real model")


def build_index(index: Path, model: str, dim: int, n: int, precision: str | None = None) -> Path:
    """An index of `n` small images recorded as made by `model` at `precision` (vectors are random)."""
    from pixquery import Library

    photos = write_small_images(index.parent / f"{index.name}-photos", n)
    with Library.open(index, encoder=RandomVectors(model, dim, precision)) as lib:
        report = lib.index([photos])
    assert report.embed.embedded + report.sync.unchanged >= n, report.to_dict()
    return index


def time_command(argv: Sequence[str], repeats: int, env: dict[str, str] | None = None) -> list[float]:
    """Wall ms of `argv` as a new process, `repeats` times after one untimed run (which builds any one-off
    cache, such as the text tower's fast-loading copy, and warms the page cache), 0.3 s apart."""
    env = {**os.environ, **(env or {})}
    env.pop("PIXQUERY_PRECISION", None)

    def once() -> float:
        start = time.perf_counter()
        proc = subprocess.run(list(argv), capture_output=True, text=True, env=env)
        elapsed = (time.perf_counter() - start) * 1e3
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed: {proc.stderr[-2000:]}")
        return elapsed

    once()
    times = []
    for _ in range(repeats):
        time.sleep(0.3)
        times.append(once())
    return times


def cold_query_ms(python: str, index: Path, entry: str, repeats: int = 5,
                  env: dict[str, str] | None = None) -> dict[str, float]:
    """Median and best ms of a cold text search; `entry` is "quick" (pixquery.quick) or "cli" (the typer CLI)."""
    module = "pixquery.quick" if entry == "quick" else "pixquery"
    times = time_command([python, "-m", module, "search", QUERIES[0], "--index", str(index), "--json"], repeats, env)
    return {"median_ms": round(statistics.median(times), 1), "best_ms": round(min(times), 1)}


def floor_ms(python: str, repeats: int = 5) -> dict[str, float]:
    """What any Python query pays before pixquery: a bare interpreter, and one that imports numpy."""
    out = {}
    for name, code in (("python_ms", "pass"), ("python_numpy_ms", "import numpy")):
        out[name] = round(statistics.median(time_command([python, "-c", code], repeats)), 1)
    return out


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages (other work on the machine slows every timing here)."""
    return [round(x, 2) for x in os.getloadavg()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build a stand-in index")
    build.add_argument("index", type=Path)
    build.add_argument("--model", required=True)
    build.add_argument("--dim", type=int, required=True)
    build.add_argument("--n", type=int, default=1000)
    build.add_argument("--precision", default=None)
    args = parser.parse_args()
    build_index(args.index, args.model, args.dim, args.n, args.precision)
    print(args.index)


if __name__ == "__main__":
    main()
