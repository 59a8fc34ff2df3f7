"""Torch and its ONNX export agree: the same architectures through transformers and through onnxruntime.

The real-size checks (random:ViT-B-32, random:siglip-base) export 600-800 MB of graphs once per session and
are marked slow; random:tiny and random:tiny-siglip run the same checks in seconds.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
onnx = pytest.importorskip("onnx")

from pixquery.media.decode import ImageDecodeError, open_image  # noqa: E402
from pixquery.media.discover import discover  # noqa: E402
from pixquery.models.export import export_encoder, export_onnx  # noqa: E402
from pixquery.models.onnx_backend import LAYOUT_FILES, OnnxEncoder  # noqa: E402
from pixquery.models.registry import load_encoder  # noqa: E402

MIN_COSINE = 0.999
TEXTS = [
    "a photo of a cat",
    "Two DOGS, playing in the snow!",
    "x",
    # longer than SigLIP's 64 tokens and CLIP's 77: truncation must agree on both sides
    " ".join(["a black cat sleeping on a red chair next to a window at night"] * 8),
]
BIG = ("ViT-B-32", "siglip-base")
ARCHS = [
    "tiny",
    "tiny-siglip",
    pytest.param("ViT-B-32", marks=pytest.mark.slow),
    pytest.param("siglip-base", marks=pytest.mark.slow),
]


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], tuple]:
    """random:ARCH loaded in torch and exported once per session: (torch encoder, onnx encoder, directory)."""
    made: dict[str, tuple] = {}

    def get(arch: str) -> tuple:
        if arch not in made:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch_encoder = load_encoder(f"random:{arch}")
            out = export_encoder(torch_encoder, tmp_path_factory.mktemp(arch) / "model", verify=False)
            made[arch] = (torch_encoder, OnnxEncoder(f"onnx:{out}", out), out)
        return made[arch]

    return get


@pytest.fixture(scope="session")
def photo_images(photos_dir: Path) -> list:
    images = []
    for path in discover([photos_dir / "flat"]).files:
        try:
            images.append(open_image(path))
        except ImageDecodeError:
            continue
    return images


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.mark.parametrize("arch", ARCHS)
def test_onnx_export_reproduces_torch_on_photos_and_texts(exported, photo_images, arch: str) -> None:
    torch_encoder, onnx_encoder, _ = exported(arch)
    images = photo_images[:3] if arch in BIG else photo_images
    image_cos = cosines(torch_encoder.encode_images(images), onnx_encoder.encode_images(images))
    text_cos = cosines(torch_encoder.encode_texts(TEXTS), onnx_encoder.encode_texts(TEXTS))
    assert image_cos.min() >= MIN_COSINE, image_cos
    assert text_cos.min() >= MIN_COSINE, text_cos


@pytest.mark.parametrize("arch", ARCHS)
def test_export_is_the_immich_layout_with_dynamic_axes(exported, arch: str) -> None:
    torch_encoder, onnx_encoder, out = exported(arch)
    for name in LAYOUT_FILES:
        assert (out / name).is_file(), name
    config = json.loads((out / "config.json").read_text())
    assert config["embed_dim"] == torch_encoder.dim
    # a transformers model crops as transformers does, and its export says so (immich's files lack the key)
    preprocess = json.loads((out / "visual" / "preprocess_cfg.json").read_text())
    assert preprocess["crop_rounding"] == onnx_encoder.preprocess_cfg.crop_rounding == "floor"
    assert config["vision_cfg"]["image_size"] == torch_encoder.image_size
    assert config["text_cfg"]["context_length"] == torch_encoder.context_length
    visual = onnx.load(str(out / "visual" / "model.onnx"), load_external_data=False).graph
    textual = onnx.load(str(out / "textual" / "model.onnx"), load_external_data=False).graph
    assert [i.name for i in visual.input] == ["image"] and [o.name for o in visual.output] == ["embedding"]
    assert [i.name for i in textual.input] == ["text"] and [o.name for o in textual.output] == ["embedding"]
    assert textual.input[0].type.tensor_type.elem_type == onnx.TensorProto.INT32  # immich feeds int32
    image_dims = [d.dim_param or d.dim_value for d in visual.input[0].type.tensor_type.shape.dim]
    text_dims = [d.dim_param or d.dim_value for d in textual.input[0].type.tensor_type.shape.dim]
    assert image_dims == ["batch", 3, torch_encoder.image_size, torch_encoder.image_size]
    if torch_encoder.family.causal_text:  # CLIP: any length, so queries run at their real length
        assert text_dims == ["batch", "sequence"] and onnx_encoder.runs_at_real_length()
    else:  # SigLIP: padded to its fixed length
        assert text_dims == ["batch", torch_encoder.context_length] and not onnx_encoder.runs_at_real_length()
    if torch_encoder.family.has_logit_bias:
        assert onnx_encoder.logit_bias == pytest.approx(config["logit_bias"]) and onnx_encoder.logit_scale > 0


@pytest.mark.parametrize("arch", ARCHS)
def test_batched_onnx_rows_equal_one_at_a_time(exported, photo_images, arch: str) -> None:
    _, onnx_encoder, _ = exported(arch)
    few = 2 if arch in BIG else 4
    images, texts = photo_images[:few], TEXTS[:few]
    together = onnx_encoder.encode_images(images)
    alone = np.concatenate([onnx_encoder.encode_images([img]) for img in images])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    together = onnx_encoder.encode_texts(texts)
    alone = np.concatenate([onnx_encoder.encode_texts([text]) for text in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_exported_preprocessing_is_the_reference_processor(exported, photo_images, arch: str) -> None:
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    torch_encoder, onnx_encoder, _ = exported(arch)
    side = torch_encoder.image_size
    if torch_encoder.family.name == "clip":
        reference = CLIPImageProcessorPil(
            size={"shortest_edge": side}, crop_size={"height": side, "width": side}
        )
    else:
        reference = SiglipImageProcessorPil(size={"height": side, "width": side})
    for img in photo_images[:6]:
        expected = reference(images=img, return_tensors="np")["pixel_values"][0]
        assert np.abs(onnx_encoder.preprocess(img) - expected).max() <= 1e-5


@pytest.mark.parametrize("arch", ARCHS)
def test_exported_tokenizer_gives_transformers_ids(exported, arch: str) -> None:
    from transformers import PreTrainedTokenizerFast

    from pixquery.models.tokenize import clean_text

    torch_encoder, onnx_encoder, out = exported(arch)
    tok = onnx_encoder.tokenizer
    hf = PreTrainedTokenizerFast(
        tokenizer_file=str(out / "textual" / "tokenizer.json"), pad_token=tok.pad_token
    )
    cleaned = [clean_text(text, tok.clean) for text in TEXTS]
    expected = hf(cleaned, padding="max_length", max_length=tok.context_length, truncation=True)["input_ids"]
    np.testing.assert_array_equal(tok.encode(TEXTS).ids, np.array(expected))
    np.testing.assert_array_equal(torch_encoder.token_ids(TEXTS), np.array(expected))


def test_public_export_checks_itself_and_loads_without_torch(tmp_path: Path) -> None:
    out = export_onnx("random:tiny", tmp_path / "tiny")  # verify=True: torch and ONNX compared inside
    code = (
        "import sys\n"
        "from PIL import Image\n"
        "from pixquery.models.registry import load_encoder\n"
        f"enc = load_encoder('onnx:{out}')\n"
        "v = enc.encode_images([Image.new('RGB', (64, 48), 'blue')]); t = enc.encode_texts(['a cat'])\n"
        "assert v.shape == (1, enc.dim) and t.shape == (1, enc.dim)\n"
        "bad = [m for m in ('torch', 'transformers', 'open_clip') if m in sys.modules]\n"
        "assert not bad, bad\n"
        "print('ok', enc.dim)\n"
    )
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=root, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["ok", "32"]
    again = export_onnx("random:tiny", out, overwrite=True, verify=False)
    assert (again / "visual" / "model.onnx").is_file()


def test_sentencepiece_siglip_checkpoint_exports_a_matching_tokenizer_json(tmp_path: Path) -> None:
    """SigLIP checkpoints ship a SentencePiece model and no tokenizer.json; the export converts it."""
    spm = pytest.importorskip("sentencepiece")
    import io

    from transformers import SiglipTokenizer
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    from pixquery.models.random_arch import ARCHS, CAPTION_WORDS, build_model

    checkpoint = tmp_path / "siglip-spm"
    checkpoint.mkdir()
    model_bytes = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter([" ".join(CAPTION_WORDS)] * 20 + CAPTION_WORDS),
        model_writer=model_bytes,
        vocab_size=150,
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        minloglevel=2,
    )
    (checkpoint / "spiece.model").write_bytes(model_bytes.getvalue())
    arch = ARCHS["tiny-siglip"]
    build_model(arch, 0).save_pretrained(checkpoint)
    SiglipTokenizer(vocab_file=str(checkpoint / "spiece.model"), model_max_length=16).save_pretrained(
        checkpoint
    )
    SiglipImageProcessorPil(size={"height": 32, "width": 32}).save_pretrained(checkpoint)
    assert not (checkpoint / "tokenizer.json").exists()

    torch_encoder = load_encoder(str(checkpoint))
    out = export_encoder(torch_encoder, tmp_path / "onnx")  # verify=True compares a probe image and text
    onnx_encoder = OnnxEncoder(f"onnx:{out}", out)
    np.testing.assert_array_equal(onnx_encoder.tokenizer.encode(TEXTS).ids, torch_encoder.token_ids(TEXTS))
    assert cosines(torch_encoder.encode_texts(TEXTS), onnx_encoder.encode_texts(TEXTS)).min() >= MIN_COSINE
