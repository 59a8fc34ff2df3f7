"""Metadata filters on a real catalog and vector store: correctness, safety, and k results inside the allowed set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_query_helpers import FakeEncoder, make_index

from pixquery.errors import QueryError
from pixquery.query.engine import SearchContext, execute
from pixquery.query.filters import compile_filters, date_bounds
from pixquery.query.spec import QuerySpec, WeightedText

METADATA = [
    {"taken_at": "2020-12-31T23:59:00", "camera_make": "Canon", "camera_model": "EOS R5", "width": 6000,
     "height": 4000},
    {"taken_at": "2021-01-01T00:00:00", "camera_make": "canon ", "camera_model": "EOS R6", "width": 4000,
     "height": 6000, "gps_lat": 48.8, "gps_lon": 2.3},
    {"taken_at": "2021-06-15T12:00:00", "camera_make": "Apple", "camera_model": "iPhone 12", "width": 4032,
     "height": 3024, "ext": "jpeg"},
    {"taken_at": "2021-12-31T08:00:00", "camera_make": "Apple", "camera_model": "iPhone 13", "width": 800,
     "height": 600, "ext": "png"},
    {"taken_at": None, "camera_make": None, "width": 640, "height": 480, "ext": "heic"},
    {"taken_at": "2022-03-01T10:00:00", "camera_make": "Fujifilm", "camera_model": "X-T4", "width": 6240,
     "height": 4160},
]


@pytest.fixture
def ctx(tmp_path: Path) -> SearchContext:
    root = str(tmp_path / "photos")
    folders = [root, root, f"{root}/2021", f"{root}/2021/summer", f"{root}X", "/elsewhere"]
    vectors = np.random.default_rng(0).normal(size=(6, 8))
    context = make_index(tmp_path, vectors, [dict(m) for m in METADATA], folders, FakeEncoder(8))
    tags = [(1, "dog", 0.9), (1, "beach", 0.4), (2, "dog", 0.3), (3, "beach", 0.8), (6, "cat", 0.7)]
    context.catalog.db.executemany(
        "INSERT INTO tags(file_id, label, score, source) VALUES (?, ?, ?, 'labels')", tags
    )
    context.catalog.commit()
    return context


def ids_for(ctx: SearchContext, filters: dict) -> list[int]:
    compiled = compile_filters(filters)
    return ctx.catalog.select_ids(compiled)


def test_folder_matches_the_folder_and_below_but_not_a_sibling_prefix(ctx: SearchContext, tmp_path: Path) -> None:
    assert ids_for(ctx, {"folder": str(tmp_path / "photos")}) == [1, 2, 3, 4]
    assert ids_for(ctx, {"folder": str(tmp_path / "photos" / "2021") + "/"}) == [3, 4]
    assert ids_for(ctx, {"folder": [str(tmp_path / "photosX"), "/elsewhere"]}) == [5, 6]


def test_glob_on_file_name_or_full_path(ctx: SearchContext) -> None:
    assert ids_for(ctx, {"glob": "*.png"}) == [4]
    assert ids_for(ctx, {"glob": ["img0000.*", "*.heic"]}) == [1, 5]
    assert ids_for(ctx, {"glob": "*/summer/*"}) == [4]


def test_date_range_with_partial_dates(ctx: SearchContext) -> None:
    assert ids_for(ctx, {"taken_from": "2021", "taken_to": "2021"}) == [2, 3, 4]
    assert ids_for(ctx, {"taken_from": "2021-06", "taken_to": "2021-06"}) == [3]
    assert ids_for(ctx, {"taken_to": "2020-12-31"}) == [1]
    assert ids_for(ctx, {"taken_from": "2021-12-31T08:00:00"}) == [4, 6]
    assert date_bounds("2021-12") == ("2021-12-01", "2022-01-01")


def test_camera_ext_size_and_gps(ctx: SearchContext) -> None:
    assert ids_for(ctx, {"camera_make": "CANON"}) == [1, 2]
    assert ids_for(ctx, {"camera_model": ["iphone 12", "X-T4"]}) == [3, 6]
    assert ids_for(ctx, {"ext": "jpg"}) == [1, 2, 3, 6]
    assert ids_for(ctx, {"ext": [".PNG", "heif"]}) == [4, 5]
    assert ids_for(ctx, {"min_width": 4032, "max_height": 4160}) == [1, 3, 6]
    assert ids_for(ctx, {"min_height": 5000}) == [2]
    assert ids_for(ctx, {"has_gps": True}) == [2]


def test_tags_all_any_and_min_score(ctx: SearchContext) -> None:
    assert ids_for(ctx, {"tags": ["dog", "beach"]}) == [1]
    assert ids_for(ctx, {"any_tags": ["beach", "cat"]}) == [1, 3, 6]
    assert ids_for(ctx, {"tags": "dog", "min_tag_score": 0.5}) == [1]


def test_user_values_are_bound_never_interpolated(ctx: SearchContext) -> None:
    compiled = compile_filters({"camera_make": "x') OR 1=1 --", "folder": "/a%"})
    where, params = compiled.sql()
    assert "OR 1=1" not in where and "/a%" not in where and "x') or 1=1 --" in params
    assert ctx.catalog.select_ids(compiled) == []


def test_a_huge_folder_filter_is_refused_or_answered_never_a_database_error(ctx: SearchContext) -> None:
    long_folder = "/" + "a" * 4000
    assert ids_for(ctx, {"folder": long_folder}) == []  # prefix comparison: no LIKE pattern to be too complex
    with pytest.raises(QueryError, match="limit is 4096") as exc:
        compile_filters({"folder": "/" + "a" * 60_000})
    assert exc.value.field == "filters.folder"


def test_bad_filters_are_clear_errors() -> None:
    with pytest.raises(QueryError, match="unknown filter 'colour'"):
        compile_filters({"colour": "red"})
    with pytest.raises(QueryError, match="cannot read the date '2021-13'"):
        compile_filters({"taken_from": "2021-13"})
    with pytest.raises(QueryError, match="'min_width' expects a non-negative number"):
        compile_filters({"min_width": "wide"})
    assert compile_filters({"folder": None}).empty


def test_a_selective_filter_still_returns_k_results_from_the_allowed_set(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    query = np.array([1.0] + [0.0] * 7, np.float32)
    vectors = rng.normal(size=(300, 8)) * 0.1 + query  # everything is close to the query ...
    allowed = set(range(291, 301))
    for i in allowed:  # ... except the ten photos in the filtered folder, which are the farthest of all
        vectors[i - 1] = -query + rng.normal(size=8) * 0.1
    folders = [str(tmp_path / ("far" if i + 1 in allowed else "near")) for i in range(300)]
    ctx = make_index(tmp_path, vectors, folders=folders, encoder=FakeEncoder(8, texts={"q": query}))
    spec = QuerySpec(texts=[WeightedText("q")], filters={"folder": str(tmp_path / "far")}, k=5)
    hits = execute(spec, ctx)
    assert len(hits) == 5 and {h.id for h in hits} <= allowed
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_sort_by_date_orders_the_results_and_keeps_undated_last(ctx: SearchContext) -> None:
    spec = QuerySpec(texts=[WeightedText("anything")], k=6, sort="date")
    hits = execute(spec, ctx)
    dates = [h.row.taken_at for h in hits]
    assert dates[-1] is None and dates[:-1] == sorted(dates[:-1])
    assert len(hits) == 6


def test_empty_filter_result_gives_no_hits(ctx: SearchContext) -> None:
    spec = QuerySpec(texts=[WeightedText("anything")], filters={"camera_make": "Leica"})
    assert execute(spec, ctx) == []


def test_a_repeated_filter_sees_catalog_changes(ctx: SearchContext) -> None:
    spec = QuerySpec(texts=[WeightedText("anything")], filters={"camera_make": "Leica"}, k=6)
    assert execute(spec, ctx) == []
    ctx.catalog.db.execute("UPDATE files SET camera_make = 'Leica' WHERE id = 6")
    ctx.catalog.commit()
    assert [h.id for h in execute(spec, ctx)] == [6]
