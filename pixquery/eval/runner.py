"""The evaluation runner behind ``pixquery eval``: one task, one model, every requested method, one report.

    pixquery eval TASK --data DIR --model SPEC [--method NAME[:k=v,...] ...] [--out DIR] [--split S]
                  [--batch-size N]

Steps: validate the methods (before any model loads), read the dataset, hash it, load the model, fetch
embeddings from the cache (embedding only what is missing), score each method, write results.json, results.md
and PNG plots to the output folder. Tasks and their metrics live in `pixquery.eval.tasks`, the cache in
`pixquery.eval.cache`, the report in `pixquery.eval.report`.
"""

from __future__ import annotations

import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from pixquery.eval.cache import EmbeddingCache, data_fingerprint
from pixquery.eval.report import write_report
from pixquery.eval.tasks import EvalError, make_task
from pixquery.models.base import Encoder

OPTION_DEFAULTS: dict[str, Any] = {
    "split": None,  # the task's usual evaluation split (test for Karpathy sets, val for CIRR/CIRCO/FashionIQ)
    "batch_size": 64,
    "workers": None,  # decoding threads; default: cores, 2 to 8
    "cache": True,  # False: embed in memory only, read and write nothing in the cache
    "cache_dir": None,  # default: $PIXQUERY_CACHE/eval or the user cache directory
    "progress": True,
    "fast_decode": False,  # True: JPEGs decode at a reduced scale (faster; figures drift from the references)
    "plots": True,  # False writes results.json and results.md only
    "max_captions_per_image": None,  # Karpathy sets: None keeps every caption (CLIP_benchmark), 5 for VSE++/SCAN
    "category": None,  # fashioniq: one of dress, shirt, toptee (default: all three, averaged)
    "classnames": None,  # classification: a class-name file (default: classnames.txt in the data folder)
    "images_dir": None,  # circo, roxford/rparis: image folder when not in the default place
    "crop_queries": True,  # roxford/rparis: crop queries to their box, as the protocol says
}


def _versions() -> dict[str, str]:
    """Versions of what produced the figures; model runtimes only where this run imported them."""
    from pixquery import __version__

    found = {"pixquery": __version__, "python": platform.python_version(), "numpy": np.__version__,
             "platform": platform.platform()}
    for module in ("onnxruntime", "torch", "transformers", "open_clip"):
        if module in sys.modules:
            found[module] = str(getattr(sys.modules[module], "__version__", "unknown"))
    return found


def default_out_dir(task: str, model: str, now: datetime | None = None) -> Path:
    """``./eval-results/<task>-<model>-<time>``, the model spec made file-name safe."""
    now = now or datetime.now()
    safe_model = "".join(c if c.isalnum() or c in "._-" else "_" for c in model)[:60]
    return Path("eval-results") / f"{task}-{safe_model}-{now:%Y%m%d-%H%M%S}"


def _check_options(options: dict[str, Any] | None) -> dict[str, Any]:
    given = dict(options or {})
    unknown = sorted(set(given) - set(OPTION_DEFAULTS))
    if unknown:
        raise EvalError(f"unknown eval option {unknown[0]!r}; options: {', '.join(OPTION_DEFAULTS)}")
    merged = {**OPTION_DEFAULTS, **{k: v for k, v in given.items() if v is not None}}
    if int(merged["batch_size"]) < 1:
        raise EvalError(f"batch_size must be at least 1, got {merged['batch_size']}")
    return merged


def run_eval(
    task: str,
    data: Path | str,
    model: str,
    methods: list[str] | None = None,
    out: Path | str | None = None,
    options: dict[str, Any] | None = None,
    *,
    encoder: Encoder | None = None,
) -> dict[str, Any]:
    """Evaluate `model` on benchmark `task` with the data in `data`, every method in `methods`, and write a report.

    Args:
        task: one of `pixquery.eval.tasks.TASKS` (flickr30k, coco, shapesworld-retrieval, cirr, circo,
            fashioniq, shapesworld-cir, shapesworld-circo, classification, roxford, rparis).
        data: the dataset folder, laid out as the benchmark distributes it (see docs/evaluation.md).
        model: model spec (`pixquery.models.registry.load_encoder`); names the cache and the report.
        methods: ``NAME`` or ``NAME:key=value,...`` each; None runs the task's defaults. Composed-retrieval
            tasks always add the baselines image, text and sum.
        out: output folder; default ``./eval-results/<task>-<model>-<time>``.
        options: see `OPTION_DEFAULTS` (split, batch_size, workers, cache, cache_dir, progress...).
        encoder: an already loaded encoder for `model` (tests, notebooks); loaded from the spec otherwise.

    Returns:
        The results dict written to ``results.json`` (metrics as fractions in [0, 1]), with ``files`` listing
        what was written.
    """
    started = time.perf_counter()
    created = datetime.now(UTC)
    opts = _check_options(options)
    the_task = make_task(task, Path(data), opts)
    specs = the_task.resolve_methods(methods)  # fail on a typo before minutes of embedding
    the_task.load()
    # Hashed relative to the set's own folder, so pointing --data at its parent finds the same embeddings.
    data_hash = data_fingerprint(the_task.annotation_files, the_task.image_paths, root=the_task.data)
    if encoder is None:
        from pixquery.models.registry import load_encoder

        encoder = load_encoder(model)

    from pixquery.progress import rich_progress

    method_results: dict[str, Any] = {}
    with rich_progress(bool(opts["progress"])) as progress:
        cache = EmbeddingCache(
            encoder, model, data_hash, root=Path(opts["cache_dir"]) if opts["cache_dir"] else None,
            enabled=bool(opts["cache"]), batch_size=int(opts["batch_size"]), workers=opts["workers"],
            progress=progress, fast_decode=bool(opts["fast_decode"]), data_root=the_task.data,
        )
        try:
            the_task.prepare(cache)
            for done, spec in enumerate(specs):
                if progress is not None:
                    progress("Scoring methods", done, len(specs))
                start = time.perf_counter()
                result = the_task.evaluate(spec, cache)
                method_results[spec.label] = {
                    "name": spec.name, "baseline": spec.name in the_task.baselines and not spec.params,
                    "params": result.params, "metrics": result.metrics, "groups": result.groups,
                    "curves": result.curves, "notes": result.notes,
                    "seconds": round(time.perf_counter() - start, 3),
                }
            if progress is not None:
                progress("Scoring methods", len(specs), len(specs))
        finally:
            cache.flush()  # texts embedded by the methods that did run are kept even if a later one failed

    results: dict[str, Any] = {
        "task": task,
        "kind": the_task.kind,
        "created": created.isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - started, 3),
        "model": {"spec": model, "name": encoder.name, "dim": int(encoder.dim),
                  "cache_key": cache.model_key, "meaningless": bool(encoder.meaningless)},
        "data": {"path": str(Path(data).resolve()), "hash": data_hash, "split": the_task.info.get("split"),
                 "counts": {k: v for k, v in the_task.info.items() if k not in ("name", "split")},
                 "annotation_files": [str(p) for p in the_task.annotation_files]},
        "headline": list(the_task.headline),
        "methods": method_results,
        "cache": {**cache.stats.to_dict(), "enabled": cache.enabled, "directory": str(cache.directory)},
        "options": {k: v for k, v in opts.items() if k not in ("progress", "plots")},
        "versions": _versions(),
    }
    out_dir = Path(out) if out is not None else default_out_dir(task, model)
    write_report(results, out_dir, plots=bool(opts["plots"]))
    return results
