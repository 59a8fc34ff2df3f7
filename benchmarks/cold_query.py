"""Cold-query timing: a new `pixquery search TEXT` process, with no server running, against the floor of its imports.

A cold `pixquery search` costs the interpreter start, the imports, opening the text tower and one matrix
product over the index; how the index's vectors were computed plays no part. So a 1,000-image index for a
big model is built here with random unit vectors standing in for the image embeddings (recorded under the
real model's spec and precision, so that the query loads the real text tower), which takes seconds instead of
1,000 forward passes.

    python benchmarks/cold_query.py measure --model onnx:DIR [--precision int8] [--repeats 9]
    python benchmarks/cold_query.py build INDEX_DIR --model onnx:DIR --dim 512 [--n 1000] [--precision int8]

`measure` times, as new processes and alternating (one untimed run first), the bare interpreter, `import numpy`,
`import numpy, onnxruntime` (the floor every ONNX query pays) and the cold search itself, then breaks one cold
search down by stage inside a fresh interpreter. Bytecode is cached (in a temporary prefix) as an installed
package's is: this environment sets PYTHONDONTWRITEBYTECODE, which would otherwise compile pixquery's sources on
every run. The last line is one JSON object. `build` only builds a stand-in index (speed.py, footprint.py use it).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from pixquery.models.base import EncoderBase  # noqa: E402

BYTECODE = Path(tempfile.gettempdir()) / "pixquery-bench-pycache"
"""Where the timed processes keep compiled bytecode (see the module docstring)."""

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


class RandomVectors(EncoderBase):
    """An encoder that stands in for `name` while an index is built: seeded random unit image vectors."""

    def __init__(self, name: str, dim: int, precision: str | None = None) -> None:
        self.name = name
        self.dim = dim
        self.precision = precision or "fp32"
        self._rng = np.random.default_rng(0)

    def preprocess(self, image: Image.Image) -> np.ndarray:
        return np.zeros((3, self.image_size, self.image_size), np.float32)

    def encode_preprocessed(self, batch: np.ndarray) -> np.ndarray:
        vectors = self._rng.standard_normal((len(batch), self.dim)).astype(np.float32)
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


def child_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a timed process: this checkout's pixquery first, bytecode cached, no precision forced."""
    out = {**os.environ, **(env or {})}
    out.pop("PIXQUERY_PRECISION", None)
    out.pop("PYTHONDONTWRITEBYTECODE", None)
    out["PYTHONPYCACHEPREFIX"] = str(BYTECODE)
    out["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), out.get("PYTHONPATH")]))
    return out


def run_once(argv: Sequence[str], env: dict[str, str], cpu: list[float] | None = None) -> float:
    """Wall ms of `argv` as a new process (raises with its stderr if it fails); appends its CPU ms (user +
    system, all its threads) to `cpu` when given: a figure that other work on the machine inflates far less."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(list(argv), capture_output=True, text=True, env=env)
    elapsed = (time.perf_counter() - start) * 1e3
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {proc.stderr[-2000:]}")
    if cpu is not None:
        cpu.append((after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1e3)
    return elapsed


def time_command(argv: Sequence[str], repeats: int, env: dict[str, str] | None = None) -> list[float]:
    """Wall ms of `argv` as a new process, `repeats` times after one untimed run (which builds any one-off
    cache, such as the text tower's fast-loading copy and the bytecode, and warms the page cache), 0.3 s apart."""
    full_env = child_env(env)
    run_once(argv, full_env)
    times = []
    for _ in range(repeats):
        time.sleep(0.3)
        times.append(run_once(argv, full_env))
    return times


def time_alternating(commands: dict[str, Sequence[str]], repeats: int, env: dict[str, str] | None = None,
                     cpu: dict[str, list[float]] | None = None) -> dict[str, list[float]]:
    """Like `time_command` for several commands, run in turn each round, so a busy moment hits all alike; each
    command's CPU ms go into `cpu` when given."""
    full_env = child_env(env)
    for argv in commands.values():
        run_once(argv, full_env)
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(repeats):
        for name, argv in commands.items():
            time.sleep(0.2)
            times[name].append(run_once(argv, full_env, None if cpu is None else cpu.setdefault(name, [])))
    return times


def search_argv(python: str, index: Path) -> list[str]:
    return [python, "-m", "pixquery", "search", QUERIES[0], "--index", str(index), "--json"]


def cold_query_ms(python: str, index: Path, entry: str = "cli", repeats: int = 5,
                  env: dict[str, str] | None = None) -> dict[str, float]:
    """Median and best ms of a cold text search through `python -m pixquery` (`entry` is kept for callers that
    compare entry points; there is one now)."""
    times = time_command(search_argv(python, index), repeats, {"PIXQUERY_NO_SERVER": "1", **(env or {})})
    return {"median_ms": round(statistics.median(times), 1), "best_ms": round(min(times), 1)}


FLOORS = {"python_ms": "pass", "python_numpy_ms": "import numpy",
          "python_numpy_onnxruntime_ms": "import numpy, onnxruntime"}


def floor_ms(python: str, repeats: int = 5) -> dict[str, float]:
    """What any Python query pays before pixquery: a bare interpreter, numpy, and numpy with onnxruntime."""
    times = time_alternating({name: [python, "-c", code] for name, code in FLOORS.items()}, repeats)
    return {name: round(statistics.median(ts), 1) for name, ts in times.items()}


# One cold search, stage by stage, the way `pixquery search TEXT --json` runs it (cli/commands.py::search).
BREAKDOWN = """
import sys, time
marks = [("start", time.perf_counter())]
def mark(name): marks.append((name, time.perf_counter()))
import numpy; mark("import numpy")
import onnxruntime; mark("import onnxruntime")
from pixquery.cli.main import build_parser
from pixquery.cli import commands
from pixquery.cli.output import print_json
mark("import the CLI")
args = build_parser().parse_args(["search", sys.argv[2], "--index", sys.argv[1], "--json"]); mark("parse arguments")
assert commands._is_plain(args) and commands._ask_server(args) is None; mark("look for a server")
spec = commands.spec_from_args(args); mark("build the query spec (imports the query engine)")
lib = commands._open(args); mark("open the index (config, catalog)")
encoder = lib.encoder; mark("make the encoder (no session yet)")
encoder.context_length; mark("open the text tower's session and tokenizer")
lib.store.count(); mark("map the vectors")
outcome = lib.query(spec); mark("embed the text, search, read the rows")
import io, contextlib
with contextlib.redirect_stdout(io.StringIO()):
    print_json([hit.to_dict() for hit in outcome.hits])
mark("format the results")
lib.close()
import json
sys.stderr.write("STAGES " + json.dumps([(n, round((t - p) * 1e3, 1)) for (_, p), (n, t) in zip(marks, marks[1:])])
                 + "\\n")
"""


def breakdown(python: str, index: Path, repeats: int = 3) -> list[tuple[str, float]]:
    """Median ms of each stage of a cold search in a fresh interpreter (after the interpreter itself starts)."""
    env = child_env({"PIXQUERY_NO_SERVER": "1"})
    runs = []
    for _ in range(repeats + 1):
        proc = subprocess.run([python, "-c", BREAKDOWN, str(index), QUERIES[0]], capture_output=True, text=True,
                              env=env)
        lines = [line for line in proc.stderr.splitlines() if line.startswith("STAGES ")]
        if proc.returncode != 0 or not lines:
            raise RuntimeError(f"the stage breakdown failed: {proc.stderr[-2000:]}")
        runs.append(json.loads(lines[-1][len("STAGES "):]))
    runs = runs[1:]  # the first run warms the caches, as in time_command
    return [(name, round(statistics.median(run[i][1] for run in runs), 1)) for i, (name, _) in enumerate(runs[0])]


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages (other work on the machine slows every timing here)."""
    return [round(x, 2) for x in os.getloadavg()]


def measure(model: str, precision: str | None, n: int, repeats: int) -> dict:
    """Build a stand-in index for `model`, then time the floors and the cold search, alternating."""
    from pixquery.models.registry import load_encoder

    encoder = load_encoder(model, precision=precision or "auto")
    with tempfile.TemporaryDirectory(prefix="pixquery-cold-") as tmp:
        index = build_index(Path(tmp) / "index", model, int(encoder.dim), n, encoder.precision)
        python = sys.executable
        commands = {name: [python, "-c", code] for name, code in FLOORS.items()}
        commands["cold_query_ms"] = search_argv(python, index)
        cpu: dict[str, list[float]] = {}
        times = time_alternating(commands, repeats, {"PIXQUERY_NO_SERVER": "1"}, cpu)
        stages = breakdown(python, index)
    figures: dict = {name: round(statistics.median(ts), 1) for name, ts in times.items()}
    figures["cpu_ms"] = {name: round(statistics.median(ts), 1) for name, ts in cpu.items()}
    figures["cold_query_best_ms"] = round(min(times["cold_query_ms"]), 1)
    figures["pixquery_over_floor_ms"] = round(figures["cold_query_ms"] - figures["python_numpy_onnxruntime_ms"], 1)
    figures.update(model=model, precision=encoder.precision, n=n, repeats=repeats, stages=dict(stages),
                   cpus=os.cpu_count(), load_average=load_average())
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("measure", help="time a cold search against its floor")
    run.add_argument("--model", required=True, help="e.g. onnx:DIR (a ViT-B-32 export for the issue's figure)")
    run.add_argument("--precision", default=None, help="default: what a new index takes (auto)")
    run.add_argument("--n", type=int, default=1000)
    run.add_argument("--repeats", type=int, default=9)
    build = sub.add_parser("build", help="build a stand-in index")
    build.add_argument("index", type=Path)
    build.add_argument("--model", required=True)
    build.add_argument("--dim", type=int, required=True)
    build.add_argument("--n", type=int, default=1000)
    build.add_argument("--precision", default=None)
    args = parser.parse_args()
    if args.command == "build":
        build_index(args.index, args.model, args.dim, args.n, args.precision)
        print(args.index)
        return
    figures = measure(args.model, args.precision, args.n, args.repeats)
    width = max(len(name) for name in figures["stages"])
    for name, ms in figures["stages"].items():
        print(f"  {name:<{width}}  {ms:7.1f} ms")
    print(f"cold `pixquery search` ({figures['model']}, {figures['precision']}, {figures['n']} images): median "
          f"{figures['cold_query_ms']} ms (best {figures['cold_query_best_ms']}); floor: python "
          f"{figures['python_ms']} ms, + numpy {figures['python_numpy_ms']} ms, + onnxruntime "
          f"{figures['python_numpy_onnxruntime_ms']} ms; pixquery's own share {figures['pixquery_over_floor_ms']} ms"
          f"  (load {figures['load_average'][0]})")
    print(f"CPU ms (user + system, all threads): {figures['cpu_ms']}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
