"""Duplicate groups: copies, re-encodings and crops are found, a keeper is suggested, and nothing is ever deleted."""

from __future__ import annotations

import itertools
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from pixquery.api import Library
from pixquery.media.decode import open_image
from pixquery.models.base import ModelError
from pixquery.models.registry import load_encoder
from pixquery.organize.dedup import (
    Fingerprint,
    Link,
    choose_keeper,
    connected_groups,
    exact_links,
    fingerprint,
    near_links,
    sharpness,
    split_chains,
)
from pixquery.store.catalog import FileRow
from pixquery.synth.emit import write_set

DEMO_PHOTOS = Path(__file__).resolve().parents[1] / "pixquery" / "data" / "demo_photos"


def _row(i: int, path: str, width: int, height: int, mtime_s: float = 1e9, taken_at: str | None = None) -> FileRow:
    return FileRow(id=i, path=path, folder="/", ext="jpg", size=1000, mtime_ns=int(mtime_s * 1e9), content_hash=str(i),
                   status="indexed", error=None, width=width, height=height, format="JPEG", taken_at=taken_at,
                   camera_make=None, camera_model=None, gps_lat=None, gps_lon=None, added_at=0.0, indexed_at=0.0)


def test_links_join_into_groups() -> None:
    assert [(link.a, link.b) for link in exact_links(["x", "y", "x", "x"])] == [(0, 2), (0, 3)]
    prints = [Fingerprint(h) if h is not None else None for h in (0b0, 0b111, 0xFFFF, None, 0b1)]
    assert {(link.a, link.b) for link in near_links(prints, 3)} == {(0, 1), (0, 4), (1, 4)}
    # Same grey hash, different colour hashes: a recoloured object, not a copy. A grey image has no colour hash.
    coloured = [Fingerprint(0, (0, 0)), Fingerprint(0, (2**40 - 1, 0)), Fingerprint(0, None)]
    assert {(link.a, link.b) for link in near_links(coloured, 3)} == {(0, 2), (1, 2)}
    links = [Link(0, 1, "exact", 0), Link(1, 2, "near", 2), Link(4, 5, "semantic", 0.99)]
    assert connected_groups(6, links) == [[0, 1, 2], [4, 5]]
    assert connected_groups(3, []) == []


def test_chains_of_separate_groups_are_split_again() -> None:
    # Two tight groups of four joined by a single link (3-4): one component, two groups.
    tight = {frozenset(p) for g in ([0, 1, 2, 3], [4, 5, 6, 7]) for p in itertools.combinations(g, 2)}
    tight.add(frozenset((3, 4)))

    def linked(members: list[int]) -> np.ndarray:
        return np.array([[a == b or frozenset((a, b)) in tight for b in members] for a in members])

    assert split_chains([list(range(8))], linked) == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_the_keeper_is_the_largest_then_the_sharpest_then_the_oldest() -> None:
    rows = [_row(1, "/a/small.jpg", 800, 600), _row(2, "/a/big.jpg", 1600, 1200)]
    assert choose_keeper(rows, lambda row: 1.0) == (1, "largest (1600x1200 px)")
    same = [_row(1, "/a/soft.jpg", 800, 600), _row(2, "/a/crisp.jpg", 800, 600)]
    keeper, reason = choose_keeper(same, lambda row: 0.5 if "soft" in row.path else 1.0)
    assert keeper == 1 and reason.startswith("sharpest")
    dated = [_row(1, "/a/new.jpg", 800, 600, mtime_s=2e9),
             _row(2, "/b/old.jpg", 800, 600, taken_at="2001-05-01T10:00:00")]
    keeper, reason = choose_keeper(dated, lambda row: 1.0)
    assert keeper == 1 and "2001-05-01" in reason


def test_the_keeper_reason_never_claims_a_difference_that_is_not_there() -> None:
    same_day = [_row(1, "/photos/b/copy.jpg", 800, 600, mtime_s=1e9 + 1), _row(2, "/photos/a.jpg", 800, 600, 1e9)]
    keeper, reason = choose_keeper(same_day, lambda row: 1.0)  # a second apart: one date, not "oldest"
    assert keeper == 1 and reason == "same size, sharpness and date: the shortest path"
    older = [_row(1, "/photos/b/first.jpg", 800, 600, mtime_s=1e9), _row(2, "/photos/a.jpg", 800, 600, 2e9)]
    assert choose_keeper(older, lambda row: 1.0)[1].startswith("oldest (file dated")
    both_taken = [_row(1, "/p/x.jpg", 800, 600, taken_at="2001-05-01T10:00:00"),
                  _row(2, "/p/y.jpg", 800, 600, taken_at="2001-05-01T10:00:00")]
    assert "oldest" not in choose_keeper(both_taken, lambda row: 1.0)[1]


def test_fingerprints_survive_recompression_and_sharpness_sees_blur(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    blocks = (rng.random((32, 32, 3)) * 255).astype(np.uint8)
    base = Image.fromarray(blocks).resize((256, 256), Image.Resampling.NEAREST)  # hard edges: fine detail
    base.save(tmp_path / "a.png")
    base.save(tmp_path / "b.jpg", quality=20)
    base.filter(ImageFilter.GaussianBlur(3)).save(tmp_path / "c.png")
    a, b = (fingerprint(open_image(tmp_path / n, target_size=256)) for n in ("a.png", "b.jpg"))
    assert bin(a.phash ^ b.phash).count("1") <= 4
    assert a.chroma is not None and b.chroma is not None
    crisp, compressed, blurred = (sharpness(open_image(tmp_path / n)) for n in ("a.png", "b.jpg", "c.png"))
    assert blurred < 0.5 * crisp
    assert compressed == pytest.approx(crisp, rel=0.1)  # JPEG blocks are not mistaken for detail


@pytest.fixture(scope="module")
def photo_lib(tmp_path_factory: pytest.TempPathFactory, photos_dir: Path) -> Library:
    lib = Library.open(tmp_path_factory.mktemp("photos_index"), model="conse")
    lib.index([photos_dir])
    yield lib
    lib.close()


def _groups_and_thresholds(lib: Library, **options: object) -> tuple[list[dict], dict]:
    report = lib.duplicates(**options)
    return report["groups"], report["thresholds"]


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


def test_the_same_photo_in_several_folders_and_formats_is_one_group(photo_lib: Library, photos_dir: Path) -> None:
    before = _snapshot(photos_dir)
    groups, used = _groups_and_thresholds(photo_lib, kinds=("exact", "near"))
    json.dumps(groups)
    assert _snapshot(photos_dir) == before  # nothing deleted, moved or touched
    names = [{str(Path(m["path"]).relative_to(photos_dir)) for m in g["members"]} for g in groups]
    bees = next(n for n in names if "heic/bee.heic" in n)
    assert {"flat/bee.jpg", "nested/misc/bees/bee.jpg", "heic/bee.jpg", "heic/bee.heic"} <= bees
    assert {"flat/cake.jpg", "nested/cake.jpg"} in names
    assert not any({"flat/cat.jpg", "flat/cautious cat.jpg"} <= n for n in names)  # two cats are not one photo
    bee_group = next(g for g in groups if "heic/bee.heic" in {str(Path(m["path"]).relative_to(photos_dir))
                                                               for m in g["members"]})
    assert set(bee_group["kinds"]) == {"exact", "near"} and bee_group["reason"] and bee_group["tier"] == "near"
    assert sum(m["keeper"] for m in bee_group["members"]) == 1
    assert {k: used[k] for k in ("near", "chroma", "aspect")} == {"near": 10, "chroma": 20, "aspect": 0.08}
    assert 0.0 < used["near_cosine"] < 1.0  # calibrated on edited copies of these photos


def test_similar_photos_use_a_threshold_calibrated_once_per_model(photo_lib: Library, photos_dir: Path) -> None:
    report = photo_lib.duplicates(kinds=("semantic",))  # the old name of the similar tier is still understood
    used = report["thresholds"]
    assert 0.5 < used["similar"] < 1.0 and report["groups"] == [] and report["removable"] == 0
    assert photo_lib.catalog is not None
    assert float(photo_lib.catalog.get_meta("dedup.semantic_threshold:conse")) == used["similar_copies"]
    assert used["similar"] == max(used["similar_copies"], used["similar_floor"])
    names = [{Path(m["path"]).name for m in g["members"]} for g in report["similar"]]
    assert any({"cake.jpg"} == n for n in names)  # the copies of one photo embed identically
    assert all("keeper" not in m for g in report["similar"] for m in g["members"])  # similar is never removable
    fixed = photo_lib.duplicates(kinds=("similar",), thresholds={"semantic": 0.9999})
    assert fixed["thresholds"]["similar"] == 0.9999


@pytest.fixture(scope="module")
def demo_copies(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The 21 shipped demo photos (several different cats among them) plus a re-encoded and a half-size copy of one
    photo, indexed with conse and checked for duplicates with the defaults."""
    folder = tmp_path_factory.mktemp("demo") / "photos"
    shutil.copytree(DEMO_PHOTOS, folder)
    original = open_image(folder / "cautious cat.jpg")
    original.save(folder / "cautious cat (re-saved).jpg", quality=70)
    original.resize((original.width // 2, original.height // 2)).save(folder / "cautious cat small.jpg")
    for path in folder.iterdir():  # one date for every file
        os.utime(path, (1e9, 1e9))
    with Library.open(folder.parent / "index", model="conse") as lib:
        lib.index([folder])
        return folder, lib.duplicates()


def test_distinct_but_similar_photos_are_never_removable(demo_copies: tuple[Path, dict]) -> None:
    folder, report = demo_copies
    groups = [{Path(m["path"]).name for m in g["members"]} for g in report["groups"]]
    assert groups == [{"cautious cat.jpg", "cautious cat (re-saved).jpg", "cautious cat small.jpg"}]
    assert report["removable"] == 2 and report["groups"][0]["keeper"]["path"].endswith("/cautious cat.jpg")
    # The original and its re-save tie on size and sharpness, and every file has one date: never "oldest".
    assert report["groups"][0]["reason"] == "same size, sharpness and date: the shortest path"
    # The three black cats are different photos of one subject: at most "similar", and nothing there is removable.
    for group in report["similar"]:
        assert all("keeper" not in m for m in group["members"])
    assert all((folder / name).exists() for group in groups for name in group)  # nothing deleted


def test_unknown_kinds_and_empty_collections(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with Library.open(tmp_path / "index", model="conse") as lib:
        lib.index([tmp_path / "empty"])
        assert lib.duplicates()["groups"] == []
        with pytest.raises(ValueError, match="unknown duplicate kinds"):
            lib.duplicates(kinds=("fuzzy",))


@pytest.fixture(scope="module")
def mini():
    try:
        return load_encoder("mini")
    except ModelError as exc:
        pytest.skip(f"the mini model is not shipped yet: {exc}")


def test_planted_shapesworld_duplicates_are_found(mini, tmp_path: Path) -> None:
    write_set(tmp_path / "synth", n=12, seed=3, kinds=("dedup",), progress=False)
    truth = json.loads((tmp_path / "synth" / "dedup" / "pairs.json").read_text(encoding="utf-8"))
    with Library.open(tmp_path / "index", model="mini") as lib:
        lib.index([tmp_path / "synth" / "dedup" / "images"])
        report = lib.duplicates()
    # Found at all, in either tier: a similar group holds a duplicate group's keeper, so groups sharing a file join.
    merged: list[set[str]] = []
    for group in report["groups"] + report["similar"]:
        names = {Path(m["path"]).name for m in group["members"]}
        touching = [m for m in merged if m & names]
        merged = [m for m in merged if not m & names] + [names.union(*touching)]
    group_of = {name: number for number, names in enumerate(merged) for name in names}

    def together(pair: dict) -> bool:
        return pair["a"] in group_of and group_of[pair["a"]] == group_of.get(pair["b"])

    found = np.mean([together(p) for p in truth["pairs"] if p["duplicate"]])
    unrelated = np.mean([together(p) for p in truth["pairs"] if p["kind"] == "unrelated scene"])
    # The one-attribute edits (a star recoloured, moved or resized) are hard negatives: a perceptual hash barely
    # changes when a small object does, so some are grouped; docs/organize.md reports how many.
    edited = np.mean([together(p) for p in truth["pairs"] if p["kind"].startswith("edited")])
    assert found >= 0.8 and unrelated <= 0.1 and edited <= 0.75, (found, unrelated, edited)
    assert all((tmp_path / "synth" / "dedup" / "images" / name).exists() for name in group_of)  # nothing deleted
