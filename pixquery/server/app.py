"""The HTTP API and the web page: `create_app(index_dir)` returns a FastAPI app serving one index.

Routes (OpenAPI at /openapi.json, interactive docs at /docs):

    GET  /                     the web page (a static shell; it asks for the token when one is required)
    GET  /api/health           liveness, always open
    GET  /api/status           index statistics and the re-index job
    GET  /api/search           text / catalog-image / composed search from query parameters
    POST /api/search           a JSON query spec, or a multipart form with an uploaded image
    GET  /api/similar/{id}     "more like this"
    GET  /api/item/{id}        metadata of one indexed image
    GET  /api/thumb/{id}       its thumbnail (JPEG, cached under the index's thumbs/)
    GET  /api/image/{id}       the original (or a JPEG rendition of formats browsers cannot show)
    GET  /api/folders          folders with indexed images, for the folder filter
    POST /api/reindex          start an incremental re-index in the background
    DELETE /api/reindex        stop it

Images are addressed by catalog id only; no request ever names a file path to read.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import unquote

from fastapi import Depends, FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, Response, StreamingResponse

import pixquery
from pixquery.api import Library, composition_methods
from pixquery.server.guards import SafeJSONResponse, install_errors, install_guards
from pixquery.server.limits import ApiError, Limits, RateLimiter
from pixquery.server.openapi import IMAGE_TYPES, apply_limits, binary, errors, search_body
from pixquery.server.params import MAX_ID, SearchParams, SimilarParams, read_multipart, upload_spec
from pixquery.server.queries import spec_from_form, spec_from_json
from pixquery.server.service import IndexService
from pixquery.server.thumbs import cache_key
from pixquery.server.views import install_views

LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "[::1]", "::1"]
TOKEN_COOKIE = "pixquery_token"
STATIC_FILES = {"app.js": "text/javascript", "style.css": "text/css", "icon.svg": "image/svg+xml"}
CACHE_FOREVER = "private, max-age=31536000, immutable"

FileId = Annotated[int, PathParam(ge=1, le=MAX_ID, description="catalog id of an indexed image")]
Version = Annotated[str | None, Query(max_length=64, description="the content version from a result's URL")]


def create_app(
    library_path: str | Path,
    token: str | None = None,
    limits: Limits | None = None,
    roots: list[str] | None = None,
    allowed_hosts: list[str] | None = None,
    warm_up: bool = True,
    warm_thumbs: int = 5000,
    search_threads: int | None = None,
    batch_searches: bool = True,
) -> FastAPI:
    """A FastAPI app serving the index at `library_path`.

    Args:
        token: when set, every route but /api/health and the page shell needs `Authorization: Bearer TOKEN`
            (thumbnails and images also accept it from the page's cookie, since <img> cannot send headers).
        limits: request limits (sizes, k, query length, rate per client).
        roots: folders a re-index scans (default: those the index recorded, else the folders holding its files).
        allowed_hosts: Host header values accepted (default: loopback names only, which stops DNS-rebinding
            attacks from web pages on a machine that serves on 127.0.0.1); ["*"] accepts any.
        warm_up: load the model at startup so the first search is fast, and start making thumbnails.
        warm_thumbs: how many thumbnails (newest files first) to make ahead of time in a low-priority thread;
            0 makes them only when asked for.
        search_threads: searches run at once (default: up to 4, one per core); more wait their turn.
        batch_searches: text searches that arrive together run as one batch (one encoder call, one pass over the
            vectors); False runs each alone (a baseline for benchmarks/serve_load.py).
    """
    limits = limits or Limits()
    service = IndexService(library_path, roots=roots, warm_thumbs=warm_thumbs, search_threads=search_threads,
                           batch_searches=batch_searches)
    search_limiter = RateLimiter(limits.search_rate, limits.search_burst, limits.max_clients)
    media_limiter = RateLimiter(limits.media_rate, limits.media_burst, limits.max_clients)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if warm_up:
            await run_in_threadpool(service.warm_up)
        yield
        await run_in_threadpool(service.close)

    app = FastAPI(
        title="pixquery",
        version=pixquery.__version__,
        description="Zero-shot image search over one pixquery index. Images are addressed by catalog id. Every "
                    "error answers one JSON shape, ErrorBody.",
        lifespan=lifespan,
        default_response_class=SafeJSONResponse,  # file names that are not UTF-8 travel as JSON escapes
    )
    app.state.service = service
    app.state.limits = limits
    install_errors(app)
    install_guards(app, allowed_hosts or LOOPBACK_HOSTS, limits)

    def authorised(request: Request, allow_cookie: bool) -> None:
        if token is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given:
            given = unquote(request.cookies.get(TOKEN_COOKIE, "")) if allow_cookie else ""
        if not given or not hmac.compare_digest(given.strip().encode(), token.encode()):
            raise ApiError(
                401, "unauthorized", "a valid token is required: send Authorization: Bearer TOKEN",
                headers={"WWW-Authenticate": "Bearer"},
            )

    # The rate limit comes first, so guessing tokens is as slow as searching.
    def api_auth(request: Request) -> None:
        search_limiter.check(_client(request))
        authorised(request, allow_cookie=False)

    def media_auth(request: Request) -> None:
        media_limiter.check(_client(request))
        authorised(request, allow_cookie=True)

    api = [Depends(api_auth)]
    media = [Depends(media_auth)]

    # --- page ---------------------------------------------------------------------------------------------
    page = _static("index.html")

    @app.get("/", include_in_schema=False)
    def index_page() -> HTMLResponse:
        return HTMLResponse(page, headers={"Cache-Control": "no-cache"})

    @app.get("/static/{name}", include_in_schema=False)
    def static_file(name: str) -> Response:
        if name not in STATIC_FILES:  # a fixed list: nothing else under the package is reachable
            raise ApiError(404, "not_found", "no such file")
        return Response(_static(name), media_type=STATIC_FILES[name], headers={"Cache-Control": "no-cache"})

    # --- api ----------------------------------------------------------------------------------------------
    @app.get("/api/health", tags=["server"], responses=errors(auth=False))
    def health() -> dict[str, Any]:
        """Liveness; needs no token."""
        return {"ok": True, "version": pixquery.__version__, "auth": token is not None}

    @app.get("/api/status", tags=["server"], dependencies=api, responses=errors())
    def status() -> dict[str, Any]:
        """Index statistics (model, counts, size) and the state of the background re-index."""
        data = service.status()
        data["limits"] = {
            "max_k": limits.max_k,
            "max_upload_bytes": limits.max_upload_bytes,
            "max_upload_megapixels": limits.max_upload_megapixels,
            "max_query_chars": limits.max_query_chars,
        }
        data["methods"] = ["auto", *composition_methods()]
        return data

    @app.get("/api/folders", tags=["server"], dependencies=api, responses=errors())
    def folders() -> list[dict[str, Any]]:
        """Folders that hold indexed images, with counts, most populated first."""
        return service.folders()

    @app.get("/api/search", tags=["search"], dependencies=api, responses=errors(404, 422))
    def search_get(form: Annotated[SearchParams, Depends()]) -> dict[str, Any]:
        """Search by text (`q`), by indexed images (`like`), or both, with negatives, method and filters."""
        spec = spec_from_form(form.to_form(), limits)
        return service.search(spec, form.offset)

    @app.post("/api/search", tags=["search"], dependencies=api, responses=errors(403, 404, 413, 415, 422),
              openapi_extra=search_body(limits, ["auto", *composition_methods()]))
    async def search_post(request: Request) -> dict[str, Any]:
        """A JSON query spec (`pixquery.query.jsonspec`, plus "offset"), or a multipart form: the GET parameters
        plus an `image` file upload for "find images like this one" and composed queries ("this, but red")."""
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind == "application/json":
            try:
                data = await request.json()
            except ValueError as exc:
                raise ApiError(422, "invalid_json", f"the body is not valid JSON: {exc}", "body") from None
            except RecursionError:
                raise ApiError(422, "invalid_json", "the body nests too deeply to be a query spec", "body") from None
            spec, offset = spec_from_json(data, limits)
            return await run_in_threadpool(service.search, spec, offset)
        if kind == "multipart/form-data":
            form, upload = await read_multipart(request, limits)
            decode_size = service.library.encoder.decode_size
            spec = await run_in_threadpool(upload_spec, form, upload, limits, decode_size)
            try:
                return await run_in_threadpool(service.search, spec, form.offset)
            finally:
                del spec, upload  # the decoded upload: freed now, then handed back to the system
                await run_in_threadpool(Library.release_memory)
        raise ApiError(415, "unsupported_media_type", "send application/json or multipart/form-data", "body")

    @app.get("/api/similar/{file_id}", tags=["search"], dependencies=api, responses=errors(404, 422))
    def similar(file_id: FileId, form: Annotated[SimilarParams, Depends()]) -> dict[str, Any]:
        """Images most like the indexed image `file_id` (itself left out)."""
        service.row(file_id)
        search_form = form.to_form()
        search_form.like = [file_id]
        spec = spec_from_form(search_form, limits)
        return service.search(spec, form.offset, exclude=file_id)

    @app.get("/api/item/{file_id}", tags=["images"], dependencies=media, responses=errors(404, 422))
    def item(file_id: FileId) -> dict[str, Any]:
        """Metadata of an indexed image: size, format, date taken, camera, location, file name and folder."""
        return service.item(file_id)

    @app.get("/api/thumb/{file_id}", tags=["images"], dependencies=media, response_class=FileResponse,
             responses={**binary("image/jpeg", description="the thumbnail"), **errors(404, 409, 422)})
    def thumb(file_id: FileId, v: Version = None) -> FileResponse:
        """A JPEG thumbnail (at most 400 px); cacheable for good when `v` matches the current version."""
        path = service.thumbnail(file_id)
        return FileResponse(path, media_type="image/jpeg", headers=_cache_headers(path, v))

    @app.get("/api/image/{file_id}", tags=["images"], dependencies=media, response_class=StreamingResponse,
             responses={**binary(*IMAGE_TYPES, description="the original, or a JPEG rendition"),
                        **errors(404, 409, 422)})
    def image(file_id: FileId, v: Version = None, download: bool = False) -> Response:
        """The original file (`download=true`: as an attachment), or a JPEG rendition for formats browsers
        cannot display (TIFF, HEIC, PNM, JPEG 2000). Only ever the very file indexed: a file changed or swapped
        since indexing answers 409, one gone 404."""
        rendition = None if download else service.rendition(file_id)
        if rendition is not None:
            path, row = rendition
            headers = {"Cache-Control": CACHE_FOREVER if v and v == cache_key(row) else "no-cache"}
            return FileResponse(path, media_type="image/jpeg", headers=headers)
        chunks, media_type, row = service.original(file_id, download)
        headers = {"Cache-Control": CACHE_FOREVER if v and v == cache_key(row) else "no-cache",
                   "Content-Length": str(row.size)}
        if download:
            headers["Content-Disposition"] = content_disposition(Path(row.path).name)
        return StreamingResponse(chunks, media_type=media_type, headers=headers)

    @app.post("/api/reindex", tags=["server"], dependencies=api, status_code=202, responses=errors(403, 409))
    def reindex_start() -> dict[str, Any]:
        """Start an incremental re-index of the index's folders in the background; searches keep working."""
        return {"reindex": service.start_reindex()}

    @app.delete("/api/reindex", tags=["server"], dependencies=api, status_code=202, responses=errors(403, 409))
    def reindex_stop() -> dict[str, Any]:
        """Stop the running re-index after its current batch (what it committed stays; a rerun resumes)."""
        return {"reindex": service.stop_reindex()}

    install_views(app, service, api)

    def schema() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = apply_limits(FastAPI.openapi(app), limits)
        return app.openapi_schema

    app.openapi = schema  # type: ignore[method-assign]
    return app


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _static(name: str) -> bytes:
    return resources.files("pixquery.server").joinpath("static", name).read_bytes()


def content_disposition(name: str) -> str:
    """An attachment header for any file name: an ASCII fallback and the exact name RFC 5987-encoded."""
    from urllib.parse import quote

    fallback = "".join(ch if 32 <= ord(ch) < 127 and ch not in '"\\' else "_" for ch in name) or "image"
    return f"attachment; filename=\"{fallback}\"; filename*=utf-8''{quote(name.encode('utf-8', 'surrogateescape'))}"


def _cache_headers(path: Path, version: str | None) -> dict[str, str]:
    # The file name ends with the content version; a URL carrying the same version never changes.
    current = path.stem.rsplit("-", 1)[-1]
    return {"Cache-Control": CACHE_FOREVER if version and version == current else "no-cache"}


