"""The page's organising views over HTTP: how long clusters and duplicate groups take to make, what a cached
answer costs, and whether the server keeps answering while they are made.

An index of the first `--n` images under `--photos` (default: the photos the package ships) is built with `--model`
(default conse), a server is started on a loopback port, and then, for clusters and for duplicates: POST starts a
run, GET is polled until it is done (the run's own `took_s` and the wall time to done are reported), and a second
POST + GET (the result kept for the index version) is timed. While each run works, /api/health and a text search
are timed and compared with the same requests on the idle server, alternating, in the same run (ratios, since the
machine is shared). Browsing a page (`/api/browse`, k=60) is timed against a search page.

    python benchmarks/server_views.py [--photos DIR] [--n 300] [--model conse]

Real photos: the package's `pixquery/data/demo_photos` (21), or e.g. `git clone
https://github.com/EliSchwartz/imagenet-sample-images` (1,000 ImageNet JPEGs) and `--photos` that folder.
The first run of a model names clusters from its vocabulary, embedded once and cached (`texts` in the progress):
that run is slower than the next ones. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pixquery.api import Library  # noqa: E402
from pixquery.media.discover import discover  # noqa: E402
from pixquery.server.app import create_app  # noqa: E402
from pixquery.server.limits import Limits  # noqa: E402
from pixquery.server.run import BackgroundServer  # noqa: E402

DEMO_PHOTOS = Path(__file__).resolve().parents[1] / "pixquery" / "data" / "demo_photos"


def timed_ms(c: httpx.Client, method: str, path: str, **kwargs: object) -> float:
    start = time.perf_counter()
    response = c.request(method, path, **kwargs)
    response.raise_for_status()
    return (time.perf_counter() - start) * 1000


def probe(c: httpx.Client, stop: threading.Event, out: dict[str, list[float]]) -> None:
    """Health and search latencies, alternating, until `stop`."""
    while not stop.is_set():
        out["health"].append(timed_ms(c, "GET", "/api/health"))
        out["search"].append(timed_ms(c, "GET", "/api/search", params={"q": "a dog", "k": 20}))


def idle_probe(c: httpx.Client, n: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"health": [], "search": []}
    for _ in range(n):
        out["health"].append(timed_ms(c, "GET", "/api/health"))
        out["search"].append(timed_ms(c, "GET", "/api/search", params={"q": "a dog", "k": 20}))
    return out


def organise(c: httpx.Client, kind: str) -> dict[str, float | int | bool | None]:
    """Start a run, poll it to the end while probing the server; then time the kept result."""
    busy: dict[str, list[float]] = {"health": [], "search": []}
    stop = threading.Event()
    with httpx.Client(base_url=str(c.base_url), timeout=120) as other:
        prober = threading.Thread(target=probe, args=(other, stop, busy))
        start = time.perf_counter()
        c.post(f"/api/{kind}").raise_for_status()
        prober.start()
        stages = set()
        while (state := c.get(f"/api/{kind}").json())["state"] in ("queued", "running"):
            if state["progress"]:
                stages.add(state["progress"]["stage"])
            time.sleep(0.1)
        wall = time.perf_counter() - start
        stop.set()
        prober.join()
    if state["state"] != "done":
        raise RuntimeError(f"{kind} failed: {state['error']}")
    again_start = time.perf_counter()
    again = c.post(f"/api/{kind}").json()
    kept = c.get(f"/api/{kind}").json()
    kept_ms = (time.perf_counter() - again_start) * 1000
    idle = idle_probe(c, max(5, len(busy["health"])))
    med = statistics.median
    return {
        "run_s": state["took_s"],
        "wall_to_done_s": round(wall, 2),
        "kept_post_get_ms": round(kept_ms, 1),
        "kept_not_rerun": again["started_at"] == state["started_at"] and kept["state"] == "done",
        "stages": sorted(stages),
        "health_ms_idle": round(med(idle["health"]), 2),
        "health_ms_busy": round(med(busy["health"]), 2) if busy["health"] else None,
        "search_ms_idle": round(med(idle["search"]), 2),
        "search_ms_busy": round(med(busy["search"]), 2) if busy["search"] else None,
        "probes_while_busy": len(busy["health"]),
    }


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=DEMO_PHOTOS)
    parser.add_argument("--n", type=int, default=300, help="images to index (the first N found)")
    parser.add_argument("--model", default="conse")
    args = parser.parse_args()

    files = discover([args.photos]).files[: args.n]
    with tempfile.TemporaryDirectory() as tmp:
        gallery = Path(tmp) / "photos"
        gallery.mkdir()
        for i, path in enumerate(files):
            shutil.copyfile(path, gallery / f"{i:05d}-{path.name}")
        start = time.perf_counter()
        with Library.open(Path(tmp) / "index", model=args.model) as lib:
            report = lib.index([gallery]).to_dict()
        index_s = time.perf_counter() - start
        roomy = Limits(search_rate=10_000, search_burst=10_000)  # the probes must not be rate-limited
        app = create_app(Path(tmp) / "index", warm_thumbs=0, limits=roomy)
        with BackgroundServer(app) as server, httpx.Client(base_url=server.url, timeout=120) as c:
            browse = [timed_ms(c, "GET", "/api/browse", params={"k": 60}) for _ in range(15)]
            search = [timed_ms(c, "GET", "/api/search", params={"q": "a dog", "k": 60}) for _ in range(15)]
            clusters = organise(c, "clusters")
            duplicates = organise(c, "duplicates")
            groups = c.get("/api/duplicates").json()["result"]["total"]
            n_clusters = len(c.get("/api/clusters").json()["result"]["clusters"])

    figures = {
        "model": args.model,
        "images": report["embedded"],
        "index_s": round(index_s, 1),
        "browse_page_ms": round(statistics.median(browse), 2),
        "search_page_ms": round(statistics.median(search), 2),
        "clusters": {**clusters, "k": n_clusters},
        "duplicates": {**duplicates, "groups": groups},
        "load_average": round(os.getloadavg()[0], 2),
    }
    for kind in ("clusters", "duplicates"):
        f = figures[kind]
        ratio = f["health_ms_busy"] / f["health_ms_idle"] if f["health_ms_busy"] else float("nan")
        search_ratio = f["search_ms_busy"] / f["search_ms_idle"] if f["search_ms_busy"] else float("nan")
        print(f"{kind}: run {f['run_s']} s (done after {f['wall_to_done_s']} s, stages {f['stages']}); kept result "
              f"{f['kept_post_get_ms']} ms (not rerun: {f['kept_not_rerun']}); while running: health "
              f"{f['health_ms_busy']} ms vs {f['health_ms_idle']} idle (x{ratio:.2f}), search {f['search_ms_busy']} "
              f"ms vs {f['search_ms_idle']} (x{search_ratio:.2f}), {f['probes_while_busy']} probes")
    print(f"{figures['images']} images, {args.model}: browse page {figures['browse_page_ms']} ms vs search page "
          f"{figures['search_page_ms']} ms; {n_clusters} clusters, {groups} duplicate groups; load "
          f"{figures['load_average']}")
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
