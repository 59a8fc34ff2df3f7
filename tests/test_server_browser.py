"""The web page in headless Chromium (Playwright, sync API): the landing page browsing the collection (by date, by
folder), search, query by image (picked, dropped, pasted; a new query unless combined), composed queries, filters,
scores shown as what they mean, the viewer, the keyboard, the empty state, the views of tags, clusters and
duplicate groups, the status popover, the token prompt, and the time from a search response to its first
thumbnail on screen."""

from __future__ import annotations

import base64
import os
import shutil
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from PIL import Image
from server_fixtures import ServerCase, live_server, png_bytes, server_case  # noqa: F401

from pixquery.api import Library
from pixquery.server.app import create_app
from pixquery.server.run import BackgroundServer

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
DOCS_SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "screenshot.png"
FIRST_PAINT_BUDGET_MS = 300.0

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (pip install playwright) is not installed")
if not CHROMIUM.exists():
    pytest.skip("no Chromium at /usr/bin/chromium (apt-get install chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture()
def page(browser, live_server: BackgroundServer):  # noqa: F811
    """A fresh page on the shared server; fails the test on any console error (CSP violations included)."""
    context = browser.new_context(viewport={"width": 1360, "height": 860}, color_scheme="light")
    tab = context.new_page()
    errors: list[str] = []
    tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    tab.on("pageerror", lambda e: errors.append(str(e)))
    tab.goto(live_server.url + "/")
    wait_until(tab, "document.getElementById('status-text').textContent.includes('images')")
    wait_until(tab, "window.__pixquery.searches > 0")  # the landing page's first page of photos
    yield tab
    context.close()
    assert not errors, errors


def wait_until(tab, expression: str, timeout: float = 30.0) -> object:
    """Poll a JS expression until truthy (page.wait_for_function evaluates strings, which the page's CSP forbids)."""
    deadline = time.monotonic() + timeout
    while True:
        value = tab.evaluate(expression)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for: {expression}")
        time.sleep(0.05)


def renders(tab) -> int:
    return int(tab.evaluate("window.__pixquery.searches"))


def no_cutoff(tab) -> None:
    """Show the closest images whatever their score (the ranking is what these tests check, not the cut-off)."""
    tab.evaluate("document.getElementById('cutoff').checked = false")


def search_text(tab, text: str) -> None:
    before = renders(tab)
    tab.fill("#q", text)
    tab.press("#q", "Enter")
    wait_until(tab, f"window.__pixquery.searches > {before}")


def tile_names(tab) -> list[str]:
    return tab.eval_on_selector_all(".tile", "els => els.map(e => e.title)")


def wait_thumbnails_ready(url: str) -> None:
    """The server makes thumbnails in the background after start; wait for it, as a returning user would."""
    deadline = time.monotonic() + 120
    with httpx.Client(base_url=url) as c:
        while not c.get("/api/status").json()["thumbnails"]["done"]:
            assert time.monotonic() < deadline, "thumbnails were not made"
            time.sleep(0.2)


# --- tests ------------------------------------------------------------------------------------------------------


def test_text_search_shows_the_right_image_first_quickly(
    page, server_case: ServerCase, live_server, tmp_path: Path  # noqa: F811
) -> None:
    wait_thumbnails_ready(live_server.url)
    no_cutoff(page)
    search_text(page, server_case.text_query)
    names = tile_names(page)
    assert names, "no results shown"
    if server_case.meaningful:
        assert server_case.relevant(names[0]), names
    meta = page.inner_text("#meta")
    assert "closest images" in meta and "matches" not in meta  # without the cut-off they are not called matches
    assert page.locator(".tile .badge").count() == 0  # no raw scores on the tiles
    assert parse_qs(urlsplit(page.url).query)["q"] == [server_case.text_query]  # the address mirrors the query

    # Response-to-first-thumbnail time, over a few searches (the first also warms the browser).
    for query in (server_case.compose_text, server_case.text_query, "a photo", server_case.compose_text):
        painted = len(page.evaluate("window.__pixquery.renders"))
        search_text(page, query)
        wait_until(page, f"window.__pixquery.renders.length > {painted}")
    times = [r["ms"] for r in page.evaluate("window.__pixquery.renders")]
    print(f"response -> first thumbnail painted (ms): {[round(t) for t in times]}")
    assert statistics.median(times) <= FIRST_PAINT_BUDGET_MS, times

    search_text(page, server_case.text_query)
    wait_until(page, "Array.from(document.querySelectorAll('.tile img')).every(i => i.complete)")
    shot = tmp_path / "results.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
    if os.environ.get("PIXQUERY_UPDATE_SCREENSHOT"):  # a test run leaves the checkout as it found it
        shutil.copyfile(shot, DOCS_SCREENSHOT)


def test_pick_an_image_and_get_similar_ones(page, server_case: ServerCase) -> None:  # noqa: F811
    no_cutoff(page)
    before = renders(page)
    with page.expect_response(lambda r: r.url.endswith("/api/search") and r.request.method == "POST") as info:
        page.set_input_files("#file", str(server_case.example_image))
    assert info.value.status == 200
    wait_until(page, f"window.__pixquery.searches > {before}")
    assert page.is_visible("#ref") and page.is_visible("#compose")
    names = tile_names(page)
    assert names[0] == server_case.example_image.name
    if server_case.meaningful:
        assert server_case.example_relevant(names[1]), names


def drop_script(data: bytes, event: str) -> str:
    payload = base64.b64encode(data).decode()
    make = (
        f"const bytes = Uint8Array.from(atob('{payload}'), c => c.charCodeAt(0));"
        "const dt = new DataTransfer(); dt.items.add(new File([bytes], 'query.png', {type: 'image/png'}));"
    )
    if event == "drop":
        return make + "document.body.dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true}));"
    return make + "document.body.dispatchEvent(new ClipboardEvent('paste', {clipboardData: dt, bubbles: true}));"


@pytest.mark.parametrize("event", ["drop", "paste"])
def test_drop_or_paste_an_image(page, server_case: ServerCase, event: str) -> None:  # noqa: F811
    no_cutoff(page)
    data = server_case.example_image.read_bytes()
    before = renders(page)
    with page.expect_response(lambda r: r.url.endswith("/api/search") and r.request.method == "POST") as info:
        page.evaluate(drop_script(data, event))
    assert info.value.json()["results"][0]["name"] == server_case.example_image.name  # the image was uploaded
    wait_until(page, f"window.__pixquery.searches > {before}")
    assert tile_names(page)[0] == server_case.example_image.name


def test_composed_query_sends_weighted_alpha(page, server_case: ServerCase) -> None:  # noqa: F811
    no_cutoff(page)
    before = renders(page)
    page.set_input_files("#file", str(server_case.example_image))
    wait_until(page, f"window.__pixquery.searches > {before}")
    assert not page.is_visible("#balance")  # an image alone: no balance to set
    page.check("#combine")  # the user asks to combine the image with words
    assert page.is_visible("#balance")
    assert page.evaluate("document.activeElement.id") == "q"
    page.evaluate("const a = document.getElementById('alpha'); a.value = '0.95'; a.dispatchEvent(new Event('input'))")
    assert page.inner_text("#alpha-out") == "95% text"
    before = renders(page)
    with page.expect_response(lambda r: r.url.endswith("/api/search") and r.request.method == "POST") as info:
        page.fill("#q", server_case.compose_text)
        page.press("#q", "Enter")
    answer = info.value.json()
    assert answer["method"] == "weighted" and answer["params"] == {"alpha": 0.95}
    wait_until(page, f"window.__pixquery.searches > {before}")
    names = tile_names(page)
    if server_case.meaningful:
        assert server_case.compose_relevant(names[0]), names
    page.click("#ref-clear")
    assert not page.is_visible("#ref")


def test_folder_filter(page, server_case: ServerCase) -> None:  # noqa: F811
    no_cutoff(page)
    search_text(page, server_case.text_query)
    page.click("#filters-toggle")
    assert page.is_visible("#filters")
    folder = str(server_case.filter_folder)
    with page.expect_response(lambda r: "/api/search?" in r.url and "folder=" in r.url) as info:
        page.fill("#folder", folder)
        page.dispatch_event("#folder", "change")
    data = info.value.json()
    assert data["count"] > 0 and all(r["folder"].startswith(folder) for r in data["results"])
    wait_until(page, f"document.querySelectorAll('.tile').length === {data['count']}")
    assert page.is_visible("#filters-dot")
    with page.expect_response(lambda r: "/api/search?" in r.url and "not=" in r.url) as info:
        page.fill("#not", "people, text")
        page.dispatch_event("#not", "change")
    sent = parse_qs(urlsplit(info.value.url).query)
    assert sent["not"] == ["people", "text"] and sent["folder"] == [folder]  # negatives and filters together


def test_open_a_result_browse_and_find_more_like_it(page, server_case: ServerCase) -> None:  # noqa: F811
    no_cutoff(page)
    search_text(page, server_case.text_query)
    first, second = tile_names(page)[:2]
    second_id = int(page.get_attribute(".tile >> nth=1", "data-id"))
    page.click(".tile >> nth=0")
    wait_until(page, "document.getElementById('viewer').open")
    assert page.inner_text("#info-name") == first
    wait_until(page, "document.getElementById('full').src.includes('/api/image/')")
    wait_until(page, "document.getElementById('info-list').textContent.includes('File')")  # /api/item answered
    info = page.inner_text("#info-list")
    assert "#1 by similarity" in info and "Score" not in info  # where it ranks, not a raw cosine
    page.keyboard.press("ArrowRight")
    assert page.inner_text("#info-name") == second
    before = renders(page)
    with page.expect_response(lambda r: "/api/similar/" in r.url) as info:
        page.click("#similar")
    assert info.value.status == 200 and f"/api/similar/{second_id}?" in info.value.url
    wait_until(page, f"window.__pixquery.searches > {before}")
    assert not page.evaluate("document.getElementById('viewer').open")
    assert page.is_visible("#ref")
    shown = page.eval_on_selector_all(".tile", "els => els.map(e => Number(e.dataset.id))")
    assert shown and second_id not in shown  # the query image itself is left out


def test_keyboard_navigation(page, server_case: ServerCase) -> None:  # noqa: F811
    page.click("body")
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "q"
    no_cutoff(page)
    page.keyboard.type(server_case.text_query)
    before = renders(page)
    page.keyboard.press("Enter")
    wait_until(page, f"window.__pixquery.searches > {before}")
    wait_until(page, "document.querySelectorAll('.tile').length >= 3")
    page.focus("#q")
    page.keyboard.press("ArrowDown")
    assert page.evaluate("document.activeElement.dataset.index") == "0"
    page.keyboard.press("ArrowRight")
    assert page.evaluate("document.querySelector('.tile.selected').dataset.index") == "1"
    page.keyboard.press("ArrowLeft")
    assert page.evaluate("document.querySelector('.tile.selected').dataset.index") == "0"
    page.keyboard.press("Enter")
    wait_until(page, "document.getElementById('viewer').open")
    page.keyboard.press("Escape")
    wait_until(page, "!document.getElementById('viewer').open")
    assert page.evaluate("document.activeElement.dataset.index") == "0"


def test_honest_empty_state(page, live_server, server_case: ServerCase) -> None:  # noqa: F811
    page.goto(f"{live_server.url}/?q=a+photo&cutoff=1.5")  # a cosine never passes 1.5
    wait_until(page, "window.__pixquery.searches > 0")
    assert "Nothing above the relevance cut-off" in page.inner_text("#empty")
    assert tile_names(page) == []
    before = renders(page)
    page.click("#show-all")
    wait_until(page, f"window.__pixquery.searches > {before}")
    assert len(tile_names(page)) > 0 and not page.is_visible("#empty")


def test_more_results_load_as_you_scroll(page, live_server, server_case: ServerCase) -> None:  # noqa: F811
    page.set_viewport_size({"width": 390, "height": 500})  # two columns: ten results fill more than a screen
    page.goto(f"{live_server.url}/?q={server_case.text_query}&cutoff=off&per_page=10")
    wait_until(page, "document.querySelectorAll('.tile').length === 10")
    first_page = page.eval_on_selector_all(".tile", "els => els.map(e => e.dataset.id)")
    with page.expect_response(lambda r: "offset=10" in r.url):
        page.mouse.wheel(0, 5000)
    wait_until(page, "document.querySelectorAll('.tile').length === 20")
    ids = page.eval_on_selector_all(".tile", "els => els.map(e => e.dataset.id)")
    assert ids[:10] == first_page and len(set(ids)) == 20  # the next page continues the ranking


def test_a_short_page_on_a_tall_screen_fills_itself(page, live_server, server_case: ServerCase) -> None:  # noqa: F811
    page.goto(f"{live_server.url}/?q={server_case.text_query}&cutoff=off&per_page=10")
    wait_until(page, "document.querySelectorAll('.tile').length >= 20")  # no scrolling needed to see more


def test_token_prompt(browser, server_case: ServerCase) -> None:  # noqa: F811
    app = create_app(server_case.index_dir, token="let-me-in", warm_thumbs=0)
    with BackgroundServer(app) as server:
        context = browser.new_context()
        tab = context.new_page()
        tab.goto(server.url + "/")
        wait_until(tab, "document.getElementById('token-dialog').open")
        tab.fill("#token", "wrong")
        tab.press("#token", "Enter")
        wait_until(tab, "document.getElementById('token-dialog').open")
        wait_until(tab, "!document.getElementById('token-error').hidden")
        tab.fill("#token", "let-me-in")
        tab.press("#token", "Enter")
        wait_until(tab, "document.getElementById('status-text').textContent.includes('images')")
        assert tab.evaluate("localStorage.getItem('pixquery.token')") == "let-me-in"
        no_cutoff(tab)
        search_text(tab, server_case.text_query)
        # Thumbnails load through the cookie the page set (an <img> cannot send the header).
        wait_until(tab, "document.querySelector('.tile img')?.naturalWidth > 0")
        context.close()


def test_dark_scheme_and_small_screens_render(
    browser, live_server, server_case: ServerCase, tmp_path: Path  # noqa: F811
) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 800}, color_scheme="dark")
    tab = context.new_page()
    tab.goto(f"{live_server.url}/?q={server_case.text_query}&cutoff=off")
    wait_until(tab, "document.querySelectorAll('.tile img').length > 0")
    background = tab.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background != "rgb(246, 247, 249)"  # the dark palette, not the light one
    columns = tab.evaluate("getComputedStyle(document.getElementById('grid')).gridTemplateColumns.split(' ').length")
    assert 2 <= columns <= 3
    tab.screenshot(path=str(tmp_path / "mobile-dark.png"))
    context.close()


# --- the landing page and the views ------------------------------------------------------------------------------


def indexed_rows(case: ServerCase) -> list:
    with Library.open(case.index_dir) as lib:
        return [r for r in lib.catalog.all_files() if r.status == "indexed"]


def tile_ids(tab) -> list[int]:
    return tab.eval_on_selector_all(".tile", "els => els.map(e => Number(e.dataset.id))")


def test_landing_page_browses_the_collection_newest_first(page, server_case: ServerCase) -> None:  # noqa: F811
    # Before any query the page shows the photos, newest taken first (undated ones after the dated).
    assert page.input_value("#q") == ""
    assert page.is_visible("#browsebar") and not page.is_visible("#empty")
    names = tile_names(page)
    dated = sorted(server_case.extra["dated"].items(), key=lambda item: item[1], reverse=True)
    assert names[: len(dated)] == [name for name, _ in dated], names
    assert [page.inner_text(f".tile >> nth={i} >> .badge") for i in range(len(dated))] == [d for _, d in dated]
    assert "All photos" in page.inner_text("#meta") and "newest taken first" in page.inner_text("#meta")
    rows = indexed_rows(server_case)
    assert len(names) == len(rows)  # every indexed image, nothing else (no README, no unreadable file)

    # By when they were added: the last file indexed comes first.
    with page.expect_response(lambda r: "/api/browse?" in r.url and "sort=added" in r.url) as info:
        page.select_option("#order", "added")
    assert info.value.status == 200
    wait_until(page, f"document.querySelector('.tile')?.dataset.id === '{max(r.id for r in rows)}'")
    assert "order=added" in page.url  # a reload shows the same


def test_browsing_by_folder(page, server_case: ServerCase) -> None:  # noqa: F811
    folder = str(server_case.filter_folder)
    chip = page.locator(f"#folder-chips .chip[data-folder='{folder}']")
    assert chip.is_visible() and chip.get_attribute("aria-pressed") == "false"
    with page.expect_response(lambda r: "/api/browse?" in r.url and "folder=" in r.url) as info:
        chip.click()
    data = info.value.json()
    assert data["count"] > 0 and all(r["folder"] == folder for r in data["results"])
    wait_until(page, f"document.querySelectorAll('.tile').length === {data['count']}")
    expected = {r.id for r in indexed_rows(server_case) if r.folder == folder}
    assert set(tile_ids(page)) == expected
    assert chip.get_attribute("aria-pressed") == "true"
    assert f"Folder: {server_case.filter_folder.name}" in page.inner_text("#meta")
    assert parse_qs(urlsplit(page.url).query)["folder"] == [folder]
    with page.expect_response(lambda r: "/api/browse?" in r.url and "folder=" not in r.url):
        page.click("#folder-chips .chip[data-folder='']")  # "All folders"
    wait_until(page, f"document.querySelectorAll('.tile').length === {len(indexed_rows(server_case))}")


def test_picking_an_image_starts_a_new_query_unless_combined(page, server_case: ServerCase) -> None:  # noqa: F811
    no_cutoff(page)
    search_text(page, server_case.compose_text)
    before = renders(page)
    with page.expect_response(lambda r: r.url.endswith("/api/search") and r.request.method == "POST") as info:
        page.set_input_files("#file", str(server_case.example_image))
    wait_until(page, f"window.__pixquery.searches > {before}")
    answer = info.value.json()
    assert answer["method"] != "weighted" and answer["params"] == {}  # the image alone: no words composed with it
    assert page.input_value("#q") == ""
    assert tile_names(page)[0] == server_case.example_image.name
    assert "this image" in page.inner_text("#meta") and "+ image" not in page.inner_text("#meta")
    # The words were set aside, not lost: "Combine" brings them back, and only then are both searched.
    assert server_case.compose_text in page.inner_text("#combine-label") and not page.is_visible("#balance")
    with page.expect_response(lambda r: r.url.endswith("/api/search") and r.request.method == "POST") as info:
        page.check("#combine")
    answer = info.value.json()
    assert page.input_value("#q") == server_case.compose_text and page.is_visible("#balance")
    assert answer["method"] == "weighted"
    wait_until(page, "document.getElementById('meta').textContent.includes('+ image')")
    # Typing new words beside an image that is not combined starts a text search.
    page.uncheck("#combine")
    wait_until(page, "document.getElementById('q').value === ''")
    with page.expect_response(lambda r: "/api/search?" in r.url and "q=" in r.url) as info:
        page.fill("#q", server_case.text_query)
        page.press("#q", "Enter")
    assert "like=" not in info.value.url and not page.is_visible("#ref")


def test_scores_are_shown_as_what_they_mean(page, live_server, server_case: ServerCase) -> None:  # noqa: F811
    query = server_case.confident_query or server_case.text_query
    page.goto(f"{live_server.url}/?q={query}&cutoff=auto")  # "only confident matches", asked for by the link
    wait_until(page, "window.__pixquery.searches > 0")
    with httpx.Client(base_url=live_server.url) as c:
        matches = c.get("/api/search", params={"q": query, "cutoff": "auto"}).json()["matches"]
    assert matches and page.inner_text("#meta").startswith(f"{matches} match")  # the results are the matches
    assert page.locator(".tile .badge").count() == 0
    page.click(".tile >> nth=0")
    wait_until(page, "document.getElementById('info-list').textContent.includes('File')")
    info = page.inner_text("#info-list")
    assert f"1 of {matches} match" in info and "Score" not in info  # a rank, not a raw cosine
    page.keyboard.press("Escape")
    page.click("#filters-toggle")
    before = renders(page)
    page.check("#scores")  # experts may still see the raw similarity
    wait_until(page, f"window.__pixquery.searches > {before}")
    badges = page.eval_on_selector_all(".tile .badge", "els => els.map(e => e.textContent)")
    assert len(badges) == len(tile_names(page)) and all(0 < float(b) <= 1 for b in badges)
    page.uncheck("#scores")  # the choice is kept in the browser; leave it off for the other tests


def test_tags_view_lists_tags_and_a_tag_shows_its_images(page, server_case: ServerCase) -> None:  # noqa: F811
    page.click("#tab-tags")
    assert page.is_visible("#panel-tags") and not page.is_visible("#panel-photos")
    wait_until(page, "document.querySelectorAll('#tag-list .chip').length > 0")
    shown = page.eval_on_selector_all(
        "#tag-list .chip", "els => els.map(e => [e.dataset.tag, Number(e.querySelector('.count').textContent)])")
    assert dict(shown) == server_case.extra["tags"]
    assert [n for _, n in shown] == sorted((n for _, n in shown), reverse=True)  # most used first
    tag, count = shown[0]
    with page.expect_response(lambda r: "/api/browse?" in r.url and "tag=" in r.url) as info:
        page.click(f"#tag-list .chip[data-tag='{tag}']")
    assert parse_qs(urlsplit(info.value.url).query)["tag"] == [tag]
    wait_until(page, f"document.querySelectorAll('.tile').length === {count}")
    with Library.open(server_case.index_dir) as lib:
        tagged = {i for i, tags in lib.catalog.read_tags().items() if any(t.label == tag for t in tags)}
    assert set(tile_ids(page)) == tagged
    assert page.is_visible("#panel-photos") and f"Tag: {tag}" in page.inner_text("#meta")
    assert parse_qs(urlsplit(page.url).query)["tag"] == [tag]
    page.click("#scope-clear")  # back to every photo
    wait_until(page, f"document.querySelectorAll('.tile').length === {len(indexed_rows(server_case))}")


def test_clusters_view_shows_named_clusters_with_thumbnails(page, server_case: ServerCase) -> None:  # noqa: F811
    page.click("#tab-clusters")
    # Made in the background (the first time a model names clusters it embeds its vocabulary): the page polls.
    wait_until(page, "document.querySelectorAll('#cluster-list .card').length > 0", timeout=300)
    cards = page.eval_on_selector_all("#cluster-list .card", """els => els.map(e => ({
        id: e.dataset.cluster, name: e.querySelector('strong').textContent,
        thumbs: Array.from(e.querySelectorAll('img')).map(i => i.getAttribute('src'))}))""")
    assert all(c["name"].strip() and c["thumbs"] for c in cards), cards
    assert all(src.startswith("/api/thumb/") for c in cards for src in c["thumbs"])
    wait_until(page, "Array.from(document.querySelectorAll('#cluster-list img'))"
                     ".every(i => i.complete && i.naturalWidth > 0)")
    assert "clusters of" in page.inner_text("#clusters-meta") and not page.is_visible("#clusters-progress")
    with httpx.Client(base_url=page.url.split("/?")[0]) as c:
        result = c.get("/api/clusters").json()["result"]
    first = result["clusters"][0]
    assert cards[0]["name"] == first["name"]
    with page.expect_response(lambda r: f"/api/clusters/{first['id']}?" in r.url):
        page.click("#cluster-list .card >> nth=0")
    wait_until(page, f"document.querySelectorAll('.tile').length === {min(first['size'], 60)}")
    assert f"Cluster: {first['name']}" in page.inner_text("#meta") and not page.is_visible("#browsebar")
    page.click("#back-clusters")
    assert page.is_visible("#panel-clusters")


def test_duplicates_view_is_a_review_list_with_keepers(page, server_case: ServerCase) -> None:  # noqa: F811
    page.click("#tab-duplicates")
    notice = page.inner_text("#dups-notice")
    assert "nothing can be deleted" in notice
    wait_until(page, "document.querySelectorAll('#dup-list .group').length > 0", timeout=300)
    groups = page.locator("#dup-list .group")
    for i in range(groups.count()):
        group = groups.nth(i)
        assert group.locator(".member.keeper").count() == 1  # one suggested keeper per group
        assert "Suggested keeper:" in group.locator(".reason").inner_text()
        assert group.locator(".member").count() >= 2
    # The exact copy and its source are one group, side by side with their resolution and size.
    source, copy = server_case.extra["source"], server_case.extra["copy"]
    both = page.locator("#dup-list .group", has=page.locator(f".file[title='{copy}']")).filter(
        has=page.locator(f".file[title='{source}']"))
    assert both.count() == 1
    assert "Exact copies" in both.inner_text()
    with Image.open(source) as img:
        size = f"{img.width} × {img.height}"
    assert both.inner_text().count(size) >= 2
    # Nothing on the page can delete, move or change a file.
    controls = page.eval_on_selector_all(
        "main button, main a, main input, dialog button, dialog a",
        "els => els.map(e => `${e.textContent} ${e.getAttribute('aria-label')}`.toLowerCase())")
    assert not [c for c in controls if any(w in c for w in ("delete", "remove", "trash", "move to"))], controls
    # A member opens in the viewer, stepping through its group.
    both.locator(".member-thumb >> nth=0").click()
    wait_until(page, "document.getElementById('viewer').open")
    assert page.inner_text("#info-name") in (source.name, copy.name)
    page.keyboard.press("Escape")


def test_status_popover_counts_not_images_apart_from_unreadable(page, server_case: ServerCase) -> None:  # noqa: F811
    page.click("#status-pill")
    assert page.is_visible("#status-pop")
    rows = dict(zip(page.eval_on_selector_all("#status-list dt", "els => els.map(e => e.textContent)"),
                    page.eval_on_selector_all("#status-list dd", "els => els.map(e => e.textContent)"), strict=True))
    assert rows["Not images"] == str(server_case.extra["not_images"])  # README.md and a text file named .jpg
    assert rows["Unreadable"] == str(server_case.extra["unreadable"])  # a truncated JPEG
    assert rows["Images"] == str(len(indexed_rows(server_case)))


def test_view_tabs_work_from_the_keyboard_and_survive_a_reload(page, live_server) -> None:  # noqa: F811
    page.focus("#tab-photos")
    page.keyboard.press("ArrowRight")
    assert page.evaluate("document.activeElement.id") == "tab-tags" and page.is_visible("#panel-tags")
    assert page.get_attribute("#tab-tags", "aria-selected") == "true"
    page.keyboard.press("End")
    assert page.evaluate("document.activeElement.id") == "tab-duplicates"
    page.keyboard.press("Home")
    assert page.is_visible("#panel-photos")
    page.goto(f"{live_server.url}/?view=tags")
    wait_until(page, "document.querySelectorAll('#tag-list .chip').length > 0")
    assert page.get_attribute("#tab-tags", "aria-selected") == "true"
