"""Clusters with names: the right number of groups, distinct names, representative images, a contact sheet."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import adjusted_mutual_info_score

from pixquery.api import Library
from pixquery.models.base import ModelError, l2_normalize
from pixquery.models.registry import load_encoder
from pixquery.organize.cluster import (
    STRUCTURE_SILHOUETTE,
    centroids,
    cluster_vectors,
    least_k,
    name_clusters,
)
from pixquery.organize.contact_sheet import contact_sheet
from pixquery.organize.open_tags import Vocabulary
from pixquery.synth.render import render_scene
from pixquery.synth.world import DEFAULT_HELDOUT, Scene, sample_scene

PHOTO_WORDS = ["bee", "cat", "camera", "bird", "boat", "book", "cake", "tree", "chess", "dog", "car", "flower",
               "house", "person", "mountain", "food", "animal", "insect", "lens", "furniture"]


@pytest.fixture(autouse=True)
def _private_vocabulary_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIXQUERY_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def blobs(k: int, per: int, dim: int = 16, spread: float = 0.05, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = l2_normalize(rng.normal(size=(k, dim)))
    labels = np.repeat(np.arange(k), per)
    return l2_normalize(centres[labels] + rng.normal(scale=spread, size=(k * per, dim))), labels


def test_automatic_k_finds_well_separated_groups() -> None:
    vectors, truth = blobs(5, 12)
    assigned, info = cluster_vectors(vectors, k="auto", max_k=10)
    assert info["k"] == 5 and set(info["silhouette"]) >= {"2", "5", "10"}
    assert adjusted_mutual_info_score(truth, assigned) == pytest.approx(1.0)
    fixed, info = cluster_vectors(vectors, k=3)
    assert info["k"] == 3 and len(set(fixed.tolist())) == 3


def test_hdbscan_finds_groups_and_leaves_outliers_unclustered() -> None:
    vectors, truth = blobs(3, 30, spread=0.03)
    outliers = l2_normalize(np.random.default_rng(9).normal(size=(4, vectors.shape[1])))
    assigned, info = cluster_vectors(np.vstack([vectors, outliers]), method="hdbscan")
    assert info["k"] == 3
    assert adjusted_mutual_info_score(truth, assigned[:90]) == pytest.approx(1.0)
    assert (assigned[90:] == -1).sum() >= 3


def test_degenerate_inputs_give_one_cluster_or_none() -> None:
    assert cluster_vectors(np.zeros((0, 4), np.float32))[0].shape == (0,)
    assert cluster_vectors(l2_normalize(np.ones((1, 4), np.float32)))[1]["k"] == 1
    with pytest.raises(ValueError, match="unknown clustering method"):
        cluster_vectors(np.ones((3, 4), np.float32), method="dbscan")


def test_without_clear_structure_automatic_k_gives_groups_to_browse_not_two_halves() -> None:
    # 400 points spread evenly over a 64-d sphere (like one photo each of many subjects): the silhouette is low at
    # every k and would pick 2; the collection gets least_k(400) = 8 groups or more instead.
    spread = l2_normalize(np.random.default_rng(4).normal(size=(400, 64)))
    _, info = cluster_vectors(spread, k="auto", max_k=12)
    assert max(info["silhouette"].values()) < STRUCTURE_SILHOUETTE
    assert least_k(400) == 8 and 8 <= info["k"] <= 12
    assert least_k(1000) == 12 and least_k(10) == 2


def test_names_are_what_most_members_show_and_never_repeat() -> None:
    vectors, truth = blobs(3, 10, spread=0.02)
    _, centres = centroids(vectors, truth)
    generic = l2_normalize(centres.mean(axis=0, keepdims=True))  # near all clusters, what none of them shows best
    words = ["alpha", "beta", "gamma", "thing"]
    vocab = Vocabulary(words, l2_normalize(np.vstack([centres + 0.01, generic])))
    names = name_clusters(vectors, truth, [0, 1, 2], vocab)
    assert [n[0][0] for n in names] == ["alpha", "beta", "gamma"]
    assert names[0][0][1] == pytest.approx(1.0)  # every member votes for its cluster's word
    # Two clusters that both show one word best still get different first names.
    twin = name_clusters(np.vstack([vectors[:10], vectors[:10]]), np.repeat([0, 1], 10), [0, 1], vocab)
    assert twin[0][0][0] != twin[1][0][0]
    # More clusters than voted words (a small vocabulary): the later ones get the free word nearest their centre.
    many = name_clusters(vectors, np.arange(30) % 6, list(range(6)), vocab, votes_per_image=1)
    assert len({n[0][0] for n in many[:4]}) == 4


@pytest.fixture(scope="module")
def photo_lib(tmp_path_factory: pytest.TempPathFactory, photos_dir: Path) -> Library:
    lib = Library.open(tmp_path_factory.mktemp("photos_index"), model="conse")
    lib.index([photos_dir / "flat", photos_dir / "heic"])
    yield lib
    lib.close()


def test_photo_clusters_are_json_with_names_members_and_a_contact_sheet(photo_lib: Library, tmp_path: Path) -> None:
    result = photo_lib.cluster(k=6, vocabulary=PHOTO_WORDS)
    json.dumps(result)
    assert result["k"] == 6 and result["images"] == photo_lib.store.count()
    assert sum(c["size"] for c in result["clusters"]) == result["images"]
    names = [c["name"] for c in result["clusters"]]
    assert len(set(names)) == len(names) and set(names) <= set(PHOTO_WORDS)
    for cluster in result["clusters"]:
        members = {m["id"] for m in cluster["members"]}
        assert {r["id"] for r in cluster["representatives"]} <= members
        assert all(Path(m["path"]).exists() for m in cluster["members"])
    # The bee photos (the same photo in four files) end up together, in a cluster called "bee".
    bees = [c for c in result["clusters"] if any(Path(m["path"]).name == "bee.heic" for m in c["members"])]
    assert bees[0]["name"] == "bee"
    sheet = contact_sheet(result, lambda i, size: photo_lib.read_image(i, size), tmp_path / "sheet.png",
                          per_cluster=4, thumb=48)
    with Image.open(sheet) as img:
        assert img.format == "PNG" and img.height >= 6 * 48 and img.width > 4 * 48


def test_an_empty_collection_has_no_clusters(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with Library.open(tmp_path / "index", model="conse") as lib:
        lib.index([tmp_path / "empty"])
        result = lib.cluster(vocabulary=PHOTO_WORDS)
        assert result["clusters"] == [] and result["images"] == 0
        assert lib.contact_sheet(result, tmp_path / "empty.png").exists()


@pytest.fixture(scope="module")
def mini():
    try:
        return load_encoder("mini")
    except ModelError as exc:
        pytest.skip(f"the mini model is not shipped yet: {exc}")


def test_shapesworld_clusters_recover_shapes_or_colours(mini) -> None:
    # One object on one background, so that a clustering can only be about the object's shape or colour.
    rng = np.random.default_rng(3)
    scenes = []
    while len(scenes) < 120:
        scene = sample_scene(rng, DEFAULT_HELDOUT, split="train", n_objects=1)
        scenes.append(Scene(objects=(replace(scene.objects[0], size="large"),), background="grey"))
    vectors = mini.encode_images([render_scene(s, 64, rng) for s in scenes])
    assigned, _ = cluster_vectors(vectors, k="auto")
    # Adjusted mutual information: 0 for a random assignment whatever the number of clusters (plain NMI of a
    # shuffled assignment with k="auto"'s many small clusters is ~0.2 on 120 scenes, which hides the signal).
    ami = {
        "shape": adjusted_mutual_info_score([s.objects[0].shape for s in scenes], assigned),
        "colour": adjusted_mutual_info_score([s.objects[0].colour for s in scenes], assigned),
    }
    shuffled = np.random.default_rng(0).permutation(assigned)
    chance = max(adjusted_mutual_info_score([s.objects[0].shape for s in scenes], shuffled),
                 adjusted_mutual_info_score([s.objects[0].colour for s in scenes], shuffled))
    assert max(ami.values()) >= 0.3 and chance < 0.1, (ami, chance)
