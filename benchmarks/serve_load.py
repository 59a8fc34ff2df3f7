"""Load test of the HTTP server: text searches from concurrent clients on loopback, batched against unbatched.

Builds a synthetic index of N random unit vectors (catalog rows written straight through `Catalog.insert` and
`mark_indexed`, vectors through `FlatStore.add`/`flush`; no images), optionally switched to another store
(`--store faiss-hnsw`: the 1M-vector case), then starts the server in a child process (so the clients below do not
share its interpreter lock) and runs C client threads for S seconds, each sending `GET /api/search?q=...&k=20` one
after the other over a kept-alive connection (the standard library's http.client: a light client, so the two
cores go to the server). The server runs alternately with its search batcher (concurrent text searches share one
encoder call and one pass over the vectors; the default) and without it (each search alone, as before batching),
`--rounds` times each, in one run. The same texts are also searched in-process with `Library.search`, one at a
time, for the latency floor.

    python benchmarks/serve_load.py [--vectors 100000] [--clients 8] [--seconds 20] [--model conse]
    python benchmarks/serve_load.py --vectors 1000000 --store faiss-hnsw --index-dir /tmp/serve-1m   # kept, reused

The model only embeds the query texts (its dimension sets the vectors'); the default `conse` loads in seconds and
runs its text tower (MiniLM) with ONNX Runtime, like a CLIP text tower would. The last line printed is one JSON
object: qps, p50_ms, p95_ms, p99_ms (HTTP, end to end, batched), the same for the unbatched server, their ratio,
inprocess_p50_ms, the batcher's mean batch size, errors, the setup and the load average.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # run from a checkout without installing

from pixquery.api import Library  # noqa: E402
from pixquery.layout import IndexLayout  # noqa: E402
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
K = 20

# The server child: the app with or without its batcher, on uvicorn; at exit it reports the batcher's figures.
SERVER = """
import json, os, signal, sys, uvicorn
from pixquery.server.app import create_app
from pixquery.server.limits import Limits
index, port, batch = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
limits = Limits(search_rate=1e9, search_burst=10**9, media_rate=1e9, media_burst=10**9)
app = create_app(index, limits=limits, warm_thumbs=0, batch_searches=batch)
service = app.state.service

def report(*_):
    stats = service.batcher.stats if service.batcher is not None else None
    figures = {"batches": stats.batches, "queries": stats.queries, "largest": stats.largest} if stats else {}
    sys.stderr.write("BATCHER " + json.dumps(figures) + "\\n")
    sys.stderr.flush()
    os._exit(0)

# uvicorn shuts down on SIGTERM, then raises the signal again with the handler it found: this one.
signal.signal(signal.SIGTERM, report)
uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
"""


def build_index(directory: Path, n: int, model: str, dim: int, seed: int = 0) -> None:
    """Write a flat index of `n` random unit vectors with matching catalog rows (fake paths, no image files)."""
    directory.mkdir(parents=True, exist_ok=True)
    IndexConfig(model=model, dim=dim).save(directory)
    layout = IndexLayout(directory)
    catalog = Catalog(layout.catalog)
    store = FlatStore(layout.vectors, dim)
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


def prepare_index(directory: Path, n: int, model: str, dim: int, store: str) -> None:
    """The benchmark index at `directory`: reused when it already holds `n` vectors of this model in `store`."""
    config_path = directory / "config.json"
    if config_path.exists():
        config = IndexConfig.load(directory)
        with Library.open(directory) as lib:
            count = lib.store.count()
        if (config.model, config.dim, config.store, count) == (model, dim, store, n):
            print(f"reusing the {n}-vector {store} index at {directory}")
            return
        raise SystemExit(f"{directory} holds another index ({config.model}, {config.store}, {count} vectors): "
                         "give a new --index-dir")
    start = time.perf_counter()
    build_index(directory, n, model, dim)
    print(f"built a {n}-vector index (dim {dim}) in {time.perf_counter() - start:.1f} s")
    if store != "flat":
        start = time.perf_counter()
        with Library.open(directory) as lib:
            lib.set_store(store)
        print(f"built its {store} store in {time.perf_counter() - start:.1f} s")


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None}
    ordered = np.sort(np.asarray(values))
    pick = {q: float(np.percentile(ordered, q)) for q in (50, 95, 99)}
    return {"p50_ms": round(pick[50], 2), "p95_ms": round(pick[95], 2), "p99_ms": round(pick[99], 2)}


def in_process(directory: Path, encoder, rounds: int) -> list[float]:
    """Latency of `Library.search` (text encode + vector search + catalog join), one query at a time."""
    times = []
    with Library.open(directory, encoder=encoder) as lib:
        lib.search(text="warm up", k=K)
        for i in range(rounds):
            start = time.perf_counter()
            lib.search(text=QUERIES[i % len(QUERIES)], k=K)
            times.append((time.perf_counter() - start) * 1000)
    return times


def start_server(directory: Path, port: int, batch: bool, log: Path) -> subprocess.Popen:
    """The server in a child process, rate limits out of the way; returns once /api/health answers."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    with open(log, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-c", SERVER, str(directory), str(port), "1" if batch else "0"],
                                env=env, stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited: {log.read_text()[-2000:]}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            connection.request("GET", "/api/health")
            if connection.getresponse().status == 200:
                return proc
        except OSError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the server did not start")


def stop_server(proc: subprocess.Popen, log: Path) -> dict:
    """Stop the child (SIGTERM: uvicorn shuts down cleanly) and read the batcher's figures from its log."""
    proc.terminate()
    proc.wait(timeout=60)
    lines = [line for line in log.read_text().splitlines() if line.startswith("BATCHER ")]
    return json.loads(lines[-1][len("BATCHER "):]) if lines else {}


def load(port: int, clients: int, seconds: float) -> tuple[list[float], int, float]:
    """Run `clients` threads for `seconds`; returns (latencies ms, errors, wall seconds)."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    stop = threading.Event()

    def client(n: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        i = n
        while not stop.is_set():
            path = "/api/search?" + urlencode({"q": QUERIES[i % len(QUERIES)], "k": K})
            start = time.perf_counter()
            try:
                connection.request("GET", path)
                response = connection.getresponse()
                body = response.read()
                elapsed = (time.perf_counter() - start) * 1000
                if response.status == 200 and len(json.loads(body)["results"]) == K:
                    latencies[n].append(elapsed)
                else:
                    errors[n] += 1
            except (OSError, http.client.HTTPException):
                errors[n] += 1
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            i += clients
        connection.close()

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


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used (Linux /proc), threads included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def serve_round(directory: Path, batch: bool, clients: int, seconds: float, log: Path) -> dict:
    """One server start, a warm-up, and `seconds` of load: qps, percentiles, errors, the batcher's figures, and
    the server's CPU time per request (what a request costs, whatever else the machine is doing)."""
    port = free_port()
    server = start_server(directory, port, batch, log)
    try:
        load(port, 2, 2.0)  # warm-up: connections, first requests, page cache of the vectors
        cpu_before, client_before = cpu_seconds(server.pid), time.process_time()
        latencies, errors, wall = load(port, clients, seconds)
        cpu = cpu_seconds(server.pid) - cpu_before
        client_cpu = time.process_time() - client_before
    finally:
        batcher = stop_server(server, log)
    served = max(1, len(latencies) + errors)
    figures = {"qps": round(len(latencies) / wall, 2), **percentiles(latencies), "requests": len(latencies),
               "errors": errors, "server_cpu_ms_per_request": round(cpu * 1e3 / served, 2),
               "client_cpu_ms_per_request": round(client_cpu * 1e3 / served, 2)}
    if batcher.get("batches"):
        figures["mean_batch"] = round(batcher["queries"] / batcher["batches"], 2)
        figures["largest_batch"] = batcher["largest"]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vectors", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=2, help="batched / unbatched servers, alternating, each")
    parser.add_argument("--model", default="conse")
    parser.add_argument("--store", default="flat", help="flat (exact) or faiss-hnsw (for 1M vectors)")
    parser.add_argument("--index-dir", type=Path, default=None, help="keep the index here and reuse it next time")
    parser.add_argument("--inprocess-rounds", type=int, default=100)
    args = parser.parse_args()

    encoder = load_encoder(args.model)
    with tempfile.TemporaryDirectory(prefix="pixquery-serve-load-") as tmp:
        directory = args.index_dir or Path(tmp) / "index"
        prepare_index(directory, args.vectors, encoder.name, int(encoder.dim), args.store)

        local = in_process(directory, encoder, args.inprocess_rounds)
        local_stats = percentiles(local)
        print(f"in-process search, one at a time: p50 {local_stats['p50_ms']} ms, p95 {local_stats['p95_ms']} ms")

        runs: dict[str, list[dict]] = {"batched": [], "unbatched": []}
        for round_ in range(args.rounds):
            for mode in ("unbatched", "batched") if round_ % 2 == 0 else ("batched", "unbatched"):
                figures = serve_round(directory, mode == "batched", args.clients, args.seconds,
                                      Path(tmp) / f"server-{mode}-{round_}.log")
                runs[mode].append(figures)
                print(f"{mode:>9}, {args.clients} clients x {args.seconds:g} s: {figures['qps']} queries/s, "
                      f"p50 {figures['p50_ms']} ms, p95 {figures['p95_ms']} ms, p99 {figures['p99_ms']} ms, "
                      f"{figures['errors']} errors, server CPU {figures['server_cpu_ms_per_request']} ms/request"
                      + (f", mean batch {figures['mean_batch']}" if "mean_batch" in figures else "")
                      + f"  (load {os.getloadavg()[0]:.1f})", flush=True)

    def best(mode: str) -> dict:
        return max(runs[mode], key=lambda f: f["qps"])

    batched, unbatched = best("batched"), best("unbatched")
    result = {
        "qps": batched["qps"],
        "p50_ms": batched["p50_ms"],
        "p95_ms": batched["p95_ms"],
        "p99_ms": batched["p99_ms"],
        "mean_batch": batched.get("mean_batch"),
        "unbatched_qps": unbatched["qps"],
        "unbatched_p50_ms": unbatched["p50_ms"],
        "unbatched_p99_ms": unbatched["p99_ms"],
        "qps_ratio": round(batched["qps"] / unbatched["qps"], 2) if unbatched["qps"] else None,
        "server_cpu_ms_per_request": batched["server_cpu_ms_per_request"],
        "unbatched_server_cpu_ms_per_request": unbatched["server_cpu_ms_per_request"],
        "client_cpu_ms_per_request": batched["client_cpu_ms_per_request"],
        "all_rounds": runs,
        "inprocess_p50_ms": local_stats["p50_ms"],
        "inprocess_p95_ms": local_stats["p95_ms"],
        "inprocess_mean_ms": round(statistics.fmean(local), 2),
        "errors": sum(f["errors"] for per in runs.values() for f in per),
        "clients": args.clients,
        "seconds": args.seconds,
        "vectors": args.vectors,
        "store": args.store,
        "dim": int(encoder.dim),
        "model": args.model,
        "precision": encoder.precision,
        "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    print(f"batched {result['qps']} queries/s (p99 {result['p99_ms']} ms) vs unbatched {result['unbatched_qps']} "
          f"(p99 {result['unbatched_p99_ms']} ms): x{result['qps_ratio']}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
