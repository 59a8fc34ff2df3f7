"""pixquery against rclip 4.0.8, side by side: the same ONNX model, the same folder of photos, alternating runs.

What it does:
1. rclip 4.0.8 (PyPI; ONNX Runtime, Python >= 3.12) goes into its own venv, made with a python3.12+ found on PATH or
   under ~/.pyenv/versions. Without one the script says so and its JSON line has nulls and a "skipped" reason.
2. A random-weight open_clip ViT-B-32-256 is built once in a second venv (torch, open_clip_torch; see
   vs_rclip_build.py) and exported as rclip ships it: visual.onnx and textual.onnx in rclip's data-dir layout,
   plus the same two graphs (inputs renamed, nothing else) in the immich layout `pixquery --model onnx:DIR` reads.
3. The photos: --photos DIR, or (default) --n camera-sized JPEGs made once from real photos in --source (see
   `make_photo`: a bicubic upscale to 12 MP, light film grain so the files weigh what camera JPEGs weigh, a small
   EXIF block, quality 90). What the set is gets printed and goes into the JSON line.
4. Indexing: rclip's normal command (`rclip QUERY` in the folder: it indexes, then answers one query) and
   `python -m pixquery index FOLDER --index NEW --model onnx:DIR --json [--pixquery-args]`, each with a fresh
   data dir / index, alternated for --repeats rounds after one untimed warm-up of each on a few photos. Wall clock
   is the whole command, process start to exit; pixquery's own `images_per_s` (its embedding pass) is kept too.
5. Cold query: a new process answering one text query on each side's index (`rclip --no-indexing`, and
   `python -m pixquery search` with PIXQUERY_NO_SERVER=1), alternated, median of --query-runs after a warm-up.
6. Checks that both sides embed alike: per photo cosine between rclip's stored vector and pixquery's, and the
   two top-10 lists for the query (overlap, largest score difference).

The model's weights are random, so rankings mean nothing: this measures speed only. Nothing here reaches the
network except pip installing rclip and the build tools into the benchmark's own venvs; the runs set
HF_HUB_OFFLINE=1, so a model lookup would fail loudly instead.

    python benchmarks/vs_rclip.py [--n 400] [--repeats 2] [--pixquery-args "--precision int8"] [--work DIR]

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BUILD_SCRIPT = Path(__file__).resolve().parent / "vs_rclip_build.py"

RCLIP_VERSION = "4.0.8"
RCLIP_MIN_PYTHON = (3, 12)
RCLIP_MODEL_ENTRIES = (
    "ViT-B-32-256-datacomp_s34b_b86k",
    "tokenizer",
    "LICENSE",
    "OPENAI-CLIP-MIT.txt",
    "README.md",
    "THIRD_PARTY_NOTICES.md",
)
"""What rclip's model_download.ensure_downloaded() looks for in $RCLIP_DATADIR before it would go to the hub."""
BUILD_REQUIREMENTS = ("torch==2.13.0", "open_clip_torch", "onnx", "onnxruntime", "transformers")
DEFAULT_SOURCE = Path("/work/bench-photos/imagenet-sample")
DEFAULT_QUERY = "a dog"
JPEG_SUFFIXES = (".jpg", ".jpeg")
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PIXQUERY_NO_SERVER": "1"}


class BenchError(RuntimeError):
    """A step of the benchmark failed; the message says which and why."""


# --- interpreters and venvs ---------------------------------------------------------------------------------------


def python_version(python: str | Path) -> tuple[int, int] | None:
    """(major, minor) of an interpreter, or None when it does not run (a pyenv shim with no version set, say)."""
    try:
        out = subprocess.run(
            [str(python), "-c", "import sys; print(*sys.version_info[:2])"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout.split()
        return int(out[0]), int(out[1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def python_candidates(minors: Sequence[int]) -> list[Path]:
    """python3.M on PATH, then under ~/.pyenv/versions, for each minor version asked for (newest first)."""
    found: list[Path] = []
    for minor in minors:
        on_path = shutil.which(f"python3.{minor}")
        if on_path:
            found.append(Path(on_path))
        pyenv = Path.home() / ".pyenv" / "versions"
        found += sorted(pyenv.glob(f"3.{minor}.*/bin/python3.{minor}"), reverse=True)
    return found


def find_python(wanted: tuple[int, int], exact: bool, explicit: str | None) -> Path | None:
    """An interpreter of version `wanted` (or newer unless `exact`); `explicit` (a flag's value) is checked only."""
    candidates = [Path(explicit)] if explicit else python_candidates(
        [wanted[1]] if exact else list(range(wanted[1] + 3, wanted[1] - 1, -1))
    )
    for candidate in candidates:
        version = python_version(candidate)
        if version and (version == wanted if exact else version >= wanted):
            return candidate
    return None


def ensure_venv(directory: Path, python: Path, requirements: Sequence[str]) -> Path:
    """A venv at `directory` with `requirements` installed (once: a marker records what was installed)."""
    marker = directory / "bench-requirements.json"
    wanted = {"python": str(python), "requirements": list(requirements)}
    venv_python = directory / "bin" / "python"
    if marker.is_file() and venv_python.exists() and json.loads(marker.read_text()) == wanted:
        return venv_python
    print(f"  creating {directory} ({python}) and pip installing {' '.join(requirements)} ...", flush=True)
    start = time.perf_counter()
    run_checked([str(python), "-m", "venv", "--clear", str(directory)], "creating a venv")
    run_checked([str(venv_python), "-m", "pip", "install", "--quiet", *requirements], "pip install")
    marker.write_text(json.dumps(wanted))
    print(f"  installed in {time.perf_counter() - start:.0f} s", flush=True)
    return venv_python


def run_checked(argv: Sequence[str], what: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a command; on failure raise BenchError with the end of its output."""
    proc = subprocess.run(list(argv), capture_output=True, text=True, **kwargs)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
        raise BenchError(f"{what} failed (exit {proc.returncode}): {' '.join(argv)}\n" + "\n".join(tail))
    return proc


# --- the model ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelFiles:
    """Where the two layouts of the one model live, and what the build checked."""

    rclip_root: Path
    pixquery_dir: Path
    build: dict[str, Any]


def ensure_model(work: Path, build_python: Path | None, seed: int) -> ModelFiles:
    """Build the random-weight ViT-B-32-256 (once per seed) in the build venv; reuse it afterwards."""
    out = work / f"model-vit-b-32-256-seed{seed}"
    report = out / "build.json"
    if not report.is_file():
        if build_python is None:
            raise BenchError(
                "building the model needs Python 3.11 for torch==2.13.0 (found none; pass --build-python)"
            )
        venv_python = ensure_venv(work / "venv-build-py3.11", build_python, BUILD_REQUIREMENTS)
        print(f"  exporting open_clip ViT-B-32-256 (random weights, seed {seed}) to ONNX ...", flush=True)
        run_checked([str(venv_python), str(BUILD_SCRIPT), "--out", str(out), "--seed", str(seed)], "model build",
                    env={**os.environ, **OFFLINE_ENV})
    return ModelFiles(out / "rclip", out / "pixquery", json.loads(report.read_text()))


# --- the photos ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PhotoSpec:
    """How the default photo set is made from real source photos."""

    long_side: int = 4032
    short_side: int = 3024
    quality: int = 90
    grain: float = 6.0


def make_photo(job: tuple[Path, Path, PhotoSpec, int]) -> tuple[str, int, int, int]:
    """One camera-sized JPEG from a real photo: bicubic upscale keeping the orientation (landscape 4032x3024,
    portrait 3024x4032), monochrome grain of std `grain` (a seeded noise tile at a per-photo offset: a plain
    upscale is so smooth that it compresses to a third of a camera JPEG's bytes, and entropy decoding cost
    follows the bytes), an EXIF block (make, model, date, orientation 1: upright, so no rotation on either side),
    quality `quality`. Returns (name, width, height, bytes)."""
    import numpy as np
    from PIL import Image, ImageChops

    source, target, spec, index = job
    with Image.open(source) as img:
        rgb = img.convert("RGB")
    size = (spec.long_side, spec.short_side) if rgb.width >= rgb.height else (spec.short_side, spec.long_side)
    big = rgb.resize(size, Image.Resampling.BICUBIC)
    if spec.grain > 0:
        rng = np.random.default_rng(index)
        tile = Image.fromarray(np.clip(rng.normal(128, spec.grain, (1024, 1024)), 0, 255).astype(np.uint8))
        grain = Image.new("L", size)
        for x in range(-int(rng.integers(1024)), size[0], 1024):
            for y in range(-int(rng.integers(1024)), size[1], 1024):
                grain.paste(tile, (x, y))
        big = ImageChops.add(big, Image.merge("RGB", (grain, grain, grain)), 1.0, -128)
    exif = Image.Exif()
    exif[0x010F] = "pixquery-bench"  # Make
    exif[0x0110] = "upscaled sample photo"  # Model
    exif[0x0132] = f"2024:06:{1 + index % 28:02d} 12:00:00"  # DateTime
    exif[0x0112] = 1  # Orientation: upright
    big.save(target, "JPEG", quality=spec.quality, exif=exif)
    return target.name, size[0], size[1], target.stat().st_size


def source_photos(source: Path) -> list[Path]:
    """The JPEGs of a source folder, sorted (so a given --n always picks the same ones)."""
    if not source.is_dir():
        raise BenchError(f"--source {source} is not a folder of photos (pass --source DIR or --photos DIR)")
    return sorted(p for p in source.iterdir() if p.suffix.lower() in JPEG_SUFFIXES)


def ensure_photo_set(work: Path, source: Path, n: int, spec: PhotoSpec) -> tuple[Path, dict[str, Any]]:
    """The default photo set (made once, in parallel); returns its folder and what it is."""
    name = f"photos-n{n}-{spec.long_side}x{spec.short_side}-q{spec.quality}-g{spec.grain:g}"
    folder, manifest_path = work / name, work / f"{name}.json"
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("source") == str(source.resolve()) and folder.is_dir():
            return folder, manifest
    sources = source_photos(source)
    if len(sources) < n:
        raise BenchError(f"--source {source} has {len(sources)} JPEGs, fewer than --n {n}")
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    print(f"  making {n} camera-sized JPEGs from {source} into {folder} ...", flush=True)
    start = time.perf_counter()
    jobs = [(src, folder / f"{i:04d}_{src.stem}.jpg", spec, i) for i, src in enumerate(sources[:n])]
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        made = list(pool.map(make_photo, jobs, chunksize=4))
    print(f"  made in {time.perf_counter() - start:.0f} s", flush=True)
    manifest = {
        "source": str(source.resolve()),
        "source_files": n,
        "made_by": f"bicubic upscale, grain std {spec.grain:g}, EXIF (orientation 1), JPEG quality {spec.quality}",
        "files": [{"name": m[0], "width": m[1], "height": m[2], "bytes": m[3]} for m in made],
    }
    manifest_path.write_text(json.dumps(manifest, indent=1))
    return folder, manifest


def describe_photos(folder: Path, manifest: dict[str, Any] | None) -> dict[str, Any]:
    """Count, pixel sizes and bytes of the JPEGs in a folder (headers only), plus how they were made."""
    from PIL import Image

    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in JPEG_SUFFIXES and p.is_file())
    if not files:
        raise BenchError(f"{folder} holds no JPEGs")
    sizes: Counter[str] = Counter()
    total = 0
    for path in files:
        with Image.open(path) as img:
            sizes[f"{img.width}x{img.height}"] += 1
        total += path.stat().st_size
    description = {
        "folder": str(folder),
        "count": len(files),
        "sizes": dict(sizes.most_common()),
        "bytes_total": total,
        "bytes_mean": round(total / len(files)),
    }
    if manifest:
        description["source"] = manifest["source"]
        description["made_by"] = manifest["made_by"]
    return description


def photo_set_label(description: dict[str, Any]) -> str:
    """One line naming the photo set, for the table and the JSON line."""
    sizes = ", ".join(f"{count}x {size}" for size, count in description["sizes"].items())
    label = f"{description['count']} JPEGs ({sizes}; mean {description['bytes_mean'] / 1e6:.2f} MB)"
    if "source" in description:
        label += f" made from {description['source']} by {description['made_by']}"
    else:
        label += f" from {description['folder']}"
    return label


def warmup_folder(photos: Path, target: Path, count: int) -> Path:
    """A few of the photos copied into their own folder, for the untimed warm-up runs."""
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(p for p in photos.rglob("*") if p.suffix.lower() in JPEG_SUFFIXES)[:count]:
        shutil.copy2(path, target / path.name)
    return target


# --- one run of each side -----------------------------------------------------------------------------------------


@dataclass
class IndexRun:
    """One indexing command: its wall time and what it embedded."""

    side: str
    wall_s: float
    embedded: int
    reported_images_per_s: float | None = None
    reported_seconds: float | None = None

    @property
    def images_per_s(self) -> float:
        return self.embedded / self.wall_s if self.wall_s > 0 else 0.0


@dataclass
class Sides:
    """How to run each side."""

    rclip_bin: Path
    rclip_model_root: Path
    pixquery_python: Path
    pixquery_model: Path
    pixquery_args: list[str]
    query: str
    env: dict[str, str] = field(default_factory=dict)


def timed(argv: Sequence[str], cwd: Path | None, env: dict[str, str], what: str) -> tuple[float, str]:
    """Run a command as a new process; (wall seconds, stdout). A non-zero exit raises BenchError."""
    start = time.perf_counter()
    proc = run_checked(argv, what, cwd=cwd, env=env)
    return time.perf_counter() - start, proc.stdout


def fresh_rclip_datadir(sides: Sides, directory: Path) -> Path:
    """An empty rclip data dir (so a new db.sqlite3) whose model files link to the built ones."""
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    for entry in RCLIP_MODEL_ENTRIES:
        (directory / entry).symlink_to(sides.rclip_model_root / entry)
    return directory


def rclip_env(sides: Sides, datadir: Path) -> dict[str, str]:
    """rclip's environment: its data dir, offline hub, no colour or progress noise to parse."""
    env = {key: value for key, value in sides.env.items() if key != "PYTHONPATH"}
    return {**env, "RCLIP_DATADIR": str(datadir), "NO_COLOR": "1"}


def rclip_count(datadir: Path) -> int:
    """Images rclip's database holds."""
    with sqlite3.connect(datadir / "db.sqlite3") as con:
        return int(con.execute("SELECT COUNT(*) FROM images WHERE deleted IS NULL").fetchone()[0])


def run_rclip_index(sides: Sides, photos: Path, datadir: Path) -> IndexRun:
    """rclip's normal indexing command in the photo folder, with a fresh data dir: it indexes, then answers."""
    fresh_rclip_datadir(sides, datadir)
    argv = [str(sides.rclip_bin), "--top", "1", sides.query]
    wall, _ = timed(argv, photos, rclip_env(sides, datadir), "rclip indexing")
    return IndexRun("rclip", wall, rclip_count(datadir))


def run_pixquery_index(sides: Sides, photos: Path, index: Path) -> IndexRun:
    """`pixquery index` into a fresh index directory; keeps its own report of the embedding pass."""
    if index.exists():
        shutil.rmtree(index)
    argv = [str(sides.pixquery_python), "-m", "pixquery", "index", str(photos), "--index", str(index),
            "--model", f"onnx:{sides.pixquery_model}", "--json", *sides.pixquery_args]
    wall, out = timed(argv, None, sides.env, "pixquery index")
    report = json.loads(out)
    return IndexRun("pixquery", wall, int(report["embedded"]), float(report["images_per_s"]),
                    float(report["seconds"]))


def rclip_query(sides: Sides, photos: Path, datadir: Path, top: int = 10) -> tuple[float, list[tuple[str, float]]]:
    """A cold rclip text query on an existing index: (wall seconds, [(path, score)])."""
    argv = [str(sides.rclip_bin), "--no-indexing", "--top", str(top), sides.query]
    wall, out = timed(argv, photos, rclip_env(sides, datadir), "rclip query")
    hits = []
    for line in out.splitlines():
        match = re.match(r'^(-?[\d.]+)\t"(.*)"$', line)
        if match:
            hits.append((match.group(2), float(match.group(1))))
    return wall, hits


def pixquery_query(sides: Sides, index: Path, top: int = 10) -> tuple[float, list[tuple[str, float]]]:
    """A cold `pixquery search` on an existing index (no resident server): (wall seconds, [(path, score)])."""
    argv = [str(sides.pixquery_python), "-m", "pixquery", "search", sides.query, "--index", str(index),
            "--top", str(top), "--json"]
    wall, out = timed(argv, None, sides.env, "pixquery search")
    return wall, [(hit["path"], float(hit["score"])) for hit in json.loads(out)]


# --- checks -------------------------------------------------------------------------------------------------------


def rclip_vectors(datadir: Path) -> dict[str, Any]:
    """path -> vector from rclip's database."""
    import numpy as np

    with sqlite3.connect(datadir / "db.sqlite3") as con:
        rows = con.execute("SELECT filepath, vector FROM images WHERE deleted IS NULL").fetchall()
    return {str(Path(path).resolve()): np.frombuffer(blob, dtype=np.float32) for path, blob in rows}


def pixquery_vectors(index: Path) -> dict[str, Any]:
    """path -> vector from a pixquery index (read through pixquery's own API)."""
    sys.path.insert(0, str(REPO))
    from pixquery import Library

    with Library.open(index) as library:
        ids, vectors = library.store.all_vectors()
        rows = library.items(ids.tolist())
        return {str(Path(rows[int(i)].path).resolve()): vectors[k] for k, i in enumerate(ids)}


def vector_agreement(rclip_datadir: Path, pixquery_index: Path) -> dict[str, Any]:
    """Cosine between the two sides' vectors of each photo (both L2-normalised first)."""
    import numpy as np

    ours, theirs = pixquery_vectors(pixquery_index), rclip_vectors(rclip_datadir)
    common = sorted(set(ours) & set(theirs))
    if not common:
        return {"photos_compared": 0}
    a = np.stack([ours[p] for p in common]).astype(np.float64)
    b = np.stack([theirs[p] for p in common]).astype(np.float64)
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    cosines = (a * b).sum(axis=1)
    return {
        "photos_compared": len(common),
        "min_cosine": round(float(cosines.min()), 6),
        "mean_cosine": round(float(cosines.mean()), 6),
    }


def ranking_agreement(rclip_hits: list[tuple[str, float]], pixquery_hits: list[tuple[str, float]]) -> dict[str, Any]:
    """How alike the two top-k answers to the same query are: overlap, and the largest score difference."""
    theirs = {str(Path(p).resolve()): s for p, s in rclip_hits}
    ours = {str(Path(p).resolve()): s for p, s in pixquery_hits}
    common = set(theirs) & set(ours)
    k = max(len(theirs), len(ours), 1)
    return {
        "top_k": k,
        "overlap": round(len(common) / k, 3),
        "max_score_diff": round(max((abs(theirs[p] - ours[p]) for p in common), default=float("nan")), 4),
    }


# --- the benchmark ------------------------------------------------------------------------------------------------


def load_average() -> list[float]:
    """1, 5 and 15 minute load averages (other work on the machine slows every timing here)."""
    return [round(x, 2) for x in os.getloadavg()]


def cpu_description() -> str:
    """CPU model name and core count."""
    name = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} cores"


def index_rounds(sides: Sides, photos: Path, runs: Path, repeats: int) -> tuple[list[IndexRun], list[IndexRun]]:
    """--repeats rounds of rclip then pixquery (the order flips each round); returns each side's runs."""
    rclip_runs: list[IndexRun] = []
    pixquery_runs: list[IndexRun] = []
    for round_no in range(repeats):
        order = ("rclip", "pixquery") if round_no % 2 == 0 else ("pixquery", "rclip")
        for side in order:
            if side == "rclip":
                run = run_rclip_index(sides, photos, runs / "rclip-data")
                rclip_runs.append(run)
            else:
                run = run_pixquery_index(sides, photos, runs / "pixquery-index")
                pixquery_runs.append(run)
            extra = f" (its embedding pass: {run.reported_images_per_s:.2f}/s)" if run.reported_images_per_s else ""
            print(f"  round {round_no + 1} {side:8s} {run.embedded} images in {run.wall_s:6.1f} s = "
                  f"{run.images_per_s:.2f} images/s{extra}  load {load_average()[0]}", flush=True)
    return rclip_runs, pixquery_runs


def query_rounds(sides: Sides, photos: Path, runs: Path, count: int) -> dict[str, Any]:
    """Cold queries on both indexes, alternated after one untimed warm-up each; medians and the answers."""
    datadir, index = runs / "rclip-data", runs / "pixquery-index"
    rclip_query(sides, photos, datadir)
    pixquery_query(sides, index)
    rclip_ms: list[float] = []
    pixquery_ms: list[float] = []
    rclip_hits: list[tuple[str, float]] = []
    pixquery_hits: list[tuple[str, float]] = []
    for i in range(count):
        for side in (("rclip", "pixquery") if i % 2 == 0 else ("pixquery", "rclip")):
            if side == "rclip":
                wall, rclip_hits = rclip_query(sides, photos, datadir)
                rclip_ms.append(wall * 1000)
            else:
                wall, pixquery_hits = pixquery_query(sides, index)
                pixquery_ms.append(wall * 1000)
    return {
        "rclip_ms": rclip_ms,
        "pixquery_ms": pixquery_ms,
        "ranking": ranking_agreement(rclip_hits, pixquery_hits),
    }


def warm_up(sides: Sides, photos: Path, runs: Path, count: int) -> None:
    """One untimed index run of each side on a few photos: model files into the page cache, and pixquery's
    one-off work for the precision asked (an int8 variant is built on first use)."""
    folder = warmup_folder(photos, runs / "warmup-photos", count)
    for run in (run_rclip_index(sides, folder, runs / "warmup-rclip"),
                run_pixquery_index(sides, folder, runs / "warmup-pixquery")):
        print(f"  warm-up {run.side:8s} {run.embedded} images in {run.wall_s:.1f} s (untimed)", flush=True)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def summarise(rclip_runs: list[IndexRun], pixquery_runs: list[IndexRun], queries: dict[str, Any]) -> dict[str, Any]:
    """The headline figures: medians over the rounds."""
    pq_ips = median([r.images_per_s for r in pixquery_runs])
    rc_ips = median([r.images_per_s for r in rclip_runs])
    rc_query_s = median(queries["rclip_ms"]) / 1000
    rc_index_only = median([r.embedded / max(r.wall_s - rc_query_s, 1e-9) for r in rclip_runs])
    return {
        "pixquery_images_per_s": round(pq_ips, 3),
        "rclip_images_per_s": round(rc_ips, 3),
        "ratio": round(pq_ips / rc_ips, 3) if rc_ips else None,
        "pixquery_cold_query_ms": round(median(queries["pixquery_ms"]), 1),
        "rclip_cold_query_ms": round(median(queries["rclip_ms"]), 1),
        "pixquery_embed_pass_images_per_s": round(median([r.reported_images_per_s or 0 for r in pixquery_runs]), 3),
        "rclip_images_per_s_less_its_query": round(rc_index_only, 3),
        "round_ratios": [
            round(ours.images_per_s / theirs.images_per_s, 3)
            for ours, theirs in zip(pixquery_runs, rclip_runs, strict=True)
        ],
        "pixquery_runs_images_per_s": [round(r.images_per_s, 3) for r in pixquery_runs],
        "rclip_runs_images_per_s": [round(r.images_per_s, 3) for r in rclip_runs],
        "pixquery_cold_query_ms_runs": [round(x, 1) for x in queries["pixquery_ms"]],
        "rclip_cold_query_ms_runs": [round(x, 1) for x in queries["rclip_ms"]],
    }


def print_table(summary: dict[str, Any], pixquery_args: list[str]) -> None:
    """The figures for a human reader."""
    precision = " ".join(pixquery_args) or "(defaults: a new index's precision, int8 where the gate passes)"
    rows = [
        ("images/s, whole command (median)", summary["pixquery_images_per_s"], summary["rclip_images_per_s"]),
        ("images/s, embedding pass only (pixquery's report)", summary["pixquery_embed_pass_images_per_s"], "-"),
        ("images/s, whole command less one cold query (rclip)", "-", summary["rclip_images_per_s_less_its_query"]),
        ("cold text query, ms (median)", summary["pixquery_cold_query_ms"], summary["rclip_cold_query_ms"]),
    ]
    print(f"\n{'':52s} {'pixquery':>10s} {'rclip':>10s}    pixquery args: {precision}")
    for label, ours, theirs in rows:
        print(f"{label:52s} {ours!s:>10s} {theirs!s:>10s}")
    print(f"{'ratio pixquery / rclip (images/s, whole command)':52s} {summary['ratio']!s:>10s}")


def skipped_line(reason: str, extra: dict[str, Any]) -> dict[str, Any]:
    """The JSON line when the comparison cannot run."""
    keys = ("pixquery_images_per_s", "rclip_images_per_s", "ratio", "pixquery_cold_query_ms", "rclip_cold_query_ms")
    return {**dict.fromkeys(keys), "skipped": reason, **extra}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--photos", type=Path, help="A folder of JPEGs to index (default: make a set from --source).")
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE,
                        help="Real photos the default set is made from (e.g. a clone of "
                             "github.com/EliSchwartz/imagenet-sample-images).")
    parser.add_argument("--n", type=int, default=400, help="Photos in the default set.")
    parser.add_argument("--grain", type=float, default=PhotoSpec.grain,
                        help="Grain std of the default set's photos (0: a plain upscale).")
    parser.add_argument("--repeats", type=int, default=2, help="Alternating index rounds.")
    parser.add_argument("--query-runs", type=int, default=5, help="Cold queries per side (median reported).")
    parser.add_argument("--query", default=DEFAULT_QUERY, help="The text query.")
    parser.add_argument("--pixquery-args", default="",
                        help='Extra arguments for `pixquery index`, e.g. "--precision int8".')
    parser.add_argument("--warmup", type=int, default=4, help="Photos in the untimed warm-up runs.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the model's random weights.")
    parser.add_argument("--work", type=Path, default=Path.home() / ".cache" / "pixquery-bench" / "vs_rclip",
                        help="Cache for the venvs, the model and the photo set.")
    parser.add_argument("--rclip-python", help="Python >= 3.12 for rclip's venv (default: found on the machine).")
    parser.add_argument("--build-python", help="Python 3.11 for the model-building venv (torch 2.13).")
    parser.add_argument("--pixquery-python", default=sys.executable,
                        help="Python with pixquery's dependencies (default: this one); pixquery runs from this "
                             "checkout.")
    parser.add_argument("--keep", action="store_true", help="Keep the run's indexes under --work/runs.")
    return parser.parse_args(argv)


def prepare(args: argparse.Namespace, info: dict[str, Any]) -> tuple[Sides, Path, dict[str, Any], ModelFiles]:
    """Venvs, model and photos; raises BenchError (or returns early via SystemExit for a missing Python)."""
    work: Path = args.work.expanduser().resolve()
    work.mkdir(parents=True, exist_ok=True)
    rclip_python = find_python(RCLIP_MIN_PYTHON, exact=False, explicit=args.rclip_python)
    if rclip_python is None:
        reason = "rclip 4.0.8 needs Python >= 3.12 and none was found (PATH, ~/.pyenv/versions, --rclip-python)"
        print(reason)
        print(json.dumps(skipped_line(reason, info)))
        raise SystemExit(0)
    print(f"rclip's Python: {rclip_python}", flush=True)
    rclip_venv = ensure_venv(work / "venv-rclip", rclip_python, (f"rclip=={RCLIP_VERSION}",))
    build_python = find_python((3, 11), exact=True, explicit=args.build_python)
    model = ensure_model(work, build_python, args.seed)
    print(f"model: {model.rclip_root.parent} (build checks {model.build['checks']})", flush=True)
    if args.photos:
        photos, manifest = args.photos.expanduser().resolve(), None
    else:
        spec = PhotoSpec(grain=args.grain)
        photos, manifest = ensure_photo_set(work, args.source.expanduser(), args.n, spec)
    env = {**os.environ, **OFFLINE_ENV, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    sides = Sides(
        rclip_bin=rclip_venv.parent / "rclip",
        rclip_model_root=model.rclip_root,
        pixquery_python=Path(args.pixquery_python),
        pixquery_model=model.pixquery_dir,
        pixquery_args=shlex.split(args.pixquery_args),
        query=args.query,
        env=env,
    )
    return sides, photos, describe_photos(photos, manifest), model


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    info: dict[str, Any] = {"cpu": cpu_description(), "repeats": args.repeats,
                            "pixquery_args": args.pixquery_args, "rclip_version": RCLIP_VERSION}
    start = time.perf_counter()
    load_start = load_average()
    print(f"CPU: {info['cpu']}; load average {load_start}", flush=True)
    try:
        sides, photos, description, model = prepare(args, info)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        print(json.dumps(skipped_line(f"setup failed: {str(exc).splitlines()[0]}", info)))
        raise SystemExit(1) from None
    label = photo_set_label(description)
    print(f"photos: {label}", flush=True)

    runs = args.work.expanduser().resolve() / "runs"
    if runs.exists():
        shutil.rmtree(runs)
    runs.mkdir(parents=True)
    try:
        warm_up(sides, photos, runs, args.warmup)
        rclip_runs, pixquery_runs = index_rounds(sides, photos, runs, args.repeats)
        queries = query_rounds(sides, photos, runs, args.query_runs)
        agreement = vector_agreement(runs / "rclip-data", runs / "pixquery-index")
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        print(json.dumps(skipped_line(f"a run failed: {str(exc).splitlines()[0]}", info)))
        raise SystemExit(1) from None
    finally:
        if not args.keep:
            shutil.rmtree(runs, ignore_errors=True)

    summary = summarise(rclip_runs, pixquery_runs, queries)
    print_table(summary, sides.pixquery_args)
    print(f"embedding agreement: {agreement}; query top-10: {queries['ranking']}")
    load_end = load_average()
    print(f"load average {load_start} -> {load_end}; {time.perf_counter() - start:.0f} s")
    result = {
        **{k: summary[k] for k in ("pixquery_images_per_s", "rclip_images_per_s", "ratio",
                                   "pixquery_cold_query_ms", "rclip_cold_query_ms")},
        "n_photos": description["count"],
        "photo_set": label,
        "photo_bytes_mean": description["bytes_mean"],
        "repeats": args.repeats,
        "cpu": info["cpu"],
        "pixquery_args": args.pixquery_args,
        "embedding_cosine": agreement,
        "query_top10": queries["ranking"],
        "model": f"open_clip ViT-B-32-256, random weights (seed {args.seed}), rclip's ONNX export",
        "rclip_version": RCLIP_VERSION,
        "load_average": [load_start[0], load_end[0]],
        **{k: v for k, v in summary.items() if k not in ("pixquery_images_per_s", "rclip_images_per_s", "ratio",
                                                          "pixquery_cold_query_ms", "rclip_cold_query_ms")},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
