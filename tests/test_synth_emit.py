"""ShapesWorld emitters: a user writes evaluation sets and reads them back as the real benchmarks' files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from PIL import Image

from pixquery.synth.captions import caption_involves_heldout, tokenize
from pixquery.synth.emit import synth_command, write_set
from pixquery.synth.world import COLOURS, DEFAULT_HELDOUT, SHAPES, HeldOut, Scene, involves_heldout

N = 10


@pytest.fixture(scope="module")
def emitted(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("shapesworld")
    manifest = write_set(out, n=N, seed=3, progress=False)
    return out, manifest


def digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_writes_byte_identical_files_and_another_seed_does_not(tmp_path):
    kinds = ("retrieval", "cir", "classification", "dedup")
    write_set(tmp_path / "a", n=3, seed=7, kinds=kinds, progress=False)
    write_set(tmp_path / "b", n=3, seed=7, kinds=kinds, progress=False)
    write_set(tmp_path / "c", n=3, seed=8, kinds=kinds, progress=False)
    a, b, c = digests(tmp_path / "a"), digests(tmp_path / "b"), digests(tmp_path / "c")
    assert len(a) > 50 and a == b
    shared_images = [k for k in a if k.endswith((".png", ".jpg")) and k in c]
    assert shared_images and all(a[k] != c[k] for k in shared_images)


def test_manifest_records_seed_heldout_counts_and_version(emitted):
    out, manifest = emitted
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk == manifest
    assert manifest["seed"] == 3 and manifest["n"] == N and manifest["version"].startswith("shapesworld")
    assert HeldOut.from_dict(manifest["heldout"]) == DEFAULT_HELDOUT
    assert manifest["counts"]["retrieval"]["images"] == N
    assert manifest["counts"]["cir"]["images"] == 6 * N
    for rel in manifest["paths"].values():
        assert (out / rel).exists()


def test_karpathy_json_has_five_consistent_sentences_per_image(emitted):
    out, _ = emitted
    data = json.loads((out / "retrieval" / "dataset_shapesworld.json").read_text())
    assert data["dataset"] == "shapesworld" and len(data["images"]) == N
    all_sentids = []
    for i, img in enumerate(data["images"]):
        assert img["imgid"] == i and img["split"] == "test"
        assert len(img["sentences"]) == 5 and img["sentids"] == [s["sentid"] for s in img["sentences"]]
        for s in img["sentences"]:
            assert s["imgid"] == i and s["tokens"] == tokenize(s["raw"]) and s["raw"]
        # Held-out images are described with their held-out combination; seen ones never mention one.
        mentions = [caption_involves_heldout(s["raw"], DEFAULT_HELDOUT) for s in img["sentences"]]
        assert any(mentions) if img["heldout"] else not any(mentions)
        path = out / "retrieval" / img["filepath"] / img["filename"]
        with Image.open(path) as im:
            assert im.size == (64, 64) and im.mode == "RGB"
        all_sentids += img["sentids"]
    assert len(set(all_sentids)) == 5 * N
    held = json.loads((out / "retrieval" / "heldout_imgids.json").read_text())
    assert held == [img["imgid"] for img in data["images"] if img["heldout"]] and held
    scenes = json.loads((out / "retrieval" / "scenes.json").read_text())
    for entry in scenes:
        assert involves_heldout(Scene.from_dict(entry["scene"]), DEFAULT_HELDOUT) == entry["heldout"]


def test_cirr_triplets_reference_existing_images_and_sets_contain_their_near_misses(emitted):
    out, _ = emitted
    triplets = json.loads((out / "cir" / "captions" / "cap.rc2.val.json").read_text())
    split = json.loads((out / "cir" / "image_splits" / "split.rc2.val.json").read_text())
    assert len(triplets) == N and len(split) == 6 * N
    for name, rel in split.items():
        assert (out / "cir" / "img_raw" / rel).is_file(), name
    for t in triplets:
        assert isinstance(t["pairid"], int) and isinstance(t["caption"], str) and t["caption"]
        assert isinstance(t["heldout"], bool)
        assert t["reference"] in split and t["target_hard"] in split and t["reference"] != t["target_hard"]
        assert t["target_soft"] == {t["target_hard"]: 1.0}
        members = t["img_set"]["members"]
        assert len(members) == 6 and len(set(members)) == 6
        assert t["reference"] in members and t["target_hard"] in members
        assert all(m in split for m in members)
    assert any(t["heldout"] for t in triplets) and not all(t["heldout"] for t in triplets)


def test_circo_queries_have_existing_ground_truths(emitted):
    out, _ = emitted
    queries = json.loads((out / "circo" / "annotations" / "val.json").read_text())
    assert len(queries) == N
    files = {p.name for p in (out / "circo" / "images").iterdir()}
    for q in queries:
        assert q["target_img_id"] == q["gt_img_ids"][0] and len(q["gt_img_ids"]) >= 2
        assert q["reference_img_id"] not in q["gt_img_ids"]
        for img_id in [q["reference_img_id"], *q["gt_img_ids"]]:
            assert f"{img_id:012d}.jpg" in files
        assert q["relative_caption"] and q["shared_concept"]
    assert len(files) > 3 * N  # distractors too


def test_classification_folders_match_classnames(emitted):
    out, _ = emitted
    expected = {"shape": list(SHAPES), "colour": list(COLOURS)}
    for task in ("shape", "colour", "background"):
        root = out / "classification" / task
        names = (root / "classnames.txt").read_text().splitlines()
        folders = sorted(p.name for p in root.iterdir() if p.is_dir())
        assert [n.replace(" ", "_") for n in names] == folders
        if task in expected:
            assert sorted(names) == sorted(expected[task])
        labels = json.loads((root / "labels.json").read_text())
        assert len(labels) == N
        for rec in labels:
            assert (root / rec["file"]).is_file()
            assert rec["file"].split("/")[0] == folders[rec["class_index"]]
            assert names[rec["class_index"]] == rec["label"]
    shape_labels = json.loads((out / "classification" / "shape" / "labels.json").read_text())
    assert any(r["heldout"] for r in shape_labels)


def test_dedup_groups_and_pairs_point_at_real_files(emitted):
    out, _ = emitted
    data = json.loads((out / "dedup" / "pairs.json").read_text())
    images = out / "dedup" / "images"
    assert len(data["groups"]) == N
    for group in data["groups"]:
        assert len(group["files"]) >= 4 and all((images / f).is_file() for f in group["files"])
        quality = int(next(v for v in group["transforms"].values() if v.startswith("jpeg")).split("q")[1])
        assert 40 <= quality <= 90
    assert all((images / f).is_file() for f in data["distinct"])
    assert {p["duplicate"] for p in data["pairs"]} == {True, False}
    grouped = {f for g in data["groups"] for f in g["files"]}
    for pair in data["pairs"]:
        assert pair["duplicate"] == (pair["b"] in grouped)


def test_writing_into_a_used_folder_needs_overwrite(tmp_path):
    write_set(tmp_path, n=2, seed=1, kinds=("retrieval",), progress=False)
    with pytest.raises(FileExistsError, match="overwrite"):
        write_set(tmp_path, n=2, seed=1, kinds=("retrieval",), progress=False)
    manifest = write_set(tmp_path, n=3, seed=1, kinds=("retrieval",), overwrite=True, progress=False)
    assert manifest["counts"]["retrieval"]["images"] == 3
    assert len(list((tmp_path / "retrieval" / "images").iterdir())) == 3


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown kinds"):
        write_set(tmp_path, n=2, seed=1, kinds=("video",), progress=False)
    with pytest.raises(ValueError, match="n must be"):
        write_set(tmp_path, n=0, seed=1, progress=False)


def test_cli_entry_parses_the_heldout_spec(tmp_path):
    manifest = synth_command(tmp_path, n=2, seed=5, heldout="red circle;cross above heart", size=32)
    assert manifest["heldout_spec"] == "red circle;cross above heart"
    assert manifest["size"] == 32
    with Image.open(tmp_path / "retrieval" / "images" / "shapesworld_000000.png") as im:
        assert im.size == (32, 32)
    with pytest.raises(ValueError, match="unknown colour"):
        synth_command(tmp_path / "x", n=2, seed=5, heldout="teal circle", size=32)
