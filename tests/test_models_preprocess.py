"""Numpy preprocessing against each family's reference pipeline, on the real photos and on awkward sizes.

Two references crop differently when the crop margin is odd:
- transformers (the `hf` backend, `random:`, and ONNX exports of transformers checkpoints): CLIPImageProcessor
  and SiglipImageProcessor, installed here and compared for real;
- open_clip (immich's exports, `onnx:`/`immich:`/`open_clip:`): torchvision's Resize + CenterCrop. torchvision
  cannot be installed here, so `torchvision_reference` below writes out its documented arithmetic (on PIL images
  Resize calls PIL's `resize`; see torchvision/transforms/functional.py `_compute_resized_output_size` and
  `center_crop`, whose offsets are `int(round((image_height - crop_height) / 2.0))`).

Measured bound (max |ours - reference| after normalisation): about 5e-7 for CLIPImageProcessor and 1.2e-7 for
SiglipImageProcessor on every readable photo of the test photo tree (tests/photo_tree.py), i.e. float rounding
only: all resize 8-bit RGB with PIL's bicubic filter. The tests allow 1e-5.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pixquery.media.decode import ImageDecodeError, open_image
from pixquery.media.discover import discover
from pixquery.models.base import ModelError
from pixquery.models.families import FAMILIES, OPENAI_MEAN, OPENAI_STD
from pixquery.models.preprocess import ImagePreprocessor, PreprocessConfig, load_preprocess_cfg

BOUND = 1e-5
# (width, height): short sides below and above 224, odd margins that split differently under the two roundings
# (171 x 256, the WebP: resized to 224 x 335, margin 111, offset 56 in torchvision and 55 in
# transformers), an odd margin that splits alike (225 x 224: margin 1, offset 0 in both), even margins, squares.
SIZES = [(171, 256), (256, 171), (640, 427), (301, 217), (217, 301), (1000, 225), (223, 999), (225, 224),
         (50, 50), (224, 224), (100, 37)]


def family_preprocessor(family: str, size: int = 224, **overrides) -> ImagePreprocessor:
    return ImagePreprocessor(FAMILIES[family].preprocess_config(size, **overrides))


def torchvision_reference(img: Image.Image, cfg: PreprocessConfig) -> np.ndarray:
    """open_clip's image transform for `cfg`, as torchvision computes it on a PIL image.

    shortest: Resize(size) gives the short side `size` and the long side `int(size * long / short)`
    (`_compute_resized_output_size`), then CenterCrop(size) cuts at `int(round((h - size) / 2.0))` from the top
    and `int(round((w - size) / 2.0))` from the left (`center_crop`; Python's round is half to even).
    squash: Resize((size, size)). Then ToTensor (x / 255) and Normalize(mean, std).
    """
    img = img.convert("RGB")
    size, (width, height) = cfg.size, img.size
    resample = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}[cfg.interpolation]
    if cfg.resize_mode == "squash":
        img = img.resize((size, size), resample)
    else:
        short, long = min(width, height), max(width, height)
        new_long = int(size * long / short)
        img = img.resize((size, new_long) if width <= height else (new_long, size), resample)
        top = int(round((img.height - size) / 2.0))
        left = int(round((img.width - size) / 2.0))
        img = img.crop((left, top, left + size, top + size))
    pixels = np.asarray(img, dtype=np.float64) / 255.0
    normalised = (pixels - np.array(cfg.mean)) / np.array(cfg.std)
    return normalised.transpose(2, 0, 1).astype(np.float32)


def random_image(width: int, height: int) -> Image.Image:
    rng = np.random.default_rng(width * 1000 + height)
    return Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))


def photos(photos_dir: Path) -> list[Image.Image]:
    out = []
    for path in discover([photos_dir / "flat"]).files:
        try:
            out.append(open_image(path))
        except ImageDecodeError:
            continue
    assert len(out) >= 20
    return out


def reference(kind: str, **kwargs):
    pytest.importorskip("transformers")
    if kind == "clip":
        from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

        return CLIPImageProcessorPil(**kwargs)
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    return SiglipImageProcessorPil(**kwargs)


def max_diff(ours: ImagePreprocessor, ref, img: Image.Image) -> float:
    expected = ref(images=img, return_tensors="np")["pixel_values"][0]
    got = ours(img)
    assert got.shape == expected.shape and got.dtype == np.float32
    return float(np.abs(got - expected).max())


def transformers_preprocessor(processor) -> ImagePreprocessor:
    """Ours, configured from a transformers processor as the hf backend configures it."""
    from pixquery.models.hf_backend import preprocess_from_processor

    return ImagePreprocessor(preprocess_from_processor(processor))


def test_transformers_clip_preprocessing_matches_clip_image_processor_on_real_photos(photos_dir: Path) -> None:
    ref = reference("clip")
    ours = transformers_preprocessor(ref)
    assert ours.cfg.crop_rounding == "floor"
    worst = max(max_diff(ours, ref, img) for img in photos(photos_dir))
    assert worst <= BOUND


def test_siglip_preprocessing_matches_transformers_on_real_photos(photos_dir: Path) -> None:
    ref = reference("siglip")
    for ours in (family_preprocessor("siglip"), transformers_preprocessor(ref)):
        worst = max(max_diff(ours, ref, img) for img in photos(photos_dir))
        assert worst <= BOUND


def test_open_clip_families_match_torchvision_on_real_photos(photos_dir: Path) -> None:
    ours = family_preprocessor("clip")
    assert ours.cfg.crop_rounding == "half_even"
    worst = max(float(np.abs(ours(img) - torchvision_reference(img, ours.cfg)).max()) for img in photos(photos_dir))
    assert worst <= BOUND


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("size", SIZES)
def test_each_familys_defaults_crop_where_open_clip_crops(family: str, size: tuple[int, int]) -> None:
    """The family defaults describe immich's (open_clip's) files: torchvision's arithmetic, at 224 and at 32."""
    img = random_image(*size)
    for side in (224, 32):
        ours = family_preprocessor(family, side)
        assert float(np.abs(ours(img) - torchvision_reference(img, ours.cfg)).max()) <= BOUND


@pytest.mark.parametrize("size", SIZES)
def test_transformers_checkpoints_crop_where_transformers_crops(size: tuple[int, int]) -> None:
    img = random_image(*size)
    for side in (224, 32):
        clip = reference("clip", size={"shortest_edge": side}, crop_size={"height": side, "width": side})
        assert max_diff(transformers_preprocessor(clip), clip, img) <= BOUND
        siglip = reference("siglip", size={"height": side, "width": side})
        assert max_diff(transformers_preprocessor(siglip), siglip, img) <= BOUND


def test_the_two_roundings_differ_by_one_pixel_where_the_references_do() -> None:
    """171 x 256 at 224: margin 111 of a 335-pixel side. torchvision starts the crop at row 56, transformers at
    55; each of ours reproduces its own reference and not the other (so the tests above can tell them apart)."""
    img = random_image(171, 256)
    open_clip = family_preprocessor("clip")
    transformers = family_preprocessor("clip", crop_rounding="floor")
    torchvision_pixels = torchvision_reference(img, open_clip.cfg)
    transformers_pixels = reference("clip")(images=img, return_tensors="np")["pixel_values"][0]
    assert np.abs(open_clip(img) - torchvision_pixels).max() <= BOUND
    assert np.abs(transformers(img) - transformers_pixels).max() <= BOUND
    assert np.abs(open_clip(img) - transformers_pixels).max() > 0.1
    np.testing.assert_allclose(open_clip(img)[:, :-1], transformers(img)[:, 1:], atol=BOUND)  # one row apart
    same = random_image(225, 224)  # an odd margin of 1: both start at 0
    assert np.abs(open_clip(same) - transformers(same)).max() <= BOUND


def test_non_rgb_inputs_are_converted() -> None:
    ours = family_preprocessor("clip", 16)
    grey = Image.new("L", (40, 30), 128)
    rgba = Image.new("RGBA", (40, 30), (128, 128, 128, 0))
    expected = ours(Image.new("RGB", (40, 30), (128, 128, 128)))
    np.testing.assert_allclose(ours(grey), expected)
    np.testing.assert_allclose(ours(rgba), expected)
    # mid grey under OpenAI's normalisation, channel by channel
    np.testing.assert_allclose(expected[:, 0, 0], (128 / 255 - np.array(OPENAI_MEAN)) / OPENAI_STD, atol=1e-6)


def test_longest_mode_letterboxes_with_black() -> None:
    cfg = PreprocessConfig(size=20, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), resize_mode="longest")
    out = ImagePreprocessor(cfg)(Image.new("RGB", (40, 20), (255, 255, 255)))
    assert out.shape == (3, 20, 20)
    assert out[:, 5:15, :].min() == pytest.approx(1.0)  # the image, 20 x 10, centred
    assert out[:, :5, :].max() == 0.0 and out[:, 15:, :].max() == 0.0


def test_squash_ignores_aspect_ratio() -> None:
    ours = family_preprocessor("siglip", 8)
    left_red = np.zeros((10, 40, 3), dtype=np.uint8)
    left_red[:, :20, 0] = 255
    out = ours(Image.fromarray(left_red))
    assert out.shape == (3, 8, 8)
    assert (out[0, :, :3] > 0.9).all() and (out[0, :, 5:] < -0.9).all()  # halves stay halves: no crop


def test_threads_give_the_same_arrays(photos_dir: Path) -> None:
    ours = family_preprocessor("clip")
    imgs = photos(photos_dir)[:8]
    serial = [ours(img) for img in imgs]
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(ours, imgs))
    for a, b in zip(serial, parallel, strict=True):
        np.testing.assert_array_equal(a, b)
    assert ours.batch(imgs).shape == (8, 3, 224, 224)


def test_config_round_trip_and_open_clip_forms(tmp_path: Path) -> None:
    cfg = PreprocessConfig.from_dict(
        {"size": [224, 224], "mean": 0.5, "std": [0.5, 0.5, 0.5], "interpolation": "BICUBIC"}
    )
    assert cfg.size == 224 and cfg.mean == (0.5, 0.5, 0.5) and cfg.interpolation == "bicubic"
    assert cfg.resize_mode == "shortest"  # open_clip's default for configs that predate the key
    assert cfg.crop_rounding == "half_even"  # immich's (open_clip's) files have no such key
    path = tmp_path / "preprocess_cfg.json"
    for rounding in ("half_even", "floor"):
        written = PreprocessConfig.from_dict({**cfg.to_dict(), "crop_rounding": rounding})
        path.write_text(json.dumps(written.to_dict()))
        assert load_preprocess_cfg(path) == written and written.crop_rounding == rounding


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        ({"size": [224, 256], "mean": 0.5, "std": 0.5}, "only square inputs"),
        ({"size": 224, "mean": 0.5, "std": 0.5, "interpolation": "magic"}, "unknown interpolation"),
        ({"size": 224, "mean": 0.5, "std": 0.5, "mode": "L"}, "only RGB"),
        ({"size": 224, "mean": [0.5, 0.5], "std": 0.5}, "expected 3 values"),
        ({"size": 224, "mean": 0.5}, "lacks the key 'std'"),
        ({"size": 224, "mean": 0.5, "std": 0.5, "crop_rounding": "up"}, "unknown crop_rounding"),
    ],
)
def test_bad_configs_are_refused_naming_the_file(tmp_path: Path, cfg: dict, message: str) -> None:
    path = tmp_path / "preprocess_cfg.json"
    path.write_text(json.dumps(cfg))
    with pytest.raises(ModelError, match=message) as err:
        load_preprocess_cfg(path)
    assert str(path) in str(err.value)
    with pytest.raises(ModelError, match="missing"):
        load_preprocess_cfg(tmp_path / "absent.json")
