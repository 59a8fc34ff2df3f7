"""The `pixquery` command line: one parser, one set of defaults, commands mirroring the facade.

Parsing needs only argparse; each command imports what it runs when it runs, so `pixquery search TEXT` pays for a
text query and nothing else (benchmarks/cold_query.py).
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

DESCRIPTION = """\
Zero-shot image search: index a folder of images, then find what you mean by text, by example image, or by an
image plus a change ("this, but red"). No training, no labels.

Start with `pixquery demo` (offline). Then:
  pixquery index ~/Pictures --model conse        # real ImageNet weights, shipped with pixquery: offline
  pixquery index ~/Pictures --model immich:ViT-B-32__laion2b_s34b_b79k   # a CLIP model, downloaded once
  pixquery search "a dog on a beach"
  pixquery serve --open                          # the web page
"""

MODEL_HELP = ("model spec: mini, conse, onnx:DIR, immich:NAME, random:ARCH, open_clip:ARCH/TAG or a Hugging Face id. "
              "Needed to create an index ($PIXQUERY_MODEL); an existing index remembers its model.")
INDEX_HELP = "index directory (default: $PIXQUERY_INDEX, else the user data dir)"
PRECISION_HELP = ("fp32, int8 or auto (default: $PIXQUERY_PRECISION, else auto = int8 where the model's parity gate "
                  "passes). Fixed when an index is created; an existing index keeps its own.")


EXTRA_OF_MODULE = {
    "uvicorn": "serve", "fastapi": "serve", "multipart": "serve", "python_multipart": "serve",
    "faiss": "scale", "pymilvus": "scale", "milvus_lite": "scale", "ray": "scale",
    "sklearn": "organize", "scipy": "organize", "imagehash": "organize",
    "matplotlib": "eval",
    "torch": "torch", "torchvision": "torch", "transformers": "torch", "open_clip": "torch", "onnxscript": "torch",
    "sentence_transformers": "torch", "safetensors": "torch", "sentencepiece": "torch",
}
"""Which pip extra brings a module the base install leaves out (pyproject.toml's optional dependencies)."""


def missing_extra(exc: ImportError) -> str:
    """One line for a command that needs a module this installation lacks, saying what to install."""
    module = (exc.name or "").split(".")[0]
    extra = EXTRA_OF_MODULE.get(module)
    if extra is None:
        return f"a module this needs is not installed ({exc}); install it with pip"
    return f'this needs {module}, which the base install leaves out: pip install "pixquery[{extra}]"'


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written (examples keep their lines), options wrapped, defaults shown where they help."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=34, width=110)


def _command(sub: argparse._SubParsersAction, name: str, handler: str, help: str, description: str | None = None
             ) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=help, description=description or help, formatter_class=HelpFormatter)
    parser.set_defaults(handler=handler, command=name)
    return parser


def _index_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--index", "-i", type=Path, default=None, metavar="DIR", help=INDEX_HELP)


def _json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", dest="json_out", action="store_true", help="print machine-readable JSON")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port between 1 and 65535, got {value}")
    return value


def _unit(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


def command_parser(name: str) -> argparse.ArgumentParser:
    """The parser of one command (its defaults are the command's defaults)."""
    return build_parser().commands[name]  # type: ignore[attr-defined]


@functools.cache
def build_parser() -> argparse.ArgumentParser:
    """The whole command line; `.commands` maps each command to its own parser. Built once per process: a plain
    search reads the search parser's defaults again (`commands._is_plain`), and parsing never changes it."""
    from pixquery import __version__

    parser = argparse.ArgumentParser(prog="pixquery", description=DESCRIPTION, formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"pixquery {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    p = _command(sub, "index", "commands:index", "index images (new, changed, moved and deleted files)",
                 "Index images under PATHS: new and changed files are embedded, moved files followed, deleted ones "
                 "removed.\nSafe to interrupt: run it again and it resumes where it stopped.\n\nExamples:\n"
                 "  pixquery index ~/Pictures --model conse\n"
                 "  pixquery index /data/products --store auto\n"
                 "  pixquery index /mnt/shared/images --ray ray://head:10001 --ray-actors 16")
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="folders or files to index (recursively)")
    _index_option(p)
    p.add_argument("--model", "-m", default=None, help=MODEL_HELP)
    p.add_argument("--batch-size", "-b", type=_positive, default=32, metavar="N", help="images per model call")
    p.add_argument("--workers", "-w", type=_positive, default=None, metavar="N",
                   help="decoding threads (default: the cores less one, at least 1)")
    p.add_argument("--include", action="append", default=[], metavar="GLOB", help="only files matching this glob")
    p.add_argument("--exclude", action="append", default=[], metavar="GLOB",
                   help="skip files and folders matching this glob")
    p.add_argument("--hidden", action="store_true", help="also index hidden files and folders")
    p.add_argument("--max-megapixels", type=float, default=100.0, metavar="MP",
                   help="skip larger images (0 turns the limit off)")
    p.add_argument("--precision", default=None, choices=("fp32", "int8", "auto"), help=PRECISION_HELP)
    p.add_argument("--store", default=None, metavar="KIND",
                   help="vector store of a NEW index: flat (exact, default), faiss-hnsw, faiss-ivfpq, auto (by size "
                        "and memory), milvus:./vectors.db or milvus:http://HOST:19530. Switch an existing index "
                        "with `pixquery reindex --store`.")
    p.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="embed on Ray: --ray alone starts a local instance; --ray auto joins this machine's cluster; "
                        "--ray ray://HEAD:10001 a remote one (files must be on storage every node sees)")
    p.add_argument("--ray-actors", type=_positive, default=2, metavar="N", help="encoder actors (model copies) on Ray")
    _json_option(p)

    p = _command(sub, "search", "commands:search", "search by text, example image, or both",
                 "Search the index by TEXT, by example --image, or both: an image plus a text is a composed query "
                 "(\"this, but red\").\nNegatives, filters, a relevance cut-off and re-ranking are flags; a JSON "
                 "--spec holds all of it.\n\nExamples:\n"
                 "  pixquery search \"a dog on a beach at sunset\"\n"
                 "  pixquery search --image holiday.jpg -k 20\n"
                 "  pixquery search --image dress.jpg \"in red\" --method weighted --alpha 0.6\n"
                 "  pixquery search \"people at a market\" --not cars --folder ~/Pictures/2024 --cutoff auto")
    p.add_argument("text", nargs="?", default=None,
                   help='what to look for, in words (with --image: the change to apply, e.g. "make it red")')
    p.add_argument("--image", "-I", action="append", default=[], type=Path, metavar="FILE",
                   help="an example image (repeatable)")
    p.add_argument("-k", "--top", type=_positive, default=10, metavar="K", help="how many results (default 10)")
    p.add_argument("--not", dest="negatives", action="append", default=[], metavar="TEXT",
                   help='what results should not show, e.g. --not "people" (repeatable)')
    p.add_argument("--not-image", dest="negative_images", action="append", default=[], type=Path, metavar="FILE",
                   help="an image results should not look like (repeatable)")
    p.add_argument("--method", default="auto",
                   help="how an image and a text combine: auto, image, text, sum, weighted, pdv, inversion, rewrite")
    p.add_argument("--alpha", type=_unit, default=None, help="text weight for --method weighted/pdv (0 = image only)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="a method parameter (repeatable)")
    p.add_argument("--cutoff", default=None,
                   help='return only matches: "auto" (calibrated), a score, or "none" (default: the k best)')
    p.add_argument("--sort", default="score", choices=("score", "date"),
                   help="order: score, or date taken (after the cut-off)")
    p.add_argument("--folder", action="append", default=[], metavar="DIR", help="only files under this folder")
    p.add_argument("--glob", default=None, metavar="PATTERN", help='only paths matching this glob, e.g. "*/2024/*"')
    p.add_argument("--from", dest="taken_from", default=None, metavar="DATE",
                   help="taken on or after (YYYY, YYYY-MM, YYYY-MM-DD)")
    p.add_argument("--to", dest="taken_to", default=None, metavar="DATE", help="taken on or before")
    p.add_argument("--camera", default=None, help="camera model (EXIF)")
    p.add_argument("--ext", action="append", default=[], help="file type, e.g. jpg (repeatable)")
    p.add_argument("--min-width", type=_positive, default=None, metavar="PX", help="minimum width in pixels")
    p.add_argument("--tag", action="append", default=[], help="only images tagged so (see pixquery tag)")
    p.add_argument("--hubness", default=None, choices=("qbnorm", "csls"), help="re-rank against hubs")
    p.add_argument("--diversity", type=_unit, default=0.0, help="0 = plain ranking, up to 1 = most varied (MMR)")
    p.add_argument("--spec", type=Path, default=None, metavar="FILE",
                   help="a JSON query spec (flags given too override it)")
    _index_option(p)
    p.add_argument("--model", "-m", default=None, help="the index's model (checked against it; rarely needed)")
    p.add_argument("--precision", default=None, choices=("fp32", "int8"),
                   help="the index's precision (checked against it; rarely needed)")
    _json_option(p)

    p = _command(sub, "info", "commands:info", "show the index: model, counts, skipped files, size")
    _index_option(p)
    _json_option(p)

    p = _command(sub, "reindex", "commands:reindex", "switch the index to another vector store (nothing re-embedded)",
                 "Switch the index to another vector store in place, from its raw vectors: nothing is embedded "
                 "again.\n\nExamples:\n  pixquery reindex --store faiss-hnsw --param M=32 --param efSearch=64\n"
                 "  pixquery reindex --store flat")
    p.add_argument("--store", required=True, metavar="KIND",
                   help="flat, faiss-hnsw, faiss-ivfpq, auto, milvus:./vectors.db or milvus:http://HOST:19530")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="a store parameter, e.g. M=32, efSearch=64, nprobe=16 (repeatable)")
    _index_option(p)
    _json_option(p)

    p = _command(sub, "serve", "commands:serve", "serve the web page and the HTTP API",
                 "Serve the web page and the HTTP API (OpenAPI at /openapi.json) for an index.\n\nWhile it runs, "
                 "`pixquery search TEXT` on the same index asks it instead of loading the model (an HTTP round trip "
                 "instead of a cold start); set PIXQUERY_NO_SERVER=1 to search locally anyway.")
    _index_option(p)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only; others can reach it if changed)")
    p.add_argument("--port", type=_port, default=8000, help="TCP port (default 8000)")
    p.add_argument("--token", default=None, help="require this bearer token on all but /api/health "
                                                 "($PIXQUERY_TOKEN)")
    p.add_argument("--open", dest="open_browser", action="store_true", help="open the page in a browser")

    p = _command(sub, "tag", "organize:tag", "tag every image zero-shot (tags become search filters)",
                 "Tag every image zero-shot, from your labels or from a vocabulary; tags are stored in the index and "
                 "usable as search filters (--tag).\n\nExamples:\n  pixquery tag --labels \"cat,dog,bird\"\n"
                 "  pixquery tag --labels labels.txt --top 2\n  pixquery tag --open")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--labels", "-l", default=None,
                        help='labels: "cat,dog,...", a text file (one per line) or a JSON file of '
                             '{"label": ["description", ...]} (CuPL style)')
    source.add_argument("--open", dest="open_vocabulary", action="store_true",
                        help="no labels: pick tags from the shipped vocabulary of common words")
    p.add_argument("--vocabulary", type=Path, default=None, metavar="FILE",
                   help="for --open: your own word list (one per line), or a shipped list by name: common (the "
                        "default, ~2,600 common words) or concepts (17k WordNet nouns)")
    p.add_argument("--method", default="auto", choices=("auto", "single", "ensemble", "autoclip"),
                   help="prompting: one template, an ensemble, or AutoCLIP's weighted ensemble (auto)")
    p.add_argument("--templates", default=None, help="prompt templates: clip80, curated7 or a file")
    p.add_argument("--top", type=_positive, default=None, help="tags kept per image")
    p.add_argument("--threshold", default=None,
                   help='"auto" (calibrated "none of these"), a number, or 0 to always tag')
    _index_option(p)
    _json_option(p)

    p = _command(sub, "cluster", "organize:cluster", "group the collection into named clusters")
    p.add_argument("--k", default="auto", help="number of clusters, or auto (best silhouette; enough groups to browse "
                   "when the collection has no clear structure)")
    p.add_argument("--method", default="kmeans", choices=("kmeans", "hdbscan"), help="clustering method")
    p.add_argument("--vocabulary", type=Path, default=None, metavar="FILE",
                   help="words to name clusters with: a file, or common (default) or concepts")
    p.add_argument("--sheet", type=Path, default=None, metavar="PNG", help="write a contact sheet PNG here")
    _index_option(p)
    _json_option(p)

    p = _command(sub, "duplicates", "organize:duplicates", "find duplicate groups with a suggested keeper",
                 "Find duplicates a user can act on: exact (same bytes or pixels) and near (the same photo resized, "
                 "re-encoded, cropped a little or re-toned) groups, each with a suggested keeper, why, and the other "
                 "files as removable; and, apart, similar photos (bursts, the same scene), never removable. Nothing "
                 "is ever deleted.")
    p.add_argument("--kinds", default="exact,near,similar", help="exact, near, similar (comma-separated)")
    p.add_argument("--near", type=float, default=None, metavar="BITS", help="perceptual-hash threshold override")
    p.add_argument("--semantic", "--similar", dest="semantic", type=float, default=None, metavar="COS",
                   help="least embedding cosine of similar photos (calibrated per model by default)")
    _index_option(p)
    _json_option(p)

    p = _command(sub, "demo", "tools:demo", "offline tour: ShapesWorld with mini, real photos with conse",
                 "The offline tour: searches on ShapesWorld scenes with mini and on 21 real photos with conse, both "
                 "shipped with pixquery (no torch, no download).\nRe-running reuses its indexes; a part whose photos "
                 "or model changed is built again.")
    p.add_argument("--dir", dest="directory", type=Path, default=None,
                   help="where to build the demo (default: a folder of this installation in the user cache)")
    p.add_argument("--n", type=_positive, default=2000, help="ShapesWorld scenes in the demo gallery (>= 50)")
    p.add_argument("--no-photos", dest="photos", action="store_false", help="skip the real-photo demo (conse)")
    p.add_argument("--serve", action="store_true",
                   help="then open the web page on the demo index (needs pixquery[serve])")
    p.add_argument("--mini", default="mini", help="the ShapesWorld model: mini (shipped) or mini:DIR (trained)")

    p = _command(sub, "synth", "tools:synth", "write a ShapesWorld test set in the field's benchmark formats")
    p.add_argument("out_dir", type=Path, metavar="OUT", help="directory to write the sets into")
    p.add_argument("--n", type=_positive, default=1000, help="items per set (images, triplets, queries, groups)")
    p.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same bytes")
    p.add_argument("--heldout", default=None,
                   help='held-out combinations: "default", "none", "random:SEED", or '
                        '"red star,blue circle;star above circle"')
    p.add_argument("--size", type=int, default=64, help="image side in pixels (32-512)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing set")

    p = _command(sub, "eval", "tools:eval", "evaluate a model and methods on a benchmark",
                 "Evaluate a model and methods on a benchmark: embeds once (cached), writes JSON, Markdown and "
                 "plots.\n\nTasks: flickr30k, coco, cirr, circo, fashioniq, classification, roxford, rparis, "
                 "shapesworld-retrieval, shapesworld-cir, shapesworld-circo.")
    p.add_argument("task", help="the benchmark task (see above)")
    p.add_argument("--data", "-d", type=Path, required=True, help="the data set's directory, in its official layout")
    p.add_argument("--model", "-m", required=True, help="model spec to evaluate")
    p.add_argument("--method", action="append", default=[],
                   help="method to run, NAME or NAME:key=value,... (repeatable); composed-retrieval reports always "
                        "include the image, text and sum baselines")
    p.add_argument("--out", "-o", type=Path, default=None, help="report directory (results.json, .md, plots)")
    p.add_argument("--split", default=None, help="split to read (default: the task's test split)")
    p.add_argument("--batch-size", type=_positive, default=64, metavar="N", help="images per model call")
    p.add_argument("--workers", type=_positive, default=None, metavar="N", help="decoding threads")
    p.add_argument("--no-cache", action="store_true", help="embed again even if cached")
    _json_option(p)

    p = _command(sub, "train-mini", "tools:train_mini", "train the mini model on ShapesWorld (needs pixquery[torch])")
    p.add_argument("out_dir", type=Path, metavar="OUT", help="where to write mini.pt, onnx/ and train_log.json")
    p.add_argument("--minutes", type=float, default=12.0, help="training time budget")
    p.add_argument("--seed", type=int, default=0, help="the same seed gives the same weights")
    p.add_argument("--heldout", default=None, help="held-out combinations (see pixquery synth --help)")

    p = _command(sub, "export-onnx", "tools:export_onnx", "export a torch model to ONNX in the immich layout",
                 "Export a model's image and text towers to ONNX in the immich layout, loadable with "
                 "--model onnx:DIR (needs pixquery[torch]).")
    p.add_argument("spec", help="a torch-backed model spec (random:ARCH, a Hugging Face id, open_clip:ARCH/TAG)")
    p.add_argument("out_dir", type=Path, metavar="OUT", help="directory to write (immich layout)")
    parser.commands = sub.choices  # type: ignore[attr-defined]
    return parser


def _handler(name: str) -> Callable[[argparse.Namespace], int | None]:
    module_name, _, function = name.partition(":")
    import importlib

    return getattr(importlib.import_module(f"pixquery.cli.{module_name}"), function)


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point: user errors print one clear line (exit 1, or 2 for a bad command line), an
    interruption says how to resume (exit 130)."""
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        sys.exit(2)
    from pixquery.cli.output import error, note
    from pixquery.errors import PixqueryError, UsageError

    try:
        code = _handler(args.handler)(args)
    except PixqueryError as exc:
        error(str(exc))
        sys.exit(2 if isinstance(exc, UsageError) else 1)
    except ImportError as exc:  # an optional extra is not installed (serve, scale, organize, torch...)
        error(missing_extra(exc))
        sys.exit(1)
    except OSError as exc:  # the machine said no (permissions, a full disk, a path that is a file): one line
        where = f": {exc.filename}" if exc.filename else ""
        error(f"{exc.strerror or exc}{where}")
        sys.exit(1)
    except KeyboardInterrupt:
        if args.command == "index":
            note("interrupted: what was embedded is saved; run the same command again to resume")
        else:
            note("interrupted")
        sys.exit(130)
    sys.exit(code or 0)


if __name__ == "__main__":  # `python -m pixquery.cli.main` runs the CLI too, rather than silently nothing
    main()
