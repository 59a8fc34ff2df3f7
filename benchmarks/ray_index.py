"""Ray indexing throughput next to local indexing, in one run, on the same generated JPEGs.

Three passes over the same files, each into a fresh index: local (`Library.index`), then Ray with 1 and 2 encoder
actors on a local Ray instance (`ray.init(num_cpus=...)`), timed from the end of the sync to the last catalog
commit (the embedding pass; actor start-up and model loading included, as in a real run), and in steady state
(from the first batch back at the driver to the last).

    python benchmarks/ray_index.py [--n 300] [--model random:ViT-B-32] [--batch-size 32]

The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pixquery import Library  # noqa: E402
from pixquery.indexing import Indexer  # noqa: E402
from pixquery.models.registry import load_encoder  # noqa: E402
from pixquery.scale.ray_index import embed_pending_with_ray  # noqa: E402
from pixquery.store.catalog import Catalog  # noqa: E402
from pixquery.store.open import open_store  # noqa: E402


def write_photos(folder: Path, n: int, seed: int = 0) -> None:
    """640x480 JPEGs: smooth colour fields plus noise, so decoding costs what a camera-sized thumbnail does."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    yy, xx = np.mgrid[0:480, 0:640]
    for i in range(n):
        a, b, c = rng.uniform(0, 1, 3)
        base = np.stack([xx * a / 3, yy * b / 2, (xx + yy) * c / 5], -1) % 255
        pixels = np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"photo_{i:04d}.jpg", quality=88)


def ray_pass(folder: Path, index: Path, model: str, encoder, actors: int, batch_size: int) -> dict:
    index.mkdir()
    catalog = Catalog(index / "catalog.sqlite")
    store = open_store("flat", index / "vectors", int(encoder.dim))
    Indexer(catalog, store, lambda: encoder).sync([folder])
    marks: list[tuple[float, int]] = []
    report = embed_pending_with_ray(
        catalog, store, model, actors=actors, batch_size=batch_size,
        progress=lambda stage, done, total: marks.append((time.perf_counter(), done)),
    )
    # Steady state: from the first batch back at the driver to the last (actor start-up and model loads excluded).
    (t0, d0), (t1, d1) = marks[0], marks[-1]
    steady = (d1 - d0) / (t1 - t0) if t1 > t0 else 0.0
    vectors = {row.path: store.get([row.id])[0] for row in catalog.all_files() if row.status == "indexed"}
    store.close()
    catalog.close()
    return {
        "images_per_s": round(report.images_per_s, 2),
        "steady_images_per_s": round(steady, 2),
        "seconds": round(report.seconds, 2),
        "vectors": vectors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--model", default="random:ViT-B-32")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 2, help="CPUs given to the local Ray instance")
    args = parser.parse_args()

    import ray

    work = Path(tempfile.mkdtemp(prefix="ray_index_"))
    try:
        folder = work / "photos"
        write_photos(folder, args.n)
        encoder = load_encoder(args.model)
        with Library.open(work / "local", encoder=encoder) as lib:
            local = lib.index([folder], batch_size=args.batch_size)
            local_vectors = {r.path: lib.store.get([r.id])[0] for r in lib.catalog.all_files() if r.status == "indexed"}
        result = {"n": args.n, "model": args.model, "cpus": os.cpu_count()}
        result["local_images_per_s"] = round(local.embed.images_per_s, 2)
        print(f"local: {result['local_images_per_s']} images/s", flush=True)
        ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
        try:
            for actors in (1, 2):
                out = ray_pass(folder, work / f"ray{actors}", args.model, encoder, actors, args.batch_size)
                cosine = min(float(v @ out["vectors"][p]) for p, v in local_vectors.items())
                result[f"ray{actors}_images_per_s"] = out["images_per_s"]
                result[f"ray{actors}_steady_images_per_s"] = out["steady_images_per_s"]
                result[f"ray{actors}_seconds"] = out["seconds"]
                result[f"ray{actors}_min_cosine_vs_local"] = round(cosine, 6)
                print(f"ray, {actors} actor(s): {out['images_per_s']} images/s, steady {out['steady_images_per_s']}")
        finally:
            ray.shutdown()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
