"""Scene edits for composed image retrieval: sampling, applying, paraphrasing and hard negatives.

An :class:`Edit` is fully specified (which object, which new value, which destination cell), so
:func:`apply_edit` is a pure function apart from optional position jitter. Objects are named by their
shape, which is unique within a scene.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

import numpy as np

from pixquery.synth.captions import (
    BACKGROUND_SUFFIXES,
    BACKGROUND_WORDS,
    GENERIC_NOUNS,
    NUMBER_WORDS,
    PREFIXES,
    RELATION_WORDS,
    SHAPE_NOUNS,
    SIZE_WORDS,
    TEMPLATE_WORDS,
    caption_involves_heldout,
    noun_phrase,
    plural,
    tokenize,
)
from pixquery.synth.world import (
    BACKGROUNDS,
    COLOURS,
    FORBIDDEN_ON_BACKGROUND,
    GRID,
    INVERSE_RELATION,
    MAX_OBJECTS,
    RELATIONS,
    SHAPES,
    SIZES,
    HeldOut,
    Obj,
    Scene,
    Split,
    allowed_colours,
    cells_in_relation,
    involves_heldout,
    make_obj,
    relations_between,
)

EDIT_KINDS: tuple[str, ...] = ("colour", "remove", "add", "move", "background", "shape", "size")

#: Where an added object goes: the grid cells each side phrase covers.
SIDES: dict[str, tuple[str, frozenset[tuple[int, int]]]] = {
    "left": ("on the left", frozenset((0, r) for r in range(GRID))),
    "right": ("on the right", frozenset((GRID - 1, r) for r in range(GRID))),
    "top": ("at the top", frozenset((c, 0) for c in range(GRID))),
    "bottom": ("at the bottom", frozenset((c, GRID - 1) for c in range(GRID))),
}
OPPOSITE_SIDE = {"left": "right", "right": "left", "top": "bottom", "bottom": "top"}

TEMPLATES: dict[str, tuple[str, ...]] = {
    "colour": ("make the {shape} {colour}", "change the colour of the {shape} to {colour}",
               "paint the {shape} {colour}", "the {shape} should be {colour}", "turn the {shape} {colour}"),
    "remove": ("remove the {shape}", "take away the {shape}", "delete the {shape}", "get rid of the {shape}",
               "the same scene without the {shape}"),
    "add": ("add {np} {side}", "put {np} {side}", "place {np} {side}", "the same scene with {np} {side}"),
    "move": ("move the {shape} {rel} the {other}", "put the {shape} {rel} the {other}",
             "place the {shape} {rel} the {other}", "the {shape} should be {rel} the {other}"),
    "background": ("the same scene with a {bg} background", "change the background to {bg}",
                   "make the background {bg}", "on a {bg} background instead", "use a {bg} background"),
    "shape": ("turn the {shape} into a {new}", "replace the {shape} with a {new}",
              "change the {shape} into a {new}", "make the {shape} a {new}"),
    "size:large": ("make the {shape} bigger", "make the {shape} larger", "enlarge the {shape}",
                   "make the {shape} large"),
    "size:small": ("make the {shape} smaller", "shrink the {shape}", "make the {shape} small"),
}


@dataclass(frozen=True)
class Edit:
    """A modification of a scene and its text.

    ``shape`` names the object edited (for "add": the new object's shape); ``value`` is the new colour,
    shape, size, background, relation (move) or side (add); ``other`` is the shape a moved object is
    placed relative to; ``cell`` the destination cell of add/move; ``colour``/``size`` describe an added
    object.
    """

    kind: str
    text: str = ""
    shape: str | None = None
    value: str | None = None
    other: str | None = None
    cell: tuple[int, int] | None = None
    colour: str | None = None
    size: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"kind": self.kind, "text": self.text, "shape": self.shape, "value": self.value,
                "other": self.other, "cell": list(self.cell) if self.cell else None,
                "colour": self.colour, "size": self.size}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Edit:
        """Inverse of :meth:`to_dict`."""
        cell = data.get("cell")
        return cls(kind=data["kind"], text=data.get("text", ""), shape=data.get("shape"),
                   value=data.get("value"), other=data.get("other"), cell=tuple(cell) if cell else None,
                   colour=data.get("colour"), size=data.get("size"))


def apply_edit(scene: Scene, edit: Edit, rng: np.random.Generator | None = None) -> Scene:
    """The scene after ``edit``; ``rng`` only jitters the position/rotation of added or moved objects.

    Raises ValueError if the edit does not fit the scene (unknown object, occupied cell, ...).
    """
    kind = edit.kind
    if kind == "background":
        return replace(scene, background=edit.value)
    if kind == "add":
        if scene.has(edit.shape):
            raise ValueError(f"scene already has a {edit.shape}")
        new = make_obj(rng, edit.shape, edit.colour, edit.size, edit.cell)
        return replace(scene, objects=scene.objects + (new,))
    if not scene.has(edit.shape):
        raise ValueError(f"scene has no {edit.shape} to edit")
    if kind == "colour":
        return scene.replace_obj(edit.shape, colour=edit.value)
    if kind == "size":
        return scene.replace_obj(edit.shape, size=edit.value)
    if kind == "shape":
        if scene.has(edit.value):
            raise ValueError(f"scene already has a {edit.value}")
        return scene.replace_obj(edit.shape, shape=edit.value)
    if kind == "remove":
        return replace(scene, objects=tuple(o for o in scene.objects if o.shape != edit.shape))
    if kind == "move":
        old = scene.get(edit.shape)
        moved = make_obj(rng, old.shape, old.colour, old.size, edit.cell)
        return replace(scene, objects=tuple(moved if o.shape == edit.shape else o for o in scene.objects))
    raise ValueError(f"unknown edit kind {kind!r}; expected one of {', '.join(EDIT_KINDS)}")


def _try_apply(scene: Scene, edit: Edit) -> Scene | None:
    try:
        return apply_edit(scene, edit)
    except (ValueError, KeyError):
        return None


def _candidates(scene: Scene, kind: str) -> list[Edit]:
    """Every edit of ``kind`` that is valid on ``scene`` (text not yet filled in)."""
    objs, bg = scene.objects, scene.background
    colours = allowed_colours(bg)
    absent = [s for s in SHAPES if not scene.has(s)]
    out: list[Edit] = []
    if kind == "colour":
        out = [Edit("colour", shape=o.shape, value=c) for o in objs for c in colours if c != o.colour]
    elif kind == "remove" and len(objs) > 1:
        out = [Edit("remove", shape=o.shape) for o in objs]
    elif kind == "add" and len(objs) < MAX_OBJECTS:
        free = scene.free_cells()
        out = [Edit("add", shape=s, value=side, cell=cell, colour=c, size=z)
               for side, (_, cells) in SIDES.items() for cell in free if cell in cells
               for s in absent for c in colours for z in SIZES]
    elif kind == "move" and len(objs) > 1:
        free = scene.free_cells()
        for o in objs:
            for other in objs:
                if other is o:
                    continue
                for rel in RELATIONS:
                    if rel in relations_between(o, other):
                        continue  # already true: moving would not be a visible change of that fact
                    out += [Edit("move", shape=o.shape, value=rel, other=other.shape, cell=cell)
                            for cell in free if rel in cells_in_relation(cell, other.cell)]
    elif kind == "background":
        used = {o.colour for o in objs}
        out = [Edit("background", value=b) for b in BACKGROUNDS
               if b != bg and not used & FORBIDDEN_ON_BACKGROUND[b]]
    elif kind == "shape":
        out = [Edit("shape", shape=o.shape, value=s) for o in objs for s in absent]
    elif kind == "size":
        out = [Edit("size", shape=o.shape, value=z) for o in objs for z in SIZES if z != o.size]
    return out


def edit_text(edit: Edit, rng: np.random.Generator | None = None) -> str:
    """Modification text for ``edit``: a random paraphrase with ``rng``, the first template without."""
    key = f"size:{edit.value}" if edit.kind == "size" else edit.kind
    templates = TEMPLATES[key]
    template = templates[0] if rng is None else templates[int(rng.integers(len(templates)))]

    def choose(options: tuple[str, ...]) -> str:
        return options[0] if rng is None else options[int(rng.integers(len(options)))]

    fields: dict[str, str] = {"shape": edit.shape or "", "colour": edit.value or "", "new": edit.value or ""}
    if edit.kind == "add":
        obj = Obj(edit.shape, edit.colour, edit.size, 0.5, 0.5)
        fields["np"] = noun_phrase(obj, size=rng is None or rng.random() < 0.6)
        fields["side"] = SIDES[edit.value][0]
    elif edit.kind == "move":
        fields["rel"] = choose(RELATION_WORDS[edit.value])
        fields["other"] = edit.other or ""
    elif edit.kind == "background":
        fields["bg"] = choose(BACKGROUND_WORDS[edit.value])
    return template.format(**fields)


def edit_involves_heldout(scene: Scene, edit: Edit, heldout: HeldOut) -> bool:
    """Whether the edit's result or its text shows a held-out combination."""
    result = _try_apply(scene, edit)
    if result is not None and involves_heldout(result, heldout):
        return True
    return bool(edit.text) and caption_involves_heldout(edit.text, heldout)


def _kind_order(rng: np.random.Generator, kinds: tuple[str, ...]) -> Iterator[str]:
    for i in rng.permutation(len(kinds)):
        yield kinds[int(i)]


def sample_edit(scene: Scene, rng: np.random.Generator, heldout: HeldOut, split: Split = "train",
                kinds: tuple[str, ...] = EDIT_KINDS) -> Edit:
    """Draw an edit of ``scene`` with a paraphrased text.

    The kind is drawn uniformly among ``kinds`` that have a valid edit. ``split="train"``: neither the
    result nor the text shows a held-out combination; ``"heldout"``: the result or text does (kinds
    that cannot produce one are skipped); ``"any"``: no constraint. Raises ValueError if impossible.
    """
    if split not in ("train", "heldout", "any"):
        raise ValueError(f"split must be 'train', 'heldout' or 'any', got {split!r}")
    for kind in _kind_order(rng, kinds):
        candidates = _candidates(scene, kind)
        for i in rng.permutation(len(candidates)):
            edit = candidates[int(i)]
            result = _try_apply(scene, edit)
            if result is None:
                continue
            shows = involves_heldout(result, heldout)
            if (split == "train" and shows) or (split == "heldout" and not shows):
                continue
            for _ in range(8):  # a paraphrase never adds facts, but check the words anyway
                text_edit = replace(edit, text=edit_text(edit, rng))
                if split != "train" or not caption_involves_heldout(text_edit.text, heldout):
                    return text_edit
    raise ValueError(f"no {split} edit of kinds {kinds} fits this scene")


def _variants(scene: Scene, edit: Edit, rng: np.random.Generator) -> list[Scene]:
    """Hard negatives for one kind of edit, in rough order of closeness to the target."""
    target = _try_apply(scene, edit)
    assert target is not None
    shapes = [o.shape for o in scene.objects if o.shape != edit.shape]
    out: list[Scene | None] = [scene]  # the edit not applied at all
    k = edit.kind
    if k == "colour":
        old = scene.get(edit.shape).colour
        out += [_try_apply(scene, Edit("colour", shape=s, value=edit.value)) for s in shapes]
        out += [_try_apply(scene, Edit("colour", shape=edit.shape, value=c)) for c in COLOURS
                if c not in (edit.value, old)][:2]
        out += [_try_apply(scene, Edit("size", shape=edit.shape, value=_other_size(scene, edit.shape)))]
    elif k == "remove":
        out += [_try_apply(scene, Edit("remove", shape=s)) for s in shapes]
        out += [_try_apply(scene, Edit("size", shape=edit.shape, value=_other_size(scene, edit.shape)))]
    elif k == "add":
        opposite = OPPOSITE_SIDE[edit.value]
        cells = [c for c in scene.free_cells() if c in SIDES[opposite][1]]
        if cells:
            out.append(_try_apply(scene, replace(edit, value=opposite, cell=cells[0])))
        out += [_try_apply(scene, replace(edit, colour=c)) for c in COLOURS if c != edit.colour][:2]
        out += [_try_apply(scene, replace(edit, shape=s)) for s in SHAPES
                if s != edit.shape and not scene.has(s)][:2]
    elif k == "move":
        other = scene.get(edit.other)
        inverse = INVERSE_RELATION[edit.value]
        cells = [c for c in scene.free_cells() if inverse in cells_in_relation(c, other.cell)]
        if cells:
            out.append(_try_apply(scene, replace(edit, value=inverse, cell=cells[0])))
        mine = scene.get(edit.shape).cell
        cells = [c for c in scene.free_cells() if edit.value in cells_in_relation(c, mine)]
        if cells:  # the wrong object moved: the other one ends up in the stated relation instead
            out.append(_try_apply(scene, Edit("move", shape=edit.other, value=edit.value, other=edit.shape,
                                              cell=cells[0])))
    elif k == "background":
        out += [_try_apply(scene, Edit("background", value=b)) for b in BACKGROUNDS
                if b not in (edit.value, scene.background)][:2]
    elif k == "shape":
        out += [_try_apply(scene, Edit("shape", shape=edit.shape, value=s)) for s in SHAPES
                if s != edit.value and not scene.has(s)][:2]
        out += [_try_apply(scene, Edit("shape", shape=s, value=edit.value)) for s in shapes]
    elif k == "size":
        out += [_try_apply(scene, Edit("size", shape=s, value=_other_size(scene, s))) for s in shapes]
    # The right edit plus one unrequested change (another attribute changed as well).
    for extra in ("colour", "background", "size"):
        options = _candidates(target, extra)
        if options:
            out.append(_try_apply(target, options[int(rng.integers(len(options)))]))
    return [s for s in out if s is not None]


def _other_size(scene: Scene, shape: str) -> str:
    return "large" if scene.get(shape).size == "small" else "small"


def _same_content(a: Scene, b: Scene) -> bool:
    """Equal up to jitter: same background and same (shape, colour, size, cell) objects."""
    def key(s: Scene) -> tuple[Any, ...]:
        return (s.background, sorted((o.shape, o.colour, o.size, o.cell) for o in s.objects))
    return key(a) == key(b)


def near_misses(scene: Scene, edit: Edit, rng: np.random.Generator, k: int = 4,
                heldout: HeldOut | None = None) -> list[Scene]:
    """Up to ``k`` scenes that almost, but not quite, match ``apply_edit(scene, edit)``.

    They include the unedited reference, the edit applied to the wrong object or with the wrong value,
    and the right edit plus an extra change; random other edits fill up if needed. All differ from
    the target and from each other in content. With ``heldout``, scenes showing a held-out combination
    are skipped.
    """
    target = apply_edit(scene, edit)
    picked: list[Scene] = []

    def consider(candidate: Scene | None) -> None:
        if candidate is None or len(picked) >= k or _same_content(candidate, target):
            return
        if heldout is not None and involves_heldout(candidate, heldout):
            return
        if any(_same_content(candidate, p) for p in picked):
            return
        picked.append(candidate)

    for candidate in _variants(scene, edit, rng):
        consider(candidate)
    for _ in range(50):
        if len(picked) >= k:
            break
        base = scene if rng.random() < 0.5 else target
        kind = EDIT_KINDS[int(rng.integers(len(EDIT_KINDS)))]
        options = _candidates(base, kind)
        if options:
            consider(_try_apply(base, options[int(rng.integers(len(options)))]))
    return picked


def edit_template_words() -> set[str]:
    """All words edit texts can contain besides attribute values (template words and side phrases)."""
    words: set[str] = set()
    for templates in TEMPLATES.values():
        for t in templates:
            words |= set(tokenize(re.sub(r"\{\w+\}", " ", t)))
    for phrase, _ in SIDES.values():
        words |= set(tokenize(phrase))
    return words


@lru_cache(maxsize=1)
def all_words() -> tuple[str, ...]:
    """Every word a caption or an edit text can contain, sorted (the closed ShapesWorld vocabulary)."""
    words: set[str] = set(TEMPLATE_WORDS) | set(NUMBER_WORDS) | set(COLOURS)
    # Shapes are unique within a scene, so shape nouns never appear in the plural; generic nouns do.
    for nouns in SHAPE_NOUNS.values():
        words |= set(nouns)
    words |= set(GENERIC_NOUNS) | {plural(n) for n in GENERIC_NOUNS}
    for group in (SIZE_WORDS, BACKGROUND_WORDS, RELATION_WORDS):
        for phrases in group.values():
            for p in phrases:
                words |= set(tokenize(p))
    for p in PREFIXES + BACKGROUND_SUFFIXES:
        words |= set(tokenize(p.replace("{bg}", "")))
    words |= edit_template_words()
    words |= set(SIZES) | set(tokenize(" ".join(BACKGROUNDS))) | set(tokenize(" ".join(RELATIONS)))
    return tuple(sorted(words))
