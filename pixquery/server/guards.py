"""What protects every request: JSON errors for every failure, security headers, same-origin writes, known Host
names, and the body-size limit."""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware
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


def install_errors(app: FastAPI) -> None:
    """Every error is JSON: {"error": code, "detail": message, "field": field when known}."""

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(QueryError)
    async def bad_query(_: Request, exc: QueryError) -> JSONResponse:
        error = query_error(exc)
        return JSONResponse(error.body(), status_code=error.status)

    @app.exception_handler(NotFoundError)
    async def not_found(_: Request, exc: NotFoundError) -> JSONResponse:
        return JSONResponse({"error": "not_found", "detail": str(exc)}, status_code=404)

    @app.exception_handler(PixqueryError)
    async def index_error(_: Request, exc: PixqueryError) -> JSONResponse:
        return JSONResponse({"error": "unavailable", "detail": str(exc)}, status_code=503)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("query", "path", "body", "header")]
        field = ".".join(loc) or None
        if field == "file_id":
            # A non-numeric id (a path, a traversal attempt) names nothing that exists.
            return JSONResponse({"error": "not_found", "detail": "images are addressed by numeric id"}, 404)
        detail = f"{field}: {first.get('msg', 'invalid')}" if field else str(first.get("msg", "invalid request"))
        body = {"error": "invalid_request", "detail": detail, "field": field,
                "errors": [{"loc": list(e.get("loc", ())), "msg": e.get("msg")} for e in errors]}
        return JSONResponse(body, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse({"error": code, "detail": str(exc.detail)}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def crash(_: Request, exc: Exception) -> JSONResponse:
        # No traceback or message to the client: it may hold paths; the server log has it.
        return JSONResponse({"error": "internal", "detail": "internal server error"}, status_code=500)


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
                refusal = JSONResponse({"error": "forbidden", "detail": "cross-origin request refused"}, 403)
                await refusal(scope, receive, send)
                return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                response_headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    response_headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install_guards(app: FastAPI, allowed_hosts: list[str], limits: Limits) -> None:
    """Security headers and same-origin writes, host checking, and the body limit (outermost, added last)."""
    app.add_middleware(SameOriginGuard)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)
    app.add_middleware(BodySizeLimit, max_bytes=limits.max_upload_bytes + 256 * 1024)
