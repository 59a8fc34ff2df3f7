"""`mini`: the project's own ShapesWorld dual encoder, shipped with the package and run through onnxruntime.

`mini` loads the weights in pixquery/data/mini/ (immich ONNX layout, trained by `pixquery train-mini`);
`mini:DIR` loads another trained copy, e.g. one trained with a different held-out set. DIR may be the layout
itself or a train-mini output directory (whose layout is in DIR/onnx). No torch is imported on this path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pixquery.models.base import ModelError
from pixquery.models.onnx_backend import ENCODER_OPTIONS, OnnxEncoder
from pixquery.models.precision import variant_root

SHIPPED_DIR = Path(__file__).resolve().parents[1] / "data" / "mini"
"""Where the package keeps the trained mini model."""


def resolve_dir(rest: str) -> Path:
    """The immich-layout directory a `mini` spec names (the shipped one for a bare `mini`)."""
    directory = Path(rest).expanduser() if rest.strip() else SHIPPED_DIR
    if (directory / "onnx" / "config.json").is_file():
        directory = directory / "onnx"
    if not (directory / "config.json").is_file():
        if not rest.strip():
            raise ModelError(
                f"the shipped mini model is missing from {SHIPPED_DIR}; reinstall pixquery or train one with "
                "`pixquery train-mini DIR` and use --model mini:DIR"
            )
        raise ModelError(f"{directory} holds no mini model (expected config.json, visual/, textual/ there)")
    return directory


def load(rest: str, threads: int | None = None, **options: Any) -> OnnxEncoder:
    """`mini` (shipped weights) or `mini:DIR` (a model trained by `pixquery train-mini DIR`)."""
    directory = resolve_dir(rest)
    name = f"mini:{rest}" if rest.strip() else "mini"
    if not rest.strip() and "variant_dir" not in options:
        # The shipped model sits in the package, which may be read-only: its int8 variants go to the cache.
        options = {**options, "variant_dir": variant_root(directory, in_cache=True)}
    return OnnxEncoder(name, directory, threads=threads, **{k: options[k] for k in ENCODER_OPTIONS if k in options})
