"""Organising runs for the page (clusters, duplicate groups): started by a request, made in a worker thread,
kept per index version.

Organising reads every vector, and finding duplicates decodes every image once: seconds on a few hundred photos,
a minute the first time a model names clusters (its vocabulary is embedded once, then cached), minutes on a large
collection. So a request never waits for it: `start` queues a run and answers at once, `state` reports its
progress and, once done, its result. Runs go one at a time through one worker thread (each one keeps the cores
busy; two at once would only slow both), each on its own `Library` view sharing the server's loaded model. A
result belongs to the index version it was made from (`Library.meta("last_indexed_at")`); after a re-index it is
still reported, marked not current, until a new run replaces it.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pixquery.api import Library
from pixquery.errors import PixqueryError
from pixquery.progress import STAGES, ProgressFn

Work = Callable[[Library, dict[str, Any], ProgressFn], dict[str, Any]]
"""What a run does: (its own library view, the run's parameters, a progress callback) -> a JSON-ready result."""
PROGRESS_EVERY_S = 0.25


class Cancelled(Exception):
    """Raised from a run's progress callback when the server shuts down."""


@dataclass
class Run:
    """One organising run: what it was asked, where it stands, what it made."""

    kind: str
    params: dict[str, Any]
    version: str | None
    state: str = "queued"  # queued, running, done, failed
    progress: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    queued_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None

    def public(self, current_version: str | None) -> dict[str, Any]:
        """The run as the API reports it (without its result)."""
        took = None
        if self.started_at is not None and self.finished_at is not None:
            took = round(self.finished_at - self.started_at, 3)
        return {
            "state": self.state,
            "params": dict(self.params),
            "current": self.version == current_version,
            "progress": self.progress,
            "error": self.error,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "took_s": took,
        }


class Organizer:
    """The latest run of each kind of organising, made one at a time in a worker thread.

    Args:
        work: kind -> what a run of that kind does.
        open_view: a new `Library` view of the index for a run (closed when the run ends).
        version: the index's current version (a run's result is current while this is unchanged).
    """

    def __init__(self, work: dict[str, Work], open_view: Callable[[], Library],
                 version: Callable[[], str | None]) -> None:
        self._work = work
        self._open_view = open_view
        self._version = version
        self._runs: dict[str, Run] = {}
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._queue: queue.Queue[Run | None] = queue.Queue()
        # A daemon thread: a server stopped in the middle of a long run exits at once instead of waiting for it
        # (what a run writes, the fingerprint cache and a calibrated threshold, is written atomically).
        self._worker = threading.Thread(target=self._serve, name="pixquery-organize", daemon=True)
        self._worker.start()

    def latest(self, kind: str) -> tuple[Run | None, str | None]:
        """The latest run of `kind` (None if there was none) and the index's current version."""
        self._check(kind)
        with self._lock:
            return self._runs.get(kind), self._version()

    def start(self, kind: str, params: dict[str, Any]) -> tuple[Run, bool]:
        """Queue a run of `kind` with `params` unless one with the same parameters is queued, running, or done on
        the current index version; returns (that run, whether a new one was queued)."""
        self._check(kind)
        version = self._version()
        with self._lock:
            run = self._runs.get(kind)
            if run is not None and run.params == params and (
                run.state in ("queued", "running") or (run.state == "done" and run.version == version)
            ):
                return run, False
            # Other parameters while one is queued or running: the new run replaces it as the latest and follows
            # it in the worker (a replaced run that has not started yet is skipped).
            run = Run(kind, dict(params), version)
            self._runs[kind] = run
        self._queue.put(run)
        return run, True

    def close(self) -> None:
        """Stop the running run at its next progress report and drop queued ones (the server is shutting down)."""
        self._closing.set()
        self._queue.put(None)

    def _serve(self) -> None:
        while (run := self._queue.get()) is not None and not self._closing.is_set():
            self._execute(run)

    def _check(self, kind: str) -> None:
        if kind not in self._work:
            raise ValueError(f"unknown organising kind {kind!r}")

    def _execute(self, run: Run) -> None:
        with self._lock:
            if self._runs.get(run.kind) is not run:
                return  # replaced by a newer request while it waited
            run.state, run.started_at = "running", time.time()
        run.version = self._version()  # the data the run reads is the index as it is now
        last = [0.0]

        def progress(stage: str, done: int, total: int) -> None:
            if self._closing.is_set():
                raise Cancelled
            now = time.monotonic()
            if now - last[0] >= PROGRESS_EVERY_S or done >= total:
                last[0] = now
                label = STAGES.get(stage, (stage, "items"))
                run.progress = {"stage": stage, "label": label[0], "unit": label[1], "done": int(done),
                                "total": int(total)}

        try:
            with self._open_view() as library:
                result = self._work[run.kind](library, run.params, progress)
            run.result, run.state = result, "done"
        except Cancelled:
            run.state, run.error = "failed", "the server stopped before this finished"
        except PixqueryError as exc:
            run.state, run.error = "failed", str(exc)
        except Exception as exc:  # reported to the page; nobody reads the server log
            run.state, run.error = "failed", f"unexpected error: {type(exc).__name__}: {exc}"
        finally:
            run.finished_at = time.time()
