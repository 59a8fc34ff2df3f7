"""The fixed images and texts that precision work runs on: the parity gate's probe set and calibration sets.

Both mix real photos (the package's demo photos) with ShapesWorld scenes, so the activations they cover span
natural images and flat synthetic ones, and the texts mix photo queries with ShapesWorld captions. The probe
set and the default calibration set use different ShapesWorld seeds, so the gate does not judge a static
variant only on the scenes it was calibrated on. Everything is deterministic and offline.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

PHOTO_QUERIES = (
    "a black cat",
    "a cat sleeping on a chair",
    "a bee on a flower",
    "boats on a lake",
    "a stack of books",
    "a birthday cake",
    "a camera lens",
    "a chess knight",
    "chess pawns on a board",
    "a duck in the water",
    "two kookaburras on a branch",
    "a magpie",
    "a colourful parrot",
    "a tree in a field",
    "a dog running on the beach",
    "a red car parked on a street",
)
"""Photo-style queries (many match a demo photo; a few match none, as real queries often do)."""

PROBE_SEED = 1
CALIBRATION_SEED = 2
SCENE_SIZE = 224


def demo_photo_paths() -> list[Path]:
    """The package's demo photos, sorted by name."""
    folder = Path(str(resources.files("pixquery").joinpath("data/demo_photos")))
    return sorted(p for p in folder.glob("*.jpg") if p.is_file())


def _load(path: Path) -> Image.Image:
    from pixquery.media.decode import open_image

    return open_image(path, target_size=SCENE_SIZE)


def scenes(n: int, seed: int, size: int = SCENE_SIZE) -> tuple[list[Image.Image], list[str]]:
    """`n` rendered ShapesWorld scenes and one full caption of each."""
    from pixquery.synth.captions import caption_for
    from pixquery.synth.render import render_scene
    from pixquery.synth.world import sample_scene

    rng = np.random.default_rng(seed)
    images, captions = [], []
    for _ in range(n):
        scene = sample_scene(rng, split="any")
        images.append(render_scene(scene, size=size, rng=rng))
        captions.append(caption_for(scene, "full"))
    return images, captions


def probe_set(n_scenes: int = 43) -> tuple[list[Image.Image], list[str]]:
    """The parity gate's probes: the demo photos plus `n_scenes` scenes, and photo queries plus captions."""
    photos = [_load(p) for p in demo_photo_paths()]
    images, captions = scenes(n_scenes, PROBE_SEED)
    return photos + images, list(PHOTO_QUERIES) + captions[:16]


def calibration_images(n: int, paths: Sequence[str | Path] | None = None) -> list[Image.Image]:
    """`n` images for static calibration: a seeded sample of `paths` (e.g. the user's own indexed images),
    else the demo photos followed by ShapesWorld scenes. Unreadable files are skipped."""
    from pixquery.media.decode import ImageDecodeError

    if paths:
        order = np.random.default_rng(CALIBRATION_SEED).permutation(len(paths))
        images = []
        for i in order:
            try:
                images.append(_load(Path(paths[i])))
            except ImageDecodeError:
                continue
            if len(images) == n:
                break
        if images:
            return images
    photos = [_load(p) for p in demo_photo_paths()][:n]
    return photos + scenes(max(0, n - len(photos)), CALIBRATION_SEED)[0]


def calibration_texts(n: int) -> list[str]:
    """`n` texts for static calibration of a text tower: photo queries and varied ShapesWorld captions."""
    from pixquery.synth.captions import describe
    from pixquery.synth.world import sample_scene

    rng = np.random.default_rng(CALIBRATION_SEED)
    texts = list(PHOTO_QUERIES)
    while len(texts) < n:
        texts.extend(describe(sample_scene(rng, split="any"), rng, n=4))
    return texts[:n]
