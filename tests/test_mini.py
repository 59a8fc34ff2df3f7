"""The `mini` model: shipped weights load torch-free and retrieve ShapesWorld scenes; training is reproducible."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pixquery.eval.metrics import recall_from_ranks, retrieval_ranks
from pixquery.models.mini import SHIPPED_DIR, resolve_dir
from pixquery.models.registry import load_encoder
from pixquery.synth.captions import caption_for, describe
from pixquery.synth.edits import all_words
from pixquery.synth.mini_eval import evaluate, make_gallery
from pixquery.synth.tokenizer import END, PAD, START, build_tokenizer, encode_batch
from pixquery.synth.world import DEFAULT_HELDOUT, HeldOut, Obj, Scene, sample_scene

REPO = Path(__file__).resolve().parents[1]
# The shipped model scores R@10 1.00 seen / 1.00 held-out and R@1 0.99 / 0.97 on this 200-scene gallery; the
# thresholds below sit well under them and far above chance (R@10 chance = 10/200 = 0.05). A checkout without
# `pixquery/data/mini/` (e.g. while retraining it) skips these tests, saying so.
needs_shipped = pytest.mark.skipif(
    not (SHIPPED_DIR / "visual" / "model.onnx").exists(),
    reason="no trained mini model is shipped in pixquery/data/mini yet; train one with `pixquery train-mini DIR`",
)

SEEN_R10_MIN = 0.6
HELDOUT_R10_MIN = 0.35


@pytest.fixture(scope="module")
def shipped():
    return load_encoder("mini")


@pytest.fixture(scope="module")
def gallery():
    return make_gallery(200, seed=77, heldout=DEFAULT_HELDOUT, extra_captions=0)


# --- tokenizer ------------------------------------------------------------------------------------------


def test_tokenizer_normalises_case_and_punctuation_and_frames_with_specials():
    tok = build_tokenizer(all_words(), context_length=16)
    a = tok.encode("A Red star, above a CIRCLE.")
    b = tok.encode("a red star , above a circle .")
    assert a.ids == b.ids
    assert a.tokens[:4] == [START, "a", "red", "star"]
    assert len(a.ids) == 16 and a.ids[-1] == tok.token_to_id(PAD) == 0
    assert tok.token_to_id("<unk>") not in a.ids


def test_tokenizer_keeps_end_token_when_truncating():
    tok = build_tokenizer(all_words(), context_length=8)
    enc = tok.encode("a red star above a blue circle and a green square on a grey background")
    assert len(enc.ids) == 8 and enc.tokens[-1] == END


def test_tokenizer_ids_do_not_depend_on_word_order():
    words = list(all_words())
    assert build_tokenizer(words).get_vocab() == build_tokenizer(reversed(words)).get_vocab()


# --- shipped model, torch-free ----------------------------------------------------------------------------


@needs_shipped
def test_shipped_model_files_are_small_and_complete():
    files = [p for p in SHIPPED_DIR.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= 10 * 1024 * 1024
    names = {str(p.relative_to(SHIPPED_DIR)) for p in files}
    assert {"config.json", "visual/model.onnx", "textual/model.onnx", "train_log.json"} <= names
    log = json.loads((SHIPPED_DIR / "train_log.json").read_text())
    assert HeldOut.from_dict(log["heldout"]) == DEFAULT_HELDOUT
    assert log["total_minutes"] <= 20


@needs_shipped
def test_shipped_model_loads_and_encodes_without_torch():
    code = (
        "import sys, numpy as np\n"
        "from pixquery.models.registry import load_encoder\n"
        "from pixquery.synth.render import render_scene\n"
        "from pixquery.synth.world import sample_scene\n"
        "enc = load_encoder('mini')\n"
        "img = render_scene(sample_scene(np.random.default_rng(0)), size=64)\n"
        "v = np.concatenate([enc.encode_images([img]), enc.encode_texts(['a red star above a blue circle'])])\n"
        "print(enc.name, enc.dim, v.shape[1], round(float(np.linalg.norm(v, axis=1).min()), 4), "
        "'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    name, dim, width, norm, torch_loaded = out.stdout.split()
    assert name == "mini" and dim == width
    assert abs(float(norm) - 1.0) < 1e-3
    assert torch_loaded == "False"


def test_mini_dir_spec_resolves_train_output_layout(tmp_path):
    from pixquery.models.base import ModelError

    with pytest.raises(ModelError, match="no mini model"):
        resolve_dir(str(tmp_path))
    (tmp_path / "onnx").mkdir()
    (tmp_path / "onnx" / "config.json").write_text("{}")
    assert resolve_dir(str(tmp_path)) == tmp_path / "onnx"  # a train-mini output directory
    if (SHIPPED_DIR / "visual" / "model.onnx").exists():
        assert resolve_dir("") == SHIPPED_DIR
    else:
        with pytest.raises(ModelError, match="train one with `pixquery train-mini DIR`"):
            resolve_dir("")


@needs_shipped
def test_shipped_model_is_a_whole_encoder(shipped):
    from pixquery.models.base import Encoder, EncoderBase

    assert isinstance(shipped, Encoder) and isinstance(shipped, EncoderBase)
    assert (shipped.image_size, shipped.decode_size, shipped.context_length) == (64, 64, 40)
    assert shipped.precision == "fp32" and not shipped.meaningless  # load_encoder's default precision
    np.testing.assert_array_equal(shipped.token_lengths(["a red star", "star " * 60]), [5, 40])  # <s> a red star </s>


@needs_shipped
def test_shipped_model_embeddings_are_unit_rows_and_deterministic(shipped, gallery):
    a = shipped.encode_images(gallery.images[:8])
    b = shipped.encode_images(gallery.images[:8])
    assert a.dtype == np.float32 and a.shape == (8, shipped.dim)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-4)
    np.testing.assert_array_equal(a, b)
    batch = np.stack([shipped.preprocess(img) for img in gallery.images[:8]])
    np.testing.assert_allclose(shipped.encode_preprocessed(batch), a, atol=1e-5)


@needs_shipped
def test_shipped_model_retrieves_seen_and_heldout_scenes(shipped, gallery):
    scores = shipped.encode_texts(gallery.captions) @ shipped.encode_images(gallery.images).T
    t2i, _ = retrieval_ranks(scores, gallery.caption_owner)
    seen = recall_from_ranks(t2i[~gallery.heldout], [1, 10])
    held = recall_from_ranks(t2i[gallery.heldout], [1, 10])
    assert seen["r@10"] >= SEEN_R10_MIN
    assert held["r@10"] >= HELDOUT_R10_MIN
    # Held-out scenes are not harder to *retrieve* by whole caption (measured R@1 0.99 seen / 0.97 held-out here):
    # a scene's other objects, sizes and background identify it. Where held-out pairs would show is binding,
    # which this model lacks altogether (test_shipped_model_binds_colour_to_shape below).
    assert held["r@1"] <= seen["r@1"] + 0.05


@needs_shipped
def test_shipped_model_finds_heldout_facts_well_above_chance(shipped, gallery):
    figures = evaluate(gallery, DEFAULT_HELDOUT, shipped.encode_images, shipped.encode_texts)
    assert figures["heldout_fact_p10"] >= 3 * figures["heldout_fact_chance_p10"]
    assert figures["cls_background"] >= 0.9


@needs_shipped
@pytest.mark.xfail(strict=True, reason="known limitation: the shipped mini model does not bind colours to shapes "
                   "(Winoground-style image score ~0.01, benchmarks/README.md); strict, so a model that learns "
                   "binding turns this into a failure that asks to update the claim")
def test_shipped_model_binds_colour_to_shape():
    """A red star and a green circle is not a green star and a red circle (a held-out pair is involved)."""
    enc = load_encoder("mini")
    from pixquery.synth.render import render_scene

    scene = Scene((Obj("star", "red", "large", 0.17, 0.5), Obj("circle", "green", "large", 0.83, 0.5)), "grey")
    swapped = Scene((Obj("star", "green", "large", 0.17, 0.5), Obj("circle", "red", "large", 0.83, 0.5)), "grey")
    images = enc.encode_images([render_scene(scene, 64), render_scene(swapped, 64)])
    texts = enc.encode_texts([caption_for(scene, "objects"), caption_for(swapped, "objects")])
    sims = texts @ images.T
    assert sims[0, 0] > sims[0, 1] and sims[1, 1] > sims[1, 0]


# --- training (needs torch) -------------------------------------------------------------------------------


def _tiny_train(out_dir: Path, steps: int = 3) -> dict:
    from pixquery.synth.train import train_mini

    return train_mini(out_dir, seed=3, steps=steps, n_pairs=24, n_captions=3, batch_size=16, workers=1,
                      eval_scenes=0, export=False, progress=False,
                      config={"embed_dim": 32, "text_width": 32, "cnn_widths": (16, 16, 16), "stem_width": 8})


def test_train_mini_is_reproducible(tmp_path):
    torch = pytest.importorskip("torch")
    log_a = _tiny_train(tmp_path / "a")
    log_b = _tiny_train(tmp_path / "b")
    assert log_a["steps"] == log_b["steps"] == 3
    assert log_a["final_loss"] == log_b["final_loss"]
    a = torch.load(tmp_path / "a" / "mini.pt")["state_dict"]
    b = torch.load(tmp_path / "b" / "mini.pt")["state_dict"]
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    log = json.loads((tmp_path / "a" / "train_log.json").read_text())
    assert log["seed"] == 3 and HeldOut.from_dict(log["heldout"]) == DEFAULT_HELDOUT


def test_training_pool_never_shows_heldout_and_captions_are_true():
    pytest.importorskip("torch")
    from pixquery.synth.mini_data import FACTS, build_pool, caption_facts, scene_facts, truth_matrix

    pool = build_pool(30, seed=5, heldout=DEFAULT_HELDOUT, n_captions=4, workers=1)
    assert len(pool) == 60
    n, k, _ = pool.caption_facts.shape
    truth = truth_matrix(pool.caption_facts.reshape(n * k, -1), pool.image_facts)
    own = truth[np.arange(n * k), np.arange(n * k) // k]
    assert bool(own.all())  # every caption is true of its own image
    from pixquery.synth.captions import caption_involves_heldout

    assert not any(caption_involves_heldout(c, DEFAULT_HELDOUT) for caps in pool.captions for c in caps)
    # A caption with colours swapped between two objects is false.
    scene = Scene((Obj("star", "red", "large", 0.17, 0.5), Obj("circle", "green", "small", 0.83, 0.5)), "grey")
    facts = scene_facts(scene)
    import torch

    image = torch.zeros((1, len(FACTS)), dtype=torch.bool)
    image[0, facts] = True
    texts = ["a red star and a green circle", "a green star and a red circle", "a star left of a circle",
             "a star right of a circle", "two shapes", "three shapes"]
    rows = torch.full((len(texts), 24), -1, dtype=torch.int16)
    for i, t in enumerate(texts):
        cf = caption_facts(t)
        rows[i, : len(cf)] = torch.tensor(cf, dtype=torch.int16)
    assert truth_matrix(rows, image)[:, 0].tolist() == [True, False, True, False, True, False]


def test_text_tower_ignores_padding_and_reads_word_order():
    torch = pytest.importorskip("torch")
    from pixquery.synth.mini_model import MiniCLIP, MiniConfig

    tok = build_tokenizer(all_words(), context_length=24)
    torch.manual_seed(0)
    model = MiniCLIP(MiniConfig(vocab_size=tok.get_vocab_size(), context_length=24)).eval()
    ids = torch.tensor(encode_batch(tok, ["a star above a circle", "a circle above a star"]))
    with torch.no_grad():
        full = model.encode_text(ids)
        short = model.encode_text(ids[:, :8])
    torch.testing.assert_close(full, short)
    # Same words, other order: another embedding. At random init the difference is small but far above float
    # noise (a bag-of-words tower would give identical vectors, differing by ~1e-7 at most).
    assert float((full[0] - full[1]).abs().max()) > 1e-5


@pytest.mark.slow
def test_exported_onnx_matches_torch(tmp_path):
    torch = pytest.importorskip("torch")
    from pixquery.synth.mini_model import MiniCLIP, MiniConfig
    from pixquery.synth.train import _torch_encoders, export_onnx

    _tiny_train(tmp_path / "m", steps=1)
    ckpt = torch.load(tmp_path / "m" / "mini.pt")
    model = MiniCLIP(MiniConfig.from_dict(ckpt["config"]))
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    export_onnx(model, tmp_path / "m" / "tokenizer.json", tmp_path / "m" / "onnx")
    onnx_enc = load_encoder(f"mini:{tmp_path / 'm'}")
    encode_images, encode_texts = _torch_encoders(model, tmp_path / "m" / "tokenizer.json")
    rng = np.random.default_rng(0)
    scenes = [sample_scene(rng) for _ in range(6)]
    from pixquery.synth.render import render_scene

    images = [render_scene(s, 64, rng) for s in scenes]
    texts = [describe(s, rng, n=1)[0] for s in scenes] + ["A Red STAR."]
    np.testing.assert_allclose(onnx_enc.encode_images(images), encode_images(images), atol=1e-4)
    np.testing.assert_allclose(onnx_enc.encode_texts(texts), encode_texts(texts), atol=1e-4)
