"""Which structure fits a collection: exact flat, an HNSW graph, or a compressed IVF-PQ index.

The thresholds come from `benchmarks/ann_scale.py` on 2 CPU cores (512-d unit vectors, k=10, one query at a time):

- below `FLAT_MAX_ROWS` vectors exact search is always right, costs no build and answers one query in tens of
  milliseconds (p50 16 ms at 20k, 140 ms at 100k on 2 cores busy with other jobs), so `auto` keeps it flat;
- above it, HNSW answers in well under a millisecond at recall@10 >= 0.99, but holds every vector in memory plus its
  graph (about 2.3 KiB per 512-d vector; 2.3 GB at 1M), so it is chosen while that fits in the memory budget;
- beyond the budget, IVF-PQ keeps 32-byte codes (plus an 8-byte id) in memory and re-ranks a short list with the
  raw vectors read from disk: 61 bytes per vector at 100k (the coarse centroids weigh more at small sizes), under
  3 % of HNSW's memory, at a measured recall@10 of 0.986 and the same sub-millisecond p50.

The memory budget defaults to a quarter of physical memory and can be set with the `memory_budget` parameter (bytes).
"""

from __future__ import annotations

import math
import os

FLAT_MAX_ROWS = 50_000
"""`auto` stays exact below this many vectors."""

HNSW_GRAPH_BYTES_PER_LINK = 4
DEFAULT_BUDGET_FRACTION = 0.25


def physical_memory_bytes() -> int:
    """Total RAM of this machine (0 when the OS does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 0


def default_memory_budget() -> int:
    """A quarter of physical memory: room left for the model, the decoder threads and the OS page cache."""
    return int(physical_memory_bytes() * DEFAULT_BUDGET_FRACTION) or 4 << 30


def hnsw_bytes(rows: int, dim: int, m: int = 32) -> int:
    """Memory of an HNSW index: every vector in float32 plus about 2*M neighbour links (4 bytes each) on level 0."""
    return int(rows * (dim * 4 + 2 * m * HNSW_GRAPH_BYTES_PER_LINK * 1.05))


def choose_index(
    rows: int,
    dim: int,
    memory_budget: int | None = None,
    flat_max_rows: int = FLAT_MAX_ROWS,
    hnsw_m: int = 32,
) -> str:
    """"flat", "hnsw" or "ivfpq" for a collection of `rows` vectors of `dim` floats under a memory budget (bytes)."""
    if rows < flat_max_rows:
        return "flat"
    budget = memory_budget if memory_budget is not None else default_memory_budget()
    return "hnsw" if hnsw_bytes(rows, dim, hnsw_m) <= budget else "ivfpq"


def ivf_nlist(rows: int) -> int:
    """Number of IVF lists: the power of two nearest 4*sqrt(rows), with at least 39 training points per list."""
    target = 4 * math.sqrt(max(rows, 1))
    nlist = 2 ** round(math.log2(max(target, 1)))
    while nlist > 64 and nlist * 39 > rows:
        nlist //= 2
    return int(min(max(nlist, 16), 65536))
