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
from typing import Any


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

    from pixquery.api import Library

    index = args.index or os.environ.get("PIXQUERY_INDEX")
    model = args.model or os.environ.get("PIXQUERY_MODEL")
    spec = query_spec(args)
    with Library.open(Path(index) if index else None, model=model, precision=args.precision) as lib:
        hits = lib.search(spec=spec)
    if args.json_out:
        print_json([h.to_dict() for h in hits])
    else:
        print_hits(hits)


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
