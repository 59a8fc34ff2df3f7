"""Quality of the `mini` model on a ShapesWorld test gallery: seen vs held-out (zero-shot) combinations.

One run measures, on a gallery of N scenes (half seen, half showing a held-out colour+shape pair or relation;
drawn with a seed training never uses):

* text->image and image->text Recall@1/5/10 (CLIP_benchmark's definitions) for the canonical full description
  of each scene and for all of its captions (canonical + 2 complete-style ones), on seen and held-out scenes;
* precision@10 of fact queries ("a red star", "a star above a circle") for held-out and seen facts;
* zero-shot classification accuracy (background, object count, colour and shape of single-object scenes);
* binding on minimal pairs (a scene vs the same scene with two objects' colours swapped; for held-out scenes the
  held-out colour+shape object is one of the two): Winoground's image score (each caption picks its own image)
  and text score (each image picks its own caption), chance 0.25 each;

for the trained model, for the same architecture with random weights, and for chance (analytic). The training
time comes from the model's train_log.json. The last line printed is one JSON object.

    python benchmarks/mini_quality.py [--scenes 1000] [--seed 2024] [--model mini]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from math import comb
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pixquery.models.mini import resolve_dir  # noqa: E402
from pixquery.models.registry import load_encoder  # noqa: E402
from pixquery.synth.mini_eval import KS, Gallery, evaluate, make_gallery  # noqa: E402
from pixquery.synth.world import BACKGROUNDS, COLOURS, SHAPES, HeldOut, parse_heldout  # noqa: E402


def chance_figures(gallery: Gallery, reference: dict[str, float]) -> dict[str, float]:
    """What a random ranking scores: k/N for one relevant item, prevalence for fact queries, 1/classes."""
    n_images = len(gallery.images)
    n_texts = len(gallery.captions)
    per_image = np.bincount(gallery.caption_owner, minlength=n_images)
    out: dict[str, float] = {}
    for name, mask in (("seen", ~gallery.heldout), ("heldout", gallery.heldout)):
        for k in KS:
            out[f"{name}_t2i_r{k}"] = min(1.0, k / n_images)
            out[f"{name}_canon_t2i_r{k}"] = min(1.0, k / n_images)
            # An image with c captions among T: P(at least one of them in a random top k).
            hits = [1 - comb(n_texts - c, k) / comb(n_texts, k) for c in per_image[mask]]
            out[f"{name}_i2t_r{k}"] = float(np.mean(hits))
    for name in ("seen", "heldout"):
        out[f"{name}_fact_p10"] = reference[f"{name}_fact_chance_p10"]
        # Two candidates on each side of a minimal pair: both picks right by chance with probability 1/4.
        out[f"{name}_binding_image"] = out[f"{name}_binding_text"] = 0.25
    single = any(len(s.objects) == 1 for s in gallery.scenes)
    out["cls_background"] = 1 / len(BACKGROUNDS)
    out["cls_count"] = 1 / 4
    parts = [out["cls_background"], out["cls_count"]]
    if single:
        out["cls_colour"], out["cls_shape"] = 1 / len(COLOURS), 1 / len(SHAPES)
        parts += [out["cls_colour"], out["cls_shape"]]
    out["cls_mean"] = float(np.mean(parts))
    return out


def random_mini(model_dir: Path) -> Any:
    """The mini architecture with seeded random weights (needs torch), wrapped like the trained model."""
    import torch

    from pixquery.synth.mini_model import MiniCLIP, MiniConfig
    from pixquery.synth.train import _torch_encoders

    config = json.loads((model_dir / "config.json").read_text())["mini_config"]
    torch.manual_seed(0)
    model = MiniCLIP(MiniConfig.from_dict(config)).eval()
    return _torch_encoders(model, model_dir / "textual" / "tokenizer.json")


ROWS: list[tuple[str, str]] = [
    ("canonical caption t2i R@1", "canon_t2i_r1"),
    ("canonical caption t2i R@5", "canon_t2i_r5"),
    ("canonical caption t2i R@10", "canon_t2i_r10"),
    ("all captions t2i R@1", "t2i_r1"),
    ("all captions t2i R@5", "t2i_r5"),
    ("all captions t2i R@10", "t2i_r10"),
    ("i2t R@1", "i2t_r1"),
    ("i2t R@5", "i2t_r5"),
    ("i2t R@10", "i2t_r10"),
    ("fact query P@10", "fact_p10"),
    ("binding image score", "binding_image"),
    ("binding text score", "binding_text"),
]
CLS_ROWS = ["cls_background", "cls_count", "cls_colour", "cls_shape", "cls_mean"]


def print_table(results: dict[str, dict[str, float]]) -> None:
    """Rows = metrics, columns = (model, seen/held-out)."""
    names = list(results)
    columns = [f"{n} {part}" for n in names for part in ("seen", "held-out")]
    header = f"{'metric':<28}" + "".join(f"{c:>18}" for c in columns)
    print(header)
    print("-" * len(header))
    for label, key in ROWS:
        values = [results[n].get(f"{part}_{key}", np.nan) for n in names for part in ("seen", "heldout")]
        cells = "".join(f"{v:>18.3f}" for v in values)
        print(f"{label:<28}{cells}")
    print()
    print(f"{'zero-shot classification':<28}" + "".join(f"{n:>18}" for n in names))
    for key in CLS_ROWS:
        print(f"{key[4:]:<28}" + "".join(f"{results[n].get(key, float('nan')):>18.3f}" for n in names))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and print the table and the JSON summary line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--model", default="mini", help="mini or mini:DIR")
    parser.add_argument("--heldout", default=None, help="held-out spec (default: the model's train_log.json)")
    parser.add_argument("--no-random", action="store_true", help="skip the random-weights baseline")
    args = parser.parse_args(argv)

    model_dir = resolve_dir(args.model.partition(":")[2])
    # The shipped layout holds train_log.json itself; a train-mini output directory holds it beside onnx/.
    candidates = (model_dir / "train_log.json", model_dir.parent / "train_log.json")
    log_path = next((p for p in candidates if p.is_file()), None)
    log = json.loads(log_path.read_text()) if log_path else {}
    if args.heldout:
        heldout = parse_heldout(args.heldout)
    else:
        heldout = HeldOut.from_dict(log["heldout"]) if log else parse_heldout(None)

    start = time.perf_counter()
    gallery = make_gallery(args.scenes, args.seed, heldout)
    encoder = load_encoder(args.model)
    results = {"mini": evaluate(gallery, heldout, encoder.encode_images, encoder.encode_texts)}
    if not args.no_random:
        try:
            results["random"] = evaluate(gallery, heldout, *random_mini(model_dir))
        except ImportError:
            print("torch is not installed: skipping the random-weights baseline")
    results["chance"] = chance_figures(gallery, results["mini"])

    print(f"ShapesWorld gallery: {len(gallery.images)} scenes ({int(gallery.heldout.sum())} held-out), "
          f"{len(gallery.captions)} captions, seed {args.seed}; held-out set: {heldout.to_spec()}")
    print(f"model {args.model} from {model_dir}; trained {log.get('total_minutes', '?')} min, "
          f"{log.get('steps', '?')} steps (seed {log.get('seed', '?')})")
    print()
    print_table(results)
    summary = {
        "model": args.model,
        "scenes": len(gallery.images),
        "seen_t2i_r10": results["mini"]["seen_canon_t2i_r10"],
        "heldout_t2i_r10": results["mini"]["heldout_canon_t2i_r10"],
        "seen_i2t_r10": results["mini"]["seen_i2t_r10"],
        "heldout_i2t_r10": results["mini"]["heldout_i2t_r10"],
        "heldout_fact_p10": results["mini"]["heldout_fact_p10"],
        "seen_fact_p10": results["mini"]["seen_fact_p10"],
        "seen_binding_image": results["mini"].get("seen_binding_image"),
        "heldout_binding_image": results["mini"].get("heldout_binding_image"),
        "seen_binding_text": results["mini"].get("seen_binding_text"),
        "heldout_binding_text": results["mini"].get("heldout_binding_text"),
        "seen_t2i_r1": results["mini"]["seen_canon_t2i_r1"],
        "heldout_t2i_r1": results["mini"]["heldout_canon_t2i_r1"],
        "chance_t2i_r10": results["chance"]["heldout_canon_t2i_r10"],
        "random_t2i_r10": results.get("random", {}).get("heldout_canon_t2i_r10"),
        "classification_accuracy": results["mini"]["cls_mean"],
        "random_classification_accuracy": results.get("random", {}).get("cls_mean"),
        "chance_classification_accuracy": results["chance"]["cls_mean"],
        "train_minutes": log.get("total_minutes"),
        "train_steps": log.get("steps"),
        "benchmark_seconds": round(time.perf_counter() - start, 1),
    }
    print()
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
