"""The background re-index job: `python -m pixquery index ROOTS --index DIR` in a child process.

A child process rather than a thread: it can be stopped at any moment (the index is kill-safe by design: each
batch is committed durably before the next, and a rerun resumes), it owns its own model and its own writer
connections, and it never holds the server's GIL, so searches stay fast while it runs. Stopping sends SIGINT
(the CLI finishes cleanly and releases the index lock), then SIGKILL if it has not exited after a grace period.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pixquery
from pixquery.store.catalog import FileRow

STOP_GRACE_S = 15.0
"""How long a stopped job may take to finish its current batch before it is killed."""
_STDERR_TAIL = 2000


def covering_roots(rows: Iterable[FileRow]) -> list[str]:
    """The fewest folders that hold every file of the catalog: the folders no other listed folder contains.

    Used when the index did not record the folders it was built from; re-indexing these finds changed, moved and
    deleted files everywhere the index already looks (new sibling folders need an explicit `pixquery index`).
    """
    folders = sorted({row.folder for row in rows})
    roots: list[str] = []
    for folder in folders:  # sorted, so a parent always comes before its children
        if not any(folder == r or folder.startswith(r.rstrip(os.sep) + os.sep) for r in roots):
            roots.append(folder)
    return roots


class ReindexJob:
    """At most one incremental re-index of one index at a time, started and stopped from request handlers."""

    def __init__(self, index_dir: Path, python: str = sys.executable) -> None:
        self.index_dir = Path(index_dir)
        self.python = python
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[str] | None = None
        self._state = "idle"  # idle, running, stopping, done, failed, stopped
        self._started_at: float | None = None
        self._finished_at: float | None = None
        self._roots = 0
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
            command = [self.python, "-m", "pixquery", "index", *roots, "--index", str(self.index_dir), "--json"]
            self._proc = subprocess.Popen(
                command,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                text=True,
                env=_child_env(),
                start_new_session=True,  # our signals reach the job only; a Ctrl+C on the server reaches us only
                preexec_fn=_listen_to_sigint,
            )
            self._state, self._roots = "running", len(roots)
            self._started_at, self._finished_at = time.time(), None
            self._report, self._error = None, None
            threading.Thread(target=self._watch, args=(self._proc,), name="pixquery-reindex", daemon=True).start()
            return True

    def _watch(self, proc: subprocess.Popen[str]) -> None:
        out, err = proc.communicate()
        with self._lock:
            stopped = self._state == "stopping"
            self._proc = None
            self._finished_at = time.time()
            if proc.returncode == 0:
                self._state = "done"
                try:
                    self._report = json.loads(out)
                except json.JSONDecodeError:
                    self._report = None
            elif stopped:
                self._state = "stopped"
            else:
                self._state = "failed"
                self._error = _last_error(err) or f"the indexer exited with status {proc.returncode}"

    def stop(self, grace_s: float = STOP_GRACE_S) -> bool:
        """Ask a running job to stop; False if none runs. Returns at once; the job ends within `grace_s`."""
        with self._lock:
            proc = self._proc
            if proc is None:
                return False
            self._state = "stopping"
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
        """The job's state for the API (no paths: the roots are given as a count)."""
        with self._lock:
            end = self._finished_at or time.time()
            return {
                "state": self._state,
                "running": self._proc is not None,
                "roots": self._roots,
                "started_at": self._started_at,
                "finished_at": self._finished_at,
                "seconds": None if self._started_at is None else round(end - self._started_at, 1),
                "report": _public_report(self._report),
                "error": self._error,
            }


def _listen_to_sigint() -> None:
    """In the job, before exec: take SIGINT's default action back, so Python turns it into KeyboardInterrupt.

    A server started in the background by a non-interactive shell (`pixquery serve &` in a script, nohup, CI)
    inherits SIGINT *ignored*, and so would its jobs: the stop request would then do nothing until the SIGKILL
    after the grace period, and a job that finished meanwhile would report "done" instead of "stopped".
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _signal(proc: subprocess.Popen[str], sig: int) -> None:
    """Signal the job's process group, if it still exists (it is ours: started with start_new_session)."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):  # it exited between the poll and the signal
        os.killpg(proc.pid, sig)


def _child_env() -> dict[str, str]:
    """The server's environment, with the directory this pixquery was imported from first on PYTHONPATH."""
    env = dict(os.environ)
    source = str(Path(pixquery.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (source, env.get("PYTHONPATH")) if p)
    return env


def _last_error(stderr: str) -> str | None:
    """The CLI's one-line `error: ...` message, else the tail of stderr."""
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("error:"):
            return line.removeprefix("error:").strip()
    return "\n".join(lines)[-_STDERR_TAIL:] or None


def _public_report(report: dict[str, Any] | None) -> dict[str, Any] | None:
    """The indexer's JSON report with skipped files reduced to a count (their paths stay on the server)."""
    if report is None:
        return None
    public = {k: v for k, v in report.items() if k != "skipped"}
    public["skipped"] = len(report.get("skipped") or [])
    return public
