"""Cold `pixquery search` with and without a resident `pixquery serve` on the same index.

A 1,000-image index is built with random vectors standing in for the image embeddings (benchmarks/cold_query.py),
recorded under `--model` so that a local query opens that model's real text tower. Then, each as a new process,
`python -m pixquery search TEXT --json` is timed: alone (it imports, opens the text tower, searches) and while
`pixquery serve` runs on the index (it finds the server's beacon and asks it over HTTP), with the bare
interpreter as the floor. The served answers are checked to equal the local ones.

    python benchmarks/served_query.py [--model mini] [--dim 128] [--repeats 7]

The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from cold_query import QUERIES, build_index, floor_ms, load_average, time_command  # noqa: E402

from pixquery.layout import IndexLayout  # noqa: E402
from pixquery.server.beacon import DISABLE_ENV  # noqa: E402
from pixquery.server.run import free_port  # noqa: E402


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mini")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        index = build_index(Path(tmp) / "index", args.model, args.dim, args.n)
        command = [sys.executable, "-m", "pixquery", "search", QUERIES[0], "--index", str(index), "--json"]
        local = time_command(command, args.repeats, env={DISABLE_ENV: "1"})
        local_hits = json.loads(subprocess.run(command, capture_output=True, text=True,
                                               env={**os.environ, DISABLE_ENV: "1"}).stdout)

        port = free_port()
        serve = [sys.executable, "-m", "pixquery", "serve", "--index", str(index), "--port", str(port)]
        server = subprocess.Popen(serve, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 120
            while not IndexLayout(index).beacon.exists():
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the server did not start: {server.stderr.read() if server.stderr else ''}")
                time.sleep(0.1)
            served = time_command(command, args.repeats)
            served_hits = json.loads(subprocess.run(command, capture_output=True, text=True).stdout)
        finally:
            server.terminate()
            server.wait(timeout=30)
        floor = floor_ms(sys.executable, args.repeats)

    same = [h["id"] for h in served_hits] == [h["id"] for h in local_hits]
    figures = {
        "model": args.model,
        "n": args.n,
        "local_cold_query_ms": round(statistics.median(local), 1),
        "served_cold_query_ms": round(statistics.median(served), 1),
        "speedup": round(statistics.median(local) / statistics.median(served), 2),
        "served_equals_local": same,
        **floor,
        "load_average": load_average(),
    }
    print(f"cold `pixquery search` on {args.n} images, model {args.model}: local {figures['local_cold_query_ms']} ms, "
          f"with `pixquery serve` running {figures['served_cold_query_ms']} ms (x{figures['speedup']}); "
          f"bare python {figures['python_ms']} ms; same results: {same}")
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
