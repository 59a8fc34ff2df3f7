"""The API of the page's views over a real loopback socket: browsing without a query, tags, clusters and duplicate
groups made in the background and kept per index version, the status's not-images / unreadable counts, auth,
OpenAPI, and bad input (always a 4xx naming the field, never a 5xx)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_fixtures import ServerCase, live_server, server_case  # noqa: F401

from pixquery.api import Library
from pixquery.errors import PixqueryError
from pixquery.server.app import create_app
from pixquery.server.organizing import Organizer
from pixquery.server.run import BackgroundServer

pytest.importorskip("fastapi")


@pytest.fixture(scope="module")
def client(live_server: BackgroundServer) -> Iterator[httpx.Client]:  # noqa: F811
    with httpx.Client(base_url=live_server.url, timeout=60) as c:
        yield c


@pytest.fixture()
def fresh(server_case: ServerCase) -> Iterator[httpx.Client]:  # noqa: F811
    """A server of its own on the shared index: no organising run made yet."""
    app = create_app(server_case.index_dir, warm_up=False, warm_thumbs=0)
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


def indexed(case: ServerCase) -> list[Any]:
    with Library.open(case.index_dir) as lib:
        return [r for r in lib.catalog.all_files() if r.status == "indexed"]


def wait_done(c: httpx.Client, kind: str, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data = c.get(f"/api/{kind}").json()
        if data["state"] not in ("queued", "running"):
            return data
        time.sleep(0.2)
    raise AssertionError(f"{kind} did not finish")


def ids(data: dict[str, Any]) -> list[int]:
    return [r["id"] for r in data["results"]]


# --- browsing ---------------------------------------------------------------------------------------------------


def test_browse_shows_every_indexed_image_newest_taken_first(client: httpx.Client, server_case: ServerCase) -> None:  # noqa: F811
    rows = indexed(server_case)
    data = client.get("/api/browse", params={"k": 500}).json()
    assert data["count"] == len(rows) and data["more"] is False and data["offset"] == 0
    assert set(ids(data)) == {r.id for r in rows}  # no README, no unreadable file, no duplicates
    dated = sorted(server_case.extra["dated"].items(), key=lambda item: item[1], reverse=True)
    names = [r["name"] for r in data["results"]]
    assert names[: len(dated)] == [name for name, _ in dated]
    assert [r["taken_at"][:10] for r in data["results"][: len(dated)]] == [d for _, d in dated]
    first = data["results"][0]
    assert first["thumb"].startswith(f"/api/thumb/{first['id']}?v=") and first["folder"] and "score" not in first
    assert client.get(first["thumb"]).status_code == 200

    added = client.get("/api/browse", params={"k": 500, "sort": "added"}).json()
    assert ids(added) == sorted((r.id for r in rows), reverse=True)


def test_browse_pages_and_filters(client: httpx.Client, server_case: ServerCase) -> None:  # noqa: F811
    whole = ids(client.get("/api/browse", params={"k": 20}).json())
    first = client.get("/api/browse", params={"k": 10}).json()
    second = client.get("/api/browse", params={"k": 10, "offset": 10}).json()
    assert first["more"] is True and ids(first) + ids(second) == whole

    folder = str(server_case.filter_folder)
    inside = client.get("/api/browse", params={"folder": folder, "k": 500}).json()
    assert inside["count"] > 0 and {r["folder"] for r in inside["results"]} == {folder}
    assert set(ids(inside)) == {r.id for r in indexed(server_case) if r.folder == folder}

    recent = client.get("/api/browse", params={"date_from": "2020"}).json()
    assert [r["name"] for r in recent["results"]] == [n for n, d in server_case.extra["dated"].items() if d >= "2020"]
    assert client.get("/api/browse", params={"date_to": "1999"}).json()["results"] == []

    tag, count = next(iter(server_case.extra["tags"].items()))
    tagged = client.get("/api/browse", params={"tag": tag, "k": 500}).json()
    with Library.open(server_case.index_dir) as lib:
        carrying = {i for i, tags in lib.catalog.read_tags().items() if any(t.label == tag for t in tags)}
    assert tagged["count"] == count and set(ids(tagged)) == carrying
    assert client.get("/api/browse", params={"tag": "no such tag"}).json()["results"] == []


@pytest.mark.parametrize(("params", "field"), [
    ({"sort": "score"}, "sort"),
    ({"k": 0}, "k"),
    ({"k": 501}, "k"),
    ({"offset": -1}, "offset"),
    ({"offset": "x"}, "offset"),
    ({"date_from": "2021-13"}, "date_from"),
    ({"date_to": "yesterday"}, "date_to"),
    ({"tag": "x" * 5000}, "tag"),
])
def test_bad_browse_parameters_are_422_naming_the_field(client: httpx.Client, params: dict, field: str) -> None:
    response = client.get("/api/browse", params=params)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["field"] == field and body["detail"], body


def test_tags_count_the_stored_tags(client: httpx.Client, server_case: ServerCase) -> None:  # noqa: F811
    data = client.get("/api/tags").json()
    assert {t["tag"]: t["count"] for t in data["tags"]} == server_case.extra["tags"]
    assert data["count"] == len(server_case.extra["tags"])
    counts = [t["count"] for t in data["tags"]]
    assert counts == sorted(counts, reverse=True)


def test_status_counts_not_images_apart_from_unreadable(client: httpx.Client, server_case: ServerCase) -> None:  # noqa: F811
    index = client.get("/api/status").json()["index"]
    assert index["not_images"] == server_case.extra["not_images"]  # README.md, a text file named letter.jpg
    assert index["unreadable"] == server_case.extra["unreadable"]  # a truncated JPEG
    assert index["not_images"] + index["unreadable"] == index["errors"] + index["skipped"]


# --- organising: clusters and duplicates, in the background ----------------------------------------------------------


def test_clusters_are_made_in_the_background_and_kept(fresh: httpx.Client, server_case: ServerCase) -> None:  # noqa: F811
    idle = fresh.get("/api/clusters").json()
    assert idle["state"] == "idle" and idle["result"] is None
    not_yet = fresh.get("/api/clusters/0")
    assert not_yet.status_code == 409 and not_yet.json()["error"] == "not_ready"

    started = fresh.post("/api/clusters")
    assert started.status_code == 202
    assert started.json()["state"] in ("queued", "running")  # the request did not wait for the clustering
    assert started.json()["params"] == {"k": "auto", "method": "kmeans"}
    assert fresh.get("/api/health").status_code == 200  # the server answers while it runs
    done = wait_done(fresh, "clusters")
    assert done["state"] == "done" and done["current"] is True and done["error"] is None, done
    result = done["result"]
    rows = indexed(server_case)
    assert result["images"] == len(rows) and result["k"] == len(result["clusters"]) >= 2
    assert sum(c["size"] for c in result["clusters"]) + result["unclustered"] == len(rows)
    sizes = [c["size"] for c in result["clusters"]]
    assert sizes == sorted(sizes, reverse=True)
    for cluster in result["clusters"]:
        assert cluster["name"].strip() and cluster["representatives"] and "members" not in cluster
        assert all(r["thumb"].startswith(f"/api/thumb/{r['id']}?v=") for r in cluster["representatives"])
    assert len({c["name"] for c in result["clusters"]}) == len(result["clusters"])  # each named differently

    # Members, a page at a time, cover the cluster.
    biggest = result["clusters"][0]
    seen: list[int] = []
    while True:
        page = fresh.get(f"/api/clusters/{biggest['id']}", params={"k": 2, "offset": len(seen)}).json()
        assert page["cluster"]["name"] == biggest["name"]
        seen += ids(page)
        if not page["more"]:
            break
    assert len(seen) == len(set(seen)) == biggest["size"]
    assert {r["id"] for r in biggest["representatives"]} <= set(seen)
    assert fresh.get("/api/clusters/999999").status_code == 404

    # Asked again for the same index: the run made is kept, not redone.
    again = fresh.post("/api/clusters").json()
    assert again["state"] == "done" and again["started_at"] == done["started_at"]
    three = fresh.post("/api/clusters", params={"k": "3"}).json()
    assert three["params"]["k"] == 3 and three["started_at"] != done["started_at"]
    assert len(wait_done(fresh, "clusters")["result"]["clusters"]) == 3


@pytest.mark.parametrize(("params", "field"), [({"k": "1"}, "k"), ({"k": "many"}, "k"), ({"k": "101"}, "k"),
                                               ({"method": "spectral"}, "method")])
def test_bad_cluster_parameters_are_422(client: httpx.Client, params: dict, field: str) -> None:
    response = client.post("/api/clusters", params=params)
    assert response.status_code == 422 and response.json()["field"] == field, response.text


def test_duplicates_are_a_review_list_and_touch_nothing(fresh: httpx.Client, server_case: ServerCase) -> None:  # noqa: F811
    before = {p: p.stat().st_mtime_ns for p in server_case.gallery.rglob("*") if p.is_file()}
    assert fresh.get("/api/duplicates").json()["state"] == "idle"
    assert fresh.post("/api/duplicates").status_code == 202
    done = wait_done(fresh, "duplicates")
    assert done["state"] == "done" and done["current"] is True, done
    result = done["result"]
    assert result["total"] >= 1 and result["offset"] == 0
    by_id = {r.id: r for r in indexed(server_case)}
    source, copy = server_case.extra["source"], server_case.extra["copy"]
    holding = [g for g in result["groups"] if {str(source), str(copy)} <= {m["path"] for m in g["members"]}]
    assert len(holding) == 1 and "exact" in holding[0]["kinds"]
    for group in result["groups"]:
        keepers = [m for m in group["members"] if m["keeper"]]
        assert len(keepers) == 1 and keepers[0]["id"] == group["keeper"]["id"] and group["reason"]
        for m in group["members"]:
            row = by_id[m["id"]]
            assert (m["width"], m["height"], m["bytes"]) == (row.width, row.height, row.size)
            assert m["thumb"].startswith(f"/api/thumb/{m['id']}?v=") and m["name"] == Path(row.path).name
    if result["total"] > 1:
        second = fresh.get("/api/duplicates", params={"k": 1, "offset": 1}).json()["result"]
        assert second["count"] == 1 and second["groups"][0]["keeper"] == result["groups"][1]["keeper"]
    assert {p: p.stat().st_mtime_ns for p in server_case.gallery.rglob("*") if p.is_file()} == before


def test_a_new_index_version_makes_results_not_current(fresh: httpx.Client, server_case: ServerCase) -> None:  # noqa: F811
    fresh.post("/api/duplicates")
    made = wait_done(fresh, "duplicates")
    assert made["current"] is True
    with Library.open(server_case.index_dir) as lib:  # nothing changed on disk, but an indexing run finished
        report = lib.index([server_case.gallery], workers=1)
    assert report.to_dict()["embedded"] == 0
    stale = fresh.get("/api/duplicates").json()
    assert stale["state"] == "done" and stale["current"] is False and stale["result"] is not None
    redo = fresh.post("/api/duplicates").json()
    assert redo["started_at"] != made["started_at"] or redo["state"] in ("queued", "running")
    assert wait_done(fresh, "duplicates")["current"] is True


# --- the API around the views --------------------------------------------------------------------------------------


def test_view_routes_are_documented_with_their_answers(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    for path, methods in {"/api/browse": {"get"}, "/api/tags": {"get"}, "/api/clusters": {"get", "post"},
                          "/api/clusters/{cluster_id}": {"get"}, "/api/duplicates": {"get", "post"}}.items():
        assert methods <= set(paths[path]), path
        for method in methods:
            answers = set(paths[path][method]["responses"])
            assert {"401", "422", "429"} <= answers, (path, method, answers)
            assert ("202" if method == "post" else "200") in answers
    assert {"404", "409"} <= set(paths["/api/clusters/{cluster_id}"]["get"]["responses"])


def test_view_routes_need_the_token(server_case: ServerCase) -> None:  # noqa: F811
    app = create_app(server_case.index_dir, token="secret", warm_up=False, warm_thumbs=0)
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url) as c:
        for method, path in (("GET", "/api/browse"), ("GET", "/api/tags"), ("GET", "/api/clusters"),
                             ("POST", "/api/clusters"), ("GET", "/api/clusters/0"), ("GET", "/api/duplicates"),
                             ("POST", "/api/duplicates")):
            assert c.request(method, path).status_code == 401, path
        assert c.get("/api/browse", headers={"Authorization": "Bearer secret"}).status_code == 200


def test_junk_input_never_gets_a_5xx(client: httpx.Client) -> None:
    junk = ["", " ", "-1", "1e9", "9" * 40, "../../etc/passwd", "%00", "\u202e", "null", "[]", "{}", "auto"]
    for value in junk:
        for key in ("k", "offset", "sort", "folder", "date_from", "date_to", "tag"):
            response = client.get("/api/browse", params={key: value})
            assert response.status_code < 500, (key, value, response.text)
        for path in ("/api/clusters/", "/api/duplicates?k=", "/api/duplicates?offset="):
            assert client.get(path + value).status_code < 500, (path, value)
        assert client.post("/api/clusters", params={"k": value}).status_code < 500, value


# --- the organiser on its own ----------------------------------------------------------------------------------------


def test_organizer_reports_failures_and_drops_replaced_runs() -> None:
    version = ["1"]
    gate = threading.Event()
    calls: list[dict] = []

    def work(library: Any, params: dict, progress: Any) -> dict:
        calls.append(params)
        if params.get("block"):
            gate.wait(10)
        if params.get("fail"):
            raise PixqueryError("no images to organise")
        progress("fingerprints", 1, 1)
        return {"made": params}

    organizer = Organizer({"x": work}, lambda: contextlib.nullcontext(None), lambda: version[0])
    try:
        first, queued = organizer.start("x", {"block": True})
        assert queued
        organizer.start("x", {"n": 1})  # waits behind the first, then is replaced before it starts
        last, _ = organizer.start("x", {"n": 2})
        gate.set()
        deadline = time.monotonic() + 10
        while last.state != "done" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert last.result == {"made": {"n": 2}} and {"n": 1} not in calls
        assert last.progress == {"stage": "fingerprints", "label": "Fingerprinting images", "unit": "images",
                                 "done": 1, "total": 1}
        run, version_now = organizer.latest("x")
        assert run is last and run.public(version_now)["current"] is True
        version[0] = "2"
        assert organizer.latest("x")[0].public("2")["current"] is False
        failed, _ = organizer.start("x", {"fail": True})
        while failed.state != "failed" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert failed.error == "no images to organise"
        with pytest.raises(ValueError):
            organizer.start("y", {})
    finally:
        organizer.close()
