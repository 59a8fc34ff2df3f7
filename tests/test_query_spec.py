"""The query spec: validation messages and the JSON form (round trip, files, errors)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from pixquery.errors import QueryError
from pixquery.query.jsonspec import load_spec, save_spec, spec_from_dict, spec_to_dict
from pixquery.query.spec import QuerySpec, Rerank, WeightedImage, WeightedText

FULL = {
    "texts": [{"text": "a dog", "weight": 1.0}, {"text": "on a beach", "weight": 0.5}],
    "images": [{"id": 42, "weight": 0.7}],
    "negative_texts": [{"text": "people", "weight": 1.0}],
    "negative_images": [],
    "negative_mode": "penalty",
    "method": "weighted",
    "params": {"alpha": 0.6, "long_text": False},
    "filters": {"folder": "/photos", "taken_from": "2021-06", "ext": ["jpg", "png"]},
    "k": 12,
    "cutoff": "mad:3.5",
    "sort": "date",
    "rerank": {"hubness": "qbnorm", "expansion": None, "diversity": 0.2, "pool": 200, "options": {"beta": 15}},
}


def test_round_trip_keeps_every_field() -> None:
    spec = spec_from_dict(FULL)
    assert spec.texts[1] == WeightedText("on a beach", 0.5)
    assert spec.images[0].catalog_id == 42 and spec.rerank.hubness == "qbnorm"
    assert spec_to_dict(spec) == FULL
    assert spec_to_dict(spec_from_dict(spec_to_dict(spec))) == FULL


def test_short_forms_and_defaults() -> None:
    spec = spec_from_dict({"texts": ["a cat"]})
    assert spec.texts == [WeightedText("a cat")] and spec.method == "auto" and spec.k == 20
    assert spec.rerank == Rerank() and spec.cutoff is None


def test_files_resolve_relative_image_paths_next_to_the_query(tmp_path: Path) -> None:
    Image.new("RGB", (8, 8)).save(tmp_path / "ref.png")
    (tmp_path / "q.json").write_text(json.dumps({"images": ["ref.png"], "texts": ["but red"], "cutoff": 0.25}))
    spec = load_spec(tmp_path / "q.json")
    assert spec.images[0].path == str(tmp_path / "ref.png") and spec.cutoff == 0.25
    save_spec(spec, tmp_path / "out.json")
    assert load_spec(tmp_path / "out.json").images[0].path == str(tmp_path / "ref.png")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"texts": ["x"], "colour": "red"}, "query: unknown key 'colour'"),
        ({"texts": "a dog"}, "texts: expected a list, got text"),
        ({"texts": [{"text": "x", "weight": "heavy"}]}, r"texts\[0\].weight: expected a number, got text"),
        ({"images": [{"path": "a.jpg", "id": 3}]}, r"images\[0\]: give exactly one of 'path'"),
        ({"images": [{"id": True}]}, r"images\[0\].id: expected an integer"),
        ({"texts": ["x"], "k": 2.5}, "k: expected an integer"),
        ({"texts": ["x"], "rerank": {"hubness": 3}}, "rerank.hubness: expected text or null"),
        ({"texts": ["x"], "cutoff": [1]}, "cutoff: expected a number, text or null"),
        ({}, "empty query"),
        ({"texts": ["x"], "k": 0}, "k must be an integer between 1 and 10000"),
        ({"texts": ["x"], "method": "magic"}, "unknown method 'magic'"),
        ({"texts": ["x"], "cutoff": "sometimes"}, "unknown cutoff"),
        ({"texts": ["x"], "filters": {"colour": "red"}}, "unknown filter 'colour'"),
        ({"texts": ["x"], "negative_mode": "ignore"}, "negative_mode must be one of"),
        ({"texts": ["   "]}, "a query text is empty"),
        ({"images": ["/no/such/image.jpg"]}, "query image not found"),
    ],
)
def test_errors_name_the_field(data: dict, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        spec_from_dict(data)


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(QueryError, match="query file not found"):
        load_spec(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{ nope")
    with pytest.raises(QueryError, match="not valid JSON"):
        load_spec(tmp_path / "bad.json")


def test_uploaded_images_cannot_be_written() -> None:
    spec = QuerySpec(images=[WeightedImage(image=Image.new("RGB", (2, 2)))])
    with pytest.raises(QueryError, match=r"images\[0\]: an uploaded image"):
        spec_to_dict(spec)


def test_simple_spec_still_works() -> None:
    spec = QuerySpec.simple("a dog", k=5).validate()
    assert spec.texts == [WeightedText("a dog")] and spec.k == 5
