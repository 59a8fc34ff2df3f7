"""The torch-free ONNX backend on hand-written immich layouts: loading, batching, errors, offline, M-CLIP.

The graphs are tiny (built with onnx.helper) and the tokenizer is a word-level tokenizer.json, so these tests
run in a second each and never import torch.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pixquery.models.base import Encoder, EncoderBase, ModelError
from pixquery.models.onnx_backend import LAYOUT_FILES, OnnxEncoder, load, load_immich
from pixquery.models.tokenize import TextTokenizer, clean_text

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

SIZE, DIM, CONTEXT = 8, 4, 6
WORDS = ["a", "cat", "dog", "photo", "of", "the", "red", "car"]
VISUAL_W = np.random.default_rng(1).standard_normal((3 * SIZE * SIZE, DIM)).astype(np.float32)
TEXT_W = np.random.default_rng(2).standard_normal((CONTEXT, DIM)).astype(np.float32)


def word_tokenizer(bos_eos: bool = True):
    """A word-level tokenizer.json: <pad>=0, <unk>=1, <bos>=2, <eos>=3, then WORDS."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    vocab = {"<pad>": 0, "<unk>": 1, "<bos>": 2, "<eos>": 3} | {w: 4 + i for i, w in enumerate(WORDS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens(["<pad>", "<unk>", "<bos>", "<eos>"])
    if bos_eos:
        tok.post_processor = processors.TemplateProcessing(
            single="<bos> $A <eos>", special_tokens=[("<bos>", 2), ("<eos>", 3)]
        )
    return tok


def _save(graph, path: Path, opset: int = 17) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def visual_graph(batch: int | str = 1, baked_reshape: bool = False):
    """image [batch,3,S,S] -> flatten -> matmul -> L2 normalise -> embedding.

    With baked_reshape the flatten is a Reshape to the constant shape [1, -1], as an exporter folds it for a
    fixed batch of 1: a graph whose batch axis cannot simply be declared dynamic.
    """
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, [batch, 3, SIZE, SIZE])
    out = helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [batch, DIM])
    inits = [numpy_helper.from_array(VISUAL_W, "w")]
    if baked_reshape:
        inits.append(numpy_helper.from_array(np.array([1, -1], dtype=np.int64), "shape"))
        flat = helper.make_node("Reshape", ["image", "shape"], ["flat"])
    else:
        flat = helper.make_node("Flatten", ["image"], ["flat"], axis=1)
    nodes = [
        flat,
        helper.make_node("MatMul", ["flat", "w"], ["proj"]),
        helper.make_node("LpNormalization", ["proj"], ["embedding"], axis=-1, p=2),
    ]
    return helper.make_graph(nodes, "visual", [image], [out], inits)


def text_graph(batch: int | str = 1, seq: int | str = CONTEXT):
    """text int32 [batch, seq] -> float -> matmul -> normalise; with a dynamic seq, [seq_len, 1] instead."""
    text = helper.make_tensor_value_info("text", TensorProto.INT32, [batch, seq])
    out = helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [batch, DIM])
    if isinstance(seq, int):
        nodes = [
            helper.make_node("Cast", ["text"], ["f"], to=TensorProto.FLOAT),
            helper.make_node("MatMul", ["f", "w"], ["proj"]),
            helper.make_node("LpNormalization", ["proj"], ["embedding"], axis=-1, p=2),
        ]
        return helper.make_graph(nodes, "textual", [text], [out], [numpy_helper.from_array(TEXT_W, "w")])
    # Dynamic length: the embedding is [length, 1, 0, 0] normalised, so a test can read the length it ran at.
    inits = [
        numpy_helper.from_array(np.array([1.0, 0.0, 0.0], dtype=np.float32), "tail"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "one"),
    ]
    nodes = [
        helper.make_node("Cast", ["text"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["f", "one"], ["rowsum"], keepdims=1),  # [batch, 1]
        helper.make_node("Mul", ["rowsum", "zero_f"], ["zeros"]),
        helper.make_node("Shape", ["text"], ["shape"]),
        helper.make_node("Gather", ["shape", "one"], ["len_i"], axis=0),
        helper.make_node("Cast", ["len_i"], ["len_f"], to=TensorProto.FLOAT),
        helper.make_node("Add", ["zeros", "len_f"], ["len_col"]),  # [batch, 1] filled with the length
        helper.make_node("Add", ["zeros", "tail"], ["tail_b"]),  # [batch, 3]
        helper.make_node("Concat", ["len_col", "tail_b"], ["proj"], axis=1),
        helper.make_node("LpNormalization", ["proj"], ["embedding"], axis=-1, p=2),
    ]
    inits.append(numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero_f"))
    return helper.make_graph(nodes, "textual", [text], [out], inits)


MCLIP_EMB = np.random.default_rng(3).standard_normal((4 + len(WORDS), 5)).astype(np.float32)
MCLIP_PROJ = np.random.default_rng(4).standard_normal((5, DIM)).astype(np.float32)


def mclip_graph():
    """M-CLIP-style text tower: token embeddings, mean over the attention mask, linear projection."""
    ids = helper.make_tensor_value_info("input_ids", TensorProto.INT32, [1, CONTEXT])
    mask = helper.make_tensor_value_info("attention_mask", TensorProto.INT32, [1, CONTEXT])
    out = helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [1, DIM])
    inits = [
        numpy_helper.from_array(MCLIP_EMB, "emb"),
        numpy_helper.from_array(MCLIP_PROJ, "proj_w"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
        numpy_helper.from_array(np.array([2], dtype=np.int64), "axis2"),
    ]
    nodes = [
        helper.make_node("Gather", ["emb", "input_ids"], ["tok"], axis=0),  # [1, L, 5]
        helper.make_node("Cast", ["attention_mask"], ["m"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["m", "axis2"], ["m3"]),
        helper.make_node("Mul", ["tok", "m3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "axis1"], ["summed"], keepdims=0),
        helper.make_node("ReduceSum", ["m", "axis1"], ["count"], keepdims=1),
        helper.make_node("Div", ["summed", "count"], ["mean"]),
        helper.make_node("MatMul", ["mean", "proj_w"], ["proj"]),
        helper.make_node("LpNormalization", ["proj"], ["embedding"], axis=-1, p=2),
    ]
    return helper.make_graph(nodes, "mclip", [ids, mask], [out], inits)


def write_layout(
    root: Path,
    visual=None,
    textual=None,
    config: dict | None = None,
    pad_token: str = "<pad>",
) -> Path:
    """A complete minimal immich layout under root."""
    cfg = {"embed_dim": DIM, "vision_cfg": {"image_size": SIZE}, "text_cfg": {"context_length": CONTEXT}}
    (root / "visual").mkdir(parents=True, exist_ok=True)
    (root / "textual").mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(json.dumps(config or cfg))
    preprocess = {
        "size": [SIZE, SIZE],
        "mode": "RGB",
        "mean": [0.5, 0.5, 0.5],
        "std": [0.5, 0.5, 0.5],
        "interpolation": "bicubic",
        "resize_mode": "shortest",
    }
    (root / "visual" / "preprocess_cfg.json").write_text(json.dumps(preprocess))
    _save(visual if visual is not None else visual_graph(), root / "visual" / "model.onnx")
    _save(textual if textual is not None else text_graph(), root / "textual" / "model.onnx")
    word_tokenizer().save(str(root / "textual" / "tokenizer.json"))
    (root / "textual" / "tokenizer_config.json").write_text(json.dumps({"pad_token": pad_token}))
    return root


def images(n: int) -> list[Image.Image]:
    rng = np.random.default_rng(5)
    return [Image.fromarray(rng.integers(0, 255, (12 + i, 10, 3), dtype=np.uint8)) for i in range(n)]


@pytest.fixture()
def layout(tmp_path: Path) -> Path:
    return write_layout(tmp_path / "model")


def test_minimal_layout_encodes_images_and_texts_as_unit_rows(layout: Path) -> None:
    enc = load(str(layout))
    assert isinstance(enc, Encoder) and isinstance(enc, EncoderBase)
    assert (enc.name, enc.dim, enc.image_size, enc.meaningless) == (f"onnx:{layout}", DIM, SIZE, False)
    assert (enc.decode_size, enc.context_length, enc.precision) == (SIZE, CONTEXT, "fp32")
    assert enc.preprocess_cfg.crop_rounding == "half_even"  # immich's files name no rounding: open_clip's
    imgs = images(3)
    vecs = enc.encode_images(imgs)
    assert vecs.shape == (3, DIM) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-6)
    # The image rows are the graph's function of the preprocessed pixels, computed here independently.
    pixels = np.stack([enc.preprocess(img) for img in imgs])
    expected = pixels.reshape(3, -1) @ VISUAL_W
    np.testing.assert_allclose(vecs, expected / np.linalg.norm(expected, axis=1, keepdims=True), atol=1e-5)
    np.testing.assert_allclose(enc.encode_preprocessed(pixels), vecs, atol=1e-6)

    texts = enc.encode_texts(["a cat", "The red CAR"])
    ids = np.array([[2, 4, 5, 3, 0, 0], [2, 9, 10, 11, 3, 0]], dtype=np.float32)  # <bos> ... <eos>, <pad>=0
    expected = ids @ TEXT_W
    np.testing.assert_allclose(texts, expected / np.linalg.norm(expected, axis=1, keepdims=True), atol=1e-5)
    assert enc.family.name == "clip" and not enc.runs_at_real_length()
    assert enc.encode_texts([]).shape == (0, DIM) and enc.encode_images([]).shape == (0, DIM)


@pytest.mark.parametrize("baked_reshape", [False, True])
def test_a_fixed_batch_graph_runs_one_row_at_a_time_and_gives_the_dynamic_graphs_rows(
    tmp_path: Path, baked_reshape: bool
) -> None:
    """immich publishes graphs with a batch of 1, some with the batch folded into constants (baked_reshape):
    they are run as published, one image at a time, and give the rows a dynamic-batch graph gives."""
    fixed = write_layout(tmp_path / "fixed", visual=visual_graph(batch=1, baked_reshape=baked_reshape))
    reference = write_layout(tmp_path / "ref", visual=visual_graph(batch="n"))
    enc = OnnxEncoder("fixed", fixed)
    imgs = images(5)
    out = enc.encode_images(imgs)
    assert enc._visual_tower().fixed_batch == 1
    np.testing.assert_allclose(out, OnnxEncoder("ref", reference).encode_images(imgs), atol=1e-6)


def test_dynamic_sequence_axis_runs_each_query_at_its_real_length(tmp_path: Path) -> None:
    for batch in (1, "n"):
        root = write_layout(tmp_path / f"seq{batch}", textual=text_graph(batch=batch, seq="seq"))
        enc = load(str(root))
        assert enc.runs_at_real_length()
        texts = ["a cat", "the red car", "a photo of the red car"]
        out = enc.encode_texts(texts)
        lengths = out[:, 0] / out[:, 1]  # the toy graph returns [length, 1, 0, 0] normalised
        if batch == 1:
            # each alone: <bos> words <eos>, the last one cut to the context length of 6 with EOS kept
            np.testing.assert_allclose(lengths, [4, 5, 6], atol=1e-4)
        else:
            np.testing.assert_allclose(lengths, [6, 6, 6], atol=1e-4)  # one batch, padded to its longest
        np.testing.assert_array_equal(enc.token_lengths(texts), [4, 5, 6])


def test_mclip_layout_feeds_input_ids_and_attention_mask(tmp_path: Path) -> None:
    root = write_layout(tmp_path / "mclip", textual=mclip_graph())
    enc = load(str(root))
    assert enc.family.name == "mclip"
    out = enc.encode_texts(["a red car"])
    ids = [2, 4, 10, 11, 3]  # <bos> a red car <eos>: five real tokens, one pad
    expected = MCLIP_EMB[ids].mean(axis=0) @ MCLIP_PROJ
    np.testing.assert_allclose(out[0], expected / np.linalg.norm(expected), atol=1e-5)


def test_sigmoid_parameters_in_config_are_exposed(tmp_path: Path) -> None:
    cfg = {
        "embed_dim": DIM,
        "init_logit_bias": -10,
        "logit_scale": 112.5,
        "logit_bias": -16.0,
        "text_cfg": {"context_length": CONTEXT, "tokenizer_kwargs": {"clean": "canonicalize"}},
    }
    enc = load(str(write_layout(tmp_path / "sig", config=cfg)))
    assert (enc.logit_scale, enc.logit_bias) == (112.5, -16.0)
    assert enc.family.name == "siglip" and enc.tokenizer.clean == "canonicalize"
    # canonicalize drops punctuation and case, so these two queries are one query
    np.testing.assert_allclose(enc.encode_texts(["A cat!"]), enc.encode_texts(["a cat"]), atol=1e-7)


@pytest.mark.parametrize("missing", LAYOUT_FILES)
def test_each_missing_file_is_named(layout: Path, missing: str) -> None:
    (layout / missing).unlink()
    with pytest.raises(ModelError, match=missing.replace(".", r"\.")):
        load(str(layout))


@pytest.mark.parametrize(
    ("relative", "content", "message"),
    [
        ("config.json", "{not json", r"config\.json is not valid JSON"),
        ("config.json", json.dumps({"vision_cfg": {}}), r"config\.json lacks a positive integer 'embed_dim'"),
        ("config.json", "[1, 2]", r"config\.json should hold a JSON object"),
        ("visual/preprocess_cfg.json", "{", r"preprocess_cfg\.json is not valid JSON"),
        (
            "visual/preprocess_cfg.json",
            json.dumps({"size": 8, "mean": 0.5}),
            r"preprocess_cfg\.json lacks the key 'std'",
        ),
        (
            "visual/preprocess_cfg.json",
            json.dumps({"size": 8, "mean": 0.5, "std": 0.5, "resize_mode": "zoom"}),
            r"preprocess_cfg\.json is malformed: unknown resize_mode",
        ),
    ],
)
def test_malformed_config_files_are_named_at_load(
    layout: Path, relative: str, content: str, message: str
) -> None:
    (layout / relative).write_text(content)
    with pytest.raises(ModelError, match=message):
        load(str(layout))


@pytest.mark.parametrize(
    ("relative", "content", "use", "message"),
    [
        ("visual/model.onnx", b"garbage", "images", r"visual/model\.onnx is not a loadable ONNX model"),
        ("textual/model.onnx", b"garbage", "texts", r"textual/model\.onnx is not a loadable ONNX model"),
        ("textual/tokenizer.json", b"{oops", "texts", r"tokenizer\.json is not a valid tokenizer file"),
        ("textual/tokenizer_config.json", b"{oops", "texts", r"tokenizer_config\.json is not valid JSON"),
        ("textual/tokenizer_config.json", b'{"pad_token": "<nope>"}', "texts", r"pad token '<nope>'"),
    ],
)
def test_malformed_model_files_are_named_when_first_used(
    layout: Path, relative: str, content: bytes, use: str, message: str
) -> None:
    (layout / relative).write_bytes(content)
    enc = load(str(layout))
    with pytest.raises(ModelError, match=message):
        enc.encode_images(images(1)) if use == "images" else enc.encode_texts(["a cat"])


def test_graph_and_config_disagreeing_on_sizes_is_reported(tmp_path: Path) -> None:
    root = write_layout(tmp_path / "m")
    cfg = json.loads((root / "config.json").read_text())
    (root / "config.json").write_text(json.dumps({**cfg, "embed_dim": DIM + 1}))
    with pytest.raises(ModelError, match="returns 4-d embeddings but config.json says 5"):
        load(str(root)).encode_texts(["a cat"])
    prep = json.loads((root / "visual" / "preprocess_cfg.json").read_text())
    (root / "visual" / "preprocess_cfg.json").write_text(json.dumps({**prep, "size": [16, 16]}))
    with pytest.raises(ModelError, match="takes 8-pixel images but visual/preprocess_cfg.json says size 16"):
        load(str(root)).encode_images(images(1))


def test_onnx_spec_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="needs a directory"):
        load("")
    with pytest.raises(ModelError, match="does not exist"):
        load(str(tmp_path / "nowhere"))
    with pytest.raises(ModelError, match="missing config.json"):
        load(str(tmp_path))


# --- immich: names, cache, offline, download -----------------------------------------------------------


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PIXQUERY_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("PIXQUERY_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return tmp_path / "cache"


@pytest.mark.parametrize("variable", ["PIXQUERY_OFFLINE", "HF_HUB_OFFLINE"])
def test_offline_immich_load_names_model_files_and_folder(
    cache: Path, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, "1")
    with pytest.raises(ModelError) as err:
        load_immich("ViT-B-32__openai")
    message = str(err.value)
    assert "immich:ViT-B-32__openai" in message and f"{variable}=1" in message
    for name in LAYOUT_FILES:
        assert name in message
    assert str(cache / "models" / "immich" / "ViT-B-32__openai") in message
    assert "huggingface.co/immich-app/ViT-B-32__openai" in message


def test_immich_model_in_the_cache_loads_offline(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIXQUERY_OFFLINE", "1")
    write_layout(cache / "models" / "immich" / "Tiny__test")
    enc = load_immich("Tiny__test")
    assert enc.name == "immich:Tiny__test"
    assert enc.encode_texts(["a cat"]).shape == (1, DIM)


def test_immich_download_goes_to_the_cache_from_the_immich_repo(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub

    source = write_layout(tmp_path / "hub")
    calls = []

    def fake_snapshot_download(repo_id: str, local_dir: Path, **kwargs) -> str:
        calls.append((repo_id, kwargs))
        shutil.copytree(source, local_dir, dirs_exist_ok=True)
        return str(local_dir)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    enc = load_immich("ViT-B-32__openai")
    assert calls and calls[0][0] == "immich-app/ViT-B-32__openai"
    assert "*/rknpu/*" in calls[0][1]["ignore_patterns"]  # accelerator builds are never fetched
    assert enc.model_dir == cache / "models" / "immich" / "ViT-B-32__openai"
    load_immich("ViT-B-32__openai")
    assert len(calls) == 1  # the second load is served by the cache


def test_network_failure_becomes_a_model_error_naming_the_files(cache: Path, monkeypatch) -> None:
    import huggingface_hub

    def no_network(*args, **kwargs):
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_network)
    with pytest.raises(
        ModelError, match=r"could not download immich:Tiny.*ConnectionError.*textual/tokenizer\.json"
    ):
        load_immich("Tiny")
    with pytest.raises(ModelError, match="needs a model name"):
        load_immich("org/name")


# --- tokenizer --------------------------------------------------------------------------------------------


def test_tokenizer_keeps_eos_when_it_truncates_and_pads_with_the_pad_token() -> None:
    tok = TextTokenizer(word_tokenizer(), context_length=5, pad_token="<pad>")
    batch = tok.encode(["a cat", "a photo of the red car"])
    assert batch.ids.tolist() == [[2, 4, 5, 3, 0], [2, 4, 7, 8, 3]]  # truncated, EOS kept last
    assert batch.attention_mask.tolist() == [[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]
    assert batch.lengths.tolist() == [4, 5]
    assert tok.encode(["a cat", "cat"], pad_to=0).ids.shape == (2, 4)
    with pytest.raises(ModelError, match="pad token"):
        TextTokenizer(word_tokenizer(), 5, pad_token="[PAD]")


def test_tokenizer_round_trips_through_save(tmp_path: Path) -> None:
    tok = TextTokenizer(word_tokenizer(), context_length=6, pad_token="<eos>", clean="lower")
    tok.save(tmp_path)
    again = TextTokenizer.from_dir(tmp_path, context_length=6, default_pad_token="<pad>", clean="lower")
    assert again.pad_id == 3
    np.testing.assert_array_equal(again.encode(["A  cat"]).ids, tok.encode(["a cat"]).ids)


def test_clean_text_modes() -> None:
    assert clean_text("  A\tbig   Dog ") == "A big Dog"
    assert clean_text("A big Dog", "lower") == "a big dog"
    assert clean_text("A dog's_ball, red!", "canonicalize") == "a dogs ball red"
    with pytest.raises(ValueError):
        clean_text("x", "shout")


def test_onnx_backend_never_imports_torch(layout: Path) -> None:
    code = (
        "import sys\n"
        "from pixquery.models.registry import load_encoder\n"
        "from PIL import Image\n"
        f"enc = load_encoder('onnx:{layout}')\n"
        "enc.encode_images([Image.new('RGB', (20, 12), 'red')]); enc.encode_texts(['a cat'])\n"
        "bad = [m for m in ('torch', 'transformers', 'open_clip') if m in sys.modules]\n"
        "assert not bad, bad\n"
        "print('ok')\n"
    )
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=root, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
