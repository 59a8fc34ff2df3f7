"""Load test of the HTTP server: text searches from concurrent clients on loopback, next to in-process searches.

Builds a synthetic index of N random unit vectors (catalog rows written straight through `Catalog.insert` and
`mark_indexed`, vectors through `FlatStore.add`/`flush`; no images), starts `pixquery.server.run.serve` in a child
process (so the clients below do not share its interpreter lock), then runs C client threads for S seconds, each
sending `GET /api/search?q=...&k=20` one after the other over a kept-alive connection. The same texts are also
searched in-process with `Library.search`, so the HTTP layer's cost can be read off the difference.

    python benchmarks/serve_load.py [--vectors 100000] [--clients 8] [--seconds 20] [--model conse]

The model only embeds the query texts (its dimension sets the vectors'); the default `conse` loads in seconds
and runs its text tower with ONNX Runtime, like a CLIP text tower would. The last line printed is one JSON object
with qps, p50_ms, p95_ms, p99_ms (HTTP, end to end), inprocess_p50_ms, inprocess_p95_ms, errors and the setup.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # run from a checkout without installing

import httpx  # noqa: E402

from pixquery.api import CATALOG_FILE, VECTORS_DIR, Library  # noqa: E402
from pixquery.models.registry import load_encoder  # noqa: E402
from pixquery.server.run import free_port  # noqa: E402
from pixquery.store.catalog import Catalog  # noqa: E402
from pixquery.store.config import IndexConfig  # noqa: E402
from pixquery.store.flat import FlatStore  # noqa: E402

QUERIES = [
    "a dog on a beach", "a red car parked on a street", "two cats sleeping on a sofa", "a birthday cake with candles",
    "mountains at sunset", "a child riding a bicycle", "a bowl of ramen", "people dancing at a wedding",
    "a snowy forest", "a black and white photo of a city", "a boat on a lake", "a bird on a branch",
    "a plate of pasta", "a crowded market", "the northern lights", "a cup of coffee on a table",
    "a surfer on a wave", "an old church", "fireworks over a river", "a horse in a field",
    "a rainy window", "a bookshelf full of books", "a person hiking a trail", "a lighthouse by the sea",
]
CHUNK = 20_000


def build_index(directory: Path, n: int, model: str, dim: int, seed: int = 0) -> None:
    """Write a flat index of `n` random unit vectors with matching catalog rows (fake paths, no image files)."""
    IndexConfig(model=model, dim=dim).save(directory)
    catalog = Catalog(directory / CATALOG_FILE)
    store = FlatStore(directory / VECTORS_DIR, dim)
    rng = np.random.default_rng(seed)
    for start in range(0, n, CHUNK):
        ids = []
        for i in range(start, min(n, start + CHUNK)):
            folder = f"/bench/photos/{i // 1000:03d}"
            file_id = catalog.insert(f"{folder}/img_{i:07d}.jpg", folder, "jpg", 100_000 + i, i, f"{i:032x}")
            catalog.mark_indexed(file_id, {"width": 4000, "height": 3000, "format": "JPEG"})
            ids.append(file_id)
        vectors = rng.standard_normal((len(ids), dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        store.add(np.array(ids, np.int64), vectors)
        store.flush()  # durable before the catalog says "indexed", as the indexer does
        catalog.commit()
    catalog.set_meta("last_indexed_at", str(time.time()))
    store.close()
    catalog.close()


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = np.sort(np.asarray(values))
    pick = {q: float(np.percentile(ordered, q)) for q in (50, 95, 99)}
    return {"p50_ms": round(pick[50], 2), "p95_ms": round(pick[95], 2), "p99_ms": round(pick[99], 2)}


def in_process(directory: Path, encoder, rounds: int) -> list[float]:
    """Latency of `Library.search` (text encode + matrix product + catalog join), one query at a time."""
    times = []
    with Library.open(directory, encoder=encoder) as lib:
        lib.search(text="warm up", k=20)
        for i in range(rounds):
            start = time.perf_counter()
            lib.search(text=QUERIES[i % len(QUERIES)], k=20)
            times.append((time.perf_counter() - start) * 1000)
    return times


def start_server(directory: Path, port: int, log: Path) -> subprocess.Popen:
    """`serve()` in a child process, rate limits out of the way; returns once /api/health answers."""
    code = (
        "from pixquery.server.run import serve; from pixquery.server.limits import Limits; "
        f"serve({str(directory)!r}, port={port}, warm_thumbs=0, "
        "limits=Limits(search_rate=1e9, search_burst=10**9, media_rate=1e9, media_burst=10**9))"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    with open(log, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the server did not start")


def load(url: str, clients: int, seconds: float) -> tuple[list[float], int, float]:
    """Run `clients` threads for `seconds`; returns (latencies ms, errors, wall seconds)."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    stop = threading.Event()

    def client(n: int) -> None:
        with httpx.Client(base_url=url, timeout=60) as c:
            i = n
            while not stop.is_set():
                start = time.perf_counter()
                response = c.get("/api/search", params={"q": QUERIES[i % len(QUERIES)], "k": 20})
                elapsed = (time.perf_counter() - start) * 1000
                if response.status_code == 200 and len(response.json()["results"]) == 20:
                    latencies[n].append(elapsed)
                else:
                    errors[n] += 1
                i += clients

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    begin = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    wall = time.perf_counter() - begin
    return [x for per in latencies for x in per], sum(errors), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vectors", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--model", default="conse")
    parser.add_argument("--inprocess-rounds", type=int, default=100)
    args = parser.parse_args()

    encoder = load_encoder(args.model)
    with tempfile.TemporaryDirectory(prefix="pixquery-serve-load-") as tmp:
        directory = Path(tmp) / "index"
        directory.mkdir()
        start = time.perf_counter()
        build_index(directory, args.vectors, encoder.name, int(encoder.dim))
        print(f"built a {args.vectors}-vector index (dim {encoder.dim}) in {time.perf_counter() - start:.1f} s")

        local = in_process(directory, encoder, args.inprocess_rounds)
        local_stats = percentiles(local)
        print(f"in-process search: p50 {local_stats['p50_ms']} ms, p95 {local_stats['p95_ms']} ms")

        port = free_port()
        server = start_server(directory, port, Path(tmp) / "server.log")
        try:
            url = f"http://127.0.0.1:{port}"
            load(url, 2, 1.0)  # warm-up: connections, first requests
            latencies, errors, wall = load(url, args.clients, args.seconds)
        finally:
            server.terminate()
            server.wait(timeout=30)

    stats = percentiles(latencies) if latencies else {"p50_ms": None, "p95_ms": None, "p99_ms": None}
    qps = len(latencies) / wall
    print(f"HTTP, {args.clients} clients x {args.seconds:g} s: {len(latencies)} searches, {qps:.1f} queries/s, "
          f"p50 {stats['p50_ms']} ms, p95 {stats['p95_ms']} ms, p99 {stats['p99_ms']} ms, {errors} errors")
    result = {
        "qps": round(qps, 2),
        **stats,
        "inprocess_p50_ms": local_stats["p50_ms"],
        "inprocess_p95_ms": local_stats["p95_ms"],
        "inprocess_mean_ms": round(statistics.fmean(local), 2),
        "requests": len(latencies),
        "errors": errors,
        "clients": args.clients,
        "seconds": args.seconds,
        "vectors": args.vectors,
        "dim": int(encoder.dim),
        "model": args.model,
        "cpus": os.cpu_count(),
        "loadavg_1min": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
