"""`KEY=VALUE` options from a command line or a form (`--param alpha=0.6`, `reindex --param M=32`)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from pixquery.errors import PixqueryError


def parse_value(text: str) -> Any:
    """A value as JSON where it parses (numbers, true/false, null, lists), else the text itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_key_values(items: Iterable[str], what: str = "--param") -> dict[str, Any]:
    """`["a=1", "b=x"]` -> {"a": 1, "b": "x"}; a malformed item raises an error naming `what`."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise PixqueryError(f"{what} needs KEY=VALUE, got {item!r}")
        out[key.strip()] = parse_value(value.strip())
    return out
