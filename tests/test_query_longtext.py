"""Long texts: split at sentence boundaries to fit the text context, embedded per chunk, combined."""

from __future__ import annotations

import numpy as np
from test_query_helpers import FakeEncoder

from pixquery.models.base import estimate_tokens, l2_normalize
from pixquery.query.longtext import encode_texts, split_text


class CountingEncoder(FakeEncoder):
    """A fake encoder with an 8-token context that counts one token per word plus two specials."""

    context_length = 8

    def token_lengths(self, texts: list[str]) -> np.ndarray:
        return np.array([len(t.split()) + 2 for t in texts])


def test_split_packs_whole_sentences_into_chunks_that_fit() -> None:
    text = "One two three. Four five. Six seven eight nine ten eleven twelve thirteen. End."
    chunks = split_text(text, 8, lambda t: len(t.split()) + 2)
    assert chunks == ["One two three. Four five.", "Six seven eight nine ten", "eleven twelve thirteen. End."]
    assert " ".join(chunks).split() == text.split()
    assert all(len(c.split()) + 2 < 8 for c in chunks)


def test_a_short_text_is_one_chunk() -> None:
    assert split_text("a dog on a beach", 77) == ["a dog on a beach"]
    assert estimate_tokens("a dog, running") == 2 + int(np.ceil(1.35 * 4))


def test_long_text_vector_is_the_token_weighted_mean_of_its_chunks() -> None:
    enc = CountingEncoder(texts={"a b c d.": [1, 0, 0, 0], "e f.": [0, 1, 0, 0], "short": [0, 0, 1, 0]})
    out = encode_texts(enc, ["a b c d. e f.", "short"])
    # Chunks: "a b c d." (6 tokens) and "e f." (4 tokens), since together they would need 8.
    assert np.allclose(out[0], l2_normalize(np.array([6, 4, 0, 0])))
    assert np.allclose(out[1], [0, 0, 1, 0])
    assert encode_texts(enc, ["a b c d. e f."], long_text=False).shape == (1, 4)


def test_short_texts_cost_one_batch_call() -> None:
    enc = CountingEncoder()
    encode_texts(enc, ["a cat", "a dog"])
    assert enc.text_calls == [["a cat", "a dog"]]


def test_an_encoder_without_a_tokenizer_counts_tokens_by_the_estimate() -> None:
    assert FakeEncoder().context_length == 77
    assert FakeEncoder().token_lengths(["a dog, running"]).tolist() == [estimate_tokens("a dog, running")]
