"""Turn HTTP input (query-string parameters, a JSON spec, a form with an uploaded image) into a `QuerySpec`.

Over HTTP an image is a catalog id or an upload, never a path: a path would let any client make the server read
any file it can. Every error is an `ApiError` naming the field.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from pixquery.api import Library
from pixquery.errors import PixqueryError, QueryError
from pixquery.query.jsonspec import spec_from_dict
from pixquery.query.spec import QuerySpec, WeightedImage, WeightedText
from pixquery.server.limits import ApiError, Limits, check_k, check_text

FORM_FIELDS = {"texts": "q", "filters.folder": "folder", "filters.taken_from": "date_from",
               "filters.taken_to": "date_to", "filters.ext": "ext", "negative_texts": "not"}
"""Spec fields that a simple search's form fields fill (so an error names the field the client sent)."""


def query_error(exc: QueryError, form: bool = False) -> ApiError:
    """A `QueryError` as a 422 naming its field (the form's name for it, for a form request)."""
    name = exc.field
    if form and name is not None:
        name = FORM_FIELDS.get(name, name)
    return ApiError(422, "invalid_query", str(exc), name)


@dataclass
class SearchForm:
    """The simple query parameters shared by `GET /api/search`, the upload form and `GET /api/similar`."""

    q: str | None = None
    k: int = 40
    offset: int = 0
    cutoff: str | None = None
    method: str = "auto"
    alpha: float | None = None
    negatives: list[str] = field(default_factory=list)
    like: list[int] = field(default_factory=list)
    folder: str | None = None
    date_from: str | None = None
    date_to: str | None = None
    ext: list[str] = field(default_factory=list)
    sort: str = "score"


def parse_cutoff_param(value: str | None) -> float | str | None:
    """A cut-off from a query string: empty or "none" is no cut-off, a number is a raw threshold, else a rule."""
    if value is None:
        return None
    text = value.strip()
    if not text or text.lower() in ("none", "off", "false", "0"):
        return None
    try:
        return float(text)
    except ValueError:
        return text


def spec_from_form(form: SearchForm, limits: Limits, upload: Image.Image | None = None) -> QuerySpec:
    """The spec of a simple search: text and/or images (catalog ids, an upload), negatives, method, filters."""
    check_k(form.k, form.offset, limits)
    spec = QuerySpec(k=form.offset + form.k, method=form.method or "auto", sort=form.sort or "score")
    text = check_text(form.q or "", "q", limits)
    if text:
        spec.texts.append(WeightedText(text))
    if len(form.negatives) + len(spec.texts) > limits.max_texts:
        raise ApiError(422, "invalid_request", f"at most {limits.max_texts} texts per query", "not")
    for i, negative in enumerate(form.negatives):
        negative = check_text(negative, f"not[{i}]", limits)
        if negative:
            spec.negative_texts.append(WeightedText(negative))
    for catalog_id in form.like:
        spec.images.append(WeightedImage(catalog_id=int(catalog_id)))
    if upload is not None:
        spec.images.append(WeightedImage(image=upload))
    if form.alpha is not None:
        spec.params["alpha"] = float(form.alpha)
    spec.cutoff = parse_cutoff_param(form.cutoff)
    filters: dict[str, Any] = {
        "folder": form.folder or None,
        "taken_from": form.date_from or None,
        "taken_to": form.date_to or None,
        "ext": form.ext or None,
    }
    spec.filters = {k: v for k, v in filters.items() if v is not None}
    return validated(spec, form=True)


def spec_from_json(data: Any, limits: Limits) -> tuple[QuerySpec, int]:
    """A spec from its JSON form (`pixquery.query.jsonspec`), plus an optional "offset" key for paging."""
    if not isinstance(data, dict):
        raise ApiError(422, "invalid_request", "the body must be a JSON object (a query spec)", "body")
    data = dict(data)
    offset = data.pop("offset", 0)
    if isinstance(offset, bool) or not isinstance(offset, int):
        raise ApiError(422, "invalid_request", "offset: expected an integer", "offset")
    try:
        spec = spec_from_dict(data, base_dir=None, validate=False)
    except QueryError as exc:
        raise query_error(exc) from None
    for key in ("images", "negative_images"):
        for i, image in enumerate(getattr(spec, key)):
            if image.path is not None:
                raise ApiError(
                    422,
                    "invalid_request",
                    f"{key}[{i}]: images are given by catalog id ({{\"id\": 42}}) or uploaded, not by path",
                    f"{key}[{i}]",
                )
    if "k" not in data:
        spec.k = 40
    if isinstance(spec.k, int) and not isinstance(spec.k, bool):
        check_k(spec.k, offset, limits)
        spec.k += offset
    texts = [("texts", t) for t in spec.texts] + [("negative_texts", t) for t in spec.negative_texts]
    if len(texts) > limits.max_texts:
        raise ApiError(422, "invalid_request", f"at most {limits.max_texts} texts per query", "texts")
    for i, (key, item) in enumerate(texts):
        if isinstance(item.text, str):
            check_text(item.text, f"{key}[{i}]", limits)
    return validated(spec), offset


def validated(spec: QuerySpec, form: bool = False) -> QuerySpec:
    """`spec.validate()` with its `QueryError` turned into a 422 naming the field."""
    try:
        return spec.validate()
    except QueryError as exc:
        raise query_error(exc, form) from None


def decode_upload(data: bytes, limits: Limits, target_size: int | None = None) -> Image.Image:
    """Decode an uploaded query image: 413 above the pixel limit, 422 if it is not a readable image. A JPEG decodes
    at a reduced scale near `target_size` (the model's decode size), as indexing decodes photos."""
    if not data:
        raise ApiError(422, "invalid_image", "the uploaded image is empty", "image")
    try:
        # Reading the header only: the size is known before any pixel is decoded (a decompression bomb stops here).
        with Image.open(io.BytesIO(data)) as probe:
            width, height = probe.size
    except Exception:
        message = "the upload is not an image, or a format Pillow cannot read"
        raise ApiError(422, "invalid_image", message, "image") from None
    megapixels = width * height / 1e6
    if megapixels > limits.max_upload_megapixels:
        raise ApiError(
            413,
            "too_large",
            f"the uploaded image is {megapixels:.1f} MP; the limit is {limits.max_upload_megapixels:g} MP",
            "image",
        )
    try:
        return Library.decode_image(data, max_megapixels=limits.max_upload_megapixels, target_size=target_size)
    except MemoryError:
        raise ApiError(413, "too_large", "not enough memory to decode the uploaded image", "image") from None
    except PixqueryError as exc:
        raise ApiError(422, "invalid_image", f"cannot read the uploaded image: {exc}", "image") from None
