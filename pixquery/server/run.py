"""Run the server: `serve(index_dir)` for people (blocking, optionally opening the browser), and
`BackgroundServer` for tests and benchmarks (a real socket, in a thread, stopped on exit)."""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
import time
import webbrowser
from pathlib import Path
from types import TracebackType

import uvicorn
from fastapi import FastAPI

from pixquery.server.app import LOOPBACK_HOSTS, create_app
from pixquery.server.beacon import remove_beacon, write_beacon
from pixquery.server.limits import Limits

STARTUP_TIMEOUT_S = 120.0
"""Model loading happens before the server reports itself started; a cold ONNX export may take this long."""

MAX_REQUEST_HEAD = 1 << 20
"""Largest request line and headers uvicorn reads (its default, 16 KB, is less than the longest query string the
API's schema admits; a longer one would get uvicorn's plain-text 400 instead of the API's JSON error)."""


def _allowed_hosts(host: str) -> list[str]:
    """Host headers to accept: loopback names for a loopback bind, anything when serving on the network."""
    if host in ("127.0.0.1", "localhost", "::1"):
        return LOOPBACK_HOSTS
    return ["*"]


def url_of(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    shown = f"[{shown}]" if ":" in shown else shown
    return f"http://{shown}:{port}/"


def serve(
    index_dir: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    token: str | None = None,
    open_browser: bool = False,
    limits: Limits | None = None,
    log_level: str = "warning",
    warm_thumbs: int = 5000,
) -> None:
    """Serve the index at `index_dir` until interrupted (Ctrl+C). Binds loopback only unless `host` says otherwise.

    `open_browser` opens the page once the model is loaded; `warm_thumbs` is how many thumbnails to make ahead of
    time in the background (see `create_app`).
    """
    if host not in ("127.0.0.1", "localhost", "::1") and token is None:
        print(
            f"warning: serving on {host} without --token: anyone who can reach this port can see your images",
            file=sys.stderr,
        )
    app = create_app(
        index_dir, token=token, limits=limits, allowed_hosts=_allowed_hosts(host), warm_thumbs=warm_thumbs
    )
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False,
                                           h11_max_incomplete_event_size=MAX_REQUEST_HEAD))
    url = url_of(host, port)

    def announce() -> None:
        # Waits for startup (the model is loaded by then), so the page opens onto a server that answers at once.
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not server.started and not server.should_exit and time.monotonic() < deadline:
            time.sleep(0.05)
        if server.started:
            # Lets a cold `pixquery search` on this index ask this server instead of loading the model.
            with contextlib.suppress(OSError):
                write_beacon(index_dir, url, token_required=token is not None)
            print(f"pixquery is serving {Path(index_dir)} at {url}  (Ctrl+C to stop)", file=sys.stderr)
            if open_browser:
                webbrowser.open(url)

    threading.Thread(target=announce, name="pixquery-announce", daemon=True).start()
    try:
        server.run()
    finally:
        remove_beacon(index_dir)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on `host` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class BackgroundServer:
    """Serve `app` on a free loopback port in a daemon thread: `with BackgroundServer(app) as srv: srv.url`."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.url = f"http://{host}:{self.port}"
        config = uvicorn.Config(app, host=host, port=self.port, log_level="warning", access_log=False,
                                h11_max_incomplete_event_size=MAX_REQUEST_HEAD)
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, name="pixquery-test-server", daemon=True)

    def start(self) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server on port {self.port} did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=30)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
