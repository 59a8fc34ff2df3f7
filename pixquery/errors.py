"""Errors a user can see, each with a message that says what went wrong and what to do."""

from __future__ import annotations


class PixqueryError(Exception):
    """Base of every error pixquery raises on purpose (the CLI prints these without a traceback)."""


class IndexLockedError(PixqueryError):
    """Another process is indexing this index right now."""


class ModelMismatchError(PixqueryError):
    """An index was opened with a model other than the one that built it."""


class IndexFormatError(PixqueryError):
    """An index directory is missing files or was written by an incompatible version."""


class QueryError(PixqueryError):
    """A search request is malformed (empty query, unreadable query image, bad parameter)."""
