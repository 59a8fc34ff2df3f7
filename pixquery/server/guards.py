"""What protects every request: JSON errors of one shape for every failure, security headers, same-origin writes,
known Host names, and the body-size limit."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pixquery.errors import NotFoundError, PixqueryError, QueryError
from pixquery.server.limits import ApiError, BodySizeLimit, Limits
from pixquery.server.queries import query_error

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
}


class SafeJSONResponse(JSONResponse):
    """JSON that any text can travel in. A file name that is not valid UTF-8 (kept losslessly by the index as
    surrogate escapes) cannot be encoded as UTF-8 JSON; such a body is written with \\u escapes instead, which JSON
    parsers read back to the same string (as the CLI's --json does)."""

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except UnicodeEncodeError:
            return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


def error_response(status: int, code: str, detail: str, field: str | None = None,
                   headers: dict[str, str] | None = None) -> SafeJSONResponse:
    """An error in the one documented shape (`limits.ErrorBody`)."""
    return SafeJSONResponse(ApiError(status, code, detail, field).body(), status_code=status, headers=headers)


def allowed_methods(app: ASGIApp, scope: Scope) -> list[str]:
    """Every method some route accepts at the request's path (OPTIONS always), for the Allow header: a path served by
    several routes (GET and POST /api/search) lists them all."""
    methods = {"OPTIONS"}
    for route in getattr(app, "routes", []):
        match, _ = route.matches(scope)
        if match != Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)


def install_errors(app: FastAPI) -> None:
    """Every error is JSON: {"error": code, "detail": message, "field": field when known}."""

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return SafeJSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(QueryError)
    async def bad_query(_: Request, exc: QueryError) -> JSONResponse:
        error = query_error(exc)
        return SafeJSONResponse(error.body(), status_code=error.status)

    @app.exception_handler(NotFoundError)
    async def not_found(_: Request, exc: NotFoundError) -> JSONResponse:
        return error_response(404, "not_found", str(exc))

    @app.exception_handler(PixqueryError)
    async def index_error(_: Request, exc: PixqueryError) -> JSONResponse:
        return error_response(503, "unavailable", str(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("query", "path", "body", "header")]
        field = ".".join(loc) or None
        if field == "file_id":
            # A non-numeric id (a path, a traversal attempt) names nothing that exists.
            return error_response(404, "not_found", "images are addressed by numeric id", "id")
        detail = f"{field}: {first.get('msg', 'invalid')}" if field else str(first.get("msg", "invalid request"))
        body = {"error": "invalid_request", "detail": detail, "field": field,
                "errors": [{"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg"))} for e in errors]}
        return SafeJSONResponse(body, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 405:
            # Starlette's Allow names only the first route at the path; list them all. OPTIONS is answered here.
            allow = ", ".join(allowed_methods(request.app, request.scope))
            if request.method == "OPTIONS":
                return Response(status_code=204, headers={"Allow": allow})
            return error_response(405, "method_not_allowed", f"{request.method} is not allowed here; use {allow}",
                                  headers={"Allow": allow})
        code = {404: "not_found"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def crash(_: Request, exc: Exception) -> JSONResponse:
        # No traceback or message to the client: it may hold paths; the server log has it.
        return error_response(500, "internal", "internal server error")


class SameOriginGuard:
    """ASGI middleware: refuse cross-site state-changing requests and add security headers to every response.

    A pure ASGI class rather than `@app.middleware("http")`, which would wrap errors raised while the body is
    read (the body-size limit's) in exception groups.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if scope["method"] not in ("GET", "HEAD", "OPTIONS"):
            origin = headers.get("origin")
            if origin and urlsplit(origin).netloc != headers.get("host"):
                # A page on another site may not start re-indexes or searches with this browser's cookies.
                refusal = error_response(403, "forbidden", "cross-origin request refused")
                await refusal(scope, receive, send)
                return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                response_headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    response_headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


class KnownHosts:
    """ASGI middleware: only requests whose Host header names an allowed host (an exact name, "*.domain", or "*")
    reach the app; others get a 400 in the documented error shape. Stops DNS-rebinding pages from reaching a server
    bound to 127.0.0.1."""

    def __init__(self, app: ASGIApp, allowed_hosts: list[str]) -> None:
        self.app = app
        self.allow_any = "*" in allowed_hosts
        self.exact = {h.lower() for h in allowed_hosts if not h.startswith("*.")}
        self.suffixes = tuple(h[1:].lower() for h in allowed_hosts if h.startswith("*."))

    def allowed(self, host_header: str) -> bool:
        host = host_header.strip().lower()
        if host.startswith("["):  # an IPv6 literal, with or without a port: [::1]:8000
            name = host[: host.find("]") + 1] if "]" in host else host
        else:
            name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        return name in self.exact or name.strip("[]") in self.exact or (bool(name) and name.endswith(self.suffixes))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self.allow_any:
            await self.app(scope, receive, send)
            return
        if not self.allowed(Headers(scope=scope).get("host", "")):
            await error_response(400, "bad_host", "this server does not answer to that host name")(scope, receive, send)
            return
        await self.app(scope, receive, send)


def install_guards(app: FastAPI, allowed_hosts: list[str], limits: Limits) -> None:
    """Security headers and same-origin writes, host checking, and the body limit (outermost, added last)."""
    app.add_middleware(SameOriginGuard)
    app.add_middleware(KnownHosts, allowed_hosts=allowed_hosts)
    app.add_middleware(BodySizeLimit, max_bytes=limits.max_upload_bytes + 256 * 1024)
