"""Request parameters of the search routes: query-string parameter classes and the multipart upload form.

Each becomes a `SearchForm` (`pixquery.server.queries`), which becomes a `QuerySpec`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query, Request
from PIL import Image
from pydantic import Field

from pixquery.api import QuerySpec, composition_methods
from pixquery.server.limits import ApiError, BodyTooLarge, Limits
from pixquery.server.queries import SearchForm, decode_upload, spec_from_form

MAX_ID = 2**62
"""Catalog ids are SQLite integers; anything larger is refused by validation before it reaches the catalog."""
Upload = tuple[bytes, str | None]
"""An uploaded file's bytes and the client's file name."""
MAX_TEXT = 10_000
"""Longest text parameter the schema admits (a query's own limit, `Limits.max_query_chars`, is written into the
served schema by `openapi.apply_limits`)."""
MAX_FILTER = 4096
"""Longest filter value (as `pixquery.query.filters.MAX_VALUE_CHARS`)."""
DATE_PATTERN = (r"^(000[1-9]|00[1-9]\d|0[1-9]\d\d|[1-9]\d{3})(-(0[1-9]|1[0-2])(-(0[1-9]|[12]\d|3[01])"
                r"([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$")
"""The date forms the filters read (a year, a month, a day, an ISO datetime); year 0 and month 13 are refused."""
METHOD_PATTERN = "^(" + "|".join(["auto", *composition_methods()]) + ")$"
SORT_PATTERN = "^(score|date)$"
Text = Annotated[str, Field(max_length=MAX_TEXT)]
FilterValue = Annotated[str, Field(max_length=MAX_FILTER)]
CatalogId = Annotated[int, Field(ge=1, le=MAX_ID)]
FORM_TEXT_LIMITS = {"cutoff": 64, "folder": MAX_FILTER, "date_from": 64, "date_to": 64, "method": 64, "sort": 64}
"""Longest value of each text field of the upload form (others: `MAX_TEXT`), as the schema documents them."""
Negatives = Annotated[list[Text], Query(alias="not", max_length=16, description="what results should not show")]
Examples = Annotated[list[CatalogId], Query(max_length=16, description="catalog ids of example images")]
Extensions = Annotated[list[Annotated[str, Field(max_length=16)]], Query(max_length=32,
                                                                        description="file types, e.g. jpg")]

PageSize = Annotated[int, Query(ge=1, le=10_000, description="results per page")]
Offset = Annotated[int, Query(ge=0, le=10_000, description="results to skip (paging)")]
Cutoff = Annotated[str | None, Query(max_length=64, description="'auto', a rule ('mad:4'), a score, or empty")]
Folder = Annotated[str | None, Query(max_length=MAX_FILTER, description="only images in this folder or below")]
DateFrom = Annotated[str | None, Query(pattern=DATE_PATTERN,
                                       description="taken on or after (YYYY, YYYY-MM, YYYY-MM-DD)")]
DateTo = Annotated[str | None, Query(pattern=DATE_PATTERN,
                                     description="taken on or before (YYYY, YYYY-MM, YYYY-MM-DD)")]
Sort = Annotated[str, Query(pattern=SORT_PATTERN, description="'score' or 'date'")]
"""The query parameters "more like this" and a search share, declared once."""


class SimilarParams:
    """Query parameters of "more like this"."""

    def __init__(
        self,
        k: PageSize = 40,
        offset: Offset = 0,
        cutoff: Cutoff = None,
        not_: Negatives = [],  # noqa: B006
        folder: Folder = None,
        date_from: DateFrom = None,
        date_to: DateTo = None,
        ext: Extensions = [],  # noqa: B006
        sort: Sort = "score",
    ) -> None:
        self.k, self.offset, self.cutoff, self.negatives = k, offset, cutoff, not_
        self.folder, self.date_from, self.date_to, self.ext, self.sort = folder, date_from, date_to, ext, sort

    def to_form(self) -> SearchForm:
        """The parameters as a `SearchForm`."""
        return SearchForm(
            k=self.k, offset=self.offset, cutoff=self.cutoff, negatives=list(self.negatives), folder=self.folder,
            date_from=self.date_from, date_to=self.date_to, ext=list(self.ext), sort=self.sort,
        )


class SearchParams(SimilarParams):
    """Query parameters of a search."""

    def __init__(
        self,
        q: Annotated[str | None, Query(max_length=MAX_TEXT, description="what to look for, in words")] = None,
        like: Examples = [],  # noqa: B006
        method: Annotated[str, Query(pattern=METHOD_PATTERN,
                                     description="composition method: auto, sum, weighted, pdv, ...")] = "auto",
        alpha: Annotated[float | None, Query(ge=0, le=1, description="text share for method=weighted")] = None,
        k: PageSize = 40,
        offset: Offset = 0,
        cutoff: Cutoff = None,
        not_: Negatives = [],  # noqa: B006
        folder: Folder = None,
        date_from: DateFrom = None,
        date_to: DateTo = None,
        ext: Extensions = [],  # noqa: B006
        sort: Sort = "score",
    ) -> None:
        super().__init__(k, offset, cutoff, not_, folder, date_from, date_to, ext, sort)
        self.q, self.like, self.method, self.alpha = q, like, method, alpha

    def to_form(self) -> SearchForm:
        form = super().to_form()
        form.q, form.like, form.method, form.alpha = self.q, [int(i) for i in self.like], self.method, self.alpha
        for i in form.like:
            if not 1 <= i <= MAX_ID:
                raise ApiError(422, "invalid_request", f"like: {i} is not a catalog id", "like")
        return form


async def read_multipart(request: Request, limits: Limits) -> tuple[SearchForm, Upload | None]:
    """The search form fields and the uploaded image of a multipart request (fields as in `SearchParams`)."""
    try:
        data = await request.form(max_files=1, max_fields=64, max_part_size=64 * 1024)
    except BodyTooLarge:
        raise  # answered with 413 by the body-size middleware
    except Exception as exc:  # python-multipart and starlette raise several types for a malformed body
        raise ApiError(422, "invalid_form", f"cannot read the form: {exc}", "body") from None
    upload = None
    file = data.get("image")
    if file is not None and not isinstance(file, str):
        upload = (await file.read(limits.max_upload_bytes + 1), file.filename)
        if len(upload[0]) > limits.max_upload_bytes:
            raise ApiError(413, "too_large", "the uploaded image is larger than the upload limit", "image")

    def text(name: str) -> str | None:
        value = data.get(name)
        if not isinstance(value, str) or value == "":
            return None
        if len(value) > FORM_TEXT_LIMITS.get(name, MAX_TEXT):
            raise ApiError(422, "invalid_request", f"{name}: {len(value)} characters; the limit is "
                           f"{FORM_TEXT_LIMITS.get(name, MAX_TEXT)}", name)
        return value

    def number(name: str, kind: type, default: Any) -> Any:
        value = text(name)
        if value is None:
            return default
        try:
            return kind(value)
        except ValueError:
            raise ApiError(422, "invalid_request", f"{name}: expected a number, got {value!r}", name) from None

    like = []
    for value in data.getlist("like"):
        if not isinstance(value, str) or not value.isdigit() or not 1 <= int(value) <= MAX_ID:
            raise ApiError(422, "invalid_request", f"like: {value!r} is not a catalog id", "like")
        like.append(int(value))
    alpha = number("alpha", float, None)
    if alpha is not None and not 0.0 <= alpha <= 1.0:
        raise ApiError(422, "invalid_request", f"alpha must be between 0 and 1, got {alpha}", "alpha")
    form = SearchForm(
        q=text("q"),
        k=number("k", int, 40),
        offset=number("offset", int, 0),
        cutoff=text("cutoff"),
        method=text("method") or "auto",
        alpha=alpha,
        negatives=[v for v in data.getlist("not") if isinstance(v, str) and v.strip()],
        like=like,
        folder=text("folder"),
        date_from=text("date_from"),
        date_to=text("date_to"),
        ext=[v for v in data.getlist("ext") if isinstance(v, str) and v],
        sort=text("sort") or "score",
    )
    return form, upload


def upload_spec(form: SearchForm, upload: Upload | None, limits: Limits, target_size: int | None = None) -> QuerySpec:
    """Decode the upload (413/422 on a bad one; a JPEG at a reduced scale near `target_size`) and build the spec;
    runs in a worker thread."""
    image: Image.Image | None = decode_upload(upload[0], limits, target_size) if upload is not None else None
    return spec_from_form(form, limits, upload=image)
