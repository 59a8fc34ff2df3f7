"""Plain containers that dataset readers return, and the error they raise on malformed input.

Readers only describe a dataset (paths, captions, ids, ground truth); they never load models or pixels,
so these containers hold nothing heavier than paths, strings and small integer arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pixquery.errors import PixqueryError


class DatasetFormatError(PixqueryError):
    """A dataset file is missing or malformed.

    The message always names the file and, where one applies, the field inside it, so a user can fix the
    download without reading the reader's source.
    """

    def __init__(self, path: Path | str, problem: str, field: str | None = None) -> None:
        self.path = Path(path)
        self.field = field
        self.problem = problem
        where = f"{self.path}" if field is None else f"{self.path}: field '{field}'"
        super().__init__(f"{where}: {problem}")


@dataclass
class RetrievalDataset:
    """Image-text retrieval set (Flickr30K, MSCOCO, ShapesWorld Karpathy-style splits).

    Attributes:
        image_paths: one path per image, in file order.
        captions: every caption of the split, grouped by image in file order.
        caption_to_image: int64 array (n_captions,), the index into `image_paths` of each caption's image.
        image_tags: optional per-image arrays (n_images,) for extra scalar fields of the image entries,
            e.g. ShapesWorld's ``heldout`` flag.
        caption_tags: optional per-caption arrays (n_captions,) for extra scalar fields of the sentences.
        name: short dataset name, e.g. ``"flickr30k"``.
        split: the split that was read.
    """

    image_paths: list[Path]
    captions: list[str]
    caption_to_image: np.ndarray
    image_tags: dict[str, np.ndarray] = field(default_factory=dict)
    caption_tags: dict[str, np.ndarray] = field(default_factory=dict)
    name: str = ""
    split: str = ""

    def __post_init__(self) -> None:
        self.caption_to_image = np.asarray(self.caption_to_image, dtype=np.int64)
        if self.caption_to_image.shape != (len(self.captions),):
            raise ValueError("caption_to_image must have one entry per caption")
        if len(self.caption_to_image) and (
            self.caption_to_image.min() < 0 or self.caption_to_image.max() >= len(self.image_paths)
        ):
            raise ValueError("caption_to_image holds an index outside image_paths")
        for tag, values in self.image_tags.items():
            if len(values) != len(self.image_paths):
                raise ValueError(f"image tag {tag!r} must have one entry per image")
        for tag, values in self.caption_tags.items():
            if len(values) != len(self.captions):
                raise ValueError(f"caption tag {tag!r} must have one entry per caption")

    def tag_per_caption(self, tag: str) -> np.ndarray:
        """Return tag `tag` for each caption, shape (n_captions,).

        A caption-level tag wins; otherwise the image-level tag is repeated for each of the image's captions,
        which is what splitting text-to-image results into seen and held-out needs.
        """
        if tag in self.caption_tags:
            return np.asarray(self.caption_tags[tag])
        if tag in self.image_tags:
            return np.asarray(self.image_tags[tag])[self.caption_to_image]
        raise KeyError(f"no image or caption tag named {tag!r}")


@dataclass
class ComposedQuery:
    """One composed-retrieval query: a reference image modified by a text.

    Attributes:
        reference: gallery name of the reference image.
        caption: the modification text, ready to encode (FashionIQ's two captions are already joined).
        targets: gallery names of the correct answers; empty for test splits without public ground truth.
        subset: CIRR's ``img_set`` members for the subset protocol, else None.
        extra: format-specific fields (query ids, CIRCO's shared concept, FashionIQ's raw captions...).
    """

    reference: str
    caption: str
    targets: list[str]
    subset: list[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class ComposedDataset:
    """Composed image retrieval set (CIRR, CIRCO, one FashionIQ category).

    Attributes:
        gallery_paths: image path of each gallery entry.
        gallery_names: the dataset's own name of each gallery entry (same order as `gallery_paths`).
        queries: the queries of the split.
        name: short dataset name, e.g. ``"cirr"`` or ``"fashioniq-dress"``.
        split: the split that was read.
    """

    gallery_paths: list[Path]
    gallery_names: list[str]
    queries: list[ComposedQuery]
    name: str = ""
    split: str = ""

    def __post_init__(self) -> None:
        if len(self.gallery_paths) != len(self.gallery_names):
            raise ValueError("gallery_paths and gallery_names must have the same length")

    def name_to_index(self) -> dict[str, int]:
        """Map each gallery name to its index (the first one, should a name repeat)."""
        index: dict[str, int] = {}
        for i, name in enumerate(self.gallery_names):
            index.setdefault(name, i)
        return index


@dataclass
class ClassificationDataset:
    """Single-label image classification set (ImageNet-style class folders).

    Attributes:
        image_paths: one path per image.
        labels: int64 array (n_images,), index into `classnames`.
        classnames: human-readable class names, in label order.
        folder_names: the class folder of each label (e.g. WordNet ids such as ``n01440764``).
    """

    image_paths: list[Path]
    labels: np.ndarray
    classnames: list[str]
    folder_names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if self.labels.shape != (len(self.image_paths),):
            raise ValueError("labels must have one entry per image")


@dataclass
class InstanceDataset:
    """Instance retrieval set with the revisited Oxford/Paris ground truth.

    Attributes:
        gallery_paths: database image paths, in ``imlist`` order (ground-truth indices refer to it).
        query_paths: query image paths, in ``qimlist`` order.
        query_bbx: float64 array (n_queries, 4), the query region ``[x1, y1, x2, y2]`` in pixels.
        gnd: per query a dict with int64 arrays ``easy``, ``hard`` and ``junk`` of database indices,
            the structure `pixquery.eval.metrics.mean_average_precision` takes.
        gallery_names: ``imlist`` entries.
        query_names: ``qimlist`` entries.
        name: ``"roxford5k"`` or ``"rparis6k"``.
    """

    gallery_paths: list[Path]
    query_paths: list[Path]
    query_bbx: np.ndarray
    gnd: list[dict[str, np.ndarray]]
    gallery_names: list[str] = field(default_factory=list)
    query_names: list[str] = field(default_factory=list)
    name: str = ""
