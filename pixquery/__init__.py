"""pixquery: zero-shot image retrieval. `from pixquery import Library`."""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"
__all__ = ["Library", "QuerySpec", "__version__"]

if TYPE_CHECKING:
    from pixquery.api import Library
    from pixquery.query.spec import QuerySpec


def __getattr__(name: str):  # lazy, so `import pixquery` stays cheap for a cold CLI query
    if name == "Library":
        from pixquery.api import Library

        return Library
    if name == "QuerySpec":
        from pixquery.query.spec import QuerySpec

        return QuerySpec
    raise AttributeError(name)
