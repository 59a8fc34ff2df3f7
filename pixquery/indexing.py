"""Incremental, resumable indexing: sync the catalog with the disk, then embed what is pending.

Crash safety comes from the order of writes. For every batch the vectors are made durable in the store first,
and only then does the catalog commit mark the files `indexed`. Before a changed or deleted file's catalog row is
updated, its old vector is removed from the store. So at any kill point, a vector in the store always belongs to
its row's current content, and `reconcile` can repair the rest on the next open with nothing embedded twice.
"""

from __future__ import annotations

import os
import queue
import stat
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pixquery.fsutil import is_under
from pixquery.media.decode import ImageDecodeError, open_image_with_metadata
from pixquery.media.discover import Skipped, discover, extension
from pixquery.media.files import FileIdentity, UnreadableFile, hash_file, open_same
from pixquery.models.base import Encoder
from pixquery.progress import ProgressFn, no_progress
from pixquery.store.base import VectorStore
from pixquery.store.catalog import Catalog


@dataclass
class SyncReport:
    """What changed on disk since the last run."""

    new: int = 0
    changed: int = 0
    moved: int = 0
    deleted: int = 0
    unchanged: int = 0
    """Files already indexed and not changed since."""
    resumed: int = 0
    """Files found by an earlier, interrupted run, not changed since, still waiting to be embedded."""
    skipped: list[Skipped] = field(default_factory=list)


@dataclass
class EmbedReport:
    """What the embedding pass did."""

    embedded: int = 0
    failed: int = 0
    seconds: float = 0.0

    @property
    def images_per_s(self) -> float:
        return self.embedded / self.seconds if self.seconds > 0 else 0.0


def reconcile(catalog: Catalog, store: VectorStore) -> dict[str, int]:
    """Repair any difference between the catalog and the store left by a crash (see the module docstring)."""
    stored = set(store.ids().tolist())
    rows = {r.id: r for r in catalog.all_files()}
    orphans = [i for i in stored if i not in rows]
    missing = [i for i, r in rows.items() if r.status == "indexed" and i not in stored]
    adoptable = [i for i, r in rows.items() if r.status == "pending" and i in stored]
    unwanted = [i for i, r in rows.items() if r.status == "error" and i in stored]
    drop = orphans + unwanted
    adopted = 0
    for file_id in adoptable:
        # The vector was stored for this row's current content (old vectors are removed before a row changes),
        # so only the catalog commit was lost: record the metadata instead of embedding again.
        # The file must still be the one whose vector was stored; anything else is embedded again.
        row = rows[file_id]
        try:
            recorded = FileIdentity(row.size, row.mtime_ns, row.device, row.inode, row.ctime_ns)
            with open_same(row.path, recorded, row.content_hash) as handle:
                _, meta = open_image_with_metadata(handle, max_megapixels=None, target_size=64)
            catalog.mark_indexed(file_id, meta)
            adopted += 1
        except (UnreadableFile, OSError):  # changed, gone, not readable, not an image (ImageDecodeError)
            drop.append(file_id)
            catalog.mark_pending([file_id])
    if drop:
        store.remove(np.array(drop, np.int64))
        store.flush()
    catalog.mark_pending(missing)
    catalog.commit()
    return {"removed": len(drop), "requeued": len(missing), "adopted": adopted}


def default_decode_workers() -> int:
    """Decoding threads when none are asked for: the cores less one, between 1 and 8."""
    return max(1, min(8, (os.cpu_count() or 2) - 1))


class Indexer:
    """Keeps one index in step with folders on disk."""

    def __init__(
        self,
        catalog: Catalog,
        store: VectorStore,
        encoder_factory: Callable[[], Encoder],
        batch_size: int = 32,
        workers: int | None = None,
        max_megapixels: float | None = 100.0,
        progress: ProgressFn | None = None,
    ) -> None:
        self.catalog = catalog
        self.store = store
        self._encoder_factory = encoder_factory
        self.batch_size = max(1, int(batch_size))
        # Decoding threads: one core is left to the model. Measured on 2 cores with ViT-B-32 (benchmarks/
        # index_throughput.py): 1 thread keeps the pipeline at 0.97 of the pure forward, 2 threads compete with the
        # model's own threads and drop it to 0.85.
        self.workers = workers or default_decode_workers()
        self.max_megapixels = max_megapixels
        self.progress = progress or no_progress

    # --- sync ---------------------------------------------------------------------------------------------
    def sync(
        self,
        roots: Iterable[str | Path],
        include: Iterable[str] = (),
        exclude: Iterable[str] = (),
        hidden: bool = False,
    ) -> SyncReport:
        """Bring the catalog in line with the files under `roots`: add new, requeue changed, follow moves,
        forget deleted. Unchanged files are not read at all (size and mtime match)."""
        found = discover(roots, include=include, exclude=exclude, hidden=hidden)
        report = SyncReport(skipped=found.skipped)
        known = {r.path: r for r in self.catalog.all_files()}
        # Discovery stat-ed each file (regular files only); hashing re-checks on the opened descriptor, so a file
        # swapped for a FIFO or removed since is a skipped entry there, never a hang or an abort.
        on_disk: dict[str, os.stat_result] = {str(path): found.stats[str(path)] for path in found.files}

        candidates = []  # paths whose content must be hashed: new, or size/mtime changed
        for path, st in on_disk.items():
            row = known.get(path)
            # The same inode, size and times: not read again. Any difference (even a chmod, which moves only the
            # ctime) is hashed, so the row always describes the file as it is now (what serving checks against).
            same_file = row is not None and row.inode in (None, st.st_ino) and row.ctime_ns in (None, st.st_ctime_ns)
            if same_file and row.size == st.st_size and row.mtime_ns == st.st_mtime_ns:
                if row.status == "pending":
                    report.resumed += 1
                else:
                    report.unchanged += 1
            else:
                candidates.append(path)
        hashes = self._hash_all(candidates, report)

        # Rows whose file is gone: deleted, or moved if a new path has the same content.
        # A path now listed under another path of the same file (a link) is gone too: its row moves there.
        gone = {p: r for p, r in known.items()
                if p not in on_disk and (p in found.duplicates or not _still_there(p))}
        gone_by_hash: dict[str, list[Any]] = {}
        for row in gone.values():
            gone_by_hash.setdefault(row.content_hash, []).append(row)

        to_unstore: list[int] = []
        inserts, changes, moves = [], [], []
        for path in candidates:
            if path not in hashes:
                continue
            digest, ident = hashes[path]
            row = known.get(path)
            if row is not None:
                if row.content_hash == digest and row.status != "error":
                    self.catalog.touch(row.id, ident.size, ident.mtime_ns, ident.device, ident.inode, ident.ctime_ns)
                    report.unchanged += 1
                else:
                    changes.append((row.id, ident, digest))
                    to_unstore.append(row.id)
            elif gone_by_hash.get(digest):
                old = gone_by_hash[digest].pop()
                moves.append((old.id, path, ident))
                del gone[old.path]
            else:
                inserts.append((path, ident, digest))
        deleted_ids = [r.id for p, r in gone.items() if is_under(p, found.roots)]
        to_unstore += deleted_ids

        # Old vectors leave the store (durably) before the catalog says the rows changed or went away.
        if to_unstore:
            self.store.remove(np.array(to_unstore, np.int64))
            self.store.flush()
        for file_id, ident, digest in changes:
            self.catalog.mark_changed(file_id, ident.size, ident.mtime_ns, digest, ident.device, ident.inode,
                                      ident.ctime_ns)
        for file_id, path, ident in moves:
            self.catalog.move(file_id, path, os.path.dirname(path), extension(path), ident.mtime_ns, ident.device,
                              ident.inode, ident.ctime_ns)
        for path, ident, digest in inserts:
            self.catalog.insert(path, os.path.dirname(path), extension(path), ident.size, ident.mtime_ns, digest,
                                ident.device, ident.inode, ident.ctime_ns)
        self.catalog.delete(deleted_ids)
        self.catalog.commit()
        report.new, report.changed, report.moved, report.deleted = (
            len(inserts), len(changes), len(moves), len(deleted_ids)
        )
        return report

    def _hash_all(self, paths: list[str], report: SyncReport) -> dict[str, tuple[str, FileIdentity]]:
        """(content hash, identity) of each file, in a thread pool (hashlib releases the GIL); unreadable files
        (gone, not regular, permission denied, an I/O error) are reported and left out."""
        out: dict[str, tuple[str, FileIdentity]] = {}
        if not paths:
            return out
        with ThreadPoolExecutor(self.workers) as pool:
            futures = {pool.submit(hash_file, p): p for p in paths}
            for done, (future, path) in enumerate(futures.items(), 1):
                try:
                    out[path] = future.result()
                except UnreadableFile as exc:
                    report.skipped.append(Skipped(path, str(exc)))
                except OSError as exc:  # an I/O error while reading
                    report.skipped.append(Skipped(path, f"cannot read it ({exc.strerror or exc})"))
                self.progress("hash", done, len(paths))
        return out

    # --- embed --------------------------------------------------------------------------------------------
    def embed_pending(self) -> EmbedReport:
        """Embed every pending file, batch by batch; each batch is committed durably before the next."""
        pending = self.catalog.ids_with_status("pending")
        report = EmbedReport()
        if not pending:
            return report
        rows = self.catalog.get_many(pending)
        encoder = self._encoder_factory()
        # Reduced-scale JPEG decoding needs the short side the model's preprocessing reads before cropping.
        target = encoder.decode_size

        def load(file_id: int) -> tuple[int, Any, dict[str, Any] | None, str | None]:
            try:
                image, meta = open_image_with_metadata(rows[file_id].path, self.max_megapixels, target)
                return file_id, encoder.preprocess(image), meta, None
            except ImageDecodeError as exc:
                return file_id, None, None, str(exc)
            except Exception as exc:  # a decoder bug on one odd file must not stop a 100k-photo run
                return file_id, None, None, f"unexpected error while reading: {type(exc).__name__}: {exc}"

        start = time.perf_counter()
        total = len(pending)
        lane_functions = encoder.image_lanes()
        lanes = len(lane_functions)
        # Three stages overlap: decoding threads run ahead of the model (a bounded window keeps memory flat),
        # `lanes` batches are in the model at once (each lane a session of its own), and this thread assembles the
        # next batch, then commits finished batches in order (store flush, then catalog commit: crash-safe).
        window = self.batch_size * (lanes + 2)
        decode_pool = ThreadPoolExecutor(self.workers, thread_name_prefix="pixquery-decode")
        model_pool = ThreadPoolExecutor(lanes, thread_name_prefix="pixquery-model")
        idle_lanes: queue.SimpleQueue[Callable[[np.ndarray], np.ndarray]] = queue.SimpleQueue()
        for lane in lane_functions:
            idle_lanes.put(lane)

        def embed(batch: np.ndarray) -> np.ndarray:
            lane = idle_lanes.get()  # free: at most `lanes` batches are submitted at once
            try:
                return lane(batch)
            finally:
                idle_lanes.put(lane)

        decoding: deque[Future] = deque()
        in_model: deque[tuple[list[tuple], Future | None]] = deque()
        ids_iter = iter(pending)
        done = 0

        def decode_ahead() -> None:
            while len(decoding) < window and (next_id := next(ids_iter, None)) is not None:
                decoding.append(decode_pool.submit(load, next_id))

        def commit_oldest() -> None:
            nonlocal done
            batch, vectors = in_model.popleft()
            self._commit(batch, vectors.result() if vectors is not None else None, report)
            done += len(batch)
            self.progress("embed", done, total)

        try:
            decode_ahead()
            while decoding:
                batch = []
                while decoding and len(batch) < self.batch_size:
                    batch.append(decoding.popleft().result())
                    decode_ahead()
                good = [data for _, data, _, err in batch if err is None]
                vectors = model_pool.submit(embed, np.stack(good)) if good else None
                in_model.append((batch, vectors))
                while len(in_model) > lanes or (in_model and in_model[0][1] is None):
                    commit_oldest()
            while in_model:
                commit_oldest()
        finally:
            # On an error or a stop (KeyboardInterrupt from progress), drop what is queued; what runs finishes.
            decode_pool.shutdown(wait=True, cancel_futures=True)
            model_pool.shutdown(wait=True, cancel_futures=True)
        report.seconds = time.perf_counter() - start
        return report

    def _commit(self, batch: list[tuple], vectors: np.ndarray | None, report: EmbedReport) -> None:
        """Record one embedded batch of (id, data, metadata, error) rows; `vectors` are those of the good rows."""
        good = [(fid, meta) for fid, _, meta, err in batch if err is None]
        failed = [(fid, err) for fid, _, _, err in batch if err is not None]
        commit_batch(self.catalog, self.store, good, vectors, failed, report)


def commit_batch(
    catalog: Catalog,
    store: VectorStore,
    stored: list[tuple[int, dict[str, Any]]],
    vectors: np.ndarray | None,
    failed: list[tuple[int, str]],
    report: EmbedReport,
) -> None:
    """Record one embedded batch in the crash-safe order: the vectors of `stored` (id, metadata) made durable in
    the store first, then one catalog commit marking them indexed and `failed` (id, reason) as errors."""
    if stored and vectors is not None:
        store.add(np.array([fid for fid, _ in stored], np.int64), vectors)
        store.flush()  # durable before the catalog says "indexed"
    for fid, meta in stored:
        catalog.mark_indexed(fid, meta)
    for fid, err in failed:
        catalog.mark_error(fid, err)
    catalog.commit()
    report.embedded += len(stored)
    report.failed += len(failed)


def _still_there(path: str) -> bool:
    """Whether a catalog path names a regular file still (a link loop, a FIFO or an unreadable entry does not)."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):  # ValueError: a path no system call accepts (an embedded NUL)
        return False
