"""The facade: `Library` is the one door to an index. The CLI, the HTTP API, the demo and users' programs call it and
nothing deeper; what they need, it offers (search, items, folders, files, organising, changing the store).

    from pixquery import Library
    with Library.open("~/.pixquery-index", model="conse") as lib:
        lib.index(["~/Pictures"])
        for hit in lib.search("a dog on a beach", k=5):
            print(hit.score, hit.path)
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from pixquery.errors import (
    IndexFormatError,
    ModelMismatchError,
    NotFoundError,
    PixqueryError,
    StaleFileError,
)
from pixquery.fsutil import is_under
from pixquery.layout import IndexLayout
from pixquery.media.files import is_not_an_image
from pixquery.models.base import PRECISIONS, Encoder
from pixquery.models.registry import DEFAULT_MODEL
from pixquery.paths import default_index_dir
from pixquery.progress import ProgressFn, no_progress
from pixquery.query.engine import Hit, QueryOutcome, SearchContext, run_queries, run_query
from pixquery.query.spec import QuerySpec
from pixquery.store.base import VectorStore
from pixquery.store.catalog import Catalog, FileRow
from pixquery.store.config import IndexConfig
from pixquery.store.lock import IndexLock
from pixquery.store.open import check_kind, discard_store, open_store

if TYPE_CHECKING:  # imported where used: a query never pays for indexing or organising
    from PIL import Image

    from pixquery.indexing import EmbedReport, SyncReport
    from pixquery.organize.view import IndexView

Item = FileRow
"""One indexed file as the catalog knows it (path, size, status, metadata); what `Library.item` returns."""

__all__ = ["DEFAULT_MODEL", "Hit", "IndexReport", "Item", "Library", "QueryOutcome", "QuerySpec",
           "composition_methods", "covering_roots", "export_model", "is_not_an_image"]


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
            "resumed": self.sync.resumed,
            "embedded": self.embed.embedded,
            "failed": self.embed.failed,
            "seconds": round(self.embed.seconds, 3),
            "images_per_s": round(self.embed.images_per_s, 2),
            "skipped": [{"path": s.path, "reason": s.reason} for s in self.sync.skipped],
            "reconciled": self.reconciled,
        }


class Library:
    """An index of images on disk. Open it, index folders into it, search it, organise it."""

    def __init__(
        self,
        path: Path,
        model: str | None = None,
        store_kind: str = "flat",
        encoder: Encoder | None = None,
        precision: str | None = None,
    ) -> None:
        """Prefer `Library.open`. `encoder` shares an already loaded model (the server's views of one index)."""
        self.path = Path(path)
        self.layout = IndexLayout(self.path)
        self._requested_model = model
        self._requested_precision = precision
        self._store_kind = store_kind
        self._encoder = encoder
        self._store: VectorStore | None = None
        self.config: IndexConfig | None = None
        if self.layout.config.exists():
            self.config = IndexConfig.load(self.path)
            if model is not None and encoder is None:
                _check_same_model(self.config.model, model, self.path)
            if precision not in (None, "auto", self.config.precision):
                raise ModelMismatchError(
                    f"the index at {self.path} holds vectors made at {self.config.precision}; it is searched at that "
                    f"precision. Leave --precision out, or build a new index with --index NEW_DIR."
                )
        self.catalog: Catalog | None = Catalog(self.layout.catalog) if self.layout.catalog.exists() else None

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
        """Open the index at `path` (default `$PIXQUERY_INDEX` or the user data dir); it is created on first `index()`.

        `model` is required to create an index (default: `$PIXQUERY_MODEL`); opening an existing index with another
        model raises `ModelMismatchError`. `precision` ("fp32", "int8" or "auto") applies to a new index (default
        `$PIXQUERY_PRECISION`, else "auto": int8 where this model's parity gate passes, else fp32); an existing index
        keeps the precision it was built at. `store` is the vector store of a new index (see `set_store`).
        """
        path = Path(path).expanduser() if path is not None else default_index_dir()
        if path.exists() and not path.is_dir():
            raise IndexFormatError(f"{path} is a file, not an index directory")
        if precision is not None and precision not in (*PRECISIONS, "auto"):
            raise PixqueryError(f"unknown precision {precision!r}: use fp32, int8 or auto")
        check_kind(store)
        model = model or (encoder.name if encoder is not None else None)
        return cls(path, model, store, encoder, precision)

    def view_for_thread(self) -> Library:
        """Another view of this index sharing the loaded model: its own catalog connection and store view, for a
        thread that searches in parallel with this one (the server keeps a few)."""
        return Library(self.path, None, self._store_kind, self.encoder)

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
            from pixquery.models.base import ModelError
            from pixquery.models.registry import did_you_mean, load_encoder

            if self.config is not None:
                precision = self.config.precision
            else:
                precision = self._requested_precision or os.environ.get("PIXQUERY_PRECISION") or "auto"
            try:
                self._encoder = load_encoder(self.model, precision=precision)
            except ModelError as exc:
                suggestion = did_you_mean(self.model)  # every face (CLI, server, programs) gets the hint
                if suggestion is None:
                    raise
                raise ModelError(f"{exc}. Did you mean {suggestion!r}?") from exc
        return self._encoder

    @property
    def meaningless(self) -> bool:
        """True when the loaded model has random weights (its results mean nothing); False before it is loaded."""
        return self._encoder is not None and self._encoder.meaningless

    def _require_index(self) -> tuple[IndexConfig, Catalog]:
        if self.config is None or self.catalog is None:
            raise IndexFormatError(
                f"no index at {self.path}: create one with `pixquery index FOLDER --index {self.path} --model MODEL`"
            )
        return self.config, self.catalog

    @property
    def store(self) -> VectorStore:
        """A read-only view of the vectors (it follows what an indexer commits)."""
        config, _ = self._require_index()
        if self._store is None:
            self._store = open_store(config.store, self.layout.vectors, config.dim, readonly=True,
                                     params=config.store_params)
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
        progress: ProgressFn = no_progress,
        ray: str | None = None,
        ray_actors: int = 2,
    ) -> IndexReport:
        """Index (or update) the images under `paths`: incremental, resumable, one writer at a time.

        Nothing is created on disk until the paths and the model are known to be usable. `ray` embeds the new files
        on Ray instead of in this process (needs the [scale] extra): "local" starts a Ray instance here, "auto" joins
        the cluster this machine belongs to, "ray://HEAD:10001" a remote one; `ray_actors` encoder actors run at once.
        Scanning, the catalog and the store stay in this process, so the result, and what a crash leaves behind,
        are those of local indexing.
        """
        from pixquery.indexing import Indexer, reconcile

        missing = [str(p) for p in paths if not os.path.lexists(os.path.expanduser(p))]
        if missing:
            raise NotFoundError(f"no such file or folder: {', '.join(missing)}")
        if self.config is None:
            encoder = self.encoder  # a bad model spec fails here, before an index folder exists
        self.path.mkdir(parents=True, exist_ok=True)
        with IndexLock(self.path):
            if self.config is None:
                self.config = IndexConfig(model=self.model, dim=int(encoder.dim), store=self._store_kind,
                                          precision=encoder.precision)
                self.config.save(self.path)
            if self.catalog is None:
                self.catalog = Catalog(self.layout.catalog)
            config, catalog = self.config, self.catalog
            writer = open_store(config.store, self.layout.vectors, config.dim, params=config.store_params)
            try:
                reconciled = reconcile(catalog, writer)
                indexer = Indexer(catalog, writer, lambda: self.encoder, batch_size=batch_size, workers=workers,
                                  max_megapixels=max_megapixels, progress=progress)
                sync = indexer.sync(paths, include=include, exclude=exclude, hidden=hidden)
                self._remember_roots(paths)
                catalog.set_meta("last_skipped", json.dumps([{"path": s.path, "reason": s.reason}
                                                              for s in sync.skipped]))
                if ray:
                    embed = self._embed_on_ray(writer, ray, ray_actors, batch_size, max_megapixels, progress)
                else:
                    embed = indexer.embed_pending()
                catalog.set_meta("last_indexed_at", str(time.time()))
            finally:
                writer.close()
        return IndexReport(sync, embed, reconciled)

    def _embed_on_ray(
        self, store: VectorStore, address: str, actors: int, batch_size: int, max_megapixels: float | None,
        progress: ProgressFn,
    ) -> EmbedReport:
        try:
            from pixquery.scale.ray_index import embed_pending_with_ray
        except ImportError as exc:  # pragma: no cover - depends on the installed extras
            raise PixqueryError("--ray needs Ray: pip install 'pixquery[scale]'") from exc
        config, catalog = self._require_index()
        return embed_pending_with_ray(
            catalog, store, self.model, precision=config.precision, address=None if address == "local" else address,
            actors=actors, batch_size=batch_size, progress=progress, max_megapixels=max_megapixels,
        )

    def _remember_roots(self, paths: Sequence[str | Path]) -> None:
        """Record the folders this index covers, so a re-index (e.g. from the web page) knows what to scan."""
        _, catalog = self._require_index()
        roots = set(self.roots())
        roots.update(os.path.abspath(os.path.expanduser(p)) for p in paths)
        catalog.set_meta("roots", json.dumps(sorted(roots)))

    def roots(self) -> list[str]:
        """The folders and files this index was built from (absolute paths, as given); for an index that did not
        record them, the fewest folders holding all its images."""
        if self.catalog is None:
            return []
        try:
            roots = json.loads(self.catalog.get_meta("roots") or "null")
        except json.JSONDecodeError:
            roots = None
        if isinstance(roots, list) and all(isinstance(r, str) for r in roots):
            return roots
        return covering_roots(folder for folder, _ in self.catalog.folders())

    def set_store(self, kind: str, **params: Any) -> dict[str, Any]:
        """Switch the index to another vector store in place, from its raw vectors: nothing is embedded again.

        Kinds: flat (exact), faiss-hnsw, faiss-ivfpq, auto (by size and memory), milvus:PATH or milvus:http://HOST:PORT.
        Under the index lock the new structure is built beside the old one, then `config.json` is switched
        atomically, then what only the old kind used is deleted: a kill at any moment leaves the old or the new store
        usable. `params` (e.g. M=16, efSearch=128, memory_budget=...) are kept in the config. Returns the new
        store's description.
        """
        check_kind(kind)
        if self.config is None:
            raise IndexFormatError(f"no index at {self.path}: create one with `pixquery index FOLDER`")
        params = {key: value for key, value in params.items() if value is not None}
        with IndexLock(self.path):
            config = IndexConfig.load(self.path)
            store = open_store(kind, self.layout.vectors, config.dim, params=params)
            try:
                store.rebuild()
                description = store.describe()
            finally:
                store.close()
            old_kind = config.store
            config.store, config.store_params = kind, params
            config.save(self.path)
            if old_kind != kind:
                # Clean-up only: an unreachable old Milvus server must not fail a switch that already happened.
                with contextlib.suppress(Exception):
                    discard_store(old_kind, self.layout.vectors)
        self.config = config
        if self._store is not None:
            self._store.close()
            self._store = None
        return description

    # --- searching ----------------------------------------------------------------------------------------
    def context(self) -> SearchContext:
        """What the query engine runs against (for programs that pass their own captioner, rewriter, ...)."""
        _, catalog = self._require_index()
        return SearchContext(self.encoder, self.store, catalog, read_indexed=self.read_image)

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
        return self.query(spec).hits

    def query(self, spec: QuerySpec) -> QueryOutcome:
        """Run a `QuerySpec`: the hits and what the engine decided on the way (method, words found, cut-off)."""
        return run_query(spec, self.context())

    def query_many(self, specs: Sequence[QuerySpec]) -> list[QueryOutcome | Exception]:
        """Run several specs as one batch (a server's concurrent searches): one text-encoder call for all their
        texts, one vector search per filter for all their vectors, then each spec's own steps. Each entry is that
        spec's outcome (what `query` gives it, up to float rounding) or the error it alone raised."""
        return run_queries(specs, self.context())

    # --- items and files ----------------------------------------------------------------------------------
    def item(self, file_id: int) -> Item:
        """The catalog row of an indexed image; `NotFoundError` when no indexed image has that id."""
        _, catalog = self._require_index()
        row = catalog.get(int(file_id)) if 0 < int(file_id) < 2**63 else None
        if row is None or row.status != "indexed":
            raise NotFoundError(f"no indexed image has id {file_id}")
        return row

    def items(self, ids: Iterable[int]) -> dict[int, Item]:
        """Catalog rows by id (ids without a row are left out)."""
        _, catalog = self._require_index()
        return catalog.get_many(ids)

    def browse(
        self, filters: dict[str, Any] | None = None, sort: str = "added", offset: int = 0, limit: int = 100
    ) -> list[Item]:
        """Indexed images without a query, newest first: `sort` "taken" (by date taken) or "added"; `filters` as a
        query spec's (folder, dates, ...)."""
        from pixquery.query.filters import compile_filters

        _, catalog = self._require_index()
        return catalog.browse(compile_filters(filters), sort, offset, limit)

    def folders(self, limit: int | None = None) -> list[tuple[str, int]]:
        """(folder, number of indexed images) for every folder holding some, most populated first."""
        _, catalog = self._require_index()
        return catalog.folders(limit)

    def counts(self) -> dict[str, int]:
        """Files by status: pending, indexed, error."""
        _, catalog = self._require_index()
        return catalog.counts()

    def meta(self, key: str) -> str | None:
        """A value the index keeps about itself (e.g. "last_indexed_at")."""
        _, catalog = self._require_index()
        return catalog.get_meta(key)

    @contextlib.contextmanager
    def open_file(self, file_id: int) -> Iterator[tuple[BinaryIO, Item]]:
        """The indexed file `file_id`, opened for reading, with its row; only when it is still the file indexed.

        Checked on the opened descriptor, so nothing swapped in at the path can slip through: it must be a regular
        file, under the folders this index covers, and the very file the catalog holds (same device and inode, size
        and modification time; where only those two differ, the same content hash). Otherwise `NotFoundError` (gone,
        outside the roots) or `StaleFileError` (changed or swapped since it was indexed: re-index).
        """
        from pixquery.media.files import FileChanged, FileIdentity, UnreadableFile, open_same

        row = self.item(file_id)
        if not is_under(row.path, self.roots()):
            raise NotFoundError(f"image {file_id} is not inside the folders this index covers")
        try:
            recorded = FileIdentity(row.size, row.mtime_ns, row.device, row.inode, row.ctime_ns)
            handle = open_same(row.path, recorded, row.content_hash)
        except FileChanged as exc:
            raise StaleFileError(f"image {file_id} {exc} since it was indexed; re-index to see it") from None
        except UnreadableFile as exc:
            raise NotFoundError(f"image {file_id} cannot be opened: {exc}") from None
        with handle:
            yield handle, row

    def read_image(self, file_id: int, target_size: int | None = None,
                   max_megapixels: float | None = 100.0) -> Image.Image:
        """An indexed image decoded (upright RGB; JPEG at a reduced scale near `target_size`), after `open_file`'s
        checks. Raises `NotFoundError`, `StaleFileError` or an `ImageDecodeError` saying why it cannot be read."""
        from pixquery.media.decode import open_image

        with self.open_file(file_id) as (handle, _):
            return open_image(handle, max_megapixels, target_size)

    @staticmethod
    def decode_image(data: bytes, max_megapixels: float | None = 50.0, target_size: int | None = None) -> Image.Image:
        """Decode image bytes (an upload) under a pixel limit; `ImageDecodeError` says why it cannot be read.
        `target_size`: the model's decode size (`encoder.decode_size`), so a JPEG decodes at a reduced scale as
        indexing decodes it (a 49-MP upload then costs what a small photo does)."""
        import io

        from pixquery.media.decode import open_image

        return open_image(io.BytesIO(data), max_megapixels, target_size)

    @staticmethod
    def release_memory() -> bool:
        """Return memory freed by large decodes to the system (glibc `malloc_trim`; False where unavailable)."""
        from pixquery.media.decode import release_memory

        return release_memory()

    # --- reporting ----------------------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        """Model, counts, skipped files with reasons, size on disk."""
        config, catalog = self._require_index()
        counts = catalog.counts()
        size = sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file())
        last = catalog.get_meta("last_indexed_at")
        return {
            "index": str(self.path),
            "model": config.model,
            "precision": config.precision,
            "dim": config.dim,
            "store": config.store,
            "format_version": config.format_version,
            "files": sum(counts.values()),
            "indexed": counts["indexed"],
            "pending": counts["pending"],
            "errors": [{"path": r.path, "reason": r.error} for r in catalog.errors()],
            "skipped": json.loads(catalog.get_meta("last_skipped") or "[]"),
            "vectors": self.store.count(),
            "size_bytes": size,
            "last_indexed_at": float(last) if last else None,
            "roots": self.roots(),
            "store_info": self.store.describe(),
        }

    # --- organising ---------------------------------------------------------------------------------------
    def view(self) -> IndexView:
        """The index as organising sees it: encoder, every indexed id and vector, catalog, store, file reader."""
        from pixquery.organize.view import IndexView

        config, catalog = self._require_index()
        ids, vectors = self.store.all_vectors()
        order = np.argsort(ids, kind="stable")
        return IndexView(
            encoder=self.encoder, ids=np.asarray(ids, np.int64)[order], vectors=np.asarray(vectors)[order],
            catalog=catalog, store=self.store, model=config.model,
            read_image=lambda row, size: self.read_image(row.id, size), layout=self.layout,
        )

    def tag(
        self,
        labels: str | Path | Sequence[str] | dict[str, list[str]],
        method: str = "auto",
        templates: str | Path | Sequence[str] | None = None,
        top: int | None = None,
        store: bool = True,
        threshold: float | str | None = "auto",
        progress: ProgressFn = no_progress,
    ) -> Any:
        """Zero-shot tags from your labels for every image: up to `top` labels each (default 3) with a calibrated
        score, or "none of these". `labels`: "cat,dog", a list, a text file, or a CuPL JSON file of descriptions;
        `method`: single, ensemble, autoclip or auto; `threshold`: "auto" (calibrated on the collection), a
        confidence, or None/0 to always tag. Only the labels are embedded. With `store`, the tags are kept in the
        index, where the `tags` search filter finds them."""
        from pixquery.organize.classify import tag_labels

        options = {"top": top} if top is not None else {}
        return tag_labels(self.view(), labels, method=method, templates=templates, store=store, threshold=threshold,
                          progress=progress, **options)

    def tag_open(
        self,
        vocabulary: str | Path | Sequence[str] | None = None,
        top: int | None = None,
        store: bool = True,
        progress: ProgressFn = no_progress,
    ) -> Any:
        """Vocabulary-free tags (CaSED-style): each image's `top` concepts (default 5) from the shipped word list or
        `vocabulary`, stored in the index with `store`."""
        from pixquery.organize.open_tags import tag_open

        options = {"top": top} if top is not None else {}
        return tag_open(self.view(), vocabulary=vocabulary, store=store, progress=progress, **options)

    def tag_counts(self, source: str | None = None) -> list[tuple[str, int]]:
        """(tag, number of images) of every stored tag, most frequent first."""
        _, catalog = self._require_index()
        return catalog.tag_counts(source)

    def cluster(
        self,
        k: int | str = "auto",
        method: str = "kmeans",
        vocabulary: str | Path | Sequence[str] | None = None,
        seed: int = 0,
        progress: ProgressFn = no_progress,
    ) -> dict[str, Any]:
        """Named clusters with representative images, JSON-ready. `k`: a number or "auto" (silhouette, or at least
        ~sqrt(n/2)/2 groups where it finds no clear structure); `method`: kmeans or hdbscan (which leaves outliers
        unclustered); `vocabulary`: words to name clusters with."""
        from pixquery.organize.cluster import cluster_images

        return cluster_images(self.view(), k=k, method=method, vocabulary=vocabulary, seed=seed, progress=progress)

    def contact_sheet(self, clusters: dict[str, Any], out_png: str | Path) -> Path:
        """Draw a clustering (from `cluster`) as a PNG contact sheet; returns its path."""
        from pixquery.organize.contact_sheet import contact_sheet

        return contact_sheet(clusters, lambda file_id, size: self.read_image(file_id, size), out_png)

    def duplicates(
        self,
        kinds: Sequence[str] | None = None,
        thresholds: dict[str, float] | None = None,
        progress: ProgressFn = no_progress,
    ) -> dict[str, Any]:
        """Duplicate groups with a suggested keeper and the evidence, JSON-ready; never deletes anything.
        `kinds`: some of exact, near, semantic (default all); `thresholds` override the calibrated limits."""
        from pixquery.organize.dedup import KINDS, find_duplicates

        return find_duplicates(self.view(), kinds=tuple(kinds) if kinds else KINDS, thresholds=thresholds,
                               progress=progress)


def composition_methods() -> list[str]:
    """Names of the methods that compose an image and a text (`QuerySpec.method`, besides "auto")."""
    from pixquery.query.compose import METHODS

    return list(METHODS)


def export_model(spec: str, out_dir: str | Path) -> Path:
    """Export a torch-backed model's towers to ONNX in the immich layout (needs pixquery[torch]); returns the
    directory, loadable as `onnx:DIR`."""
    from pixquery.models.export import export_onnx

    return Path(export_onnx(spec, Path(out_dir)))


def covering_roots(folders: Iterable[str]) -> list[str]:
    """The fewest folders that hold all of `folders`: those no other listed folder contains."""
    roots: list[str] = []
    for folder in sorted(set(folders)):  # sorted, so a parent always comes before its children
        if not is_under(folder, roots):
            roots.append(folder)
    return roots


def _check_same_model(built: str, asked: str, directory: Path) -> None:
    """Refuse to open an index with another model than the one that built it."""
    from pixquery.models.registry import canonical_spec

    if canonical_spec(asked) != canonical_spec(built):
        raise ModelMismatchError(
            f"the index at {directory} was built with model {built!r}, not {asked!r}: vectors of different models "
            f"are not comparable. Use --model {built} (or leave --model out), or build a new index with "
            "--index NEW_DIR."
        )

