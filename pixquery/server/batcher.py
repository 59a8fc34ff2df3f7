"""Concurrent searches share their work: requests that arrive together run as one batch.

A text search costs a text-encoder call and a pass over the vectors; eight of them at once cost little more than one
(one encoder batch, one matrix product), while run side by side they only wait for each other's cores. So each
search request hands its query to a `QueryBatcher` and waits; a runner thread takes every query waiting at that
moment (after a short, bounded wait for more to arrive) and runs them through the facade as one batch
(`Library.query_many`). Under load the batches grow by themselves: the queries that arrive while one batch runs
form the next. Alone, a query waits at most `max_wait_s` more than before.

Left alone, eight clients settle into two alternating batches of four: while one runs, the other's clients are busy
reading their answers and sending their next query. A pass over the vectors costs about the same for four queries as
for eight, so the runner waits (at most half the last batch's time, and never longer than `MAX_GATHER_S`) until as
many queries wait as were in the system at once during the last batch: then the eight run as one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pixquery.api import QueryOutcome, QuerySpec

MAX_GATHER_S = 0.05
"""The longest a runner waits for the clients of the last batch to come back (see the module docstring)."""

RunBatch = Callable[[Sequence[QuerySpec]], Sequence[QueryOutcome | Exception]]


@dataclass
class _Waiting:
    spec: QuerySpec
    done: threading.Event = field(default_factory=threading.Event)
    outcome: QueryOutcome | Exception | None = None


@dataclass
class BatchStats:
    """How the batcher has been used (for benchmarks and the status page)."""

    batches: int = 0
    queries: int = 0
    largest: int = 0

    @property
    def mean_batch(self) -> float:
        return self.queries / self.batches if self.batches else 0.0


class QueryBatcher:
    """Collects concurrent queries and runs them in batches on `runners` threads."""

    def __init__(self, run_batch: RunBatch, runners: int = 1, max_batch: int = 32, max_wait_s: float = 0.002) -> None:
        """`run_batch` runs a list of specs and returns one outcome or error per spec, in order. `runners` batches
        may run at once (each on its own library view); a batch holds at most `max_batch` queries; a runner that
        finds queries waiting gives others up to `max_wait_s` to join them."""
        self._run_batch = run_batch
        self.max_batch = max(1, int(max_batch))
        self.max_wait_s = max(0.0, float(max_wait_s))
        self.stats = BatchStats()
        self._waiting: list[_Waiting] = []
        self._active = 0  # queries submitted and not yet answered
        self._peak = 0  # the most active at once since the current batch was taken
        self._last_peak = 1  # ... during the last batch: how many queries to gather for the next
        self._last_run_s = 0.0
        self._ready = threading.Condition()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._runner, name=f"pixquery-batch-{i}", daemon=True)
            for i in range(max(1, int(runners)))
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, spec: QuerySpec) -> QueryOutcome:
        """Run `spec` in the next batch and return its outcome (or raise its own error)."""
        waiting = _Waiting(spec)
        with self._ready:
            if self._closed:
                raise RuntimeError("the query batcher is closed")
            self._waiting.append(waiting)
            self._active += 1
            self._peak = max(self._peak, self._active)
            self._ready.notify_all()  # an idle runner, or one collecting a batch that this query may fill
        try:
            waiting.done.wait()
        finally:
            with self._ready:
                self._active -= 1
        if isinstance(waiting.outcome, Exception):
            raise waiting.outcome
        assert waiting.outcome is not None
        return waiting.outcome

    @property
    def pending(self) -> int:
        """Queries waiting for a runner."""
        with self._ready:
            return len(self._waiting)

    def close(self) -> None:
        """Stop the runners once the queries already waiting have run."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()
        for thread in self._threads:
            thread.join(timeout=30)

    def _take(self) -> list[_Waiting] | None:
        """The next batch: wait for a first query, then give others `max_wait_s` to join, longer (the gather time)
        while fewer wait than were in the system during the last batch. None when closed."""
        with self._ready:
            while not self._waiting:
                if self._closed:
                    return None
                self._ready.wait()
            start = time.monotonic()
            want = min(self.max_batch, max(1, self._last_peak))
            gather = max(self.max_wait_s, min(MAX_GATHER_S, self._last_run_s / 2))
            while len(self._waiting) < self.max_batch and not self._closed:
                limit = self.max_wait_s if len(self._waiting) >= want else gather
                left = limit - (time.monotonic() - start)
                if left <= 0:
                    break
                self._ready.wait(left)
            batch, self._waiting = self._waiting[: self.max_batch], self._waiting[self.max_batch :]
            self._peak = self._active
            self.stats.batches += 1
            self.stats.queries += len(batch)
            self.stats.largest = max(self.stats.largest, len(batch))
            return batch

    def _runner(self) -> None:
        while (batch := self._take()) is not None:
            outcomes: Sequence[Any]
            started = time.monotonic()
            try:
                outcomes = self._run_batch([w.spec for w in batch])
            except Exception as exc:  # the batch as a whole failed (e.g. the index went away): each query hears it
                outcomes = [exc] * len(batch)
            with self._ready:
                self._last_run_s = time.monotonic() - started
                self._last_peak = self._peak
            for waiting, outcome in zip(batch, outcomes, strict=True):
                waiting.outcome = outcome
                waiting.done.set()
