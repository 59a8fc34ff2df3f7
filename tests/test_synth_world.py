"""ShapesWorld: scenes, renders, captions, held-out combinations and edits, checked like a user would.

Truth and held-out checks read the caption text with the small regex checker below, written apart from
the library's own parser, so the tests do not trust the code they test.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re

import numpy as np
import pytest

from pixquery.synth import VOCABULARY
from pixquery.synth.captions import caption_for, caption_involves_heldout, describe, tokenize
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
    FORBIDDEN_ON_BACKGROUND,
    SHAPES,
    HeldOut,
    Obj,
    Scene,
    involves_heldout,
    parse_heldout,
    sample_scene,
)

# --- an independent caption checker ---------------------------------------------------------------

NOUN = {"circle": "circle", "disc": "circle", "square": "square", "triangle": "triangle", "star": "star",
        "hexagon": "hexagon", "diamond": "diamond", "cross": "cross", "heart": "heart"}
GENERIC = {"shape", "object"}
SIZE = {"small": "small", "little": "small", "large": "large", "big": "large"}
BG = {"grey": "grey", "gray": "grey", "black": "black", "beige": "beige", "light blue": "light blue",
      "noisy": "noisy", "speckled": "noisy"}
REL = {"above": "above", "higher than": "above", "below": "below", "under": "below", "beneath": "below",
       "to the left of": "left", "left of": "left", "to the right of": "right", "right of": "right"}
COUNT = {"one": 1, "single": 1, "two": 2, "three": 3, "four": 4}

_alt = "|".join
_NOUNS = _alt(sorted(set(NOUN) | GENERIC, key=len, reverse=True))
_COLS = _alt(COLOURS)
_SIZES = _alt(SIZE)
_RELS = _alt(sorted(REL, key=len, reverse=True))
NP_RE = re.compile(rf"\b(?:({_SIZES}) )?(?:({_COLS}) )?({_NOUNS})\b")
COPULA_RE = re.compile(rf"\bthe ({_NOUNS}) is (?:({_SIZES}) )?(?:and )?({_COLS})?\b")
REL_RE = re.compile(rf"\b({_NOUNS}) (?:is )?({_RELS}) (?:a|an|the) (?:(?:{_SIZES}) )?(?:(?:{_COLS}) )?"
                    rf"({_NOUNS})\b")
BG_RE = re.compile(rf"\b({_alt(BG)}) background\b")
COUNT_RE = re.compile(r"\b(one|single|two|three|four) (shapes?|objects?)\b")


def holds(a: Obj, rel: str, b: Obj) -> bool:
    """Geometry, not the library: y grows downwards; a clear gap is required."""
    gap = 0.2
    return {"above": b.y - a.y > gap, "below": a.y - b.y > gap,
            "left": b.x - a.x > gap, "right": a.x - b.x > gap}[rel]


def caption_errors(caption: str, scene: Scene) -> list[str]:
    """Every claim in the caption that the scene contradicts."""
    errors = []
    by_shape = {o.shape: o for o in scene.objects}
    text = caption.lower()
    for size, colour, noun in NP_RE.findall(text):
        if noun in GENERIC:
            candidates = list(scene.objects)
        else:
            candidates = [by_shape[NOUN[noun]]] if NOUN[noun] in by_shape else []
        ok = [o for o in candidates
              if (not colour or o.colour == colour) and (not size or o.size == SIZE[size])]
        if not ok:
            errors.append(f"no {size} {colour} {noun}")
    for noun, size, colour in COPULA_RE.findall(text):
        obj = by_shape.get(NOUN.get(noun, ""))
        if obj is None or (size and obj.size != SIZE[size]) or (colour and obj.colour != colour):
            errors.append(f"the {noun} is not {size} {colour}")
    for a, rel, b in REL_RE.findall(text):
        oa, ob = by_shape.get(NOUN[a]), by_shape.get(NOUN[b])
        if oa is None or ob is None or not holds(oa, REL[rel], ob):
            errors.append(f"{a} not {rel} {b}")
    for bg in BG_RE.findall(text):
        if BG[bg] != scene.background:
            errors.append(f"background is not {bg}")
    for word, _ in COUNT_RE.findall(text):
        if COUNT[word] != len(scene.objects):
            errors.append(f"not {word} objects")
    return errors


def text_heldout_hits(text: str, heldout: HeldOut) -> list[str]:
    """Held-out colour+shape pairs and relations a text mentions, found by regex."""
    hits = []
    text = text.lower()
    pairs = [(c, n) for _, c, n in NP_RE.findall(text) if c and n in NOUN]
    pairs += [(c, n) for n, _, c in COPULA_RE.findall(text) if c]
    # Edit phrasings: "make the star red", "the star should be red", "change ... of the star to red".
    pairs += [(c, n) for n, c in re.findall(rf"\bthe ({_NOUNS}) (?:should be |to )?({_COLS})\b", text)]
    for c, n in pairs:
        if (c, NOUN[n]) in heldout.colour_shape:
            hits.append(f"{c} {n}")
    inverse = {"above": "below", "below": "above", "left": "right", "right": "left"}
    held = {(a, r.replace(" of", ""), b) for a, r, b in heldout.relations}
    for a, rel, b in REL_RE.findall(text):
        if a in NOUN and b in NOUN:
            fact, flipped = (NOUN[a], REL[rel], NOUN[b]), (NOUN[b], inverse[REL[rel]], NOUN[a])
            if fact in held or flipped in held:
                hits.append(f"{a} {rel} {b}")
    return hits


def scene_heldout_hits(scene: Scene, heldout: HeldOut) -> list[str]:
    """Held-out facts in a scene, read from objects and positions directly."""
    hits = [f"{o.colour} {o.shape}" for o in scene.objects if (o.colour, o.shape) in heldout.colour_shape]
    held = {(a, r.replace(" of", ""), b) for a, r, b in heldout.relations}
    inverse = {"above": "below", "below": "above", "left": "right", "right": "left"}
    for a, b in itertools.permutations(scene.objects, 2):
        for rel in ("above", "below", "left", "right"):
            blocked = (a.shape, rel, b.shape) in held or (b.shape, inverse[rel], a.shape) in held
            if holds(a, rel, b) and blocked:
                hits.append(f"{a.shape} {rel} {b.shape}")
    return hits


def png_digest(img) -> str:
    return hashlib.sha256(img.tobytes()).hexdigest()


# --- rendering ------------------------------------------------------------------------------------

def test_same_seed_renders_the_same_pixels_and_other_seeds_do_not():
    def draw(seed: int) -> list[str]:
        rng = np.random.default_rng(seed)
        return [png_digest(render_scene(sample_scene(rng), 64, rng)) for _ in range(5)]

    assert draw(11) == draw(11)
    assert set(draw(11)).isdisjoint(draw(12))


def test_rendering_a_scene_twice_never_gives_identical_images():
    rng = np.random.default_rng(0)
    scene = sample_scene(rng)
    digests = {png_digest(render_scene(scene, 64, rng)) for _ in range(20)}
    assert len(digests) == 20


def test_render_is_rgb_of_the_requested_size_and_objects_stand_out_from_the_background():
    rng = np.random.default_rng(1)
    scene = Scene(objects=(Obj("square", "red", "large", 0.5, 0.5),), background="grey")
    img = render_scene(scene, 96, rng)
    assert img.mode == "RGB" and img.size == (96, 96)
    arr = np.asarray(img).astype(int)
    centre, corner = arr[48, 48], arr[3, 3]
    assert centre[0] > 170 and centre[1] < 90  # red in the middle
    assert abs(corner[0] - corner[2]) < 30  # grey in the corner


def test_canonical_render_without_rng_is_stable():
    scene = sample_scene(np.random.default_rng(3))
    assert png_digest(render_scene(scene)) == png_digest(render_scene(scene))


# --- scenes ---------------------------------------------------------------------------------------

def test_world_has_enough_distinct_shapes_and_colours():
    assert len(SHAPES) >= 6 and len(set(SHAPES)) == len(SHAPES)
    assert len(COLOURS) >= 8 and len(set(COLOURS)) == len(COLOURS)
    assert len(BACKGROUNDS) >= 4


def test_scene_round_trips_through_json_and_is_hashable():
    rng = np.random.default_rng(5)
    scenes = [sample_scene(rng, split="any") for _ in range(50)]
    restored = [Scene.from_dict(json.loads(json.dumps(s.to_dict()))) for s in scenes]
    assert restored == scenes
    assert len({*scenes, *restored}) == len(set(scenes))


def test_sampled_scenes_respect_the_world_rules():
    rng = np.random.default_rng(6)
    for _ in range(2000):
        scene = sample_scene(rng, split="any")
        assert 1 <= len(scene.objects) <= 4
        assert len(set(scene.shapes)) == len(scene.shapes)
        for o in scene.objects:
            assert o.colour not in FORBIDDEN_ON_BACKGROUND[scene.background]
        # Relations are unambiguous: objects are either clearly apart or clearly aligned on each axis.
        for a, b in itertools.combinations(scene.objects, 2):
            for d in (abs(a.x - b.x), abs(a.y - b.y)):
                assert d < 0.05 or d > 0.25


def test_invalid_scenes_are_rejected_with_clear_errors():
    with pytest.raises(ValueError, match="unknown shape 'blob'"):
        Obj("blob", "red", "small", 0.5, 0.5)
    with pytest.raises(ValueError, match="unique"):
        Scene(objects=(Obj("star", "red", "small", 0.2, 0.2), Obj("star", "blue", "small", 0.8, 0.8)),
              background="grey")
    with pytest.raises(ValueError, match="black object"):
        Scene(objects=(Obj("star", "black", "small", 0.5, 0.5),), background="black")


# --- held-out combinations ------------------------------------------------------------------------

def test_default_heldout_keeps_every_colour_and_shape_in_training():
    assert 6 <= len(DEFAULT_HELDOUT.colour_shape) <= 8 and 2 <= len(DEFAULT_HELDOUT.relations) <= 3
    for colour in COLOURS:
        assert any((colour, s) not in DEFAULT_HELDOUT.colour_shape for s in SHAPES)
    for shape in SHAPES:
        assert any((c, shape) not in DEFAULT_HELDOUT.colour_shape for c in COLOURS)


def test_training_stream_never_shows_a_heldout_combination_in_images_or_captions():
    rng = np.random.default_rng(2024)
    seen_pairs: set[tuple[str, str]] = set()
    for i in range(20_000):
        scene = sample_scene(rng, DEFAULT_HELDOUT, split="train")
        assert not scene_heldout_hits(scene, DEFAULT_HELDOUT), scene
        seen_pairs |= {(o.colour, o.shape) for o in scene.objects}
        for caption in describe(scene, rng, n=1 if i % 4 else 4):
            assert not text_heldout_hits(caption, DEFAULT_HELDOUT), caption
            assert not caption_involves_heldout(caption, DEFAULT_HELDOUT), caption
    # Everything not held out does occur, so the model sees every colour and shape.
    assert seen_pairs == {(c, s) for c in COLOURS for s in SHAPES} - DEFAULT_HELDOUT.colour_shape


def test_heldout_split_scenes_always_show_a_heldout_combination():
    rng = np.random.default_rng(8)
    kinds = set()
    for _ in range(500):
        scene = sample_scene(rng, DEFAULT_HELDOUT, split="heldout")
        hits = scene_heldout_hits(scene, DEFAULT_HELDOUT)
        assert hits and involves_heldout(scene, DEFAULT_HELDOUT)
        kinds |= {"relation" if len(h.split()) == 3 else "pair" for h in hits}
    assert kinds == {"pair", "relation"}


def test_a_heldout_relation_is_blocked_in_both_directions():
    heldout = parse_heldout(";star above circle")
    circle_below_star = Scene(objects=(Obj("circle", "red", "small", 0.5, 0.83),
                                       Obj("star", "blue", "small", 0.5, 0.17)), background="grey")
    assert involves_heldout(circle_below_star, heldout)
    assert caption_involves_heldout("a red circle below a blue star", heldout)
    assert caption_involves_heldout("the star is above the circle", heldout)
    assert not caption_involves_heldout("a red circle above a blue star", heldout)


def test_parse_heldout_reads_specs_and_round_trips():
    held = parse_heldout(" Red Star, blue circle ; star above circle, cross to the left of heart ")
    assert held.colour_shape == {("red", "star"), ("blue", "circle")}
    assert held.relations == {("star", "above", "circle"), ("cross", "left of", "heart")}
    assert parse_heldout(held.to_spec()) == held
    assert HeldOut.from_dict(json.loads(json.dumps(held.to_dict()))) == held
    assert parse_heldout(None) == DEFAULT_HELDOUT and parse_heldout("default") == DEFAULT_HELDOUT
    assert parse_heldout("none").is_empty() and parse_heldout("").is_empty()
    assert parse_heldout("green heart").relations == frozenset()


@pytest.mark.parametrize(("spec", "message"), [
    ("magenta star", "unknown colour 'magenta'"),
    ("red blob", "unknown shape 'blob'"),
    ("red", "must be two words"),
    (";star beside circle", "unknown relation 'beside'"),
    (";star above", "must look like"),
    (";star above star", "itself"),
    ("random:x", "random:SEED"),
    ("a;b;c", "more than one"),
])
def test_parse_heldout_rejects_bad_specs_clearly(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_heldout(spec)


def test_holding_out_a_whole_colour_is_refused():
    spec = ",".join(f"red {s}" for s in SHAPES)
    with pytest.raises(ValueError, match="no red object in training"):
        parse_heldout(spec)


def test_random_heldout_sets_are_reproducible_and_usable():
    a, b, c = HeldOut.random(1), HeldOut.random(1), HeldOut.random(2)
    assert a == b and a != c
    assert len(a.colour_shape) == 6 and len(a.relations) == 2
    assert parse_heldout("random:1") == a
    rng = np.random.default_rng(0)
    for _ in range(200):
        assert not scene_heldout_hits(sample_scene(rng, c, split="train"), c)
        assert scene_heldout_hits(sample_scene(rng, c, split="heldout"), c)


# --- captions -------------------------------------------------------------------------------------

def test_every_caption_is_true_of_its_scene():
    rng = np.random.default_rng(9)
    for _ in range(1500):
        scene = sample_scene(rng, split="any")
        captions = describe(scene, rng, n=4) + describe(scene, rng, n=2, style="complete")
        captions += [caption_for(scene, k) for k in ("full", "objects", "background")]
        for caption in captions:
            assert not caption_errors(caption, scene), (caption, caption_errors(caption, scene), scene)


def test_complete_captions_name_every_object_with_its_colour_and_the_background():
    rng = np.random.default_rng(10)
    for _ in range(300):
        scene = sample_scene(rng, split="any")
        for caption in describe(scene, rng, n=3, style="complete"):
            mentioned = {(c, NOUN[n]) for _, c, n in NP_RE.findall(caption) if c and n in NOUN}
            assert mentioned == scene.colour_shapes(), caption
            assert [BG[b] for b in BG_RE.findall(caption)] == [scene.background], caption


def test_captions_are_varied_and_use_many_forms():
    rng = np.random.default_rng(11)
    captions = []
    for _ in range(300):
        scene = sample_scene(rng, split="any")
        captions += describe(scene, rng, n=4)
        assert len(set(captions[-4:])) == 4
    text = "\n".join(captions)
    for form in ("there is", "an image showing", "background", " above ", " left of ", "two shapes",
                 "the star is", "a single"):
        assert form in text, form


def test_canonical_caption_is_deterministic():
    scene = Scene(objects=(Obj("square", "blue", "small", 0.83, 0.5),
                           Obj("circle", "red", "large", 0.17, 0.5)), background="grey")
    assert caption_for(scene) == "a large red circle and a small blue square on a grey background"
    assert caption_for(scene, "objects") == "a red circle and a blue square"


def test_caption_vocabulary_is_closed_and_small():
    assert all_words() == VOCABULARY and len(VOCABULARY) < 300
    rng = np.random.default_rng(12)
    words = set()
    for _ in range(800):
        scene = sample_scene(rng, split="any")
        for caption in describe(scene, rng, n=3) + describe(scene, rng, n=2, style="complete"):
            words |= set(tokenize(caption))
        edit = sample_edit(scene, rng, DEFAULT_HELDOUT, split="any")
        words |= set(tokenize(edit.text))
    assert words <= set(VOCABULARY), words - set(VOCABULARY)
    assert len(words) >= 0.9 * len(VOCABULARY)  # the vocabulary lists words that really occur


# --- edits ----------------------------------------------------------------------------------------

def _changed_fields(before: Scene, after: Scene) -> dict[str, set]:
    def describe_objs(s: Scene) -> dict[str, tuple]:
        return {o.shape: (o.colour, o.size, o.cell) for o in s.objects}

    b, a = describe_objs(before), describe_objs(after)
    return {
        "removed": set(b) - set(a), "added": set(a) - set(b),
        "colour": {s for s in set(a) & set(b) if a[s][0] != b[s][0]},
        "size": {s for s in set(a) & set(b) if a[s][1] != b[s][1]},
        "moved": {s for s in set(a) & set(b) if a[s][2] != b[s][2]},
        "background": {after.background} if after.background != before.background else set(),
    }


def test_each_edit_changes_exactly_what_its_text_says():
    rng = np.random.default_rng(13)
    seen = set()
    for _ in range(700):
        scene = sample_scene(rng, split="train")
        edit = sample_edit(scene, rng, DEFAULT_HELDOUT)
        after = apply_edit(scene, edit, rng)
        changed = {k: v for k, v in _changed_fields(scene, after).items() if v}
        seen.add(edit.kind)
        text = edit.text
        if edit.kind == "colour":
            assert changed == {"colour": {edit.shape}} and after.get(edit.shape).colour in text
        elif edit.kind == "size":
            assert changed == {"size": {edit.shape}}
            says_smaller = "small" in text or "smaller" in text or "shrink" in text
            assert says_smaller == (after.get(edit.shape).size == "small")
        elif edit.kind == "remove":
            assert changed == {"removed": {edit.shape}}
        elif edit.kind == "add":
            assert changed == {"added": {edit.shape}}
            new = after.get(edit.shape)
            assert f"{new.colour} {edit.shape}" in text
            side = {"left": new.x < 0.34, "right": new.x > 0.66, "top": new.y < 0.34, "bottom": new.y > 0.66}
            assert any(side[w] for w in ("left", "right", "top", "bottom") if w in text.split())
        elif edit.kind == "move":
            assert changed == {"moved": {edit.shape}}
            a, rel, b = re.search(rf"({_NOUNS}) (?:should be )?({_RELS}) the ({_NOUNS})", text).groups()
            assert holds(after.get(NOUN[a]), REL[rel], after.get(NOUN[b])), text
            assert not holds(scene.get(NOUN[a]), REL[rel], scene.get(NOUN[b])), text
        elif edit.kind == "background":
            assert changed == {"background": {edit.value}}
            assert any(b in text for b in BG if BG[b] == edit.value)
        elif edit.kind == "shape":
            assert changed == {"removed": {edit.shape}, "added": {edit.value}}
            assert edit.shape in text and edit.value in text
            assert after.get(edit.value).colour == scene.get(edit.shape).colour
    assert seen == set(EDIT_KINDS)


def test_near_misses_differ_from_the_target_and_include_the_unedited_scene():
    rng = np.random.default_rng(14)
    for _ in range(300):
        scene = sample_scene(rng, split="train")
        edit = sample_edit(scene, rng, DEFAULT_HELDOUT)
        target = apply_edit(scene, edit)
        misses = near_misses(scene, edit, rng, k=4)
        assert len(misses) == 4

        def content(s: Scene) -> tuple:
            return s.background, sorted((o.shape, o.colour, o.size, o.cell) for o in s.objects)

        contents = [content(m) for m in misses]
        assert content(target) not in contents
        assert len(set(map(repr, contents))) == 4
        assert content(scene) in contents


def test_training_edits_never_involve_heldout_and_heldout_edits_always_do():
    rng = np.random.default_rng(15)
    for _ in range(300):
        scene = sample_scene(rng, split="train")
        edit = sample_edit(scene, rng, DEFAULT_HELDOUT, split="train")
        assert not scene_heldout_hits(apply_edit(scene, edit), DEFAULT_HELDOUT)
        assert not text_heldout_hits(edit.text, DEFAULT_HELDOUT), edit.text
        try:
            held = sample_edit(scene, rng, DEFAULT_HELDOUT, split="heldout")
        except ValueError:
            continue  # some scenes admit no held-out edit at all
        assert edit_involves_heldout(scene, held, DEFAULT_HELDOUT)
        assert scene_heldout_hits(apply_edit(scene, held), DEFAULT_HELDOUT)


def test_edits_are_reproducible_from_the_seed():
    def run(seed: int) -> list[str]:
        rng = np.random.default_rng(seed)
        out = []
        for _ in range(30):
            scene = sample_scene(rng)
            edit = sample_edit(scene, rng, DEFAULT_HELDOUT)
            assert Edit.from_dict(json.loads(json.dumps(edit.to_dict()))) == edit
            out.append(edit.text + repr(apply_edit(scene, edit, rng)))
        return out

    assert run(4) == run(4) and run(4) != run(5)
