"""Text to token ids without torch: a Hugging Face tokenizer.json, padded and truncated to the context length.

Special tokens come from the tokenizer file's own post-processor (CLIP's adds <|startoftext|> and
<|endoftext|>, SigLIP's appends </s>), and truncation keeps them: `tokenizers` leaves room for them when
it cuts, so a long CLIP query still ends in EOS, where the text tower pools. Padding uses the pad token that
tokenizer_config.json names (immich reads the same key), so ids match what immich and transformers produce.
"""

from __future__ import annotations

import json
import string
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from pixquery.models.base import ModelError

_PUNCTUATION = str.maketrans("", "", string.punctuation)
CLEAN_MODES = ("whitespace", "lower", "canonicalize")


def clean_text(text: str, mode: str = "whitespace") -> str:
    """Clean a query the way open_clip's tokenizers do before tokenizing.

    whitespace: runs of whitespace collapsed; lower: also lowercased; canonicalize (SigLIP): also
    underscores become spaces and ASCII punctuation is removed. HTML entities are left alone, as transformers
    and immich leave them (open_clip alone unescapes them).
    """
    if mode not in CLEAN_MODES:
        raise ValueError(f"unknown text clean mode {mode!r}; use one of {list(CLEAN_MODES)}")
    if mode == "canonicalize":
        text = text.replace("_", " ").translate(_PUNCTUATION)
    if mode in ("lower", "canonicalize"):
        text = text.lower()
    return " ".join(text.split())


@dataclass(frozen=True)
class TokenBatch:
    """Token ids for a batch of texts, each row padded to the same width."""

    ids: np.ndarray
    """(n, width) int64 token ids."""
    attention_mask: np.ndarray
    """(n, width) int64, 1 on real tokens (specials included), 0 on padding."""
    lengths: np.ndarray
    """(n,) int64 real lengths, special tokens included."""


class TextTokenizer:
    """Wraps a `tokenizers.Tokenizer` with the context length, pad token and cleaning of one model."""

    def __init__(
        self, tokenizer: Tokenizer, context_length: int, pad_token: str, clean: str = "whitespace",
        *, owned: bool = False,
    ) -> None:
        pad_id = tokenizer.token_to_id(pad_token)
        if pad_id is None:
            raise ModelError(f"the pad token {pad_token!r} is not in the tokenizer's vocabulary")
        if clean not in CLEAN_MODES:
            raise ModelError(f"unknown text clean mode {clean!r}; use one of {list(CLEAN_MODES)}")
        self.context_length = int(context_length)
        self.pad_token = pad_token
        self.pad_id = int(pad_id)
        self.clean = clean
        # A private copy: padding and truncation are settings of the object and must not leak to a caller.
        # `owned` (a tokenizer nobody else holds, e.g. just read from disk) skips the copy: re-parsing a
        # 250k-entry vocabulary costs ~150 ms of a cold query.
        self._tokenizer = tokenizer if owned else Tokenizer.from_str(tokenizer.to_str())
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(max_length=self.context_length)

    @property
    def vocab_size(self) -> int:
        """Number of ids the tokenizer can produce, added tokens included."""
        return self._tokenizer.get_vocab_size(with_added_tokens=True)

    @property
    def tokenizer(self) -> Tokenizer:
        """The underlying `tokenizers.Tokenizer` (with truncation set)."""
        return self._tokenizer

    @classmethod
    def from_dir(
        cls, directory: Path, context_length: int, default_pad_token: str, clean: str = "whitespace"
    ) -> TextTokenizer:
        """Load tokenizer.json and tokenizer_config.json (as `save_pretrained` writes them)."""
        tokenizer, pad_token = read_tokenizer(directory)
        return cls(tokenizer, context_length, pad_token or default_pad_token, clean, owned=True)

    def _encode_raw(self, texts: Sequence[str]) -> list[list[int]]:
        cleaned = [clean_text(text, self.clean) for text in texts]
        return [encoding.ids for encoding in self._tokenizer.encode_batch(cleaned)]

    def token_lengths(self, texts: Sequence[str]) -> np.ndarray:
        """Real token counts (special tokens included, capped at the context length)."""
        return np.array([len(ids) for ids in self._encode_raw(texts)], dtype=np.int64)

    def encode(self, texts: Sequence[str], pad_to: int | None = None) -> TokenBatch:
        """Tokenize texts into rows padded to `pad_to` (default: the context length).

        Pass pad_to=0 to pad only to the longest text of the batch, for towers that may run at real length.
        """
        rows = self._encode_raw(texts)
        lengths = np.array([len(ids) for ids in rows], dtype=np.int64)
        if pad_to is None:
            width = self.context_length
        elif pad_to == 0:
            width = int(lengths.max()) if len(rows) else 1
        else:
            width = pad_to
        if width < (int(lengths.max()) if len(rows) else 0):
            raise ValueError(f"pad_to={width} is shorter than the longest text ({int(lengths.max())} tokens)")
        ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for row, tokens in enumerate(rows):
            ids[row, : len(tokens)] = tokens
            mask[row, : len(tokens)] = 1
        return TokenBatch(ids=ids, attention_mask=mask, lengths=lengths)

    def save(self, directory: Path, extra_config: dict[str, Any] | None = None) -> None:
        """Write tokenizer.json and tokenizer_config.json, loadable by immich, transformers and this class."""
        directory.mkdir(parents=True, exist_ok=True)
        plain = Tokenizer.from_str(self._tokenizer.to_str())
        plain.no_truncation()
        plain.no_padding()
        plain.save(str(directory / "tokenizer.json"))
        config = {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "pad_token": self.pad_token,
            "model_max_length": self.context_length,
            "clean_up_tokenization_spaces": False,
            **(extra_config or {}),
        }
        (directory / "tokenizer_config.json").write_text(
            json.dumps(config, indent=2) + "\n", encoding="utf-8"
        )


def read_tokenizer(directory: Path) -> tuple[Tokenizer, str | None]:
    """tokenizer.json parsed, and the pad token tokenizer_config.json names (None when it names none): the slow
    half of `TextTokenizer.from_dir`, which needs nothing from the model, so it can run while a session opens."""
    tokenizer_path = directory / "tokenizer.json"
    if not tokenizer_path.is_file():
        raise ModelError(f"missing {tokenizer_path}: the text tower needs its tokenizer file there")
    try:
        tokenizer = Tokenizer.from_file(str(tokenizer_path))
    except Exception as exc:  # tokenizers raises plain Exception subclasses on malformed files
        raise ModelError(f"{tokenizer_path} is not a valid tokenizer file: {exc}") from exc
    config = _read_tokenizer_config(directory / "tokenizer_config.json")
    return tokenizer, _token_text(config.get("pad_token"))


def _read_tokenizer_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ModelError(
            f"missing {path}: the text tower needs tokenizer_config.json (it names the pad token)"
        )
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise ModelError(f"{path} should hold a JSON object")
    return config


def _token_text(value: Any) -> str | None:
    """tokenizer_config.json stores a token as a string or as an AddedToken dict with a "content" key."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    return None
