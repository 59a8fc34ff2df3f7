"""The routes of the page's views besides searching: browsing without a query, tags, clusters, duplicate groups.

    GET  /api/browse                 indexed images without a query, newest first (folder, dates, tags, paging)
    GET  /api/tags                   stored tags with how many images carry each
    GET  /api/clusters               the latest clustering: its state (progress while it runs) and its clusters
    POST /api/clusters               make one (k=auto by default) in the background; answers at once (202)
    GET  /api/clusters/{cluster_id}  one page of a cluster's members
    GET  /api/duplicates             the latest duplicate finding: its state and one page of its groups
    POST /api/duplicates             find them in the background; answers at once (202)

Organising reads every vector (and, for duplicates, decodes every image once), which takes from seconds to minutes:
a POST starts a run in the server's worker thread (`organizing.Organizer`) and returns; a GET reports where it
stands and, once done, the result, kept for the index version it was made from. Nothing here changes a file.
"""

# No `from __future__ import annotations`: FastAPI reads these route signatures, whose page-size bound (the server's
# max_k) is made inside `install_views`, and it can resolve string annotations only from module globals.
from typing import Annotated, Any

from fastapi import FastAPI, Query
from fastapi import Path as PathParam
from fastapi.params import Depends as DependsParam

from pixquery.server.limits import ApiError
from pixquery.server.openapi import errors
from pixquery.server.params import MAX_ID
from pixquery.server.service import IndexService

ERRORS = errors(422)
"""Error answers every route here may give, each in the one error shape (`limits.ErrorBody`)."""
MAX_CLUSTERS = 100
MAX_OFFSET = 2**31


def install_views(app: FastAPI, service: IndexService, deps: list[DependsParam]) -> None:
    """Add the view routes to `app`, guarded by `deps` (the token and rate-limit dependencies of the API)."""
    max_k = app.state.limits.max_k
    Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="items to skip (paging)")]
    PageK = Annotated[int, Query(ge=1, le=max_k, description=f"items per page (at most {max_k})")]

    @app.get("/api/browse", tags=["views"], dependencies=deps, responses=ERRORS)
    def browse(
        offset: Offset = 0,
        k: PageK = 60,
        sort: Annotated[str, Query(pattern="^(date|added)$",
                                   description="'date': newest taken first (undated last); 'added': newest added")]
        = "date",
        folder: Annotated[str | None, Query(description="only images in this folder or below")] = None,
        date_from: Annotated[str | None, Query(description="taken on or after (YYYY, YYYY-MM, YYYY-MM-DD)")] = None,
        date_to: Annotated[str | None, Query(description="taken on or before (YYYY, YYYY-MM, YYYY-MM-DD)")] = None,
        tag: Annotated[list[str], Query(description="only images carrying every tag listed")] = [],  # noqa: B006
    ) -> dict[str, Any]:
        """Indexed images without a query, a page at a time: what the page shows before anything is searched."""
        filters: dict[str, Any] = {"folder": folder or None, "taken_from": date_from or None,
                                   "taken_to": date_to or None, "tags": [t for t in tag if t] or None}
        return service.browse({key: v for key, v in filters.items() if v is not None}, sort, offset, k)

    @app.get("/api/tags", tags=["views"], dependencies=deps, responses=ERRORS)
    def tags() -> dict[str, Any]:
        """Tags stored in the index (by `pixquery tag`), with how many images carry each, most frequent first."""
        found = service.tags()
        return {"tags": found, "count": len(found)}

    # --- clusters ---------------------------------------------------------------------------------------------
    @app.get("/api/clusters", tags=["views"], dependencies=deps, responses=ERRORS)
    def clusters() -> dict[str, Any]:
        """The latest clustering: `state` (idle, queued, running, done, failed), `progress` while it runs,
        `current` (made from the index as it is now) and, once done, `result`: the clusters, largest first, each
        with its name, other candidate names, size and representative images."""
        return service.clusters()

    @app.post("/api/clusters", tags=["views"], dependencies=deps, status_code=202, responses=ERRORS)
    def clusters_start(
        k: Annotated[str, Query(description=f"number of clusters (2-{MAX_CLUSTERS}) or 'auto' (chosen by silhouette)")]
        = "auto",
        method: Annotated[str, Query(pattern="^(kmeans|hdbscan)$", description="kmeans or hdbscan")] = "kmeans",
    ) -> dict[str, Any]:
        """Start clustering the collection in the background (a run already made for the current index with the
        same parameters is kept); poll GET /api/clusters for progress and the result."""
        return service.start_organizing("clusters", {"k": _cluster_count(k), "method": method})

    @app.get("/api/clusters/{cluster_id}", tags=["views"], dependencies=deps,
             responses=errors(404, 409, 422))
    def cluster_members(
        cluster_id: Annotated[int, PathParam(ge=0, le=MAX_ID, description="a cluster's id")],
        offset: Offset = 0,
        k: PageK = 60,
    ) -> dict[str, Any]:
        """One page of a cluster's members (of the latest clustering), as browse results."""
        return service.cluster_members(cluster_id, offset, k)

    # --- duplicates -------------------------------------------------------------------------------------------
    @app.get("/api/duplicates", tags=["views"], dependencies=deps, responses=ERRORS)
    def duplicates(
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="groups to skip (paging)")] = 0,
        k: Annotated[int, Query(ge=1, le=max_k, description="groups per page")] = 50,
    ) -> dict[str, Any]:
        """The latest duplicate finding: its state as for clusters and, once done, one page of groups, largest
        first, each with its suggested keeper and why, the kinds of evidence, and its members (size, resolution,
        thumbnail). A review list: nothing is ever deleted, by this or any route."""
        return service.duplicates(offset, k)

    @app.post("/api/duplicates", tags=["views"], dependencies=deps, status_code=202, responses=ERRORS)
    def duplicates_start() -> dict[str, Any]:
        """Start finding duplicate groups in the background (a finding already made for the current index is
        kept); poll GET /api/duplicates for progress and the groups."""
        return service.start_organizing("duplicates", {})


def _cluster_count(text: str) -> int | str:
    value = text.strip().lower()
    if value == "auto":
        return "auto"
    if not value.isdigit() or not 2 <= int(value) <= MAX_CLUSTERS:
        raise ApiError(422, "invalid_request", f"k: expected 'auto' or a number from 2 to {MAX_CLUSTERS}", "k")
    return int(value)
