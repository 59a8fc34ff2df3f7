"""Build a `QuerySpec` from `pixquery search` flags (or a JSON spec file), shared by the CLI's search command."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pixquery.errors import QueryError
from pixquery.query.spec import QuerySpec, Rerank, WeightedImage, WeightedText


def parse_param(item: str) -> tuple[str, Any]:
    """`key=value` → (key, number or string)."""
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise QueryError(f"--param needs KEY=VALUE, got {item!r}")
    for cast in (int, float):
        try:
            return key.strip(), cast(value)
        except ValueError:
            continue
    return key.strip(), value


def spec_from_flags(
    text: str | None,
    images: list[Path],
    k: int,
    negatives: list[str],
    negative_images: list[Path],
    method: str,
    alpha: float | None,
    params: list[str],
    cutoff: str | None,
    sort: str,
    filters: dict[str, Any],
    hubness: str | None,
    diversity: float,
    spec_file: Path | None,
) -> QuerySpec:
    """The query the flags describe; a --spec JSON file is the base and flags given beside it override it."""
    if spec_file is not None:
        from pixquery.query.jsonspec import load_spec

        spec = load_spec(spec_file, validate=False)
        spec.k = k
    else:
        spec = QuerySpec(k=k)
    if text:
        spec.texts.append(WeightedText(text))
    spec.images += [WeightedImage(path=str(p)) for p in images]
    spec.negative_texts += [WeightedText(t) for t in negatives]
    spec.negative_images += [WeightedImage(path=str(p)) for p in negative_images]
    if method != "auto" or spec_file is None:
        spec.method = method
    spec.params.update(dict(parse_param(p) for p in params))
    if alpha is not None:
        spec.params["alpha"] = alpha
    if cutoff is not None:
        try:
            spec.cutoff = float(cutoff)
        except ValueError:
            spec.cutoff = None if cutoff in ("none", "off") else cutoff
    spec.sort = sort
    spec.filters.update({key: value for key, value in filters.items() if value not in (None, [], ())})
    if hubness or diversity:
        spec.rerank = Rerank(hubness=hubness, diversity=diversity)
    return spec.validate()
