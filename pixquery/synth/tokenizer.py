"""A word-level `tokenizers` tokenizer for ShapesWorld captions (saved as the immich layout's tokenizer.json).

ShapesWorld's vocabulary is closed and small, so a word-level tokenizer is exact: no sub-word pieces to
learn, and every caption word gets its own embedding. Text is NFKC-normalised and lowercased, then split on
whitespace and punctuation, so "A red star, above a Circle." and "a red star , above a circle ." tokenize
alike; a word outside the vocabulary becomes <unk>.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, normalizers, pre_tokenizers
from tokenizers.models import WordLevel
from tokenizers.processors import TemplateProcessing

PAD, START, END, UNK = "<pad>", "<start>", "<end>", "<unk>"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, START, END, UNK)
"""Special tokens, in id order: the pad id is 0 so a zero-filled batch is all padding."""

PUNCTUATION: tuple[str, ...] = (".", ",", ";", ":", "!", "?", "-", "'", '"', "(", ")")
"""Punctuation kept as tokens of its own (the pre-tokenizer splits it off words) instead of <unk>."""

DEFAULT_CONTEXT_LENGTH = 40
"""The longest ShapesWorld caption is ~31 tokens with specials; 40 leaves room for users' queries."""


def build_tokenizer(words: Iterable[str], context_length: int = DEFAULT_CONTEXT_LENGTH) -> Tokenizer:
    """Build a word-level tokenizer over `words` that frames each text as <start> ... <end>, padded to length.

    Ids are deterministic: specials first, then punctuation, then the words sorted, so the same vocabulary
    always gives the same ids (the model's embedding rows depend on them).
    """
    reserved = set(SPECIAL_TOKENS) | set(PUNCTUATION)
    normalized = sorted({w.strip().lower() for w in words if w.strip()} - reserved)
    vocab = {token: i for i, token in enumerate([*SPECIAL_TOKENS, *PUNCTUATION, *normalized])}
    tokenizer = Tokenizer(WordLevel(vocab=vocab, unk_token=UNK))
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    # Whitespace() splits on \w+|[^\w\s]+, i.e. words and runs of punctuation.
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = TemplateProcessing(
        single=f"{START} $A {END}",
        special_tokens=[(START, vocab[START]), (END, vocab[END])],
    )
    # Truncation keeps room for the special tokens, so <end> survives on over-long texts.
    tokenizer.enable_truncation(max_length=context_length)
    tokenizer.enable_padding(length=context_length, pad_id=vocab[PAD], pad_token=PAD)
    return tokenizer


def encode_batch(tokenizer: Tokenizer, texts: Iterable[str]) -> list[list[int]]:
    """Token ids of each text, padded/truncated to the tokenizer's context length."""
    return [enc.ids for enc in tokenizer.encode_batch(list(texts))]


def save_tokenizer(tokenizer: Tokenizer, directory: Path) -> Path:
    """Write `tokenizer.json` into `directory` and return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "tokenizer.json"
    tokenizer.save(str(path))
    return path


def load_tokenizer(path: Path) -> Tokenizer:
    """Read a tokenizer saved by `save_tokenizer` (padding and truncation settings travel with it)."""
    return Tokenizer.from_file(str(path))
