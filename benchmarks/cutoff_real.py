"""The relevance cut-off on real photos: is a present answer kept, and does an absent concept return nothing?

    python benchmarks/cutoff_real.py [--photos DIR] [--model conse] [--shapes-model mini] [--k 50]

1. `conse` on the ImageNet sample (`--photos`, one photo per class; `git clone
   https://github.com/EliSchwartz/imagenet-sample-images`). About 100 classes are held out together with their
   WordNet siblings (all classes under one parent, so "Siamese cat" is absent with every other domestic cat rather
   than next to a Persian); the other ~900 photos are indexed through the facade. Present queries: the names of 100
   indexed classes (the answer: that photo); absent queries: the held-out names that nothing indexed is a kind of.
   Three query styles: "tabby cat", "a tabby cat", "a photo of a tabby cat.". Per rule: present recall (the answer
   is among the results the cut-off keeps, of the top `--k`), and for absent queries the share that return nothing
   and the median number of results. Hierarchy: benchmarks/data/imagenet_hierarchy.json (WordNet 3.0).
2. The same on the 21 photos shipped with the package (pixquery/data/demo_photos): the judged paraphrase queries of
   benchmarks/data/real_photos_queries.json ("a cat", "books on a shelf"; recall = share of relevant photos kept)
   and the hand-written absent queries of benchmarks/data/absent_queries.json ("a red sports car").
3. `mini` on ShapesWorld: 300 rendered single-object scenes in which one shape and one colour never occur; present
   queries name a colour and shape that some scene shows, absent ones name the missing shape or colour.

Rules: the old "auto" (`mad:1.5`, a robust z within the query's own scores), `mad` at a stricter z, the first null
rule of issue #19 (the query's z against the photo's best common word's z, least z sqrt(2 ln n): what a query
without text still uses), and the null rule of text queries (`pixquery.query.cutoff`: the query described as "a
photo of a ..." must score at least its best rival description minus a margin) at margins 0, 0.01, 0.02, with the
model's own concepts in the bank (the default) and with the common words alone (what an open-vocabulary model such
as CLIP gets). The default is then run end to end (`Library.query` with `cutoff="auto"`). The last line printed is
one JSON object of the headline figures.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
for extra in (REPO, REPO / "benchmarks"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))  # run from a checkout without installing

from imagenet_truth import load_classes  # noqa: E402

from pixquery.api import Library  # noqa: E402
from pixquery.query.collection import calibration_sample  # noqa: E402
from pixquery.query.cutoff import (  # noqa: E402
    NULL_TEMPLATE,
    NULL_WORDS,
    CutoffRule,
    WordNull,
    describe,
    match_mask,
    null_min_z,
)
from pixquery.query.engine import word_null  # noqa: E402
from pixquery.query.spec import QuerySpec, WeightedText  # noqa: E402
from pixquery.query.textbank import distinguishable, embed_words, load_words  # noqa: E402

DEFAULT_PHOTOS = Path("/work/bench-photos/imagenet-sample")
DEMO = REPO / "pixquery" / "data" / "demo_photos"
JUDGED = REPO / "benchmarks" / "data" / "real_photos_queries.json"
ABSENT = REPO / "benchmarks" / "data" / "absent_queries.json"
STYLES: dict[str, str] = {"name": "{}", "a name": "a {}", "a photo of a name": "a photo of a {}."}
RULES: list[tuple[str, CutoffRule, str]] = (
    [("mad:1.5 (old auto)", CutoffRule("mad", 1.5), "z"), ("mad:5", CutoffRule("mad", 5.0), "z"),
     ("first null (word z, sqrt(2 ln n))", CutoffRule("null", 0.0), "z")]
    + [(f"null:{m} (auto)" if m == 0 else f"null:{m}", CutoffRule("null", m), "described") for m in (0.0, 0.01, 0.02)]
    + [("null:0, common words only", CutoffRule("null", 0.0), "common")]
)
"""(label, rule, how the null rule reads the bank: "z" the first rule, "described" the default text rule with the
model's concepts, "common" the same with the common words alone)."""
_START = time.time()


def log(message: str) -> None:
    print(f"[{time.time() - _START:6.1f}s] {message}", file=sys.stderr, flush=True)


class Judge:
    """Runs one index's queries under every rule from the same top-k, as the engine would."""

    def __init__(self, lib: Library, k: int) -> None:
        self.lib, self.k = lib, k
        ctx = lib.context()
        self.ids, self.vectors = lib.store.all_vectors()
        self.position = {int(i): n for n, i in enumerate(np.asarray(self.ids).tolist())}
        _, self.sample = calibration_sample(lib.store)
        self.null = word_null(ctx)
        words = load_words(NULL_WORDS)
        vectors = embed_words(lib.encoder, words, NULL_TEMPLATE)
        keep = distinguishable(vectors)
        self.common = WordNull.build(vectors[keep], self.sample, embed_words(lib.encoder, words, "{}")[keep])
        self.queries: dict[str, np.ndarray] = {}

    def encode(self, texts: Sequence[str]) -> None:
        """Embed query texts and their descriptions ("a photo of a ...") once, in one batch."""
        todo = [t for t in dict.fromkeys([*texts, *(describe(t) for t in texts)]) if t not in self.queries]
        if todo:
            self.queries.update(zip(todo, self.lib.encoder.encode_texts(todo), strict=True))

    def kept(self, text: str, rule: CutoffRule, reads: str) -> list[int]:
        """Ids the rule keeps among the top k for `text`, as `Library.query` would decide them."""
        self.encode([text])
        q, described = self.queries[text], self.queries[describe(text)]
        scores = self.vectors @ q
        top = np.argsort(-scores, kind="stable")[: self.k]
        if reads == "z":
            best_z = self.null.best_z(self.vectors[top], query=q)
            mask = match_mask(rule, scores[top], self.sample @ q, item_best_z=best_z, min_z=null_min_z(len(self.ids)))
        else:
            null = self.null if reads == "described" else self.common
            rival = null.best_rival(self.vectors[top], [q, described])
            mask = match_mask(rule, scores[top], self.sample @ q, described=self.vectors[top] @ described,
                              item_rival=rival)
        return [int(self.ids[i]) for i in top[mask]]


def summarise(present: list[float], absent: list[int]) -> dict[str, float]:
    counts = np.asarray(absent)
    return {"present_recall": round(float(np.mean(present)), 3), "absent_empty": round(float(np.mean(counts == 0)), 3),
            "absent_median": float(np.median(counts)), "absent_mean": round(float(np.mean(counts)), 2)}


def evaluate(judge: Judge, present: list[tuple[str, set[int]]], absent: list[str]) -> dict[str, dict[str, float]]:
    """Per rule: recall of the present queries' relevant ids, results of the absent ones."""
    judge.encode([text for text, _ in present] + list(absent))
    out = {}
    for label, rule, reads in RULES:
        recall = [len(set(judge.kept(text, rule, reads)) & relevant) / len(relevant) for text, relevant in present]
        out[label] = summarise(recall, [len(judge.kept(text, rule, reads)) for text in absent])
    return out


def end_to_end(lib: Library, k: int, present: list[tuple[str, set[int]]], absent: list[str]) -> dict[str, float]:
    """The default through the facade: `cutoff="auto"`, exactly what the page's "only confident matches" sends."""
    def run(text: str) -> set[int]:
        return {h.id for h in lib.query(QuerySpec(texts=[WeightedText(text)], k=k, cutoff="auto")).hits}

    return summarise([len(run(t) & rel) / len(rel) for t, rel in present], [len(run(t)) for t in absent])


def imagenet_split(n_held: int, seed: int) -> tuple[list[int], list[int], list[int]]:
    """(kept class indices, absent query classes, present query classes)."""
    classes = load_classes()
    groups: dict[str, list[int]] = {}
    for c in classes:
        groups.setdefault(c.parent(), []).append(c.index)
    rng = np.random.default_rng(seed)
    held: list[int] = []
    for parent in rng.permutation(sorted(groups)).tolist():
        if len(held) >= n_held:
            break
        if len(groups[parent]) <= 20:  # never a whole hundred dog breeds at once
            held += groups[parent]
    kept = sorted(set(range(len(classes))) - set(held))
    absent = [c for c in sorted(held) if not any(classes[k].is_a(classes[c].wnid) for k in kept)]
    present = sorted(rng.choice(kept, 100, replace=False).tolist())
    return kept, absent, present


def imagenet(photos: Path, model: str, k: int, seed: int, work: Path) -> dict[str, Any]:
    classes = load_classes()
    files = sorted(p for p in photos.iterdir() if p.suffix == ".JPEG")
    kept, absent, present = imagenet_split(100, seed)
    folder = work / "imagenet"
    folder.mkdir(parents=True)
    for c in kept:
        shutil.copyfile(files[c], folder / files[c].name)
    out: dict[str, Any] = {"indexed": len(kept), "present_queries": len(present), "absent_queries": len(absent)}
    with Library.open(work / "imagenet-index", model=model) as lib:
        lib.index([folder])
        log(f"indexed {len(kept)} ImageNet photos")
        judge = Judge(lib, k)
        id_of = {Path(lib.view().path_of(i)).name: int(i) for i in judge.ids}
        for style, template in STYLES.items():
            queries = [(template.format(classes[c].name), {id_of[files[c].name]}) for c in present]
            absent_queries = [template.format(classes[c].name) for c in absent]
            out[style] = evaluate(judge, queries, absent_queries)
            out[style]["auto, end to end"] = end_to_end(lib, k, queries, absent_queries)
            log(f"ImageNet, style {style!r} done")
    return out


def demo(model: str, k: int, work: Path) -> dict[str, Any]:
    judged = json.loads(JUDGED.read_text(encoding="utf-8"))["queries"]
    absent = json.loads(ABSENT.read_text(encoding="utf-8"))["queries"]
    with Library.open(work / "demo-index", model=model) as lib:
        lib.index([DEMO])
        judge = Judge(lib, k)
        by_stem = {Path(lib.view().path_of(i)).stem.lower(): int(i) for i in judge.ids}
        present = []
        for item in judged:
            relevant = {by_stem[s] for s in (Path(r).stem.lower() for r in item["relevant"]) if s in by_stem}
            if relevant:
                present.append((item["query"], relevant))
        out: dict[str, Any] = evaluate(judge, present, absent)
        out["auto, end to end"] = end_to_end(lib, k, present, absent)
        out["queries"] = {"present": len(present), "absent": len(absent)}
        cats = next(rel for text, rel in present if text == "a cat")
        kept_cats = {h.id for h in lib.query(QuerySpec(texts=[WeightedText("a cat")], k=k, cutoff="auto")).hits}
        car = lib.query(QuerySpec(texts=[WeightedText("a red sports car")], k=k, cutoff="auto")).hits
        out["a cat"] = f"{len(kept_cats & cats)} of {len(cats)} cat photos kept, {len(kept_cats - cats)} others"
        out["a red sports car"] = f"{len(car)} results"
    return out


def shapes(model: str, k: int, work: Path, n: int = 300, seed: int = 7) -> dict[str, Any]:
    from pixquery.synth.render import render_scene
    from pixquery.synth.world import COLOURS, DEFAULT_HELDOUT, SHAPES, sample_scene

    rng = np.random.default_rng(seed)
    missing_shape, missing_colour = SHAPES[-1], COLOURS[-1]
    folder = work / "shapes"
    folder.mkdir()
    scenes = []
    while len(scenes) < n:
        scene = sample_scene(rng, DEFAULT_HELDOUT, split="any", n_objects=1)
        if any(o.shape == missing_shape or o.colour == missing_colour for o in scene.objects):
            continue
        render_scene(scene, 64, rng).save(folder / f"scene{len(scenes):04d}.png")
        scenes.append(scene)
    with Library.open(work / "shapes-index", model=model) as lib:
        lib.index([folder])
        judge = Judge(lib, k)
        id_of = {Path(lib.view().path_of(i)).name: int(i) for i in judge.ids}
        shows: dict[tuple[str, str], set[int]] = {}
        for number, scene in enumerate(scenes):
            for o in scene.objects:
                shows.setdefault((o.colour, o.shape), set()).add(id_of[f"scene{number:04d}.png"])
        pairs = sorted(shows)
        chosen = [pairs[i] for i in rng.choice(len(pairs), min(20, len(pairs)), replace=False)]
        present = [(f"a {c} {s}", shows[(c, s)]) for c, s in chosen]
        absent = [f"a {c} {missing_shape}" for c in COLOURS[:-1][:10]] + \
                 [f"a {missing_colour} {s}" for s in SHAPES[:-1][:10]]
        out: dict[str, Any] = evaluate(judge, present, absent)
        out["auto, end to end"] = end_to_end(lib, k, present, absent)
        out["absent"] = {"shape": missing_shape, "colour": missing_colour}
    return out


def table(title: str, results: dict[str, Any]) -> None:
    print(f"\n{title}\n\n| rule | present recall | absent: none returned | absent: median results |")
    print("|---|---|---|---|")
    for label, row in results.items():
        if isinstance(row, dict) and "present_recall" in row:
            print(f"| {label} | {row['present_recall']:.2f} | {row['absent_empty']:.2f} | {row['absent_median']:g} |")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS)
    parser.add_argument("--model", default="conse")
    parser.add_argument("--shapes-model", default="mini")
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3],
                        help="ImageNet splits (which classes are held out); the tables print the first")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="pixquery-cutoff-"))
    results: dict[str, Any] = {"default": "null:0"}
    steps: dict[str, Callable[[], dict[str, Any]]] = {
        "imagenet": lambda: imagenet(args.photos, args.model, args.k, args.seeds[0], work / "split1"),
        **{f"imagenet seed {seed}": (lambda seed=seed: imagenet(args.photos, args.model, args.k, seed,
                                                                work / f"split{seed}"))
           for seed in args.seeds[1:]},
        "demo_photos": lambda: demo(args.model, args.k, work),
        "shapesworld": lambda: shapes(args.shapes_model, args.k, work),
    }
    try:
        for name, step in steps.items():
            results[name] = step()
            log(f"{name} done")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for style in STYLES:
        table(f"ImageNet sample, {args.model}, {results['imagenet']['indexed']} photos, queries like "
              f"{STYLES[style].format('tabby cat')!r}", results["imagenet"][style])
    table(f"Demo photos, {args.model}, judged paraphrases and absent queries", results["demo_photos"])
    demo_results = results["demo_photos"]
    print(f"'a cat': {demo_results['a cat']}; 'a red sports car': {demo_results['a red sports car']}")
    table(f"ShapesWorld, {args.shapes_model}", results["shapesworld"])
    auto = {style: results["imagenet"][style]["auto, end to end"] for style in STYLES}
    print(json.dumps({
        "model": args.model, "rule": "null:0 (the query described vs its best rival description)", "seeds": args.seeds,
        "imagenet_present_recall": {s: a["present_recall"] for s, a in auto.items()},
        "imagenet_absent_empty": {s: a["absent_empty"] for s, a in auto.items()},
        "imagenet_absent_median": {s: a["absent_median"] for s, a in auto.items()},
        "old_auto_absent_median": results["imagenet"]["name"]["mad:1.5 (old auto)"]["absent_median"],
        "first_null": {s: results["imagenet"][s]["first null (word z, sqrt(2 ln n))"] for s in STYLES},
        "common_words_only": {s: results["imagenet"][s]["null:0, common words only"] for s in STYLES},
        "other_seeds": {seed: {s: results[f"imagenet seed {seed}"][s]["auto, end to end"] for s in STYLES}
                        for seed in args.seeds[1:]},
        "demo": results["demo_photos"]["auto, end to end"],
        "shapesworld": results["shapesworld"]["auto, end to end"],
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
