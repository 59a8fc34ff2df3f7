"""Training data for the `mini` model: a pre-rendered pool of ShapesWorld scenes, twins and fact vectors.

Rendering a 64 px scene costs ~0.6 ms and captioning + parsing ~1 ms, so the pool is generated once, up front,
in worker processes (deterministically: scene i always comes from the generator seeded (seed, i)), and training
then only indexes tensors.

Two things in the pool exist for compositional learning:

* Twins. Scene 2i+1 is scene 2i after one random training edit (a colour, shape or size change or a
  move), or, for a share of multi-object scenes, with two objects' colours swapped. Batches take both, so
  every batch holds pairs that differ in exactly one attribute or relation: the hardest negatives there are,
  in both directions (NegCLIP-style, but with real images as well as texts). The swaps are what teach binding:
  without them "a red star and a green circle" and "a green star and a red circle" hold the same words and
  the same pixels' colours, and a contrastive model trained on random batches embeds them alike (measured:
  Winoground-style binding scores at or below chance, see mini_eval.binding_accuracy).
* Fact vectors. Every scene gets a multi-hot vector of the facts it shows (shapes, colours, colour+shape,
  size+shape, relations, background, object count) and every caption the facts it asserts (read back with
  `parse_caption`). A caption is true of an image when its facts are a subset of the image's, which lets the
  loss drop false negatives ("a grey background" is true of a fifth of any batch).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from pixquery.synth.captions import caption_for, describe, parse_caption
from pixquery.synth.edits import apply_edit, sample_edit
from pixquery.synth.render import render_scene
from pixquery.synth.world import (
    BACKGROUNDS,
    COLOURS,
    GRID,
    RELATIONS,
    SHAPES,
    SIZES,
    HeldOut,
    Scene,
    sample_scene,
    swap_colours,
)

TWIN_EDIT_KINDS: tuple[str, ...] = ("colour", "shape", "move", "size")
SWAP_TWIN_SHARE = 0.4
"""Share of twins that are colour swaps (when the scene has two differently coloured objects)."""


def colour_swap(scene: Scene, rng: np.random.Generator, heldout: HeldOut) -> Scene | None:
    """`scene` with two differently coloured objects' colours exchanged, or None when no swap stays in training."""
    objs = scene.objects
    pairs = [(a, b) for a, b in itertools.combinations(range(len(objs)), 2) if objs[a].colour != objs[b].colour]
    for k in rng.permutation(len(pairs)):
        a, b = pairs[int(k)]
        if heldout.blocks_pair(objs[b].colour, objs[a].shape) or heldout.blocks_pair(objs[a].colour, objs[b].shape):
            continue
        return swap_colours(scene, a, b)
    return None


def _fact_names() -> list[tuple[str, ...]]:
    names: list[tuple[str, ...]] = []
    names += [("shape", s) for s in SHAPES]
    names += [("colour", c) for c in COLOURS]
    names += [("size", z) for z in SIZES]
    names += [("colour_shape", c, s) for c in COLOURS for s in SHAPES]
    names += [("size_shape", z, s) for z in SIZES for s in SHAPES]
    names += [("size_colour", z, c) for z in SIZES for c in COLOURS]
    names += [("rel", a, r, b) for a, b in itertools.permutations(SHAPES, 2) for r in RELATIONS]
    names += [("bg", b) for b in BACKGROUNDS]
    names += [("count", str(n)) for n in range(1, 5)]
    return names


FACTS: tuple[tuple[str, ...], ...] = tuple(_fact_names())
FACT_INDEX: dict[tuple[str, ...], int] = {name: i for i, name in enumerate(FACTS)}
CELLS: tuple[tuple[int, int], ...] = tuple((c, r) for r in range(GRID) for c in range(GRID))
ATTRIBUTE_GROUPS: tuple[tuple[str, int], ...] = (
    *[(f"shape@{c},{r}", len(SHAPES) + 1) for c, r in CELLS],
    *[(f"colour@{c},{r}", len(COLOURS) + 1) for c, r in CELLS],
    *[(f"size@{c},{r}", len(SIZES) + 1) for c, r in CELLS],
    ("background", len(BACKGROUNDS)),
    ("count", 4),
)
"""Targets of the training-only attribute head, one softmax per group: what shape, colour and size each grid cell
holds (class 0 = empty), the background and the object count.

Colour and shape are separate targets, never their combination, so the head learns the parts of held-out pairs
(red things, stars) without a held-out pair ever being named."""

MAX_CAPTION_FACTS = 24
"""Facts stored per caption (a 4-object caption with sizes, colours and a background asserts ~14)."""


def scene_facts(scene: Scene) -> list[int]:
    """Indices (into FACTS) of every fact `scene` shows."""
    out = {FACT_INDEX[("bg", scene.background)], FACT_INDEX[("count", str(len(scene.objects)))]}
    for o in scene.objects:
        out |= {
            FACT_INDEX[("shape", o.shape)],
            FACT_INDEX[("colour", o.colour)],
            FACT_INDEX[("size", o.size)],
            FACT_INDEX[("colour_shape", o.colour, o.shape)],
            FACT_INDEX[("size_shape", o.size, o.shape)],
            FACT_INDEX[("size_colour", o.size, o.colour)],
        }
    out |= {FACT_INDEX[("rel", a, r, b)] for a, r, b in scene.relations()}
    return sorted(out)


def scene_attributes(scene: Scene) -> list[int]:
    """The class of every ATTRIBUTE_GROUPS group for `scene` (per cell: 0 when the cell is empty)."""
    by_cell = {o.cell: o for o in scene.objects}
    shapes = [SHAPES.index(by_cell[c].shape) + 1 if c in by_cell else 0 for c in CELLS]
    colours = [COLOURS.index(by_cell[c].colour) + 1 if c in by_cell else 0 for c in CELLS]
    sizes = [SIZES.index(by_cell[c].size) + 1 if c in by_cell else 0 for c in CELLS]
    return shapes + colours + sizes + [BACKGROUNDS.index(scene.background), len(scene.objects) - 1]


def caption_facts(text: str) -> list[int]:
    """Indices of the facts a caption asserts (a generic "shape" asserts only its colour/size)."""
    parsed = parse_caption(text)
    out: set[int] = set()
    for size, colour, shape in parsed.objects:
        if shape == "*":
            if colour:
                out.add(FACT_INDEX[("colour", colour)])
            if size:
                out.add(FACT_INDEX[("size", size)])
            if colour and size:
                out.add(FACT_INDEX[("size_colour", size, colour)])
            continue
        out.add(FACT_INDEX[("shape", shape)])
        if colour:
            out.add(FACT_INDEX[("colour_shape", colour, shape)])
        if size:
            out.add(FACT_INDEX[("size_shape", size, shape)])
    out |= {FACT_INDEX[("rel", a, r, b)] for a, r, b in parsed.relations}
    out |= {FACT_INDEX[("bg", b)] for b in parsed.backgrounds}
    if parsed.count is not None and 1 <= parsed.count <= 4:
        out.add(FACT_INDEX[("count", str(parsed.count))])
    return sorted(out)


def training_captions(scene: Scene, rng: np.random.Generator, n: int) -> list[str]:
    """`n` true captions: mostly varied ones, one that names every object, and the canonical full one.

    The canonical form (`caption_for`) is the one retrieval benchmarks query with, so it is seen in training
    too (for training scenes only, so no held-out combination leaks in).
    """
    varied = describe(scene, rng, n=max(1, n - 2))
    complete = describe(scene, rng, n=1, style="complete")
    return (varied + complete + [caption_for(scene, "full")])[:n]


@dataclass
class Pool:
    """Pre-rendered training data; rows 2i and 2i+1 are a scene and its one-edit twin."""

    images: torch.Tensor
    """(M, 3, S, S) uint8."""
    captions: list[list[str]]
    """M lists of K caption strings."""
    caption_facts: torch.Tensor
    """(M, K, MAX_CAPTION_FACTS) int16 fact indices, -1 padded."""
    image_facts: torch.Tensor
    """(M, len(FACTS)) bool."""
    attributes: torch.Tensor
    """(M, len(ATTRIBUTE_GROUPS)) int64 class targets of the attribute head."""

    def __len__(self) -> int:
        return self.images.shape[0]


def _make_pair(seed: int, index: int, heldout: HeldOut, size: int, n_captions: int) -> list[tuple]:
    """Scene `index` of the pool seeded `seed` and its twin, each as (image, captions, caption facts, scene facts,
    attribute classes)."""
    rng = np.random.default_rng([seed, index])
    scene = sample_scene(rng, heldout=heldout, split="train")
    twin = colour_swap(scene, rng, heldout) if rng.random() < SWAP_TWIN_SHARE else None
    try:
        twin = twin or apply_edit(scene, sample_edit(scene, rng, heldout, split="train", kinds=TWIN_EDIT_KINDS), rng)
    except ValueError:  # no edit fits: fall back to an unrelated scene
        twin = sample_scene(rng, heldout=heldout, split="train")
    out = []
    for s in (scene, twin):
        image = np.asarray(render_scene(s, size=size, rng=rng), dtype=np.uint8).transpose(2, 0, 1).copy()
        caps = training_captions(s, rng, n_captions)
        out.append((image, caps, [caption_facts(c) for c in caps], scene_facts(s), scene_attributes(s)))
    return out


def _make_chunk(args: tuple[int, Sequence[int], HeldOut, int, int]) -> list[tuple]:
    seed, indices, heldout, size, n_captions = args
    return [item for i in indices for item in _make_pair(seed, i, heldout, size, n_captions)]


def build_pool(
    n_pairs: int, seed: int, heldout: HeldOut, size: int = 64, n_captions: int = 6, workers: int = 2
) -> Pool:
    """Generate `n_pairs` scenes and their twins (2 * n_pairs rows); identical for any `workers`."""
    chunks = [range(start, min(start + 500, n_pairs)) for start in range(0, n_pairs, 500)]
    jobs = [(seed, chunk, heldout, size, n_captions) for chunk in chunks]
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=workers) as executor:
            parts = list(executor.map(_make_chunk, jobs))
    else:
        parts = [_make_chunk(job) for job in jobs]
    items = [item for part in parts for item in part]
    images = torch.from_numpy(np.stack([it[0] for it in items]))
    cap_facts = torch.full((len(items), n_captions, MAX_CAPTION_FACTS), -1, dtype=torch.int16)
    img_facts = torch.zeros((len(items), len(FACTS)), dtype=torch.bool)
    attributes = torch.tensor([it[4] for it in items], dtype=torch.int64)
    for row, (_, _, facts_per_caption, facts, _) in enumerate(items):
        img_facts[row, facts] = True
        for k, cf in enumerate(facts_per_caption):
            cf = cf[:MAX_CAPTION_FACTS]
            cap_facts[row, k, : len(cf)] = torch.tensor(cf, dtype=torch.int16)
    captions = [it[1] for it in items]
    return Pool(images=images, captions=captions, caption_facts=cap_facts, image_facts=img_facts,
                attributes=attributes)


def truth_matrix(caption_facts: torch.Tensor, image_facts: torch.Tensor) -> torch.Tensor:
    """(n_captions, n_images) bool: caption i is true of image j (its facts are a subset of the image's).

    `caption_facts` is (n, MAX_CAPTION_FACTS) int fact indices, -1 padded; `image_facts` (m, len(FACTS)) bool.
    """
    n = caption_facts.shape[0]
    required = torch.zeros((n, len(FACTS) + 1), dtype=torch.float32)
    # Padding (-1) lands in the extra last column, which is then dropped.
    required.scatter_(1, caption_facts.long() % (len(FACTS) + 1), 1.0)
    required = required[:, : len(FACTS)]
    missing = required @ (~image_facts).float().T
    return missing == 0
