"""Composed retrieval, hubness reduction and the relevance cut-off on ShapesWorld, through the real query engine.

Two ShapesWorld sets are generated (`pixquery.synth.emit.write_set`): one seed to tune the methods' parameters
and the cut-off, another to report on. Each set is indexed (real Catalog + FlatStore) with the model, and every
query runs through `pixquery.query.engine.run_query`, as a user's search does.

Reported on the test seed:
* composed retrieval (CIRR layout: reference + edit text -> target, 4 near-miss distractors per triplet):
  Recall@1/5/10 and mAP@10 (reference removed from the ranking, as CIRR's protocol does), for the methods
  image, text, sum, weighted, pdv, inversion, rewrite, each also with QB-Norm; split into seen edits and
  held-out edits (results that show colour+shape pairs or relations the model never saw in training);
* text -> image Recall@1/5/10 on the retrieval set (5 captions per image) without and with QB-Norm / CSLS;
* precision / recall / F1 of "is a match" for each cut-off rule at its tuned z, on generic queries
  ("a grey background", "two shapes", "a red star", ...) whose true matches are read from the scene files;
* precision@10 of queries with a negative ("a red shape" without "a grey background"), per negative mode.

    python benchmarks/composed_retrieval.py [--model mini] [--n 200] [--n-retrieval 400] [--tune-seed 101]
                                            [--test-seed 202] [--verbose]

The last line printed is one JSON object (held-out edits for the *_r10 keys).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pixquery.eval.metrics import circo_map_at_k, cirr_recall_at_k, first_relevant_rank  # noqa: E402
from pixquery.models.registry import load_encoder  # noqa: E402
from pixquery.query.cutoff import RULES  # noqa: E402
from pixquery.query.engine import SearchContext, run_query  # noqa: E402
from pixquery.query.spec import QuerySpec, Rerank, WeightedImage, WeightedText  # noqa: E402
from pixquery.store.catalog import Catalog  # noqa: E402
from pixquery.store.flat import FlatStore  # noqa: E402
from pixquery.synth.captions import describe  # noqa: E402
from pixquery.synth.emit import write_set  # noqa: E402
from pixquery.synth.rewrite import register as register_shapes_plugins  # noqa: E402
from pixquery.synth.world import BACKGROUNDS, COLOURS, SHAPES, SIZES, Scene, sample_scene  # noqa: E402

SHAPES_PLUGINS = {"captioner": "shapesworld", "rewriter": "shapesworld"}
register_shapes_plugins()
# ShapesWorld words for inversion: object phrases and backgrounds, embedded as "a {}" like the world's captions.
WORLD_WORDS = (
    [f"{z} {c} {s}" for z in SIZES for c in COLOURS for s in SHAPES]
    + [f"{c} {s}" for c in COLOURS for s in SHAPES]
    + list(SHAPES)
    + [f"{b} background" for b in BACKGROUNDS]
)
INVERSION_BASE = {"vocabulary": None, "word_template": "a {}"}

GRIDS: dict[str, list[dict[str, Any]]] = {
    "image": [{}],
    "text": [{}],
    "sum": [{}],
    "weighted": [{"alpha": a} for a in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)],
    "pdv": [
        {**SHAPES_PLUGINS, "s_text": 1.0, "s_image": s, "image_weight": w}
        for s, w in itertools.product((0.5, 1.0, 1.5), (0.2, 0.35, 0.5))
    ],
    "inversion": [
        {"top_k": k, "image_weight": w, "combine": c, "temperature": 0.05}
        for k, w, c in itertools.product((1, 3), (0.3, 0.5, 0.7), ("a {word}, {edit}", "{edit}, a {word}"))
    ],
    "rewrite": [{**SHAPES_PLUGINS, "image_weight": w} for w in (0.0, 0.2, 0.4, 0.6)],
}
CUTOFF_GRID: dict[str, tuple[float, ...]] = {
    "mad": (1.0, 1.5, 2.0, 2.5, 3.0),
    "zscore": (1.0, 1.5, 2.0, 2.5),
    "gap": (1.0, 1.5, 2.0, 3.0),
    "bank": (1.0, 1.5, 2.0, 2.5),
}


# --- building indexes --------------------------------------------------------------------------------------------


def build_index(encoder: Any, paths: list[Path], folder: Path, bank: list[str]) -> tuple[SearchContext, list[int]]:
    """Index images into a fresh catalog + flat store; returns the context and the catalog id of each path."""
    folder.mkdir(parents=True)
    catalog = Catalog(folder / "catalog.sqlite")
    store = FlatStore(folder / "vectors", encoder.dim)
    ids = []
    for path in paths:
        file_id = catalog.insert(str(path), str(path.parent), "png", 1, 0, str(path))
        catalog.mark_indexed(file_id, {})
        ids.append(file_id)
    catalog.commit()
    for start in range(0, len(paths), 128):
        batch = [Image.open(p).convert("RGB") for p in paths[start : start + 128]]
        store.add(np.array(ids[start : start + 128]), encoder.encode_images(batch))
    store.flush()
    return SearchContext(encoder, store, catalog, vocabulary=WORLD_WORDS, query_bank=bank), ids


@dataclass
class CirQuery:
    reference: int
    caption: str
    target: int
    heldout: bool
    kind: str


@dataclass
class ShapesSet:
    cir: SearchContext
    queries: list[CirQuery]
    retrieval: SearchContext
    image_ids: list[int]
    captions: list[str]
    caption_image: list[int]
    scenes: list[Scene]


def load_set(encoder: Any, root: Path, n: int, n_retrieval: int, seed: int, bank: list[str]) -> ShapesSet:
    """Generate one ShapesWorld seed (CIRR + retrieval layouts) and index both galleries."""
    write_set(root, n=n, seed=seed, kinds=("cirr",), progress=False)
    write_set(root, n=n_retrieval, seed=seed, kinds=("retrieval",), progress=False)
    split = json.loads((root / "cir" / "image_splits" / "split.rc2.val.json").read_text())
    names = list(split)
    cir_ctx, cir_ids = build_index(encoder, [root / "cir" / "img_raw" / rel for rel in split.values()],
                                   root / "cir_index", bank)
    by_name = dict(zip(names, cir_ids, strict=True))
    triplets = json.loads((root / "cir" / "captions" / "cap.rc2.val.json").read_text())
    queries = [CirQuery(by_name[t["reference"]], t["caption"], by_name[t["target_hard"]], bool(t["heldout"]),
                        t["edit"]["kind"]) for t in triplets]
    data = json.loads((root / "retrieval" / "dataset_shapesworld.json").read_text())["images"]
    paths = [root / "retrieval" / d["filepath"] / d["filename"] for d in data]
    ret_ctx, ret_ids = build_index(encoder, paths, root / "retrieval_index", bank)
    captions = [s["raw"] for d in data for s in d["sentences"]]
    caption_image = [ret_ids[i] for i, d in enumerate(data) for _ in d["sentences"]]
    scenes = [Scene.from_dict(s["scene"]) for s in json.loads((root / "retrieval" / "scenes.json").read_text())]
    return ShapesSet(cir_ctx, queries, ret_ctx, ret_ids, captions, caption_image, scenes)


def world_caption_bank(size: int = 1000, seed: int = 999) -> list[str]:
    """Captions of random scenes, none from the evaluated sets: the query bank of hubness reduction.

    Half are complete descriptions (like the test captions, as QB-Norm's bank is made of training queries),
    half the varied partial captions users also type.
    """
    rng = np.random.default_rng(seed)
    bank: list[str] = []
    while len(bank) < size:
        scene = sample_scene(rng, split="any")
        bank += describe(scene, rng, n=1, style="complete") + describe(scene, rng, n=1)
    return bank[:size]


# --- composed retrieval ------------------------------------------------------------------------------------------


def run_cir(
    data: ShapesSet, method: str, params: dict[str, Any], hubness: str | None = None, beta: float | None = None
) -> dict[str, float]:
    """Recall@1/5/10 and mAP@10 over all, seen and held-out queries of one method and parameter set."""
    ranked = []
    for q in data.queries:
        spec = QuerySpec(images=[WeightedImage(catalog_id=q.reference)], texts=[WeightedText(q.caption)],
                         method=method, params={k: v for k, v in params.items() if v is not None}, k=11,
                         rerank=Rerank(hubness=hubness, options={"beta": beta} if beta else {}))
        ranked.append([h.id for h in run_query(spec, data.cir).hits])
    out: dict[str, float] = {}
    for part, keep in (("all", lambda q: True), ("seen", lambda q: not q.heldout), ("heldout", lambda q: q.heldout)):
        rows = [i for i, q in enumerate(data.queries) if keep(q)]
        refs = [data.queries[i].reference for i in rows]
        targets = [data.queries[i].target for i in rows]
        lists = [ranked[i] for i in rows]
        recall = cirr_recall_at_k(lists, refs, targets, ks=(1, 5, 10))
        without_ref = [[x for x in lst if x != r][:10] for lst, r in zip(lists, refs, strict=True)]
        ap = circo_map_at_k(without_ref, [[t] for t in targets], ks=(10,))
        for key, value in {**recall, "map@10": ap["map@10"]}.items():
            out[f"{part}_{key.replace('@', '')}"] = value
    return out


def tune(data: ShapesSet, log: list[str]) -> dict[str, dict[str, Any]]:
    """Best parameters of each method by Recall@10 (then mAP@10) over all queries of the tuning seed."""
    best: dict[str, dict[str, Any]] = {}
    for method, grid in GRIDS.items():
        scored = []
        for params in grid:
            full = {**INVERSION_BASE, **params} if method == "inversion" else params
            m = run_cir(data, method, full)
            scored.append(((m["all_r10"], m["all_map10"]), full))
            if len(grid) > 1:
                shown = {k: v for k, v in params.items() if k not in SHAPES_PLUGINS}
                log.append(f"  tune {method:9s} {json.dumps(shown):70s} R@10 {m['all_r10']:.3f} "
                           f"mAP@10 {m['all_map10']:.3f}")
        best[method] = max(scored, key=lambda item: item[0])[1]
    return best


# --- text -> image and cut-off -----------------------------------------------------------------------------------


QBNORM_BETAS = (2.0, 5.0, 10.0, 20.0)


def text_to_image(data: ShapesSet, hubness: str | None, options: dict[str, float] | None = None) -> dict[str, float]:
    """Recall@1/5/10 of every caption retrieving its image."""
    ranked = []
    for caption in data.captions:
        spec = QuerySpec(texts=[WeightedText(caption)], k=10, rerank=Rerank(hubness=hubness, options=options or {}))
        ranked.append([h.id for h in run_query(spec, data.retrieval).hits])
    ranks = first_relevant_rank(ranked, [[i] for i in data.caption_image])
    return {f"r{k}": float(np.mean(ranks < k)) for k in (1, 5, 10)}


def cutoff_queries(scenes: list[Scene], rng: np.random.Generator, n: int = 120) -> list[tuple[str, set[int]]]:
    """Generic queries, drawn evenly from eight families, and the indices of the scenes each truly matches."""
    def has(scene: Scene, shape: str | None, colour: str | None = None, size: str | None = None) -> bool:
        return any(shape in (None, o.shape) and colour in (None, o.colour) and size in (None, o.size)
                   for o in scene.objects)

    numbers = ("one", "two", "three", "four")
    families: list[list[tuple[str, Any]]] = [
        [(f"a {b} background", lambda sc, b=b: sc.background == b) for b in BACKGROUNDS],
        [(f"a {c} shape", lambda sc, c=c: has(sc, None, c)) for c in COLOURS],
        [(f"{numbers[k - 1]} {'shape' if k == 1 else 'shapes'}", lambda sc, k=k: len(sc.objects) == k)
         for k in range(1, 5)],
        [(f"a {c} shape on a {b} background", lambda sc, c=c, b=b: has(sc, None, c) and sc.background == b)
         for c in COLOURS for b in BACKGROUNDS],
        [(f"a {s}", lambda sc, s=s: has(sc, s)) for s in SHAPES],
        [(f"a {c} {s}", lambda sc, s=s, c=c: has(sc, s, c)) for s in SHAPES for c in COLOURS],
        [(f"a {z} {c} {s}", lambda sc, s=s, c=c, z=z: has(sc, s, c, z))
         for s in SHAPES for c in COLOURS for z in SIZES],
        [(f"a {c} {s} on a {b} background", lambda sc, s=s, c=c, b=b: has(sc, s, c) and sc.background == b)
         for s in SHAPES for c in COLOURS for b in BACKGROUNDS],
    ]
    out = []
    for family in families:
        picked = 0
        for i in rng.permutation(len(family)):
            text, test = family[int(i)]
            truth = {j for j, scene in enumerate(scenes) if test(scene)}
            if truth:
                out.append((text, truth))
                picked += 1
            if picked == n // len(families):
                break
    return out


def cutoff_scores(data: ShapesSet, queries: list[tuple[str, set[int]]], rule: str) -> dict[str, float]:
    """Mean precision, recall and the F1 of those means of "is a match" for one cut-off rule."""
    index_of = {file_id: j for j, file_id in enumerate(data.image_ids)}
    precision, recall = [], []
    for text, truth in queries:
        spec = QuerySpec(texts=[WeightedText(text)], k=len(data.image_ids), cutoff=rule)
        found = {index_of[h.id] for h in run_query(spec, data.retrieval).hits}
        hits = len(found & truth)
        precision.append(hits / len(found) if found else 1.0)
        recall.append(hits / len(truth))
    p, r = float(np.mean(precision)), float(np.mean(recall))
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}


def tune_cutoff(data: ShapesSet, queries: list[tuple[str, set[int]]], log: list[str]) -> dict[str, float]:
    """The z of each rule with the best F1 on the tuning seed."""
    best = {}
    for rule, values in CUTOFF_GRID.items():
        scored = []
        for z in values:
            s = cutoff_scores(data, queries, f"{rule}:{z}")
            log.append(f"  tune cutoff {rule}:{z:<4} P {s['precision']:.3f} R {s['recall']:.3f} F1 {s['f1']:.3f}")
            scored.append((s["f1"], z))
        best[rule] = max(scored)[1]
    return best


# --- negatives ---------------------------------------------------------------------------------------------------

NEGATIVE_GRID: list[tuple[str, dict[str, float]]] = (
    [("none", {})]
    + [("subtract", {"negative_scale": s}) for s in (0.25, 0.5, 1.0, 2.0)]
    + [("penalty", {"negative_scale": s, "negative_z": z}) for s in (0.5, 1.0, 2.0) for z in (0.0, 1.0, 2.0)]
)


def negative_queries(scenes: list[Scene], rng: np.random.Generator, n: int = 40) -> list[tuple[str, str, set[int]]]:
    """("a red shape", "a grey background", scenes with a red object not on grey), each with 10+ such scenes
    and 5+ red-object scenes on grey that the negative must push out."""
    out = []
    for i in rng.permutation(len(COLOURS) * len(BACKGROUNDS)):
        colour, background = COLOURS[int(i) // len(BACKGROUNDS)], BACKGROUNDS[int(i) % len(BACKGROUNDS)]
        with_colour = [j for j, sc in enumerate(scenes) if any(o.colour == colour for o in sc.objects)]
        truth = {j for j in with_colour if scenes[j].background != background}
        if len(truth) >= 10 and len(with_colour) - len(truth) >= 5:
            out.append((f"a {colour} shape", f"a {background} background", truth))
        if len(out) == n:
            break
    return out


def negative_precision(
    data: ShapesSet, queries: list[tuple[str, str, set[int]]], mode: str, params: dict[str, float]
) -> float:
    """Mean precision@10 of "has an object of the colour, not on the negative background"."""
    index_of = {file_id: j for j, file_id in enumerate(data.image_ids)}
    precision = []
    for positive, negative, truth in queries:
        spec = QuerySpec(texts=[WeightedText(positive)], k=10)
        if mode != "none":
            spec.negative_texts = [WeightedText(negative)]
            spec.negative_mode = mode
            spec.params = dict(params)
        found = [index_of[h.id] for h in run_query(spec, data.retrieval).hits]
        precision.append(sum(j in truth for j in found) / max(1, len(found)))
    return float(np.mean(precision))


# --- report ------------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mini")
    parser.add_argument("--n", type=int, default=200, help="composed-retrieval triplets per seed")
    parser.add_argument("--n-retrieval", type=int, default=400, help="text-retrieval images per seed")
    parser.add_argument("--tune-seed", type=int, default=101)
    parser.add_argument("--test-seed", type=int, default=202)
    parser.add_argument("--verbose", action="store_true", help="print every tuning step")
    args = parser.parse_args()
    started = time.perf_counter()
    encoder = load_encoder(args.model)
    bank = world_caption_bank()
    log: list[str] = []
    with tempfile.TemporaryDirectory(prefix="pixquery-cir-") as tmp:
        tune_set = load_set(encoder, Path(tmp) / "tune", args.n, args.n_retrieval, args.tune_seed, bank)
        test_set = load_set(encoder, Path(tmp) / "test", args.n, args.n_retrieval, args.test_seed, bank)
        print(f"# model {args.model}; {len(test_set.queries)} composed queries "
              f"({sum(q.heldout for q in test_set.queries)} held-out) over {test_set.cir.store.count()} images; "
              f"{len(test_set.captions)} captions over {len(test_set.image_ids)} images; built in "
              f"{time.perf_counter() - started:.0f} s")

        best = tune(tune_set, log)
        betas = {b: text_to_image(tune_set, "qbnorm", {"beta": b})["r1"] for b in QBNORM_BETAS}
        log += [f"  tune qbnorm beta {b:<5} t2i R@1 {r:.3f}" for b, r in betas.items()]
        beta = max(betas, key=betas.get)
        rows = {}
        for method, params in best.items():
            rows[method] = run_cir(test_set, method, params)
            rows[f"{method}+qbnorm"] = run_cir(test_set, method, params, hubness="qbnorm", beta=beta)
        t2i = {"cosine": text_to_image(test_set, None),
               f"qbnorm(beta={beta:g})": text_to_image(test_set, "qbnorm", {"beta": beta}),
               "csls": text_to_image(test_set, "csls")}
        rng = np.random.default_rng(args.tune_seed)
        best_z = tune_cutoff(tune_set, cutoff_queries(tune_set.scenes, rng), log)
        test_queries = cutoff_queries(test_set.scenes, np.random.default_rng(args.test_seed))
        cut = {f"{rule}:{z}": cutoff_scores(test_set, test_queries, f"{rule}:{z}") for rule, z in best_z.items()}
        neg_tune = negative_queries(tune_set.scenes, np.random.default_rng(args.tune_seed))
        neg_test = negative_queries(test_set.scenes, np.random.default_rng(args.test_seed))
        negatives = {f"{mode} {json.dumps(params)}": (negative_precision(tune_set, neg_tune, mode, params),
                                                       negative_precision(test_set, neg_test, mode, params))
                     for mode, params in NEGATIVE_GRID}

    if args.verbose:
        print("\n".join(log))
    print("\n## Tuned parameters (tuning seed, Recall@10 over all queries)")
    for method, params in best.items():
        shown = {k: v for k, v in params.items() if k not in SHAPES_PLUGINS and v is not None}
        print(f"  {method:10s} {json.dumps(shown)}")
    print(f"\n## Composed retrieval, test seed (reference removed from the ranking; QB-Norm beta {beta:g}, "
          "tuned on text->image)")
    header = f"{'method':18s}" + "".join(f"{p + ' ' + m:>13s}" for p in ("seen", "held-out")
                                          for m in ("R@1", "R@5", "R@10", "mAP@10"))
    print(header)
    for name, m in rows.items():
        cells = "".join(f"{m[f'{p}_{k}']:13.3f}" for p in ("seen", "heldout") for k in ("r1", "r5", "r10", "map10"))
        print(f"{name:18s}{cells}")
    print("\n## Text -> image, test seed retrieval set")
    for name, m in t2i.items():
        print(f"  {name:16s} R@1 {m['r1']:.3f}  R@5 {m['r5']:.3f}  R@10 {m['r10']:.3f}")
    print(f"\n## Relevance cut-off, {len(test_queries)} generic queries on the test seed (z tuned on the tuning seed)")
    for rule, s in cut.items():
        print(f"  {rule:12s} precision {s['precision']:.3f}  recall {s['recall']:.3f}  F1 {s['f1']:.3f}")

    print(f"\n## Negatives: precision@10 of 'a COLOUR shape' minus 'a BG background' ({len(neg_test)} test queries)")
    for name, (p_tune, p_test) in negatives.items():
        print(f"  {name:50s} tuning seed {p_tune:.3f}   test seed {p_test:.3f}")

    composed = [m for m in best if m not in ("image", "text")]
    best_method = max(composed, key=lambda m: (rows[m]["heldout_r10"], rows[m]["heldout_map10"]))
    best_rule = max(cut, key=lambda r: cut[r]["f1"])
    summary = {
        "model": args.model,
        "n": args.n,
        "image_r10": rows["image"]["heldout_r10"],
        "text_r10": rows["text"]["heldout_r10"],
        "sum_r10": rows["sum"]["heldout_r10"],
        "best_method": best_method,
        "best_r10": rows[best_method]["heldout_r10"],
        "best_params": {k: v for k, v in best[best_method].items() if v is not None},
        "seen_best_r10": rows[best_method]["seen_r10"],
        "heldout_r10": {m: rows[m]["heldout_r10"] for m in rows},
        "seen_r10": {m: rows[m]["seen_r10"] for m in rows},
        "t2i_r1": {k: v["r1"] for k, v in t2i.items()},
        "cutoff_best": best_rule,
        "cutoff_f1": cut[best_rule]["f1"],
        "cutoff": cut,
        "negatives_p10": {k: v[1] for k, v in negatives.items()},
        "seconds": round(time.perf_counter() - started, 1),
    }
    assert set(RULES) == set(CUTOFF_GRID)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
