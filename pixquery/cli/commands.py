"""The index and search commands: index, search, info, reindex, serve. Each one calls the facade."""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path
from typing import Any

from pixquery.cli.output import display, note, out, print_hits, print_json, warn
from pixquery.errors import UsageError

PLAIN_SEARCH_OPTIONS = frozenset({"text", "top", "index", "json_out", "handler", "command"})
"""The options of a plain text search: only such a search may be answered by a running server (beacon)."""


def _index_dir(args: argparse.Namespace) -> Path:
    from pixquery.paths import default_index_dir

    return args.index.expanduser() if args.index is not None else default_index_dir()


def _open(args: argparse.Namespace, **options: Any) -> Any:
    from pixquery.api import Library

    return Library.open(_index_dir(args), **options)


# --- index ---------------------------------------------------------------------------------------------------


def index(args: argparse.Namespace) -> None:
    """`pixquery index PATH...`: print the report (stdout), progress and warnings on stderr."""
    model = args.model or os.environ.get("PIXQUERY_MODEL")
    index_dir = _index_dir(args)
    _refuse_a_folder_that_is_not_an_index(index_dir)
    created = not index_dir.exists()
    try:
        _index(args, model)
    except ImportError:  # an extra (--store faiss, --ray) is missing: a new index it stopped is not left behind
        if created:
            shutil.rmtree(index_dir, ignore_errors=True)
        raise


def _index(args: argparse.Namespace, model: str | None) -> None:
    from pixquery.progress import rich_progress

    library = _open(args, model=model, precision=args.precision, store=args.store or "flat")
    with library as lib:
        if args.store is not None and lib.config is not None and lib.config.store != args.store:
            raise UsageError(f"this index already uses the {lib.config.store!r} store; switch it with "
                             f"`pixquery reindex --store {args.store}` (nothing is embedded again)")
        if lib.config is None and model is None:
            note(f"creating a new index at {lib.path} with the default model {lib.model} "
                 "(choose one with --model; `pixquery demo` needs no download)")
        with rich_progress(enabled=not args.json_out) as progress:
            report = lib.index(
                args.paths, include=args.include, exclude=args.exclude, hidden=args.hidden,
                batch_size=args.batch_size, workers=args.workers, max_megapixels=args.max_megapixels or None,
                progress=progress, ray=args.ray, ray_actors=args.ray_actors,
            )
        if lib.meaningless:
            warn(f"{lib.model} has random weights: search results are meaningless")
        errors = lib.info()["errors"]
    data = report.to_dict()
    if args.json_out:
        print_json(data)
        return
    _print_index_report(data, errors, args.paths)


def _refuse_a_folder_that_is_not_an_index(path: Path) -> None:
    """An existing folder holding other files is not where a new index goes (it would mix pixquery's files into,
    say, the photo folder itself); an index, an empty folder or a new path is."""
    from pixquery.layout import IndexLayout

    layout = IndexLayout(path)
    if not path.is_dir() or layout.config.exists():
        return  # a new path, an index (a file is refused by the facade)
    own = {p.name for p in (layout.config, layout.catalog, layout.lock, layout.vectors, layout.thumbs,
                            layout.fingerprints, layout.beacon)}
    try:
        others = sorted(entry.name for entry in path.iterdir() if entry.name not in own)
    except OSError as exc:
        raise UsageError(f"cannot use {display(str(path))} as an index folder: {exc.strerror}") from None
    if others:
        raise UsageError(f"{display(str(path))} is not an index and is not empty (it holds {display(others[0])}"
                         f"{' and more' if len(others) > 1 else ''}); give --index a new or empty folder")


def _print_index_report(data: dict[str, Any], errors: list[dict[str, Any]], paths: list[Path]) -> None:
    parts = [f"{data['embedded']} embedded ({data['images_per_s']:.1f} images/s)"]
    if data["resumed"]:
        parts.append(f"{data['resumed']} of them resumed from an interrupted run")
    parts += [f"{data['unchanged']} unchanged", f"{data['moved']} moved", f"{data['deleted']} removed",
              f"{data['failed']} could not be read"]
    out(", ".join(parts))
    problems = data["skipped"] + errors
    if problems:
        out(f"skipped ({len(problems)}):")
        for item in problems:
            out(f"  {item['path']}: {item['reason']}")
    from pixquery.api import is_not_an_image

    found = data["embedded"] + data["unchanged"] + data["failed"] + data["moved"]
    # No image at all: nothing, or only files that are no image (a folder of documents). Files that are images but
    # could not be used (too large, unreadable folders) are not "no images": their reasons are listed above.
    if found == 0 and all(is_not_an_image(item["reason"]) for item in data["skipped"]):
        note(f"no images found under {', '.join(display(str(p)) for p in paths)}: pixquery looks for JPEG, PNG, "
             "WebP, HEIC, TIFF, GIF, BMP, JPEG 2000 and PNM files (hidden folders need --hidden)")


# --- search --------------------------------------------------------------------------------------------------


def search(args: argparse.Namespace) -> None:
    """`pixquery search`: results on stdout (a table, or JSON)."""
    if not args.text and not args.image and args.spec is None:
        raise UsageError('give a text, an --image, or both, e.g. pixquery search "a red bicycle"')
    if _is_plain(args):
        served = _ask_server(args)
        if served is not None:
            _print_results(served, args.json_out)
            return
    spec = spec_from_args(args)
    with _open(args, model=args.model, precision=args.precision) as lib:
        outcome = lib.query(spec)
    hits = [hit.to_dict() for hit in outcome.hits]
    if not hits and spec.cutoff is not None and not args.json_out:
        note("nothing above the relevance cut-off; try --cutoff none to see the closest images")
    _print_results(hits, args.json_out)


def _print_results(hits: list[dict[str, Any]], json_out: bool) -> None:
    if json_out:
        print_json(hits)
    else:
        print_hits(hits)


def _is_plain(args: argparse.Namespace) -> bool:
    """Whether every option but the text, k, the index and --json is at its default (the parser's own)."""
    from pixquery.cli.main import command_parser

    search_parser = command_parser("search")
    changed = {key for key, value in vars(args).items() if value != search_parser.get_default(key)}
    return bool(args.text) and changed <= PLAIN_SEARCH_OPTIONS


def _ask_server(args: argparse.Namespace) -> list[dict[str, Any]] | None:
    """The results of a `pixquery serve` running on this index (see pixquery.server.beacon), or None."""
    from pixquery.server.beacon import ask_server, live_server

    url = live_server(_index_dir(args))
    if url is None:
        return None
    served = ask_server(url, {"texts": [{"text": args.text}], "k": args.top})
    if served is None:
        return None
    keys = ("id", "path", "score", "width", "height", "format", "taken_at", "camera_make", "camera_model", "gps_lat",
            "gps_lon")  # what a local search prints: the server adds URLs for its page
    return [{key: hit.get(key) for key in keys} for hit in served]


def spec_from_args(args: argparse.Namespace) -> Any:
    """The query the search flags describe; a --spec JSON file is the base and flags given beside it override it."""
    from pixquery.options import parse_key_values
    from pixquery.query.spec import QuerySpec, Rerank, WeightedImage, WeightedText

    if args.spec is not None:
        from pixquery.query.jsonspec import load_spec

        spec = load_spec(args.spec, validate=False)
        spec.k = args.top
    else:
        spec = QuerySpec(k=args.top)
    if args.text:
        spec.texts.append(WeightedText(args.text))
    spec.images += [WeightedImage(path=str(p)) for p in args.image]
    spec.negative_texts += [WeightedText(t) for t in args.negatives]
    spec.negative_images += [WeightedImage(path=str(p)) for p in args.negative_images]
    if args.method != "auto" or args.spec is None:
        spec.method = args.method
    spec.params.update(parse_key_values(args.param))
    if args.alpha is not None:
        spec.params["alpha"] = args.alpha
    if args.cutoff is not None:
        try:
            spec.cutoff = float(args.cutoff)
        except ValueError:
            spec.cutoff = None if args.cutoff in ("none", "off") else args.cutoff
    spec.sort = args.sort
    filters = {"folder": args.folder, "glob": args.glob, "taken_from": args.taken_from, "taken_to": args.taken_to,
               "camera_model": args.camera, "ext": args.ext, "min_width": args.min_width, "tags": args.tag}
    spec.filters.update({key: value for key, value in filters.items() if value not in (None, [], ())})
    if args.hubness or args.diversity:
        spec.rerank = Rerank(hubness=args.hubness, diversity=args.diversity)
    return spec.validate()


# --- info, reindex, serve ------------------------------------------------------------------------------------


def info(args: argparse.Namespace) -> None:
    """`pixquery info`: the index's facts on stdout."""
    with _open(args) as lib:
        data = lib.info()
    if args.json_out:
        print_json(data)
        return
    for key in ("index", "model", "precision", "dim", "store", "files", "indexed", "pending", "vectors"):
        out(f"{key:>9}  {data[key]}")
    out(f"{'size':>9}  {data['size_bytes'] / 1e6:.2f} MB")
    problems = data["errors"] + data["skipped"]
    if problems:
        out(f"skipped ({len(problems)}):")
        for item in problems:
            out(f"  {item['path']}: {item['reason']}")


def reindex(args: argparse.Namespace) -> None:
    """`pixquery reindex --store KIND`: the new store's description (JSON) on stdout."""
    from pixquery.options import parse_key_values

    params = parse_key_values(args.param)
    with _open(args) as lib:
        print_json(lib.set_store(args.store, **params))


def serve(args: argparse.Namespace) -> None:
    """`pixquery serve`: runs until interrupted."""
    from pixquery.server.run import serve as run_server

    index_dir = _index_dir(args)
    check_port_free(args.host, args.port, index_dir)
    token = args.token or os.environ.get("PIXQUERY_TOKEN")
    run_server(index_dir, host=args.host, port=args.port, token=token, open_browser=args.open_browser)


def check_port_free(host: str, port: int, index_dir: Path) -> None:
    """Raise a one-line PixqueryError when the server could not listen on host:port (before anything starts).

    Binds a probe socket the way uvicorn binds (SO_REUSEADDR, so a port in TIME_WAIT counts as free)."""
    import errno
    import socket

    from pixquery.errors import PixqueryError

    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise UsageError(f"cannot serve on {host!r}: {exc.strerror} (try --host 127.0.0.1)") from None
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            where = f"{host}:{port}"
            if exc.errno == errno.EADDRINUSE:
                from pixquery.server.beacon import live_server

                running = live_server(index_dir)
                who = (f"pixquery is already serving this index there ({running})" if running
                       else "another program is listening there")
                raise PixqueryError(f"port {port} is busy on {host}: {who}; stop it, or choose another port "
                                    f"with --port {port + 1 if port < 65535 else 8000}") from None
            if exc.errno == errno.EACCES:
                raise PixqueryError(f"not allowed to listen on {where}: ports below 1024 need privileges; "
                                    "choose another with --port, e.g. --port 8000") from None
            if exc.errno == errno.EADDRNOTAVAIL:
                raise UsageError(f"cannot listen on {where}: {host} is not an address of this machine "
                                 "(try --host 127.0.0.1)") from None
            raise PixqueryError(f"cannot listen on {where}: {exc.strerror}") from None
