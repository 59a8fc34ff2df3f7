"""Errors a user can see, each with a message that says what went wrong and what to do."""

from __future__ import annotations


class PixqueryError(Exception):
    """Base of every error pixquery raises on purpose (the CLI prints these without a traceback)."""


class UsageError(PixqueryError):
    """A command given in a way that cannot work (the command line exits with status 2)."""


class IndexLockedError(PixqueryError):
    """Another process is indexing this index right now."""


class ModelMismatchError(PixqueryError):
    """An index was opened with a model other than the one that built it."""


class IndexFormatError(PixqueryError):
    """An index directory is missing files or was written by an incompatible version."""


class NotFoundError(PixqueryError):
    """An id, file or folder the request names does not exist (in the index, or on disk any more)."""


class StaleFileError(PixqueryError):
    """An indexed file changed on disk since it was indexed (or was swapped for something else): re-index it."""


class QueryError(PixqueryError):
    """A search request is malformed (empty query, unreadable query image, bad parameter).

    `field` names the part of the request at fault ("k", "filters.folder", "texts[0]"), when known, so the HTTP
    API can point at it without reading the message.
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field
