"""The evaluation runner end to end: ShapesWorld sets, every task on the readers' fixtures, the embedding cache."""

from __future__ import annotations

import json
import os
import pickle
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from pixquery.eval.cache import data_fingerprint
from pixquery.eval.datasets import read_cirr, read_karpathy
from pixquery.eval.metrics import cirr_recall_at_k, rank_gallery, retrieval_recall_at_k
from pixquery.eval.runner import default_out_dir, run_eval
from pixquery.eval.tasks import EvalError, make_task, parse_method
from pixquery.media.decode import open_image
from pixquery.models.base import EncoderBase

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "eval"
REQUIRED_KEYS = {"task", "kind", "created", "seconds", "model", "data", "headline", "methods", "cache", "options",
                 "versions", "files"}


class CountingEncoder(EncoderBase):
    """Wraps an encoder and counts the model calls, so a test can tell cached embeddings from fresh ones."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name, self.dim, self.precision = inner.name, inner.dim, inner.precision
        self.meaningless = inner.meaningless
        self.image_size, self.context_length = inner.image_size, inner.context_length
        self.preprocess = inner.preprocess
        self.image_calls = 0
        self.text_calls = 0

    @property
    def decode_size(self) -> int:
        return self.inner.decode_size

    def encode_preprocessed(self, batch: np.ndarray) -> np.ndarray:
        self.image_calls += 1
        return self.inner.encode_preprocessed(batch)

    def encode_images(self, images: list) -> np.ndarray:
        self.image_calls += 1
        return self.inner.encode_images(images)

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        self.text_calls += 1
        return self.inner.encode_texts(texts)


@pytest.fixture(scope="module")
def model() -> tuple[str, Any]:
    """The shipped `mini` model when present, else `random:tiny` (random weights: figures are meaningless)."""
    from pixquery.models.base import ModelError
    from pixquery.models.registry import load_encoder

    try:
        return "mini", load_encoder("mini")
    except (ModelError, FileNotFoundError):
        pytest.importorskip("torch")
        pytest.importorskip("transformers")
        return "random:tiny", load_encoder("random:tiny")


@pytest.fixture(scope="module")
def shapes_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pixquery.synth.emit import write_set

    root = tmp_path_factory.mktemp("shapesworld")
    write_set(root, n=60, seed=3, kinds=("retrieval", "cirr"), progress=False)
    return root


def _options(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return {"cache_dir": str(tmp_path / "cache"), "progress": False, **extra}


def _assert_fractions(values: dict[str, Any]) -> None:
    assert values
    for key, value in values.items():
        assert value is None or (0.0 <= value <= 1.0), f"{key} = {value} is not a fraction"


def _check_written(results: dict[str, Any], out: Path, metric_keys: set[str]) -> dict[str, Any]:
    """The JSON on disk equals what run_eval returned, is strict JSON, and has the required structure."""
    text = (out / "results.json").read_text(encoding="utf-8")
    assert "NaN" not in text
    on_disk = json.loads(text)
    assert set(on_disk) >= REQUIRED_KEYS
    assert on_disk["versions"]["pixquery"] and on_disk["versions"]["numpy"] == np.__version__
    assert len(on_disk["data"]["hash"]) == 64
    for method in on_disk["methods"].values():
        assert metric_keys <= set(method["metrics"]), set(method["metrics"])
        _assert_fractions(method["metrics"])
        for group in method["groups"].values():
            _assert_fractions(group)
    markdown = (out / "results.md").read_text(encoding="utf-8")
    for label in on_disk["methods"]:
        assert f"| {label} |" in markdown
    return on_disk


def _assert_png(path: Path) -> None:
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size[0] > 200 and image.size[1] > 200


# ------------------------------------------------------------------------------------------------------
# ShapesWorld end to end
# ------------------------------------------------------------------------------------------------------


def test_shapesworld_retrieval_end_to_end(model, shapes_dir: Path, tmp_path: Path) -> None:
    spec, encoder = model
    out = tmp_path / "report"
    results = run_eval("shapesworld-retrieval", shapes_dir, spec, None, out, _options(tmp_path), encoder=encoder)
    on_disk = _check_written(results, out, {"t2i_r@1", "t2i_r@5", "t2i_r@10", "i2t_r@1", "i2t_r@5", "i2t_r@10"})
    assert on_disk["data"]["counts"] == {"images": 60, "captions": 300, "heldout_images": 12}
    cosine = on_disk["methods"]["cosine"]
    assert set(cosine["groups"]) == {"seen", "heldout"}
    # Recall@K never falls as K grows, and at K = 50 of 60 images most captions find their image.
    curve = cosine["curves"]["text→image"]["value"]
    assert curve == sorted(curve) and curve[0] == pytest.approx(cosine["metrics"]["t2i_r@1"])
    # The overall figure is the caption-weighted mix of the seen and held-out ones (48 + 12 images, 5 captions).
    seen, held = cosine["groups"]["seen"]["t2i_r@1"], cosine["groups"]["heldout"]["t2i_r@1"]
    assert cosine["metrics"]["t2i_r@1"] == pytest.approx((48 * seen + 12 * held) / 60)
    markdown = (out / "results.md").read_text(encoding="utf-8")
    assert "## Held-out combinations" in markdown and "| method | t2i_r@1 |" in markdown
    assert len(on_disk["files"]["plots"]) == 2
    for plot in on_disk["files"]["plots"]:
        _assert_png(Path(plot))


def test_shapesworld_cir_end_to_end_and_cache(model, shapes_dir: Path, tmp_path: Path) -> None:
    spec, inner = model
    encoder = CountingEncoder(inner)
    out = tmp_path / "first"
    results = run_eval("shapesworld-cir", shapes_dir / "cir", spec, ["weighted"], out, _options(tmp_path),
                       encoder=encoder)
    on_disk = _check_written(results, out, {"r@1", "r@5", "r@10", "r@50", "subset_r@1", "subset_r@2", "avg"})
    # The baselines are always reported, first, and the requested method after them.
    assert list(on_disk["methods"]) == ["image", "text", "sum", "weighted"]
    assert on_disk["methods"]["image"]["baseline"] and not on_disk["methods"]["weighted"]["baseline"]
    from pixquery.query.compose import method_params

    defaults = {name: p.default for name, p in method_params("weighted").items()}
    assert on_disk["methods"]["weighted"]["params"] == defaults  # the documented defaults, recorded as run
    assert on_disk["data"]["counts"]["heldout_queries"] == 12
    assert set(on_disk["methods"]["sum"]["groups"]) == {"seen", "heldout"}
    assert on_disk["cache"]["images_embedded"] == 360 and on_disk["cache"]["images_cached"] == 0
    assert encoder.image_calls > 0
    _assert_png(out / "methods.png")
    _assert_png(out / "recall_curves.png")

    # A second run with another method reads every image and caption from the cache: no image is embedded.
    image_calls, text_calls = encoder.image_calls, encoder.text_calls
    second = run_eval("shapesworld-cir", shapes_dir, spec, ["weighted:alpha=0.3"], tmp_path / "second",
                      _options(tmp_path, plots=False), encoder=encoder)
    assert encoder.image_calls == image_calls and encoder.text_calls == text_calls
    assert second["cache"]["images_embedded"] == 0 and second["cache"]["texts_embedded"] == 0
    assert second["cache"]["images_cached"] == 360
    assert second["data"]["hash"] == results["data"]["hash"]  # the parent folder finds the same cir/ set
    assert second["methods"]["image"]["metrics"] == results["methods"]["image"]["metrics"]
    assert second["methods"]["weighted:alpha=0.3"]["params"]["alpha"] == 0.3
    assert not (tmp_path / "second" / "methods.png").exists()

    # Touching an image changes the data hash, so stale embeddings are never read.
    paths = sorted((shapes_dir / "cir" / "img_raw" / "dev").iterdir())
    before = data_fingerprint([], paths)
    stat = paths[0].stat()
    os.utime(paths[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert data_fingerprint([], paths) != before


# ------------------------------------------------------------------------------------------------------
# Every task on the readers' fixtures
# ------------------------------------------------------------------------------------------------------


def _write_revisited(root: Path) -> Path:
    """A tiny rOxford-style set: 5 database images, 2 queries with boxes, easy/hard/junk lists."""
    rng = np.random.default_rng(0)
    (root / "jpg").mkdir(parents=True)
    names = [f"all_souls_{i:06d}" for i in range(5)] + ["query_a", "query_b"]
    for name in names:
        pixels = rng.integers(0, 255, size=(48, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "jpg" / f"{name}.jpg")
    gnd = [{"bbx": [4.0, 4.0, 40.0, 30.0], "easy": [0, 1], "hard": [2], "junk": [3]},
           {"bbx": [0.0, 0.0, 64.0, 48.0], "easy": [4], "hard": [], "junk": []}]
    with (root / "gnd_roxford5k.pkl").open("wb") as handle:
        pickle.dump({"imlist": names[:5], "qimlist": names[5:], "gnd": gnd}, handle)
    return root


FIXTURE_TASKS = [
    ("flickr30k", "karpathy/flickr30k", {"t2i_r@1", "t2i_r@10", "i2t_r@1", "i2t_r@10"}, ["cosine"]),
    ("coco", "karpathy/coco", {"t2i_r@5", "i2t_r@5"}, ["cosine"]),
    ("cirr", "cirr", {"r@1", "r@50", "subset_r@1", "subset_r@3", "avg"}, ["image", "text", "sum", "weighted"]),
    ("circo", "circo", {"map@5", "map@50", "r@5", "r@50"}, ["image", "text", "sum", "weighted"]),
    ("fashioniq", "fashioniq", {"r@10", "r@50", "avg"}, ["image", "text", "sum", "weighted"]),
    ("classification", "imagefolder", {"acc@1", "acc@5", "mean_per_class_recall"}, ["prompt", "ensemble"]),
]


@pytest.mark.parametrize(("task", "folder", "keys", "methods"), FIXTURE_TASKS, ids=[t[0] for t in FIXTURE_TASKS])
def test_task_on_reader_fixture(model, tmp_path: Path, task: str, folder: str, keys: set[str],
                                methods: list[str]) -> None:
    spec, encoder = model
    out = tmp_path / "out"
    results = run_eval(task, FIXTURES / folder, spec, None, out, _options(tmp_path, plots=False), encoder=encoder)
    on_disk = _check_written(results, out, keys)
    assert list(on_disk["methods"]) == methods
    assert on_disk["files"]["plots"] == []
    if task == "flickr30k":  # the same figures straight from the encoder and the reference-matched metric
        ds = read_karpathy(FIXTURES / folder, "test")
        images = encoder.encode_images([open_image(p) for p in ds.image_paths])
        expected = retrieval_recall_at_k(encoder.encode_texts(ds.captions) @ images.T, ds.caption_to_image)
        assert on_disk["methods"]["cosine"]["metrics"] == pytest.approx(expected, abs=1e-6)
    if task == "cirr":  # the image baseline is a ranking by the reference image alone
        ds = read_cirr(FIXTURES / folder)
        gallery = encoder.encode_images([open_image(p) for p in ds.gallery_paths])
        index = ds.name_to_index()
        scores = gallery[[index[q.reference] for q in ds.queries]] @ gallery.T
        ranked = [[ds.gallery_names[i] for i in row] for row in rank_gallery(scores)]
        expected = cirr_recall_at_k(ranked, [q.reference for q in ds.queries], [q.targets[0] for q in ds.queries])
        assert {k: on_disk["methods"]["image"]["metrics"][k] for k in expected} == pytest.approx(expected)
    if task == "fashioniq":  # per-category figures, averaged without weights as the papers do
        groups = on_disk["methods"]["text"]["groups"]
        assert set(groups) == {"dress", "shirt", "toptee"}
        mean = np.mean([groups[c]["r@10"] for c in groups])
        assert on_disk["methods"]["text"]["metrics"]["r@10"] == pytest.approx(mean)


def test_documented_command_path_on_fixture(model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/evaluation.md's Flickr30K command, as the CLI runs it (spec string, default output folder and cache)."""
    spec, _ = model
    monkeypatch.setenv("PIXQUERY_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    results = run_eval("flickr30k", FIXTURES / "karpathy" / "flickr30k", spec, None, None, {"batch_size": 1})
    report = tmp_path / results["files"]["json"]
    assert report.is_file() and report.parent.parent == tmp_path / "eval-results"
    assert report.parent.name.startswith(f"flickr30k-{spec.replace(':', '_')}-")
    assert Path(results["cache"]["directory"]).is_relative_to(tmp_path / "cache" / "eval")
    assert results["model"]["spec"] == spec and results["data"]["counts"] == {"images": 2, "captions": 10}
    assert results["cache"]["encoder_image_calls"] == 2  # --batch-size 1 over the two test-split images
    metrics = results["methods"]["cosine"]["metrics"]
    _assert_fractions(metrics)
    assert {"t2i_r@1", "t2i_r@5", "t2i_r@10", "i2t_r@1", "i2t_r@5", "i2t_r@10"} <= set(metrics)


def test_revisited_task(model, tmp_path: Path) -> None:
    spec, encoder = model
    root = _write_revisited(tmp_path / "roxford5k")
    results = run_eval("roxford", root, spec, ["cosine", "aqe:m=2"], tmp_path / "out",
                       _options(tmp_path, plots=False), encoder=encoder)
    on_disk = _check_written(results, tmp_path / "out", {"easy_map", "medium_map", "hard_map", "medium_mp@5"})
    assert list(on_disk["methods"]) == ["cosine", "aqe:m=2"]
    assert on_disk["methods"]["aqe:m=2"]["params"] == {"m": 2, "alpha": 3.0}
    assert on_disk["cache"]["images_embedded"] == 7  # 5 database images and 2 cropped queries


def test_split_without_ground_truth_is_refused(model, tmp_path: Path) -> None:
    spec, encoder = model
    with pytest.raises(EvalError, match="no public ground truth"):
        run_eval("cirr", FIXTURES / "cirr", spec, None, tmp_path, _options(tmp_path, split="test"), encoder=encoder)


# ------------------------------------------------------------------------------------------------------
# The cache on its own, with a numpy stand-in for a model
# ------------------------------------------------------------------------------------------------------


class HashEncoder(EncoderBase):
    """A deterministic numpy 'model': texts map to seeded random unit vectors, images to their mean colour."""

    name, dim, image_size = "hash-test", 8, 8

    def __init__(self) -> None:
        self.text_calls: list[list[str]] = []
        self.image_calls = 0

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        self.text_calls.append(list(texts))
        rows = [np.random.default_rng(zlib.crc32(t.encode())).normal(size=self.dim) for t in texts]
        return np.array([r / np.linalg.norm(r) for r in rows], np.float32).reshape(len(texts), self.dim)

    def preprocess(self, image: Any) -> np.ndarray:
        return np.asarray(image.convert("RGB").resize((8, 8)), np.float32).transpose(2, 0, 1)

    def encode_preprocessed(self, batch: np.ndarray) -> np.ndarray:
        self.image_calls += 1
        rows = [np.r_[pixels.mean((1, 2)), np.ones(5)] for pixels in batch]
        return np.array([r / np.linalg.norm(r) for r in rows], np.float32)


def test_cache_texts_once_and_images_after_a_copy(tmp_path: Path) -> None:
    import shutil

    from pixquery.eval.cache import EmbeddingCache

    encoder = HashEncoder()
    root = tmp_path / "cache"
    cache = EmbeddingCache(encoder, "hash", "0" * 64, root=root)
    texts = [f"caption {i}" for i in range(300)]
    # Added one at a time (as composition methods do), past the buffer's first growth, with repeats.
    rows = np.stack([cache.texts([t, t])[0] for t in texts])
    assert np.allclose(rows, encoder.encode_texts(texts), atol=1e-6)
    assert cache.stats.texts_embedded == 300 and cache.stats.texts_cached == 300
    cache.flush()
    encoder.text_calls.clear()
    again = EmbeddingCache(encoder, "hash", "0" * 64, root=root)
    assert np.array_equal(again.texts(texts[::-1]), rows[::-1])
    assert encoder.text_calls == [] and again.stats.texts_embedded == 0

    data = tmp_path / "set"
    data.mkdir()
    paths = []
    for i in range(3):
        Image.new("RGB", (16, 16), (40 * i, 80, 200)).save(data / f"{i}.png")
        paths.append(data / f"{i}.png")
    digest = data_fingerprint([], paths, root=data)
    first = EmbeddingCache(encoder, "hash", digest, root=root, data_root=data).images("gallery", paths)
    assert encoder.image_calls == 1 and first.shape == (3, 8)
    # A copy that keeps timestamps (cp -a) hashes the same and finds the embeddings of the original.
    shutil.copytree(data, tmp_path / "moved")
    moved = [tmp_path / "moved" / p.name for p in paths]
    moved_digest = data_fingerprint([], moved, root=tmp_path / "moved")
    assert moved_digest == digest
    hit = EmbeddingCache(encoder, "hash", moved_digest, root=root, data_root=tmp_path / "moved")
    assert np.array_equal(hit.images("gallery", moved), first) and encoder.image_calls == 1
    assert hit.stats.images_cached == 3 and hit.stats.images_embedded == 0


# ------------------------------------------------------------------------------------------------------
# Methods, options and the command wrapper (no model needed)
# ------------------------------------------------------------------------------------------------------


def test_parse_method() -> None:
    spec = parse_method("weighted:alpha=0.5,beta=0")
    assert spec.name == "weighted" and spec.params == {"alpha": 0.5, "beta": 0}
    assert spec.label == "weighted:alpha=0.5,beta=0"
    assert parse_method("prompt:template=a photo of the {}.").params == {"template": "a photo of the {}."}
    with pytest.raises(EvalError, match="needs KEY=VALUE"):
        parse_method("weighted:alpha")


def test_methods_are_checked_before_any_work(tmp_path: Path) -> None:
    # A nonexistent data folder proves nothing was read before the method check failed.
    missing = tmp_path / "nowhere"
    with pytest.raises(EvalError, match="no method 'dot'"):
        make_task("flickr30k", missing, {}).resolve_methods(["dot"])
    with pytest.raises(EvalError, match="no parameter 'gamma'"):
        make_task("cirr", missing, {}).resolve_methods(["weighted:gamma=1"])
    with pytest.raises(EvalError, match="captioner and a rewriter"):
        make_task("cirr", missing, {}).resolve_methods(["rewrite"])
    with pytest.raises(EvalError, match="unknown task"):
        make_task("imagenet-21k", missing, {})
    # ShapesWorld's own captioner and rewriter make `rewrite` runnable there without parameters.
    specs = make_task("shapesworld-cir", missing, {}).resolve_methods(["rewrite", "sum"])
    assert [s.label for s in specs] == ["image", "text", "sum", "rewrite"]
    with pytest.raises(EvalError, match="unknown eval option"):
        run_eval("flickr30k", missing, "random:tiny", options={"batchsize": 3})
    with pytest.raises(EvalError, match="'{}'"):
        make_task("classification", missing, {}).resolve_methods(["prompt:template=a photo"])


def test_eval_command_passes_cli_options(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    from pixquery.cli import tools
    from pixquery.cli.main import build_parser

    seen: dict[str, Any] = {}

    def fake_run_eval(*args: Any) -> dict[str, Any]:
        seen["args"] = args
        return {"ok": True}

    monkeypatch.setattr("pixquery.eval.runner.run_eval", fake_run_eval)
    args = build_parser().parse_args(["eval", "cirr", "--data", str(tmp_path), "--model", "mini", "--method", "pdv",
                                      "--split", "val", "--batch-size", "8", "--no-cache", "--json"])
    tools.eval(args)
    assert json.loads(capsys.readouterr().out) == {"ok": True}
    task, data, spec, methods, out, options = seen["args"]
    assert (task, data, spec, methods, out) == ("cirr", tmp_path, "mini", ["pdv"], None)
    assert options["split"] == "val" and options["batch_size"] == 8 and options["cache"] is False
    out_dir = default_out_dir("cirr", "immich:ViT-B-32__openai")
    assert out_dir.parent == Path("eval-results") and out_dir.name.startswith("cirr-immich_ViT-B-32__openai-")
