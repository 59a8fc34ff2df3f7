"""Zero-shot tagging: labels in, calibrated tags out, "none of these" when nothing fits; and vocabulary-free tags."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pytest

from pixquery.api import Library
from pixquery.models.base import EncoderBase, ModelError, l2_normalize
from pixquery.models.registry import load_encoder
from pixquery.organize.classify import (
    AUTO_MIN_Z,
    LABELS_SOURCE,
    RELATIVE_PROBABILITY,
    LabelSet,
    ZeroShotClassifier,
    autoclip_weights,
    normal_cdf,
    parse_labels,
    prompt_grid,
    tag_labels,
)
from pixquery.organize.open_tags import Vocabulary, open_tags
from pixquery.organize.templates import CURATED_TEMPLATES, IMAGENET_TEMPLATES, resolve_templates
from pixquery.organize.view import IndexView
from pixquery.query.spec import QuerySpec
from pixquery.query.textbank import WORD_LISTS, distinguishable, embed_words, load_words
from pixquery.synth.render import render_scene
from pixquery.synth.world import BACKGROUNDS, COLOURS, DEFAULT_HELDOUT, SHAPES, sample_scene

VOCABULARY_FILE = WORD_LISTS["common"]

# A small vocabulary for the open-tag tests on real photos.
PHOTO_WORDS = [
    "bee", "cat", "camera", "bird", "boat", "book", "cake", "tree", "chess", "dog", "car", "bicycle", "airplane",
    "pizza", "house", "mountain", "beach", "flower", "person", "horse", "train", "computer", "chair", "table",
    "guitar", "shoe", "clock", "bottle", "cup", "phone", "lamp", "fish", "snake", "elephant", "banana", "apple",
    "bridge", "road", "river", "cloud", "bread", "hat", "ball", "kite", "umbrella", "bus", "truck", "window",
]
PHOTO_LABELS = "bee,cat,camera,bird,boat,book,cake,tree,chess"


@pytest.fixture(autouse=True)
def _private_vocabulary_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Vocabulary vectors go to a per-session cache, never the user's."""
    monkeypatch.setenv("PIXQUERY_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="module")
def photo_lib(tmp_path_factory: pytest.TempPathFactory, photos_dir: Path) -> Library:
    lib = Library.open(tmp_path_factory.mktemp("photos_index"), model="conse")
    lib.index([photos_dir / "flat", photos_dir / "unicode"])
    yield lib
    lib.close()


def _photo(lib: Library, name: str) -> int:
    assert lib.catalog is not None
    return next(r.id for r in lib.catalog.all_files() if r.path.endswith("/flat/" + name))


# --- labels, templates, vocabulary --------------------------------------------------------------------------------

def test_labels_come_from_a_string_a_list_a_text_file_or_a_cupl_json(tmp_path: Path) -> None:
    assert parse_labels(" cat, dog ,,bird").names == ["cat", "dog", "bird"]
    assert parse_labels(["red", "blue"]).names == ["red", "blue"]
    text = tmp_path / "labels.txt"
    text.write_text("cat\n# a comment\n\ndog  # trailing comment\n", encoding="utf-8")
    assert parse_labels(text).names == ["cat", "dog"]
    cupl = tmp_path / "labels.json"
    cupl.write_text(json.dumps({"cat": ["a small furry pet", "whiskers"], "dog": ["a loyal pet"]}), encoding="utf-8")
    labels = parse_labels(cupl)
    assert labels.names == ["cat", "dog"] and labels.descriptions["cat"] == ["a small furry pet", "whiskers"]
    # Shorter description lists are reused so every row has one prompt per label.
    assert prompt_grid(labels, []) == [["a small furry pet", "a loyal pet"], ["whiskers", "a loyal pet"]]
    with pytest.raises(ValueError, match="repeat"):
        parse_labels("cat,cat")
    with pytest.raises(ValueError, match="no labels"):
        parse_labels(" , ")


def test_template_sets_are_the_published_lists_and_bad_templates_are_refused(tmp_path: Path) -> None:
    assert len(IMAGENET_TEMPLATES) == 80 and len(set(IMAGENET_TEMPLATES)) == 80
    assert len(CURATED_TEMPLATES) == 7 and set(CURATED_TEMPLATES) <= set(IMAGENET_TEMPLATES)
    assert resolve_templates("single") == ["a photo of a {}."]
    path = tmp_path / "t.txt"
    path.write_text("a drawing of a {}.\n# note\nan image of a {}\n", encoding="utf-8")
    assert resolve_templates(path) == ["a drawing of a {}.", "an image of a {}"]
    with pytest.raises(ValueError, match="exactly one"):
        resolve_templates(["a photo of a cat"])
    with pytest.raises(ValueError, match="neither a set name"):
        resolve_templates("no-such-set")


def test_shipped_vocabulary_is_common_concrete_clean_and_small() -> None:
    words = load_words()  # the default: the curated common words
    assert 1_000 <= len(words) <= 4_000 and VOCABULARY_FILE.stat().st_size < 100_000
    assert {"cat", "dog", "bird", "bee", "camera", "tree", "beach", "car", "circle", "star", "red", "olive", "hot dog",
            "sunset", "black and white photo"} <= set(words)
    assert not {"dogie", "chiffonier", "catamaran", "flagpole"} & set(words)  # rare words are what confused names
    # Not mainly nouns (an adverb, an attributive adjective, an adjective) and superordinates: the most used
    # open tags on the ImageNet sample and a useless cluster name ("holder", 604 of 1,000 photos) before the rules.
    assert not {"somewhere", "hind", "small", "holder", "device", "mammal", "pet", "photo"} & set(words)
    assert all(w == w.lower() and not any(ch.isdigit() for ch in w.replace("3d", "")) for w in words)
    assert not {"slut", "whore", "retard", "coon"} & set(words)  # slurs and insults are filtered out
    source = (VOCABULARY_FILE.parent / "SOURCE.md").read_text(encoding="utf-8")
    assert source.count("WordNet 3.0") >= 2 and "wordfreq" in source and "COCO" in source
    assert len(load_words("concepts")) >= 10_000  # the broad list is still there, by name


class CountingEncoder(EncoderBase):
    """Deterministic fake text encoder that counts how many texts it embedded."""

    name = "fake:counting"
    dim = 8

    def __init__(self, seed: int = 0) -> None:
        self.calls = 0
        self.seed = seed

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        self.calls += len(texts)
        rng = [np.random.default_rng(zlib.crc32(t.encode()) + self.seed) for t in texts]
        return l2_normalize(np.stack([r.normal(size=self.dim) for r in rng]))


def test_vocabulary_vectors_are_cached_per_model_identity_and_word_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pixquery.query import textbank

    monkeypatch.setenv("PIXQUERY_CACHE", str(tmp_path))
    encoder = CountingEncoder()
    first = embed_words(encoder, ["cat", "dog", "bird"])
    embedded = encoder.calls  # the three words and the probe text that identifies the model
    second = embed_words(encoder, ["cat", "dog", "bird"])
    assert encoder.calls == embedded == 4 and np.array_equal(first, second)
    assert len(list((tmp_path / "text-banks").glob("fake_counting-*.npy"))) == 1
    monkeypatch.setattr(textbank, "_memory", {})  # a new process: read from disk
    assert np.array_equal(embed_words(encoder, ["cat", "dog", "bird"]), first) and encoder.calls == 4
    embed_words(encoder, ["cat", "dog"])  # another list is another cache entry
    assert encoder.calls == 6
    retrained = CountingEncoder(seed=1)  # the same name, other weights: never reads the other's vectors
    assert not np.array_equal(embed_words(retrained, ["cat", "dog", "bird"]), first)


class RecordingEncoder(CountingEncoder):
    """CountingEncoder that also keeps every text it was asked to embed."""

    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        self.texts += list(texts)
        return super().encode_texts(texts)


def test_tagging_with_labels_embeds_only_the_labels(tmp_path: Path) -> None:
    from test_query_helpers import make_index

    vectors = l2_normalize(np.random.default_rng(0).normal(size=(40, 8)).astype(np.float32))
    ctx = make_index(tmp_path, vectors)
    encoder = RecordingEncoder()
    view = IndexView(encoder, np.arange(1, 41), vectors, ctx.catalog, ctx.store, "fake",
                     read_image=lambda row, size: None)  # type: ignore[arg-type, return-value]
    report = tag_labels(view, "cat,dog,bird", method="auto", store=False)
    assert len(report.images) == 40
    # AutoCLIP's 80 templates and the one calibration prompt per label: nothing else, no vocabulary.
    assert encoder.calls <= 3 * (len(IMAGENET_TEMPLATES) + 1)
    assert all(any(label in text for label in ("cat", "dog", "bird")) for text in encoder.texts)


def test_entries_a_model_cannot_tell_apart_are_dropped() -> None:
    vectors = l2_normalize(np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 0, 1]], dtype=np.float32))
    assert distinguishable(vectors).tolist() == [False, True, False, True]


# --- AutoCLIP -----------------------------------------------------------------------------------------------------

def test_autoclip_weights_favour_templates_that_fit_and_hit_the_target_entropy() -> None:
    rng = np.random.default_rng(0)
    sims = rng.normal(0.2, 0.01, size=(5, 6, 4)).astype(np.float32)
    sims[:, 2, :] += 0.05  # template 2 fits every image better
    weights = autoclip_weights(sims)
    assert weights.shape == (5, 6) and np.allclose(weights.sum(axis=1), 1, atol=1e-5)
    assert (weights.argmax(axis=1) == 2).all()
    entropy = -(weights * np.log(weights)).sum(axis=1)
    assert np.allclose(entropy, 0.85 * np.log(6), atol=1e-3)
    flat = autoclip_weights(np.full((2, 3, 4), 0.3, dtype=np.float32))
    assert np.allclose(flat, 1 / 3, atol=1e-4)  # nothing to prefer: uniform weights


# --- real photos with ConSE ---------------------------------------------------------------------------------------

def test_photos_get_their_labels_stored_as_tags_that_search_filters_use(photo_lib: Library) -> None:
    report = photo_lib.tag(PHOTO_LABELS, method="ensemble")
    by_id = {r.file_id: r for r in report.images}
    assert report.images and len(report.images) == photo_lib.store.count()
    for name, label in [("bee.jpg", "bee"), ("cat.jpg", "cat"), ("camera.jpg", "camera"), ("books.jpg", "book")]:
        assert by_id[_photo(photo_lib, name)].labels[0][0] == label
    scores = [p for r in report.images for _, p, _ in r.labels]
    assert all(0 < p <= 1 for p in scores)
    # Stored in the catalog, replacing earlier runs, and usable as a search filter.
    assert photo_lib.catalog is not None
    stored = photo_lib.catalog.read_tags(source=LABELS_SOURCE)
    assert stored[_photo(photo_lib, "bee.jpg")][0].label == "bee"
    photo_lib.tag(PHOTO_LABELS, method="ensemble")
    assert sum(len(v) for v in photo_lib.catalog.read_tags(source=LABELS_SOURCE).values()) == report.stored
    spec = QuerySpec.simple("an animal", k=50)
    spec.filters = {"tags": "bee"}
    hits = photo_lib.search(spec=spec)
    tagged_bee = {i for i, tags in photo_lib.catalog.read_tags(source=LABELS_SOURCE).items()
                  if any(t.label == "bee" for t in tags)}
    assert {h.id for h in hits} == tagged_bee  # the filter returns exactly the images tagged "bee"
    bees = {h.id for h in hits if "bee" in Path(h.path).name}
    # Every bee photo; at most one other (the collection-calibrated null's known limit: kookaburras carry "bee"
    # as a weak second label, p = 0.14 against "bird" 0.68; docs/organize.md).
    assert len(bees) >= 2 and len(hits) - len(bees) <= 1, [Path(h.path).name for h in hits]
    assert ("bee", report.counts()["bee"]) in photo_lib.tag_counts(LABELS_SOURCE)


def test_a_stored_label_is_close_to_the_photos_best_not_a_weak_runner_up(photo_lib: Library) -> None:
    labels = ["cat", "dog", "bird", "car", "boat", "flower", "tree", "food", "insect", "fish", "snake", "person",
              "building", "book", "camera", "bottle", "chair", "horse", "monkey", "bee"]
    report = photo_lib.tag(labels, store=False)
    for image in report.images:
        assert all(p >= RELATIVE_PROBABILITY * image.labels[0][1] for _, p, _ in image.labels)
    by_id = {r.file_id: [label for label, _, _ in r.labels] for r in report.images}
    # Before the rule the kookaburras carried "bee" (p = 0.10) although "bird" was far more likely.
    assert "bee" not in by_id[_photo(photo_lib, "kookaburras.pnm")]
    assert by_id[_photo(photo_lib, "bee.jpg")][:1] == ["bee"]


def test_photos_matching_none_of_the_labels_are_none_of_these(photo_lib: Library) -> None:
    report = photo_lib.tag("bicycle,airplane,pizza,car", "ensemble", store=False)
    assert report.threshold == pytest.approx(float(normal_cdf(np.asarray(AUTO_MIN_Z))))
    none = sum(r.none for r in report.images)
    # Calibrated on the collection itself, each label's most extreme photos remain candidates: 18 of 23 measured.
    assert none >= 0.75 * len(report.images)
    assert report.to_dict()["none_of_these"] == none
    # The same photos with a label that fits are not rejected.
    fitting = photo_lib.tag("bicycle,airplane,pizza,bee", "ensemble", store=False)
    bee = next(r for r in fitting.images if r.file_id == _photo(photo_lib, "bee.jpg"))
    assert not bee.none and bee.labels[0][0] == "bee"


def test_vocabulary_free_tags_name_what_a_photo_shows(photo_lib: Library) -> None:
    report = photo_lib.tag_open(vocabulary=PHOTO_WORDS, top=3)
    tags = {r["id"]: [t["label"] for t in r["tags"]] for r in report.images}
    assert "bee" in tags[_photo(photo_lib, "bee.jpg")]
    assert "book" in tags[_photo(photo_lib, "books.jpg")]
    assert all(len(t) == 3 for t in tags.values())
    assert photo_lib.catalog is not None and photo_lib.catalog.read_tags(source="open")
    json.dumps(report.to_dict())


def test_empty_collections_are_tagged_without_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with Library.open(tmp_path / "index", model="conse") as lib:
        lib.index([tmp_path / "empty"])
        assert lib.tag("cat,dog", "single").to_dict()["images"] == 0
        assert lib.tag_open(vocabulary=PHOTO_WORDS).to_dict()["images"] == 0


# --- ShapesWorld with mini ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def mini():
    try:
        return load_encoder("mini")
    except ModelError as exc:
        pytest.skip(f"the mini model is not shipped yet: {exc}")


def mini_bank() -> list[str]:
    """ShapesWorld's words among a sample of the shipped vocabulary: embedding all 17k with mini takes a minute."""
    words = load_words()
    own = {*SHAPES, *COLOURS, *BACKGROUNDS, "shape", "object", "background"}
    return sorted(set(words[::40]) | {w for w in words if w in own})


@pytest.fixture(scope="module")
def single_objects(mini) -> tuple[np.ndarray, list]:
    rng = np.random.default_rng(5)
    scenes = [sample_scene(rng, DEFAULT_HELDOUT, split="train", n_objects=1) for _ in range(96)]
    return mini.encode_images([render_scene(s, 64, rng) for s in scenes]), scenes


# Colour is what a small ShapesWorld model learns first; shape needs longer training, so its bar is "clearly above
# chance" (1/8), not "right".
@pytest.mark.parametrize("attribute,names,minimum", [("colour", COLOURS, 0.8), ("shape", SHAPES, 0.25)])
def test_shapesworld_tags_match_the_known_attributes(mini, single_objects, attribute: str, names, minimum) -> None:
    vectors, scenes = single_objects
    truth = np.asarray([list(names).index(getattr(s.objects[0], attribute)) for s in scenes])
    clf = ZeroShotClassifier(mini, LabelSet(list(names)), "auto", threshold=None)
    probabilities, _, _ = clf.predict(vectors)
    accuracy = float((probabilities.argmax(axis=1) == truth).mean())
    assert accuracy >= minimum, f"{attribute} accuracy {accuracy:.2f}"


def test_shapesworld_scenes_whose_background_is_not_offered_are_none_of_these(mini, single_objects) -> None:
    vectors, scenes = single_objects
    offered = [b for b in BACKGROUNDS if b != "beige"]
    clf = ZeroShotClassifier(mini, LabelSet(offered), "auto")
    _, _, accepted = clf.predict(vectors)
    beige = np.asarray([s.background == "beige" for s in scenes])
    rejected = ~accepted[beige].any(axis=1)
    assert rejected.mean() >= 0.6, f"only {rejected.mean():.2f} of beige scenes rejected"
    others_accepted = accepted[~beige].any(axis=1)
    # Each offered background covers a fifth of the scenes, which widens its null: 0.48 measured (docs/organize.md).
    assert others_accepted.mean() >= 0.4, f"only {others_accepted.mean():.2f} of other backgrounds accepted"


def test_shapesworld_open_tags_name_shapes_and_colours(mini, single_objects) -> None:
    vectors, scenes = single_objects
    vocab = Vocabulary.for_encoder(mini, mini_bank())  # mini knows only its own few words of the vocabulary
    tags = open_tags(vectors, vocab, top=3)
    words = [{w for w, _ in t} for t in tags]
    hits = [bool({s.objects[0].shape, s.objects[0].colour} & w) for s, w in zip(scenes, words, strict=True)]
    assert np.mean(hits) >= 0.7
