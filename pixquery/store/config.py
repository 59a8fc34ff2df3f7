"""An index's `config.json`: which model built it, at which precision, the dimension, the store, the format
version."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pixquery.errors import IndexFormatError, ModelMismatchError

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"


@dataclass
class IndexConfig:
    """Settings fixed when an index is created (changing the model means a new index)."""

    model: str
    dim: int
    store: str = "flat"
    format_version: int = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)
    precision: str = "fp32"
    """The one precision both towers run at for this index (fp32 or int8), fixed when it is created."""

    def save(self, directory: Path) -> None:
        path = Path(directory) / CONFIG_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        os.replace(tmp, path)

    @classmethod
    def load(cls, directory: Path) -> IndexConfig:
        path = Path(directory) / CONFIG_FILE
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise IndexFormatError(f"{directory} is not a pixquery index (no {CONFIG_FILE})") from None
        except json.JSONDecodeError as exc:
            raise IndexFormatError(f"{path} is not valid JSON: {exc}") from None
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise IndexFormatError(
                f"{directory} has index format {version}; this pixquery reads format {FORMAT_VERSION}"
            )
        try:
            config = cls(**data)
        except TypeError as exc:
            raise IndexFormatError(f"{path} has unexpected fields: {exc}") from None
        legacy = config.extra.pop("precision", None)
        if "precision" not in data and isinstance(legacy, dict):
            # Made when each tower had a precision: the images' decides. int8 stays int8; the precisions that
            # are gone (int8-static, bf16) were gated against fp32, which continues them.
            config.precision = "int8" if legacy.get("image") == "int8" else "fp32"
        return config

    def check_model(self, model: str | None, directory: Path) -> None:
        """Refuse to open an index with another model than the one that built it."""
        from pixquery.models.registry import canonical_spec

        if model is not None and canonical_spec(model) != canonical_spec(self.model):
            raise ModelMismatchError(
                f"the index at {directory} was built with model {self.model!r}, not {model!r}: vectors of "
                "different models are not comparable. Use --model "
                f"{self.model} (or leave --model out), or build a new index with --index NEW_DIR."
            )
