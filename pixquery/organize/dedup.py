"""Find groups of duplicate images and suggest which one to keep. Nothing is ever deleted, moved or changed.

Three kinds of evidence link two images:

* ``exact``: the same bytes (the catalog's content hash), e.g. one photo copied into two folders;
* ``near``: a perceptual hash (DCT pHash, imagehash) of the grey image within `near` bits of 64, and the pHashes of
  the two colour-opponent channels within `CHROMA_DISTANCE` bits (grey pHash alone cannot see a recoloured object):
  re-compressed, resized, re-encoded in another format, slightly recoloured copies;
* ``semantic``: image embeddings (the index's own vectors) with a cosine of at least `semantic`: also crops and small
  rotations, which move a perceptual hash too far. What cosine a copy keeps differs a lot between models (ConSE puts
  two different cats at 0.97, a CLIP model far lower), so by default the threshold is *calibrated* on the collection:
  a sample of its images is cropped, rotated, re-compressed, resized and recoloured, the copies are embedded, and the
  threshold is the 10th percentile of their similarity to the stored vectors of the originals ("90 % of such copies
  would be found"), remembered in the catalog's meta table per model. Precision comes first (a user deletes what
  this reports), so the threshold is raised to the similarity that most images have with their 20th nearest
  neighbour, which is almost always a different picture: where a model cannot tell a copy from another picture of
  the same subject (a small model on look-alike synthetic scenes), semantic evidence then finds little rather than
  chaining a whole collection into one group.

Linked images form groups (connected components), and a component that is really a chain of groups held together
by a few links is split again (average linkage, see `split_chains`). Each group suggests a keeper: the largest image
(pixels), then the sharpest (variance of the Laplacian of a fixed-size grey copy, relative to the copy's own
contrast), then the oldest (EXIF date taken, else the file's modification time), then the shortest path, with the
reason in words. Default thresholds come from measurement (benchmarks/organize.py, docs/organize.md).
Fingerprints are cached in the index (`fingerprints.json`, keyed by content hash).
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

KINDS: tuple[str, ...] = ("exact", "near", "semantic")
DEFAULT_THRESHOLDS: dict[str, float] = {"near": 10}
"""`near`: most pHash bits (of 64) that may differ (measured, see the docs). `semantic` (least cosine) is calibrated
per model unless given."""
CALIBRATION_SAMPLE = 16
CALIBRATION_QUANTILE = 0.1
_META_KEY = "dedup.semantic_threshold"
SEMANTIC_NEIGHBOURS = 10
"""Semantic candidates per image: a group larger than this is found through chains of neighbours."""
SHARPNESS_TIE = 0.75
MAX_SPLIT = 3000
"""Larger linked components are reported as they are (splitting costs the square of their size)."""
FLOOR_RANK = 20
FLOOR_QUANTILE = 0.9
"""The semantic threshold is never below the 90th percentile of the images' similarity to their 20th neighbour."""
_SHARPNESS_CROP = 512  # sharpness looks at native pixels (a downscale would hide compression and blur) in this window
_DECODE_SIDE = 256  # pHash looks at 32x32 pixels; decoding JPEGs at reduced scale is several times faster
_CHROMA_SIDE = 64
_MIN_CHROMA_STD = 2.0  # opponent-channel spread (0-255 scale) below which an image counts as grey
CHROMA_DISTANCE = 20
"""Most colour-pHash bits that may differ for a near duplicate (JPEG's chroma subsampling moves a few); measured."""


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


# --- semantic threshold calibration -------------------------------------------------------------------------------

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
    """Copies of `img` of the kinds people end up with: cropped, rotated, re-compressed, downsized, recoloured."""
    rotated = img.rotate(float(rng.uniform(2, 4)) * float(rng.choice([-1, 1])), resample=Image.Resampling.BICUBIC)
    return [
        _crop(img, float(rng.uniform(0.05, 0.15)), rng),
        _crop(rotated, 0.08, rng),
        _jpeg(img, int(rng.integers(30, 60))),
        img.resize((max(1, img.width // 2), max(1, img.height // 2)), Image.Resampling.BILINEAR),
        ImageEnhance.Color(ImageEnhance.Brightness(img).enhance(float(rng.uniform(0.9, 1.1)))).enhance(
            float(rng.uniform(0.8, 1.2))),
    ]


def calibrate_semantic(
    view: IndexView, rows: Sequence[FileRow], vectors: np.ndarray,
    sample: int = CALIBRATION_SAMPLE, quantile: float = CALIBRATION_QUANTILE, seed: int = 0,
) -> float | None:
    """The cosine that a `1 - quantile` share of duplicate-like copies of sampled images keep with their originals.

    None when no sampled image can be read. Costs `sample` x 5 image embeddings.
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(rows))[: max(1, sample)]
    copies, owners = [], []
    for i in order.tolist():
        try:
            img = view.read_image(rows[i], None)
        except PixqueryError:
            continue
        for copy in duplicate_like(img, rng):
            copies.append(copy)
            owners.append(i)
    if not copies:
        return None
    embedded = view.encoder.encode_images(copies)
    similarity = (embedded * vectors[np.asarray(owners)]).sum(axis=1)
    return float(np.quantile(similarity, quantile))


def semantic_threshold(view: IndexView, rows: Sequence[FileRow], vectors: np.ndarray) -> float | None:
    """The calibrated semantic threshold for this index's model, computed once and kept in the catalog meta."""
    key = f"{_META_KEY}:{view.model}"
    stored = view.catalog.get_meta(key)
    if stored is not None:
        return float(stored)
    value = calibrate_semantic(view, rows, vectors)
    if value is not None:
        view.catalog.set_meta(key, repr(value))
    return value


# --- pairs --------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Link:
    """Evidence that rows `a` and `b` (positions, a < b) are duplicates."""

    a: int
    b: int
    kind: str
    value: float


def exact_links(hashes: Sequence[str]) -> list[Link]:
    """Rows with the same content hash, each linked to the first of its kind."""
    first: dict[str, int] = {}
    links = []
    for i, h in enumerate(hashes):
        if h in first:
            links.append(Link(first[h], i, "exact", 0.0))
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


def semantic_links(neighbours: Neighbours, threshold: float, k: int = SEMANTIC_NEIGHBOURS) -> list[Link]:
    """Pairs whose embeddings' cosine is at least `threshold`, among each image's `k` nearest neighbours."""
    links = {}
    for i, (row, scores) in enumerate(zip(neighbours.rows[:, :k], neighbours.scores[:, :k], strict=True)):
        for j, score in zip(row.tolist(), scores.tolist(), strict=True):
            if j >= 0 and score >= threshold:
                a, b = min(i, j), max(i, j)
                links[(a, b)] = Link(a, b, "semantic", float(score))
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


def linked_pairs(
    members: Sequence[int], kinds: Sequence[str], hashes: Sequence[str], prints: Sequence[Fingerprint | None] | None,
    vectors: np.ndarray, limits: dict[str, float | None],
) -> np.ndarray:
    """(m, m) matrix: whether any enabled kind of evidence links members a and b, computed for every pair."""
    m = len(members)
    linked = np.zeros((m, m), dtype=bool)
    if "exact" in kinds:
        own = np.asarray([hashes[i] for i in members])
        linked |= own[:, None] == own[None, :]
    if "near" in kinds and prints is not None:
        local = [prints[i] for i in members]
        for link in near_links(local, float(limits.get("near") or 0)):
            linked[link.a, link.b] = linked[link.b, link.a] = True
    if "semantic" in kinds and limits.get("semantic") is not None:
        own_vectors = vectors[np.asarray(members)]
        linked |= own_vectors @ own_vectors.T >= float(limits["semantic"])  # type: ignore[arg-type]
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

def _age_key(row: FileRow) -> tuple[float, str]:
    """Sort key, oldest first: EXIF date taken when present, else the file's modification time."""
    if row.taken_at:
        try:
            return datetime.fromisoformat(row.taken_at).timestamp(), f"taken {row.taken_at}"
        except ValueError:
            pass
    when = row.mtime_ns / 1e9
    return when, f"file dated {datetime.fromtimestamp(when).isoformat(timespec='seconds')}"


def choose_keeper(rows: Sequence[FileRow], measure: Callable[[FileRow], float | None]) -> tuple[int, str]:
    """(position of the suggested keeper, why): largest, then sharpest, then oldest, then shortest path.

    `measure` gives a file's sharpness; it decodes the whole image, so it runs only for files whose sizes tie.
    Sizes within 1 % and sharpness within 25 % count as ties, so a re-save that shifts a pixel, JPEG ringing or a
    colour change (each moved the measure by up to ~20 % in the benchmark) does not decide the matter; a visibly
    blurred copy (about half the measure) does.
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
    candidates = sharpest
    ages = {i: _age_key(rows[i]) for i in candidates}
    oldest = min(candidates, key=lambda i: (ages[i][0], len(rows[i].path), rows[i].path))
    if sum(1 for i in candidates if ages[i][0] == ages[oldest][0]) == 1:
        return oldest, f"oldest ({ages[oldest][1]})"
    return oldest, "same size, sharpness and age: the shortest path"


# --- the task -----------------------------------------------------------------------------------------------------

def find_duplicates(
    view: IndexView,
    kinds: Sequence[str] = KINDS,
    thresholds: dict[str, float] | None = None,
    progress: ProgressFn = no_progress,
) -> dict[str, Any]:
    """Groups of duplicate images with a suggested keeper and the evidence, JSON-ready. Never deletes anything.

    Returns ``{"groups", "files_in_groups", "removable", "thresholds"}``; each group: ``{"group", "kinds", "size",
    "keeper": {"id", "path"}, "reason", "members": [{"id", "path", "width", "height", "bytes", "keeper"}],
    "links": [{"a", "b", "kind", "value"}]}`` (`value`: differing pHash bits for "near", cosine for "semantic"),
    largest groups first; `removable` counts non-keepers, for the user to review.
    """
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ValueError(f"unknown duplicate kinds {unknown}; expected some of: {', '.join(KINDS)}")
    limits: dict[str, float | None] = {**DEFAULT_THRESHOLDS, **(thresholds or {})}
    by_id = view.rows()
    keep = [i for i, file_id in enumerate(view.ids.tolist()) if file_id in by_id]
    ids, vectors = view.ids[keep], view.vectors[keep]
    rows = [by_id[int(i)] for i in ids.tolist()]
    links: list[Link] = []
    if "exact" in kinds:
        links += exact_links([r.content_hash for r in rows])
    prints: list[Fingerprint | None] | None = None
    if "near" in kinds:
        cache = FingerprintCache(view.layout.fingerprints if view.layout else None)
        prints = fingerprints(rows, view.read_image, cache, progress)
        links += near_links(prints, float(limits["near"] or 0))
    if "semantic" in kinds and len(rows) > 1:
        neighbours = Neighbours.search(lambda q, k: view.store.search(q, k), vectors, ids, FLOOR_RANK)
        if "semantic" not in limits:
            copies = semantic_threshold(view, rows, vectors)
            floor = neighbours.floor()
            limits["semantic_copies"], limits["semantic_floor"] = copies, floor
            candidates = [t for t in (copies, floor) if t is not None]
            if candidates:
                limits["semantic"] = max(candidates)
        if limits.get("semantic") is not None:
            links += semantic_links(neighbours, float(limits["semantic"]))
    hashes = [r.content_hash for r in rows]
    groups = split_chains(connected_groups(len(rows), links),
                          lambda members: linked_pairs(members, kinds, hashes, prints, vectors, limits))
    group_of = {row: number for number, group in enumerate(groups) for row in group}
    links_of: dict[int, list[Link]] = {}
    for link in links:  # bucketed once: filtering all links per group would be quadratic
        if link.a in group_of and group_of[link.a] == group_of.get(link.b):
            links_of.setdefault(group_of[link.a], []).append(link)

    def measure(row: FileRow) -> float | None:
        try:
            return sharpness(view.read_image(row, None))
        except PixqueryError:
            return None

    out = [_group_report([rows[i] for i in group], links_of.get(n, []), rows, measure)
           for n, group in enumerate(groups)]
    out.sort(key=lambda g: (-g["size"], g["keeper"]["path"]))
    for number, group_dict in enumerate(out):
        group_dict["group"] = number
    return {
        "groups": out,
        "files_in_groups": sum(g["size"] for g in out),
        "removable": sum(g["size"] - 1 for g in out),
        "thresholds": {k: v for k, v in limits.items() if k.split("_")[0] in kinds},
    }


def _group_report(
    group_rows: list[FileRow], group_links: list[Link], rows: Sequence[FileRow],
    measure: Callable[[FileRow], float | None],
) -> dict[str, Any]:
    """One group as JSON: members, suggested keeper and why, and the evidence linking them."""
    keeper, reason = choose_keeper(group_rows, measure)
    return {
        "kinds": sorted({link.kind for link in group_links}, key=KINDS.index),
        "size": len(group_rows),
        "keeper": {"id": group_rows[keeper].id, "path": group_rows[keeper].path},
        "reason": reason,
        "members": [
            {"id": r.id, "path": r.path, "width": r.width, "height": r.height, "bytes": r.size, "keeper": pos == keeper}
            for pos, r in enumerate(group_rows)
        ],
        "links": [
            {"a": rows[link.a].id, "b": rows[link.b].id, "kind": link.kind, "value": round(link.value, 4)}
            for link in group_links
        ],
    }
