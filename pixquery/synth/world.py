"""ShapesWorld scene model: objects, scenes, spatial relations, held-out combinations and sampling.

A scene is 1-4 objects of distinct shapes placed in the cells of a 3x3 grid (with a little jitter) on a
named background. Using grid cells keeps every spatial relation unambiguous: two objects in different
rows are at least ~0.29 apart vertically (clearly "above"/"below"), objects in the same row at most
0.04 apart (no vertical relation at all), and likewise for columns. Shapes are unique within a scene
so that "the star" always names exactly one object, which edits and relation captions rely on.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "hexagon", "diamond", "cross", "heart")

#: Object colours, chosen to be far apart in RGB so a small model separates them at 64 px.
COLOUR_RGB: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (30, 160, 60),
    "blue": (35, 75, 215),
    "yellow": (240, 205, 30),
    "purple": (135, 50, 175),
    "orange": (245, 130, 20),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
}
COLOURS: tuple[str, ...] = tuple(COLOUR_RGB)

#: Background base colours; "noisy" is a grey speckle texture drawn by the renderer.
BACKGROUND_RGB: dict[str, tuple[int, int, int]] = {
    "grey": (128, 128, 128),
    "black": (12, 12, 12),
    "beige": (232, 218, 182),
    "light blue": (170, 200, 238),
    "noisy": (120, 120, 120),
}
BACKGROUNDS: tuple[str, ...] = tuple(BACKGROUND_RGB)

#: Object colours never drawn on a background because they would be hard to see against it.
FORBIDDEN_ON_BACKGROUND: dict[str, frozenset[str]] = {
    "grey": frozenset(),
    "black": frozenset({"black"}),
    "beige": frozenset({"white", "yellow"}),
    "light blue": frozenset({"white"}),
    "noisy": frozenset(),
}

SIZES: tuple[str, ...] = ("small", "large")
#: Object radius as a fraction of the image side; large objects still fit a grid cell with jitter.
SIZE_RADIUS: dict[str, float] = {"small": 0.08, "large": 0.125}

RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")
INVERSE_RELATION: dict[str, str] = {
    "left of": "right of", "right of": "left of", "above": "below", "below": "above",
}
#: Centres must differ by more than this (in image fractions) for a relation to hold.
RELATION_MARGIN = 0.15

GRID = 3
MAX_OBJECTS = 4
#: Probability of 1, 2, 3 or 4 objects in a freshly sampled scene.
COUNT_PROBS: tuple[float, ...] = (0.2, 0.3, 0.3, 0.2)
POSITION_JITTER = 0.02
MAX_ROTATION = 15.0

Split = Literal["train", "heldout", "any"]


def cell_centre(col: int, row: int) -> tuple[float, float]:
    """Centre (x, y) in [0, 1] of grid cell (col, row); row 0 is the top of the image."""
    return ((col + 0.5) / GRID, (row + 0.5) / GRID)


def cell_of(x: float, y: float) -> tuple[int, int]:
    """Grid cell (col, row) that contains the point (x, y)."""
    return (min(GRID - 1, max(0, int(x * GRID))), min(GRID - 1, max(0, int(y * GRID))))


def _check_name(kind: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {kind} {value!r}; expected one of: {', '.join(allowed)}")


@dataclass(frozen=True)
class Obj:
    """One object: a shape of a colour and size centred at (x, y) (fractions of the image, y down)."""

    shape: str
    colour: str
    size: str
    x: float
    y: float
    rotation: float = 0.0

    def __post_init__(self) -> None:
        _check_name("shape", self.shape, SHAPES)
        _check_name("colour", self.colour, COLOURS)
        _check_name("size", self.size, SIZES)
        if not (0.0 <= self.x <= 1.0 and 0.0 <= self.y <= 1.0):
            raise ValueError(f"object position ({self.x}, {self.y}) outside [0, 1]")

    @property
    def cell(self) -> tuple[int, int]:
        """Grid cell (col, row) the object sits in."""
        return cell_of(self.x, self.y)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"shape": self.shape, "colour": self.colour, "size": self.size,
                "x": self.x, "y": self.y, "rotation": self.rotation}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Obj:
        """Inverse of :meth:`to_dict`."""
        return cls(shape=data["shape"], colour=data["colour"], size=data["size"],
                   x=float(data["x"]), y=float(data["y"]), rotation=float(data.get("rotation", 0.0)))


@dataclass(frozen=True)
class Scene:
    """A full scene: 1-4 objects with distinct shapes on a named background."""

    objects: tuple[Obj, ...]
    background: str

    def __post_init__(self) -> None:
        # Accept lists for convenience but store a tuple so the scene stays hashable.
        object.__setattr__(self, "objects", tuple(self.objects))
        _check_name("background", self.background, BACKGROUNDS)
        if not 1 <= len(self.objects) <= MAX_OBJECTS:
            raise ValueError(f"a scene has 1-{MAX_OBJECTS} objects, got {len(self.objects)}")
        shapes = [o.shape for o in self.objects]
        if len(set(shapes)) != len(shapes):
            raise ValueError(f"shapes must be unique within a scene, got {shapes}")
        cells = [o.cell for o in self.objects]
        if len(set(cells)) != len(cells):
            raise ValueError(f"two objects share a grid cell: {cells}")
        for o in self.objects:
            if o.colour in FORBIDDEN_ON_BACKGROUND[self.background]:
                raise ValueError(f"a {o.colour} object is not drawn on a {self.background} background")

    @property
    def shapes(self) -> tuple[str, ...]:
        """Shapes of the objects, in object order."""
        return tuple(o.shape for o in self.objects)

    def get(self, shape: str) -> Obj:
        """The object with this shape (shapes are unique); KeyError if absent."""
        for o in self.objects:
            if o.shape == shape:
                return o
        raise KeyError(shape)

    def has(self, shape: str) -> bool:
        """Whether an object of this shape is present."""
        return shape in self.shapes

    def replace_obj(self, target: str, **changes: Any) -> Scene:
        """A copy where the object whose shape is ``target`` has the given fields changed."""
        return replace(self, objects=tuple(replace(o, **changes) if o.shape == target else o
                                           for o in self.objects))

    def reading_order(self) -> tuple[Obj, ...]:
        """Objects sorted top-to-bottom then left-to-right, used for canonical captions."""
        return tuple(sorted(self.objects, key=lambda o: (o.cell[1], o.cell[0])))

    def colour_shapes(self) -> frozenset[tuple[str, str]]:
        """All (colour, shape) pairs present."""
        return frozenset((o.colour, o.shape) for o in self.objects)

    def relations(self) -> frozenset[tuple[str, str, str]]:
        """Every true (shape_a, relation, shape_b) fact, listed in both directions."""
        facts = set()
        for a, b in itertools.permutations(self.objects, 2):
            for rel in relations_between(a, b):
                facts.add((a.shape, rel, b.shape))
        return frozenset(facts)

    def free_cells(self) -> list[tuple[int, int]]:
        """Grid cells not occupied by any object, in (col, row) order."""
        used = {o.cell for o in self.objects}
        return [(c, r) for r in range(GRID) for c in range(GRID) if (c, r) not in used]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"background": self.background, "objects": [o.to_dict() for o in self.objects]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scene:
        """Inverse of :meth:`to_dict`."""
        return cls(objects=tuple(Obj.from_dict(o) for o in data["objects"]), background=data["background"])


def relations_between(a: Obj, b: Obj) -> tuple[str, ...]:
    """Relations that hold for ``a`` relative to ``b`` ("a is left of b", "a is above b", ...)."""
    rels = []
    if a.x < b.x - RELATION_MARGIN:
        rels.append("left of")
    elif a.x > b.x + RELATION_MARGIN:
        rels.append("right of")
    if a.y < b.y - RELATION_MARGIN:
        rels.append("above")
    elif a.y > b.y + RELATION_MARGIN:
        rels.append("below")
    return tuple(rels)


def cells_in_relation(cell_a: tuple[int, int], cell_b: tuple[int, int]) -> tuple[str, ...]:
    """Relations that hold between objects in ``cell_a`` and ``cell_b`` (jitter never changes them)."""
    rels = []
    if cell_a[0] != cell_b[0]:
        rels.append("left of" if cell_a[0] < cell_b[0] else "right of")
    if cell_a[1] != cell_b[1]:
        rels.append("above" if cell_a[1] < cell_b[1] else "below")
    return tuple(rels)


def _normalise_relation(rel: str) -> str:
    rel = " ".join(rel.lower().split())
    if rel.startswith("to the "):
        rel = rel[len("to the "):]
    _check_name("relation", rel, RELATIONS)
    return rel


@dataclass(frozen=True)
class HeldOut:
    """Combinations never shown in training: colour+shape pairs and shape-relation-shape facts.

    A relation fact is direction-free: holding out ("star", "above", "circle") also holds out
    ("circle", "below", "star"), since both describe the same picture.
    """

    colour_shape: frozenset[tuple[str, str]] = field(default_factory=frozenset)
    relations: frozenset[tuple[str, str, str]] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        pairs = frozenset((str(c), str(s)) for c, s in self.colour_shape)
        triples = frozenset((str(a), _normalise_relation(r), str(b)) for a, r, b in self.relations)
        for c, s in pairs:
            _check_name("colour", c, COLOURS)
            _check_name("shape", s, SHAPES)
        for a, r, b in triples:
            _check_name("shape", a, SHAPES)
            _check_name("shape", b, SHAPES)
            if a == b:
                raise ValueError(f"relation {a} {r} {b} relates a shape to itself, which never occurs")
        # Every colour and shape must still be seen in training, otherwise "held out" means "unknown".
        for c in COLOURS:
            if all((c, s) in pairs for s in SHAPES):
                raise ValueError(f"holding out every shape in {c} leaves no {c} object in training")
        for s in SHAPES:
            if all((c, s) in pairs for c in COLOURS):
                raise ValueError(f"holding out every colour of {s} leaves no {s} in training")
        object.__setattr__(self, "colour_shape", pairs)
        object.__setattr__(self, "relations", triples)

    def blocks_pair(self, colour: str, shape: str) -> bool:
        """Whether a ``colour`` ``shape`` object is held out."""
        return (colour, shape) in self.colour_shape

    def blocks_relation(self, a: str, rel: str, b: str) -> bool:
        """Whether the fact "a rel b" is held out, in either direction."""
        return (a, rel, b) in self.relations or (b, INVERSE_RELATION[rel], a) in self.relations

    def is_empty(self) -> bool:
        """True when nothing is held out."""
        return not self.colour_shape and not self.relations

    @classmethod
    def random(cls, seed: int, n_pairs: int = 6, n_relations: int = 2) -> HeldOut:
        """A random held-out set: each colour and shape in at most one pair, distinct relation facts."""
        if not 0 <= n_pairs <= min(len(COLOURS), len(SHAPES)):
            raise ValueError(f"n_pairs must be in 0..{min(len(COLOURS), len(SHAPES))}, got {n_pairs}")
        if not 0 <= n_relations <= 12:
            raise ValueError(f"n_relations must be in 0..12, got {n_relations}")
        rng = np.random.default_rng([seed, 7919])
        colours = rng.permutation(len(COLOURS))[:n_pairs]
        shapes = rng.permutation(len(SHAPES))[:n_pairs]
        pairs = frozenset((COLOURS[c], SHAPES[s]) for c, s in zip(colours, shapes, strict=True))
        # Only "above"/"left of" are drawn; their inverses are covered by direction-free matching.
        candidates = [(a, r, b) for a, b in itertools.permutations(SHAPES, 2) for r in ("above", "left of")]
        triples: list[tuple[str, str, str]] = []
        for i in rng.permutation(len(candidates)):
            a, r, b = candidates[int(i)]
            if any({a, b} == {x, y} for x, _, y in triples):
                continue
            triples.append((a, r, b))
            if len(triples) == n_relations:
                break
        return cls(colour_shape=pairs, relations=frozenset(triples))

    def to_spec(self) -> str:
        """The CLI spec string that :func:`parse_heldout` reads back into an equal set."""
        pairs = ",".join(f"{c} {s}" for c, s in sorted(self.colour_shape))
        rels = ",".join(f"{a} {r} {b}" for a, r, b in sorted(self.relations))
        return f"{pairs};{rels}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (sorted, so that manifests are byte-stable)."""
        return {"colour_shape": [list(p) for p in sorted(self.colour_shape)],
                "relations": [list(t) for t in sorted(self.relations)]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HeldOut:
        """Inverse of :meth:`to_dict`."""
        return cls(colour_shape=frozenset(tuple(p) for p in data.get("colour_shape", [])),
                   relations=frozenset(tuple(t) for t in data.get("relations", [])))


#: The fixed held-out set used unless another is given. Six colour+shape pairs form a partial matching
#: (no colour and no shape repeats), so each colour and shape is still seen in training with at least 7
#: other partners - the model must compose, not memorise. Three relation facts use shapes that also
#: take part in held-out colour pairs and ones that do not, and cover both axes.
DEFAULT_HELDOUT = HeldOut(
    colour_shape=frozenset({
        ("red", "star"), ("blue", "circle"), ("green", "triangle"),
        ("yellow", "square"), ("purple", "heart"), ("orange", "diamond"),
    }),
    relations=frozenset({
        ("star", "above", "circle"), ("triangle", "left of", "square"), ("heart", "below", "hexagon"),
    }),
)
EMPTY_HELDOUT = HeldOut()


def parse_heldout(text: str | None) -> HeldOut:
    """Read a held-out spec such as ``"red star,blue circle;star above circle,cross left of heart"``.

    The part before ``;`` lists colour+shape pairs, the part after lists relation facts (``above``,
    ``below``, ``left of``, ``right of``, optionally ``to the left of``). Either part may be empty.
    Special values: ``None``/``"default"`` -> :data:`DEFAULT_HELDOUT`, ``"none"`` or ``""`` -> nothing
    held out, ``"random:SEED"`` -> :meth:`HeldOut.random`. Raises ValueError with the offending item.
    """
    if text is None or text.strip().lower() == "default":
        return DEFAULT_HELDOUT
    spec = " ".join(text.strip().lower().split())
    if spec in ("", "none", ";"):
        return EMPTY_HELDOUT
    if spec.startswith("random"):
        _, _, seed = spec.partition(":")
        if not seed.strip().lstrip("-").isdigit():
            raise ValueError(f"random held-out spec must look like 'random:SEED', got {text!r}")
        return HeldOut.random(int(seed))
    if spec.count(";") > 1:
        raise ValueError(f"held-out spec has more than one ';': {text!r}")
    pair_part, _, rel_part = spec.partition(";")
    pairs = []
    for item in filter(None, (p.strip() for p in pair_part.split(","))):
        words = item.split()
        if len(words) != 2:
            raise ValueError(f"colour+shape item {item!r} must be two words, e.g. 'red star'")
        colour, shape = words
        if colour not in COLOURS:
            raise ValueError(f"unknown colour {colour!r} in {item!r}; colours are: {', '.join(COLOURS)}")
        if shape not in SHAPES:
            raise ValueError(f"unknown shape {shape!r} in {item!r}; shapes are: {', '.join(SHAPES)}")
        pairs.append((colour, shape))
    triples = []
    for item in filter(None, (p.strip() for p in rel_part.split(","))):
        words = item.split()
        if len(words) < 3:
            raise ValueError(f"relation item {item!r} must look like 'star above circle'")
        a, b, rel = words[0], words[-1], " ".join(words[1:-1])
        for s in (a, b):
            if s not in SHAPES:
                raise ValueError(f"unknown shape {s!r} in {item!r}; shapes are: {', '.join(SHAPES)}")
        try:
            rel = _normalise_relation(rel)
        except ValueError:
            raise ValueError(f"unknown relation {rel!r} in {item!r}; relations are: "
                             f"{', '.join(RELATIONS)}") from None
        triples.append((a, rel, b))
    return HeldOut(colour_shape=frozenset(pairs), relations=frozenset(triples))


def heldout_facts(scene: Scene, heldout: HeldOut) -> list[tuple[str, ...]]:
    """The held-out colour+shape pairs and relation facts that ``scene`` shows (empty if none)."""
    found: list[tuple[str, ...]] = [p for p in sorted(scene.colour_shapes()) if heldout.blocks_pair(*p)]
    found += [t for t in sorted(scene.relations()) if heldout.blocks_relation(*t)]
    return found


def involves_heldout(scene: Scene, heldout: HeldOut) -> bool:
    """Whether the scene shows any held-out colour+shape object or held-out relation (either direction)."""
    if any(heldout.blocks_pair(o.colour, o.shape) for o in scene.objects):
        return True
    if not heldout.relations:
        return False
    return any(heldout.blocks_relation(*t) for t in scene.relations())


def allowed_colours(background: str) -> tuple[str, ...]:
    """Object colours that may be drawn on ``background``."""
    return tuple(c for c in COLOURS if c not in FORBIDDEN_ON_BACKGROUND[background])


def make_obj(rng: np.random.Generator | None, shape: str, colour: str, size: str,
             cell: tuple[int, int]) -> Obj:
    """An object in ``cell`` with position jitter and rotation from ``rng`` (centred, upright if None)."""
    return _place(shape, colour, size, cell, None if rng is None else rng.random(3).tolist())


def _place(shape: str, colour: str, size: str, cell: tuple[int, int], u: list[float] | None) -> Obj:
    """Object in ``cell``; ``u`` holds three uniforms in [0, 1) for x/y jitter and rotation."""
    x, y = cell_centre(*cell)
    rotation = 0.0
    if u is not None:
        x += (2 * u[0] - 1) * POSITION_JITTER
        y += (2 * u[1] - 1) * POSITION_JITTER
        rotation = (2 * u[2] - 1) * MAX_ROTATION
    # Rounded so JSON round trips are exact and files stay byte-stable.
    return Obj(shape=shape, colour=colour, size=size, x=round(x, 4), y=round(y, 4),
               rotation=round(rotation, 2))


_COUNT_CDF = tuple(float(c) for c in np.cumsum(COUNT_PROBS))
_ALL_CELLS = tuple((c, r) for r in range(GRID) for c in range(GRID))


def _random_scene(rng: np.random.Generator, n_objects: int | None = None,
                  forced: tuple[dict[str, Any], ...] = ()) -> Scene:
    """Sample a scene; ``forced`` objects are partial specs (shape, optional colour/cell) placed first.

    All randomness comes from one ``rng.random`` call: per-call overhead of numpy's generator dominated
    sampling time, and training streams draw hundreds of thousands of scenes.
    """
    u = rng.random(2 + len(SHAPES) + len(_ALL_CELLS) + 5 * MAX_OBJECTS).tolist()
    n = next(i + 1 for i, c in enumerate(_COUNT_CDF) if u[0] < c) if n_objects is None else n_objects
    n = max(n, len(forced))
    if not 1 <= n <= MAX_OBJECTS:
        raise ValueError(f"n_objects must be in 1..{MAX_OBJECTS}, got {n}")
    need = {f["colour"] for f in forced if f.get("colour")}
    backgrounds = [b for b in BACKGROUNDS if not need & FORBIDDEN_ON_BACKGROUND[b]]
    background = backgrounds[int(u[1] * len(backgrounds))]
    colours = allowed_colours(background)
    forced_shapes = [f["shape"] for f in forced]
    # Random orders by sorting on uniform keys (ties have probability zero).
    shape_keys = u[2:2 + len(SHAPES)]
    free_shapes = [SHAPES[i] for i in sorted(range(len(SHAPES)), key=shape_keys.__getitem__)
                   if SHAPES[i] not in forced_shapes]
    shapes = forced_shapes + free_shapes[: n - len(forced)]
    taken = {f["cell"] for f in forced if f.get("cell") is not None}
    cell_keys = u[2 + len(SHAPES):2 + len(SHAPES) + len(_ALL_CELLS)]
    spare = iter([_ALL_CELLS[i] for i in sorted(range(len(_ALL_CELLS)), key=cell_keys.__getitem__)
                  if _ALL_CELLS[i] not in taken])
    per_obj = u[2 + len(SHAPES) + len(_ALL_CELLS):]
    objs = []
    for i, shape in enumerate(shapes):
        spec = forced[i] if i < len(forced) else {}
        v = per_obj[5 * i:5 * i + 5]
        colour = spec.get("colour") or colours[int(v[0] * len(colours))]
        cell = spec.get("cell") or next(spare)
        size = SIZES[int(v[1] * len(SIZES))]
        objs.append(_place(shape, colour, size, cell, v[2:]))
    return Scene(objects=tuple(objs), background=background)


def _forced_for_fact(fact: tuple[str, ...], rng: np.random.Generator) -> tuple[dict[str, Any], ...]:
    """Partial object specs that make a scene show the held-out ``fact``."""
    if len(fact) == 2:
        return ({"colour": fact[0], "shape": fact[1]},)
    a, rel, b = fact
    cells = [(c, r) for r in range(GRID) for c in range(GRID)]
    options = [(ca, cb) for ca in cells for cb in cells if ca != cb and rel in cells_in_relation(ca, cb)]
    ca, cb = options[int(rng.integers(len(options)))]
    return ({"shape": a, "cell": ca}, {"shape": b, "cell": cb})


def swap_colours(scene: Scene, a: int, b: int) -> Scene:
    """`scene` with objects `a` and `b` exchanging colours (shapes, sizes and places stay)."""
    objs = list(scene.objects)
    objs[a], objs[b] = replace(objs[a], colour=objs[b].colour), replace(objs[b], colour=objs[a].colour)
    return Scene(tuple(objs), scene.background)


def sample_scene(rng: np.random.Generator, heldout: HeldOut = DEFAULT_HELDOUT, split: Split = "train",
                 n_objects: int | None = None, max_tries: int = 10_000) -> Scene:
    """Draw a scene deterministically from ``rng``.

    ``split="train"`` never shows a held-out combination (rejection sampling, so the distribution is the
    plain one conditioned on that); ``"heldout"`` always shows at least one (a held-out fact drawn
    uniformly is built in, the rest is random); ``"any"`` ignores the held-out set.
    """
    if split == "any":
        return _random_scene(rng, n_objects)
    if split == "train":
        for _ in range(max_tries):
            scene = _random_scene(rng, n_objects)
            if not involves_heldout(scene, heldout):
                return scene
        raise RuntimeError(f"no training scene found in {max_tries} tries; is the held-out set too large?")
    if split == "heldout":
        facts: list[tuple[str, ...]] = sorted(heldout.colour_shape) + sorted(heldout.relations)
        if n_objects == 1:
            facts = [f for f in facts if len(f) == 2]
        if not facts:
            raise ValueError("split='heldout' needs a held-out set with at least one usable combination")
        fact = facts[int(rng.integers(len(facts)))]
        scene = _random_scene(rng, n_objects, forced=_forced_for_fact(fact, rng))
        assert involves_heldout(scene, heldout), "constructed held-out scene lost its held-out fact"
        return scene
    raise ValueError(f"split must be 'train', 'heldout' or 'any', got {split!r}")
