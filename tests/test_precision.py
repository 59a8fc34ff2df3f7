"""An index's one precision: int8 variants built once with their parity gate, the cached verdict, auto, errors.

Two small models keep this quick: `random:tiny` exported to ONNX (a real CLIP-family graph with a causal text
tower, for the real-length test) and a "linear" model in the same layout whose towers are one projection each
(what dominates a CLIP tower: MatMuls), on which dynamic int8 is accurate enough for the gate to pass.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from pixquery.api import Library
from pixquery.errors import ModelMismatchError
from pixquery.models import precision
from pixquery.models.base import ModelError
from pixquery.models.onnx_backend import OnnxEncoder
from pixquery.models.preprocess import load_preprocess_cfg
from pixquery.models.registry import load_encoder
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


def forbid_building(monkeypatch: pytest.MonkeyPatch) -> None:
    """From here on, quantising or running the gate fails the test: only the cached record may be read."""

    def fail(*args, **kwargs):
        raise AssertionError("the int8 variants were built or the gate ran again")

    monkeypatch.setattr(precision, "quantize", fail)
    monkeypatch.setattr(precision, "measure", fail)


# --- int8 variants and the gate, built once ---------------------------------------------------------------------


def test_int8_is_built_once_with_its_gate_and_the_verdict_is_cached_beside_it(
    linear_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    encoder = OnnxEncoder("onnx:linear", linear_dir, precision="int8")
    assert precision.gate_report(encoder) is None  # nothing built yet
    assert encoder.precision == "int8"
    root = linear_dir / "precision"
    assert (root / "textual-int8.onnx").is_file()  # its weights are mostly an embedding table: a Gather, kept
    variant = root / "visual-int8.onnx"  # one MatMul: int8 weights, a quarter of fp32's
    assert variant.is_file() and variant.stat().st_size < (linear_dir / "visual" / "model.onnx").stat().st_size / 2
    saved = json.loads((root / "gate.json").read_text())
    import onnxruntime

    assert saved["passed"] is True and saved["key"]["onnxruntime"] == onnxruntime.__version__
    assert saved["probes"] == {"images": 63, "texts": 30}  # 21 demo photos x 3 views, the queries file
    assert saved["image"]["min_cosine"] >= precision.MIN_COSINE and saved["text"]["min_cosine"] >= precision.MIN_COSINE
    assert saved["top10_overlap"] >= precision.MIN_TOP10_OVERLAP
    assert saved["thresholds"] == {"min_cosine": 0.99, "min_top10_overlap": 0.95, "top_k": 10}
    report = precision.gate_report(encoder)
    assert report is not None and report.passed and report.to_dict() == saved
    assert report.summary().startswith("int8 passes: min cosine to fp32: image 0.9")

    built = {p.name: p.stat().st_mtime_ns for p in root.glob("*-int8.onnx")}
    forbid_building(monkeypatch)
    again = OnnxEncoder("onnx:linear", linear_dir, precision="auto")
    assert again.precision == "int8"  # read from the cached record
    assert again.encode_texts(["a red car"]).shape == (1, again.dim)
    assert {p.name: p.stat().st_mtime_ns for p in root.glob("*-int8.onnx")} == built


def test_a_changed_model_is_built_and_judged_again(linear_dir: Path) -> None:
    encoder = OnnxEncoder("onnx:linear", linear_dir, precision="int8")
    assert encoder.precision == "int8"
    source = linear_dir / "visual" / "model.onnx"
    source.write_bytes(source.read_bytes())  # same graph, new mtime: the record no longer matches
    assert precision.gate_report(encoder) is None
    assert OnnxEncoder("onnx:linear", linear_dir, precision="int8").precision == "int8"
    assert precision.gate_report(encoder).key["visual"] == precision.fingerprint(source)


def test_int8_encoder_runs_the_variants_close_to_fp32(linear_dir: Path, jpeg_folder: Path) -> None:
    from PIL import Image

    images = [Image.open(p).convert("RGB") for p in sorted(jpeg_folder.iterdir())[:6]]
    fp32 = OnnxEncoder("onnx:linear", linear_dir, precision="fp32")
    int8 = OnnxEncoder("onnx:linear", linear_dir, precision="int8")
    cos = np.sum(fp32.encode_images(images) * int8.encode_images(images), axis=1)
    assert cos.min() > 0.99
    assert int8._visual is not None and int8._visual.path.name == "visual-int8.onnx"
    int8.encode_texts(["a red car"])
    assert int8._textual is not None and int8._textual.path.name == "textual-int8.ready.onnx"
    assert fp32.precision == "fp32" and precision.gate_report(fp32) is not None  # shared beside the model


def test_auto_takes_int8_when_the_gate_passes_and_fp32_when_it_fails(
    linear_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert load_encoder(f"onnx:{linear_dir}", precision="auto").precision == "int8"
    forbid_building(monkeypatch)  # a stricter threshold re-judges the cached figures; nothing is measured again
    monkeypatch.setattr(precision, "MIN_COSINE", 1.01)  # no variant reaches a cosine above 1
    auto = load_encoder(f"onnx:{linear_dir}", precision="auto")
    assert auto.precision == "fp32"
    report = precision.gate_report(auto)
    assert report is not None and not report.passed and report.image.min_cosine > 0.99
    assert "fails (image cosine" in report.summary()
    with pytest.raises(ModelError, match="at int8 fails the parity gate.*Use precision fp32"):
        _ = load_encoder(f"onnx:{linear_dir}", precision="int8").precision


def test_the_gate_catches_a_broken_quantisation(linear_dir: Path) -> None:
    encoder = OnnxEncoder("onnx:linear", linear_dir, precision="int8")
    assert encoder.precision == "int8"
    for tower in ("visual", "textual"):
        break_quantization(precision.int8_graph(encoder.variant_root, tower))
    image, text, overlap, probes = precision.measure(encoder.at_precision("fp32"), encoder.at_precision("int8"))
    assert image.min_cosine < precision.MIN_COSINE and overlap < precision.MIN_TOP10_OVERLAP
    report = precision.GateReport(image, text, overlap, probes, key={}, seconds=0.0)
    assert not report.passed and len(report.failures) == 2


def test_without_the_onnx_package_auto_is_fp32_and_int8_says_what_to_install(
    linear_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now fails
    assert OnnxEncoder("onnx:linear", linear_dir, precision="auto").precision == "fp32"
    with pytest.raises(precision.PrecisionUnavailable, match="needs the onnx package: pip install onnx"):
        _ = OnnxEncoder("onnx:linear", linear_dir, precision="int8").precision
    assert not (linear_dir / "precision" / "gate.json").exists()


def test_the_shipped_model_keeps_its_variants_in_the_user_cache(tmp_path: Path, monkeypatch) -> None:
    from pixquery.models.mini import SHIPPED_DIR

    if not (SHIPPED_DIR / "visual" / "model.onnx").exists():
        pytest.skip("no shipped mini model")
    monkeypatch.setenv("PIXQUERY_CACHE", str(tmp_path))
    encoder = load_encoder("mini", precision="auto")
    assert encoder.variant_root.is_relative_to(tmp_path / "precision")
    assert encoder.precision in ("int8", "fp32")
    report = precision.gate_report(encoder)
    assert report is not None and (encoder.precision == "int8") == report.passed
    assert not (SHIPPED_DIR / "precision").exists()


def test_unknown_precisions_are_refused(linear_dir: Path) -> None:
    with pytest.raises(ModelError, match="unknown precision 'int8-static'"):
        OnnxEncoder("onnx:linear", linear_dir, precision="int8-static")


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


# --- an index's one precision ----------------------------------------------------------------------------------


def test_a_new_index_records_its_precision_and_keeps_it(
    linear_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PIXQUERY_PRECISION", raising=False)
    photos = tmp_path / "photos"
    write_jpegs(photos, 12)
    spec = f"onnx:{linear_dir}"
    with Library.open(tmp_path / "auto", model=spec) as lib:  # no precision asked: auto, and the gate passes
        assert lib.index([photos]).embed.embedded == 12
    assert json.loads((tmp_path / "auto" / "config.json").read_text())["precision"] == "int8"

    with Library.open(tmp_path / "fp32", model=spec, precision="fp32") as lib:
        lib.index([photos])
    assert json.loads((tmp_path / "fp32" / "config.json").read_text())["precision"] == "fp32"

    forbid_building(monkeypatch)  # searching reads the cached record at most
    with Library.open(tmp_path / "auto") as lib:
        assert lib.encoder.precision == "int8"
        assert len(lib.search("a red car", k=5)) == 5
    with Library.open(tmp_path / "fp32") as lib:
        assert lib.encoder.precision == "fp32"
    with pytest.raises(ModelMismatchError, match="int8"):  # refused when opened, before any model loads
        Library.open(tmp_path / "auto", precision="fp32")


def test_an_index_made_before_the_record_is_fp32_and_a_per_tower_record_keeps_its_images(
    linear_dir: Path, tmp_path: Path
) -> None:
    write_jpegs(tmp_path / "photos", 4)
    index = tmp_path / "index"
    with Library.open(index, model=f"onnx:{linear_dir}", precision="fp32") as lib:
        lib.index([tmp_path / "photos"])
    config = json.loads((index / "config.json").read_text())
    del config["precision"]  # as an index made before precisions were recorded
    (index / "config.json").write_text(json.dumps(config))
    with Library.open(index) as lib:
        assert lib.config.precision == "fp32" and lib.encoder.precision == "fp32"
    config["extra"]["precision"] = {"image": "int8", "text": "fp32"}  # the old per-tower record
    (index / "config.json").write_text(json.dumps(config))
    with Library.open(index) as lib:
        assert lib.config.precision == "int8" and "precision" not in lib.config.extra


def test_the_precision_environment_variable_applies_to_new_indexes(
    linear_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_jpegs(tmp_path / "photos", 3)
    monkeypatch.setenv("PIXQUERY_PRECISION", "fp32")
    with Library.open(tmp_path / "index", model=f"onnx:{linear_dir}") as lib:
        lib.index([tmp_path / "photos"])
        assert lib.config.precision == "fp32"
    monkeypatch.setenv("PIXQUERY_PRECISION", "int8")  # an existing index keeps its own
    with Library.open(tmp_path / "index") as lib:
        assert lib.encoder.precision == "fp32"
    assert os.environ["PIXQUERY_PRECISION"] == "int8"
