"""`conse`'s two mixing defaults (how many top classes, at what softmax temperature) on a mix of query styles.

    python benchmarks/conse_defaults.py [--photos DIR]

An image's ConSE vector is the probability-weighted mean of the label-bank rows of its `top_t` most likely ImageNet
classes, the probabilities taken at `temperature` (pixquery/models/conse.py). The classifier runs once per photo;
every (top_t, temperature) pair is then recomputed from its probabilities, so the whole grid costs one pass.

Query styles (users type both kinds):
* one-word class names over the 1,000-photo ImageNet sample (`--photos`, one photo per class: `git clone
  https://github.com/EliSchwartz/imagenet-sample-images`): "tabby cat", the answer is that class's photo;
* the same names as "a photo of a tabby cat.";
* paraphrases: the 35 judged queries of benchmarks/data/real_photos_queries.json ("books on a shelf", "a bird")
  over the 21 photos shipped in pixquery/data/demo_photos (relevant = the photos judged relevant).

R@1 and MRR per style; the default is the pair with the best mean R@1 over the three styles. The last line printed
is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from pixquery.media.decode import open_image  # noqa: E402
from pixquery.models import conse  # noqa: E402
from pixquery.models.registry import load_encoder  # noqa: E402

DEFAULT_PHOTOS = Path("/work/bench-photos/imagenet-sample")
DEMO = REPO / "pixquery" / "data" / "demo_photos"
JUDGED = REPO / "benchmarks" / "data" / "real_photos_queries.json"
TOP_T = (5, 10, 20, 50, 100)
TEMPERATURES = (1.0, 1.5, 2.0, 3.0)
PREVIOUS_DEFAULTS = (50, 2.0)
"""top_t and temperature before this measurement (chosen on paraphrases alone)."""


def log_probabilities(encoder: conse.ConSEEncoder, paths: Sequence[Path], batch: int = 32) -> np.ndarray:
    """Log class probabilities at temperature 1 (recovered from the encoder's own temperature)."""
    out = []
    for start in range(0, len(paths), batch):
        images = [open_image(p, target_size=encoder.decode_size) for p in paths[start : start + batch]]
        probs = encoder.class_probabilities(np.stack([encoder.preprocess(i) for i in images]))
        out.append(np.log(np.clip(probs, 1e-300, None)) * encoder.temperature)
    return np.concatenate(out)


def vectors_at(logits: np.ndarray, bank: np.ndarray, top_t: int, temperature: float) -> np.ndarray:
    return conse.conse_vectors(conse.softmax(logits, temperature), bank, top_t)


def ranks(scores: np.ndarray, relevant: list[set[int]]) -> np.ndarray:
    """1-based rank of the first relevant item per query."""
    order = np.argsort(-scores, axis=1, kind="stable")
    return np.array([1 + next(r for r, i in enumerate(row) if i in rel) for row, rel in zip(order, relevant,
                                                                                          strict=True)])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS)
    args = parser.parse_args(argv)
    encoder = load_encoder("conse")
    names = conse.default_labels()
    imagenet = sorted(p for p in args.photos.iterdir() if p.suffix == ".JPEG")
    demo = sorted(p for p in DEMO.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    judged = json.loads(JUDGED.read_text(encoding="utf-8"))["queries"]
    stems = {p.stem.lower(): i for i, p in enumerate(demo)}
    paraphrases = [(q["query"], {stems[Path(r).stem.lower()] for r in q["relevant"] if Path(r).stem.lower() in stems})
                   for q in judged]
    paraphrases = [(q, rel) for q, rel in paraphrases if rel]
    styles = {
        "one-word names": (encoder.encode_texts(names), [{i} for i in range(len(names))], "imagenet"),
        "a photo of a name": (encoder.encode_texts([f"a photo of a {n}." for n in names]),
                              [{i} for i in range(len(names))], "imagenet"),
        "paraphrases": (encoder.encode_texts([q for q, _ in paraphrases]), [rel for _, rel in paraphrases], "demo"),
    }
    logits = {"imagenet": log_probabilities(encoder, imagenet), "demo": log_probabilities(encoder, demo)}
    rows = []
    for top_t in TOP_T:
        for temperature in TEMPERATURES:
            row = {"top_t": top_t, "temperature": temperature}
            for style, (queries, relevant, gallery) in styles.items():
                r = ranks(queries @ vectors_at(logits[gallery], encoder.bank, top_t, temperature).T, relevant)
                row[style] = {"r1": round(float(np.mean(r == 1)), 3), "mrr": round(float(np.mean(1 / r)), 3)}
            row["mean_r1"] = round(float(np.mean([row[s]["r1"] for s in styles])), 3)
            rows.append(row)
    print(f"\n{len(imagenet)} ImageNet photos, {len(demo)} demo photos, {len(paraphrases)} paraphrases\n")
    print("| top_t | temperature | " + " | ".join(f"{s} R@1 / MRR" for s in styles) + " | mean R@1 |")
    print("|---|---|" + "---|" * (len(styles) + 1))
    for row in rows:
        cells = " | ".join(f"{row[s]['r1']:.3f} / {row[s]['mrr']:.3f}" for s in styles)
        print(f"| {row['top_t']} | {row['temperature']:g} | {cells} | {row['mean_r1']:.3f} |")
    best = max(rows, key=lambda r: (r["mean_r1"], r["paraphrases"]["mrr"]))
    def row_of(top_t: int, temperature: float) -> dict:
        return next(r for r in rows if r["top_t"] == top_t and r["temperature"] == temperature)

    current = row_of(conse.DEFAULT_TOP_T, conse.DEFAULT_TEMPERATURE)
    print(f"\nbest mean R@1: top_t {best['top_t']}, temperature {best['temperature']:g}; "
          f"defaults now: top_t {conse.DEFAULT_TOP_T}, temperature {conse.DEFAULT_TEMPERATURE:g}")
    print(json.dumps({"best": best, "defaults": current, "before_issue_19": row_of(*PREVIOUS_DEFAULTS)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
