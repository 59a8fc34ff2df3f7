"""A `QuerySpec` as JSON: read it from a file or a dict (the CLI's --query-file, the HTTP API) and write it back.

The JSON form, every key optional except that a query needs a text or an image::

    {
      "texts": ["a dog", {"text": "on a beach", "weight": 0.5}],
      "images": ["ref.jpg", {"path": "other.jpg", "weight": 0.5}, {"id": 42}],
      "negative_texts": ["people"],
      "negative_images": [],
      "negative_mode": "penalty",
      "method": "auto",
      "params": {"alpha": 0.6},
      "filters": {"folder": "~/Pictures/2021", "taken_from": "2021-06"},
      "k": 20,
      "cutoff": "auto",
      "sort": "score",
      "rerank": {"hubness": "qbnorm", "expansion": null, "diversity": 0.0, "pool": null, "options": {}}
    }

A text may be a string or {"text", "weight"}; an image a path string, {"path", "weight"} or {"id", "weight"}
(an already-indexed image). Relative image paths in a file are relative to that file's folder. Every error names
the field, e.g. ``texts[1].weight: expected a number, got text``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pixquery.errors import QueryError
from pixquery.query.spec import QuerySpec, Rerank, WeightedImage, WeightedText

TOP_KEYS = (
    "texts", "images", "negative_texts", "negative_images", "negative_mode", "method", "params", "filters", "k",
    "cutoff", "sort", "rerank",
)
RERANK_KEYS = ("hubness", "expansion", "diversity", "pool", "options")


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _fail(field: str, problem: str) -> QueryError:
    return QueryError(f"{field}: {problem}", field=field)


def _number(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(field, f"expected a number, got {_kind(value)}")
    return float(value)


def _object(value: Any, field: str, allowed: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(field, f"expected an object, got {_kind(value)}")
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise _fail(field, f"unknown key {unknown[0]!r}; allowed: {', '.join(allowed)}")
    return value


def _dict(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(field, f"expected an object, got {_kind(value)}")
    return dict(value)


def _list(value: Any, field: str) -> list[Any]:
    if not isinstance(value, list):
        raise _fail(field, f"expected a list, got {_kind(value)}")
    return value


def _text(value: Any, field: str) -> WeightedText:
    if isinstance(value, str):
        return WeightedText(value)
    entry = _object(value, field, ("text", "weight"))
    if not isinstance(entry.get("text"), str):
        raise _fail(f"{field}.text", f"expected text, got {_kind(entry.get('text'))}")
    return WeightedText(entry["text"], _number(entry.get("weight", 1.0), f"{field}.weight"))


def _image(value: Any, field: str, base: Path | None) -> WeightedImage:
    def resolve(path: str) -> str:
        p = Path(path).expanduser()
        return str(base / p) if base is not None and not p.is_absolute() else str(p)

    if isinstance(value, str):
        return WeightedImage(path=resolve(value))
    entry = _object(value, field, ("path", "id", "weight"))
    if ("path" in entry) == ("id" in entry):
        raise _fail(field, "give exactly one of 'path' (an image file) or 'id' (an indexed image)")
    weight = _number(entry.get("weight", 1.0), f"{field}.weight")
    if "id" in entry:
        if isinstance(entry["id"], bool) or not isinstance(entry["id"], int):
            raise _fail(f"{field}.id", f"expected an integer, got {_kind(entry['id'])}")
        return WeightedImage(catalog_id=entry["id"], weight=weight)
    if not isinstance(entry["path"], str):
        raise _fail(f"{field}.path", f"expected text, got {_kind(entry['path'])}")
    return WeightedImage(path=resolve(entry["path"]), weight=weight)


def _rerank(value: Any) -> Rerank:
    entry = _object(value, "rerank", RERANK_KEYS)
    rerank = Rerank()
    for key in ("hubness", "expansion"):
        if entry.get(key) is not None:
            if not isinstance(entry[key], str):
                raise _fail(f"rerank.{key}", f"expected text or null, got {_kind(entry[key])}")
            setattr(rerank, key, entry[key])
    if "diversity" in entry:
        rerank.diversity = _number(entry["diversity"], "rerank.diversity")
    if entry.get("pool") is not None:
        if isinstance(entry["pool"], bool) or not isinstance(entry["pool"], int):
            raise _fail("rerank.pool", f"expected an integer, got {_kind(entry['pool'])}")
        rerank.pool = entry["pool"]
    if "options" in entry:
        rerank.options = _dict(entry["options"], "rerank.options")
    return rerank


def spec_from_dict(data: Any, base_dir: str | Path | None = None, validate: bool = True) -> QuerySpec:
    """Build a `QuerySpec` from its JSON form; `QueryError` names the first bad field.

    `base_dir` is where relative image paths are resolved from (None: leave them as they are).
    """
    data = _object(data, "query", TOP_KEYS)
    base = Path(base_dir) if base_dir is not None else None
    spec = QuerySpec()
    for key in ("texts", "negative_texts"):
        items = _list(data.get(key, []), key)
        setattr(spec, key, [_text(v, f"{key}[{i}]") for i, v in enumerate(items)])
    for key in ("images", "negative_images"):
        items = _list(data.get(key, []), key)
        setattr(spec, key, [_image(v, f"{key}[{i}]", base) for i, v in enumerate(items)])
    for key in ("method", "sort", "negative_mode"):
        if key in data:
            if not isinstance(data[key], str):
                raise _fail(key, f"expected text, got {_kind(data[key])}")
            setattr(spec, key, data[key])
    for key in ("params", "filters"):
        if key in data:
            setattr(spec, key, _dict(data[key], key))
    if "k" in data:
        if isinstance(data["k"], bool) or not isinstance(data["k"], int):
            raise _fail("k", f"expected an integer, got {_kind(data['k'])}")
        spec.k = data["k"]
    if "cutoff" in data:
        if data["cutoff"] is not None and (isinstance(data["cutoff"], bool)
                                           or not isinstance(data["cutoff"], int | float | str)):
            raise _fail("cutoff", f"expected a number, text or null, got {_kind(data['cutoff'])}")
        spec.cutoff = data["cutoff"]
    if "rerank" in data and data["rerank"] is not None:
        spec.rerank = _rerank(data["rerank"])
    return spec.validate() if validate else spec


def spec_to_dict(spec: QuerySpec) -> dict[str, Any]:
    """The JSON form of a spec (uploaded PIL images cannot be written: save them to a file first)."""

    def image(item: WeightedImage, field: str) -> dict[str, Any]:
        if item.image is not None:
            raise _fail(field, "an uploaded image has no path or id and cannot be written to JSON")
        entry: dict[str, Any] = {"path": item.path} if item.path is not None else {"id": item.catalog_id}
        entry["weight"] = item.weight
        return entry

    return {
        "texts": [{"text": t.text, "weight": t.weight} for t in spec.texts],
        "images": [image(v, f"images[{i}]") for i, v in enumerate(spec.images)],
        "negative_texts": [{"text": t.text, "weight": t.weight} for t in spec.negative_texts],
        "negative_images": [image(v, f"negative_images[{i}]") for i, v in enumerate(spec.negative_images)],
        "negative_mode": spec.negative_mode,
        "method": spec.method,
        "params": dict(spec.params),
        "filters": dict(spec.filters),
        "k": spec.k,
        "cutoff": spec.cutoff,
        "sort": spec.sort,
        "rerank": {
            "hubness": spec.rerank.hubness,
            "expansion": spec.rerank.expansion,
            "diversity": spec.rerank.diversity,
            "pool": spec.rerank.pool,
            "options": dict(spec.rerank.options),
        },
    }


def load_spec(path: str | Path, validate: bool = True) -> QuerySpec:
    """Read a spec from a JSON file; relative image paths are taken relative to the file's folder."""
    path = Path(path).expanduser()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise QueryError(f"query file not found: {path}") from None
    except json.JSONDecodeError as exc:
        raise QueryError(f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    except UnicodeDecodeError:
        raise QueryError(f"{path} is not UTF-8 text") from None
    return spec_from_dict(data, base_dir=path.parent, validate=validate)


def save_spec(spec: QuerySpec, path: str | Path) -> None:
    """Write a spec as indented JSON."""
    Path(path).write_text(json.dumps(spec_to_dict(spec), indent=2) + "\n", encoding="utf-8")
