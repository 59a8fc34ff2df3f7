"""Ground truth about the ImageNet sample photos, from WordNet: each class's ancestors, for the benchmarks that judge
names (is "cat" right for a tabby? yes: "cat" is an ancestor) and relevance (is a concept absent from a collection?
only if no photo shows it or anything it includes).

    python benchmarks/imagenet_truth.py /usr/share/wordnet   # rewrites benchmarks/data/imagenet_hierarchy.json

The data file ships with the benchmarks (the ImageNet class ids are WordNet 3.0 noun offsets, so it is derived from
Princeton WordNet 3.0 (Debian `wordnet-base`); licence in pixquery/data/vocabulary/SOURCE.md). Readers need no
WordNet installed.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HIERARCHY = REPO / "benchmarks" / "data" / "imagenet_hierarchy.json"
MAX_DEPTH = 6
"""Ancestors kept: far enough for "animal" above a dog breed, short of "entity"."""


@dataclass(frozen=True)
class ImageNetClass:
    """One class: its WordNet id, its simple name (pixquery/data/imagenet_classes.txt) and its ancestors."""

    index: int
    wnid: str
    name: str
    lemmas: tuple[str, ...]
    ancestors: dict[str, tuple[int, tuple[str, ...]]]
    """wnid -> (distance, lemmas) for every hypernym up to `MAX_DEPTH` (the class itself at distance 0)."""

    def is_a(self, wnid: str) -> bool:
        """Whether this class is `wnid` or one of its kinds."""
        return wnid in self.ancestors

    def names_within(self, depth: int) -> set[str]:
        """Lower-case names of the class and its ancestors up to `depth` steps up (its own simple name too)."""
        out = {self.name.lower()}
        for distance, lemmas in self.ancestors.values():
            if distance <= depth:
                out.update(lemma.lower() for lemma in lemmas)
        return out

    def parent(self) -> str:
        """The first direct hypernym (the class itself where it has none)."""
        return min(self.ancestors, key=lambda w: (self.ancestors[w][0] != 1, w)) if len(self.ancestors) > 1 \
            else self.wnid


def load_classes(path: Path = HIERARCHY) -> list[ImageNetClass]:
    """The 1000 classes in class-index order (the ImageNet sample's sorted file order)."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    return [
        ImageNetClass(i, c["wnid"], c["name"], tuple(c["lemmas"]),
                      {w: (int(d), tuple(lemmas)) for w, d, lemmas in c["ancestors"]})
        for i, c in enumerate(doc["classes"])
    ]


def class_of(path: str | Path, classes: Sequence[ImageNetClass]) -> ImageNetClass | None:
    """The class of an ImageNet sample file ("n02123045_tabby.JPEG"), None for other files."""
    wnid = Path(path).name.split("_", 1)[0]
    return next((c for c in classes if c.wnid == wnid), None)


def _read_wordnet(wordnet_dir: Path) -> dict[str, tuple[list[str], list[str]]]:
    synsets: dict[str, tuple[list[str], list[str]]] = {}
    with open(wordnet_dir / "data.noun", encoding="latin-1") as fh:
        for line in fh:
            if line.startswith(" "):
                continue
            fields = line.partition("|")[0].split()
            n_words = int(fields[3], 16)
            words = [fields[4 + 2 * i].replace("_", " ") for i in range(n_words)]
            pos = 4 + 2 * n_words
            pointers = [fields[pos + 1 + 4 * i : pos + 5 + 4 * i] for i in range(int(fields[pos]))]
            synsets[fields[0]] = (words, [p[1] for p in pointers if p[0] in ("@", "@i")])
    return synsets


def build(wordnet_dir: Path, sample_names: Sequence[str], simple_names: Sequence[str]) -> dict:
    """The data file's content from WordNet, the sample's wnids (sorted) and the simple class names."""
    synsets = _read_wordnet(wordnet_dir)
    classes = []
    for wnid, name in zip(sample_names, simple_names, strict=True):
        offset = wnid[1:]
        seen: dict[str, int] = {}
        frontier, depth = [offset], 0
        while frontier and depth <= MAX_DEPTH:
            following = []
            for current in frontier:
                if current not in seen:
                    seen[current] = depth
                    following += synsets[current][1]
            frontier, depth = following, depth + 1
        classes.append({"wnid": wnid, "name": name, "lemmas": synsets[offset][0],
                        "ancestors": [[f"n{o}", d, synsets[o][0][:3]] for o, d in sorted(seen.items(),
                                                                                       key=lambda kv: kv[1])]})
    return {"source": "Princeton WordNet 3.0 hypernyms of the ImageNet-1k classes (benchmarks/imagenet_truth.py)",
            "classes": classes}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    simple = (REPO / "pixquery" / "data" / "imagenet_classes.txt").read_text(encoding="utf-8").splitlines()
    wnids = [line.split()[0] for line in (REPO / "benchmarks" / "data" / "imagenet_wnids.txt").read_text(
        encoding="utf-8").splitlines() if line.strip()]
    doc = build(Path(args[0]), wnids, simple)
    HIERARCHY.write_text(json.dumps(doc, separators=(",", ":")), encoding="utf-8")
    print(f"{len(doc['classes'])} classes written to {HIERARCHY}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
