"""A hostile world: a folder full of traps is indexed under a time limit and a memory cap, a served file swapped for a
link out of the roots is never served, preprocessing is bounded for any shape, and schemathesis finds no 5xx and no
schema violation on a live server.

Everything hostile is made here, in the test (FIFOs, sockets, device links, link loops, names that are not UTF-8,
files that vanish or turn into FIFOs mid-run, 1 x 1,000,000 PNGs, lying headers).
"""

from __future__ import annotations

import io
import json
import os
import socket
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pixquery.api import Library
from pixquery.models.preprocess import ImagePreprocessor, PreprocessConfig
from pixquery.store.catalog import Catalog
from pixquery.store.where import Filter, FolderUnder

REPO = Path(__file__).resolve().parents[1]
MEMORY_CAP = 1536 * 1024 * 1024
"""Address space of the indexing child: a 1 x 1,000,000 PNG once needed ~2 GB and then raised MemoryError."""
TIME_LIMIT_S = 240
NON_UTF8 = b"caf\xe9 \xff.png"


def _png(path: Path | str, size: tuple[int, int], colour: int | tuple[int, int, int] = (200, 40, 40)) -> None:
    mode = "L" if isinstance(colour, int) else "RGB"
    Image.new(mode, size, colour).save(path)


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose header claims width x height and holds no pixel data (a lying, tiny file)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = chunk(b"IDAT", zlib.compress(b"\0" * 64))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + idat + chunk(b"IEND", b""))


def _bind_socket(folder: Path, name: str) -> socket.socket:
    """A listening UNIX socket named `name` in `folder` (bound by a relative name: the full path may be too long)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    here = os.getcwd()
    try:
        os.chdir(folder)
        sock.bind(name)
    finally:
        os.chdir(here)
    return sock


def build_hostile_folder(base: Path) -> dict[str, object]:
    """Good photos beside every kind of trap. Returns the good names, the hostile names with the reason expected
    (a fragment of it), and the names the child process changes mid-run."""
    root, outside = base / "photos", base / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    good = {"red.png": (64, 48), "sub/blue.jpg": (48, 64), "thin-100k.png": (1, 100_000),
            "thin-1m.png": (1, 1_000_000), "wide-1m.png": (1_000_000, 1), "vanish-late.png": (40, 40),
            "fifo-late.png": (40, 40)}
    for n, (name, size) in enumerate(good.items()):
        colour = (40 * n % 256, 200, 90) if size[0] > 1 and size[1] > 1 else n * 30
        if name.endswith(".png"):
            _png(root / name, size, colour)
        else:
            Image.new("RGB", size, "blue").save(root / name)
    # A name that is not UTF-8: kept losslessly, indexed like any photo.
    _png(os.path.join(os.fsencode(root), NON_UTF8), (32, 32), (10, 220, 10))
    # One outside file reached through a file link and through a folder link: indexed once.
    _png(outside / "elsewhere.png", (30, 30), (90, 90, 250))
    (root / "linked-file.png").symlink_to(outside / "elsewhere.png")
    (root / "linked-folder").symlink_to(outside, target_is_directory=True)

    hostile: dict[str, str] = {}
    os.mkfifo(root / "photo.jpg")
    hostile["photo.jpg"] = "named pipe"
    os.mkfifo(base / "outside-fifo")
    (root / "link-to-fifo.jpg").symlink_to(base / "outside-fifo")
    hostile["link-to-fifo.jpg"] = "named pipe"
    (root / "zero.jpg").symlink_to("/dev/zero")
    hostile["zero.jpg"] = "character device"
    (root / "urandom.png").symlink_to("/dev/urandom")
    hostile["urandom.png"] = "character device"
    hostile["socket.jpg"] = "socket"
    (root / "self.jpg").symlink_to("self.jpg")
    hostile["self.jpg"] = "symbolic link loop"
    (root / "a.jpg").symlink_to("b.jpg")
    (root / "b.jpg").symlink_to("a.jpg")
    hostile["a.jpg"] = hostile["b.jpg"] = "symbolic link loop"
    (root / "loop-one").symlink_to("loop-two")  # a folder link loop: neither can be entered
    (root / "loop-two").symlink_to("loop-one")
    hostile["loop-one"] = hostile["loop-two"] = "symbolic link loop"
    (root / "sub" / "up").symlink_to("..", target_is_directory=True)  # a link back to an ancestor
    hostile["up"] = "already scanned"
    (root / "dangling.jpg").symlink_to(base / "nowhere.jpg")
    hostile["dangling.jpg"] = "broken symbolic link"
    (root / "empty.jpg").write_bytes(b"")
    hostile["empty.jpg"] = "not an image"
    (root / "text.png").write_text("I am not a picture")
    hostile["text.png"] = "not an image"
    buffer = io.BytesIO()
    Image.new("RGB", (256, 256), "red").save(buffer, "JPEG", quality=90)
    (root / "truncated.jpg").write_bytes(buffer.getvalue()[:400])
    hostile["truncated.jpg"] = "corrupt or truncated"
    (root / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(2000))
    hostile["corrupt.jpg"] = ""  # "corrupt or truncated" or "not an image": either names the file's fault
    _png_header_only(root / "huge-header.png", 100_000, 100_000)
    hostile["huge-header.png"] = "too large"
    if os.geteuid() != 0:  # root reads any file whatever its mode
        _png(root / "unreadable.png", (8, 8))
        (root / "unreadable.png").chmod(0)
        hostile["unreadable.png"] = "permission denied"
    # Changed by the child between discovery and hashing, and between hashing and decoding.
    for name in ("vanish-early.png", "fifo-early.png"):
        _png(root / name, (40, 40), (0, 0, 200))
    hostile["vanish-early.png"] = "no longer exists"
    hostile["fifo-early.png"] = "named pipe"
    hostile["vanish-late.png"] = "no longer exists"
    hostile["fifo-late.png"] = "named pipe"
    for name in ("vanish-late.png", "fifo-late.png"):
        del good[name]
    return {"root": root, "good": sorted(good) + [os.fsdecode(NON_UTF8), "linked-file.png"], "hostile": hostile}


CHILD = r"""
import json, os, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[3]), int(sys.argv[3])))
import pixquery.indexing as indexing
from pixquery.api import Library

root, index_dir = sys.argv[1], sys.argv[2]
real_discover = indexing.discover

def swap(name, fifo):
    path = os.path.join(root, name)
    os.unlink(path)
    if fifo:
        os.mkfifo(path)

def discover_then_change(*args, **kwargs):
    found = real_discover(*args, **kwargs)
    swap("vanish-early.png", False)  # found, then gone before it is read
    swap("fifo-early.png", True)     # found as a photo, a FIFO when hashing opens it
    return found

def progress(stage, done, total):
    if stage == "hash" and done == total and os.path.exists(os.path.join(root, "vanish-late.png")):
        swap("vanish-late.png", False)  # hashed, gone before decoding
        swap("fifo-late.png", True)     # hashed, a FIFO when decoding opens it

indexing.discover = discover_then_change
with Library.open(index_dir, model="mini") as lib:
    report = lib.index([root], workers=2, batch_size=4, progress=progress).to_dict()
    rows = [{"path": r.path, "status": r.status, "error": r.error, "device": r.device, "inode": r.inode}
            for r in lib.catalog.all_files()]
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"report": report, "rows": rows, "peak_mb": peak_mb}))
"""


def test_a_hostile_folder_is_indexed_under_a_time_limit_and_a_memory_cap(tmp_path: Path) -> None:
    folder = build_hostile_folder(tmp_path)
    sock = _bind_socket(folder["root"], "socket.jpg")
    try:
        done = subprocess.run(
            [sys.executable, "-c", CHILD, str(folder["root"]), str(tmp_path / "index"), str(MEMORY_CAP)],
            capture_output=True, text=True, timeout=TIME_LIMIT_S, cwd=REPO, errors="surrogateescape",
        )
    finally:
        sock.close()
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    root = str(folder["root"])
    rel = {os.path.relpath(r["path"], root): r for r in result["rows"]}

    indexed = {name for name, row in rel.items() if row["status"] == "indexed"}
    assert indexed == set(folder["good"]), (indexed, folder["good"])
    # The outside file, reachable as linked-file.png and linked-folder/elsewhere.png, has one row.
    inodes = [(r["device"], r["inode"]) for r in result["rows"]]
    assert len(inodes) == len(set(inodes))
    assert "linked-folder/elsewhere.png" not in rel

    reasons: dict[str, str] = {}
    for item in result["report"]["skipped"]:
        reasons[os.path.basename(item["path"])] = item["reason"]
    for name, row in rel.items():
        if row["status"] == "error":
            reasons[os.path.basename(name)] = row["error"]
    for name, expected in folder["hostile"].items():
        assert name in reasons, f"{name} was not reported (reported: {sorted(reasons)})"
        assert reasons[name] and expected in reasons[name], (name, reasons[name])
    assert "same file as" in reasons["elsewhere.png"]
    # Nothing hostile became a row that claims to be indexed.
    assert not indexed & set(folder["hostile"])


def test_the_cli_prints_a_name_that_is_not_utf8_and_keeps_it_lossless(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    root.mkdir()
    _png(os.path.join(os.fsencode(root), NON_UTF8), (32, 32))
    _png(root / "plain.png", (32, 32), (0, 0, 255))
    cli = [sys.executable, "-m", "pixquery"]
    index = ["--index", str(tmp_path / "index")]
    done = subprocess.run([*cli, "index", str(root), *index, "--model", "mini", "--json"], capture_output=True,
                          cwd=REPO, timeout=TIME_LIMIT_S)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert json.loads(done.stdout)["embedded"] == 2
    with Library.open(tmp_path / "index") as lib:
        paths = {row.path for row in lib.catalog.all_files()}
        expected = os.fsdecode(os.path.join(os.fsencode(root), NON_UTF8))
        assert expected in paths and lib.catalog.by_path(expected) is not None
        assert os.fsencode(expected) == os.path.join(os.fsencode(root), NON_UTF8)
    search = subprocess.run([*cli, "search", "a photo", *index, "--cutoff", "none"], capture_output=True,
                            cwd=REPO, timeout=TIME_LIMIT_S)
    assert search.returncode == 0, search.stderr.decode(errors="replace")
    assert b"caf\\xe9 \\xff.png" in search.stdout  # shown with escapes, never a crash


def test_the_catalog_keeps_non_utf8_paths_and_filters_their_folders(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "catalog.sqlite")
    odd_folder = os.fsdecode(b"/photos/\xff\xfe")
    path = odd_folder + "/x.png"
    file_id = catalog.insert(path, odd_folder, "png", 10, 1, "h1")
    plain = catalog.insert("/photos/plain/y.png", "/photos/plain", "png", 10, 1, "h2")
    for i in (file_id, plain):
        catalog.mark_indexed(i, {"camera_make": "Nikon \udcff"})  # metadata text that cannot be UTF-8 either
    catalog.commit()
    assert catalog.get(file_id).path == path and catalog.by_path(path).id == file_id
    assert dict(catalog.folders()) == {odd_folder: 1, "/photos/plain": 1}
    assert catalog.select_ids(Filter((FolderUnder(("/photos",)),))) == [file_id, plain]
    assert catalog.select_ids(Filter((FolderUnder((odd_folder,)),))) == [file_id]
    assert catalog.by_path("/photos/\ud800") is None  # a lone surrogate no file name holds: no match, no crash
    catalog.close()


# --- preprocessing is bounded for any shape --------------------------------------------------------------------


def _noise(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))


def _reference(img: Image.Image, cfg: PreprocessConfig, resample: int) -> np.ndarray:
    """The unbounded reference path: resize the whole image, then crop (shortest) or pad (longest), or squash."""
    size, (width, height) = cfg.size, img.size
    if cfg.resize_mode == "squash":
        return np.asarray(img.resize((size, size), resample), np.int16)
    if cfg.resize_mode == "longest":
        scale = size / max(width, height)
        new = (max(1, round(width * scale)), max(1, round(height * scale)))
        canvas = Image.new("RGB", (size, size))
        canvas.paste(img.resize(new, resample), ((size - new[0]) // 2, (size - new[1]) // 2))
        return np.asarray(canvas, np.int16)
    long_side = int(size * max(width, height) / min(width, height))
    new = (size, long_side) if width <= height else (long_side, size)
    offset = ImagePreprocessor(cfg)._offset
    left, top = offset(new[0] - size), offset(new[1] - size)
    return np.asarray(img.resize(new, resample).crop((left, top, left + size, top + size)), np.int16)


@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear", "lanczos"])
@pytest.mark.parametrize("rounding", ["half_even", "floor"])
@pytest.mark.parametrize("shape", [(40, 2000), (2000, 40), (300, 6000), (6000, 300), (7, 30000), (1, 5000)])
def test_extreme_shapes_give_the_reference_pixels_without_the_reference_cost(
    interpolation: str, rounding: str, shape: tuple[int, int]
) -> None:
    """Aspect ratios past 16:1 take the bounded path; its pixels match the whole-image reference within one level
    (random noise: the hardest case for resampling differences)."""
    cfg = PreprocessConfig(size=224, mean=(0.5,) * 3, std=(0.5,) * 3, interpolation=interpolation,
                           crop_rounding=rounding)
    ours = ImagePreprocessor(cfg)
    img = _noise(*shape)
    got = np.asarray(ours.resize(img), np.int16)
    assert got.shape == (224, 224, 3)
    assert int(np.abs(got - _reference(img, cfg, ours._resample)).max()) <= 1


@pytest.mark.parametrize("mode", ["squash", "longest"])
def test_huge_downscales_stay_within_rounding_of_the_exact_filter(mode: str) -> None:
    cfg = PreprocessConfig(size=224, mean=(0.5,) * 3, std=(0.5,) * 3, resize_mode=mode)
    ours = ImagePreprocessor(cfg)
    for shape in ((3, 80_000), (80_000, 3), (40, 60_000)):
        img = _noise(*shape, seed=shape[0])
        diff = np.abs(np.asarray(ours.resize(img), np.int16) - _reference(img, cfg, ours._resample))
        assert int(diff.max()) <= 3 and float(diff.mean()) < 0.25, (shape, diff.max(), diff.mean())


def test_ordinary_shapes_are_resized_exactly_as_the_reference() -> None:
    for mode in ("shortest", "squash", "longest"):
        cfg = PreprocessConfig(size=224, mean=(0.5,) * 3, std=(0.5,) * 3, resize_mode=mode)
        ours = ImagePreprocessor(cfg)
        for shape in ((640, 427), (427, 640), (3000, 200), (224, 224), (50, 80)):
            img = _noise(*shape)
            assert np.array_equal(np.asarray(ours.resize(img), np.int16), _reference(img, cfg, ours._resample))


def test_conse_preprocessing_of_a_strip_is_bounded() -> None:
    from pixquery.models.conse import preprocess_image

    for shape in ((1, 1_000_000), (1_000_000, 1)):
        pixels = preprocess_image(Image.new("RGB", shape, (120, 30, 200)), 224)
        assert pixels.shape == (3, 224, 224) and np.isfinite(pixels).all()


# --- the server never serves what was not indexed --------------------------------------------------------------


def test_a_swapped_file_is_never_served(tmp_path: Path) -> None:
    pytest.importorskip("fastapi")
    import httpx

    from pixquery.server.app import create_app
    from pixquery.server.run import BackgroundServer

    root, outside = tmp_path / "photos", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    for name, colour in (("a.png", (250, 0, 0)), ("b.png", (0, 250, 0)), ("c.png", (0, 0, 250)),
                         ("d.png", (250, 250, 0))):
        _png(root / name, (64, 64), colour)
    secret = outside / "secret.png"
    _png(secret, (64, 64), (1, 2, 3))
    secret_bytes = secret.read_bytes()
    with Library.open(tmp_path / "index", model="mini") as lib:
        lib.index([root], workers=1)
        ids = {Path(r.path).name: r.id for r in lib.catalog.all_files()}

    # Swapped after indexing: a link to a file outside the roots, another file of the same size (and mtime), and
    # a link to /etc/passwd.
    (root / "a.png").unlink()
    (root / "a.png").symlink_to(secret)
    stat_b = (root / "b.png").stat()
    (root / "b.png").unlink()
    (root / "b.png").write_bytes(secret_bytes[: stat_b.st_size].ljust(stat_b.st_size, b"\0"))
    os.utime(root / "b.png", ns=(stat_b.st_atime_ns, stat_b.st_mtime_ns))
    (root / "c.png").unlink()
    (root / "c.png").symlink_to("/etc/passwd")

    app = create_app(tmp_path / "index", warm_thumbs=0)
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        for name in ("a.png", "b.png", "c.png"):
            file_id = ids[name]
            for url in (f"/api/image/{file_id}", f"/api/image/{file_id}?download=true", f"/api/thumb/{file_id}"):
                response = client.get(url)
                assert response.status_code in (404, 409), (name, url, response.status_code)
                assert response.json()["error"] in ("changed", "missing", "unreadable"), response.text
                assert "re-index" in response.json()["detail"]
                assert secret_bytes not in response.content and b"root:" not in response.content
            # "More like this" works from the stored vector, whatever became of the file.
            similar = client.get(f"/api/similar/{file_id}", params={"k": 3})
            assert similar.status_code == 200 and similar.json()["count"] == 3
        intact = client.get(f"/api/image/{ids['d.png']}")
        assert intact.status_code == 200 and intact.content == (root / "d.png").read_bytes()


# --- schemathesis against a live server ------------------------------------------------------------------------

SCHEMATHESIS_CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
                       "response_headers_conformance,response_schema_conformance,allow_header_conformance,"
                       "unsupported_method")


def test_schemathesis_finds_no_server_error_and_no_schema_violation(tmp_path: Path) -> None:
    """A bounded, seeded run (a few hundred requests) of every operation, on an index holding a name that is not
    UTF-8 and a format browsers cannot show."""
    pytest.importorskip("schemathesis", reason="schemathesis is in the dev extra: pip install -e '.[dev]'")
    pytest.importorskip("fastapi")
    from pixquery.server.app import create_app
    from pixquery.server.limits import Limits
    from pixquery.server.run import BackgroundServer

    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    for n, colour in enumerate(("red", "green", "blue", "yellow")):
        Image.new("RGB", (48 + n, 40), colour).save(root / ("sub" if n % 2 else ".") / f"{colour}.png")
    Image.new("RGB", (40, 40), "purple").save(root / "odd.tiff")
    _png(os.path.join(os.fsencode(root), NON_UTF8), (32, 32))
    with Library.open(tmp_path / "index", model="mini") as lib:
        lib.index([root], workers=1)
    limits = Limits(search_rate=10_000, search_burst=10_000, media_rate=10_000, media_burst=10_000)
    app = create_app(tmp_path / "index", limits=limits, warm_thumbs=0)
    with BackgroundServer(app) as server:
        done = subprocess.run(
            [sys.executable, "-m", "schemathesis.cli", "run", f"{server.url}/openapi.json", "--checks",
             SCHEMATHESIS_CHECKS, "--max-examples", "3", "--seed", "17", "--phases", "coverage,fuzzing,stateful",
             "--max-time", "60", "--no-color", "--output-truncate", "true", "--workers", "1",
             "--report", "json", "--report-dir", str(tmp_path / "report")],
            capture_output=True, text=True, timeout=300, cwd=tmp_path,
        )
    output = (done.stdout + done.stderr)[-6000:]
    report = json.loads(next((tmp_path / "report").glob("*.json")).read_text())
    assert done.returncode == 0 and report["exit_code"] == 0, output
    assert report["failures"] == [] and report["errors"] == [], output
    # Boundary values of every parameter and body field (coverage), random ones (fuzzing), and call sequences
    # (stateful): about 1,400 requests in 20 s here.
    assert report["test_cases"]["generated"] >= 300 and report["test_cases"]["with_failures"] == 0, output
    assert report["operations"]["tested"] == report["operations"]["total"] >= 11


def test_a_reference_image_of_a_composed_query_is_read_only_while_it_is_the_file_indexed(tmp_path: Path) -> None:
    # Captioner plugins may ask a reference for its pixels (`Reference.pil`); for an indexed image they come through
    # the facade's verified reader, so a file swapped for a link outside the roots never reaches them.
    from pixquery.errors import StaleFileError
    from pixquery.query.engine import _references
    from pixquery.query.spec import WeightedImage

    root, outside = tmp_path / "photos", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    _png(root / "a.png", (64, 64), (250, 0, 0))
    _png(root / "b.png", (64, 64), (0, 250, 0))
    _png(outside / "secret.png", (64, 48), (1, 2, 3))
    with Library.open(tmp_path / "index", model="mini") as lib:
        lib.index([root], workers=1)
        file_id = next(r.id for r in lib.catalog.all_files() if Path(r.path).name == "a.png")
        ctx = lib.context()
        vectors = lib.store.get(np.array([file_id]))
        (reference,) = _references([WeightedImage(catalog_id=file_id)], vectors, ctx)
        assert reference.pil().size == (64, 64) and reference.pil().getpixel((0, 0))[0] > 200
        (root / "a.png").unlink()
        (root / "a.png").symlink_to(outside / "secret.png")
        (swapped,) = _references([WeightedImage(catalog_id=file_id)], vectors, ctx)
        with pytest.raises(StaleFileError):
            swapped.pil()
