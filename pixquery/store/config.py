"""An index's `config.json`: which model built it, the dimension, the store, the format version."""

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
            return cls(**data)
        except TypeError as exc:
            raise IndexFormatError(f"{path} has unexpected fields: {exc}") from None

    def record_precision(self, precision: Any) -> None:
        """Record the precision the towers run at (a `TowerPrecision`; None, for a torch model, is fp32), so that
        later runs embed images alike and only search with text vectors the parity gate allows."""
        record = precision.to_dict() if precision is not None else {"image": "fp32", "text": "fp32"}
        self.extra["precision"] = record

    def check_model(self, model: str | None, directory: Path) -> None:
        """Refuse to open an index with another model than the one that built it."""
        from pixquery.models.registry import canonical_spec

        if model is not None and canonical_spec(model) != canonical_spec(self.model):
            raise ModelMismatchError(
                f"the index at {directory} was built with model {self.model!r}, not {model!r}: vectors of "
                "different models are not comparable. Use --model "
                f"{self.model} (or leave --model out), or build a new index with --index NEW_DIR."
            )
