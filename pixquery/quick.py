"""`pixquery search TEXT` without loading the CLI framework: the start-up path of a cold query.

A plain text search spends most of a cold start importing things, and typer (with the pydantic it imports to
check options) costs more than the model's text tower takes to open (measured with `python -X importtime`).
`main()` answers a plain text search itself, with only what the query needs, and hands every other command
line (other commands, --image, --help, anything it does not recognise or that is invalid) to the full CLI,
so behaviour and error messages stay the CLI's own.

Entry point: `python -m pixquery.quick search "a red car"`; as the `pixquery` console script it serves every
command (`pixquery.quick:main` falls back to `pixquery.cli:main`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any, NamedTuple


def _parser() -> argparse.ArgumentParser:
    """The options of `pixquery search` a text query uses (the CLI's names; anything else goes to the CLI)."""
    # No abbreviations: the CLI (click) accepts only whole option names, so must this.
    parser = argparse.ArgumentParser(prog="pixquery search", add_help=False, exit_on_error=False, allow_abbrev=False)
    parser.add_argument("text")
    parser.add_argument("-k", "--top", type=int, default=10)
    parser.add_argument("-i", "--index", default=None)
    parser.add_argument("-m", "--model", default=None)
    parser.add_argument("--precision", default=None)
    parser.add_argument("--json", action="store_true", dest="json_out")
    return parser


def parse_search(argv: Sequence[str]) -> argparse.Namespace | None:
    """The options of a plain text search, or None when the command line is anything else."""
    if not argv or argv[0] != "search" or any(a in ("-h", "--help") for a in argv):
        return None
    try:
        args, unknown = _parser().parse_known_args(list(argv[1:]))
    except (argparse.ArgumentError, SystemExit):
        return None
    if unknown or not args.text.strip() or not 1 <= args.top <= 10000:
        return None  # the CLI says what is wrong, in its own words
    return args


def print_json(data: Any) -> None:
    """JSON to stdout, as the CLI's --json writes it."""
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def print_hits(hits: list) -> None:
    """The results table (rich is imported only here, for a human reader)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(show_edge=False, header_style="bold")
    table.add_column("#", justify="right")
    table.add_column("score", justify="right")
    table.add_column("id", justify="right")
    table.add_column("path")
    for rank, hit in enumerate(hits, 1):
        table.add_row(str(rank), f"{hit.score:.3f}", str(hit.id), hit.path)
    Console().print(table if hits else "no results")


SEARCH_DEFAULTS = {"method": "auto", "alpha": None, "cutoff": None, "sort": "score", "hubness": None,
                   "diversity": 0.0}
"""The search command's defaults for the flags this path leaves to the CLI (tests/test_cold_query.py checks
they are still the CLI's), so the query is the one `pixquery search TEXT` builds."""


def query_spec(args: argparse.Namespace) -> Any:
    """The `QuerySpec` the CLI's search command builds for the same plain text search."""
    from pixquery.cli_query import spec_from_flags

    d = SEARCH_DEFAULTS
    return spec_from_flags(args.text, [], args.top, [], [], d["method"], d["alpha"], [], d["cutoff"], d["sort"], {},
                           d["hubness"], d["diversity"], None)


def run_search(args: argparse.Namespace) -> None:
    """Run a parsed text search and print its results."""
    import os
    from pathlib import Path

    from pixquery.paths import default_index_dir

    index = Path(args.index).expanduser() if args.index else default_index_dir()
    model = args.model or os.environ.get("PIXQUERY_MODEL")
    if args.model is None and args.precision is None:
        served = ask_resident_server(index, args)
        if served is not None:
            if args.json_out:
                print_json([{k: v for k, v in hit.items() if k in HIT_KEYS} for hit in served])
            else:
                print_hits([ServedHit(int(h["id"]), str(h["path"]), float(h["score"])) for h in served])
            return
    from pixquery.api import Library

    spec = query_spec(args)
    with Library.open(index, model=model, precision=args.precision) as lib:
        hits = lib.search(spec=spec)
    if args.json_out:
        print_json([h.to_dict() for h in hits])
    else:
        print_hits(hits)


HIT_KEYS = ("id", "path", "score", "width", "height", "format", "taken_at", "camera_make", "camera_model", "gps_lat",
            "gps_lon")
"""What `Hit.to_dict` holds: a served result, stripped to these, prints as a local search would."""


class ServedHit(NamedTuple):
    """The fields of a result the table shows."""

    id: int
    path: str
    score: float


def plain_spec_json(args: argparse.Namespace) -> dict[str, Any]:
    """The JSON query spec of `query_spec(args)`, written without importing the query package (numpy and all):
    omitted fields take their defaults in `spec_from_dict` (tests/test_cold_query.py checks the two agree)."""
    d = SEARCH_DEFAULTS
    return {"texts": [{"text": args.text, "weight": 1.0}], "method": d["method"], "k": args.top,
            "cutoff": d["cutoff"], "sort": d["sort"]}


def ask_resident_server(index: Any, args: argparse.Namespace) -> list[dict[str, Any]] | None:
    """Results from a `pixquery serve` running on `index` (see pixquery.server.beacon), or None."""
    from pixquery.server.beacon import ask_server, live_server

    url = live_server(index)
    return None if url is None else ask_server(url, plain_spec_json(args))


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point: a plain text search here, everything else through the full CLI."""
    args = parse_search(sys.argv[1:] if argv is None else argv)
    if args is None:
        from pixquery.cli import main as cli_main

        cli_main()
        return
    from pixquery.errors import PixqueryError

    try:
        run_search(args)
    except PixqueryError as exc:
        # The CLI's one-line error (its console is loaded only on this path).
        from pixquery.cli import _console

        _console().print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
