"""Model specs resolve to the right backend (one row of facts each): random:, transformers checkpoints, open_clip;
precision requests each backend can or cannot honour; weights lookup."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pixquery.models.base import PRECISIONS, Encoder, EncoderBase, ModelError
from pixquery.models.registry import BACKENDS, backend_of, known_specs, load_encoder, split_spec
from pixquery.models.weights import missing_files, offline_reason, resolve_model_dir
from pixquery.paths import cache_root


def test_specs_route_to_their_backends(tmp_path: Path) -> None:
    assert split_spec("random:ViT-B-32") == ("random", "ViT-B-32")
    assert split_spec("immich:ViT-B-32__openai") == ("immich", "ViT-B-32__openai")
    assert split_spec("open_clip:ViT-B-32/openai") == ("open_clip", "ViT-B-32/openai")
    assert split_spec("openai/clip-vit-base-patch32") == ("hf", "openai/clip-vit-base-patch32")
    (tmp_path / "visual").mkdir()
    (tmp_path / "visual" / "model.onnx").write_bytes(b"")
    assert split_spec(str(tmp_path)) == ("onnx", str(tmp_path))
    with pytest.raises(ModelError, match="unknown model spec 'nonsense' .not a model name"):
        split_spec("nonsense")
    with pytest.raises(ModelError, match=r"unknown model spec 'clip:ViT-B-32' \(unknown prefix 'clip:'\).*immich:"):
        split_spec("clip:ViT-B-32")
    with pytest.raises(ModelError, match="'random:' names no model after the prefix; e.g. --model random:ViT-B-32"):
        split_spec("random:")
    with pytest.raises(ModelError, match="empty model spec"):
        split_spec("  ")
    assert split_spec("mini") == ("mini", "") and split_spec("conse:lite1") == ("conse", "lite1")


def test_one_row_per_backend_holds_its_facts() -> None:
    import importlib

    for prefix, row in BACKENDS.items():
        assert row.prefix == prefix and row.description and row.examples
        assert set(row.precisions) <= set(PRECISIONS) and "fp32" in row.precisions
        assert callable(getattr(importlib.import_module(row.module), row.loader))  # modules import without torch
        assert ("int8" in row.precisions) == (not row.fp32_only)  # fp32-only rows say why
        assert row.install_hint.startswith("pip install")
    assert {p for p, row in BACKENDS.items() if "int8" in row.precisions} == {"mini", "onnx", "immich"}
    assert {p for p, row in BACKENDS.items() if row.extra is None} == {"mini", "onnx", "immich", "conse"}  # the base
    assert backend_of("random:tiny") is BACKENDS["random"] and backend_of("openai/clip-vit-base-patch32").prefix == "hf"


def test_known_specs_serve_a_did_you_mean() -> None:
    import difflib

    specs = known_specs()
    assert {"mini", "conse", "random:ViT-B-32", "random:tiny-siglip", "immich:ViT-B-32__openai"} <= set(specs)
    assert len(specs) == len(set(specs))
    assert difflib.get_close_matches("random:ViT-B32", specs, n=1) == ["random:ViT-B-32"]
    assert difflib.get_close_matches("imich:ViT-B-32__openai", specs, n=1) == ["immich:ViT-B-32__openai"]


def test_precision_requests_each_backend_cannot_honour_are_refused() -> None:
    with pytest.raises(ModelError, match="unknown precision 'bf16'; use one of fp32, int8, auto"):
        load_encoder("mini", precision="bf16")
    with pytest.raises(ModelError, match=r"random:tiny runs in torch, at fp32 only.*pixquery export-onnx random:tiny"):
        load_encoder("random:tiny", precision="int8")
    with pytest.raises(ModelError, match="conse runs at fp32 only: dynamic int8 does not speed up"):
        load_encoder("conse", precision="int8")
    with pytest.raises(ModelError, match="runs in torch, at fp32 only"):
        load_encoder("openai/clip-vit-base-patch32", precision="int8")


def test_weights_cache_location_and_offline_switches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIXQUERY_CACHE", str(tmp_path))
    assert cache_root() == tmp_path
    monkeypatch.delenv("PIXQUERY_CACHE")
    assert cache_root().name == "pixquery"
    monkeypatch.delenv("PIXQUERY_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert offline_reason() is None
    monkeypatch.setenv("HF_HUB_OFFLINE", "true")
    assert offline_reason() == "HF_HUB_OFFLINE=true"
    (tmp_path / "model.safetensors").write_bytes(b"x")
    assert missing_files(tmp_path, ["config.json", ("pytorch_model.bin", "model.safetensors")]) == [
        "config.json"
    ]


def test_explicit_local_directory_is_never_downloaded_over(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"lacks config\.json, model\.safetensors \(or pytorch_model\.bin\)"):
        resolve_model_dir(
            "m",
            "org/m",
            ["config.json", ("model.safetensors", "pytorch_model.bin")],
            kind="hf",
            local_dir=tmp_path,
        )
    with pytest.raises(ModelError, match="does not exist"):
        resolve_model_dir("m", "org/m", ["config.json"], kind="hf", local_dir=tmp_path / "absent")


# --- random: ----------------------------------------------------------------------------------------------


def test_random_spec_parsing() -> None:
    from pixquery.models.random_arch import ARCHS, parse_spec

    assert parse_spec("ViT-B-32") == ("ViT-B-32", 0)
    assert parse_spec("siglip-base@seed=7") == ("siglip-base", 7)
    assert {"ViT-B-32", "ViT-B-16", "siglip-base", "siglip2-base", "tiny"} <= set(ARCHS)
    with pytest.raises(ModelError, match="unknown random architecture 'ViT-Z'.*ViT-B-32"):
        parse_spec("ViT-Z")
    with pytest.raises(ModelError, match="@seed=N"):
        parse_spec("tiny@temperature=3")


def test_stand_in_tokenizer_puts_specials_at_the_real_ids() -> None:
    pytest.importorskip("tokenizers")
    from pixquery.models.random_arch import build_tokenizer

    clip = build_tokenizer("clip", 49408, 77)
    ids = clip.encode(["a photo of a cat"], pad_to=0).ids[0]
    assert ids[0] == 49406 and ids[-1] == 49407 and ids.max() == 49407  # CLIP pools at argmax = EOS
    assert clip.vocab_size == 49408 and 5 <= len(ids) <= 9  # BPE merges: about one token per word
    siglip = build_tokenizer("siglip", 32000, 64)
    row = siglip.encode(["a photo of a cat"]).ids[0]
    assert row.shape == (64,) and row.max() < 32000
    assert (
        siglip.pad_id == 1 and row[-1] == 1
    )  # </s> appended and used as padding, as SigLIP's tokenizer does


def test_stand_in_tokenizer_is_identical_across_processes() -> None:
    code = (
        "import hashlib; from pixquery.models.random_arch import build_tokenizer; "
        "print(hashlib.sha256(build_tokenizer('clip', 512, 32).tokenizer.to_str().encode()).hexdigest())"
    )
    root = Path(__file__).resolve().parents[1]
    digests = {
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, cwd=root, check=True
        ).stdout
        for _ in range(2)
    }
    assert len(digests) == 1


def test_random_tiny_warns_is_meaningless_and_is_seeded() -> None:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    with pytest.warns(UserWarning, match="meaningless"):
        enc = load_encoder("random:tiny", precision="auto")  # auto on an fp32-only backend: fp32
    assert isinstance(enc, Encoder) and isinstance(enc, EncoderBase)
    assert enc.meaningless and enc.name == "random:tiny"
    assert (enc.dim, enc.image_size, enc.decode_size, enc.context_length, enc.precision) == (32, 32, 32, 32, "fp32")
    # real token counts from its tokenizer (specials included), capped at the context length
    np.testing.assert_array_equal(enc.token_lengths(["a cat", "cat " * 100]), [4, 32])  # <sot> a cat <eot>
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8))
    a = enc.encode_images([img])
    texts = enc.encode_texts(["a cat", "a dog"])
    np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1.0, atol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        same = load_encoder("random:tiny@seed=0")
        other = load_encoder("random:tiny@seed=1")
    np.testing.assert_array_equal(same.encode_images([img]), a)
    assert float((other.encode_images([img]) * a).sum()) < 0.99
    np.testing.assert_allclose(enc.encode_preprocessed(enc.preprocess(img)[None]), a, atol=1e-6)


# --- transformers checkpoints ---------------------------------------------------------------------------


def save_hf_checkpoint(arch_name: str, directory: Path) -> Path:
    """Write random:ARCH as a transformers checkpoint directory (weights, tokenizer, image processor)."""
    from transformers import PreTrainedTokenizerFast
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    from pixquery.models.random_arch import ARCHS, build_model, build_tokenizer

    arch = ARCHS[arch_name]
    build_model(arch, 0).save_pretrained(directory)
    tok = build_tokenizer(arch.family, arch.vocab_size, arch.context_length)
    PreTrainedTokenizerFast(
        tokenizer_object=tok.tokenizer, pad_token=tok.pad_token, model_max_length=arch.context_length
    ).save_pretrained(directory)
    side = arch.image_size
    if arch.family == "clip":
        processor = CLIPImageProcessorPil(
            size={"shortest_edge": side}, crop_size={"height": side, "width": side}
        )
    else:
        processor = SiglipImageProcessorPil(size={"height": side, "width": side})
    processor.save_pretrained(directory)
    return directory


@pytest.mark.parametrize("arch", ["tiny", "tiny-siglip"])
def test_local_transformers_checkpoint_loads_and_matches_the_same_weights(tmp_path: Path, arch: str) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    checkpoint = save_hf_checkpoint(arch, tmp_path / arch)
    hf = load_encoder(str(checkpoint))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rnd = load_encoder(f"random:{arch}")
    assert hf.family.name == rnd.family.name and hf.dim == rnd.dim and not hf.meaningless
    rng = np.random.default_rng(1)
    imgs = [Image.fromarray(rng.integers(0, 255, (37, 53, 3), dtype=np.uint8)) for _ in range(3)]
    np.testing.assert_allclose(hf.encode_images(imgs), rnd.encode_images(imgs), atol=1e-6)
    texts = ["a photo of a cat", "Two DOGS, playing!"]
    # AutoTokenizer padding to the context length gives the same ids as the torch-free tokenizer
    np.testing.assert_array_equal(hf.token_ids(texts), rnd.token_ids(texts))
    np.testing.assert_allclose(hf.encode_texts(texts), rnd.encode_texts(texts), atol=1e-6)
    np.testing.assert_array_equal(hf.token_lengths(texts), rnd.token_lengths(texts))
    assert isinstance(hf, EncoderBase) and hf.context_length == rnd.context_length and hf.precision == "fp32"
    # transformers' own crop, recorded so that an export keeps it
    assert hf.preprocess_cfg.crop_rounding == rnd.preprocess_cfg.crop_rounding == "floor"


def test_transformers_offline_error_names_the_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("transformers")
    monkeypatch.setenv("PIXQUERY_CACHE", str(tmp_path))
    monkeypatch.setenv("PIXQUERY_OFFLINE", "1")
    with pytest.raises(ModelError) as err:
        load_encoder("openai/clip-vit-base-patch32")
    message = str(err.value)
    assert "openai/clip-vit-base-patch32 is not in the cache" in message
    assert "config.json" in message and "model.safetensors" in message
    assert str(tmp_path / "models" / "hf" / "openai--clip-vit-base-patch32") in message


def test_processor_settings_become_the_numpy_preprocessing() -> None:
    pytest.importorskip("transformers")
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    from pixquery.models.hf_backend import preprocess_from_processor

    clip = preprocess_from_processor(CLIPImageProcessorPil())
    assert (clip.size, clip.resize_mode, clip.interpolation) == (224, "shortest", "bicubic")
    siglip = preprocess_from_processor(SiglipImageProcessorPil(size={"height": 256, "width": 256}))
    assert (siglip.size, siglip.resize_mode, siglip.mean) == (256, "squash", (0.5, 0.5, 0.5))
    with pytest.raises(ModelError, match="only a square crop"):
        preprocess_from_processor(
            CLIPImageProcessorPil(size={"shortest_edge": 256}, crop_size={"height": 224, "width": 224})
        )


def test_naflex_siglip2_is_refused_with_the_alternative() -> None:
    pytest.importorskip("transformers")
    from transformers import Siglip2Config

    from pixquery.models.hf_backend import family_of

    with pytest.raises(ModelError, match="fixed-resolution SigLIP 2"):
        family_of(Siglip2Config())


# --- open_clip and export ---------------------------------------------------------------------------------


def test_open_clip_spec_and_missing_torchvision() -> None:
    from pixquery.models.openclip_backend import import_open_clip, parse_spec

    assert parse_spec("ViT-B-32/laion2b_s34b_b79k") == ("ViT-B-32", "laion2b_s34b_b79k")
    with pytest.raises(ModelError, match="ARCH/PRETRAINED"):
        parse_spec("ViT-B-32")
    try:
        import open_clip  # noqa: F401
    except Exception:
        with pytest.raises(ModelError, match="open_clip needs torchvision"):
            import_open_clip()
        with pytest.raises(ModelError, match="open_clip needs torchvision"):
            load_encoder("open_clip:ViT-B-32/openai")
    else:
        pytest.skip("open_clip imports here; the missing-torchvision message cannot be shown")


def test_export_refuses_a_model_that_is_not_torch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch")
    import pixquery.models.registry as registry
    from pixquery.models.export import export_onnx

    class OnnxOnly:  # an encoder without torch towers, as the ONNX backend is
        name, dim = "onnx:x", 4

    monkeypatch.setattr(registry, "load_encoder", lambda spec, **options: OnnxOnly())
    with pytest.raises(ModelError, match="is not a torch model"):
        export_onnx("onnx:x", tmp_path / "out")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file").write_text("x")
    with pytest.raises(ModelError, match="not empty"):
        export_onnx("random:tiny", tmp_path / "busy")
