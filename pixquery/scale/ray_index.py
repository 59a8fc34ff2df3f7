"""Embed an index's pending files on Ray: actors decode and embed, the driver writes store and catalog.

`embed_pending_with_ray` is the Ray twin of `Indexer.embed_pending`, run after the usual `Indexer.sync`:

- the file list is the catalog's `pending` rows; `ray.data.from_items` spreads them over a pool of encoder actors
  (`map_batches` with a callable class: one model load per actor, a pool of `actors` actors);
- each actor decodes its files with `open_image_with_metadata` (a bad file becomes an error row, not a failure)
  and embeds them in one batch;
- results stream back to the driver, which alone writes: for every batch the vectors are added and flushed to the
  store first, then the catalog marks the files `indexed` (or `error`, with the reason) and commits.

That is the same write order as local indexing, so the same guarantees hold: a run killed at any point resumes
with nothing embedded twice (`reconcile` adopts vectors flushed before a lost catalog commit), and a finished
run's vectors are the ones local indexing would have stored.

Workers must be able to import pixquery and load the model: on a local instance they inherit this environment;
on a cluster, install the same pixquery on every node or pass `runtime_env={"py_modules": [...]}` (docs/scale.md).
File paths are read by the workers, so on a cluster they must name shared storage mounted at the same path.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from pixquery.indexing import EmbedReport, commit_batch
from pixquery.progress import ProgressFn, no_progress
from pixquery.store.base import VectorStore
from pixquery.store.catalog import Catalog

DECODE_THREADS = 4


class EncoderActor:
    """A Ray Data actor: loads the model once, then turns batches of (id, path) into vectors or error reasons."""

    def __init__(self, model_spec: str, precision: str = "fp32", max_megapixels: float | None = 100.0) -> None:
        from pixquery.models.registry import load_encoder

        self.encoder = load_encoder(model_spec, precision=precision)
        self.max_megapixels = max_megapixels
        # Decoding releases the GIL in Pillow: a few threads keep the model fed, as in local indexing.
        self.pool = ThreadPoolExecutor(DECODE_THREADS)

    def _load(self, path: str) -> tuple[Any, dict[str, Any] | None, str]:
        from pixquery.media.decode import ImageDecodeError, open_image_with_metadata

        try:
            image, meta = open_image_with_metadata(path, self.max_megapixels, self.encoder.decode_size)
            return self.encoder.preprocess(image), meta, ""
        except ImageDecodeError as exc:
            return None, None, str(exc)
        except Exception as exc:  # one odd file must not fail a whole cluster run
            return None, None, f"unexpected error while reading: {type(exc).__name__}: {exc}"

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        loaded = list(self.pool.map(self._load, [str(p) for p in batch["path"]]))
        good = [i for i, (_, _, err) in enumerate(loaded) if not err]
        vectors = np.zeros((len(loaded), int(self.encoder.dim)), np.float32)
        if good:
            vectors[good] = self.encoder.encode_preprocessed(np.stack([loaded[i][0] for i in good]))
        return {
            "id": np.asarray(batch["id"], np.int64),
            "vector": vectors,
            "error": np.array([err for _, _, err in loaded], dtype=object),
            "meta": np.array([json.dumps(meta) if meta is not None else "" for _, meta, _ in loaded], dtype=object),
        }


def _commit_batch(catalog: Catalog, store: VectorStore, batch: dict[str, np.ndarray], report: EmbedReport) -> int:
    """Store one batch returned by the actors, with local indexing's write order (`commit_batch`)."""
    ids = np.asarray(batch["id"], np.int64)
    errors = [str(e) for e in batch["error"]]
    good = np.array([not e for e in errors], bool)
    stored = [(int(i), json.loads(m)) for i, ok, m in zip(ids.tolist(), good, batch["meta"], strict=True) if ok]
    failed = [(int(i), e) for i, ok, e in zip(ids.tolist(), good, errors, strict=True) if not ok]
    commit_batch(catalog, store, stored, np.asarray(batch["vector"], np.float32)[good], failed, report)
    return len(ids)


def embed_pending_with_ray(
    catalog: Catalog,
    store: VectorStore,
    model_spec: str,
    precision: str = "fp32",
    address: str | None = None,
    actors: int = 2,
    batch_size: int = 32,
    progress: ProgressFn = no_progress,
    max_megapixels: float | None = 100.0,
    num_cpus: float = 1.0,
    num_gpus: float = 0.0,
    runtime_env: dict[str, Any] | None = None,
) -> EmbedReport:
    """Embed every pending file of `catalog` on Ray and store the vectors in `store` (see the module docstring).

    `address`: a Ray cluster ("ray://HEAD:10001" or "auto"); None starts a local instance, unless this process
    is already connected to one (then it is used as it is). `actors` encoder actors run at once, each with
    `num_cpus` CPUs and `num_gpus` GPUs; `batch_size` files go through the model together.
    """
    import ray

    report = EmbedReport()
    pending = catalog.ids_with_status("pending")
    if not pending:
        return report
    rows = catalog.get_many(pending)
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, runtime_env=runtime_env, log_to_driver=False)
    start = time.perf_counter()
    try:
        dataset = ray.data.from_items([{"id": i, "path": rows[i].path} for i in pending]).map_batches(
            EncoderActor,
            fn_constructor_kwargs={"model_spec": model_spec, "precision": precision, "max_megapixels": max_megapixels},
            compute=ray.data.ActorPoolStrategy(size=max(1, int(actors))),
            batch_size=max(1, int(batch_size)),
            batch_format="numpy",
            num_cpus=num_cpus,
            num_gpus=num_gpus,
        )
        done = 0
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            done += _commit_batch(catalog, store, batch, report)
            progress("embed", done, len(pending))
    finally:
        if started_here:
            ray.shutdown()
    report.seconds = time.perf_counter() - start
    return report
