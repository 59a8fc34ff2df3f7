"""Give a fixed-batch ONNX graph a dynamic batch axis, when the graph allows it, and prove it did no harm.

immich's published exports fix the batch at 1. Marking the batch axis dynamic in the graph's input and output
declarations is enough for graphs whose ops take the batch from the input's shape; graphs where the exporter
folded the batch size into constants (transformers' CLIP folds its class-token Expand, for one) then fail or,
worse, could compute wrong rows. So the edited graph is only kept when a batch of two random inputs gives the
same rows as two batch-1 runs of the original. Needs the `onnx` package; without it nothing changes.

Measured (random ViT-B-32 weights, 2 busy cores): an open_clip graph traced with batch 1 as immich's exporter
does, and a transformers one, both refuse the edit (their Reshape shapes such as [50, 12, 64] hold the batch),
so this is opt-in (OnnxEncoder(batch="auto")). A graph exported with a dynamic batch from the start
(`pixquery export-onnx`) runs 16 images in one call about 1.4x faster than 16 batch-1 calls, same vectors.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pixquery.models.onnx_backend import OnnxTower, session_options

MAX_ABS_DIFF = 1e-4
"""Largest difference allowed between the batched and the batch-1 rows (both are unit vectors)."""


def _probe(tower: OnnxTower, rows: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    feeds = {}
    for name, arg in tower.inputs.items():
        shape = [rows] + [d if isinstance(d, int) else 1 for d in arg.shape[1:]]
        if arg.type == "tensor(float)":
            feeds[name] = rng.standard_normal(shape).astype(np.float32)
        else:
            feeds[name] = np.ones(shape, dtype=tower.numpy_type(name))
    return feeds


def dynamic_batch_tower(
    tower: OnnxTower, threads: int | None, providers: list[str] | None = None
) -> OnnxTower | None:
    """A batch-1 tower made dynamic, or None when onnx is missing or the edit changes the results."""
    if tower.fixed_batch != 1:
        return None
    try:
        import onnx
        import onnxruntime as ort
    except ImportError:
        return None
    try:
        model = onnx.load(str(tower.path))  # external data, if any, is read in too
        for value in list(model.graph.input) + list(model.graph.output):
            dims = value.type.tensor_type.shape.dim
            if dims:
                dims[0].ClearField("dim_value")
                dims[0].dim_param = "batch"
        # Stored intermediate shapes still say 1 and would contradict the new input shape.
        del model.graph.value_info[:]
        options = session_options(threads)
        options.log_severity_level = 4  # a graph that refuses the edit is an expected answer, not an error
        session = ort.InferenceSession(
            model.SerializeToString(),
            sess_options=options,
            providers=providers or ["CPUExecutionProvider"],
        )
    except Exception:  # an edit the graph does not allow; the original stays in use
        return None
    edited = OnnxTower.from_session(Path(tower.path), session)
    feeds = _probe(tower, 2)
    try:
        batched = edited.run(feeds)
    except Exception:
        return None
    single = tower.run(feeds)  # the original runs the two rows one at a time
    if batched.shape != single.shape or float(np.abs(batched - single).max()) > MAX_ABS_DIFF:
        return None
    return edited
