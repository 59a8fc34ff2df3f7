"""Install footprint, in one run: fresh venvs with the base (torch-free) install and with [torch], the import
time of pixquery, and a cold `pixquery search` with an ONNX model in the torch-free venv.

Sizes are of everything pip put into a new venv (an empty venv's own pip is subtracted and shown apart).
The cold query runs on a 1,000-image index whose vectors are stand-ins (benchmarks/cold_query.py), searched
with random:ViT-B-32 exported to ONNX (exported here by the development environment, or --model-dir), both
through the installed `pixquery` console script and through `python -m pixquery`.

    python benchmarks/footprint.py [--model-dir DIR] [--keep DIR] [--repeats 5]

Last output line: one JSON object. Creating the venvs takes a few minutes (the wheels come from PyPI or the
machine's wheel cache; `torch==2.13.0` is installed first so that pip takes the local CPU build).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cold_query import cold_query_ms, floor_ms, load_average, time_command  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TORCH_PIN = "torch==2.13.0"
HEAVY = ("torch", "transformers", "open_clip", "faiss", "fastapi", "matplotlib", "sklearn")


def run(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def size_mb(path: Path) -> float:
    """Bytes on disk under `path` (files only, links not followed), in MB."""
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            file = Path(dirpath) / name
            if not file.is_symlink():
                total += file.stat().st_size
    return total / 1e6


def site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python*/site-packages"))


def largest_packages(venv: Path, top: int = 8) -> dict[str, float]:
    """The biggest entries of a venv's site-packages, in MB."""
    sizes = {}
    for entry in site_packages(venv).iterdir():
        if entry.is_dir() and not entry.name.endswith((".dist-info", "__pycache__")):
            sizes[entry.name] = round(size_mb(entry), 1)
    return dict(sorted(sizes.items(), key=lambda kv: -kv[1])[:top])


def make_venv(path: Path, *installs: list[str]) -> tuple[float, float]:
    """A fresh venv with each pip install in turn; returns (MB of the empty venv, seconds to install)."""
    run([sys.executable, "-m", "venv", str(path)])
    empty = size_mb(path)
    start = time.perf_counter()
    for args in installs:
        run([str(path / "bin" / "pip"), "install", "--quiet", *args])
    return empty, time.perf_counter() - start


def import_ms(python: Path, module: str, repeats: int) -> float:
    return round(statistics.median(time_command([str(python), "-c", f"import {module}"], repeats)), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, default=None, help="an existing ONNX export (immich layout)")
    parser.add_argument("--keep", type=Path, default=None, help="build the venvs here and keep them")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    started = time.perf_counter()
    figures: dict = {"load_average_start": load_average()}
    work = args.keep or Path(tempfile.mkdtemp(prefix="pixquery-footprint-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        base, full = work / "venv-base", work / "venv-torch"
        for venv in (base, full):
            shutil.rmtree(venv, ignore_errors=True)
        print("creating the base venv (pip install pixquery) ...", flush=True)
        empty, seconds = make_venv(base, [str(ROOT)])
        figures["empty_venv_mb"] = round(empty, 1)
        figures["base_install_mb"] = round(size_mb(base) - empty, 1)
        figures["base_install_s"] = round(seconds, 1)
        figures["base_largest_mb"] = largest_packages(base)
        print(f"  {figures['base_install_mb']} MB: {figures['base_largest_mb']}", flush=True)

        print(f"creating the [torch] venv ({TORCH_PIN}, then pixquery[torch]) ...", flush=True)
        _, seconds = make_venv(full, [TORCH_PIN], [f"{ROOT}[torch]"])
        figures["torch_install_mb"] = round(size_mb(full) - empty, 1)
        figures["torch_install_s"] = round(seconds, 1)
        figures["torch_largest_mb"] = largest_packages(full)
        print(f"  {figures['torch_install_mb']} MB: {figures['torch_largest_mb']}", flush=True)

        python = base / "bin" / "python"
        probe = f"import importlib.util as u, json; print(json.dumps([m for m in {HEAVY!r} if u.find_spec(m)]))"
        figures["base_has_heavy_packages"] = json.loads(run([str(python), "-c", probe]).stdout)
        figures["floor"] = floor_ms(str(python), args.repeats)
        figures["import_ms"] = import_ms(python, "pixquery", args.repeats)
        figures["import_api_ms"] = import_ms(python, "pixquery.api", args.repeats)
        print(f"  import pixquery {figures['import_ms']} ms, pixquery.api {figures['import_api_ms']} ms "
              f"(python alone {figures['floor']['python_ms']} ms)", flush=True)

        model_dir = args.model_dir
        if model_dir is None:
            print("exporting random:ViT-B-32 to ONNX (development environment) ...", flush=True)
            model_dir = work / "vit-b-32"
            code = ("import sys, warnings; warnings.simplefilter('ignore'); sys.path.insert(0, sys.argv[2]); "
                    "from pixquery.models.export import export_onnx; export_onnx('random:ViT-B-32', sys.argv[1], "
                    "overwrite=True)")
            run([sys.executable, "-c", code, str(model_dir), str(ROOT)])
        index = work / "index-1000"
        shutil.rmtree(index, ignore_errors=True)
        script = Path(__file__).resolve().parent / "cold_query.py"
        run([str(python), str(script), "build", str(index), "--model", f"onnx:{model_dir}", "--dim", "512"],
            cwd=str(work))  # the installed pixquery, not the source tree
        console = figures["cold_cli_query"] = {}
        cli = time_command([str(base / "bin" / "pixquery"), "search", "a red car", "--index", str(index), "--json"],
                           args.repeats)
        console["console_script_ms"] = round(statistics.median(cli), 1)
        module = cold_query_ms(str(python), index, "cli", args.repeats)
        console["module_ms"] = module["median_ms"]
        figures["cold_cli_query_ms"] = min(console["console_script_ms"], console["module_ms"])
        print(f"  cold search (1,000 images): console script {console['console_script_ms']} ms, "
              f"python -m pixquery {console['module_ms']} ms", flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    figures["load_average_end"] = load_average()
    figures["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
