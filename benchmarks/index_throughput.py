"""Indexing throughput on real-size photos: the full `pixquery index` pipeline against the model's own forward.

The model forward is the floor of indexing time on a CPU; hashing, decoding, resizing and storage should hide
behind it. Measured in one run, alternating (`--rounds`), on the same photos and the same encoder:

- forward: images/s of the model alone on already preprocessed batches, run the way the indexer runs it (the
  encoder's `image_lanes` side by side, each on its own session), and, for reference, `encode_preprocessed` (one
  session on every core) one batch at a time;
- pipeline: images/s of `Library.index` on the folder into a new index (discover, hash, decode, preprocess,
  embed, store, catalog; crash-safe commits per batch);
- efficiency = pipeline / forward (the issue's goal: >= 0.9);
- the CPU the rest costs: hash + decode + preprocess, ms per image on one thread, and the bound it sets on 2
  cores when decoding and the model share them: cores / (model core-ms + rest core-ms) per image.

The photos are the camera-size JPEGs vs_rclip.py indexes (made once from real photos by its `ensure_photo_set`,
in the same cache, so both benchmarks read the very same files), or any folder given with --photos; the model an
ONNX export (a `random:ARCH` spec is exported once into the cache, needs torch); the precision what a new index
takes by default (`auto`: int8 where the parity gate passes).

    python benchmarks/index_throughput.py [--index-n 200] [--model random:ViT-B-32] [--rounds 2]
    python benchmarks/index_throughput.py --photos DIR --model onnx:DIR

The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from vs_rclip import DEFAULT_SOURCE, PhotoSpec, ensure_photo_set  # noqa: E402

from pixquery import Library  # noqa: E402
from pixquery.media.decode import open_image_with_metadata  # noqa: E402
from pixquery.media.files import hash_file  # noqa: E402
from pixquery.models.registry import load_encoder  # noqa: E402
from pixquery.paths import cache_root  # noqa: E402


def onnx_model(spec: str) -> str:
    """An `onnx:` spec for `spec`: as given, or `random:ARCH` exported once into the cache."""
    if not spec.startswith("random:"):
        return spec
    out = cache_root() / "bench-models" / spec.replace(":", "-")
    if not (out / "config.json").exists():
        from pixquery.models.export import export_onnx

        print(f"exporting {spec} to {out} (once)", file=sys.stderr)
        export_onnx(spec, out)
    return f"onnx:{out}"


def photo_sample(folder: Path, n: int) -> list[Path]:
    paths = sorted(p for p in folder.iterdir() if p.is_file())[:n]
    if len(paths) < n:
        raise SystemExit(f"{folder} holds {len(paths)} files; --index-n {n} asked for more")
    return paths


def preprocessed(encoder: Any, paths: list[Path]) -> np.ndarray:
    return np.stack([encoder.preprocess(open_image_with_metadata(p, None, encoder.decode_size)[0]) for p in paths])


def forward_images_per_s(lanes: list[Callable[[np.ndarray], np.ndarray]], batches: list[np.ndarray]) -> float:
    """Images/s of the encoder's `image_lanes` over `batches`, all lanes side by side (as the indexer runs them)."""
    work = list(batches)
    lock = threading.Lock()

    def run(lane: Callable[[np.ndarray], np.ndarray]) -> None:
        while True:
            with lock:
                if not work:
                    return
                batch = work.pop()
            lane(batch)

    threads = [threading.Thread(target=run, args=(lane,)) for lane in lanes]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(len(b) for b in batches) / (time.perf_counter() - start)


def rest_ms_per_image(encoder: Any, paths: list[Path]) -> float:
    """Hash + decode (with metadata) + preprocess of one photo on one thread, ms (median)."""
    times = []
    for path in paths:
        start = time.perf_counter()
        hash_file(path)
        image, _ = open_image_with_metadata(path, 100.0, encoder.decode_size)
        encoder.preprocess(image)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def pipeline_images_per_s(encoder: Any, photos: Path, work: Path, batch_size: int,
                          workers: int | None) -> tuple[float, float]:
    """(images/s of the whole `Library.index` run, images/s of its embed phase) on a new index, with the already
    loaded `encoder` (loading a model is not indexing)."""
    index = work / f"index-{time.monotonic_ns()}"
    start = time.perf_counter()
    with Library.open(index, encoder=encoder) as lib:
        report = lib.index([photos], batch_size=batch_size, workers=workers)
    total = time.perf_counter() - start
    shutil.rmtree(index, ignore_errors=True)
    embedded = report.embed.embedded
    return embedded / total, report.embed.images_per_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=Path, default=None, help="a folder of JPEGs (default: vs_rclip's set)")
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="real photos vs_rclip's set is made of")
    parser.add_argument("--n", type=int, default=400, help="photos in vs_rclip's set (made once)")
    parser.add_argument("--work", type=Path, default=Path.home() / ".cache" / "pixquery-bench" / "vs_rclip",
                        help="vs_rclip's cache, where its photo set lives")
    parser.add_argument("--index-n", type=int, default=200, help="photos to index (the first ones by name)")
    parser.add_argument("--model", default="random:ViT-B-32")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=None, help="decoding threads (default: the indexer's)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--forward-images", type=int, default=128)
    args = parser.parse_args()

    model = onnx_model(args.model)
    if args.photos is None:
        args.photos, _ = ensure_photo_set(args.work.expanduser().resolve(), args.source, args.n, PhotoSpec())
    paths = photo_sample(args.photos, args.index_n)
    work = Path(tempfile.mkdtemp(prefix="pixquery-throughput-"))
    try:
        subset = work / "photos"
        subset.mkdir()
        for path in paths:
            os.symlink(path.resolve(), subset / path.name)
        encoder = load_encoder(model, precision=args.precision)
        precision = encoder.precision
        lane_functions = encoder.image_lanes()
        single = [encoder.encode_preprocessed]  # one session on every core
        lanes = len(lane_functions)
        data = preprocessed(encoder, paths[: args.forward_images])
        batches = [data[i : i + args.batch_size] for i in range(0, len(data), args.batch_size)]
        for functions in (lane_functions, single):
            forward_images_per_s(functions, batches[: len(functions)])  # warm-up: opens the sessions
        rest_ms = rest_ms_per_image(encoder, paths[:40])
        print(f"{args.index_n} photos from {args.photos}, model {model} at {precision}, {lanes} lanes, "
              f"load {os.getloadavg()[0]:.1f}")
        rounds = []
        for round_ in range(args.rounds):
            forward = forward_images_per_s(lane_functions, batches)
            forward_single = forward_images_per_s(single, batches)
            pipeline, embed_phase = pipeline_images_per_s(encoder, subset, work, args.batch_size, args.workers)
            figures = {"forward": forward, "forward_single_session": forward_single, "pipeline": pipeline,
                       "embed_phase": embed_phase, "efficiency": pipeline / forward,
                       "load": round(os.getloadavg()[0], 2)}
            rounds.append(figures)
            print(f"round {round_}: forward {forward:.2f} images/s ({lanes} lanes; one session on every core "
                  f"{forward_single:.2f}), pipeline {pipeline:.2f} (embed phase {embed_phase:.2f}): efficiency "
                  f"{pipeline / forward:.3f}  (load {figures['load']})", flush=True)
        best = max(rounds, key=lambda r: r["efficiency"])
        cores = os.cpu_count() or 1
        model_core_ms = cores * 1e3 / best["forward"]
        bound = cores * 1e3 / (model_core_ms + rest_ms)
        figures = {
            "model": model,
            "precision": precision,
            "photos": str(args.photos),
            "n": args.index_n,
            "batch_size": args.batch_size,
            "lanes": lanes,
            "pipeline_images_per_s": round(best["pipeline"], 2),
            "forward_images_per_s": round(best["forward"], 2),
            "efficiency": round(best["efficiency"], 3),
            "efficiency_rounds": [round(r["efficiency"], 3) for r in rounds],
            "embed_phase_images_per_s": round(best["embed_phase"], 2),
            "forward_single_session_images_per_s": round(best["forward_single_session"], 2),
            "lanes_speedup": round(best["forward"] / best["forward_single_session"], 3),
            "rest_ms_per_image": round(rest_ms, 1),
            "shared_cpu_bound_images_per_s": round(bound, 2),
            "cpus": cores,
            "machine": platform.processor() or platform.machine(),
            "load_average": [round(x, 2) for x in os.getloadavg()],
        }
        print(f"forward {figures['forward_images_per_s']} images/s, pipeline {figures['pipeline_images_per_s']}: "
              f"efficiency {figures['efficiency']}; hash + decode + preprocess {figures['rest_ms_per_image']} ms "
              f"per photo on one thread, so sharing {cores} cores caps the pipeline near "
              f"{figures['shared_cpu_bound_images_per_s']} images/s")
        print(json.dumps(figures))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
