"""The `pixquery` command line: typer commands mirroring the `Library` facade.

Heavy modules are imported inside the commands, so `pixquery search` pays only for what a query needs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from pixquery.errors import PixqueryError

app = typer.Typer(
    name="pixquery",
    help=(
        "Zero-shot image search: index a folder of images, then find what you mean by text, by example image, "
        "or by an image plus a change (\"this, but red\"). No training, no labels.\n\n"
        "Start with `pixquery demo` (offline), then `pixquery index ~/Pictures --model MODEL` and "
        "`pixquery search \"a dog on a beach\"`."
    ),
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)

IndexOpt = Annotated[
    Path | None,
    typer.Option("--index", "-i", help="Index directory (default: $PIXQUERY_INDEX or the user data dir).",
                 envvar="PIXQUERY_INDEX", show_default=False),
]
ModelOpt = Annotated[
    str | None,
    typer.Option("--model", "-m", envvar="PIXQUERY_MODEL", show_default=False,
                 help="Model spec: mini, conse, onnx:DIR, immich:NAME, random:ARCH, open_clip:ARCH/TAG, "
                      "or a Hugging Face id. Needed to create an index; an existing index remembers its model."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of a table.")]
PrecisionOpt = Annotated[
    str | None,
    typer.Option("--precision", show_default=False,
                 help="fp32, int8 (ONNX models) or auto: int8 where the model's parity gate passes, else fp32. "
                      "A new index records it ($PIXQUERY_PRECISION, else auto); an existing index keeps its own."),
]


def _console():
    from rich.console import Console

    return Console(stderr=True)


def _fail(message: str, code: int = 1) -> None:
    _console().print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def _print_json(data: Any) -> None:
    from pixquery.quick import print_json

    print_json(data)


def _open(index: Path | None, model: str | None = None, precision: str | None = None):
    from pixquery.api import Library

    return Library.open(index, model=model, precision=precision)


@app.command()
def index(
    paths: Annotated[list[Path], typer.Argument(help="Folders or files to index (recursively).")],
    index: IndexOpt = None,
    model: ModelOpt = None,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Images per model call.")] = 32,
    workers: Annotated[int | None, typer.Option("--workers", "-w", min=1,
                                                help="Decoding threads (default: cores less one, at least 1).")] = None,
    include: Annotated[list[str] | None, typer.Option("--include", help="Only files matching this glob.")] = None,
    exclude: Annotated[list[str] | None,
                       typer.Option("--exclude", help="Skip files/folders matching this glob.")] = None,
    hidden: Annotated[bool, typer.Option("--hidden", help="Also index hidden files and folders.")] = False,
    max_megapixels: Annotated[float, typer.Option("--max-megapixels",
                                                  help="Skip larger images (0 disables the limit).")] = 100.0,
    precision: PrecisionOpt = None,
    store: Annotated[str | None, typer.Option(
        "--store", help="Vector store of a NEW index: flat (exact, default), faiss-hnsw, faiss-ivfpq, auto (picks by "
        "size and memory), milvus:./vectors.db or milvus:http://HOST:19530. Switch an existing index with "
        "`pixquery reindex --store`.")] = None,
    ray: Annotated[str | None, typer.Option(
        "--ray", metavar="[ADDRESS]", help="Embed on Ray: --ray alone starts a local Ray instance; --ray auto joins "
        "this machine's cluster; --ray ray://HEAD:10001 a remote one (files must be on storage every node sees).")]
    = None,
    ray_actors: Annotated[int, typer.Option("--ray-actors", min=1, help="Encoder actors (model copies) on Ray.")] = 2,
    json_out: JsonOpt = False,
) -> None:
    """Index images under PATHS: new and changed files are embedded, moved files followed, deleted ones removed.

    Safe to interrupt: run it again and it resumes where it stopped.

    Examples: `pixquery index ~/Pictures`; `pixquery index /data/products --store auto`;
    `pixquery index /mnt/shared/images --ray ray://head:10001 --ray-actors 16`.
    """
    from pixquery.api import Library
    from pixquery.progress import rich_progress

    library = Library.open(index, model=model, precision=precision, store=store or "flat")
    if store is not None and library.config is not None and library.config.store != store:
        library.close()
        _fail(f"this index already uses the {library.config.store!r} store; switch it with "
              f"`pixquery reindex --store {store}` (nothing is embedded again)", code=2)
    with library as lib, rich_progress(enabled=not json_out) as progress:
        report = lib.index(
            paths, include=include or (), exclude=exclude or (), hidden=hidden, batch_size=batch_size,
            workers=workers, max_megapixels=max_megapixels or None, progress=progress, ray=ray,
            ray_actors=ray_actors,
        )
        if getattr(lib.encoder, "meaningless", False):
            _console().print("[bold yellow]warning:[/] random weights: search results are meaningless")
    data = report.to_dict()
    if json_out:
        _print_json(data)
        return
    console = _console()
    console.print(
        f"[bold]{data['embedded']}[/] embedded ({data['images_per_s']:.1f} images/s), {data['unchanged']} unchanged, "
        f"{data['moved']} moved, {data['deleted']} removed, {data['failed']} could not be read"
    )
    with Library.open(index) as lib:
        errors = lib.info()["errors"]
    for item in data["skipped"] + [e for e in errors]:
        console.print(f"  skipped {item['path']}: {item['reason']}", highlight=False)


@app.command()
def search(
    text: Annotated[str | None, typer.Argument(help="What to look for, in words (with --image: the change to "
                                               'apply, e.g. "make it red").', show_default=False)] = None,
    image: Annotated[list[Path] | None, typer.Option("--image", "-I", help="An example image (repeatable).")] = None,
    k: Annotated[int, typer.Option("-k", "--top", min=1, max=10000, help="How many results.")] = 10,
    negative: Annotated[list[str] | None, typer.Option("--not", help='What results should not show, e.g. '
                                                       '--not "people" (repeatable).')] = None,
    negative_image: Annotated[list[Path] | None, typer.Option("--not-image", help="An image results should not "
                                                              "look like (repeatable).")] = None,
    method: Annotated[str, typer.Option("--method", help="How an image and a text combine: auto, image, text, sum, "
                                        "weighted, pdv, inversion, rewrite.")] = "auto",
    alpha: Annotated[float | None, typer.Option("--alpha", min=0.0, max=1.0,
                                                help="Text weight for --method weighted/pdv (0 = image only).")]
    = None,
    param: Annotated[list[str] | None, typer.Option("--param", help="Method parameter KEY=VALUE (repeatable).")]
    = None,
    cutoff: Annotated[str | None, typer.Option("--cutoff", help='Return only matches: "auto" (calibrated), a '
                                               'score, or "none" (default: the k best).')] = None,
    sort: Annotated[str, typer.Option("--sort", help="score or date (date taken, after the cut-off).")] = "score",
    folder: Annotated[list[str] | None, typer.Option("--folder", help="Only files under this folder.")] = None,
    glob: Annotated[str | None, typer.Option("--glob", help='Only paths matching this glob, e.g. "*/2024/*".')]
    = None,
    taken_from: Annotated[str | None, typer.Option("--from", help="Taken on or after (YYYY, YYYY-MM, YYYY-MM-DD).")]
    = None,
    taken_to: Annotated[str | None, typer.Option("--to", help="Taken on or before.")] = None,
    camera: Annotated[str | None, typer.Option("--camera", help="Camera model (EXIF).")] = None,
    ext: Annotated[list[str] | None, typer.Option("--ext", help="File type, e.g. jpg (repeatable).")] = None,
    min_width: Annotated[int | None, typer.Option("--min-width", min=1, help="Minimum width in pixels.")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Only images tagged so (see pixquery tag).")] = None,
    hubness: Annotated[str | None, typer.Option("--hubness", help="Re-rank against hubs: qbnorm or csls.")] = None,
    diversity: Annotated[float, typer.Option("--diversity", min=0.0, max=1.0,
                                             help="0 = plain ranking, up to 1 = most varied (MMR).")] = 0.0,
    spec: Annotated[Path | None, typer.Option("--spec", help="A JSON query spec file (flags given too override "
                                              "it).")] = None,
    index: IndexOpt = None,
    model: ModelOpt = None,
    precision: PrecisionOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Search the index by TEXT, by example --image, or both: an image plus a text is a composed query
    ("this, but red"). Negatives, filters, a relevance cut-off and re-ranking are flags; a JSON --spec holds
    all of it."""
    from pixquery.cli_query import spec_from_flags

    if not text and not image and spec is None:
        _fail('give a text, an --image, or both, e.g. pixquery search "a red bicycle"', code=2)
    filters = {"folder": folder, "glob": glob, "taken_from": taken_from, "taken_to": taken_to,
               "camera_model": camera, "ext": ext, "min_width": min_width, "tags": tag}
    query = spec_from_flags(text, image or [], k, negative or [], negative_image or [], method, alpha, param or [],
                            cutoff, sort, filters, hubness, diversity, spec)
    with _open(index, model, precision) as lib:
        hits = lib.search(spec=query)
    if json_out:
        _print_json([h.to_dict() for h in hits])
        return
    if not hits and query.cutoff is not None:
        _console().print("nothing above the relevance cut-off; try --cutoff none to see the closest images")
        return
    from pixquery.quick import print_hits

    print_hits(hits)


@app.command()
def info(index: IndexOpt = None, json_out: JsonOpt = False) -> None:
    """Show the index: model, counts, files skipped with reasons, size on disk."""
    with _open(index) as lib:
        data = lib.info()
    if json_out:
        _print_json(data)
        return
    console = _console()
    for key in ("index", "model", "dim", "store", "files", "indexed", "pending", "vectors"):
        console.print(f"[bold]{key:>8}[/] {data[key]}", highlight=False)
    console.print(f"[bold]{'size':>8}[/] {data['size_bytes'] / 1e6:.2f} MB")
    problems = data["errors"] + data["skipped"]
    if problems:
        console.print(f"[bold]skipped ({len(problems)}):[/]")
        for item in problems:
            console.print(f"  {item['path']}: {item['reason']}", highlight=False)


@app.command()
def reindex(
    store: Annotated[str, typer.Option("--store", help="flat, faiss-hnsw, faiss-ivfpq, auto, milvus:./vectors.db or "
                                       "milvus:http://HOST:19530.")],
    param: Annotated[list[str] | None, typer.Option("--param", help="Store parameter KEY=VALUE, e.g. M=32, "
                                                    "efSearch=64, nprobe=16 (repeatable).")] = None,
    index: IndexOpt = None,
) -> None:
    """Switch the index to another vector store in place, from its raw vectors: nothing is embedded again."""
    from pixquery.api import default_index_dir
    from pixquery.store.rebuild import reindex as run_reindex

    params: dict[str, Any] = {}
    for item in param or []:
        key, sep, value = item.partition("=")
        if not sep:
            _fail(f"--param needs KEY=VALUE, got {item!r}", code=2)
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    _print_json(run_reindex(index or default_index_dir(), store, **params))


@app.command("export-onnx")
def export_onnx(
    spec: Annotated[str, typer.Argument(help="A torch-backed model spec (random:ARCH, a Hugging Face id, ...).")],
    out_dir: Annotated[Path, typer.Argument(help="Directory to write (immich layout).")],
) -> None:
    """Export a model's image and text towers to ONNX in the immich layout, loadable with --model onnx:DIR."""
    from pixquery.models.export import export_onnx as run_export

    path = run_export(spec, out_dir)
    _console().print(f"exported {spec} to {path}; use it with --model onnx:{path}")


@app.command()
def demo(
    directory: Annotated[Path | None,
                         typer.Option("--dir", help="Where to build the demo (default: user cache).")] = None,
    n: Annotated[int, typer.Option("--n", min=50, help="ShapesWorld scenes in the demo gallery.")] = 2000,
    photos: Annotated[bool, typer.Option("--photos/--no-photos", help="Also run the real-photo demo (conse).")] = True,
    serve: Annotated[bool, typer.Option("--serve", help="Then open the web page on the demo index.")] = False,
    mini: Annotated[str, typer.Option("--mini", help="The ShapesWorld model: mini (shipped) or mini:DIR (trained "
                                      "with pixquery train-mini).")] = "mini",
) -> None:
    """Offline tour: index a ShapesWorld gallery with `mini` and real photos with `conse`, run example searches."""
    from pixquery.demo import run_demo

    run_demo(directory, n=n, photos=photos, serve=serve, mini=mini)


@app.command("train-mini")
def train_mini(
    out_dir: Annotated[Path, typer.Argument(help="Where to write mini.pt, onnx/ and train_log.json.")],
    minutes: Annotated[float, typer.Option("--minutes", min=0.1, help="Training time budget.")] = 12.0,
    seed: Annotated[int, typer.Option("--seed", help="Seed: the same seed gives the same weights.")] = 0,
    heldout: Annotated[str | None, typer.Option("--heldout", help='Held-out combinations (see pixquery synth).')]
    = None,
) -> None:
    """Train the `mini` model on ShapesWorld (needs [torch]); use it with --model mini:OUT_DIR."""
    from pixquery.synth.train import train_mini_command

    log = train_mini_command(out_dir, minutes=minutes, seed=seed, heldout_spec=heldout)
    _print_json({k: v for k, v in log.items() if k not in ("loss_curve", "config")})


@app.command()
def synth(
    out_dir: Annotated[Path, typer.Argument(help="Directory to write the sets into.")],
    n: Annotated[int, typer.Option("--n", min=1, help="Items per set (images, triplets, queries, groups).")] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Random seed; the same seed gives the same bytes.")] = 0,
    heldout: Annotated[str | None, typer.Option(
        "--heldout", help='Held-out combinations: "default", "none", "random:SEED", or '
                          '"red star,blue circle;star above circle".')] = None,
    size: Annotated[int, typer.Option("--size", min=32, max=512, help="Image side in pixels.")] = 64,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing set.")] = False,
) -> None:
    """Write a ShapesWorld test set in the field's benchmark formats (Karpathy, CIRR, CIRCO, image folders)."""
    from pixquery.synth.emit import synth_command

    manifest = synth_command(out_dir, n=n, seed=seed, heldout=heldout, size=size, overwrite=overwrite)
    _print_json(manifest)


@app.command("eval")
def eval_(
    task: Annotated[str, typer.Argument(help="flickr30k, coco, cirr, circo, fashioniq, classification, roxford, "
                                             "rparis, shapesworld-retrieval, shapesworld-cir, shapesworld-circo.")],
    data: Annotated[Path, typer.Option("--data", "-d", help="The data set's directory, in its official layout.")],
    model: Annotated[str, typer.Option("--model", "-m", help="Model spec to evaluate.")],
    method: Annotated[list[str] | None, typer.Option(
        "--method", help="Method to run, NAME or NAME:key=value,... (repeatable). Composed-retrieval reports "
                         "always include the image, text and sum baselines.")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Report directory (results.json, .md, plots).")]
    = None,
    split: Annotated[str | None, typer.Option("--split", help="Split to read (default: the task's test split).")]
    = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 64,
    workers: Annotated[int | None, typer.Option("--workers", min=1, help="Decoding threads.")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Embed again even if cached.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Evaluate a model and methods on a benchmark: embeds once (cached), writes JSON, Markdown and plots."""
    from pixquery.eval.report import render_markdown
    from pixquery.eval.runner import eval_command

    results = eval_command(task, data, model, method, out, split, batch_size, workers, no_cache)
    if json_out:
        _print_json(results)
    else:
        sys.stdout.write(render_markdown(results))
        _console().print(f"report written to {Path(results['files']['json']).parent}")


@app.command()
def serve(
    index: IndexOpt = None,
    host: Annotated[str, typer.Option(help="Address to bind (loopback by default; others can reach it if changed).")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    token: Annotated[str | None, typer.Option(envvar="PIXQUERY_TOKEN",
                                              help="Require this bearer token (all but /api/health).")] = None,
    open_browser: Annotated[bool, typer.Option("--open", help="Open the page in a browser.")] = False,
) -> None:
    """Serve the web page and the HTTP API (OpenAPI at /openapi.json) for an index.

    While it runs, `pixquery search TEXT` on the same index asks it instead of loading the model (an HTTP round
    trip instead of a cold start); set PIXQUERY_NO_SERVER=1 to search locally anyway.
    """
    from pixquery.api import default_index_dir
    from pixquery.server.run import serve as run_server

    run_server(index or default_index_dir(), host=host, port=port, token=token, open_browser=open_browser)


def _register_more_commands() -> None:
    """Commands defined in their own modules register themselves on `app` when imported."""
    import pixquery.cli_organize  # noqa: F401


def _with_ray_default(args: list[str]) -> list[str]:
    """`--ray` may come without an address (= a local instance); give typer the explicit value it needs."""
    out = list(args)
    for i, arg in enumerate(out):
        if arg == "--":
            break
        if arg == "--ray" and (i + 1 == len(out) or out[i + 1].startswith("-")):
            out.insert(i + 1, "local")
            break
    return out


def main() -> None:
    """Console-script entry point: user errors print one clear line, not a traceback."""
    _register_more_commands()
    try:
        app(args=_with_ray_default(sys.argv[1:]))
    except PixqueryError as exc:
        _console().print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(1)
    except KeyboardInterrupt:
        _console().print("interrupted; run the same command again to resume")
        sys.exit(130)
