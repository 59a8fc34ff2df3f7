"""Request limits of the HTTP server: sizes, query bounds, and per-client rate limiting (token buckets).

Everything here answers with a 4xx JSON error a person can act on; none of it imports the search stack.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send


@dataclass(frozen=True)
class Limits:
    """What one request may ask for, and how often a client may ask.

    Attributes:
        max_upload_bytes: largest request body (an uploaded query image plus form fields).
        max_upload_megapixels: largest uploaded image, in decoded pixels (guards against decompression bombs).
        max_k: most results one search may return (offset + k for paged searches).
        max_query_chars: longest query text (each positive or negative text).
        max_texts: most texts (positive + negative) in one query spec.
        search_rate, search_burst: token bucket for searches, per client (refill per second, capacity).
        media_rate, media_burst: token bucket for thumbnails and originals, per client; a results grid asks for
            dozens at once, so this bucket is much larger than the search one.
        max_clients: how many clients' buckets are remembered (least recently seen are forgotten first).
    """

    max_upload_bytes: int = 20 * 1024 * 1024
    max_upload_megapixels: float = 50.0
    max_k: int = 500
    max_query_chars: int = 1000
    max_texts: int = 16
    search_rate: float = 20.0
    search_burst: int = 40
    media_rate: float = 400.0
    media_burst: int = 800
    max_clients: int = 4096


class ErrorBody(BaseModel):
    """The body of every error the server answers, whatever the status (as documented in the OpenAPI schema)."""

    error: str = Field(description="a stable code: not_found, changed, invalid_query, too_large, rate_limited, ...")
    detail: str = Field(description="what went wrong and what to do, for a person")
    field: str | None = Field(None, description="the request field at fault, when one is")
    errors: list[dict[str, Any]] | None = Field(None, description="every validation problem (422 from validation)")


class ApiError(Exception):
    """An error answered as `{"error": code, "detail": message, "field": field}` with an HTTP status."""

    def __init__(
        self, status: int, code: str, detail: str, field: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.field = field
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """The JSON body of the response."""
        out: dict[str, Any] = {"error": self.code, "detail": self.detail}
        if self.field is not None:
            out["field"] = self.field
        return out


class TokenBucket:
    """A bucket of `capacity` tokens refilled at `rate` per second; each request takes one."""

    def __init__(self, rate: float, capacity: int, now: float) -> None:
        self.rate = float(rate)
        self.capacity = float(capacity)
        self.tokens = float(capacity)
        self.stamp = now

    def take(self, now: float) -> float:
        """Take a token; return 0 on success, else the seconds until one is available."""
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class RateLimiter:
    """Token buckets keyed by client, bounded in number (an LRU), safe to call from many threads."""

    def __init__(self, rate: float, capacity: int, max_clients: int = 4096, clock=time.monotonic) -> None:
        self.rate = rate
        self.capacity = capacity
        self.max_clients = max_clients
        self._clock = clock
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, client: str) -> None:
        """Take a token for `client`, or raise a 429 `ApiError` carrying Retry-After."""
        with self._lock:
            now = self._clock()
            bucket = self._buckets.get(client)
            if bucket is None:
                bucket = self._buckets[client] = TokenBucket(self.rate, self.capacity, now)
                while len(self._buckets) > self.max_clients:
                    self._buckets.popitem(last=False)
            else:
                self._buckets.move_to_end(client)
            wait = bucket.take(now)
        if wait > 0:
            retry = max(1, math.ceil(wait))
            raise ApiError(
                429, "rate_limited", f"too many requests; try again in {retry} s", headers={"Retry-After": str(retry)}
            )


class BodyTooLarge(Exception):
    """Raised inside `receive` when a streamed request body passes the limit."""


class BodySizeLimit:
    """ASGI middleware refusing request bodies over `max_bytes` with 413, before the app reads them.

    A declared Content-Length is checked up front; a chunked body is counted as it streams in, so an upload
    without a length cannot fill the disk either.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > self.max_bytes
            except ValueError:
                too_big = False  # the server itself rejects a malformed Content-Length
            if too_big:
                await _send_413(send, self.max_bytes)
                return
        seen = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except BodyTooLarge:
            if not started:
                await _send_413(send, self.max_bytes)


async def _send_413(send: Send, max_bytes: int) -> None:
    error = ApiError(413, "too_large", f"the request body is larger than the limit of {max_bytes // (1024 * 1024)} MB")
    body = json.dumps(error.body()).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def check_text(text: str, field: str, limits: Limits) -> str:
    """A query text, stripped; 422 naming `field` when it is too long."""
    if len(text) > limits.max_query_chars:
        raise ApiError(
            422, "invalid_request", f"{field} is {len(text)} characters; the limit is {limits.max_query_chars}", field
        )
    return text.strip()


def check_k(k: int, offset: int, limits: Limits) -> None:
    """422 naming the field when k or offset + k is out of bounds."""
    if k < 1:
        raise ApiError(422, "invalid_request", f"k must be at least 1, got {k}", "k")
    if offset < 0:
        raise ApiError(422, "invalid_request", f"offset must be at least 0, got {offset}", "offset")
    if offset + k > limits.max_k:
        what = "k" if offset == 0 else "offset + k"
        raise ApiError(422, "invalid_request", f"{what} is {offset + k}; the limit is {limits.max_k}", "k")
