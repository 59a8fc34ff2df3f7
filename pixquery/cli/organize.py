"""The organising commands: tag, cluster, duplicates. Reports on stdout, progress on stderr; nothing is deleted."""

from __future__ import annotations

import argparse
from pathlib import Path

from pixquery.cli.commands import _open
from pixquery.cli.output import note, out, print_json
from pixquery.errors import UsageError
from pixquery.progress import rich_progress


def tag(args: argparse.Namespace) -> None:
    """`pixquery tag --labels ... | --open`: label counts (or the JSON report) on stdout."""
    threshold: float | str | None = args.threshold
    if threshold is not None and threshold != "auto":
        try:
            threshold = float(threshold)
        except ValueError:
            raise UsageError(f'--threshold takes "auto" or a number, not {threshold!r}') from None
    with _open(args) as lib, rich_progress(enabled=not args.json_out) as progress:
        if args.open_vocabulary:
            options = {"vocabulary": args.vocabulary, **({"top": args.top} if args.top else {})}
            report = lib.tag_open(progress=progress, **options)
        else:
            options = {"method": args.method, "templates": args.templates, **({"top": args.top} if args.top else {})}
            if threshold is not None:
                options["threshold"] = threshold
            try:
                report = lib.tag(args.labels, progress=progress, **options)
            except ValueError as exc:  # malformed labels or templates
                raise UsageError(str(exc)) from None
    result = report.to_dict()
    if args.json_out:
        print_json(result)
        return
    for label, count in sorted(result.get("counts", {}).items(), key=lambda kv: -kv[1]):
        out(f"{count:6d}  {label}")
    if "none_of_these" in result:
        out(f"{result['none_of_these']:6d}  (none of these)")


def cluster(args: argparse.Namespace) -> None:
    """`pixquery cluster`: each cluster's name, size and representatives on stdout."""
    k: int | str = "auto"
    if str(args.k).strip().lower() != "auto":
        try:
            k = int(args.k)
        except ValueError:
            raise UsageError(f"--k takes a number of clusters or auto, not {args.k!r}") from None
    with _open(args) as lib, rich_progress(enabled=not args.json_out) as progress:
        result = lib.cluster(progress=progress, k=k, method=args.method, vocabulary=args.vocabulary)
        if args.sheet is not None:
            result["sheet"] = str(lib.contact_sheet(result, args.sheet))
    if args.json_out:
        print_json(result)
        return
    for item in result.get("clusters", []):
        reps = ", ".join(Path(r["path"]).name for r in item.get("representatives", [])[:3])
        out(f"{item.get('name')} ({item.get('size')}): {reps}")
    if "sheet" in result:
        note(f"contact sheet written to {result['sheet']}")


def duplicates(args: argparse.Namespace) -> None:
    """`pixquery duplicates`: groups with their keeper and why, then a summary, on stdout."""
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    thresholds = {key: value for key, value in (("near", args.near), ("similar", args.semantic)) if value is not None}
    with _open(args) as lib, rich_progress(enabled=not args.json_out) as progress:
        try:
            result = lib.duplicates(progress=progress, kinds=kinds, thresholds=thresholds)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    if args.json_out:
        print_json(result)
        return
    for group in result["groups"]:
        out(f"{group['tier']} duplicates: keep {group['keeper']['path']} ({group['reason']})")
        for member in group["members"]:
            if not member["keeper"]:
                out(f"    removable: {member['path']}")
    for group in result.get("similar", []):
        out(f"similar, not duplicates ({group['size']} photos, review by eye):")
        for member in group["members"]:
            out(f"    {member['path']}")
    out(f"{result['removable']} removable files in {len(result['groups'])} duplicate groups, "
        f"{len(result.get('similar', []))} groups of similar photos; pixquery deletes nothing.")
