"""A zero-shot ShapesWorld captioner and a rule-based ShapesWorld rewriter: the `rewrite` method's test plugins.

`ShapesCaptioner` needs no captioning model: it searches the space of ShapesWorld descriptions with the
query's own encoder, keeping the description whose text vector is closest to the image vector. The space is
far too large to enumerate (up to 4 objects, each of 8 shapes × 8 colours × 2 sizes, on 5 backgrounds), so the
search is greedy: pick the background, score every single-object phrase, then add the object phrase (from the
best `shortlist` single ones) that raises the score most while the score still rises, then revisit each
object's colour and size once.

`ShapesRewriter` reads a caption in that style back into objects and a background (with the world's caption
parser), applies an edit instruction such as "make the star blue", "remove the square", "add a small green
circle on the right", "move the star above the circle", "make the background beige", "turn the star into a
heart" or "make the star bigger", and writes the target caption.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pixquery.models.base import Encoder
from pixquery.query.rewrite import Reference
from pixquery.synth.captions import (
    BACKGROUND_WORDS,
    RELATION_WORDS,
    SHAPE_NOUNS,
    SIZE_WORDS,
    join_list,
    parse_caption,
    tokenize,
)
from pixquery.synth.world import BACKGROUNDS, COLOURS, SHAPES, SIZES

MAX_OBJECTS = 4
MIN_GAIN = 0.0
"""An object is added only if the caption's score rises by more than this."""

Object = tuple[str, str, str]  # (size, colour, shape)


@dataclass
class SceneText:
    """A ShapesWorld description: objects, background and optional relation facts (shape, relation, shape)."""

    objects: list[Object] = field(default_factory=list)
    background: str | None = None
    relations: list[tuple[str, str, str]] = field(default_factory=list)

    def caption(self) -> str:
        """The description in the world's caption style."""
        phrases = [_noun_phrase(o) for o in self.objects]
        bg = BACKGROUND_WORDS[self.background][0] if self.background else None
        if self.relations and len(self.objects) >= 2:
            a, rel, b = self.relations[0]
            rel_words = RELATION_WORDS[rel][0]
            if len(self.objects) == 2 and {a, b} == {o[2] for o in self.objects}:
                first = next(o for o in self.objects if o[2] == a)
                second = next(o for o in self.objects if o[2] == b)
                text = f"{_noun_phrase(first)} {rel_words} {_noun_phrase(second)}"
                return f"{text} on a {bg} background" if bg else text
            body = f"a {bg} background with {join_list(phrases)}" if bg else join_list(phrases)
            return f"{body} where the {a} is {rel_words} the {b}"
        if not phrases:
            return f"a {bg} background" if bg else "an image"
        body = join_list(phrases)
        return f"{body} on a {bg} background" if bg else body


def _noun_phrase(obj: Object) -> str:
    size, colour, shape = obj
    words = [w for w in (size, colour, SHAPE_NOUNS[shape][0]) if w]
    return ("an " if words[0][0] in "aeiou" else "a ") + " ".join(words)


class ShapesCaptioner:
    """Zero-shot captioner for ShapesWorld images: a greedy search over descriptions, scored by the encoder."""

    def __init__(self, encoder: Encoder, max_objects: int = MAX_OBJECTS, shortlist: int = 24) -> None:
        self.encoder = encoder
        self.max_objects = max_objects
        self.shortlist = shortlist
        self._cache: dict[str, np.ndarray] = {}
        self._described: dict[bytes, SceneText] = {}

    def _scores(self, vector: np.ndarray, texts: list[SceneText]) -> np.ndarray:
        captions = [t.caption() for t in texts]
        missing = [c for c in dict.fromkeys(captions) if c not in self._cache]
        if missing:
            for caption, row in zip(missing, self.encoder.encode_texts(missing), strict=True):
                self._cache[caption] = np.asarray(row, np.float32)
        return np.array([self._cache[c] @ vector for c in captions], np.float32)

    def describe(self, vector: np.ndarray) -> SceneText:
        """The best description found for an image vector."""
        vector = np.asarray(vector, np.float32)
        bgs = [SceneText(background=b) for b in BACKGROUNDS]
        best = bgs[int(np.argmax(self._scores(vector, bgs)))]
        singles = [SceneText([(z, c, s)], best.background) for s in SHAPES for c in COLOURS for z in SIZES]
        single_scores = self._scores(vector, singles)
        # Later objects are drawn only from the best single-object phrases: it halves the encoder calls and
        # an object that scores low on its own rarely helps a longer caption.
        shortlist = [singles[int(i)].objects[0] for i in np.argsort(-single_scores)[: self.shortlist]]
        top = int(np.argmax(single_scores))
        best, score = singles[top], float(single_scores[top])
        while len(best.objects) < self.max_objects:
            used = {o[2] for o in best.objects}
            options = [SceneText([*best.objects, o], best.background) for o in shortlist if o[2] not in used]
            if not options:
                break
            scores = self._scores(vector, options)
            top = int(np.argmax(scores))
            if scores[top] <= score + MIN_GAIN:
                break
            best, score = options[top], float(scores[top])
        return self._refine(vector, best)

    def _refine(self, vector: np.ndarray, text: SceneText) -> SceneText:
        """One pass of coordinate ascent over each object's colour and size, then the background."""
        for i, (_, _, shape) in enumerate(list(text.objects)):
            options = []
            for c in COLOURS:
                for z in SIZES:
                    objects = list(text.objects)
                    objects[i] = (z, c, shape)
                    options.append(SceneText(objects, text.background))
            text = options[int(np.argmax(self._scores(vector, options)))]
        options = [SceneText(list(text.objects), b) for b in BACKGROUNDS]
        return options[int(np.argmax(self._scores(vector, options)))]

    def caption(self, reference: Reference) -> str:
        """A ShapesWorld caption of the reference image (only its vector is used; repeated images are memoised)."""
        key = np.asarray(reference.vector, np.float32).tobytes()
        if key not in self._described:
            self._described[key] = self.describe(reference.vector)
        return self._described[key].caption()


# --- the rewriter ------------------------------------------------------------------------------------------------

_SHAPE_OF = {noun: shape for shape, nouns in SHAPE_NOUNS.items() for noun in nouns}
_SIZE_OF = {w: size for size, words in SIZE_WORDS.items() for w in words}
_BIGGER = {"bigger", "larger", "enlarge", "large", "big"}
_SMALLER = {"smaller", "shrink", "small", "little"}
_REMOVE = {"remove", "delete", "without", "away", "rid"}
_ADD = {"add", "put", "place", "with"}


def read_scene_text(caption: str) -> SceneText:
    """Objects (size, colour, shape) and background of a ShapesWorld caption, by the world's parser."""
    parsed = parse_caption(caption)
    objects: list[Object] = []
    for size, colour, shape in parsed.objects:
        if shape in SHAPES and all(o[2] != shape for o in objects):
            objects.append((size or "", colour or "", shape))
    background = parsed.backgrounds[0] if parsed.backgrounds else None
    return SceneText(objects, background, list(parsed.relations))


def _find_background(tokens: list[str]) -> str | None:
    text = " ".join(tokens)
    for bg in BACKGROUNDS:
        for word in BACKGROUND_WORDS[bg]:
            if f" {word} " in f" {text} ":
                return bg
    return None


def _find_relation(text: str) -> str | None:
    best = None
    for rel, phrases in RELATION_WORDS.items():
        for phrase in phrases:
            if f" {phrase} " in f" {text} " and (best is None or len(phrase) > len(best[1])):
                best = (rel, phrase)
    return best[0] if best else None


def _mentioned_shapes(tokens: list[str]) -> list[tuple[int, str]]:
    return [(i, _SHAPE_OF[t]) for i, t in enumerate(tokens) if t in _SHAPE_OF]


def apply_edit_text(scene: SceneText, edit: str) -> SceneText:
    """The description after a ShapesWorld edit instruction; an edit it cannot read leaves the scene unchanged."""
    tokens = tokenize(edit)
    words = set(tokens)
    text = " ".join(tokens)
    objects = [list(o) for o in scene.objects]
    present = [o[2] for o in scene.objects]
    shapes = _mentioned_shapes(tokens)
    out = SceneText([tuple(o) for o in objects], scene.background, [])

    if "background" in words:
        out.background = _find_background([t for t in tokens if t != "background"]) or scene.background
        return out
    relation = _find_relation(text)
    if shapes and shapes[0][1] in present and relation and len(shapes) >= 2 and words & {"move", "put", "place",
                                                                                          "should"}:
        # "move the star above the circle": the objects stay, a relation fact is added.
        out.relations = [(shapes[0][1], relation, shapes[1][1])]
        return out
    if words & _REMOVE and shapes:
        out.objects = [o for o in out.objects if o[2] != shapes[0][1]]
        return out
    if shapes and shapes[0][1] not in present and words & _ADD:
        parsed = parse_caption(edit)
        size, colour, shape = next(((z, c, s) for z, c, s in parsed.objects if s == shapes[0][1]), (None, None, ""))
        out.objects.append((size or "", colour or "", shape))
        return out
    if len(shapes) >= 2 and shapes[0][1] in present and words & {"into", "replace", "make", "change", "turn"}:
        old, new = shapes[0][1], shapes[1][1]
        out.objects = [(z, c, new if s == old else s) for z, c, s in out.objects]
        return out
    if shapes and shapes[0][1] in present:
        target = shapes[0][1]
        colour = next((t for t in tokens[shapes[0][0] + 1 :] if t in COLOURS), None)
        size = "large" if words & _BIGGER else "small" if words & _SMALLER else None
        out.objects = [
            ((size or z), (colour or c), s) if s == target else (z, c, s) for z, c, s in out.objects
        ]
    return out


class ShapesRewriter:
    """Rule-based rewriter for ShapesWorld captions and edit instructions."""

    def rewrite(self, caption: str, edit: str) -> list[str]:
        """The target caption: the caption's scene with the edit applied, in the world's caption style."""
        return [apply_edit_text(read_scene_text(caption), edit).caption()]


def register() -> None:
    """Make the ShapesWorld plugins available as captioner="shapesworld" and rewriter="shapesworld" (the
    evaluation harness, the demo and the benchmarks call this; the product registers no test-world plugin)."""
    from pixquery.query.rewrite import register_captioner, register_rewriter

    register_captioner("shapesworld", ShapesCaptioner)
    register_rewriter("shapesworld", ShapesRewriter)
