"""Speed at each precision, in one run: indexing throughput, text-query latency, cold CLI queries, parity.

For `random:ViT-B-32` (exported to ONNX here) and `conse` (fp32 only):
- the parity gate's figures for int8 (`pixquery.models.precision`) and what `auto` picks;
- images/s of the model forward alone (preprocessed batches) and of the full `pixquery index` pipeline
  (discover, hash, decode, preprocess, embed, store) at each precision;
- ViT-B-32 text-query ms, in-process, one query at a time and spaced apart: padded to 77 tokens at fp32,
  at real length at fp32, and at real length at int8;
- cold CLI query ms: `pixquery search` as a new process on an index of 1,000 images at each precision, next to
  what a bare `python`, `import numpy` and `import numpy, onnxruntime` cost;
- with --sweep: ORT intra-op threads and batch size for the forward, image lanes, decode workers and batch size
  for the pipeline.

The forward here is one session on every core, one batch at a time; the pipeline runs the indexer's image lanes
(several sessions side by side), so pipeline / forward includes what the lanes gain. benchmarks/index_throughput.py
compares the pipeline with the forward run as lanes, on camera-size photos; this script's photos are small
(480x360) generated JPEGs, so that the precisions, not the decoder, are compared.

The last line is one JSON object. Timings move with other work on the machine: the load average is printed
at the start and end, and the figures worth comparing are ratios taken in this same run.

    python benchmarks/speed.py [--n 64] [--conse-n 300] [--model-dir DIR] [--no-conse] [--sweep]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from cold_query import build_index, cold_query_ms, floor_ms, load_average  # noqa: E402

from pixquery import Library  # noqa: E402
from pixquery.media.decode import open_image  # noqa: E402
from pixquery.models import precision as gate  # noqa: E402
from pixquery.models.onnx_backend import OnnxEncoder  # noqa: E402

TEXT_QUERIES = (
    "a red car",
    "a dog running on the beach",
    "two cats asleep on a sofa",
    "a mountain lake at sunset",
    "a black and white photo of a bridge",
    "children playing football in a park",
)


def write_photos(folder: Path, n: int, seed: int = 0) -> Path:
    """Small photo-like JPEGs (480x360: gradients and noise), a few hundred of which index in minutes."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:360, 0:480]
    for i in range(n):
        a, b, c = rng.uniform(0, 1, 3)
        base = np.stack([xx * a / 2, yy * b / 1.5, (xx + yy) * c / 3], -1) % 255
        pixels = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"photo_{i:04d}.jpg", quality=88)
    return folder


def forward_images_per_s(encoder: Any, batch: np.ndarray, batch_size: int, rounds: int = 2) -> float:
    """Images/s of encode_preprocessed alone on already preprocessed images (best of `rounds`)."""
    encoder.encode_preprocessed(batch[:2])  # warm-up: opens the session
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for i in range(0, len(batch), batch_size):
            encoder.encode_preprocessed(batch[i : i + batch_size])
        best = min(best, time.perf_counter() - start)
    return len(batch) / best


def pipeline_images_per_s(encoder: Any, photos: Path, index: Path, n: int, **options: Any) -> float:
    """Images/s of `pixquery index` (the Library call the CLI makes) from nothing to a searchable index.

    The encoder is handed over already built (the CLI would load the same model, at the same precision, from
    its spec), with its image tower open: a one-off cost that a long indexing run does not notice."""
    encoder.encode_preprocessed(np.zeros((1, 3, encoder.image_size, encoder.image_size), np.float32))
    with Library.open(index, encoder=encoder) as lib:
        start = time.perf_counter()
        report = lib.index([photos], **options)
        seconds = time.perf_counter() - start
    assert report.embed.embedded == n, report.to_dict()
    return n / seconds


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else ():
        if line.lower().startswith("model name"):
            return line.partition(":")[2].strip()
    import platform

    return platform.processor() or platform.machine()


def measure_model(name: str, encoder: Any, photos: Path, n: int, work: Path) -> dict[str, Any]:
    """Gate, forward and pipeline figures of one model at each precision it has."""
    figures: dict[str, Any] = {"fp32": {"passes": True}}
    auto = "fp32"
    if isinstance(encoder, OnnxEncoder):
        print(f"\n== {name}: parity gate (probes: demo photos and their views, photo queries)")
        report = gate.build_int8(encoder)
        figures["int8"] = {**report.to_dict(), "passes": report.passed}
        auto = "int8" if report.passed else "fp32"
        print(f"  {report.summary()}  (built and judged in {report.seconds:.0f} s)")
    paths = sorted(photos.iterdir())[:32]
    batch = np.stack([encoder.preprocess(open_image(p, target_size=encoder.decode_size)) for p in paths])
    rows: dict[str, Any] = {}
    for precision in figures:
        sibling = encoder.at_precision(precision) if isinstance(encoder, OnnxEncoder) else encoder
        forward = forward_images_per_s(sibling, batch, 32)
        pipeline = pipeline_images_per_s(sibling, photos, work / f"index-{name}-{precision}", n)
        rows[precision] = {
            "forward_images_per_s": round(forward, 2),
            "pipeline_images_per_s": round(pipeline, 2),
            "passes_gate": figures.get(precision, {}).get("passes", precision == "fp32"),
        }
        print(f"  {precision:12s} forward {forward:7.2f} img/s   pipeline {pipeline:7.2f} img/s")
    fp32_forward = rows["fp32"]["forward_images_per_s"]
    usable = {p: r for p, r in rows.items() if r["passes_gate"] or p == "fp32"}
    best = max(usable, key=lambda p: usable[p]["pipeline_images_per_s"])
    return {
        "precisions": rows,
        "parity": figures,
        "auto_choice": auto,
        "fp32_forward_images_per_s": fp32_forward,
        "best_precision": best,
        "best_pipeline_images_per_s": usable[best]["pipeline_images_per_s"],
        "speedup_vs_fp32_forward": round(usable[best]["pipeline_images_per_s"] / fp32_forward, 3),
    }


def text_query_ms(encoder: Any) -> dict[str, float]:
    """One query at a time, 50 ms apart, median over queries and rounds: padded fp32, real-length fp32, int8."""
    fp32 = encoder.at_precision("fp32")
    int8 = encoder.at_precision("int8")
    tower, tokenizer, _ = fp32._text_tower()

    def padded(text: str) -> np.ndarray:
        return tower.run({tower.input_names[0]: tokenizer.encode([text], pad_to=None).ids})

    runs = {"padded_fp32": padded, "dynamic_fp32": lambda t: fp32.encode_texts([t]),
            "dynamic_int8": lambda t: int8.encode_texts([t])}
    times: dict[str, list[float]] = {name: [] for name in runs}
    for fn in runs.values():
        fn("warm up")
    for _ in range(3):
        for text in TEXT_QUERIES:
            for name, fn in runs.items():  # interleaved, so a busy moment hits all three alike
                time.sleep(0.05)
                start = time.perf_counter()
                fn(text)
                times[name].append((time.perf_counter() - start) * 1e3)
    lengths = tokenizer.token_lengths(list(TEXT_QUERIES))
    out = {name: round(statistics.median(ts), 2) for name, ts in times.items()}
    out["mean_tokens"] = float(np.mean(lengths))
    out["context_length"] = tokenizer.context_length
    return out


def cold_queries(spec: str, dim: int, work: Path, precisions: list[str], repeats: int) -> dict[str, Any]:
    """Cold `pixquery search` (no server) on 1,000-image indexes recorded at each precision
    (benchmarks/cold_query.py measure gives the stage by stage breakdown)."""
    out: dict[str, Any] = floor_ms(sys.executable, repeats)
    for precision in precisions:
        index = build_index(work / f"cold-{precision}", spec, dim, 1000, precision)
        figures = cold_query_ms(sys.executable, index, repeats=repeats)
        out[f"cli_{precision}_ms"] = figures["median_ms"]
        out[f"cli_{precision}_best_ms"] = figures["best_ms"]
        print(f"  cold search, index at {precision:5s}: median {figures['median_ms']:.0f} ms, "
              f"best {figures['best_ms']:.0f} ms")
    return out


def sweep(encoder: Any, photos: Path, precision: str, work: Path, n: int) -> dict[str, Any]:
    """Threads and batch size for the forward; image lanes, decode workers and batch size for the pipeline."""
    paths = sorted(photos.iterdir())[:32]
    batch = np.stack([encoder.preprocess(open_image(p, target_size=encoder.image_size)) for p in paths])
    out: dict[str, Any] = {"forward": {}, "pipeline": {}}
    for threads in (1, 2):
        sibling = OnnxEncoder(encoder.name, encoder.model_dir, threads=threads).at_precision(precision)
        for size in (8, 32):
            ips = forward_images_per_s(sibling, batch, size)
            out["forward"][f"threads={threads},batch={size}"] = round(ips, 2)
            print(f"  forward {precision} threads={threads} batch={size}: {ips:.2f} img/s")
    for lanes in (1, 2):
        sibling = OnnxEncoder(encoder.name, encoder.model_dir, lanes=lanes).at_precision(precision)
        for workers in (1, 2):
            for size in (16, 32):
                ips = pipeline_images_per_s(sibling, photos, work / f"sweep-{lanes}-{workers}-{size}", n,
                                            workers=workers, batch_size=size)
                out["pipeline"][f"lanes={lanes},workers={workers},batch={size}"] = round(ips, 2)
                print(f"  pipeline {precision} lanes={lanes} workers={workers} batch={size}: {ips:.2f} img/s")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=64, help="images indexed per ViT-B-32 pipeline run")
    parser.add_argument("--conse-n", type=int, default=300, help="images indexed per conse pipeline run")
    parser.add_argument("--model-dir", type=Path, default=None, help="an existing random:ViT-B-32 export")
    parser.add_argument("--repeats", type=int, default=5, help="cold CLI runs per configuration")
    parser.add_argument("--no-conse", action="store_true")
    parser.add_argument("--sweep", action="store_true", help="also sweep threads, batch size and workers")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # random weights warn that results are meaningless; speed is what counts

    started = time.perf_counter()
    figures: dict[str, Any] = {"cpu": cpu_name(), "load_average_start": load_average()}
    print(f"cpu: {figures['cpu']}  load: {figures['load_average_start']}")
    work = Path(tempfile.mkdtemp(prefix="pixquery-speed-"))
    try:
        model_dir = args.model_dir
        if model_dir is None:
            from pixquery.models.export import export_onnx

            model_dir = export_onnx("random:ViT-B-32", work / "vit-b-32")
        spec = f"onnx:{model_dir}"
        encoder = OnnxEncoder(spec, model_dir)
        photos = write_photos(work / "photos", max(args.n, 32))
        vit = measure_model("ViT-B-32", encoder, photos, max(args.n, 32), work)
        print("\n== ViT-B-32 text queries (in-process, one at a time)")
        vit["text_query_ms"] = text_query_ms(encoder)
        print(f"  {vit['text_query_ms']}")
        print("\n== cold CLI queries, 1,000-image index")
        vit["cold_cli_query_ms"] = cold_queries(spec, encoder.dim, work, ["fp32", "int8"], args.repeats)
        if args.sweep:
            print("\n== threads, batch size, decode workers (int8)")
            vit["sweep"] = sweep(encoder, photos, "int8", work, max(args.n, 32))
        figures["random:ViT-B-32"] = vit
        if not args.no_conse:
            from pixquery.models.conse import ConSEEncoder

            conse = ConSEEncoder()
            conse_photos = write_photos(work / "conse-photos", args.conse_n, seed=1)
            figures["conse"] = measure_model("conse", conse, conse_photos, args.conse_n, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    figures["load_average_end"] = load_average()
    figures["seconds"] = round(time.perf_counter() - started, 1)
    vit = figures["random:ViT-B-32"]
    summary = {
        "model": "random:ViT-B-32",
        "fp32_forward_images_per_s": vit["fp32_forward_images_per_s"],
        "best_pipeline_images_per_s": vit["best_pipeline_images_per_s"],
        "best_precision": vit["best_precision"],
        "speedup_vs_fp32_forward": vit["speedup_vs_fp32_forward"],
        "text_query_ms": vit["text_query_ms"],
        "cold_cli_query_ms": vit["cold_cli_query_ms"],
        "parity_top10_overlap": {p: f.get("top10_overlap", 1.0) for p, f in vit["parity"].items()},
        "auto_choice": vit["auto_choice"],
        **figures,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
