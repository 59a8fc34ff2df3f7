"""An index's `config.json`: which model built it, at what precision, the dimension, the store, the format version."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pixquery.errors import IndexFormatError
from pixquery.fsutil import atomic_write_json
from pixquery.layout import IndexLayout

FORMAT_VERSION = 1


@dataclass
class IndexConfig:
    """Settings fixed when an index is created (changing the model or precision means a new index)."""

    model: str
    dim: int
    store: str = "flat"
    precision: str = "fp32"
    """The precision every vector of the index was embedded at, and its queries run at: fp32 or int8."""
    store_params: dict[str, Any] = field(default_factory=dict)
    """Tuning of an approximate store (e.g. {"M": 32, "efSearch": 64}), kept across runs."""
    format_version: int = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    def save(self, directory: Path) -> None:
        atomic_write_json(IndexLayout(Path(directory)).config, asdict(self), indent=2)

    @classmethod
    def load(cls, directory: Path) -> IndexConfig:
        path = IndexLayout(Path(directory)).config
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise IndexFormatError(f"{directory} is not a pixquery index (no {path.name})") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise IndexFormatError(f"{path} is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise IndexFormatError(f"{path} should hold a JSON object")
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise IndexFormatError(
                f"{directory} has index format {version}; this pixquery reads format {FORMAT_VERSION}"
            )
        _upgrade(data)
        try:
            return cls(**data)
        except TypeError as exc:
            raise IndexFormatError(f"{path} has unexpected fields: {exc}") from None


def _upgrade(data: dict[str, Any]) -> None:
    """Read configs written before precision and store parameters had fields of their own (they lived in `extra`)."""
    extra = data.setdefault("extra", {})
    if "precision" not in data:
        # Made when each tower had a precision: the images' decides. int8 stays int8; the precisions that are gone
        # (int8-static, bf16) were gated against fp32, which continues them.
        record = extra.pop("precision", None)
        image = record.get("image", "fp32") if isinstance(record, dict) else (record or "fp32")
        data["precision"] = "int8" if image == "int8" else "fp32"
    if "store_params" not in data:
        data["store_params"] = extra.pop("store_params", None) or {}
