"""Texts longer than the text tower's context (77 tokens for CLIP): split into sentences, embed each, combine.

A CLIP-style text tower silently truncates at its context length, so the end of a long description would be
ignored. Instead a long text is cut at sentence boundaries (then at commas, then into word windows when a single
sentence is still too long), consecutive pieces are packed into chunks that fit, each chunk is embedded, and the
text's vector is the token-weighted mean of the chunk vectors, renormalised. Texts that fit are embedded as they
are, in one batch, so short queries pay nothing.

Token counts come from the encoder (`Encoder.token_lengths`: its tokenizer's, or a word-count estimate that errs
on the long side for a backend without one); `estimate_tokens` is that estimate for callers without an encoder.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import numpy as np

from pixquery.models.base import Encoder, estimate_tokens, l2_normalize

SPECIAL_TOKENS = 2  # start and end of text

_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+|\n+")
_CLAUSE_END = re.compile(r"(?<=,)\s+")


def token_counts(encoder: Encoder, texts: Sequence[str]) -> list[int]:
    """Token counts of texts, special tokens included (a truncating tokenizer's capped count reads as too long)."""
    return [int(n) for n in encoder.token_lengths(list(texts))]


def _pieces(text: str, fits: Callable[[str], bool]) -> list[str]:
    """Sentences, then clauses, then word windows: the coarsest pieces that each fit."""
    out: list[str] = []
    for sentence in filter(None, (s.strip() for s in _SENTENCE_END.split(text))):
        if fits(sentence):
            out.append(sentence)
            continue
        for clause in filter(None, (c.strip() for c in _CLAUSE_END.split(sentence))):
            if fits(clause):
                out.append(clause)
                continue
            words = clause.split()
            window: list[str] = []
            for word in words:
                if window and not fits(" ".join([*window, word])):
                    out.append(" ".join(window))
                    window = []
                window.append(word)
            if window:
                out.append(" ".join(window))
    return out


def split_text(text: str, limit: int, count: Callable[[str], int] = estimate_tokens) -> list[str]:
    """Split `text` into chunks of at most `limit` tokens (by `count`), packing whole sentences where possible."""
    if count(text) < limit:
        return [text]
    chunks: list[str] = []
    current = ""
    for piece in _pieces(text, lambda t: count(t) < limit):
        joined = f"{current} {piece}".strip()
        if current and count(joined) >= limit:
            chunks.append(current)
            current = piece
        else:
            current = joined
    if current:
        chunks.append(current)
    return chunks or [text]


def encode_texts(encoder: Encoder, texts: Sequence[str], long_text: bool = True) -> np.ndarray:
    """Unit embeddings of texts; with `long_text`, texts over the context are split and their chunks combined."""
    texts = list(texts)
    if not texts:
        return np.zeros((0, encoder.dim), np.float32)
    if not long_text:
        return l2_normalize(encoder.encode_texts(texts))
    limit = int(encoder.context_length)
    # A token covers at least one UTF-8 byte, but SentencePiece may spend a word-start token on a short word ("1"
    # as "▁", "1"), so twice the bytes bounds every tokenizer's count: a short text fits without being tokenized
    # twice (once to count, once to encode). Most queries are short.
    if all(2 * len(t.encode("utf-8", "surrogatepass")) + SPECIAL_TOKENS < limit for t in texts):
        return l2_normalize(encoder.encode_texts(texts))
    counts = token_counts(encoder, texts)
    # A count equal to the limit may be a truncated one, so only strictly shorter texts count as fitting.
    if all(n < limit for n in counts):
        return l2_normalize(encoder.encode_texts(texts))

    def count(t: str) -> int:
        return token_counts(encoder, [t])[0]

    chunked = [split_text(t, limit, count) if n >= limit else [t] for t, n in zip(texts, counts, strict=True)]
    flat = [c for chunks in chunked for c in chunks]
    vectors = l2_normalize(encoder.encode_texts(flat))
    out = np.zeros((len(texts), vectors.shape[1]), np.float32)
    start = 0
    for i, chunks in enumerate(chunked):
        weights = np.array([max(1, count(c)) for c in chunks], np.float32) if len(chunks) > 1 else np.ones(1)
        out[i] = (weights[:, None] * vectors[start : start + len(chunks)]).sum(0)
        start += len(chunks)
    return l2_normalize(out)
