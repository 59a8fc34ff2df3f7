"""The files of an index directory, named in one place (the facade, the server and the tools all ask here).

```
INDEX/
  config.json              model spec, dimension, precision, store kind, format version
  catalog.sqlite           the source of truth: one row per file (path, size, mtime, hash, status, metadata), tags
  index.lock               held (flock) by the one writer; searches never take it
  vectors/                 the raw vectors (flat store) and any structure derived from them (faiss, Milvus)
  thumbs/                  thumbnails the server made (rebuildable)
  fingerprints.json        perceptual hashes for duplicate finding, by content hash (rebuildable)
  server.json              only while `pixquery serve` runs on the index: its URL and pid
```
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class IndexLayout:
    """Paths of the parts of the index at `root`."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def catalog(self) -> Path:
        return self.root / "catalog.sqlite"

    @property
    def lock(self) -> Path:
        return self.root / "index.lock"

    @property
    def vectors(self) -> Path:
        return self.root / "vectors"

    @property
    def thumbs(self) -> Path:
        return self.root / "thumbs"

    @property
    def fingerprints(self) -> Path:
        return self.root / "fingerprints.json"

    @property
    def beacon(self) -> Path:
        return self.root / "server.json"
