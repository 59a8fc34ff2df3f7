"""What the OpenAPI schema says beyond the route signatures: every error status a route answers, in the one error
shape (`limits.ErrorBody`), the media types of image responses, and the request bodies of `POST /api/search`
(which the route reads itself, so FastAPI cannot infer them).

Kept beside the routes' declarations so that the schema and what the server does cannot drift apart: tests run
schemathesis against the live server and check every response against this schema.
"""

from __future__ import annotations

from typing import Any

from pixquery.server.limits import ErrorBody, Limits
from pixquery.server.params import DATE_PATTERN

ERROR_MEANINGS = {
    400: "the Host header names a host this server does not answer to",
    401: "a token is required (Authorization: Bearer TOKEN)",
    403: "a cross-origin request that would change state",
    404: "no such indexed image, or its file is gone (re-index)",
    405: "the method is not allowed on this path (the Allow header lists those that are)",
    409: "the file changed since it was indexed (re-index), or the re-index job is not in that state",
    413: "the request body or the uploaded image is larger than the limits",
    415: "the body is neither application/json nor multipart/form-data",
    422: "a parameter, the query spec or the uploaded image is invalid; `field` names it",
    429: "too many requests from this client; the Retry-After header says when to try again",
    503: "the index cannot be used right now (being created, or an incompatible format)",
}
COMMON = (400, 405, 429, 503)
"""Statuses any route may answer: the host check, a wrong method, the rate limit, an unusable index."""
IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp", "image/bmp", "image/avif",
               "application/octet-stream")


def errors(*statuses: int, auth: bool = True) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: each status with its meaning and the error body's model."""
    codes = sorted(set(statuses) | set(COMMON) | ({401} if auth else set()))
    return {code: {"model": ErrorBody, "description": ERROR_MEANINGS[code]} for code in codes}


def binary(*media_types: str, description: str) -> dict[int | str, dict[str, Any]]:
    """A 200 response whose body is a file of one of `media_types`."""
    content = {kind: {"schema": {"type": "string", "format": "binary"}} for kind in media_types}
    return {200: {"description": description, "content": content}}


def _texts(limits: Limits) -> dict[str, Any]:
    text = {"type": "string", "minLength": 1, "maxLength": limits.max_query_chars, "pattern": r"\S"}
    weighted = {"type": "object", "additionalProperties": False, "required": ["text"],
                "properties": {"text": text, "weight": _weight()}}
    return {"type": "array", "maxItems": limits.max_texts, "items": {"anyOf": [text, weighted]}}


def _weight() -> dict[str, Any]:
    return {"type": "number", "minimum": -1000, "maximum": 1000, "default": 1.0}


def _images() -> dict[str, Any]:
    image = {"type": "object", "additionalProperties": False, "required": ["id"],
             "properties": {"id": {"type": "integer", "minimum": 1, "maximum": 2**62}, "weight": _weight()}}
    return {"type": "array", "maxItems": 16, "items": image}


def _filters() -> dict[str, Any]:
    text = {"type": "string", "minLength": 1, "maxLength": 4096, "pattern": r"\S"}
    texts = {"anyOf": [text, {"type": "array", "minItems": 1, "maxItems": 100, "items": text}]}
    date = {"type": "string", "pattern": DATE_PATTERN}
    pixels = {"type": "integer", "minimum": 0}
    return {
        "type": "object", "additionalProperties": False,
        "description": "metadata conditions, all of which must hold (see pixquery.query.filters)",
        "properties": {
            "folder": texts, "glob": texts, "taken_from": date, "taken_to": date, "camera_make": texts,
            "camera_model": texts, "ext": texts, "min_width": pixels, "max_width": pixels, "min_height": pixels,
            "max_height": pixels, "tags": texts, "any_tags": texts, "min_tag_score": {"type": "number"},
            "has_gps": {"type": "boolean"},
        },
    }


def _rerank() -> dict[str, Any]:
    option = {"type": "number", "exclusiveMinimum": 0, "maximum": 1000}
    return {
        "type": "object", "additionalProperties": False,
        "description": "re-ranking of the results (see pixquery.query.rerank)",
        "properties": {
            "hubness": {"anyOf": [{"type": "string", "enum": ["qbnorm", "csls"]}, {"type": "null"}]},
            "expansion": {"anyOf": [{"type": "string", "enum": ["aqe", "dba"]}, {"type": "null"}]},
            "diversity": {"type": "number", "minimum": 0, "maximum": 1},
            "pool": {"anyOf": [{"type": "integer", "minimum": 1, "maximum": 100_000}, {"type": "null"}]},
            "options": {"type": "object", "additionalProperties": False,
                        "properties": {name: option for name in ("beta", "csls_k", "aqe_m", "aqe_alpha", "dba_m")}},
        },
    }


def search_body(limits: Limits, methods: list[str]) -> dict[str, Any]:
    """The request body of `POST /api/search`: a JSON query spec, or a form with an uploaded image."""
    spec = {
        "type": "object", "additionalProperties": False,
        "description": "a query spec (pixquery.query.jsonspec) plus `offset` for paging; a text or an image is "
                       "required. Images are catalog ids: over HTTP no request names a file path.",
        "properties": {
            "texts": _texts(limits), "images": _images(), "negative_texts": _texts(limits),
            "negative_images": _images(), "negative_mode": {"type": "string", "enum": ["penalty", "subtract"]},
            "method": {"type": "string", "enum": methods},
            "params": {"type": "object", "description": "the method's parameters, e.g. {\"alpha\": 0.6} (names and "
                                                        "types by method; see pixquery.query.compose)"},
            "filters": _filters(), "k": {"type": "integer", "minimum": 1, "maximum": limits.max_k},
            "offset": {"type": "integer", "minimum": 0, "maximum": limits.max_k - 1},
            "cutoff": {"anyOf": [{"type": "number"}, {"type": "string", "maxLength": 64}, {"type": "null"}]},
            "sort": {"type": "string", "enum": ["score", "date"]},
            "rerank": _rerank(),
        },
        "anyOf": [{"required": ["texts"], "properties": {"texts": {"minItems": 1}}},
                  {"required": ["images"], "properties": {"images": {"minItems": 1}}}],
    }
    form = {
        "type": "object",
        "description": "the GET /api/search parameters as form fields, plus `image`: a file to search by",
        "properties": {
            "image": {"type": "string", "format": "binary"},
            "q": {"type": "string", "maxLength": limits.max_query_chars},
            "k": {"type": "integer", "minimum": 1, "maximum": limits.max_k},
            "offset": {"type": "integer", "minimum": 0, "maximum": limits.max_k - 1},
            "method": {"type": "string", "enum": methods},
            "alpha": {"type": "number", "minimum": 0, "maximum": 1},
            "cutoff": {"type": "string", "maxLength": 64},
            "folder": {"type": "string", "maxLength": 4096},
            "sort": {"type": "string", "enum": ["score", "date"]},
        },
        "anyOf": [{"required": ["q"], "properties": {"q": {"pattern": r"\S"}}}, {"required": ["image"]}],
    }
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": spec},
                                                          "multipart/form-data": {"schema": form}}}}


def apply_limits(schema: dict[str, Any], limits: Limits) -> dict[str, Any]:
    """Write this server's limits into the query parameters of the generated schema (the parameter classes are
    declared once, with the hard caps; a server may run with tighter `Limits`)."""
    bounds = {"k": {"maximum": limits.max_k}, "offset": {"maximum": limits.max_k - 1},
              "q": {"maxLength": limits.max_query_chars}}
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                name, target = parameter.get("name"), parameter.get("schema", {})
                if name in bounds:
                    _narrow(target, bounds[name])
                elif name == "not":
                    _narrow(target, {"maxItems": limits.max_texts})
                    _narrow(target.get("items", {}), {"maxLength": limits.max_query_chars})
    return schema


def _narrow(schema: dict[str, Any], values: dict[str, Any]) -> None:
    """Set bounds on a parameter schema, on each alternative of an anyOf (an optional parameter) too."""
    for alternative in schema.get("anyOf", [schema]):
        if alternative.get("type") != "null":
            alternative.update(values)
