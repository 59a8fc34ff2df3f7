"""Where `conse`'s shipped files live (pixquery/data/conse) and what they are called: what the encoder needs to
find them. How they are built from the torch originals is `pixquery.models.conse_assets`.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

IMAGE_FILE = "efficientnet-lite0.onnx"
IMAGE_VARIANT = "lite0"
"""The only classifier shipped; conse:lite1 and conse:lite2 are exported from torch on first use."""
TEXT_FILE = "all-MiniLM-L6-v2.int8.onnx"
TOKENIZER_FILES = ("tokenizer.json", "sentence_bert_config.json")
MANIFEST_FILE = "manifest.json"
MAX_FILE_BYTES = 20_000_000
"""No shipped file may be larger (package and repository limit)."""


def shipped_dir() -> Path:
    """pixquery/data/conse inside the installed package."""
    return Path(str(resources.files("pixquery").joinpath("data", "conse")))


def shipped_file(name: str) -> Path | None:
    """A shipped asset by file name, or None when this installation lacks it."""
    path = shipped_dir() / name
    return path if path.is_file() else None


def shipped_text_dir() -> Path | None:
    """The folder holding the shipped text tower and its tokenizer files, or None when any is missing."""
    folder = shipped_dir()
    return folder if all((folder / name).is_file() for name in (TEXT_FILE, *TOKENIZER_FILES)) else None


def label_bank_file(key: str) -> str:
    """File name of a label bank by its cache key (`conse.label_bank_key`)."""
    return f"labelbank-{key}.npy"
