"""The facade users import: `Library.open(path)`, `.index(folder)`, `.search(...)`, `.info()`.

The CLI, the HTTP API and the web page call this and nothing deeper.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pixquery.errors import IndexFormatError, ModelMismatchError, PixqueryError, QueryError
from pixquery.models.base import Encoder
from pixquery.models.registry import DEFAULT_MODEL
from pixquery.paths import default_index_dir
from pixquery.query.engine import Hit, SearchContext, execute, hits_from
from pixquery.query.spec import QuerySpec
from pixquery.store import open_store
from pixquery.store.base import VectorStore
from pixquery.store.catalog import Catalog
from pixquery.store.config import CONFIG_FILE, IndexConfig
from pixquery.store.lock import IndexLock

if TYPE_CHECKING:  # indexing is imported when an index is built: a query never pays for it
    from pixquery.indexing import EmbedReport, ProgressFn, SyncReport

CATALOG_FILE = "catalog.sqlite"
VECTORS_DIR = "vectors"


@dataclass
class IndexReport:
    """What one `Library.index` call did."""

    sync: SyncReport
    embed: EmbedReport
    reconciled: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return {
            "new": self.sync.new,
            "changed": self.sync.changed,
            "moved": self.sync.moved,
            "deleted": self.sync.deleted,
            "unchanged": self.sync.unchanged,
            "embedded": self.embed.embedded,
            "failed": self.embed.failed,
            "seconds": round(self.embed.seconds, 3),
            "images_per_s": round(self.embed.images_per_s, 2),
            "skipped": [{"path": s.path, "reason": s.reason} for s in self.sync.skipped],
            "reconciled": self.reconciled,
        }


class Library:
    """An index of images on disk. Open it, index folders into it, search it."""

    def __init__(
        self,
        path: Path,
        model: str | None,
        store_kind: str,
        encoder: Encoder | None = None,
        precision: str | None = None,
    ) -> None:
        self.path = Path(path)
        self._requested_model = model
        self._requested_precision = precision
        self._store_kind = store_kind
        self._encoder = encoder
        self._store: VectorStore | None = None
        self.config: IndexConfig | None = None
        if (self.path / CONFIG_FILE).exists():
            self.config = IndexConfig.load(self.path)
            self.config.check_model(model, self.path)
        self.catalog: Catalog | None = (
            Catalog(self.path / CATALOG_FILE) if (self.path / CATALOG_FILE).exists() else None
        )

    # --- opening ------------------------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        path: str | Path | None = None,
        model: str | None = None,
        store: str = "flat",
        encoder: Encoder | None = None,
        precision: str | None = None,
    ) -> Library:
        """Open the index at `path` (created on first `index()`).

        `model` is required to create an index (default: `$PIXQUERY_MODEL`); opening an existing index with another
        model raises `ModelMismatchError`. `encoder` lets a program pass an already-loaded encoder.
        `precision` (fp32, int8 or auto; default `$PIXQUERY_PRECISION`, else auto: int8 where the model's parity
        gate passes, `pixquery.models.precision`) applies to a new index and is recorded in its config; an
        existing index always runs at its recorded precision, and asking for another is an error.
        """
        path = Path(path).expanduser() if path is not None else default_index_dir()
        if path.exists() and not path.is_dir():
            raise IndexFormatError(f"{path} is a file, not an index directory")
        model = model or (encoder.name if encoder is not None else None)
        return cls(path, model, store, encoder, precision)

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
        if self.catalog is not None:
            self.catalog.close()
            self.catalog = None

    @property
    def exists(self) -> bool:
        return self.config is not None

    @property
    def model(self) -> str:
        if self.config is not None:
            return self.config.model
        return self._requested_model or os.environ.get("PIXQUERY_MODEL") or DEFAULT_MODEL

    @property
    def encoder(self) -> Encoder:
        """The model, loaded on first use (a search that needs no model never pays for loading it)."""
        if self._encoder is None:
            from pixquery.models.registry import load_encoder

            if self.config is None:  # a new index: what was asked, else $PIXQUERY_PRECISION, else auto
                precision = self._requested_precision or os.environ.get("PIXQUERY_PRECISION") or "auto"
            else:
                precision = self.config.precision
                if self._requested_precision not in (None, "auto", precision):
                    raise ModelMismatchError(
                        f"the index at {self.path} was built at {precision} and runs at {precision} only, not "
                        f"{self._requested_precision}. Leave --precision out, or build a new index with --index NEW_DIR"
                    )
            self._encoder = load_encoder(self.model, precision=precision)
        return self._encoder

    def _require_index(self) -> IndexConfig:
        if self.config is None or self.catalog is None:
            raise IndexFormatError(
                f"no index at {self.path}: create one with `pixquery index FOLDER --index {self.path}`"
            )
        return self.config

    @property
    def store(self) -> VectorStore:
        """A read-only view of the vectors (it follows what an indexer commits)."""
        config = self._require_index()
        if self._store is None:
            self._store = open_store(config.store, self.path / VECTORS_DIR, config.dim, readonly=True,
                                     params=config.extra.get("store_params"))
        return self._store

    # --- indexing -----------------------------------------------------------------------------------------
    def index(
        self,
        paths: Sequence[str | Path],
        include: Iterable[str] = (),
        exclude: Iterable[str] = (),
        hidden: bool = False,
        batch_size: int = 32,
        workers: int | None = None,
        max_megapixels: float | None = 100.0,
        progress: ProgressFn | None = None,
        ray: str | None = None,
        ray_actors: int = 2,
    ) -> IndexReport:
        """Index (or update) the images under `paths`: incremental, resumable, one writer at a time.

        `ray` embeds the new files on Ray instead of in this process (needs the [scale] extra): "local" starts
        a Ray instance here, "auto" joins the cluster this machine belongs to, "ray://HEAD:10001" a remote one;
        `ray_actors` encoder actors run at once. Scanning, the catalog and the store stay in this process, so
        the result, and what a crash leaves behind, are those of local indexing.
        """
        from pixquery.indexing import Indexer, reconcile

        self.path.mkdir(parents=True, exist_ok=True)
        with IndexLock(self.path):
            if self.config is None:
                self.config = IndexConfig(model=self.model, dim=int(self.encoder.dim), store=self._store_kind,
                                          precision=self.encoder.precision)
                self.config.save(self.path)
            if self.catalog is None:
                self.catalog = Catalog(self.path / CATALOG_FILE)
            writer_store = open_store(self.config.store, self.path / VECTORS_DIR, self.config.dim,
                                      params=self.config.extra.get("store_params"))
            try:
                reconciled = reconcile(self.catalog, writer_store)
                indexer = Indexer(
                    self.catalog,
                    writer_store,
                    lambda: self.encoder,
                    batch_size=batch_size,
                    workers=workers,
                    max_megapixels=max_megapixels,
                    progress=progress,
                )
                sync = indexer.sync(paths, include=include, exclude=exclude, hidden=hidden)
                self._remember_roots(paths)
                self.catalog.set_meta(
                    "last_skipped", json.dumps([{"path": s.path, "reason": s.reason} for s in sync.skipped])
                )
                embed = (self._embed_on_ray(writer_store, ray, ray_actors, batch_size, max_megapixels, progress)
                         if ray else indexer.embed_pending())
                self.catalog.set_meta("last_indexed_at", str(time.time()))
            finally:
                writer_store.close()
        return IndexReport(sync, embed, reconciled)

    def _embed_on_ray(
        self,
        store: VectorStore,
        address: str,
        actors: int,
        batch_size: int,
        max_megapixels: float | None,
        progress: ProgressFn | None,
    ) -> EmbedReport:
        try:
            from pixquery.scale.ray_index import embed_pending_with_ray
        except ImportError as exc:  # pragma: no cover - depends on the installed extras
            raise PixqueryError("--ray needs Ray: pip install 'pixquery[scale]'") from exc
        assert self.catalog is not None and self.config is not None
        if self.config.precision != "fp32":
            # Ray actors load the model by name at full precision; mixing precisions in one index would skew scores.
            raise PixqueryError(f"this index embeds images at {self.config.precision} precision; --ray embeds at "
                                "fp32 only: index it without --ray, or start a new index for Ray")
        return embed_pending_with_ray(
            self.catalog, store, self.model, address=None if address == "local" else address, actors=actors,
            batch_size=batch_size, progress=progress, max_megapixels=max_megapixels,
        )

    def _remember_roots(self, paths: Sequence[str | Path]) -> None:
        """Record the folders this index covers, so a re-index (e.g. from the web page) knows what to scan."""
        assert self.catalog is not None
        roots = set(self.roots())
        roots.update(os.path.abspath(os.path.expanduser(p)) for p in paths)
        self.catalog.set_meta("roots", json.dumps(sorted(roots)))

    def roots(self) -> list[str]:
        """The folders and files this index was built from."""
        if self.catalog is None:
            return []
        return json.loads(self.catalog.get_meta("roots") or "[]")

    # --- searching ----------------------------------------------------------------------------------------
    def context(self) -> SearchContext:
        self._require_index()
        assert self.catalog is not None
        return SearchContext(self.encoder, self.store, self.catalog)

    def search(
        self,
        text: str | None = None,
        images: Sequence[str | Path] | None = None,
        k: int = 20,
        spec: QuerySpec | None = None,
    ) -> list[Hit]:
        """Search by text, by example images, or both (their vectors are summed); or run a full `QuerySpec`."""
        if spec is None:
            spec = QuerySpec.simple(text, [str(p) for p in images or []], k=k)
        return execute(spec, self.context())

    def search_batch(self, texts: Sequence[str], k: int = 20) -> list[list[Hit]]:
        """Many text queries at once: one text-encoder batch and one matrix product."""
        if not texts or any(not t.strip() for t in texts):
            raise QueryError("search_batch needs non-empty texts")
        ctx = self.context()
        scores, ids = ctx.store.search(ctx.encoder.encode_texts(list(texts)), k)
        return [hits_from(s, i, ctx.catalog) for s, i in zip(scores, ids, strict=True)]

    # --- reporting ----------------------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        """Model, counts, skipped files with reasons, size on disk."""
        config = self._require_index()
        assert self.catalog is not None
        counts = self.catalog.counts()
        size = sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file())
        last = self.catalog.get_meta("last_indexed_at")
        return {
            "index": str(self.path),
            "model": config.model,
            "dim": config.dim,
            "store": config.store,
            "format_version": config.format_version,
            "files": sum(counts.values()),
            "indexed": counts["indexed"],
            "pending": counts["pending"],
            "errors": [{"path": r.path, "reason": r.error} for r in self.catalog.errors()],
            "skipped": json.loads(self.catalog.get_meta("last_skipped") or "[]"),
            "vectors": self.store.count(),
            "size_bytes": size,
            "last_indexed_at": float(last) if last else None,
            "roots": self.roots(),
            "store_info": _describe_store(self.store),
        }

    def vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """(catalog ids, vectors) of everything indexed, for organising tasks."""
        ids = self.store.ids()
        return ids, self.store.get(ids)

    # --- organising ---------------------------------------------------------------------------------------
    def classify(self, labels: Any, **options: Any) -> Any:
        """Zero-shot tags from your labels (prompt ensembles, AutoCLIP, "none of these"); see pixquery.tasks."""
        from pixquery.tasks.classify import tag_library

        return tag_library(self, labels, **options)

    def tag(self, **options: Any) -> Any:
        """Vocabulary-free tags (CaSED-style) from the shipped concept vocabulary or yours."""
        from pixquery.tasks.open_tags import tag_open

        return tag_open(self, **options)

    def cluster(self, **options: Any) -> dict[str, Any]:
        """Named clusters with representative images."""
        from pixquery.tasks.cluster import cluster_library

        return cluster_library(self, **options)

    def duplicates(self, **options: Any) -> list[Any]:
        """Exact, near-exact and semantic duplicate groups with a suggested keeper; never deletes."""
        from pixquery.tasks.dedup import find_duplicates

        return find_duplicates(self, **options)


def _describe_store(store: VectorStore) -> dict[str, Any]:
    from pixquery.store.rebuild import describe_store

    return describe_store(store)
