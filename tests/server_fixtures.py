"""Shared fixtures of the server tests: a small real index, and a live server on a loopback port.

The index uses the best model at hand whose answers can be checked: the ShapesWorld `mini` model on a rendered
gallery when it ships, else the offline `conse` model on the generated test photos (tests/photo_tree.py), else
`random:tiny`
(then only checks that need no meaningful ranking run). Each case says what a right answer looks like.

Pytest registers a fixture once per module that imports it, so the built cases are memoised here: the index is
built once per test run and shared by the API and browser tests, which never modify it (re-index tests build
their own with `build_case`).
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from photo_tree import make_photo_tree
from PIL import Image

from pixquery.api import Library
from pixquery.server.app import create_app
from pixquery.server.limits import Limits
from pixquery.server.run import BackgroundServer

REPO = Path(__file__).resolve().parents[1]
MINI_DIR = REPO / "pixquery" / "data" / "mini"


@dataclass
class ServerCase:
    """An index plus the queries whose right answers are known."""

    index_dir: Path
    gallery: Path
    model: str
    meaningful: bool
    text_query: str = ""
    confident_query: str = ""
    """A text query whose answers the calibrated cut-off ("only confident matches") keeps (default: `text_query`).
    With `mini` a conjunction ("a red circle") stays below the null rule's least z on this small gallery, while a
    single attribute ("red") singles its three images out (docs/organize.md, the cut-off)."""
    relevant: Callable[[str], bool] = lambda name: True
    example_image: Path | None = None
    example_relevant: Callable[[str], bool] = lambda name: True
    compose_text: str = ""
    compose_relevant: Callable[[str], bool] = lambda name: True
    filter_folder: Path | None = None
    extra: dict[str, object] = field(default_factory=dict)


# --- galleries ------------------------------------------------------------------------------------------------


def _shapes_gallery(folder: Path) -> ServerCase:
    """Single-object ShapesWorld scenes, one folder per shape, file names saying what they show."""
    from pixquery.synth.render import render_scene
    from pixquery.synth.world import Obj, Scene

    rng = np.random.default_rng(7)
    for shape in ("circle", "square", "triangle", "star"):
        for colour in ("red", "blue", "green", "yellow"):
            for i in range(3):
                scene = Scene([Obj(shape, colour, "large", 0.5, 0.5)], "grey")
                path = folder / shape / f"{colour}-{shape}-{i}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                render_scene(scene, size=64, rng=rng).save(path)  # the size mini was trained at
    # One file in a format browsers cannot show, for the JPEG-rendition endpoint (not relevant to any query).
    odd = folder / "formats" / "purple-hexagon.tiff"
    odd.parent.mkdir(parents=True, exist_ok=True)
    render_scene(Scene([Obj("hexagon", "purple", "large", 0.5, 0.5)], "grey"), size=64, rng=rng).save(odd)
    return ServerCase(
        index_dir=Path(), gallery=folder, model="mini", meaningful=True,
        text_query="a red circle", relevant=lambda name: name.startswith("red-circle"), confident_query="red",
        example_image=folder / "square" / "blue-square-0.png", example_relevant=lambda name: "square" in name,
        compose_text="a yellow star", compose_relevant=lambda name: "star" in name or "yellow" in name,
        filter_folder=folder / "triangle",
    )


def _photos_gallery(folder: Path) -> ServerCase:
    """The real test photos, written afresh (so tests may add files to it)."""
    make_photo_tree(folder)

    def cats(name: str) -> bool:
        return "cat" in name.lower() or "kitty" in name.lower()

    return ServerCase(
        index_dir=Path(), gallery=folder, model="conse", meaningful=True,
        text_query="a cat", relevant=cats,
        example_image=folder / "flat" / "cat.jpg", example_relevant=cats,
        compose_text="a bee", compose_relevant=lambda name: "bee" in name.lower(),
        filter_folder=folder / "nested" / "cats",
    )


def _noise_gallery(folder: Path) -> ServerCase:
    """Coloured noise in two folders (random weights: only the mechanics can be checked)."""
    rng = np.random.default_rng(0)
    for sub in ("a", "b"):
        for i in range(12):
            pixels = np.clip(rng.integers(0, 255, 3) + rng.normal(0, 40, (96, 96, 3)), 0, 255).astype(np.uint8)
            path = folder / sub / f"img_{i:02d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(path, quality=85)
    return ServerCase(
        index_dir=Path(), gallery=folder, model="random:tiny", meaningful=False, text_query="a photo",
        example_image=folder / "a" / "img_00.jpg", compose_text="red", filter_folder=folder / "b",
    )


def _sane(case: ServerCase) -> bool:
    """Whether the model answers the case's queries right in-process (so a server test failing means the server)."""
    if not case.meaningful:
        return True
    with Library.open(case.index_dir) as lib:
        top = lib.search(text=case.text_query, k=1)
        similar = lib.search(images=[case.example_image], k=2)
    return bool(top) and case.relevant(Path(top[0].path).name) and any(
        case.example_relevant(Path(h.path).name) for h in similar
    )


def build_case(root: Path) -> ServerCase:
    """Build a gallery and its index under `root` with the best usable model (see the module docstring)."""
    builders: list[Callable[[Path], ServerCase]] = []
    if MINI_DIR.exists():
        builders.append(_shapes_gallery)
    builders.append(_photos_gallery)
    builders.append(_noise_gallery)
    for n, builder in enumerate(builders):
        base = root / f"case{n}"
        try:
            case = builder(base / "gallery")
            case.index_dir = base / "index"
            with Library.open(case.index_dir, model=case.model) as lib:
                lib.index([case.gallery], workers=2)
        except Exception as exc:  # a model that cannot load here: try the next one
            print(f"server tests: {builder.__name__} unusable ({type(exc).__name__}: {exc})")
            continue
        if _sane(case):
            return case
        print(f"server tests: model {case.model} ranks the test queries wrongly; trying the next model")
    raise RuntimeError("no model could build the server test index")


TAG_LABELS = {"mini": ["circle", "square", "triangle", "star"], "conse": ["cat", "bee", "camera", "boat", "flower"]}


def add_review_material(case: ServerCase) -> None:
    """What the page's views show besides search results, added to a built case and indexed: an exact copy and
    two dated JPEG renditions of one image (duplicates; browsing by date), a README and a text file named .jpg (not
    images), a truncated JPEG (unreadable), and one stored tag per image. Facts land in `case.extra`."""
    source = next(p for p in sorted(case.gallery.rglob("*")) if p.suffix.lower() in (".jpg", ".png")
                  and p != case.example_image and not case.relevant(p.name) and not case.example_relevant(p.name))
    review = case.gallery / "review"
    review.mkdir()
    copy = review / source.name  # the same bytes in another folder
    shutil.copyfile(source, copy)
    dated = {}
    for year in (2019, 2021):  # file names keep the source's, so name-based relevance checks still hold
        path = review / f"{source.stem}-{year}.jpg"
        exif = Image.Exif()
        exif[0x0132] = f"{year}:06:01 12:00:00"  # DateTime
        with Image.open(source) as img:
            img.convert("RGB").save(path, quality=92, exif=exif)
        dated[path.name] = f"{year}-06-01"
    (review / "README.md").write_text("Notes about these pictures.\n")
    (review / "letter.jpg").write_text("Dear reader, this is text with an image's name.\n")
    whole = io.BytesIO()
    Image.new("RGB", (320, 240), (30, 120, 200)).save(whole, "JPEG", quality=90)
    (review / "broken.jpg").write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])
    labels = TAG_LABELS.get(case.model, ["a photo", "a drawing", "a pattern"])
    with Library.open(case.index_dir) as lib:
        lib.index([case.gallery], workers=2)
        lib.tag(labels, threshold=None, top=1)  # always one tag per image, so every label count is known
        tagged = lib.tag_counts()
    case.extra.update(source=source, copy=copy, dated=dated, not_images=2, unreadable=1, tags=dict(tagged))


_cases: dict[str, ServerCase] = {}


def shared_case(tmp_path_factory: pytest.TempPathFactory) -> ServerCase:
    """The index shared by all server tests of this run (built on first use, with the views' review material)."""
    if "shared" not in _cases:
        case = build_case(tmp_path_factory.mktemp("server-index"))
        add_review_material(case)
        _cases["shared"] = case
    return _cases["shared"]


# --- fixtures -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def server_case(tmp_path_factory: pytest.TempPathFactory) -> ServerCase:
    return shared_case(tmp_path_factory)


@pytest.fixture(scope="module")
def live_server(server_case: ServerCase) -> Iterator[BackgroundServer]:
    """A server on the shared index with roomy limits (rate-limit tests start their own)."""
    limits = Limits(search_rate=10_000, search_burst=10_000, media_rate=10_000, media_burst=10_000)
    app = create_app(server_case.index_dir, limits=limits)
    with BackgroundServer(app) as server:
        yield server


def png_bytes(size: tuple[int, int] = (64, 48), colour: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    """A small PNG in memory."""
    import io

    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "PNG")
    return buffer.getvalue()
