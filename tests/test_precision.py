"""Precision variants, the parity gate, real-length text queries and an index's precision record.

Two small models keep this quick: `random:tiny` exported to ONNX (a real CLIP-family graph with a causal text
tower, for the real-length test) and a "linear" model in the same layout whose towers are one projection each
(what dominates a CLIP tower: MatMuls), on which dynamic int8 is accurate enough for the gate to accept it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pixquery.api import Library
from pixquery.cpu import parse_cpuinfo
from pixquery.errors import ModelMismatchError
from pixquery.models import parity
from pixquery.models.base import ModelError
from pixquery.models.onnx_backend import OnnxEncoder
from pixquery.models.precision import (
    PrecisionUnavailable,
    TowerPrecision,
    parse_precision,
    precision_options,
    variant_path,
)
from pixquery.models.preprocess import load_preprocess_cfg
from tests.conftest import write_jpegs

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

pytest.importorskip("onnxruntime.quantization")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """random:tiny exported to the immich layout (needs torch once)."""
    pytest.importorskip("torch")
    from pixquery.models.export import export_onnx

    return export_onnx("random:tiny", tmp_path_factory.mktemp("tiny") / "model")


def _save(graph: onnx.GraphProto, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def linear_layout(src: Path, dest: Path) -> Path:
    """A copy of `src`'s configs and tokenizer with one-projection towers: image -> flatten -> MatMul, and
    text -> embedding Gather -> mean over tokens -> MatMul."""
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("*.onnx", "precision"))
    config = json.loads((src / "config.json").read_text())
    dim, vocab = config["embed_dim"], config["text_cfg"]["vocab_size"]
    size = load_preprocess_cfg(src / "visual" / "preprocess_cfg.json").size
    rng = np.random.default_rng(0)
    weights = rng.standard_normal((3 * size * size, dim)).astype(np.float32)
    _save(
        helper.make_graph(
            [
                helper.make_node("Flatten", ["image"], ["flat"], axis=1),
                helper.make_node("MatMul", ["flat", "W"], ["embedding"]),
            ],
            "visual",
            [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, size, size])],
            [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", dim])],
            [numpy_helper.from_array(weights, "W")],
        ),
        dest / "visual" / "model.onnx",
    )
    table = rng.standard_normal((vocab, 64)).astype(np.float32)
    projection = rng.standard_normal((64, dim)).astype(np.float32)
    _save(
        helper.make_graph(
            [
                helper.make_node("Gather", ["E", "text"], ["tokens"]),
                helper.make_node("ReduceMean", ["tokens"], ["pooled"], axes=[1], keepdims=0),
                helper.make_node("MatMul", ["pooled", "P"], ["embedding"]),
            ],
            "textual",
            [helper.make_tensor_value_info("text", TensorProto.INT32, ["batch", "sequence"])],
            [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", dim])],
            [numpy_helper.from_array(table, "E"), numpy_helper.from_array(projection, "P")],
        ),
        dest / "textual" / "model.onnx",
    )
    return dest


@pytest.fixture()
def linear_dir(tiny_dir: Path, tmp_path: Path) -> Path:
    return linear_layout(tiny_dir, tmp_path / "linear")


def break_quantization(variant: Path, seed: int = 0) -> None:
    """Corrupt a quantised graph's weight quantisation parameters (a bad quantiser, a damaged cache): every
    scale is multiplied by a random factor between 0.2 and 5 and every zero point shifted by up to +-40 steps.
    (A per-tensor scale alone only rescales a whole projection, which normalised vectors would not show.)"""
    model = onnx.load(str(variant))
    rng = np.random.default_rng(seed)
    touched = 0
    for init in model.graph.initializer:
        values = numpy_helper.to_array(init)
        if init.name.endswith("_scale") and values.dtype == np.float32:
            values = values * np.exp(rng.uniform(np.log(0.2), np.log(5.0), values.shape)).astype(np.float32)
        elif init.name.endswith("_zero_point") and values.dtype in (np.int8, np.uint8):
            info = np.iinfo(values.dtype)
            shifted = values.astype(np.int32) + rng.integers(-40, 41, values.shape)
            values = np.clip(shifted, info.min, info.max).astype(values.dtype)
        else:
            continue
        init.CopyFrom(numpy_helper.from_array(values, init.name))
        touched += 1
    assert touched, "the graph has no quantisation parameters to corrupt"
    onnx.save(model, str(variant))


# --- cpu flags and precision names ---------------------------------------------------------------------------


def test_cpu_flags_from_cpuinfo() -> None:
    x86 = "processor: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni amx_tile amx_int8\n"
    flags = parse_cpuinfo(x86)
    assert flags["avx2"] and flags["avx512_vnni"] and flags["amx"]
    assert not flags["avx512_bf16"] and not flags["arm_bf16"]
    arm = "processor: 0\nFeatures\t: fp asimd asimddp bf16 i8mm\n"
    flags = parse_cpuinfo(arm)
    assert flags["arm_bf16"] and flags["arm_i8mm"] and not flags["avx2"]
    assert not any(parse_cpuinfo("").values())


def test_parse_precision_forms(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_precision("int8") == TowerPrecision("int8", "int8")
    assert parse_precision("image=int8-static,text=fp32") == TowerPrecision("int8-static", "fp32")
    assert parse_precision("auto") == "auto"
    monkeypatch.delenv("PIXQUERY_PRECISION", raising=False)
    assert parse_precision(None) == TowerPrecision()
    monkeypatch.setenv("PIXQUERY_PRECISION", "int8")
    assert parse_precision(None) == TowerPrecision("int8", "int8")
    with pytest.raises(ModelError, match="unknown precision"):
        parse_precision("int4")
    # torch models run fp32 only: asking for int8 is an error, not silently ignored
    with pytest.raises(ModelError, match="ONNX models"):
        precision_options("random:tiny", "int8")
    assert precision_options("random:tiny", "fp32") == {}
    assert precision_options("mini", "int8") == {"precision": "int8"}


def test_bf16_is_refused_where_the_runtime_cannot_run_it(linear_dir: Path) -> None:
    import platform

    from pixquery.cpu import has_bf16

    if platform.machine().lower() in ("aarch64", "arm64") and has_bf16():
        pytest.skip("this ARM CPU runs bf16")
    encoder = OnnxEncoder("onnx:linear", linear_dir, precision="bf16")
    with pytest.raises(PrecisionUnavailable, match="bf16"):
        encoder.encode_texts(["a red car"])


# --- variants ------------------------------------------------------------------------------------------------


def test_int8_variant_is_built_once_and_rebuilt_when_the_source_changes(linear_dir: Path) -> None:
    source = linear_dir / "visual" / "model.onnx"
    root = linear_dir / "precision"
    first = variant_path(source, root, "visual", "int8")
    assert first == root / "visual-int8.onnx" and first.is_file()
    assert first.stat().st_size < source.stat().st_size / 2  # int8 weights: a quarter of fp32, plus scales
    built_at = first.stat().st_mtime_ns
    assert variant_path(source, root, "visual", "int8").stat().st_mtime_ns == built_at  # cached
    source.write_bytes(source.read_bytes())  # same graph, new mtime: the record no longer matches
    assert variant_path(source, root, "visual", "int8").stat().st_mtime_ns != built_at
    assert variant_path(source, root, "visual", "fp32") == source


def test_int8_encoder_runs_the_variant_close_to_fp32(linear_dir: Path, jpeg_folder: Path) -> None:
    from PIL import Image

    images = [Image.open(p).convert("RGB") for p in sorted(jpeg_folder.iterdir())[:6]]
    fp32 = OnnxEncoder("onnx:linear", linear_dir, precision="fp32")
    int8 = OnnxEncoder("onnx:linear", linear_dir, precision="int8")
    cos = np.sum(fp32.encode_images(images) * int8.encode_images(images), axis=1)
    assert cos.min() > 0.99
    assert int8._visual is not None and int8._visual.path.name == "visual-int8.onnx"


# --- the parity gate -----------------------------------------------------------------------------------------


def test_gate_accepts_a_good_variant(linear_dir: Path) -> None:
    encoder = OnnxEncoder("onnx:linear", linear_dir)
    report = parity.run_gate(encoder, ["int8"], ["int8"])
    assert report.image["int8"].min_cosine >= parity.MIN_COSINE
    assert report.text["int8"].min_cosine >= parity.MIN_COSINE
    assert report.pairs["text=int8,image=int8"] >= parity.MIN_TOP10_OVERLAP
    assert report.variant_passes("int8") and report.passes("fp32", "int8")  # cross-precision check too
    assert report.image["int8"].images_per_s > 0 and report.text["int8"].query_ms > 0
    saved = json.loads((linear_dir / "precision" / "gate.json").read_text())
    stored = next(iter(saved["reports"].values()))
    assert set(stored["cpu_flags"]) >= {"avx2", "avx512_vnni", "avx512_bf16", "amx"}
    assert stored["pairs"] == report.pairs
    assert parity.cached_report(encoder) == report  # measured once, then read back


def test_gate_rejects_a_broken_variant_and_auto_falls_back_to_fp32(linear_dir: Path) -> None:
    encoder = OnnxEncoder("onnx:linear", linear_dir)
    for tower in ("visual", "textual"):
        break_quantization(variant_path(linear_dir / tower / "model.onnx", encoder.variant_root, tower, "int8"))
    report = parity.run_gate(encoder, ["int8"], ["int8"])
    assert report.image["int8"].min_cosine < parity.MIN_COSINE
    assert not report.variant_passes("int8")
    assert not report.passes("fp32", "int8") and not report.passes("int8", "fp32")
    assert report.choice == {"image": "fp32", "text": "fp32"}


def test_auto_falls_back_to_fp32_when_nothing_can_pass(linear_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parity, "MIN_COSINE", 1.01)  # no variant reaches a cosine above 1
    encoder = OnnxEncoder("onnx:linear", linear_dir, precision="auto")
    monkeypatch.setattr(encoder, "image_precisions", ("fp32", "int8"))  # keep the measured set small
    monkeypatch.setattr(encoder, "text_precisions", ("fp32", "int8"))
    assert encoder.precision == TowerPrecision("fp32", "fp32")
    report = parity.cached_report(encoder)
    assert report is not None and report.passing == []  # fp32/fp32 is the reference, never a candidate
    assert report.image["int8"].min_cosine > 0.99  # a good variant, refused only by the threshold


def test_choice_takes_the_fastest_passing_variant() -> None:
    figures = parity.TowerFigures
    report = parity.GateReport(
        cpu_key="x",
        cpu_flags={},
        fingerprint={},
        thresholds=parity.Thresholds(),
        image={"fp32": figures(images_per_s=10), "int8": figures(images_per_s=30),
               "int8-static": figures(images_per_s=40)},
        text={"fp32": figures(query_ms=30), "int8": figures(query_ms=10), "int8-static": figures(query_ms=9)},
        passing=["text=fp32,image=int8", "text=int8,image=int8", "text=int8,image=fp32"],
    )
    # int8-static is fastest but fails; int8 passes with both text precisions, int8 text is faster
    assert parity.choose(report) == TowerPrecision("int8", "int8")
    report.image["int8"].images_per_s = 10.5  # within MIN_GAIN of fp32: not worth an accuracy cost
    assert parity.choose(report) == TowerPrecision("fp32", "int8")


# --- real-length text queries ----------------------------------------------------------------------------------


def test_clip_queries_run_at_real_length_and_equal_the_padded_output(tiny_dir: Path) -> None:
    encoder = OnnxEncoder("onnx:tiny", tiny_dir)
    assert encoder.runs_at_real_length()
    tower, tokenizer, _ = encoder._text_tower()
    texts = ["a red car", "two blue circles"]
    for text in texts:
        real = tokenizer.encode([text], pad_to=0)
        padded = tokenizer.encode([text], pad_to=None)
        assert real.ids.shape[1] < padded.ids.shape[1] == tokenizer.context_length
        fast = encoder.encode_texts([text])
        np.testing.assert_allclose(fast, tower.run({"text": padded.ids}), atol=1e-5)
    # a batch of different lengths equals the texts one by one
    np.testing.assert_allclose(
        encoder.encode_texts(texts), np.concatenate([encoder.encode_texts([t]) for t in texts]), atol=1e-5
    )
    assert tower.path.name == "textual-fp32.ready.onnx"  # the fast-loading copy, same outputs as the export
    original = OnnxEncoder("onnx:tiny", tiny_dir, fast_load=False)
    np.testing.assert_allclose(original.encode_texts(texts), encoder.encode_texts(texts), atol=1e-5)


def test_siglip_text_stays_padded(tmp_path: Path) -> None:
    from pixquery.models.export import export_onnx

    model = export_onnx("random:tiny-siglip", tmp_path / "siglip")
    encoder = OnnxEncoder("onnx:siglip", model)
    assert not encoder.runs_at_real_length()
    tower, tokenizer, _ = encoder._text_tower()
    assert tower.dim_size(tower.input_names[0], 1) == tokenizer.context_length


# --- an index's precision record ----------------------------------------------------------------------------


def test_precision_is_recorded_and_checked_on_open(linear_dir: Path, tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    write_jpegs(photos, 12)
    index = tmp_path / "index"
    spec = f"onnx:{linear_dir}"
    with Library.open(index, model=spec, precision="int8") as lib:
        assert lib.index([photos]).embed.embedded == 12
    config = json.loads((index / "config.json").read_text())
    assert config["extra"]["precision"] == {"image": "int8", "text": "int8"}

    with Library.open(index) as lib:  # no precision asked: the recorded one
        assert lib.encoder.precision == TowerPrecision("int8", "int8")
        assert len(lib.search("a red car", k=5)) == 5

    # fp32 text against int8 images: refused until the gate has compared the pair on this CPU
    with Library.open(index, precision="fp32") as lib, pytest.raises(ModelMismatchError, match="not compared"):
        _ = lib.encoder
    parity.run_gate(OnnxEncoder(spec, linear_dir), ["int8"], ["int8"])
    with Library.open(index, precision="fp32") as lib:
        assert lib.encoder.precision == TowerPrecision("int8", "fp32")  # images keep the index's precision
        assert len(lib.search("a red car", k=5)) == 5

    # a broken int8 image tower: the gate finds the spaces disagree, and the pair is refused
    encoder = OnnxEncoder(spec, linear_dir)
    break_quantization(variant_path(linear_dir / "visual" / "model.onnx", encoder.variant_root, "visual", "int8"))
    parity.run_gate(encoder, ["int8"], ["int8"], use_cache=False)
    with Library.open(index, precision="fp32") as lib, pytest.raises(ModelMismatchError, match="differ"):
        _ = lib.encoder


def test_an_index_without_a_record_is_fp32(linear_dir: Path, tmp_path: Path) -> None:
    write_jpegs(tmp_path / "photos", 4)
    index = tmp_path / "index"
    with Library.open(index, model=f"onnx:{linear_dir}") as lib:
        lib.index([tmp_path / "photos"])
    config = json.loads((index / "config.json").read_text())
    assert config["extra"]["precision"] == {"image": "fp32", "text": "fp32"}
    del config["extra"]["precision"]  # as an index made before precisions were recorded
    (index / "config.json").write_text(json.dumps(config))
    with Library.open(index) as lib:
        assert lib.encoder.precision == TowerPrecision("fp32", "fp32")
