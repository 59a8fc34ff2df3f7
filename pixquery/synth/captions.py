"""Captions for ShapesWorld scenes: varied true descriptions, canonical ones, a parser and the vocabulary.

Every caption is built from the scene's own objects, so it is true by construction; the parser
(:func:`parse_caption`) reads the facts a caption asserts back out, which the held-out checks use so that
they inspect the words a model would actually see. The word set is closed: `pixquery.synth.edits.all_words`
lists every token a caption or edit text can contain.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from pixquery.synth.world import (
    COLOURS,
    SHAPES,
    HeldOut,
    Obj,
    Scene,
    relations_between,
)

#: Nouns per shape; the first is the canonical one. Synonyms stay few so captions remain learnable.
SHAPE_NOUNS: dict[str, tuple[str, ...]] = {s: (s,) for s in SHAPES} | {"circle": ("circle", "disc")}
GENERIC_NOUNS: tuple[str, ...] = ("shape", "object")
SIZE_WORDS: dict[str, tuple[str, ...]] = {"small": ("small", "little"), "large": ("large", "big")}
BACKGROUND_WORDS: dict[str, tuple[str, ...]] = {
    "grey": ("grey", "gray"), "black": ("black",), "beige": ("beige",),
    "light blue": ("light blue",), "noisy": ("noisy", "speckled"),
}
RELATION_WORDS: dict[str, tuple[str, ...]] = {
    "above": ("above", "higher than"), "below": ("below", "under", "beneath"),
    "left of": ("to the left of", "left of"), "right of": ("to the right of", "right of"),
}
NUMBER_WORDS: tuple[str, ...] = ("one", "two", "three", "four")
PREFIXES: tuple[str, ...] = ("there is", "an image showing", "an image of", "a picture of", "a drawing of",
                             "this image contains", "a scene with")
BACKGROUND_SUFFIXES: tuple[str, ...] = ("on a {bg} background", "against a {bg} background",
                                        "with a {bg} background")
#: Words used by templates below that are not attribute values.
TEMPLATE_WORDS: tuple[str, ...] = ("a", "an", "the", "and", "is", "are", "of", "exactly", "single",
                                   "background", "shapes", "objects", "there", "with", "where")

Style = Literal["any", "complete"]
_TOKEN = re.compile(r"[a-z]+")


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens (punctuation dropped), as used for the Karpathy ``tokens`` field."""
    return _TOKEN.findall(text.lower())


def plural(noun: str) -> str:
    """English plural of a shape or generic noun."""
    return noun + "es" if noun.endswith(("s", "x")) else noun + "s"


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _index(rng: np.random.Generator, n: int) -> int:
    """Uniform index in range(n); ``rng.random()`` is several times cheaper than ``rng.integers``."""
    return int(rng.random() * n)


def _pick(rng: np.random.Generator, options: tuple[str, ...] | list[str]) -> str:
    return options[_index(rng, len(options))]


def noun_phrase(obj: Obj, rng: np.random.Generator | None = None, colour: bool = True, size: bool = False,
                article: str = "a") -> str:
    """Noun phrase like "a small red star": article, optional size and colour, noun (maybe a synonym).

    Without ``rng`` the canonical words are used, so canonical captions are deterministic.
    """
    use_synonym = rng is not None and rng.random() < 0.15
    noun = _pick(rng, SHAPE_NOUNS[obj.shape]) if use_synonym else SHAPE_NOUNS[obj.shape][0]
    words = []
    if size:
        words.append(SIZE_WORDS[obj.size][0] if rng is None else _pick(rng, SIZE_WORDS[obj.size]))
    if colour:
        words.append(obj.colour)
    words.append(noun)
    if article == "a":
        article = _article(words[0])
    return " ".join(([article] if article else []) + words)


def join_list(phrases: list[str]) -> str:
    """Join phrases as English lists: "x", "x and y", "x, y and z"."""
    if len(phrases) == 1:
        return phrases[0]
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


def _bg_word(scene: Scene, rng: np.random.Generator) -> str:
    return _pick(rng, BACKGROUND_WORDS[scene.background])


def _with_prefix(body: str, rng: np.random.Generator, p: float = 0.4) -> str:
    return f"{_pick(rng, PREFIXES)} {body}" if rng.random() < p else body


def _with_background(body: str, scene: Scene, rng: np.random.Generator, p: float = 0.5) -> str:
    if rng.random() >= p:
        return body
    return f"{body} {_pick(rng, BACKGROUND_SUFFIXES).format(bg=_bg_word(scene, rng))}"


def _shuffled(objs: tuple[Obj, ...], rng: np.random.Generator) -> list[Obj]:
    keys = rng.random(len(objs)).tolist()
    return [objs[i] for i in sorted(range(len(objs)), key=keys.__getitem__)]


def _list_of(objs: list[Obj], rng: np.random.Generator, p_colour: float = 1.0, p_size: float = 0.3) -> str:
    with_size = rng.random() < p_size
    return join_list([noun_phrase(o, rng, colour=rng.random() < p_colour, size=with_size) for o in objs])


def _count_phrase(n: int, rng: np.random.Generator) -> str:
    noun = _pick(rng, GENERIC_NOUNS)
    if n == 1:
        return _pick(rng, ("one " + noun, "a single " + noun, "exactly one " + noun))
    counted = f"{NUMBER_WORDS[n - 1]} {plural(noun)}"
    return _pick(rng, (counted, f"exactly {counted}"))


# --- caption kinds -------------------------------------------------------------------------------

def _cap_full(scene: Scene, rng: np.random.Generator) -> str:
    objs = list(scene.reading_order()) if rng.random() < 0.5 else _shuffled(scene.objects, rng)
    return _with_prefix(_with_background(_list_of(objs, rng), scene, rng), rng)


def _cap_partial(scene: Scene, rng: np.random.Generator) -> str:
    if len(scene.objects) == 1:
        return _cap_single(scene, rng)
    k = 1 + _index(rng, len(scene.objects) - 1)
    objs = _shuffled(scene.objects, rng)[:k]
    return _with_prefix(_with_background(_list_of(objs, rng, p_colour=0.8), scene, rng, p=0.3), rng)


def _cap_single(scene: Scene, rng: np.random.Generator) -> str:
    obj = scene.objects[_index(rng, len(scene.objects))]
    noun = SHAPE_NOUNS[obj.shape][0]
    size = _pick(rng, SIZE_WORDS[obj.size])
    forms = (
        lambda: _with_prefix(noun_phrase(obj, rng, size=rng.random() < 0.3), rng, p=0.5),
        lambda: f"the {noun} is {obj.colour}",
        lambda: f"the {noun} is {size}",
        lambda: f"the {noun} is {size} and {obj.colour}",
        lambda: _with_background(noun_phrase(obj, rng), scene, rng, p=1.0),
    )
    return forms[_index(rng, len(forms))]()


def _relation_pairs(scene: Scene) -> list[tuple[Obj, str, Obj]]:
    return [(a, rel, b) for a in scene.objects for b in scene.objects if a is not b
            for rel in relations_between(a, b)]


def _relation_clause(a: Obj, rel: str, b: Obj, rng: np.random.Generator, p_colour: float) -> str:
    rel_words = _pick(rng, RELATION_WORDS[rel])
    if rng.random() < 0.3:
        return f"the {SHAPE_NOUNS[a.shape][0]} is {rel_words} the {SHAPE_NOUNS[b.shape][0]}"
    return (f"{noun_phrase(a, rng, colour=rng.random() < p_colour)} {rel_words} "
            f"{noun_phrase(b, rng, colour=rng.random() < p_colour)}")


def _cap_relation(scene: Scene, rng: np.random.Generator) -> str:
    pairs = _relation_pairs(scene)
    if not pairs:
        return _cap_partial(scene, rng)
    a, rel, b = pairs[_index(rng, len(pairs))]
    clause = _relation_clause(a, rel, b, rng, p_colour=0.6)
    return clause if clause.startswith("the ") else _with_prefix(clause, rng, p=0.3)


def _cap_count(scene: Scene, rng: np.random.Generator) -> str:
    n = len(scene.objects)
    count = _count_phrase(n, rng)
    form = _index(rng, 4)
    if form == 0:
        return count
    if form == 1:
        return f"{count} {_pick(rng, BACKGROUND_SUFFIXES).format(bg=_bg_word(scene, rng))}"
    if form == 2 and n > 1:
        return f"there are {count}"
    return f"{count}: {_list_of(_shuffled(scene.objects, rng), rng)}"


def _cap_background(scene: Scene, rng: np.random.Generator) -> str:
    bg = _bg_word(scene, rng)
    if rng.random() < 0.2:
        return f"a {bg} background"
    k = 1 + _index(rng, len(scene.objects))
    body = _list_of(_shuffled(scene.objects, rng)[:k], rng, p_colour=0.8)
    if rng.random() < 0.5:
        return f"a {bg} background with {body}"
    return f"{body} {_pick(rng, BACKGROUND_SUFFIXES).format(bg=bg)}"


# Complete captions always name the background and often sizes: retrieval test sets need captions that
# single out one image, and a bare "a green square" fits every green-square scene.
def _cap_complete_full(scene: Scene, rng: np.random.Generator) -> str:
    objs = list(scene.reading_order()) if rng.random() < 0.5 else _shuffled(scene.objects, rng)
    return _with_prefix(_with_background(_list_of(objs, rng, p_size=0.5), scene, rng, p=1.0), rng)


def _cap_complete_count(scene: Scene, rng: np.random.Generator) -> str:
    body = _list_of(_shuffled(scene.objects, rng), rng, p_size=0.5)
    text = f"{_count_phrase(len(scene.objects), rng)}: {body}"
    return _with_background(text, scene, rng, p=1.0)


def _cap_complete_background(scene: Scene, rng: np.random.Generator) -> str:
    body = _list_of(_shuffled(scene.objects, rng), rng, p_size=0.5)
    return f"a {_bg_word(scene, rng)} background with {body}"


def complete_relation_caption(scene: Scene, rng: np.random.Generator,
                              fact: tuple[str, str, str] | None = None) -> str:
    """A caption naming every object with its colour, the background and one relation (``fact`` if given).

    Falls back to a full description when no pair of objects is in any relation.
    """
    pairs = _relation_pairs(scene)
    if fact is not None:
        pairs = [(a, r, b) for a, r, b in pairs if (a.shape, r, b.shape) == fact]
        if not pairs:
            raise ValueError(f"relation {fact} does not hold in the scene")
    if not pairs:
        return _cap_complete_full(scene, rng)
    a, rel, b = pairs[_index(rng, len(pairs))]
    rel_words = _pick(rng, RELATION_WORDS[rel])
    if len(scene.objects) == 2:
        text = f"{noun_phrase(a, rng)} {rel_words} {noun_phrase(b, rng)}"
        return _with_background(text, scene, rng, p=1.0)
    # "x left of y and z" could be read as left of both, so list everything first, then relate.
    return (f"a {_bg_word(scene, rng)} background with {_list_of(_shuffled(scene.objects, rng), rng)} "
            f"where the {SHAPE_NOUNS[a.shape][0]} is {rel_words} the {SHAPE_NOUNS[b.shape][0]}")


def _cap_complete_relation(scene: Scene, rng: np.random.Generator) -> str:
    return complete_relation_caption(scene, rng)


CaptionFn = Callable[[Scene, np.random.Generator], str]
#: (generator, weight) for style "any": mostly informative captions, some partial or vague ones.
ANY_KINDS: tuple[tuple[CaptionFn, float], ...] = (
    (_cap_full, 0.28), (_cap_partial, 0.14), (_cap_single, 0.14), (_cap_relation, 0.18),
    (_cap_count, 0.12), (_cap_background, 0.14),
)
#: Style "complete": every caption names every object with its colour (for retrieval test sets).
COMPLETE_KINDS: tuple[tuple[CaptionFn, float], ...] = (
    (_cap_complete_full, 0.4), (_cap_complete_count, 0.2), (_cap_complete_background, 0.2),
    (_cap_complete_relation, 0.2),
)


def describe(scene: Scene, rng: np.random.Generator, n: int = 4, style: Style = "any") -> list[str]:
    """``n`` varied captions, each true of ``scene``, distinct where the scene allows.

    ``style="any"`` mixes full, partial, single-object, relation, count and background captions;
    ``style="complete"`` only produces captions that mention every object with its colour and the
    background.
    """
    kinds = ANY_KINDS if style == "any" else COMPLETE_KINDS if style == "complete" else None
    if kinds is None:
        raise ValueError(f"style must be 'any' or 'complete', got {style!r}")
    fns = [f for f, _ in kinds]
    total = sum(w for _, w in kinds)
    cdf = list(itertools.accumulate(w / total for _, w in kinds))
    out: list[str] = []
    for _ in range(20 * n):
        if len(out) == n:
            break
        u = rng.random()
        text = fns[next((i for i, c in enumerate(cdf) if u < c), len(fns) - 1)](scene, rng)
        if text not in out:
            out.append(text)
    while len(out) < n:  # tiny scenes can run out of distinct phrasings; repeat rather than fail
        out.append(out[len(out) % max(1, len(out))])
    return out


def caption_for(scene: Scene, kind: str = "full") -> str:
    """Deterministic canonical caption.

    Kinds: ``"full"`` (every object with size and colour in reading order, plus the background),
    ``"objects"`` (colours and shapes only), ``"background"`` (just the background).
    """
    objs = scene.reading_order()
    if kind == "full":
        body = join_list([noun_phrase(o, size=True) for o in objs])
        return f"{body} on a {BACKGROUND_WORDS[scene.background][0]} background"
    if kind == "objects":
        return join_list([noun_phrase(o) for o in objs])
    if kind == "background":
        return f"a {BACKGROUND_WORDS[scene.background][0]} background"
    raise ValueError(f"caption kind must be 'full', 'objects' or 'background', got {kind!r}")


# --- parsing ------------------------------------------------------------------------------------

@dataclass
class ParsedCaption:
    """Facts a caption (or edit text) asserts, as read back from its words."""

    objects: list[tuple[str | None, str | None, str]] = field(default_factory=list)  # (size, colour, shape)
    relations: list[tuple[str, str, str]] = field(default_factory=list)
    backgrounds: list[str] = field(default_factory=list)
    count: int | None = None

    def colour_shapes(self) -> set[tuple[str, str]]:
        """(colour, shape) pairs the text mentions."""
        return {(c, s) for _, c, s in self.objects if c is not None and s in SHAPES}


def _lexicon() -> dict[str, list[tuple[tuple[str, ...], tuple[str, str]]]]:
    """First word -> [(phrase, symbol)], longest phrases first so "to the left of" wins over "to"."""
    entries: list[tuple[tuple[str, ...], tuple[str, str]]] = []
    for shape, nouns in SHAPE_NOUNS.items():
        for noun in nouns:
            entries += [((noun,), ("SHAPE", shape)), ((plural(noun),), ("SHAPES", shape))]
    for noun in GENERIC_NOUNS:
        entries += [((noun,), ("SHAPE", "*")), ((plural(noun),), ("SHAPES", "*"))]
    for bg, words in BACKGROUND_WORDS.items():
        for w in words:
            entries.append(((*w.split(), "background"), ("BG", bg)))
    for colour in COLOURS:
        entries.append(((colour,), ("COLOUR", colour)))
    for size, words in SIZE_WORDS.items():
        for w in words:
            entries.append(((w,), ("SIZE", size)))
    for rel, phrases in RELATION_WORDS.items():
        for p in phrases:
            entries.append((tuple(p.split()), ("REL", rel)))
    for i, w in enumerate(NUMBER_WORDS):
        entries.append(((w,), ("NUM", str(i + 1))))
    entries.append((("single",), ("NUM", "1")))
    for cop in (("should", "be"), ("is",), ("be",), ("to",), ("becomes",)):
        entries.append((cop, ("COP", "")))
    entries.append((("and",), ("AND", "")))
    index: dict[str, list[tuple[tuple[str, ...], tuple[str, str]]]] = {}
    for phrase, sym in sorted(entries, key=lambda e: -len(e[0])):
        index.setdefault(phrase[0], []).append((phrase, sym))
    return index


_LEXICON = _lexicon()


def _symbols(tokens: list[str]) -> list[tuple[str, str]]:
    out, i = [], 0
    while i < len(tokens):
        for phrase, sym in _LEXICON.get(tokens[i], ()):
            if len(phrase) == 1 or tuple(tokens[i:i + len(phrase)]) == phrase:
                out.append(sym)
                i += len(phrase)
                break
        else:
            out.append(("W", tokens[i]))
            i += 1
    return out


def parse_caption(text: str) -> ParsedCaption:
    """Read the objects, relations, backgrounds and count a caption or edit text asserts.

    Recognised forms: ``[size] [colour] noun`` noun phrases, ``the noun is [size] [and] colour``,
    ``make the noun colour`` (edit texts), ``X <relation> Y`` with the nearest shapes on each side,
    ``<colour> background`` and ``<number> shapes``.
    """
    syms = _symbols(tokenize(text))
    parsed = ParsedCaption()
    for i, (kind, value) in enumerate(syms):
        if kind == "SHAPE":
            size = colour = None
            j = i - 1
            if j >= 0 and syms[j][0] == "COLOUR":
                colour, j = syms[j][1], j - 1
            if j >= 0 and syms[j][0] == "SIZE":
                size = syms[j][1]
            # Post-nominal attributes: "the star is small and red", "make the star red".
            k = i + 1
            if k < len(syms) and syms[k][0] == "COP":
                k += 1
            while k < len(syms) and syms[k][0] in ("SIZE", "COLOUR", "AND"):
                if syms[k][0] == "COLOUR" and colour is None:
                    colour = syms[k][1]
                elif syms[k][0] == "SIZE" and size is None:
                    size = syms[k][1]
                elif syms[k][0] == "AND" and not (k + 1 < len(syms) and syms[k + 1][0] in ("SIZE", "COLOUR")):
                    break
                k += 1
            parsed.objects.append((size, colour, value))
        elif kind == "BG":
            parsed.backgrounds.append(value)
        elif kind == "NUM" and i + 1 < len(syms) and syms[i + 1][0] in ("SHAPE", "SHAPES") \
                and syms[i + 1][1] == "*":
            parsed.count = int(value)
        elif kind == "REL":
            left = next((v for k2, v in reversed(syms[:i]) if k2 == "SHAPE"), None)
            right = next((v for k2, v in syms[i + 1:] if k2 == "SHAPE"), None)
            if left and right and left != "*" and right != "*":
                parsed.relations.append((left, value, right))
    return parsed


def caption_involves_heldout(text: str, heldout: HeldOut) -> bool:
    """Whether the text mentions a held-out colour+shape pair or a held-out relation (either direction)."""
    parsed = parse_caption(text)
    if any(heldout.blocks_pair(c, s) for c, s in parsed.colour_shapes()):
        return True
    return any(heldout.blocks_relation(a, r, b) for a, r, b in parsed.relations)


__all__ = [
    "ParsedCaption", "caption_for", "caption_involves_heldout", "complete_relation_caption",
    "describe", "join_list",
    "noun_phrase", "parse_caption", "plural", "tokenize",
]
