"""`pixquery tag`, `cluster` and `duplicates`: organise an index with no labels (commands registered on the app)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pixquery.cli import IndexOpt, JsonOpt, _console, _fail, _print_json, app


@app.command()
def tag(
    labels: Annotated[str | None, typer.Option("--labels", "-l", help='Labels: "cat,dog,…", a text file (one per '
                                               'line) or a JSON file {label: [descriptions]} (CuPL style).')] = None,
    open_vocabulary: Annotated[bool, typer.Option("--open", help="No labels: pick tags from a 17k-word vocabulary "
                                                  "(CaSED-style).")] = False,
    vocabulary: Annotated[Path | None, typer.Option("--vocabulary", help="Your own vocabulary file for --open.")]
    = None,
    method: Annotated[str, typer.Option("--method", help="single, ensemble, autoclip or auto (AutoCLIP).")] = "auto",
    templates: Annotated[str | None, typer.Option("--templates", help="Prompt templates: clip80, curated7 or a file.")]
    = None,
    top: Annotated[int | None, typer.Option("--top", min=1, help="Tags kept per image.")] = None,
    threshold: Annotated[str | None, typer.Option(
        "--threshold", help='"auto" (calibrated "none of these"), a number, or 0 to always tag.')] = None,
    index: IndexOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Tag every image zero-shot; tags are stored in the index and usable as search filters (--tag)."""
    from pixquery.tasks.classify import tag_command

    try:
        result = tag_command(index, labels=labels, open_vocabulary=open_vocabulary, vocabulary=vocabulary,
                             method=method, templates=templates, top=top, threshold=threshold,
                             show_progress=not json_out)
    except ValueError as exc:
        _fail(str(exc), code=2)
    if json_out:
        _print_json(result)
        return
    console = _console()
    for label, count in sorted(result.get("counts", {}).items(), key=lambda kv: -kv[1]):
        console.print(f"{count:6d}  {label}", highlight=False)
    if "none_of_these" in result:
        console.print(f"{result['none_of_these']:6d}  (none of these)")


@app.command()
def cluster(
    k: Annotated[str, typer.Option("--k", help="Number of clusters, or auto (silhouette).")] = "auto",
    method: Annotated[str, typer.Option("--method", help="kmeans or hdbscan.")] = "kmeans",
    vocabulary: Annotated[Path | None, typer.Option("--vocabulary", help="Words to name clusters with.")] = None,
    sheet: Annotated[Path | None, typer.Option("--sheet", help="Write a contact sheet PNG here.")] = None,
    index: IndexOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Group the collection into clusters, each named from a vocabulary, with representative images."""
    from pixquery.tasks.cluster import cluster_command

    result = cluster_command(index, k=k, method=method, vocabulary=vocabulary, sheet=sheet,
                             show_progress=not json_out)
    if json_out:
        _print_json(result)
        return
    console = _console()
    for item in result.get("clusters", []):
        reps = ", ".join(Path(r["path"]).name for r in item.get("representatives", [])[:3])
        console.print(f"[bold]{item.get('name')}[/] ({item.get('size')}): {reps}", highlight=False)


@app.command()
def duplicates(
    kinds: Annotated[str, typer.Option("--kinds", help="exact, near, semantic (comma-separated).")]
    = "exact,near,semantic",
    near: Annotated[float | None, typer.Option("--near", help="Perceptual-hash threshold override.")] = None,
    semantic: Annotated[float | None, typer.Option("--semantic", help="Embedding-similarity threshold override.")]
    = None,
    index: IndexOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Find duplicate groups (exact, near-exact, semantic) with a suggested keeper. Never deletes anything."""
    from pixquery.tasks.dedup import duplicates_command

    result = duplicates_command(index, kinds=kinds, near=near, semantic=semantic, show_progress=not json_out)
    if json_out:
        _print_json(result)
        return
    console = _console()
    for group in result.get("groups", []):
        kinds = ", ".join(group.get("kinds", []))
        console.print(f"[bold]{kinds}[/]: keep {group['keeper']['path']} ({group.get('reason')})", highlight=False)
        for member in group.get("members", []):
            if not member.get("keeper"):
                console.print(f"    {member['path']}", highlight=False)
    console.print(f"{result.get('files_in_groups', 0)} files in {len(result.get('groups', []))} groups; "
                  "pixquery deletes nothing.")
