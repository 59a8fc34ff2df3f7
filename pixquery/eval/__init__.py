"""Evaluation of zero-shot retrieval: dataset readers (`pixquery.eval.datasets`) and metrics
(`pixquery.eval.metrics`).

Readers know formats, metrics know nothing of files; a runner joins them with a model.
"""

from pixquery.eval.datasets import (
    ClassificationDataset,
    ComposedDataset,
    ComposedQuery,
    DatasetFormatError,
    InstanceDataset,
    RetrievalDataset,
)

__all__ = [
    "ClassificationDataset",
    "ComposedDataset",
    "ComposedQuery",
    "DatasetFormatError",
    "InstanceDataset",
    "RetrievalDataset",
]
