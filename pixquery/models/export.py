"""Export a torch-backed encoder to the immich ONNX layout (`pixquery export-onnx`).

The layout is immich's exactly (see onnx_backend), so our exports load in immich and immich's in pixquery.
Differences that stay within what immich accepts: the batch axis is dynamic (immich's exports fix it at 1),
and a CLIP-family text tower, causal and pooled at EOS, also gets a dynamic sequence axis so a query can run
at its real token length; SigLIP text stays padded to its fixed length. Each output `embedding` is
L2-normalised. config.json carries a few extra keys immich ignores: family, logit_scale, logit_bias; and
visual/preprocess_cfg.json carries `crop_rounding`, so that an export of a transformers checkpoint keeps
transformers' centre crop (immich's own files lack the key and get open_clip's).
"""

from __future__ import annotations

import json
import shutil
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pixquery.models.base import ModelError
from pixquery.models.preprocess import PreprocessConfig

DEFAULT_OPSET = 17
MIN_COSINE = 0.999
"""Exports are checked: torch and ONNX embeddings of a probe image and text must agree this well."""


def _write_json(path: Path, value: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")


def _save_tokenizer(tokenizer: Any, directory: Path) -> None:
    if hasattr(
        tokenizer, "save_pretrained"
    ):  # a transformers tokenizer, saved the way immich's exporter saves it
        tokenizer.save_pretrained(str(directory))
    elif hasattr(tokenizer, "save"):
        tokenizer.save(directory)
    elif callable(tokenizer):  # a loader, so that only an export pays for fetching the tokenizer
        _save_tokenizer(tokenizer(), directory)
        return
    else:
        raise ModelError(f"cannot save a tokenizer of type {type(tokenizer).__name__}")
    if not (directory / "tokenizer.json").is_file():
        _write_fast_tokenizer(tokenizer, directory)


def _write_fast_tokenizer(tokenizer: Any, directory: Path) -> None:
    """Write tokenizer.json for a slow transformers tokenizer (SigLIP's SentencePiece one) by conversion."""
    try:
        from transformers.convert_slow_tokenizer import convert_slow_tokenizer

        fast = convert_slow_tokenizer(tokenizer)
    except (
        Exception
    ) as exc:  # no registered converter (SiglipTokenizer has none): convert its .model directly
        fast = _convert_sentencepiece(tokenizer, exc)
    fast.save(str(directory / "tokenizer.json"))


def _convert_sentencepiece(tokenizer: Any, cause: Exception) -> Any:
    """A SentencePiece tokenizer as a `tokenizers.Tokenizer` that appends EOS, as SiglipTokenizer does."""
    vocab_file = str(getattr(tokenizer, "vocab_file", "") or "")
    eos = getattr(tokenizer, "eos_token", None)
    if not vocab_file.endswith(".model") or eos is None:
        raise ModelError(
            f"the tokenizer ({type(tokenizer).__name__}) has no tokenizer.json and could not be converted to "
            f"one ({cause}); the torch-free runtime needs it"
        ) from cause
    from tokenizers import processors
    from transformers.convert_slow_tokenizer import SpmConverter

    class _AppendEos(SpmConverter):
        def post_processor(self) -> Any:
            eos_id = self.original_tokenizer.convert_tokens_to_ids(eos)
            return processors.TemplateProcessing(single=["$A", eos], special_tokens=[(eos, eos_id)])

    return _AppendEos(tokenizer).converted()


def _export_graph(
    module: Any,
    example: tuple[Any, ...],
    path: Path,
    input_names: Sequence[str],
    dynamic_axes: dict[str, dict[int, str]],
    opset: int,
) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    # nn.MultiheadAttention's inference fast path (open_clip uses it) is a fused op ONNX has no export for.
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            # Tracer and deprecation warnings are expected here and say nothing to a user.
            warnings.simplefilter("ignore")
            # The TorchScript exporter (dynamo=False) handles the transformers CLIP/SigLIP code reliably.
            torch.onnx.export(
                module,
                example,
                str(path),
                input_names=list(input_names),
                output_names=["embedding"],
                dynamic_axes=dynamic_axes,
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)


def write_immich_layout(
    out_dir: Path,
    image_tower: Any,
    text_tower: Any,
    tokenizer: Any,
    preprocess_cfg: PreprocessConfig,
    model_config: dict[str, Any],
    text_input: str = "text",
    *,
    context_length: int | None = None,
    dynamic_text_length: bool = False,
    opset: int = DEFAULT_OPSET,
) -> Path:
    """Write torch towers, tokenizer and configs as an immich-layout model directory; returns `out_dir`.

    `image_tower(images[n,3,S,S]) -> [n,d]` and `text_tower(ids[n,L] int32) -> [n,d]` are `nn.Module`s that
    return L2-normalised embeddings. `model_config` is the open_clip-style config.json (embed_dim, vision_cfg,
    text_cfg.context_length, ...). With `dynamic_text_length` the text graph accepts any length up to the
    context length (only valid for causal towers pooled at EOS).
    """
    import torch

    out_dir = Path(out_dir)
    size = preprocess_cfg.size
    context_length = int(context_length or model_config["text_cfg"]["context_length"])
    if "embed_dim" not in model_config:
        raise ModelError("model_config needs embed_dim (config.json's key immich reads)")
    _write_json(out_dir / "config.json", model_config)
    _write_json(out_dir / "visual" / "preprocess_cfg.json", preprocess_cfg.to_dict())

    image_example = (torch.zeros(2, 3, size, size),)
    _export_graph(
        image_tower,
        image_example,
        out_dir / "visual" / "model.onnx",
        ["image"],
        {"image": {0: "batch"}, "embedding": {0: "batch"}},
        opset,
    )

    # Any valid ids will do: the towers have no branch on token values, only on shapes.
    ids = torch.ones(2, context_length, dtype=torch.int32)
    text_path = out_dir / "textual" / "model.onnx"
    for dynamic in (True, False) if dynamic_text_length else (False,):
        text_axes = {0: "batch", 1: "sequence"} if dynamic else {0: "batch"}
        _export_graph(
            text_tower,
            (ids,),
            text_path,
            [text_input],
            {text_input: text_axes, "embedding": {0: "batch"}},
            opset,
        )
        vocab_size = int(model_config["text_cfg"].get("vocab_size", 2))
        if not dynamic or _runs_at_any_length(text_path, text_input, context_length, vocab_size):
            break
        # e.g. open_clip adds a fixed context-length position table and mask: keep the fixed length.
    _save_tokenizer(tokenizer, out_dir / "textual")
    return out_dir


def _runs_at_any_length(path: Path, text_input: str, context_length: int, vocab_size: int) -> bool:
    """Whether a text graph exported with a dynamic length gives, for a short query, the padded query's row.

    The probe ends its real tokens with the highest id, where an EOS-pooled causal tower pools.
    """
    import onnxruntime as ort

    from pixquery.models.onnx_backend import OnnxTower, session_options

    options = session_options()
    options.log_severity_level = 4  # a refused length is an expected answer here, not an error to print
    tower = OnnxTower.from_session(
        path, ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    )
    real = min(5, context_length)
    full = np.ones((1, context_length), dtype=np.int64)
    full[0, real - 1] = max(vocab_size - 1, 1)
    try:
        short = tower.run({text_input: full[:, :real]})
    except Exception:  # the graph refuses the shorter length
        return False
    return float(np.abs(short - tower.run({text_input: full})).max()) < 1e-4


def check_export(
    out_dir: Path,
    encode_image: Callable[[np.ndarray], np.ndarray],
    encode_text_ids: Callable[[np.ndarray], np.ndarray],
    tokenize: Callable[[Sequence[str]], np.ndarray],
    probe_text: str = "a photo of a cat",
) -> tuple[float, float]:
    """Compare torch and ONNX on a probe image and text; returns the two cosines, raises if either is low."""
    from pixquery.models.onnx_backend import OnnxEncoder

    encoder = OnnxEncoder(f"onnx:{out_dir}", out_dir)
    rng = np.random.default_rng(0)
    image = rng.standard_normal((1, 3, encoder.image_size, encoder.image_size)).astype(np.float32)
    image_cos = float((encode_image(image) * encoder.encode_preprocessed(image)).sum())
    text_cos = float((encode_text_ids(tokenize([probe_text])) * encoder.encode_texts([probe_text])).sum())
    if min(image_cos, text_cos) < MIN_COSINE:
        raise ModelError(
            f"the export in {out_dir} does not reproduce the torch model (cosine image {image_cos:.4f}, "
            f"text {text_cos:.4f}; expected >= {MIN_COSINE})"
        )
    return image_cos, text_cos


def export_encoder(encoder: Any, out_dir: Path, opset: int = DEFAULT_OPSET, verify: bool = True) -> Path:
    """Export an already loaded torch-backed encoder (a `TorchEncoder`) to `out_dir`."""
    import torch

    from pixquery.models.torch_encoder import TorchEncoder

    if not isinstance(encoder, TorchEncoder):
        raise ModelError(
            f"{encoder.name} is not a torch model; only random:, open_clip: and Hugging Face models export"
        )
    parts = encoder.export_parts()
    write_immich_layout(
        out_dir,
        parts.image_tower,
        parts.text_tower,
        parts.tokenizer,
        parts.preprocess_cfg,
        parts.model_config,
        parts.text_input,
        context_length=parts.context_length,
        dynamic_text_length=parts.dynamic_text_length,
        opset=opset,
    )
    if verify and parts.tokenize is not None:

        def run_image(batch: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return parts.image_tower(torch.from_numpy(batch)).numpy()

        def run_text(ids: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return parts.text_tower(torch.from_numpy(ids)).numpy()

        check_export(out_dir, run_image, run_text, parts.tokenize)
    return out_dir


def export_onnx(
    spec: str,
    out_dir: Path,
    opset: int = DEFAULT_OPSET,
    overwrite: bool = False,
    verify: bool = True,
    **options: Any,
) -> Path:
    """Export the torch-backed model `spec` (random:, open_clip:, a Hugging Face id or dir) to `out_dir`.

    The result loads with `onnx:OUT_DIR` here and as a custom model in immich. With `verify`, a probe image
    and text are embedded by torch and by onnxruntime and must agree (cosine >= MIN_COSINE).
    """
    from pixquery.models.registry import load_encoder

    out_dir = Path(out_dir).expanduser()
    if out_dir.exists() and any(out_dir.iterdir()):
        if not overwrite:
            raise ModelError(f"{out_dir} exists and is not empty; choose a new directory or pass overwrite")
        for sub in ("visual", "textual"):
            shutil.rmtree(out_dir / sub, ignore_errors=True)
    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore"
        )  # random: warns that its weights are meaningless; exporting them is fine
        encoder = load_encoder(spec, **options)
    return export_encoder(encoder, out_dir, opset=opset, verify=verify)
