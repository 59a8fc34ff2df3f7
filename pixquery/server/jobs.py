"""The background re-index job: `Library.index(roots)` in a child process, with progress reported back.

A child process rather than a thread: it can be stopped at any moment (the index is kill-safe by design: each
batch is committed durably before the next, and a rerun resumes), it owns its own model and its own writer
connections, and it never holds the server's GIL, so searches stay fast while it runs. Stopping sets an event the
child checks after every batch (and sends SIGINT, for a child still loading its model); the indexer stops after
its current batch and releases the index lock; SIGKILL follows if it has not exited after a grace period. The
child is started with "spawn": a fresh interpreter shares no threads or locks with the server.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

STOP_GRACE_S = 15.0
"""How long a stopped job may take to finish its current batch before it is killed."""
PROGRESS_EVERY_S = 0.5


def _run_index(index_dir: str, roots: list[str], messages: Any, stop: Any) -> None:
    """The child: index `roots` into the index at `index_dir`, reporting progress and the outcome on `messages`,
    until done or until `stop` is set."""
    # A server started in the background by a non-interactive shell (`pixquery serve &`, nohup, CI) runs with SIGINT
    # ignored, and its children inherit that: take SIGINT back, so a stop request becomes KeyboardInterrupt here.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from pixquery.api import Library
    from pixquery.errors import PixqueryError

    last = [0.0]

    def progress(stage: str, done: int, total: int) -> None:
        if stop.is_set():  # called after every committed batch: the place to stop cleanly
            raise KeyboardInterrupt
        now = time.monotonic()
        if now - last[0] >= PROGRESS_EVERY_S or done == total:
            last[0] = now
            messages.put(("progress", {"stage": stage, "done": done, "total": total}))

    try:
        with Library.open(index_dir) as library:
            report = library.index(roots, progress=progress)
        messages.put(("done", report.to_dict()))
    except KeyboardInterrupt:
        messages.put(("stopped", None))
    except PixqueryError as exc:
        messages.put(("failed", str(exc)))
    except Exception as exc:  # reported to the page; the server log would be unseen
        messages.put(("failed", f"unexpected error: {type(exc).__name__}: {exc}"))


class ReindexJob:
    """At most one incremental re-index of one index at a time, started and stopped from request handlers."""

    def __init__(self, index_dir: Path) -> None:
        self.index_dir = Path(index_dir)
        self._lock = threading.Lock()
        self._proc: Any = None
        self._stop: Any = None
        self._state = "idle"  # idle, running, stopping, done, failed, stopped
        self._started_at: float | None = None
        self._finished_at: float | None = None
        self._roots = 0
        self._progress: dict[str, Any] | None = None
        self._report: dict[str, Any] | None = None
        self._error: str | None = None

    @property
    def running(self) -> bool:
        """Whether a child process is alive (running or stopping)."""
        with self._lock:
            return self._proc is not None

    def start(self, roots: list[str]) -> bool:
        """Start a re-index of `roots`; False (and nothing started) if one is already running."""
        with self._lock:
            if self._proc is not None:
                return False
            context = multiprocessing.get_context("spawn")
            messages, stop = context.Queue(), context.Event()
            proc = context.Process(target=_run_index, args=(str(self.index_dir), list(roots), messages, stop),
                                   name="pixquery-reindex", daemon=True)
            proc.start()
            self._proc, self._stop = proc, stop
            self._state, self._roots = "running", len(roots)
            self._started_at, self._finished_at = time.time(), None
            self._progress, self._report, self._error = None, None, None
            threading.Thread(target=self._watch, args=(proc, messages), name="pixquery-reindex", daemon=True).start()
            return True

    def _watch(self, proc: Any, messages: Any) -> None:
        outcome: tuple[str, Any] | None = None
        while outcome is None:
            try:
                kind, value = messages.get(timeout=0.2)
            except Exception:  # queue.Empty, or a queue broken by a killed child
                if not proc.is_alive():
                    break
                continue
            if kind == "progress":
                with self._lock:
                    self._progress = value
            else:
                outcome = (kind, value)
        proc.join()
        with self._lock:
            stopping = self._state == "stopping"
            self._proc = None
            self._finished_at = time.time()
            if outcome is None:
                self._state = "stopped" if stopping else "failed"
                if not stopping:
                    self._error = f"the indexer exited with status {proc.exitcode}"
            elif outcome[0] == "done":
                self._state, self._report = "done", outcome[1]
            elif outcome[0] == "stopped":
                self._state = "stopped"
            else:
                self._state, self._error = ("stopped", None) if stopping else ("failed", outcome[1])

    def stop(self, grace_s: float = STOP_GRACE_S) -> bool:
        """Ask a running job to stop; False if none runs. Returns at once; the job ends within `grace_s`."""
        with self._lock:
            proc = self._proc
            if proc is None:
                return False
            self._state = "stopping"
            self._stop.set()
        _signal(proc, signal.SIGINT)
        threading.Timer(grace_s, _signal, args=(proc, signal.SIGKILL)).start()
        return True

    def wait(self, timeout: float | None = None) -> bool:
        """Block until no job runs (for tests and shutdown); True if none runs at the end."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.running:
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def status(self) -> dict[str, Any]:
        """The job's state for the API (no paths: the roots are given as a count, skipped files as a count)."""
        with self._lock:
            end = self._finished_at or time.time()
            return {
                "state": self._state,
                "running": self._proc is not None,
                "roots": self._roots,
                "started_at": self._started_at,
                "finished_at": self._finished_at,
                "seconds": None if self._started_at is None else round(end - self._started_at, 1),
                "progress": self._progress,
                "report": _public_report(self._report),
                "error": self._error,
            }


def _signal(proc: Any, sig: int) -> None:
    """Signal the job's process, if it still runs."""
    if proc.pid is None or not proc.is_alive():
        return
    with contextlib.suppress(ProcessLookupError):  # it exited between the check and the signal
        os.kill(proc.pid, sig)


def _public_report(report: dict[str, Any] | None) -> dict[str, Any] | None:
    """The indexer's report with skipped files reduced to a count (their paths stay on the server)."""
    if report is None:
        return None
    public = {k: v for k, v in report.items() if k != "skipped"}
    public["skipped"] = len(report.get("skipped") or [])
    return public
