"""Queries run as one batch (`run_queries`, `Library.query_many`, the server's batcher) answer exactly what each
query answers alone, while sharing one text-encoder call and one vector search per filter."""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from server_fixtures import ServerCase, server_case  # noqa: F401
from test_query_helpers import FakeEncoder, make_index

from pixquery.api import Library
from pixquery.errors import NotFoundError, QueryError
from pixquery.query.engine import QueryOutcome, SearchContext, run_queries, run_query
from pixquery.query.spec import QuerySpec, Rerank, WeightedImage, WeightedText
from pixquery.server.batcher import QueryBatcher
from tests.conftest import write_jpegs


def text_spec(text: str, **fields: object) -> QuerySpec:
    return QuerySpec(texts=[WeightedText(text)], **fields)  # type: ignore[arg-type]


def mixed_specs(folder: str) -> list[QuerySpec]:
    """Every kind of query a batch may hold: plain texts (one repeated), filters, k, cut-offs, negatives in both
    modes, date sort, re-ranking, an image by id, long-text off, and queries that fail on their own."""
    return [
        text_spec("a red circle"),
        text_spec("a blue square", k=5),
        text_spec("a red circle"),
        text_spec("a green star", filters={"folder": folder}),
        text_spec("a blue square", filters={"folder": folder}),
        text_spec("a yellow triangle", cutoff="auto"),
        text_spec("a red circle", cutoff=0.1, sort="date"),
        QuerySpec(texts=[WeightedText("a red circle")], negative_texts=[WeightedText("a blue square")]),
        QuerySpec(texts=[WeightedText("a red circle")], negative_texts=[WeightedText("a green star")],
                  negative_mode="subtract"),
        QuerySpec(texts=[WeightedText("a red circle", 2.0), WeightedText("on grass", 0.5)], k=7),
        text_spec("a red circle", rerank=Rerank(diversity=0.3)),
        text_spec("a red circle", rerank=Rerank(expansion="aqe")),
        text_spec("a red circle", params={"long_text": False}),
        QuerySpec(texts=[WeightedText("the same, but red")], images=[WeightedImage(catalog_id=2)]),
        text_spec("nothing here", filters={"folder": "/no/such/folder"}),
        text_spec("a red circle", filters={"no_such_filter": 1}),  # fails alone: unknown filter
        QuerySpec(texts=[WeightedText("like this")], images=[WeightedImage(catalog_id=10**6)]),  # no such id
    ]


def assert_same(batched: QueryOutcome | Exception, alone: QueryOutcome | Exception, tol: float) -> None:
    if isinstance(alone, Exception):
        assert type(batched) is type(alone) and str(batched) == str(alone)
        return
    assert isinstance(batched, QueryOutcome), batched
    assert [h.id for h in batched.hits] == [h.id for h in alone.hits]
    assert np.allclose([h.score for h in batched.hits], [h.score for h in alone.hits], atol=tol, rtol=0)
    assert (batched.method, batched.matches, batched.notes) == (alone.method, alone.matches, alone.notes)
    assert np.allclose(batched.vector, alone.vector, atol=tol, rtol=0)


def run_alone(spec: QuerySpec, ctx: SearchContext) -> QueryOutcome | Exception:
    try:
        return run_query(spec, ctx)
    except Exception as exc:
        return exc


class CountingStore:
    """Counts `search` calls on a real store (everything else passes through)."""

    def __init__(self, store: object) -> None:
        self.inner = store
        self.searches: list[int] = []

    def search(self, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None = None):
        self.searches.append(len(np.atleast_2d(queries)))
        return self.inner.search(queries, k, allowed_ids)  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def test_a_batch_answers_what_each_query_answers_alone(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    n = 60
    folders = [str(tmp_path / "photos" / ("a" if i % 3 else "b")) for i in range(n)]
    metadata = [{"taken_at": f"2021-{1 + i % 12:02d}-01T10:00:00"} for i in range(n)]
    ctx = make_index(tmp_path, rng.normal(size=(n, 16)), metadata, folders, FakeEncoder(16))
    specs = mixed_specs(str(tmp_path / "photos" / "b"))
    alone_store = CountingStore(ctx.store)
    alone_ctx = SearchContext(ctx.encoder, alone_store, ctx.catalog)  # type: ignore[arg-type]
    alone = [run_alone(spec, alone_ctx) for spec in specs]
    assert isinstance(alone[-2], QueryError) and isinstance(alone[-1], NotFoundError)
    assert alone[-3].hits == []  # type: ignore[union-attr]

    encoder, store = ctx.encoder, CountingStore(ctx.store)
    encoder.text_calls.clear()  # type: ignore[attr-defined]
    batched = run_queries(specs, SearchContext(encoder, store, ctx.catalog))  # type: ignore[arg-type]
    assert len(batched) == len(specs)
    for got, want in zip(batched, alone, strict=True):
        assert_same(got, want, tol=1e-6)

    # The work was shared: one encoder call per long-text setting for every distinct text of the batch, and one
    # search over the stacked distinct vectors of each (filter, k) group; α-QE and the image query search alone.
    # The query with the automatic cut-off is also embedded as a description, in the same call.
    calls = encoder.text_calls  # type: ignore[attr-defined]
    assert len(calls) == 2 and len(calls[0]) == len(set(calls[0])) == 9 and calls[1] == ["a red circle"]
    assert "a photo of a yellow triangle." in calls[0]
    assert store.searches == [3, 1, 2, 1, 1, 1, 1, 1]
    assert len(alone_store.searches) == 15 and set(alone_store.searches) == {1}


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_the_facade_batches_with_a_real_model(tmp_path: Path, precision: str) -> None:
    write_jpegs(tmp_path / "photos" / "one", 24, seed=1)
    write_jpegs(tmp_path / "photos" / "two", 24, seed=2)
    with Library.open(tmp_path / "index", model="mini", precision=precision) as lib:
        assert lib.encoder.precision == precision
        lib.index([tmp_path / "photos"])
        specs = mixed_specs(str(tmp_path / "photos" / "two"))
        alone = []
        for spec in specs:
            try:
                alone.append(lib.query(spec))
            except Exception as exc:
                alone.append(exc)
        batched = lib.query_many(specs)
    for got, want in zip(batched, alone, strict=True):
        # A real text tower run on a batch differs from one run alone only by float rounding (an int8 one embeds
        # each text alone: its activations are quantised over the whole input).
        assert_same(got, want, tol=1e-5)


def test_the_batcher_runs_concurrent_queries_together_and_hands_each_its_own_answer() -> None:
    started = threading.Event()
    release = threading.Event()
    batches: list[list[str]] = []

    def run_batch(specs):
        batches.append([s.texts[0].text for s in specs])
        if len(batches) == 1:  # hold the first batch so that the others queue up behind it
            started.set()
            release.wait(10)
        return [ValueError(s.texts[0].text) if s.texts[0].text == "bad" else
                QueryOutcome([], s.texts[0].text, np.zeros(1)) for s in specs]

    batcher = QueryBatcher(run_batch, runners=1, max_batch=4, max_wait_s=0.0)
    results: dict[str, object] = {}

    def ask(text: str) -> None:
        try:
            results[text] = batcher.submit(text_spec(text)).method
        except ValueError as exc:
            results[text] = f"error {exc}"

    first = threading.Thread(target=ask, args=("first",))
    first.start()
    assert started.wait(10)
    texts = ["bad", *[f"q{i}" for i in range(6)]]
    threads = [threading.Thread(target=ask, args=(t,)) for t in texts]
    for thread in threads:
        thread.start()
    while batcher.pending < len(texts):
        time.sleep(0.01)
    release.set()
    for thread in [first, *threads]:
        thread.join(10)
    batcher.close()
    assert results == {"first": "first", "bad": "error bad", **{t: t for t in texts[1:]}}
    assert batches[0] == ["first"]
    assert [len(b) for b in batches[1:]] == [4, 3]  # the queued queries, in batches of at most max_batch
    assert batcher.stats.largest == 4 and batcher.stats.queries == 8
    with pytest.raises(RuntimeError):
        batcher.submit(text_spec("after close"))


def test_clients_that_come_back_at_different_moments_are_gathered_into_one_batch() -> None:
    # Eight clients that each take a few milliseconds (different each time) to read an answer and ask again, as
    # HTTP clients do: without gathering they drift into smaller batches; the runner waits (at most half a batch's
    # time) for as many as were in the system during the last batch.
    rng = random.Random(0)

    def run_batch(specs):
        time.sleep(0.04)
        return [QueryOutcome([], "sum", np.zeros(1)) for _ in specs]

    batcher = QueryBatcher(run_batch, runners=1, max_batch=32, max_wait_s=0.002)

    def client() -> None:
        for _ in range(12):
            batcher.submit(text_spec("q"))
            time.sleep(rng.uniform(0.0, 0.012))

    threads = [threading.Thread(target=client) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    batcher.close()
    assert batcher.stats.queries == 96
    assert batcher.stats.mean_batch >= 6, batcher.stats  # the first batch may be short; the rest gather all eight


def test_concurrent_http_searches_answer_what_sequential_ones_do(server_case: ServerCase) -> None:  # noqa: F811
    import httpx

    from pixquery.server.app import create_app
    from pixquery.server.limits import Limits
    from pixquery.server.run import BackgroundServer

    folder = str(server_case.filter_folder or server_case.gallery)
    requests = [
        {"q": "a red circle", "k": 10}, {"q": "a photo of a cat", "k": 5}, {"q": "a red circle", "k": 10},
        {"q": "a blue square", "k": 10, "folder": folder}, {"q": "a green star", "k": 10, "cutoff": "auto"},
        {"q": "a red circle", "k": 10, "not": "a blue square"}, {"q": "a star", "k": 3, "offset": 2},
        {"q": "a red circle", "k": 10, "method": "no-such-method"},  # a 422 of its own
    ] * 3
    limits = Limits(search_rate=10_000, search_burst=10_000)
    app = create_app(server_case.index_dir, limits=limits, warm_thumbs=0)
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        sequential = [client.get("/api/search", params=params) for params in requests]
        with ThreadPoolExecutor(8) as pool:
            concurrent = list(pool.map(lambda p: httpx.get(f"{server.url}/api/search", params=p, timeout=60),
                                       requests))
        stats = app.state.service.batcher.stats
    assert stats.queries == 2 * 21  # every valid text search went through the batcher (the 422s never reached it)
    for alone, together in zip(sequential, concurrent, strict=True):
        assert alone.status_code == together.status_code
        if alone.status_code != 200:
            assert alone.json() == together.json()
            continue
        a, b = alone.json(), together.json()
        assert [r["id"] for r in a["results"]] == [r["id"] for r in b["results"]]
        assert np.allclose([r["score"] for r in a["results"]], [r["score"] for r in b["results"]], atol=1e-5)
        assert {k: v for k, v in a.items() if k not in ("results", "took_ms")} == \
            {k: v for k, v in b.items() if k not in ("results", "took_ms")}
