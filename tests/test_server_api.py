"""The HTTP API over a real loopback socket: every endpoint, auth, limits, malformed input, path traversal, and
searches running while a background re-index changes the index."""

from __future__ import annotations

import http.client
import io
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from server_fixtures import ServerCase, build_case, live_server, png_bytes, server_case  # noqa: F401

from pixquery.api import Library, covering_roots
from pixquery.errors import IndexFormatError
from pixquery.server.app import create_app
from pixquery.server.limits import ApiError, Limits, RateLimiter
from pixquery.server.run import BackgroundServer, free_port
from pixquery.server.thumbs import BROWSER_FORMATS

pytest.importorskip("fastapi")


@pytest.fixture(scope="module")
def client(live_server: BackgroundServer) -> Iterator[httpx.Client]:  # noqa: F811
    with httpx.Client(base_url=live_server.url, timeout=60) as c:
        yield c


def catalog_id(case: ServerCase, path: Path) -> int:
    with Library.open(case.index_dir) as lib:
        row = lib.catalog.by_path(str(path))
    assert row is not None, path
    return row.id


def names(data: dict) -> list[str]:
    return [r["name"] for r in data["results"]]


def assert_well_formed(data: dict, k: int | None = None) -> None:
    results = data["results"]
    assert isinstance(results, list) and data["count"] == len(results)
    if k is not None:
        assert len(results) <= k
    scores = [r["score"] for r in results]
    assert scores == sorted(scores, reverse=True)
    assert len({r["id"] for r in results}) == len(results)
    for r in results:
        assert isinstance(r["id"], int) and r["id"] > 0
        assert r["thumb"].startswith(f"/api/thumb/{r['id']}?v=") and r["image"].startswith(f"/api/image/{r['id']}?v=")
        assert r["name"] and r["folder"]


# --- basics -----------------------------------------------------------------------------------------------------


def test_health_and_openapi(client: httpx.Client) -> None:
    health = client.get("/api/health").json()
    assert health["ok"] is True and health["auth"] is False
    spec = client.get("/openapi.json").json()
    for path in ("/api/search", "/api/similar/{file_id}", "/api/thumb/{file_id}", "/api/image/{file_id}",
                 "/api/item/{file_id}", "/api/status", "/api/reindex", "/api/health"):
        assert path in spec["paths"], path
    assert {"get", "post"} <= set(spec["paths"]["/api/search"])
    assert {"post", "delete"} <= set(spec["paths"]["/api/reindex"])


def test_status_reports_counts_without_server_paths(client: httpx.Client, server_case: ServerCase) -> None:  # noqa: F811
    response = client.get("/api/status")
    assert response.status_code == 200
    data = response.json()
    index = data["index"]
    assert index["model"] == server_case.model
    assert index["indexed"] == index["vectors"] > 0
    assert isinstance(index["errors"], int) and isinstance(index["skipped"], int)
    assert data["reindex"]["state"] == "idle"
    assert data["limits"]["max_k"] == 500
    assert "auto" in data["methods"] and "weighted" in data["methods"]
    assert str(server_case.index_dir) not in response.text
    assert str(server_case.gallery) not in response.text


def test_page_shell_and_static_files(client: httpx.Client) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert '<script src="/static/app.js"' in page.text and "http" not in page.text.split("<body>")[1].lower()
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for name, kind in (("app.js", "javascript"), ("style.css", "text/css"), ("icon.svg", "image/svg")):
        response = client.get(f"/static/{name}")
        assert response.status_code == 200 and kind in response.headers["content-type"]
    assert client.get("/static/index.html").status_code == 404  # only the listed files are served
    assert client.get("/static/../app.py").status_code == 404


# --- searching --------------------------------------------------------------------------------------------------


def test_text_search_ranks_the_right_images_first(client: httpx.Client, server_case: ServerCase) -> None:  # noqa: F811
    response = client.get("/api/search", params={"q": server_case.text_query, "k": 5})
    assert response.status_code == 200
    data = response.json()
    assert_well_formed(data, 5)
    assert data["count"] == 5 and data["offset"] == 0 and data["took_ms"] >= 0
    if server_case.meaningful:
        assert server_case.relevant(data["results"][0]["name"]), names(data)


def test_paging_continues_the_ranking(client: httpx.Client, server_case: ServerCase) -> None:  # noqa: F811
    full = client.get("/api/search", params={"q": server_case.text_query, "k": 12}).json()
    page2 = client.get("/api/search", params={"q": server_case.text_query, "k": 6, "offset": 6}).json()
    assert page2["offset"] == 6 and page2["count"] == 6
    assert [r["id"] for r in page2["results"]] == [r["id"] for r in full["results"][6:12]]
    assert full["more"] is True


def test_cutoff_returns_a_subset_and_can_return_nothing(client: httpx.Client, server_case: ServerCase) -> None:  # noqa: F811
    q = server_case.text_query
    everything = client.get("/api/search", params={"q": q, "k": 40}).json()
    auto = client.get("/api/search", params={"q": q, "k": 40, "cutoff": "auto"}).json()
    assert_well_formed(auto)
    assert {r["id"] for r in auto["results"]} <= {r["id"] for r in everything["results"]}
    assert auto["count"] < everything["count"]
    none = client.get("/api/search", params={"q": q, "cutoff": "1.5"}).json()  # cosine never exceeds 1
    assert none["results"] == [] and none["more"] is False
    bad = client.get("/api/search", params={"q": q, "cutoff": "sometimes"})
    assert bad.status_code == 422 and bad.json()["field"] == "cutoff"


def test_negatives_move_the_query(client: httpx.Client, server_case: ServerCase) -> None:  # noqa: F811
    q = server_case.text_query
    plain = client.get("/api/search", params={"q": q, "k": 10}).json()
    without = client.get("/api/search", params=[("q", q), ("k", "10"), ("not", q), ("not", "text")]).json()
    assert_well_formed(without, 10)
    assert [r["score"] for r in without["results"]] != [r["score"] for r in plain["results"]]


def test_folder_and_date_filters(client: httpx.Client, server_case: ServerCase) -> None:  # noqa: F811
    folder = str(server_case.filter_folder)
    data = client.get("/api/search", params={"q": server_case.text_query, "folder": folder, "k": 50}).json()
    assert data["count"] > 0
    assert all(r["folder"] == folder or r["folder"].startswith(folder + "/") for r in data["results"])
    future = client.get("/api/search", params={"q": server_case.text_query, "date_from": "2999-01-01"}).json()
    assert future["results"] == []
    bad = client.get("/api/search", params={"q": "x", "date_from": "2021-13"})
    assert bad.status_code == 422 and bad.json()["field"] == "date_from"


def test_unknown_method_and_bad_parameters_are_422_with_the_field(client: httpx.Client) -> None:
    cases = [
        ({"q": "x", "method": "telepathy"}, "method"),
        ({"q": "x", "alpha": "1.5"}, "alpha"),
        ({"q": "x", "k": "ten"}, "k"),
        ({"q": "x", "k": "0"}, "k"),
        ({"q": "x", "sort": "colour"}, "sort"),
        ({}, "q"),
    ]
    for params, field in cases:
        response = client.get("/api/search", params=params)
        assert response.status_code == 422, params
        body = response.json()
        assert body["field"] == field, (params, body)
        assert body["detail"]


def test_post_json_spec_matches_get(client: httpx.Client, server_case: ServerCase) -> None:  # noqa: F811
    q = server_case.text_query
    via_get = client.get("/api/search", params={"q": q, "k": 8}).json()
    via_post = client.post("/api/search", json={"texts": [q], "k": 8}).json()
    assert [r["id"] for r in via_post["results"]] == [r["id"] for r in via_get["results"]]
    paged = client.post("/api/search", json={"texts": [q], "k": 4, "offset": 4}).json()
    assert [r["id"] for r in paged["results"]] == [r["id"] for r in via_get["results"][4:8]]


def test_post_json_errors_name_the_field(client: httpx.Client, server_case: ServerCase) -> None:  # noqa: F811
    cases = [
        ({"texts": ["x"], "k": "ten"}, "k"),
        ({"texts": ["x"], "k": 501}, "k"),
        ({"texts": [{"text": "x", "weight": "heavy"}]}, "texts[0].weight"),
        ({"texts": ["x"], "colour": "red"}, "query"),
        ({"texts": ["x"], "method": "nope"}, "method"),
        ({"texts": ["x"], "filters": {"mood": "happy"}}, "filters.mood"),
        ({"images": [{"path": "/etc/passwd"}]}, "images[0]"),
        ({"images": ["../../etc/passwd"]}, "images[0]"),
        ({"texts": ["x"], "offset": "2"}, "offset"),
        ([1, 2], "body"),
    ]
    for body, field in cases:
        response = client.post("/api/search", json=body)
        assert response.status_code == 422, body
        assert response.json()["field"] == field, (body, response.json())
    for raw in (b"{not json", b"", b'{"texts": ["x"]', "{\"texts\": [\"\u00e9\"]}".encode("latin-1")):
        response = client.post("/api/search", content=raw, headers={"content-type": "application/json"})
        assert response.status_code == 422 and response.json()["field"] == "body", raw
    wrong_type = client.post("/api/search", content=b"q=x", headers={"content-type": "text/plain"})
    assert wrong_type.status_code == 415


def test_catalog_image_in_a_json_spec(client: httpx.Client, server_case: ServerCase) -> None:  # noqa: F811
    file_id = catalog_id(server_case, server_case.example_image)
    data = client.post("/api/search", json={"images": [{"id": file_id}], "k": 3}).json()
    assert data["results"][0]["id"] == file_id
    missing = client.post("/api/search", json={"images": [{"id": 10**9}]})
    assert missing.status_code == 404


# --- uploads ----------------------------------------------------------------------------------------------------


def test_upload_finds_similar_images(client: httpx.Client, server_case: ServerCase) -> None:  # noqa: F811
    example = server_case.example_image
    response = client.post(
        "/api/search", files={"image": (example.name, example.read_bytes(), "image/jpeg")}, data={"k": "5"}
    )
    assert response.status_code == 200
    data = response.json()
    assert_well_formed(data, 5)
    assert data["results"][0]["name"] == example.name  # the same photo is its own best match
    if server_case.meaningful:
        assert all(server_case.example_relevant(n) for n in names(data)[:2]), names(data)


def test_composed_upload_follows_the_weight_slider(client: httpx.Client, server_case: ServerCase) -> None:  # noqa: F811
    example = server_case.example_image
    upload = {"image": (example.name, example.read_bytes(), "image/jpeg")}

    def top(alpha: str) -> list[str]:
        form = {"q": server_case.compose_text, "method": "weighted", "alpha": alpha, "k": "3"}
        response = client.post("/api/search", files=upload, data=form)
        assert response.status_code == 200, response.text
        return names(response.json())

    image_heavy, text_heavy = top("0.05"), top("0.95")
    assert image_heavy != text_heavy
    if server_case.meaningful:
        assert server_case.example_relevant(image_heavy[0]), image_heavy
        assert server_case.compose_relevant(text_heavy[0]), text_heavy


def test_malformed_uploads_are_refused(client: httpx.Client) -> None:
    def post(data: bytes, name: str = "x.png", **form: str) -> httpx.Response:
        return client.post("/api/search", files={"image": (name, data, "image/png")}, data=form)

    assert post(b"not an image at all").status_code == 422
    assert post(b"").json()["field"] == "image"
    truncated = png_bytes((400, 300))[:200]
    response = post(truncated)
    assert response.status_code == 422 and response.json()["error"] == "invalid_image"
    bomb = io.BytesIO()
    Image.new("1", (10_000, 8_000)).save(bomb, "PNG")  # 80 MP of one bit: a few kB on the wire
    response = post(bomb.getvalue())
    assert response.status_code == 413 and "MP" in response.json()["detail"]
    response = post(png_bytes(), name="../../../etc/passwd\x00.png")
    assert response.status_code == 200  # the client's file name is never used as a path
    response = post(png_bytes(), alpha="lots", q="red")
    assert response.status_code == 422 and response.json()["field"] == "alpha"
    response = post(png_bytes(), like="../1")
    assert response.status_code == 422 and response.json()["field"] == "like"


# --- hostile input: every one a 4xx in the one error shape, never a 5xx ----------------------------------------------

JSON = {"content-type": "application/json"}
HOSTILE_BODIES = {
    "deeply nested JSON": ("[" * 100_000 + "]" * 100_000, 422, "body"),
    "a deeply nested value": ('{"texts": ' + "[" * 50_000 + "]" * 50_000 + "}", 422, "body"),
    "a lone surrogate in a text": ('{"texts": ["a \\ud800 b"]}', 422, "texts"),
    "1e400 as a filter number": ('{"texts": ["x"], "filters": {"min_width": 1e400}}', 422, "filters.min_width"),
    "a 60,000-character folder filter": ('{"texts": ["x"], "filters": {"folder": "/' + "a" * 60_000 + '"}}', 422,
                                         "filters.folder"),
    "an Infinity weight": ('{"texts": [{"text": "x", "weight": Infinity}]}', 422, "weight"),
    "a 1e308 weight": ('{"texts": [{"text": "x", "weight": 1e308}]}', 422, "weight"),
    "a NaN method parameter": ('{"texts": ["x"], "images": [{"id": 1}], "method": "weighted", '
                               '"params": {"alpha": NaN}}', 422, "params.alpha"),
    "a 1e308 re-ranking temperature": ('{"texts": ["x"], "rerank": {"hubness": "qbnorm", "options": {"beta": 1e308}}}',
                                       422, "rerank.options.beta"),
    "an integer of 5,000 digits": ('{"texts": ["x"], "k": ' + "9" * 5000 + "}", 422, "body"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_BODIES))
def test_hostile_json_bodies_are_422_with_the_field(client: httpx.Client, case: str) -> None:
    body, status, field = HOSTILE_BODIES[case]
    response = client.post("/api/search", content=body, headers=JSON)
    assert (response.status_code, response.json()["field"]) == (status, field), response.text[:300]
    assert set(response.json()) <= {"error", "detail", "field", "errors"} and response.json()["detail"]


def test_hostile_query_strings_are_4xx_with_the_field(client: httpx.Client) -> None:
    folder = client.get("/api/search", params={"q": "x", "folder": "/" + "a" * 60_000})
    assert folder.status_code == 422 and folder.json()["field"] == "folder"
    for value in ("inf", "nan", "1e400"):
        cutoff = client.get("/api/search", params={"q": "x", "cutoff": value})
        assert cutoff.status_code == 422 and cutoff.json()["field"] == "cutoff", value
        alpha = client.get("/api/search", params={"q": "x", "like": 1, "alpha": value})
        assert alpha.status_code == 422 and alpha.json()["field"] == "alpha", value
    huge_id = client.get("/api/search", params={"like": "9" * 30})
    assert huge_id.status_code == 422 and huge_id.json()["field"].startswith("like")
    surrogate = client.get("/api/search?q=%ED%A0%80")  # a UTF-8-encoded lone surrogate
    assert surrogate.status_code in (200, 422)


def test_a_one_by_a_million_upload_is_answered(client: httpx.Client) -> None:
    for size in ((1, 1_000_000), (1_000_000, 1)):
        strip = io.BytesIO()
        Image.new("L", size, 128).save(strip, "PNG")  # 1 MP in ~4 kB: once a MemoryError and a 500
        response = client.post("/api/search", files={"image": ("strip.png", strip.getvalue(), "image/png")})
        assert response.status_code == 200 and response.json()["count"] > 0, size


def test_allow_headers_list_every_method_of_a_path(client: httpx.Client) -> None:
    for path, methods in (("/api/search", "GET, OPTIONS, POST"), ("/api/reindex", "DELETE, OPTIONS, POST"),
                          ("/api/item/1", "GET, HEAD, OPTIONS")):
        options = client.request("OPTIONS", path)
        assert options.status_code == 204 and options.headers["allow"].replace("HEAD, ", "") == methods.replace(
            "HEAD, ", ""), path
        wrong = client.put(path)
        assert wrong.status_code == 405 and wrong.headers["allow"] == options.headers["allow"]
        assert wrong.json()["error"] == "method_not_allowed"


def test_the_schema_documents_every_status_and_the_error_shape(client: httpx.Client) -> None:
    schema = client.get("/openapi.json").json()
    error = schema["components"]["schemas"]["ErrorBody"]
    assert error["properties"]["detail"]["type"] == "string"  # not FastAPI's list of validation errors
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    expected = {("/api/image/{file_id}", "get"): {"404", "409", "422", "429"},
                ("/api/thumb/{file_id}", "get"): {"404", "409", "422", "429"},
                ("/api/search", "post"): {"413", "415", "422", "429"},
                ("/api/reindex", "post"): {"403", "409", "429"}}
    for (path, method), statuses in expected.items():
        responses = schema["paths"][path][method]["responses"]
        assert statuses <= set(responses), (path, method, sorted(responses))
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")):
                    ref = response["content"]["application/json"]["schema"]["$ref"]
                    assert ref.endswith("/ErrorBody"), (path, method, status)


# --- items, thumbnails, originals ---------------------------------------------------------------------------------


def test_similar_leaves_the_query_image_out(client: httpx.Client, server_case: ServerCase) -> None:  # noqa: F811
    file_id = catalog_id(server_case, server_case.example_image)
    data = client.get(f"/api/similar/{file_id}", params={"k": 4}).json()
    assert_well_formed(data, 4)
    assert data["count"] == 4 and file_id not in [r["id"] for r in data["results"]]
    if server_case.meaningful:
        assert server_case.example_relevant(data["results"][0]["name"]), names(data)
    assert client.get("/api/similar/999999999").status_code == 404
    assert client.get("/api/similar/abc").status_code == 404


def test_item_thumbnail_and_original(client: httpx.Client, server_case: ServerCase) -> None:  # noqa: F811
    path = server_case.example_image
    file_id = catalog_id(server_case, path)
    item = client.get(f"/api/item/{file_id}").json()
    assert item["id"] == file_id and item["name"] == path.name and item["width"] > 0
    assert "content_hash" not in item and "mtime_ns" not in item

    thumb = client.get(item["thumb"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert "immutable" in thumb.headers["cache-control"]
    with Image.open(io.BytesIO(thumb.content)) as img:
        assert max(img.size) <= 400 and img.format == "JPEG"
    assert list((server_case.index_dir / "thumbs").rglob(f"{file_id}-*.jpg"))
    assert "immutable" not in client.get(f"/api/thumb/{file_id}?v=stale").headers["cache-control"]

    original = client.get(item["image"])
    assert original.status_code == 200 and original.content == path.read_bytes()
    assert original.headers["content-type"] == BROWSER_FORMATS[item["format"]]  # from the content, not the name
    download = client.get(f"/api/image/{file_id}", params={"download": "true"})
    assert download.headers["content-disposition"].startswith("attachment")
    assert download.headers["content-type"] == "application/octet-stream"
    assert download.content == path.read_bytes()


def test_formats_browsers_cannot_show_get_a_jpeg_rendition(client: httpx.Client, server_case: ServerCase) -> None:  # noqa: F811
    with Library.open(server_case.index_dir) as lib:
        odd = [r for r in lib.catalog.all_files() if r.status == "indexed" and r.format not in BROWSER_FORMATS]
    if not odd:
        pytest.skip("the test index has only browser formats")
    response = client.get(f"/api/image/{odd[0].id}")
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    with Image.open(io.BytesIO(response.content)) as img:
        assert img.format == "JPEG"
    raw = client.get(f"/api/image/{odd[0].id}", params={"download": "true"})
    assert raw.content == Path(odd[0].path).read_bytes()


TRAVERSALS = [
    "../../etc/passwd",
    "..%2f..%2fetc%2fpasswd",
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "%252e%252e%252fetc%252fpasswd",
    "..%5c..%5cetc%5cpasswd",
    "....//....//etc/passwd",
    "%c0%ae%c0%ae%c0%afetc%c0%afpasswd",
    "1/../../../etc/passwd",
    "1%2f..%2f..%2fetc%2fpasswd",
    "/etc/passwd",
    "%2fetc%2fpasswd",
    "1%00",
    "1;/etc/passwd",
    "-1",
    "0",
    "1.5",
    "0x1",
    "99999999999999999999999999",
    "9223372036854775808",
]


def raw_get(url: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """GET a path exactly as written (httpx would normalise dot segments)."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.putrequest("GET", path, skip_accept_encoding=True)
        for key, value in (headers or {}).items():
            conn.putheader(key, value)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_path_traversal_never_reaches_a_file(live_server: BackgroundServer) -> None:  # noqa: F811
    for route in ("/api/thumb/", "/api/image/", "/api/item/", "/api/similar/", "/static/"):
        for attempt in TRAVERSALS:
            status, body = raw_get(live_server.url, route + attempt)
            assert status in (400, 404, 422), (route, attempt, status)
            assert b"root:" not in body and b"import " not in body, (route, attempt)
    status, body = raw_get(live_server.url, "/api/image/1?download=true&path=/etc/passwd")
    assert b"root:" not in body


# --- auth -------------------------------------------------------------------------------------------------------


def test_token_protects_everything_but_health_and_the_page(server_case: ServerCase) -> None:  # noqa: F811
    app = create_app(server_case.index_dir, token="s3cret token", warm_thumbs=0)
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url, timeout=60) as c:
        assert c.get("/api/health").json()["auth"] is True
        assert c.get("/").status_code == 200 and c.get("/static/app.js").status_code == 200
        protected = ["/api/status", "/api/search?q=x", "/api/similar/1", "/api/item/1", "/api/thumb/1",
                     "/api/image/1", "/api/folders"]
        for path in protected:
            response = c.get(path)
            assert response.status_code == 401, path
            assert response.headers["www-authenticate"] == "Bearer"
            assert c.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.post("/api/reindex").status_code == 401 and c.delete("/api/reindex").status_code == 401
        good = {"Authorization": "Bearer s3cret token"}
        assert c.get("/api/status", headers=good).status_code == 200
        assert c.get("/api/search", params={"q": "x"}, headers=good).status_code == 200
        # The page's cookie opens images (an <img> cannot send headers) but not the API.
        cookie = {"Cookie": "pixquery_token=s3cret%20token"}
        assert c.get("/api/thumb/1", headers=cookie).status_code == 200
        assert c.get("/api/status", headers=cookie).status_code == 401


def test_only_loopback_host_names_and_same_origin_writes(client: httpx.Client) -> None:
    assert client.get("/api/health", headers={"Host": "evil.example"}).status_code == 400
    assert client.get("/api/health", headers={"Host": "localhost"}).status_code == 200
    cross = client.post("/api/reindex", headers={"Origin": "http://evil.example"})
    assert cross.status_code == 403 and cross.json()["error"] == "forbidden"


# --- limits -----------------------------------------------------------------------------------------------------


def test_k_and_query_length_limits(client: httpx.Client) -> None:
    assert client.get("/api/search", params={"q": "x", "k": 500}).status_code == 200
    too_many = client.get("/api/search", params={"q": "x", "k": 501})
    assert too_many.status_code == 422 and too_many.json()["field"] == "k"
    paged = client.get("/api/search", params={"q": "x", "k": 100, "offset": 450})
    assert paged.status_code == 422 and "offset + k" in paged.json()["detail"]
    long = client.get("/api/search", params={"q": "a" * 1001})
    assert long.status_code == 422 and long.json()["field"] == "q"
    long_not = client.get("/api/search", params={"q": "x", "not": "b" * 1001})
    assert long_not.status_code == 422 and long_not.json()["field"] == "not[0]"
    many = client.post("/api/search", json={"texts": ["x"] * 17})
    assert many.status_code == 422 and many.json()["field"] == "texts"


def test_rate_limit_answers_429_with_retry_after(server_case: ServerCase) -> None:  # noqa: F811
    limits = Limits(search_rate=0.5, search_burst=3, media_rate=1, media_burst=2)
    app = create_app(server_case.index_dir, limits=limits, warm_thumbs=0)
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url, timeout=60) as c:
        codes = [c.get("/api/search", params={"q": "x", "k": 1}).status_code for _ in range(5)]
        assert codes[:3] == [200, 200, 200] and codes[3:] == [429, 429]
        limited = c.get("/api/status")
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        assert limited.json()["error"] == "rate_limited"
        assert [c.get("/api/thumb/1").status_code for _ in range(3)] == [200, 200, 429]  # a separate bucket
        assert all(c.get("/api/health").status_code == 200 for _ in range(10))  # never limited


def test_rate_limiter_refills_and_forgets_old_clients() -> None:
    now = [0.0]
    limiter = RateLimiter(rate=2.0, capacity=2, max_clients=2, clock=lambda: now[0])
    limiter.check("a")
    limiter.check("a")
    with pytest.raises(ApiError) as info:
        limiter.check("a")
    assert info.value.status == 429 and info.value.headers["Retry-After"] == "1"
    now[0] = 0.5  # one token back after 1 / rate seconds
    limiter.check("a")
    limiter.check("b")
    limiter.check("c")  # three clients, room for two: the least recently seen is forgotten
    assert set(limiter._buckets) == {"b", "c"}


def test_upload_size_limit(server_case: ServerCase) -> None:  # noqa: F811
    limits = Limits(max_upload_bytes=100_000)
    app = create_app(server_case.index_dir, limits=limits, warm_thumbs=0)
    big = np.random.default_rng(0).integers(0, 255, (400, 400, 3), np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(big).save(buffer, "PNG")  # noise does not compress: ~480 kB
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url, timeout=60) as c:
        response = c.post("/api/search", files={"image": ("big.png", buffer.getvalue(), "image/png")})
        assert response.status_code == 413 and response.json()["error"] == "too_large"

        def chunks() -> Iterator[bytes]:  # no Content-Length: the body is counted as it streams
            for _ in range(50):
                yield b"x" * 10_000

        streamed = c.post("/api/search", content=chunks(), headers={"content-type": "application/json"})
        assert streamed.status_code == 413
        assert c.get("/api/health").status_code == 200


# --- re-indexing ------------------------------------------------------------------------------------------------


def add_images(case: ServerCase, folder: str, n: int, seed: int, scale: int = 1) -> list[Path]:
    """New files that are not relevant to the case's text query (shifted copies of its non-relevant images),
    `scale` times larger (slower to decode)."""
    sources = [p for p in sorted(case.gallery.rglob("*")) if p.suffix.lower() in (".jpg", ".png")
               and not case.relevant(p.name) and not case.example_relevant(p.name)][:4]
    rng = np.random.default_rng(seed)
    # Inside a folder the index already covers: without recorded roots, a re-index scans the indexed folders.
    out = case.example_image.parent / folder
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for i in range(n):
        with Image.open(sources[i % len(sources)]) as img:
            rgb = img.convert("RGB")
            if scale > 1:
                rgb = rgb.resize((rgb.width * scale, rgb.height * scale))
            pixels = np.asarray(rgb, np.int16) + rng.integers(-12, 12)
        path = out / f"new_{i:03d}.jpg"
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=90)
        written.append(path)
    return written


def wait_for_job(c: httpx.Client, timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = c.get("/api/status").json()
        if not status["reindex"]["running"]:
            return status
        time.sleep(0.2)
    raise AssertionError("the re-index did not finish")


@pytest.fixture(scope="module")
def own_case(tmp_path_factory: pytest.TempPathFactory) -> ServerCase:
    """An index of its own, since re-indexing changes it."""
    return build_case(tmp_path_factory.mktemp("reindex"))


def test_searches_stay_consistent_during_a_reindex(own_case: ServerCase) -> None:
    case = own_case
    added = add_images(case, "added", 24, seed=1)
    app = create_app(case.index_dir, limits=Limits(search_rate=10_000, search_burst=10_000), warm_thumbs=0)
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url, timeout=60) as c:
        before = c.get("/api/status").json()["index"]
        baseline = c.get("/api/search", params={"q": case.text_query, "k": 5}).json()
        assert c.delete("/api/reindex").status_code == 409  # nothing to stop yet
        started = c.post("/api/reindex")
        assert started.status_code == 202 and started.json()["reindex"]["state"] == "running"
        assert c.post("/api/reindex").status_code == 409

        failures: list[str] = []
        tops: list[int] = []

        def searcher() -> None:
            with httpx.Client(base_url=server.url, timeout=60) as own:
                for _ in range(20):
                    response = own.get("/api/search", params={"q": case.text_query, "k": 5})
                    if response.status_code != 200:
                        failures.append(f"{response.status_code}: {response.text[:200]}")
                        continue
                    try:
                        assert_well_formed(response.json(), 5)
                    except AssertionError as exc:
                        failures.append(f"malformed: {exc}")
                        continue
                    tops.append(response.json()["results"][0]["id"])

        threads = [threading.Thread(target=searcher) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not failures, failures[:3]
        assert len(tops) == 80
        if case.meaningful:  # the added images are not what the query asks for: the best match stays put
            assert set(tops) == {baseline["results"][0]["id"]}

        status = wait_for_job(c)
        job = status["reindex"]
        assert job["state"] == "done", job
        assert job["report"]["new"] == len(added) and isinstance(job["report"]["skipped"], int)
        assert status["index"]["indexed"] == before["indexed"] + len(added)
        probe = added[5]
        found = c.post("/api/search", files={"image": (probe.name, probe.read_bytes(), "image/jpeg")},
                       data={"k": "1"}).json()
        assert found["results"][0]["name"] == probe.name  # the new file is searchable without a restart


def test_a_reindex_can_be_stopped_and_resumed(own_case: ServerCase) -> None:
    # As a server started in the background by a script (`pixquery serve &`): SIGINT arrives ignored, and its jobs
    # must still stop when asked.
    ignored = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        _stop_and_resume(own_case)
    finally:
        signal.signal(signal.SIGINT, ignored)


def _stop_and_resume(case: ServerCase) -> None:
    # Large enough that the job is still embedding when the stop arrives, even with a model as fast as mini's
    # (120 small files were all indexed before the signal once, on a loaded machine).
    added = add_images(case, "many", 240, seed=2, scale=8)
    app = create_app(case.index_dir, warm_thumbs=0)
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url, timeout=60) as c:
        before = c.get("/api/status").json()["index"]["indexed"]
        assert c.post("/api/reindex").status_code == 202
        stopping = c.delete("/api/reindex")
        # "stopped" already when the signal caught the indexer still starting up (it then dies at once).
        assert stopping.status_code == 202 and stopping.json()["reindex"]["state"] in ("stopping", "stopped")
        status = wait_for_job(c, timeout=60)
        assert status["reindex"]["state"] == "stopped", status
        partial = status["index"]["indexed"]
        assert before <= partial < before + len(added)
        assert c.get("/api/search", params={"q": case.text_query}).status_code == 200  # still searchable

        # Again, stopping after some batches are in: what was committed stays.
        assert c.post("/api/reindex").status_code == 202
        deadline = time.monotonic() + 120
        while c.get("/api/status").json()["index"]["indexed"] == partial and time.monotonic() < deadline:
            time.sleep(0.05)
        c.delete("/api/reindex")
        status = wait_for_job(c, timeout=60)
        if status["reindex"]["state"] == "stopped":  # (unless the last batch won the race against the signal)
            assert partial < status["index"]["indexed"] < before + len(added)
            assert c.get("/api/search", params={"q": case.text_query}).status_code == 200

        assert c.post("/api/reindex").status_code == 202
        status = wait_for_job(c)
        assert status["reindex"]["state"] == "done"
        assert status["index"]["indexed"] == before + len(added) and status["index"]["pending"] == 0


def test_covering_roots_are_the_outermost_folders() -> None:
    folders = ["/p/a", "/p/a/b", "/p/ab", "/q", "/q/x/y", "/p/a/c"]
    assert covering_roots(folders) == ["/p/a", "/p/ab", "/q"]


# --- starting ---------------------------------------------------------------------------------------------------


def test_no_index_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(IndexFormatError, match="no index at"):
        create_app(tmp_path / "nothing-here")


def test_serve_binds_loopback_and_opens_the_browser_once_ready(server_case: ServerCase, tmp_path: Path) -> None:  # noqa: F811
    port = free_port()
    opened = tmp_path / "opened.txt"
    # webbrowser runs $BROWSER with the URL for %s: a stand-in browser that writes down what it was asked to open.
    env = dict(os.environ, BROWSER=f"sh -c 'echo %s > {opened}'",
               PYTHONPATH=os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]),
                                                        os.environ.get("PYTHONPATH")])))
    index = str(server_case.index_dir)
    code = f"from pixquery.server.run import serve; serve({index!r}, port={port}, open_browser=True)"
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (opened.exists() and opened.read_text().strip()):
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "the browser was never opened"
            time.sleep(0.1)
        url = opened.read_text().strip()
        assert url == f"http://127.0.0.1:{port}/"
        assert httpx.get(url + "api/health").json()["ok"] is True  # it answers by the time the page opens
    finally:
        proc.terminate()
        proc.wait(timeout=30)
