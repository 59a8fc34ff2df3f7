"""Embedding cache for evaluation: every image and every caption is embedded once per model and dataset.

Comparing composition methods, prompt templates or re-ranking options never needs new embeddings, so the
runner asks this cache for image and text vectors and only the first run of a (model, dataset) pair pays for
the model. Layout under ``$PIXQUERY_CACHE/eval/`` (or the platform's user cache directory)::

    <model spec>-<encoder fingerprint>/<data hash>/images-<role>-<list hash>.npy   one row per image path
                                                  /texts.npy + texts.json         one row per unique string
                                                  /about.json                     what the folder holds

The data hash covers the annotation files' bytes and, for every image, its path, size and modification time,
but not the image bytes: reading all of CIRCO's 120k-image gallery (about 20 GB) just to hash it would cost as
much as decoding it, while a replaced or re-encoded image changes its size or mtime, which is the rule make and
rsync rely on too. The encoder fingerprint (an embedding of a probe text) keeps a retrained model with the same
spec from reading stale vectors.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections import deque
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pixquery.eval.datasets.base import DatasetFormatError
from pixquery.fsutil import atomic_file
from pixquery.media.decode import ImageDecodeError, open_image
from pixquery.models.base import Encoder, l2_normalize
from pixquery.paths import cache_dir
from pixquery.progress import ProgressFn
from pixquery.query.textbank import encoder_identity

CACHE_VERSION = 1


def eval_cache_root() -> Path:
    """Where evaluation embeddings live: ``<pixquery cache>/eval``."""
    return cache_dir("eval")


def _safe(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)
    return cleaned[:60] or "model"


def data_fingerprint(annotation_files: Iterable[Path], image_paths: Iterable[Path], root: Path | None = None) -> str:
    """A sha256 over the annotation files' bytes and each image's (path, size, mtime); see the module docstring.

    Paths under `root` are hashed relative to it, so a dataset copied elsewhere with its timestamps kept
    (``cp -a``, ``rsync -a``) still finds its embeddings.
    """
    digest = hashlib.sha256(f"pixquery-eval-data-v{CACHE_VERSION}\n".encode())
    for path in sorted({Path(p) for p in annotation_files}):
        digest.update(f"annotation {_relative(path, root)}\n".encode())
        with path.open("rb") as handle:
            for block in iter(lambda h=handle: h.read(1 << 20), b""):
                digest.update(block)
    for path in image_paths:
        try:
            stat = Path(path).stat()
            digest.update(f"image {_relative(Path(path), root)} {stat.st_size} {stat.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"image {_relative(Path(path), root)} missing\n".encode())
    return digest.hexdigest()


def _relative(path: Path, root: Path | None) -> str:
    if root is not None:
        try:
            return path.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            pass
    return str(path)


def _list_hash(items: Iterable[Any]) -> str:
    return hashlib.sha1("\n".join(map(str, items)).encode()).hexdigest()[:12]


def _save_atomic(path: Path, data: np.ndarray | str) -> None:
    """Write an array (.npy) or a text atomically; a read-only or full cache only means embedding again next
    time, the evaluation itself goes on."""
    with contextlib.suppress(OSError), atomic_file(path, durable=False) as handle:
        if isinstance(data, np.ndarray):
            np.save(handle, data)
        else:
            handle.write(data.encode("utf-8"))


@dataclass
class CacheStats:
    """How many embeddings came from the cache and how many the model had to compute."""

    images_cached: int = 0
    images_embedded: int = 0
    texts_cached: int = 0
    texts_embedded: int = 0
    encoder_image_calls: int = 0
    encoder_text_calls: int = 0

    def to_dict(self) -> dict[str, int]:
        """Plain dict for results.json."""
        return asdict(self)


def embed_image_files(
    encoder: Encoder,
    paths: Sequence[Path],
    boxes: np.ndarray | None = None,
    batch_size: int = 64,
    workers: int = 4,
    progress: ProgressFn | None = None,
    stage: str = "Embedding images",
    fast_decode: bool = False,
) -> tuple[np.ndarray, int]:
    """Embed image files in batches, decoding (and preprocessing) ahead of the model in a thread pool.

    Args:
        boxes: optional (n, 4) ``[x1, y1, x2, y2]`` crops in original pixels (revisited Oxford/Paris queries).
        fast_decode: let JPEGs decode at a reduced DCT scale near the model's input size (as indexing does).
            Off by default: reference pipelines (CLIP_benchmark) resize the full-resolution image, and a
            reduced-scale decode (a 640x480 COCO image comes out at 320x240) changes the pixels the model sees.

    Returns:
        ``(vectors, model_calls)``: (n, dim) unit float32 rows in `paths` order and how many batches were run.
    Raises:
        DatasetFormatError naming the file when an image cannot be decoded: a benchmark with a missing
        image would give numbers nobody can compare.
    """
    size = encoder.decode_size

    def load(i: int) -> Any:
        try:
            # A crop box is in original pixels, so those images must not be decoded at a reduced JPEG scale.
            image = open_image(paths[i], target_size=size if fast_decode and boxes is None else None)
        except ImageDecodeError as exc:
            raise DatasetFormatError(paths[i], f"cannot read the image: {exc}") from exc
        if boxes is not None:
            x1, y1, x2, y2 = (float(v) for v in boxes[i])
            image = image.crop((round(x1), round(y1), round(x2), round(y2)))
        return encoder.preprocess(image)

    n = len(paths)
    out = np.zeros((n, encoder.dim), np.float32)
    calls = 0
    done = 0
    window = max(batch_size * 2, workers)  # decoded images waiting for the model: bounded memory
    order = iter(range(n))
    with ThreadPoolExecutor(max(1, workers)) as pool:
        queue: deque[Future] = deque()

        def refill() -> None:
            while len(queue) < window:
                i = next(order, None)
                if i is None:
                    return
                queue.append(pool.submit(load, i))

        refill()
        while queue:
            batch = [queue.popleft().result() for _ in range(min(batch_size, len(queue)))]
            refill()
            vectors = encoder.encode_preprocessed(np.stack(batch))
            out[done : done + len(batch)] = vectors
            calls += 1
            done += len(batch)
            if progress is not None:
                progress(stage, done, n)
    return l2_normalize(out), calls


class EmbeddingCache:
    """Image and text embeddings of one dataset by one model, from disk when present, else computed and saved.

    Args:
        encoder: the model.
        spec: the model spec the user typed (names the cache folder).
        data_hash: `data_fingerprint` of the dataset.
        root: cache root; `eval_cache_root()` by default.
        enabled: False keeps everything in memory (nothing read or written on disk).
        batch_size, workers: image batching and decoding threads.
        progress: ``progress(stage, done, total)`` callback for long embeddings.
        fast_decode: see `embed_image_files`; part of the cache key, since it changes the pixels.
        data_root: the dataset folder; image lists are keyed by paths relative to it, as the data hash is.
    """

    def __init__(
        self,
        encoder: Encoder,
        spec: str,
        data_hash: str,
        root: Path | None = None,
        enabled: bool = True,
        batch_size: int = 64,
        workers: int | None = None,
        progress: ProgressFn | None = None,
        fast_decode: bool = False,
        data_root: Path | None = None,
    ) -> None:
        self.encoder = encoder
        self.fast_decode = fast_decode
        self.data_root = data_root
        self.spec = spec
        self.data_hash = data_hash
        self.enabled = enabled
        self.batch_size = max(1, int(batch_size))
        self.workers = workers or max(2, min(8, os.cpu_count() or 2))
        self.progress = progress
        self.stats = CacheStats()
        self.model_key = f"{_safe(spec)}-{encoder_identity(encoder)}"
        self.directory = (root or eval_cache_root()) / self.model_key / data_hash[:24]
        self._images: dict[str, np.ndarray] = {}
        self._text_rows: dict[str, int] = {}
        # Rows [0, len(_text_rows)) of a buffer that doubles when full: composition methods add a few texts per
        # query, and re-allocating the whole array each time would cost quadratic time on 4k-query benchmarks.
        self._text_buffer = np.zeros((0, encoder.dim), np.float32)
        self._texts_dirty = False
        if enabled:
            self._load_texts()

    # --- images -----------------------------------------------------------------------------------------

    def images(self, role: str, paths: Sequence[Path], boxes: np.ndarray | None = None) -> np.ndarray:
        """Unit vectors of the images at `paths` (optionally cropped to `boxes`), one row per path.

        `role` ("gallery", "queries"...) names the file; the list of paths and boxes is hashed into the name
        too, so two lists never share a file.
        """
        paths = [Path(p) for p in paths]
        key_items: list[Any] = [_relative(p, self.data_root) for p in paths]
        key_items += [] if boxes is None else np.asarray(boxes).round(2).ravel().tolist()
        key_items.append(f"fast_decode={self.fast_decode}")
        name = f"images-{_safe(role)}-{_list_hash(key_items)}.npy"
        if name in self._images:
            self.stats.images_cached += len(paths)
            return self._images[name]
        path = self.directory / name
        vectors = self._read_npy(path, (len(paths), self.encoder.dim)) if self.enabled else None
        if vectors is not None:
            self.stats.images_cached += len(paths)
        else:
            vectors, calls = embed_image_files(
                self.encoder, paths, boxes, self.batch_size, self.workers, self.progress, f"Embedding {role}",
                self.fast_decode,
            )
            self.stats.images_embedded += len(paths)
            self.stats.encoder_image_calls += calls
            if self.enabled:
                self._write_about()
                _save_atomic(path, vectors)
        self._images[name] = vectors
        return vectors

    # --- texts ------------------------------------------------------------------------------------------

    def texts(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors of `texts` (one row each, repeats allowed); each unique string is embedded once ever."""
        texts = list(texts)
        missing = list(dict.fromkeys(t for t in texts if t not in self._text_rows))
        # Every requested text is counted once: embedded now (first occurrence) or served without the model.
        self.stats.texts_cached += len(texts) - len(missing)
        if missing:
            new = np.zeros((len(missing), self.encoder.dim), np.float32)
            for start in range(0, len(missing), self.batch_size):
                chunk = missing[start : start + self.batch_size]
                new[start : start + len(chunk)] = self.encoder.encode_texts(chunk)
                self.stats.encoder_text_calls += 1
                if self.progress is not None and len(missing) > self.batch_size:
                    self.progress("Embedding texts", start + len(chunk), len(missing))
            offset = len(self._text_rows)
            if offset + len(missing) > len(self._text_buffer):
                grown = np.zeros((max(2 * len(self._text_buffer), offset + len(missing), 256), self.encoder.dim),
                                 np.float32)
                grown[:offset] = self._text_buffer[:offset]
                self._text_buffer = grown
            self._text_buffer[offset : offset + len(missing)] = l2_normalize(new)
            self._text_rows.update({t: offset + i for i, t in enumerate(missing)})
            self.stats.texts_embedded += len(missing)
            self._texts_dirty = True
        if not texts:
            return np.zeros((0, self.encoder.dim), np.float32)
        return self._text_buffer[[self._text_rows[t] for t in texts]]

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        """`texts` under the signature composition methods call (`ComposeInput.encode_texts`)."""
        return self.texts(texts)

    def flush(self) -> None:
        """Save newly embedded texts (texts are saved once per run, not once per query)."""
        if not (self.enabled and self._texts_dirty):
            return
        self._write_about()
        strings = sorted(self._text_rows, key=self._text_rows.__getitem__)
        vectors = self._text_buffer[: len(strings)]
        # Vectors first: a reader that finds more strings than rows discards both, never mislabels rows.
        _save_atomic(self.directory / "texts.npy", vectors)
        _save_atomic(self.directory / "texts.json", json.dumps(strings))
        self._texts_dirty = False

    def _load_texts(self) -> None:
        names, arrays = self.directory / "texts.json", self.directory / "texts.npy"
        if not (names.is_file() and arrays.is_file()):
            return
        try:
            strings = json.loads(names.read_text("utf-8"))
        except (OSError, ValueError):
            return
        if not isinstance(strings, list):
            return
        vectors = self._read_npy(arrays, (len(strings), self.encoder.dim))
        if vectors is not None:
            self._text_rows = {str(s): i for i, s in enumerate(strings)}
            self._text_buffer = vectors

    # --- files ------------------------------------------------------------------------------------------

    @staticmethod
    def _read_npy(path: Path, shape: tuple[int, int]) -> np.ndarray | None:
        """The array at `path` if it has the expected shape and dtype; a truncated or foreign file is ignored."""
        if not path.is_file():
            return None
        try:
            array = np.load(path)
        except (OSError, ValueError):
            return None
        if array.shape != shape or array.dtype != np.float32:
            return None
        return array

    def _write_about(self) -> None:
        about = self.directory / "about.json"
        if about.is_file():
            return
        info = {"model": self.spec, "encoder": self.encoder.name, "dim": self.encoder.dim,
                "data_hash": self.data_hash, "cache_version": CACHE_VERSION}
        _save_atomic(about, json.dumps(info, indent=1))
