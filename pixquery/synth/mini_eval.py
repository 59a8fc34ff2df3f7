"""Test galleries and retrieval/classification figures for ShapesWorld models (numpy only, no torch).

Used by training (a quick check), by benchmarks/mini_quality.py and by the tests, so every place measures the
same thing:

* A gallery is half "seen" scenes (split "train": no held-out combination) and half "held-out" scenes (each
  shows at least one held-out colour+shape pair or relation), drawn from generators seeded (seed, i), so a
  gallery is reproducible and independent of the training pool's seeds.
* Captions per scene: the canonical full description (`caption_for`) plus `extra_captions` complete-style
  ones. Recall is CLIP_benchmark's (pixquery.eval.metrics): text->image hits when the caption's own image
  is in the top K; image->text hits when any of the image's captions is.
* Fact queries name one combination ("a red star", "a star above a circle"); many scenes match, so they are
  scored by precision@10 (the fraction of the top 10 that show it) against chance (the fraction of the gallery
  that shows it).
* Binding (minimal pairs, Winoground-style): a scene against the same scene with two objects' colours swapped,
  rendered with the same jitter; each caption must prefer its own image and each image its own caption
  (Winoground's image and text scores). For held-out scenes the swapped object is the held-out colour+shape one,
  so the test asks whether the model binds a colour it never saw on that shape. Chance is 0.25. This is where
  held-out combinations can be told from seen ones: whole-caption recall is solvable from a scene's other
  attributes alone.
* Zero-shot classification: background (all scenes), object count, and colour and shape of single-object
  scenes, by argmax over prompts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from pixquery.eval.metrics import recall_from_ranks, retrieval_ranks, topk_accuracy
from pixquery.synth.captions import BACKGROUND_WORDS, NUMBER_WORDS, caption_for, describe, plural
from pixquery.synth.render import render_scene
from pixquery.synth.world import (
    BACKGROUNDS,
    COLOURS,
    SHAPES,
    HeldOut,
    Scene,
    involves_heldout,
    sample_scene,
    swap_colours,
)

EncodeFn = Callable[[Sequence[Image.Image]], np.ndarray]
TextFn = Callable[[Sequence[str]], np.ndarray]
KS = (1, 5, 10)


@dataclass
class Gallery:
    """Scenes, their rendered images and captions; `heldout[i]` says scene i shows a held-out combination."""

    scenes: list[Scene]
    images: list[Image.Image]
    heldout: np.ndarray
    captions: list[str]
    caption_owner: np.ndarray


def make_gallery(n: int, seed: int, heldout: HeldOut, size: int = 64, extra_captions: int = 2) -> Gallery:
    """`n` scenes, the first half seen, the second half held-out, each with 1 + `extra_captions` captions."""
    scenes, images, captions, owner = [], [], [], []
    for i in range(n):
        rng = np.random.default_rng([seed, 104_729, i])
        split = "train" if i < n // 2 else "heldout"
        scene = sample_scene(rng, heldout=heldout, split=split)
        scenes.append(scene)
        images.append(render_scene(scene, size=size, rng=rng))
        texts = [caption_for(scene, "full")]
        if extra_captions:
            texts += [t for t in describe(scene, rng, n=extra_captions, style="complete") if t not in texts]
        captions += texts
        owner += [i] * len(texts)
    flags = np.array([involves_heldout(s, heldout) for s in scenes])
    return Gallery(scenes, images, flags, captions, np.array(owner, dtype=np.int64))


def fact_queries(heldout: HeldOut) -> tuple[list[str], list[str]]:
    """Query texts for held-out facts and for an equal-sized, fixed set of seen ones (for comparison)."""
    held = [f"a {c} {s}" for c, s in sorted(heldout.colour_shape)]
    held += [f"a {a} {r} a {b}" for a, r, b in sorted(heldout.relations)]
    seen_pairs = [(c, s) for c in COLOURS for s in SHAPES if not heldout.blocks_pair(c, s)]
    rng = np.random.default_rng(12345)
    picks = rng.permutation(len(seen_pairs))[: max(1, len(heldout.colour_shape))]
    seen = [f"a {seen_pairs[int(i)][0]} {seen_pairs[int(i)][1]}" for i in picks]
    seen_rel = [("circle", "left of", "star"), ("square", "above", "heart"), ("cross", "below", "diamond")]
    seen += [f"a {a} {r} a {b}" for a, r, b in seen_rel if not heldout.blocks_relation(a, r, b)]
    return held, seen


def _fact_relevance(scene: Scene, text: str) -> bool:
    words = text.split()[1:]
    if len(words) == 2:
        return (words[0], words[1]) in scene.colour_shapes()
    a, b, rel = words[0], words[-1], " ".join(words[1:-2])
    return (a, rel, b) in scene.relations()


def precision_at_k(scores: np.ndarray, relevant: np.ndarray, k: int = 10) -> np.ndarray:
    """Per query, the fraction of its top `k` gallery items that are relevant."""
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(relevant, top, axis=1).mean(axis=1)


def _classification(gallery: Gallery, image_emb: np.ndarray, encode_texts: TextFn) -> dict[str, float]:
    out: dict[str, float] = {}
    bg_prompts = [f"a {BACKGROUND_WORDS[b][0]} background" for b in BACKGROUNDS]
    labels = np.array([BACKGROUNDS.index(s.background) for s in gallery.scenes])
    out["background"] = topk_accuracy(image_emb @ encode_texts(bg_prompts).T, labels, ks=(1,))["acc@1"]
    count_prompts = ["one shape"] + [f"{w} {plural('shape')}" for w in NUMBER_WORDS[1:]]
    labels = np.array([len(s.objects) - 1 for s in gallery.scenes])
    out["count"] = topk_accuracy(image_emb @ encode_texts(count_prompts).T, labels, ks=(1,))["acc@1"]
    single = np.array([len(s.objects) == 1 for s in gallery.scenes])
    if single.any():
        objs = [s.objects[0] for s, one in zip(gallery.scenes, single, strict=True) if one]
        colour_logits = image_emb[single] @ encode_texts([f"a {c} shape" for c in COLOURS]).T
        colour_labels = np.array([COLOURS.index(o.colour) for o in objs])
        out["colour"] = topk_accuracy(colour_logits, colour_labels, ks=(1,))["acc@1"]
        shape_logits = image_emb[single] @ encode_texts([f"a {s}" for s in SHAPES]).T
        shape_labels = np.array([SHAPES.index(o.shape) for o in objs])
        out["shape"] = topk_accuracy(shape_logits, shape_labels, ks=(1,))["acc@1"]
    out["mean"] = float(np.mean(list(out.values())))
    return out


def _swap_partner(scene: Scene, heldout: HeldOut, want_heldout: bool) -> tuple[int, int] | None:
    """Indices (a, b) of two differently coloured objects to swap; for held-out scenes `a` shows a held-out pair."""
    objs = scene.objects
    firsts = [i for i, o in enumerate(objs) if heldout.blocks_pair(o.colour, o.shape)] if want_heldout else [0]
    for a in firsts:
        for b in range(len(objs)):
            if b != a and objs[b].colour != objs[a].colour:
                return a, b
    return None


def binding_accuracy(
    gallery: Gallery, heldout: HeldOut, encode_images: EncodeFn, encode_texts: TextFn, seed: int = 0, size: int = 64
) -> dict[str, float]:
    """Per split, Winoground image and text scores of scenes against their colour-swapped twins."""
    out: dict[str, float] = {}
    for name, want_heldout in (("seen", False), ("heldout", True)):
        originals, swaps = [], []
        for i, scene in enumerate(gallery.scenes):
            if bool(gallery.heldout[i]) != want_heldout:
                continue
            pair = _swap_partner(scene, heldout, want_heldout)
            if pair is None:
                continue
            originals.append((i, scene))
            swaps.append(swap_colours(scene, *pair))
        if not originals:
            continue
        images, texts = [], []
        for (i, scene), swapped in zip(originals, swaps, strict=True):
            for s in (scene, swapped):  # same generator state: only the colours differ between the two renders
                images.append(render_scene(s, size=size, rng=np.random.default_rng([seed, 31, i])))
                texts.append(caption_for(s, "full"))
        text_emb, image_emb = encode_texts(texts), encode_images(images)
        sims = np.einsum("pid,pjd->pij", text_emb.reshape(-1, 2, text_emb.shape[1]),
                         image_emb.reshape(-1, 2, image_emb.shape[1]))  # [pair, caption, image]
        # Winoground's scores: each caption picks its own image (image score), each image its own caption
        # (text score); chance is 0.25 for both, and a model blind to binding scores near 0 on one of them.
        image_ok = (sims[:, 0, 0] > sims[:, 0, 1]) & (sims[:, 1, 1] > sims[:, 1, 0])
        text_ok = (sims[:, 0, 0] > sims[:, 1, 0]) & (sims[:, 1, 1] > sims[:, 0, 1])
        out[f"{name}_binding_image"] = float(image_ok.mean())
        out[f"{name}_binding_text"] = float(text_ok.mean())
        out[f"{name}_binding_pairs"] = float(len(originals))
    return out


def evaluate(
    gallery: Gallery, heldout: HeldOut, encode_images: EncodeFn, encode_texts: TextFn
) -> dict[str, float]:
    """Every figure for one model on one gallery; keys are flat, e.g. `seen_t2i_r10`, `heldout_fact_p10`."""
    image_emb = encode_images(gallery.images)
    text_emb = encode_texts(gallery.captions)
    t2i, i2t = retrieval_ranks(text_emb @ image_emb.T, gallery.caption_owner)
    caption_heldout = gallery.heldout[gallery.caption_owner]
    canonical = np.r_[True, gallery.caption_owner[1:] != gallery.caption_owner[:-1]]
    out: dict[str, float] = {}
    for name, caption_mask, image_mask in (
        ("seen", ~caption_heldout, ~gallery.heldout),
        ("heldout", caption_heldout, gallery.heldout),
    ):
        for key, value in recall_from_ranks(t2i[caption_mask], KS, "t2i_r").items():
            out[f"{name}_{key}"] = value
        for key, value in recall_from_ranks(t2i[caption_mask & canonical], KS, "canon_t2i_r").items():
            out[f"{name}_{key}"] = value
        for key, value in recall_from_ranks(i2t[image_mask], KS, "i2t_r").items():
            out[f"{name}_{key}"] = value
    held_q, seen_q = fact_queries(heldout)
    for name, queries in (("heldout", held_q), ("seen", seen_q)):
        relevant = np.array([[_fact_relevance(s, q) for s in gallery.scenes] for q in queries])
        scores = encode_texts(queries) @ image_emb.T
        out[f"{name}_fact_p10"] = float(precision_at_k(scores, relevant).mean())
        out[f"{name}_fact_chance_p10"] = float(relevant.mean())
    for key, value in _classification(gallery, image_emb, encode_texts).items():
        out[f"cls_{key}"] = value
    out.update(binding_accuracy(gallery, heldout, encode_images, encode_texts))
    return out
