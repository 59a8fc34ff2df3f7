"""Find duplicate photos a user can act on, and photos that are merely similar. Nothing is ever deleted, moved or
changed.

Two tiers of duplicates, each decided by evidence that survives the edits people make and refuses different photos:

* ``exact``: the same bytes (the catalog's content hash: a photo copied into two folders) or the same pixels (a
  lossless conversion, e.g. a JPEG saved again as PNG: same size, same perceptual hash, and the decoded pixels
  compared one by one);
* ``near``: the same photo edited (resized, re-encoded, cropped a little, re-toned, converted). *All* of: the
  perceptual hash (DCT pHash, imagehash) of the grey image within `near` bits of 64; the pHashes of the two
  colour-opponent channels within `chroma` bits each (grey pHash alone cannot see a recoloured object); the aspect
  ratios within `aspect` of each other (a small crop moves it by a few percent, a different photo usually by more);
  and the image embeddings (the index's own vectors) at least `near_cosine` similar, a threshold calibrated per
  model on edited copies of the collection's own photos (`calibrate_near_cosine`), so two different photos whose
  coarse brightness layout happens to agree are refused.

Duplicate groups are the connected components of these links, split again where a component is really a chain of
groups (`split_chains`). Each suggests a keeper with the reason that decided, in words, and counts its other
members as *removable* (for the user to review).

A third tier, ``similar``, is reported apart and is never removable: photos whose embeddings are very close (bursts,
the same scene framed again, another shot of the same subject). Its threshold is calibrated on the collection: the
similarity that harder edits (crops up to 15 %, small rotations, strong re-compression) keep with their originals,
raised to the similarity most photos have with their 20th nearest neighbour (almost always another picture), and
remembered in the catalog's meta table per model. Similar groups are formed between the duplicate groups' keepers
and the photos in no duplicate group, so they list different photos.

The keeper: the largest image (pixels, within 1 %), then the sharpest (variance of the Laplacian of a window of
native grey pixels, relative to its own contrast), then the oldest (EXIF date taken, else the file's modification
time; dates within `SAME_TIME_S` are the same date), then the shortest path; the reason names the rule that decided
and never claims a difference that is not there. Default thresholds come from measurement
(benchmarks/duplicates_real.py, benchmarks/organize.py, docs/organize.md). Fingerprints are cached in the index
(`fingerprints.json`, keyed by content hash).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import imagehash
import numpy as np
from PIL import Image, ImageEnhance, ImageFilter
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial.distance import squareform

from pixquery.errors import PixqueryError
from pixquery.fsutil import atomic_write_text
from pixquery.organize.view import IndexView
from pixquery.progress import ProgressFn, no_progress
from pixquery.store.catalog import FileRow

KINDS: tuple[str, ...] = ("exact", "near", "similar")
ALIASES: dict[str, str] = {"semantic": "similar"}
"""Older names of a kind, still accepted (`--kinds exact,near,semantic`, `thresholds={"semantic": ...}`)."""
DUPLICATE_KINDS: tuple[str, ...] = ("exact", "near")
"""The tiers whose groups have removable files."""
DEFAULT_THRESHOLDS: dict[str, float] = {"near": 10, "chroma": 20, "aspect": 0.08}
"""`near`: most grey-pHash bits (of 64) that may differ; `chroma`: most bits of each colour pHash; `aspect`: most
relative difference of the aspect ratios. `near_cosine` (least embedding cosine of a near duplicate) and `similar`
(least cosine of similar photos) are calibrated per model unless given. All measured: docs/organize.md."""
CALIBRATION_SAMPLE = 16
CALIBRATION_QUANTILE = 0.1
NEAR_COSINE_QUANTILE = 0.02
NEAR_COSINE_MARGIN = 3.0
"""The near tier's embedding check is a veto against different photos, not the evidence that finds copies (the
perceptual hashes are): its threshold is three times further from 1 than the 2nd percentile of the calibration's
edited copies (ConSE: copies at 0.986 give 0.958; measured half-size copies fell to 0.974, and 99.9 % of pairs of
different photos are below 0.954)."""
_META_KEY = "dedup.semantic_threshold"
_NEAR_META_KEY = "dedup.near_cosine.v2"
SEMANTIC_NEIGHBOURS = 10
"""Similar candidates per image: a larger group is found through chains of neighbours."""
SHARPNESS_TIE = 0.75
SAME_TIME_S = 2.0
"""Dates closer than this are one date (FAT file systems keep modification times to 2 s)."""
MAX_SPLIT = 3000
"""Larger linked components are reported as they are (splitting costs the square of their size)."""
FLOOR_RANK = 20
FLOOR_QUANTILE = 0.9
"""The similar threshold is never below the 90th percentile of the images' similarity to their 20th neighbour."""
_SHARPNESS_CROP = 512  # sharpness looks at native pixels (a downscale would hide compression and blur) in this window
_DECODE_SIDE = 256  # pHash looks at 32x32 pixels; decoding JPEGs at reduced scale is several times faster
_CHROMA_SIDE = 64
_MIN_CHROMA_STD = 2.0  # opponent-channel spread (0-255 scale) below which an image counts as grey
CHROMA_DISTANCE = DEFAULT_THRESHOLDS["chroma"]


# --- perceptual hashes --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Fingerprint:
    """What one decode tells dedup: the pHashes of an image's brightness and of its colour."""

    phash: int
    chroma: tuple[int, int] | None = None
    """pHashes of the red-green and blue-yellow opponent channels; None for a (nearly) grey image."""


def _bits(image: Image.Image) -> int:
    return int("".join("1" if b else "0" for b in imagehash.phash(image).hash.flatten()), 2)


def _chroma_hashes(img: Image.Image) -> tuple[int, int] | None:
    """pHashes of the colour-opponent channels, where a recoloured object shows (the grey pHash cannot see it).

    pHash compares DCT coefficients with their median, so a global change of saturation, which scales these
    channels, leaves them alone. A grey image has no colour signal to hash, only noise: None.
    """
    rgb = np.asarray(img.resize((_CHROMA_SIDE, _CHROMA_SIDE), Image.Resampling.BILINEAR), dtype=np.float32)
    red_green = rgb[..., 0] - rgb[..., 1]
    blue_yellow = rgb[..., 2] - (rgb[..., 0] + rgb[..., 1]) / 2
    if max(float(red_green.std()), float(blue_yellow.std())) < _MIN_CHROMA_STD:
        return None
    hashes = [_bits(Image.fromarray(np.clip(c / 2 + 128, 0, 255).astype(np.uint8))) for c in (red_green, blue_yellow)]
    return hashes[0], hashes[1]


def fingerprint(img: Image.Image) -> Fingerprint:
    """pHashes of a decoded image."""
    return Fingerprint(_bits(img.convert("L")), _chroma_hashes(img))


def sharpness(image: Image.Image) -> float:
    """Fine detail of an image: variance of the Laplacian over the variance of the pixels, on a centre window of
    native pixels.

    Dividing by the image's own contrast keeps a brightened or contrast-boosted copy from looking sharper; a light
    blur first keeps JPEG block edges from passing for detail (so JPEG re-saves of one size tie, and age decides);
    native pixels let resampling blur show, which a thumbnail would hide.
    """
    grey = image.convert("L")
    left, top = max(0, (grey.width - _SHARPNESS_CROP) // 2), max(0, (grey.height - _SHARPNESS_CROP) // 2)
    window = grey.crop((left, top, min(grey.width, left + _SHARPNESS_CROP), min(grey.height, top + _SHARPNESS_CROP)))
    laplacian = window.filter(ImageFilter.GaussianBlur(0.8)).filter(
        ImageFilter.Kernel((3, 3), (0, 1, 0, 1, -4, 1, 0, 1, 0), scale=1, offset=128)
    )
    pixels = np.asarray(window, dtype=np.float32)
    return float(np.asarray(laplacian, dtype=np.float32).var() / max(float(pixels.var()), 1e-6))


class FingerprintCache:
    """Fingerprints by content hash in a JSON file of the index, so a second run decodes only new files."""

    def __init__(self, path: Path | None) -> None:
        """`path`: the cache file (None keeps nothing)."""
        self.path = path
        self.data: dict[str, Any] = {}
        if path is not None and path.exists():
            try:
                self.data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                self.data = {}  # a damaged cache only costs a re-computation
        self.dirty = False

    def get(self, content_hash: str) -> Fingerprint | None:
        value = self.data.get(content_hash)
        if not isinstance(value, dict):  # absent, or written in an older layout: compute again
            return None
        chroma = (int(value["c"][0]), int(value["c"][1])) if value.get("c") else None
        return Fingerprint(int(value["p"]), chroma)

    def put(self, content_hash: str, fp: Fingerprint) -> None:
        self.data[content_hash] = {"p": fp.phash, "c": list(fp.chroma) if fp.chroma else None}
        self.dirty = True

    def save(self) -> None:
        if self.path is None or not self.dirty:
            return
        try:  # a read-only index folder only costs decoding again next time
            atomic_write_text(self.path, json.dumps(self.data), durable=False)
        except OSError:
            return
        self.dirty = False


def fingerprints(
    rows: Sequence[FileRow], read: Callable[[FileRow, int | None], Image.Image], cache: FingerprintCache,
    progress: ProgressFn = no_progress,
) -> list[Fingerprint | None]:
    """Fingerprint of each row (None when the file cannot be read now), from the cache when possible."""
    out: list[Fingerprint | None] = []
    for i, row in enumerate(rows):
        fp = cache.get(row.content_hash)
        if fp is None:
            try:
                fp = fingerprint(read(row, _DECODE_SIDE))
                cache.put(row.content_hash, fp)
            except PixqueryError:
                fp = None
        out.append(fp)
        progress("fingerprints", i + 1, len(rows))
    cache.save()
    return out


# --- calibration --------------------------------------------------------------------------------------------------

def _jpeg(img: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def _crop(img: Image.Image, fraction: float, rng: np.random.Generator) -> Image.Image:
    w, h = img.size
    cw, ch = max(1, round(w * (1 - fraction))), max(1, round(h * (1 - fraction)))
    left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    return img.crop((left, top, left + cw, top + ch))


def duplicate_like(img: Image.Image, rng: np.random.Generator) -> list[Image.Image]:
    """Harder copies of `img`, for the similar tier: cropped up to 15 %, rotated, strongly re-compressed, downsized,
    recoloured."""
    rotated = img.rotate(float(rng.uniform(2, 4)) * float(rng.choice([-1, 1])), resample=Image.Resampling.BICUBIC)
    return [
        _crop(img, float(rng.uniform(0.05, 0.15)), rng),
        _crop(rotated, 0.08, rng),
        _jpeg(img, int(rng.integers(30, 60))),
        img.resize((max(1, img.width // 2), max(1, img.height // 2)), Image.Resampling.BILINEAR),
        ImageEnhance.Color(ImageEnhance.Brightness(img).enhance(float(rng.uniform(0.9, 1.1)))).enhance(
            float(rng.uniform(0.8, 1.2))),
    ]


def edited_like(img: Image.Image, rng: np.random.Generator) -> list[Image.Image]:
    """Copies of `img` of the near tier's kinds: resized, re-encoded, cropped up to 5 %, re-toned."""
    return [
        img.resize((max(1, img.width // 2), max(1, img.height // 2)), Image.Resampling.LANCZOS),
        _jpeg(img, int(rng.integers(50, 90))),
        _crop(img, float(rng.uniform(0.02, 0.05)), rng),
        ImageEnhance.Brightness(img).enhance(float(rng.uniform(0.85, 1.15))),
        ImageEnhance.Contrast(img).enhance(float(rng.uniform(0.85, 1.15))),
    ]


def copy_similarities(
    view: IndexView, rows: Sequence[FileRow], vectors: np.ndarray,
    make_copies: Callable[[Image.Image, np.random.Generator], list[Image.Image]],
    sample: int = CALIBRATION_SAMPLE, seed: int = 0,
) -> np.ndarray:
    """Cosines between the embeddings of copies of sampled images and the stored vectors of their originals
    (empty when no sampled image can be read). Costs `sample` x 5 image embeddings."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(rows))[: max(1, sample)]
    copies, owners = [], []
    for i in order.tolist():
        try:
            img = view.read_image(rows[i], None)
        except PixqueryError:
            continue
        for copy in make_copies(img, rng):
            copies.append(copy)
            owners.append(i)
    if not copies:
        return np.zeros(0, np.float32)
    embedded = view.encoder.encode_images(copies)
    return (embedded * vectors[np.asarray(owners)]).sum(axis=1)


def calibrate_semantic(view: IndexView, rows: Sequence[FileRow], vectors: np.ndarray,
                       sample: int = CALIBRATION_SAMPLE, quantile: float = CALIBRATION_QUANTILE,
                       seed: int = 0) -> float | None:
    """The cosine that a `1 - quantile` share of harder copies (`duplicate_like`) keep with their originals."""
    similarity = copy_similarities(view, rows, vectors, duplicate_like, sample, seed)
    return float(np.quantile(similarity, quantile)) if len(similarity) else None


def calibrate_near_cosine(view: IndexView, rows: Sequence[FileRow], vectors: np.ndarray,
                          sample: int = CALIBRATION_SAMPLE, seed: int = 1) -> float | None:
    """The near tier's least cosine: `NEAR_COSINE_MARGIN` times further from 1 than the cosine that all but
    `NEAR_COSINE_QUANTILE` of the near tier's edited copies (`edited_like`) keep."""
    similarity = copy_similarities(view, rows, vectors, edited_like, sample, seed)
    if not len(similarity):
        return None
    return float(1.0 - NEAR_COSINE_MARGIN * (1.0 - np.quantile(similarity, NEAR_COSINE_QUANTILE)))


def _remembered(view: IndexView, key: str, compute: Callable[[], float | None]) -> float | None:
    """A calibrated value for this index's model, computed once and kept in the catalog meta."""
    key = f"{key}:{view.model}"
    stored = view.catalog.get_meta(key)
    if stored is not None:
        return float(stored)
    value = compute()
    if value is not None:
        view.catalog.set_meta(key, repr(value))
    return value


def semantic_threshold(view: IndexView, rows: Sequence[FileRow], vectors: np.ndarray) -> float | None:
    """The calibrated similar-tier threshold for this index's model (kept in the catalog meta)."""
    return _remembered(view, _META_KEY, lambda: calibrate_semantic(view, rows, vectors))


def near_cosine_threshold(view: IndexView, rows: Sequence[FileRow], vectors: np.ndarray) -> float | None:
    """The calibrated embedding check of the near tier for this index's model (kept in the catalog meta)."""
    return _remembered(view, _NEAR_META_KEY, lambda: calibrate_near_cosine(view, rows, vectors))


# --- pairs --------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Link:
    """Evidence that rows `a` and `b` (positions, a < b) are duplicates or similar.

    `value`: differing pHash bits for "near", cosine for "similar", 0 for "exact"; `note` says which exact evidence
    ("same bytes" or "same pixels")."""

    a: int
    b: int
    kind: str
    value: float
    note: str = ""


def exact_links(hashes: Sequence[str]) -> list[Link]:
    """Rows with the same content hash, each linked to the first of its kind."""
    first: dict[str, int] = {}
    links = []
    for i, h in enumerate(hashes):
        if h in first:
            links.append(Link(first[h], i, "exact", 0.0, "same bytes"))
        else:
            first[h] = i
    return links


def _hamming(values: np.ndarray, start: int, block: int) -> np.ndarray:
    return np.bitwise_count(values[start : start + block, None] ^ values[None, :])


def near_links(prints: Sequence[Fingerprint | None], max_distance: float,
               max_chroma_distance: float = CHROMA_DISTANCE) -> list[Link]:
    """Pairs whose grey pHashes differ in at most `max_distance` bits and, when both images have colour, whose
    colour pHashes differ in at most `max_chroma_distance` bits each (all pairs, in blocks: cheap up to ~100k)."""
    index = np.asarray([i for i, p in enumerate(prints) if p is not None], dtype=np.int64)
    if len(index) < 2:
        return []
    kept = [prints[i] for i in index]
    grey = np.asarray([p.phash for p in kept if p is not None], dtype=np.uint64)
    has_colour = np.asarray([p is not None and p.chroma is not None for p in kept])
    colour = np.asarray([p.chroma if p is not None and p.chroma else (0, 0) for p in kept], dtype=np.uint64)
    links = []
    block = 2048
    for start in range(0, len(grey), block):
        distance = _hamming(grey, start, block)
        close = distance <= max_distance
        both_colour = has_colour[start : start + block, None] & has_colour[None, :]
        for channel in range(2):
            chroma_close = _hamming(colour[:, channel], start, block) <= max_chroma_distance
            close &= chroma_close | ~both_colour
        rows, cols = np.nonzero(close)
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
            if start + r < c:
                links.append(Link(int(index[start + r]), int(index[c]), "near", float(distance[r, c])))
    return links


def aspect_ratio(row: FileRow) -> float | None:
    """Width over height of an indexed image (None when unknown)."""
    if not row.width or not row.height:
        return None
    return row.width / row.height


def same_shape(a: FileRow, b: FileRow, tolerance: float) -> bool:
    """Whether two images' aspect ratios are within `tolerance` (relative) of each other; unknown passes."""
    ra, rb = aspect_ratio(a), aspect_ratio(b)
    if ra is None or rb is None:
        return True
    return abs(ra - rb) <= tolerance * max(ra, rb)


@dataclass
class NearEvidence:
    """What decides a near duplicate: perceptual hashes, then shape and embedding checks on each candidate pair."""

    rows: Sequence[FileRow]
    prints: Sequence[Fingerprint | None]
    vectors: np.ndarray
    limits: dict[str, float | None]

    def accepts(self, link: Link) -> bool:
        """Whether a pHash candidate also passes the aspect and the embedding checks."""
        a, b = link.a, link.b
        if not same_shape(self.rows[a], self.rows[b], float(self.limits.get("aspect") or 0.0)):
            return False
        least = self.limits.get("near_cosine")
        return least is None or float(self.vectors[a] @ self.vectors[b]) >= float(least)

    def links(self, members: Sequence[int] | None = None) -> list[Link]:
        """Near links among `members` (positions; all rows when None), in positions of the full row list."""
        positions = list(range(len(self.prints))) if members is None else list(members)
        local = [self.prints[i] for i in positions]
        candidates = near_links(local, float(self.limits.get("near") or 0),
                                float(self.limits.get("chroma", CHROMA_DISTANCE) or 0))
        mapped = [Link(positions[c.a], positions[c.b], "near", c.value) for c in candidates]
        return [link for link in mapped if self.accepts(link)]


def same_pixels(view: IndexView, a: FileRow, b: FileRow) -> bool:
    """Whether two files decode to exactly the same pixels (False when either cannot be read)."""
    try:
        first, second = view.read_image(a, None), view.read_image(b, None)
    except PixqueryError:
        return False
    return first.size == second.size and np.array_equal(np.asarray(first), np.asarray(second))


def pixel_links(view: IndexView, rows: Sequence[FileRow], prints: Sequence[Fingerprint | None],
                hashes: Sequence[str]) -> list[Link]:
    """Exact links between files of different bytes but the same pixels (a lossless conversion).

    Only pairs that cannot be told apart cheaply are decoded in full: the same size and pHashes within the near
    defaults (a JPEG's hash comes from a reduced-scale decode, a PNG's from a resize, so they may differ a little)."""
    links = []
    for candidate in near_links(prints, DEFAULT_THRESHOLDS["near"], DEFAULT_THRESHOLDS["chroma"]):
        a, b = rows[candidate.a], rows[candidate.b]
        if hashes[candidate.a] == hashes[candidate.b] or (a.width, a.height) != (b.width, b.height):
            continue
        if same_pixels(view, a, b):
            links.append(Link(candidate.a, candidate.b, "exact", 0.0, "same pixels"))
    return links


@dataclass(frozen=True)
class Neighbours:
    """Each row's nearest rows (positions, -1 where none) and their cosines, best first, the row itself left out."""

    rows: np.ndarray
    scores: np.ndarray

    @classmethod
    def search(
        cls, search: Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]], vectors: np.ndarray, ids: np.ndarray,
        k: int,
    ) -> Neighbours:
        """`search(queries, k)` is the vector store's search (returning catalog ids); `ids` maps rows to ids."""
        position = {int(file_id): i for i, file_id in enumerate(ids.tolist())}
        scores, found = search(vectors, min(k + 1, len(vectors)))
        rows = np.full((len(vectors), k), -1, dtype=np.int64)
        sims = np.full((len(vectors), k), -np.inf, dtype=np.float32)
        for i, (row_scores, row_ids) in enumerate(zip(scores, found, strict=True)):
            others = [(position.get(int(f), -1), s) for f, s in zip(row_ids.tolist(), row_scores.tolist(), strict=True)]
            others = [(j, s) for j, s in others if j >= 0 and j != i][:k]
            for slot, (j, score) in enumerate(others):
                rows[i, slot], sims[i, slot] = j, score
        return cls(rows, sims)

    def floor(self, quantile: float = FLOOR_QUANTILE) -> float | None:
        """How similar an image's most distant kept neighbour typically is (None without neighbours).

        Few images have more than a handful of duplicates, so the k-th neighbour (k = `FLOOR_RANK`) of most images
        is a *different* picture of a similar subject; a threshold below this level would link most images to
        many others.
        """
        last = self.scores[:, -1]
        last = last[np.isfinite(last)]
        return float(np.quantile(last, quantile)) if len(last) else None


def semantic_links(neighbours: Neighbours, threshold: float, k: int = SEMANTIC_NEIGHBOURS,
                   allowed: np.ndarray | None = None) -> list[Link]:
    """Pairs whose embeddings' cosine is at least `threshold`, among each image's `k` nearest neighbours; with
    `allowed` (a mask of rows), only pairs of allowed rows."""
    links = {}
    for i, (row, scores) in enumerate(zip(neighbours.rows[:, :k], neighbours.scores[:, :k], strict=True)):
        if allowed is not None and not allowed[i]:
            continue
        for j, score in zip(row.tolist(), scores.tolist(), strict=True):
            if j >= 0 and score >= threshold and (allowed is None or allowed[j]):
                a, b = min(i, j), max(i, j)
                links[(a, b)] = Link(a, b, "similar", float(score))
    return list(links.values())


def connected_groups(n: int, links: Iterable[Link]) -> list[list[int]]:
    """Groups of two or more rows joined by links, each sorted, groups ordered by their first row."""
    links = list(links)
    if n == 0 or not links:
        return []
    a = np.asarray([link.a for link in links])
    b = np.asarray([link.b for link in links])
    graph = coo_matrix((np.ones(len(links)), (a, b)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    groups: dict[int, list[int]] = {}
    for row, label in enumerate(labels.tolist()):
        groups.setdefault(label, []).append(row)
    return sorted((g for g in groups.values() if len(g) > 1), key=lambda g: g[0])


def linked_matrix(members: Sequence[int], links: Iterable[Link]) -> np.ndarray:
    """(m, m) matrix: whether a link joins members a and b (links in positions of the full row list)."""
    where = {row: i for i, row in enumerate(members)}
    linked = np.eye(len(members), dtype=bool)
    for link in links:
        if link.a in where and link.b in where:
            linked[where[link.a], where[link.b]] = linked[where[link.b], where[link.a]] = True
    return linked


def split_chains(groups: list[list[int]], linked: Callable[[list[int]], np.ndarray]) -> list[list[int]]:
    """Split groups that are chains of separate groups joined by a few links.

    Linking is transitive in a connected component: one spurious link (two different scenes on one backdrop) joins
    two groups, and a few more chain a whole collection. Average-linkage clustering (scipy) on "linked or not"
    keeps two sets of images together only when at least half of the pairs between them are linked.
    """
    out = []
    for group in groups:
        if len(group) <= 2 or len(group) > MAX_SPLIT:
            out.append(group)
            continue
        distance = (~linked(group)).astype(np.float64)
        np.fill_diagonal(distance, 0.0)
        labels = fcluster(linkage(squareform(distance, checks=False), method="average"), t=0.5, criterion="distance")
        for label in np.unique(labels):
            part = [group[i] for i in np.flatnonzero(labels == label)]
            if len(part) > 1:
                out.append(part)
    return sorted(out, key=lambda g: g[0])


# --- keeper -------------------------------------------------------------------------------------------------------

def _taken(row: FileRow) -> float | None:
    """The EXIF date taken as a timestamp (None when absent or unreadable)."""
    if not row.taken_at:
        return None
    try:
        return datetime.fromisoformat(row.taken_at).timestamp()
    except ValueError:
        return None


def _age_key(row: FileRow, use_taken: bool = True) -> tuple[float, str]:
    """Sort key, oldest first: EXIF date taken when present (and `use_taken`), else the file's modification time."""
    taken = _taken(row) if use_taken else None
    if taken is not None:
        return taken, f"taken {row.taken_at}"
    when = row.mtime_ns / 1e9
    return when, f"file dated {datetime.fromtimestamp(when).isoformat(timespec='seconds')}"


def choose_keeper(rows: Sequence[FileRow], measure: Callable[[FileRow], float | None]) -> tuple[int, str]:
    """(position of the suggested keeper, why): largest, then sharpest, then oldest, then shortest path.

    `measure` gives a file's sharpness; it decodes the whole image, so it runs only for files whose sizes tie.
    Sizes within 1 % and sharpness within 25 % count as ties, so a re-save that shifts a pixel, JPEG ringing or a
    colour change (each moved the measure by up to ~20 % in the benchmark) does not decide the matter; a visibly
    blurred copy (about half the measure) does. Dates within `SAME_TIME_S` are one date, so "oldest" is said only
    when the keeper really is older than every other candidate.
    """
    areas = [(r.width or 0) * (r.height or 0) for r in rows]
    candidates = [i for i, area in enumerate(areas) if area >= 0.99 * max(areas)]
    if len(candidates) == 1:
        return candidates[0], f"largest ({rows[candidates[0]].width}x{rows[candidates[0]].height} px)"
    sharp = [measure(rows[i]) or 0.0 for i in candidates]
    best_sharp = max(sharp)
    sharpest = [i for i, s in zip(candidates, sharp, strict=True) if s >= SHARPNESS_TIE * best_sharp]
    if len(sharpest) == 1:
        return sharpest[0], "sharpest (same size, most fine detail)"
    return _by_date(rows, sharpest)


def _by_date(rows: Sequence[FileRow], candidates: list[int]) -> tuple[int, str]:
    """Among equally large and sharp files: the one with the earliest date, compared like with like.

    Dates taken (EXIF) are compared when every candidate has one; when only some do, those keep the capture date
    that edited copies usually lose, and the keeper is chosen among them; otherwise file dates are compared. Dates
    within `SAME_TIME_S` are one date; a tie goes to the shortest path, and the reason says so.
    """
    dated = [i for i in candidates if _taken(rows[i]) is not None]
    if dated and len(dated) < len(candidates):
        if len(dated) == 1:
            return dated[0], f"only one with a date taken ({rows[dated[0]].taken_at}; the others lost theirs)"
        candidates = dated
    ages = {i: _age_key(rows[i], use_taken=bool(dated)) for i in candidates}
    oldest = min(candidates, key=lambda i: (ages[i][0], len(rows[i].path), rows[i].path))
    if all(ages[i][0] - ages[oldest][0] >= SAME_TIME_S for i in candidates if i != oldest):
        return oldest, f"oldest ({ages[oldest][1]})"
    tied = [i for i in candidates if ages[i][0] - ages[oldest][0] < SAME_TIME_S]
    shortest = min(tied, key=lambda i: (len(rows[i].path), rows[i].path))
    return shortest, "same size, sharpness and date: the shortest path"


# --- the task -----------------------------------------------------------------------------------------------------

def _normalise(kinds: Sequence[str], thresholds: dict[str, float] | None) -> tuple[tuple[str, ...], dict[str, Any]]:
    """Kinds and thresholds with old names mapped to the new ones; ValueError names unknown kinds."""
    kinds = tuple(dict.fromkeys(ALIASES.get(k, k) for k in kinds))
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ValueError(f"unknown duplicate kinds {unknown}; expected some of: {', '.join(KINDS)}")
    given = {ALIASES.get(k, k): v for k, v in (thresholds or {}).items()}
    return kinds, {**DEFAULT_THRESHOLDS, **given}


def find_duplicates(
    view: IndexView,
    kinds: Sequence[str] = KINDS,
    thresholds: dict[str, float] | None = None,
    progress: ProgressFn = no_progress,
) -> dict[str, Any]:
    """Duplicate groups with a suggested keeper, and similar groups apart, JSON-ready. Never deletes anything.

    Returns ``{"groups", "similar", "files_in_groups", "removable", "thresholds"}``. Each duplicate group:
    ``{"group", "tier" ("exact" or "near"), "kinds", "size", "keeper": {"id", "path"}, "reason", "members": [{"id",
    "path", "width", "height", "bytes", "keeper"}], "links": [{"a", "b", "kind", "value", "note"}]}``, largest first;
    `removable` counts their non-keepers, for the user to review. Each similar group: ``{"group", "size",
    "members": [{"id", "path", "width", "height", "bytes"}], "links"}``: photos that look alike, none removable.
    `thresholds` override the defaults and calibrations: near, chroma, aspect, near_cosine, similar.
    """
    kinds, limits = _normalise(kinds, thresholds)
    by_id = view.rows()
    keep = [i for i, file_id in enumerate(view.ids.tolist()) if file_id in by_id]
    ids, vectors = view.ids[keep], view.vectors[keep]
    rows = [by_id[int(i)] for i in ids.tolist()]
    hashes = [r.content_hash for r in rows]
    links: list[Link] = []
    if "exact" in kinds:
        links += exact_links(hashes)
    prints: list[Fingerprint | None] | None = None
    if "near" in kinds or "exact" in kinds:
        cache = FingerprintCache(view.layout.fingerprints if view.layout else None)
        prints = fingerprints(rows, view.read_image, cache, progress)
    if "exact" in kinds and prints is not None:
        links += pixel_links(view, rows, prints, hashes)
    evidence = None
    if "near" in kinds and prints is not None:
        if "near_cosine" not in limits and len(rows) > 1:
            limits["near_cosine"] = near_cosine_threshold(view, rows, vectors)
        evidence = NearEvidence(rows, prints, vectors, limits)
        links += [k for k in evidence.links() if hashes[k.a] != hashes[k.b]]  # same bytes: exact says it all

    def duplicate_links(members: list[int]) -> np.ndarray:
        inside = [link for link in links if link.kind == "exact"]
        if evidence is not None:
            inside += evidence.links(members)
        return linked_matrix(members, inside)

    groups = split_chains(connected_groups(len(rows), links), duplicate_links)

    def measure(row: FileRow) -> float | None:
        try:
            return sharpness(view.read_image(row, None))
        except PixqueryError:
            return None

    reports, keepers = _duplicate_reports(groups, links, rows, measure)
    similar: list[dict[str, Any]] = []
    if "similar" in kinds and len(rows) > 1:
        similar = _similar_groups(view, rows, ids, vectors, limits, groups, keepers)
    return {
        "groups": reports,
        "similar": similar,
        "files_in_groups": sum(g["size"] for g in reports),
        "removable": sum(g["size"] - 1 for g in reports),
        "thresholds": {k: v for k, v in limits.items() if _threshold_kind(k) in kinds},
    }


def _threshold_kind(name: str) -> str:
    return {"chroma": "near", "aspect": "near", "near_cosine": "near"}.get(name, name.split("_")[0])


def _duplicate_reports(
    groups: list[list[int]], links: list[Link], rows: Sequence[FileRow], measure: Callable[[FileRow], float | None],
) -> tuple[list[dict[str, Any]], set[int]]:
    """The duplicate groups as JSON, largest first, and the positions of their keepers."""
    group_of = {row: number for number, group in enumerate(groups) for row in group}
    links_of: dict[int, list[Link]] = {}
    for link in links:  # bucketed once: filtering all links per group would be quadratic
        if link.a in group_of and group_of[link.a] == group_of.get(link.b):
            links_of.setdefault(group_of[link.a], []).append(link)
    out, keepers = [], set()
    for number, group in enumerate(groups):
        keeper, reason = choose_keeper([rows[i] for i in group], measure)
        keepers.add(group[keeper])
        report = _group_report([rows[i] for i in group], links_of.get(number, []), rows)
        exact_parts = connected_groups(len(rows), [k for k in links_of.get(number, []) if k.kind == "exact"])
        tier = "exact" if [len(part) for part in exact_parts] == [len(group)] else "near"
        report.update(tier=tier,
                      keeper={"id": rows[group[keeper]].id, "path": rows[group[keeper]].path}, reason=reason)
        for position, member in enumerate(report["members"]):
            member["keeper"] = position == keeper
        out.append(report)
    out.sort(key=lambda g: (-g["size"], g["keeper"]["path"]))
    for number, group_dict in enumerate(out):
        group_dict["group"] = number
    return out, keepers


def _similar_groups(
    view: IndexView, rows: Sequence[FileRow], ids: np.ndarray, vectors: np.ndarray, limits: dict[str, Any],
    duplicate_groups: list[list[int]], keepers: set[int],
) -> list[dict[str, Any]]:
    """Similar groups among the duplicate groups' keepers and the photos in no duplicate group."""
    neighbours = Neighbours.search(lambda q, k: view.store.search(q, k), vectors, ids, FLOOR_RANK)
    if "similar" not in limits:
        copies = semantic_threshold(view, rows, vectors)
        floor = neighbours.floor()
        limits["similar_copies"], limits["similar_floor"] = copies, floor
        candidates = [t for t in (copies, floor) if t is not None]
        if not candidates:
            return []
        limits["similar"] = max(candidates)
    allowed = np.ones(len(rows), dtype=bool)
    for group in duplicate_groups:
        allowed[group] = False
    allowed[list(keepers)] = True
    links = semantic_links(neighbours, float(limits["similar"]), allowed=allowed)
    groups = split_chains(connected_groups(len(rows), links), lambda members: linked_matrix(members, links))
    out = []
    for group in groups:
        inside = set(group)
        report = _group_report([rows[i] for i in group], [k for k in links if k.a in inside and k.b in inside], rows)
        report.pop("kinds")
        out.append(report)
    out.sort(key=lambda g: (-g["size"], g["members"][0]["path"]))
    for number, group_dict in enumerate(out):
        group_dict["group"] = number
    return out


def _group_report(group_rows: list[FileRow], group_links: list[Link], rows: Sequence[FileRow]) -> dict[str, Any]:
    """One group as JSON: members and the evidence linking them."""
    return {
        "kinds": sorted({link.kind for link in group_links}, key=KINDS.index),
        "size": len(group_rows),
        "members": [{"id": r.id, "path": r.path, "width": r.width, "height": r.height, "bytes": r.size}
                    for r in group_rows],
        "links": [
            {"a": rows[link.a].id, "b": rows[link.b].id, "kind": link.kind, "value": round(link.value, 4),
             **({"note": link.note} if link.note else {})}
            for link in group_links
        ],
    }
