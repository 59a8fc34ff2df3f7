"""ShapesWorld: a deterministic synthetic world of shapes with captions, edits and held-out combinations.

It is pixquery's test world: a small CLIP-style model is trained on its training stream, and evaluation
sets are emitted in the real benchmarks' file formats (see :mod:`pixquery.synth.emit`).
"""

from pixquery.synth.captions import (
    caption_for,
    caption_involves_heldout,
    describe,
    parse_caption,
    tokenize,
)
from pixquery.synth.edits import (
    EDIT_KINDS,
    Edit,
    all_words,
    apply_edit,
    edit_involves_heldout,
    near_misses,
    sample_edit,
)
from pixquery.synth.render import render_scene
from pixquery.synth.world import (
    BACKGROUNDS,
    COLOURS,
    DEFAULT_HELDOUT,
    EMPTY_HELDOUT,
    RELATIONS,
    SHAPES,
    SIZES,
    HeldOut,
    Obj,
    Scene,
    involves_heldout,
    parse_heldout,
    sample_scene,
)

#: Every word a ShapesWorld caption or edit text can contain, sorted.
VOCABULARY: tuple[str, ...] = all_words()

__all__ = [
    "BACKGROUNDS", "COLOURS", "DEFAULT_HELDOUT", "EDIT_KINDS", "EMPTY_HELDOUT", "RELATIONS", "SHAPES",
    "SIZES",
    "VOCABULARY", "Edit", "HeldOut", "Obj", "Scene", "all_words", "apply_edit", "caption_for",
    "caption_involves_heldout", "describe", "edit_involves_heldout", "involves_heldout", "near_misses",
    "parse_caption", "parse_heldout", "render_scene", "sample_edit", "sample_scene", "tokenize",
]
