"""Numpy preprocessing against the reference processors, on the real photos and on awkward sizes.

Measured bound (max |ours - transformers| after normalisation): about 5e-7 for CLIPImageProcessor and 1.2e-7
for SiglipImageProcessor on every readable photo in ../shared/photos, i.e. float rounding only: both resize
8-bit RGB with PIL's bicubic filter. The tests allow 1e-5.
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


def family_preprocessor(family: str, size: int = 224) -> ImagePreprocessor:
    return ImagePreprocessor(PreprocessConfig.from_dict({**FAMILIES[family].preprocess, "size": size}))


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


def test_clip_preprocessing_matches_transformers_on_real_photos(photos_dir: Path) -> None:
    ours, ref = family_preprocessor("clip"), reference("clip")
    worst = max(max_diff(ours, ref, img) for img in photos(photos_dir))
    assert worst <= BOUND


def test_siglip_preprocessing_matches_transformers_on_real_photos(photos_dir: Path) -> None:
    ours, ref = family_preprocessor("siglip"), reference("siglip")
    worst = max(max_diff(ours, ref, img) for img in photos(photos_dir))
    assert worst <= BOUND


@pytest.mark.parametrize("size", [(301, 217), (217, 301), (1000, 225), (50, 50), (224, 224), (223, 999)])
def test_odd_sizes_crop_where_transformers_crops(size: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(size))
    img = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    assert max_diff(family_preprocessor("clip"), reference("clip"), img) <= BOUND
    assert max_diff(family_preprocessor("siglip"), reference("siglip"), img) <= BOUND
    small = reference("clip", size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    assert max_diff(family_preprocessor("clip", 32), small, img) <= BOUND


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
    path = tmp_path / "preprocess_cfg.json"
    path.write_text(json.dumps(cfg.to_dict()))
    assert load_preprocess_cfg(path) == cfg


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        ({"size": [224, 256], "mean": 0.5, "std": 0.5}, "only square inputs"),
        ({"size": 224, "mean": 0.5, "std": 0.5, "interpolation": "magic"}, "unknown interpolation"),
        ({"size": 224, "mean": 0.5, "std": 0.5, "mode": "L"}, "only RGB"),
        ({"size": 224, "mean": [0.5, 0.5], "std": 0.5}, "expected 3 values"),
        ({"size": 224, "mean": 0.5}, "lacks the key 'std'"),
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
