"""Evaluation dataset readers: each knows one on-disk format and returns plain dataclasses.

Readers validate their input and raise `DatasetFormatError` naming the file and field at fault; they never
load models, pixels or embeddings.
"""

from pixquery.eval.datasets.base import (
    ClassificationDataset,
    ComposedDataset,
    ComposedQuery,
    DatasetFormatError,
    InstanceDataset,
    RetrievalDataset,
)
from pixquery.eval.datasets.circo import read_circo
from pixquery.eval.datasets.cirr import read_cirr
from pixquery.eval.datasets.fashioniq import (
    FASHIONIQ_CATEGORIES,
    join_fashioniq_captions,
    read_fashioniq,
    read_fashioniq_all,
)
from pixquery.eval.datasets.imagefolder import read_imagefolder
from pixquery.eval.datasets.karpathy import read_karpathy
from pixquery.eval.datasets.revisited import read_revisited

__all__ = [
    "FASHIONIQ_CATEGORIES",
    "ClassificationDataset",
    "ComposedDataset",
    "ComposedQuery",
    "DatasetFormatError",
    "InstanceDataset",
    "RetrievalDataset",
    "join_fashioniq_captions",
    "read_circo",
    "read_cirr",
    "read_fashioniq",
    "read_fashioniq_all",
    "read_imagefolder",
    "read_karpathy",
    "read_revisited",
]
