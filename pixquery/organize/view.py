"""What organising reads of an index: a small view (encoder, ids and vectors, catalog, store), not the facade.

The facade builds a view (`Library.view()`); tagging, clustering and duplicate finding work on it alone, so they
can be tested and reused without a whole index object and never reach back up to the facade.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from pixquery.layout import IndexLayout
from pixquery.models.base import Encoder
from pixquery.store.base import VectorStore
from pixquery.store.catalog import Catalog, FileRow


@dataclass
class IndexView:
    """An index as organising sees it. `ids` and `vectors` are aligned (every indexed image, ascending id)."""

    encoder: Encoder
    ids: np.ndarray
    vectors: np.ndarray
    catalog: Catalog
    store: VectorStore
    model: str
    """The index's model spec (keys per-model facts kept in the catalog)."""
    read_image: Callable[[FileRow, int | None], Image.Image]
    """Decodes an indexed file (upright RGB; JPEG at reduced scale near the size given), after checking it is
    still the file the index holds; raises `ImageDecodeError` (or `StaleFileError`) when it cannot."""
    layout: IndexLayout | None = None
    """The index's files, where rebuildable results may be kept (None: keep nothing)."""
    _rows: dict[int, FileRow] | None = field(default=None, repr=False)

    def rows(self) -> dict[int, FileRow]:
        """Catalog rows of the view's ids (read once)."""
        if self._rows is None:
            self._rows = self.catalog.get_many(self.ids.tolist())
        return self._rows

    def path_of(self, file_id: int) -> str:
        """The path of an indexed file ("" when its row went away meanwhile)."""
        row = self.rows().get(int(file_id))
        return row.path if row is not None else ""
