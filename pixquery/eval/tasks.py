"""Evaluation tasks: what each benchmark reads, which methods it compares, and how each method is scored.

A task is built from a name and a data folder (`make_task`), then driven by the runner in four steps:
`resolve_methods` (validate the requested methods before anything heavy runs), `load` (read the annotations
with the dataset readers), `prepare` (fetch embeddings from the cache) and `evaluate` (score one method).

Four kinds of task:

* retrieval: image-text retrieval on Karpathy-split JSON (flickr30k, coco, shapesworld-retrieval), scored in
  both directions as CLIP_benchmark does.
* composed: composed image retrieval (cirr, circo, fashioniq, shapesworld-cir, shapesworld-circo); the methods
  are the composition methods of `pixquery.query.compose`, and the baselines image, text and sum are always
  reported, as the papers do.
* classification: zero-shot classification of class folders with prompt templates.
* instance: revisited Oxford/Paris image-to-image retrieval, mAP under the easy, medium and hard protocols.

Every figure is a fraction in [0, 1] computed by `pixquery.eval.metrics`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pixquery.errors import PixqueryError
from pixquery.eval import metrics as M
from pixquery.eval.cache import EmbeddingCache
from pixquery.eval.datasets import (
    ComposedDataset,
    DatasetFormatError,
    read_circo,
    read_cirr,
    read_fashioniq,
    read_fashioniq_all,
    read_imagefolder,
    read_karpathy,
    read_revisited,
)
from pixquery.eval.datasets.karpathy import find_karpathy_file
from pixquery.models.base import l2_normalize
from pixquery.options import parse_key_values
from pixquery.organize.templates import CURATED_TEMPLATES

CURVE_MAX_K = 50
"""Recall curves are drawn for k = 1..50 (the largest cut-off any of these benchmarks reports)."""

PROMPT_TEMPLATE = "a photo of a {}."
"""CLIP's default zero-shot prompt (and CLIP_benchmark's for datasets without their own templates)."""

ENSEMBLE_TEMPLATES = CURATED_TEMPLATES
"""The seven ImageNet templates OpenAI's prompt-engineering notebook selected out of its 80 (same accuracy as all
80 for a twelfth of the text encoding); the organize tasks' "curated" set."""


class EvalError(PixqueryError, ValueError):
    """A task, method or option the runner cannot evaluate (unknown name, bad parameter, split without truth)."""


# ------------------------------------------------------------------------------------------------------
# Methods
# ------------------------------------------------------------------------------------------------------


@dataclass
class MethodSpec:
    """One method to evaluate: its registered name and the parameters the user set (defaults are added later)."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """How reports name it: ``weighted`` or ``weighted:alpha=0.5``."""
        if not self.params:
            return self.name
        return f"{self.name}:" + ",".join(f"{k}={_format_value(v)}" for k, v in self.params.items())


def _format_value(value: Any) -> str:
    return json.dumps(value) if isinstance(value, bool) else str(value)


def parse_method(text: str) -> MethodSpec:
    """Parse ``NAME`` or ``NAME:key=value,key=value`` (values read as JSON when they parse, else as text)."""
    name, _, rest = text.strip().partition(":")
    if not name:
        raise EvalError(f"empty method name in {text!r}")
    try:
        params = parse_key_values(filter(None, (part.strip() for part in rest.split(","))), f"method {text!r}")
    except PixqueryError as exc:
        raise EvalError(str(exc)) from None
    return MethodSpec(name.strip(), params)


@dataclass
class MethodResult:
    """The figures of one method: overall metrics, metrics per group, curves, and the parameters that ran."""

    metrics: dict[str, float]
    params: dict[str, Any]
    groups: dict[str, dict[str, float]] = field(default_factory=dict)
    curves: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def recall_curve(ranks: np.ndarray, max_k: int = CURVE_MAX_K) -> dict[str, list[float]]:
    """Recall@k for k = 1..max_k from 0-based first-hit ranks (``inf`` = never retrieved)."""
    ks = list(range(1, max_k + 1))
    values = M.recall_from_ranks(ranks, ks, "")
    return {"k": ks, "value": [values[str(k)] for k in ks]}


# ------------------------------------------------------------------------------------------------------
# Base task
# ------------------------------------------------------------------------------------------------------


class Task:
    """A benchmark: its reader, its methods and its metrics. Subclasses fill in the four steps."""

    kind = ""
    default_methods: tuple[str, ...] = ()
    baselines: tuple[str, ...] = ()
    headline: tuple[str, ...] = ()
    """The metrics the comparison chart shows (the benchmark's usual headline figures)."""
    own_methods: dict[str, dict[str, Any]] = {}
    """Methods this task implements itself: name -> default parameters."""

    def __init__(self, name: str, data: Path, options: dict[str, Any]) -> None:
        self.name = name
        self.data = Path(data)
        self.options = options
        self.annotation_files: list[Path] = []
        self.image_paths: list[Path] = []
        self.info: dict[str, Any] = {}

    def resolve_methods(self, requested: list[str] | None) -> list[MethodSpec]:
        """The methods to run, baselines first, each validated; raises `EvalError` on an unknown one."""
        specs = [parse_method(m) for m in (requested or self.default_methods)]
        specs = [MethodSpec(b) for b in self.baselines] + specs
        unique: dict[str, MethodSpec] = {}
        for spec in specs:
            self.check_method(spec)
            unique.setdefault(spec.label, spec)
        return list(unique.values())

    def check_method(self, spec: MethodSpec) -> None:
        """Raise `EvalError` if the method or one of its parameters is unknown to this task."""
        if spec.name not in self.own_methods:
            raise EvalError(
                f"task {self.name!r} has no method {spec.name!r}; methods: {', '.join(self.own_methods)}"
            )
        unknown = set(spec.params) - set(self.own_methods[spec.name])
        if unknown:
            accepted = ", ".join(self.own_methods[spec.name]) or "none"
            raise EvalError(f"method {spec.name!r} has no parameter {sorted(unknown)[0]!r}; it accepts: {accepted}")

    def full_params(self, spec: MethodSpec) -> dict[str, Any]:
        """The method's parameters with defaults filled in (what results.json records)."""
        return {**self.own_methods.get(spec.name, {}), **spec.params}

    def load(self) -> None:
        """Read the dataset; set `annotation_files`, `image_paths` (for the data hash) and `info`."""
        raise NotImplementedError

    def prepare(self, cache: EmbeddingCache) -> None:
        """Fetch every embedding the methods share."""
        raise NotImplementedError

    def evaluate(self, spec: MethodSpec, cache: EmbeddingCache) -> MethodResult:
        """Score one method."""
        raise NotImplementedError

    def _split(self, default: str) -> str:
        return str(self.options.get("split") or default)


def _subfolder(data: Path, name: str, marker: str) -> Path:
    """A ShapesWorld set root: `data` itself, or `data/name` when `data` is the folder `write_set` filled."""
    return data / name if not (data / marker).exists() and (data / name / marker).exists() else data


def _heldout_by_key(path: Path, key: str) -> dict[Any, bool]:
    """ShapesWorld annotations carry a per-query ``heldout`` flag the readers leave out; read it by query id."""
    records = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(records, list) or any(not isinstance(r, dict) or "heldout" not in r for r in records):
        raise DatasetFormatError(path, "expected a list of queries each with a 'heldout' flag", field="heldout")
    return {r[key]: bool(r["heldout"]) for r in records}


def _group_flags(flags: np.ndarray | None) -> dict[str, np.ndarray]:
    if flags is None:
        return {}
    flags = np.asarray(flags, dtype=bool)
    return {"seen": np.flatnonzero(~flags), "heldout": np.flatnonzero(flags)}


# ------------------------------------------------------------------------------------------------------
# Image-text retrieval
# ------------------------------------------------------------------------------------------------------


class RetrievalTask(Task):
    """Karpathy-split image-text retrieval, both directions (CLIP_benchmark's recall@1/5/10)."""

    kind = "retrieval"
    default_methods = ("cosine",)
    headline = ("t2i_r@1", "t2i_r@5", "t2i_r@10", "i2t_r@1", "i2t_r@5", "i2t_r@10")
    own_methods = {"cosine": {}}

    def __init__(self, name: str, data: Path, options: dict[str, Any], karpathy: str, shapesworld: bool) -> None:
        super().__init__(name, data, options)
        self.karpathy = karpathy
        if shapesworld:
            self.data = _subfolder(self.data, "retrieval", "dataset_shapesworld.json")

    def load(self) -> None:
        self.dataset = read_karpathy(
            self.data, self._split("test"), name=self.karpathy,
            max_captions_per_image=self.options.get("max_captions_per_image"),
        )
        self.annotation_files = [find_karpathy_file(self.data, self.karpathy)]
        self.image_paths = list(self.dataset.image_paths)
        heldout = self.dataset.image_tags.get("heldout")
        self.image_groups = _group_flags(heldout)
        self.caption_groups = _group_flags(self.dataset.tag_per_caption("heldout") if heldout is not None else None)
        self.info = {"name": self.dataset.name, "split": self.dataset.split, "images": len(self.image_paths),
                     "captions": len(self.dataset.captions)}
        if heldout is not None:
            self.info["heldout_images"] = int(np.sum(heldout.astype(bool)))

    def prepare(self, cache: EmbeddingCache) -> None:
        self.image_vectors = cache.images("images", self.image_paths)
        self.text_vectors = cache.texts(self.dataset.captions)

    def evaluate(self, spec: MethodSpec, cache: EmbeddingCache) -> MethodResult:
        scores = self.text_vectors @ self.image_vectors.T
        # retrieval_recall_at_k is recall_from_ranks over these ranks; computing the ranks once also serves
        # the curves and the seen/held-out split.
        t2i, i2t = M.retrieval_ranks(scores, self.dataset.caption_to_image)
        ks = (1, 5, 10)
        result = MethodResult(
            {**M.recall_from_ranks(t2i, ks, "t2i_r@"), **M.recall_from_ranks(i2t, ks, "i2t_r@")},
            self.full_params(spec),
            curves={"text→image": recall_curve(t2i), "image→text": recall_curve(i2t)},
        )
        for group, rows in self.caption_groups.items():
            result.groups[group] = {**M.recall_from_ranks(t2i[rows], ks, "t2i_r@"),
                                    **M.recall_from_ranks(i2t[self.image_groups[group]], ks, "i2t_r@")}
        return result


# ------------------------------------------------------------------------------------------------------
# Composed image retrieval
# ------------------------------------------------------------------------------------------------------


@dataclass
class _Part:
    """One gallery with its queries (CIRR and CIRCO have one; FashionIQ one per category)."""

    name: str
    dataset: ComposedDataset
    heldout: np.ndarray | None = None
    gallery: np.ndarray | None = None
    references: np.ndarray | None = None
    reference_paths: list[Path] = field(default_factory=list)
    reference_index: np.ndarray | None = None
    captions: np.ndarray | None = None


class ComposedTask(Task):
    """Composed image retrieval with the composition methods of `pixquery.query.compose`.

    Protocols (see `pixquery.eval.metrics`): ``cirr`` ranks the whole gallery minus the reference and adds the
    subset recall; ``circo`` scores mAP@k against every ground truth; ``fashioniq`` reports recall@10/50 per
    category and their unweighted mean.
    """

    kind = "composed"
    baselines = ("image", "text", "sum")
    default_methods = ("weighted",)

    def __init__(self, name: str, data: Path, options: dict[str, Any], protocol: str, shapesworld: bool) -> None:
        super().__init__(name, data, options)
        self.protocol = protocol
        self.shapesworld = shapesworld
        if shapesworld:
            folder, marker = ("cir", "captions") if protocol == "cirr" else ("circo", "annotations")
            self.data = _subfolder(self.data, folder, marker)
        self.headline = {
            "cirr": ("r@1", "r@5", "r@10", "subset_r@1"),
            "circo": ("map@5", "map@10", "map@25", "map@50"),
            "fashioniq": ("r@10", "r@50"),
        }[protocol]

    # --- methods ----------------------------------------------------------------------------------------

    def check_method(self, spec: MethodSpec) -> None:
        from pixquery.errors import QueryError
        from pixquery.query.compose import check_method

        try:
            check_method(spec.name, self.full_params(spec))
        except QueryError as exc:
            raise EvalError(str(exc)) from exc
        params = self.full_params(spec)
        if spec.name == "rewrite" and not (params.get("captioner") and params.get("rewriter")):
            raise EvalError(
                "the rewrite method needs a captioner and a rewriter: --method 'rewrite:captioner=NAME,rewriter=NAME' "
                "(registered plugins, see pixquery.query.rewrite)"
            )

    def full_params(self, spec: MethodSpec) -> dict[str, Any]:
        params = dict(spec.params)
        if self.shapesworld and spec.name == "rewrite":
            # ShapesWorld ships a zero-shot captioner and a rule-based rewriter, so rewrite runs out of the box.
            from pixquery.synth.rewrite import register

            register()
            params.setdefault("captioner", "shapesworld")
            params.setdefault("rewriter", "shapesworld")
        return params

    def _recorded_params(self, spec: MethodSpec) -> dict[str, Any]:
        from pixquery.query.compose import METHODS, method_params

        if spec.name not in METHODS:
            return self.full_params(spec)
        defaults = {k: p.default for k, p in method_params(spec.name).items()}
        return {**defaults, **self.full_params(spec)}

    # --- data -------------------------------------------------------------------------------------------

    def load(self) -> None:
        loader = {
            "cirr": self._load_cirr, "shapesworld-cir": self._load_cirr,
            "circo": self._load_circo, "shapesworld-circo": self._load_circo,
            "fashioniq": self._load_fashioniq,
        }[self.name]
        self.parts = loader()
        for part in self.parts:
            if any(not q.targets for q in part.dataset.queries):
                raise EvalError(
                    f"{part.dataset.name} split {part.dataset.split!r} has no public ground truth; evaluate the val "
                    "split (test results come from the benchmark's evaluation server)"
                )
        self.image_paths = [p for part in self.parts for p in part.dataset.gallery_paths]
        self.info = {
            "name": self.parts[0].dataset.name.split("-")[0], "split": self.parts[0].dataset.split,
            "gallery": sum(len(p.dataset.gallery_paths) for p in self.parts),
            "queries": sum(len(p.dataset.queries) for p in self.parts),
        }
        if len(self.parts) > 1:
            self.info["parts"] = {p.name: len(p.dataset.queries) for p in self.parts}
        held = [p.heldout for p in self.parts if p.heldout is not None]
        if held:
            self.info["heldout_queries"] = int(sum(h.sum() for h in held))

    def _load_cirr(self) -> list[_Part]:
        root = self.data
        split = "val" if self.shapesworld else self._split("val")
        dataset = read_cirr(root, split)
        ann_root = root if (root / "captions").is_dir() else root / "cirr"
        version_split = "test1" if split == "test" else split
        captions_file = ann_root / "captions" / f"cap.rc2.{version_split}.json"
        self.annotation_files = [captions_file, ann_root / "image_splits" / f"split.rc2.{version_split}.json"]
        heldout = None
        if self.shapesworld:
            flags = _heldout_by_key(captions_file, "pairid")
            heldout = np.array([flags[q.extra["pairid"]] for q in dataset.queries], dtype=bool)
        return [_Part("cirr", dataset, heldout)]

    def _load_circo(self) -> list[_Part]:
        root = self.data
        if self.shapesworld:
            dataset = read_circo(root, "val", images_dir=root / "images")
        else:
            dataset = read_circo(root, self._split("val"), images_dir=self.options.get("images_dir"))
        annotation = root / "annotations" / f"{dataset.split}.json"
        info_file = root / "COCO2017_unlabeled" / "annotations" / "image_info_unlabeled2017.json"
        self.annotation_files = [annotation] + ([info_file] if info_file.is_file() else [])
        heldout = None
        if self.shapesworld:
            flags = _heldout_by_key(annotation, "id")
            heldout = np.array([flags[q.extra["id"]] for q in dataset.queries], dtype=bool)
        return [_Part("circo", dataset, heldout)]

    def _load_fashioniq(self) -> list[_Part]:
        split = self._split("val")
        category = self.options.get("category")
        datasets = (
            {category: read_fashioniq(self.data, category, split)} if category else read_fashioniq_all(self.data, split)
        )
        self.annotation_files = [
            self.data / kind / f"{prefix}.{name}.{split}.json"
            for name in datasets for kind, prefix in (("captions", "cap"), ("image_splits", "split"))
        ]
        return [_Part(name, ds) for name, ds in datasets.items()]

    def prepare(self, cache: EmbeddingCache) -> None:
        for part in self.parts:
            ds = part.dataset
            part.gallery = cache.images(f"gallery-{part.name}", ds.gallery_paths)
            index = ds.name_to_index()
            outside = sorted({q.reference for q in ds.queries if q.reference not in index})
            outside_paths = _reference_paths(ds, outside)
            extra = cache.images(f"references-{part.name}", outside_paths) if outside else None
            rows = []
            for q in ds.queries:
                # Reference images outside the gallery (FashionIQ candidates may be) get rows after the gallery.
                rows.append(index[q.reference] if q.reference in index else len(index) + outside.index(q.reference))
            part.reference_index = np.array(rows, dtype=np.int64)
            part.references = part.gallery if extra is None else np.concatenate([part.gallery, extra])
            part.reference_paths = list(ds.gallery_paths) + outside_paths
            part.captions = cache.texts([q.caption for q in ds.queries])

    # --- scoring ----------------------------------------------------------------------------------------

    def evaluate(self, spec: MethodSpec, cache: EmbeddingCache) -> MethodResult:
        params = self.full_params(spec)
        result = MethodResult({}, self._recorded_params(spec))
        per_part: dict[str, dict[str, float]] = {}
        curve_ranks = []
        for part in self.parts:
            queries = self._compose_all(spec.name, params, part, cache, result.notes)
            scores = queries @ part.gallery.T
            metrics, ranks, group_metrics = self._score(part, scores)
            per_part[part.name] = metrics
            curve_ranks.append(ranks)
            result.groups.update(group_metrics)
        if self.protocol == "fashioniq":
            result.metrics = M.average_over_categories(per_part)
            result.metrics["avg"] = float(np.mean([result.metrics["r@10"], result.metrics["r@50"]]))
            if len(per_part) > 1:
                result.groups.update(per_part)
        else:
            result.metrics = per_part[self.parts[0].name]
        result.curves = {"recall": recall_curve(np.concatenate(curve_ranks))}
        return result

    def _compose_all(
        self, method: str, params: dict[str, Any], part: _Part, cache: EmbeddingCache, notes: dict[str, Any]
    ) -> np.ndarray:
        from pixquery.query.compose import ComposeInput, compose
        from pixquery.query.rewrite import Reference

        ds = part.dataset
        out = np.zeros((len(ds.queries), part.gallery.shape[1]), np.float32)
        for i, query in enumerate(ds.queries):
            row = int(part.reference_index[i])
            ref_vector = part.references[row]
            inp = ComposeInput(
                encoder=cache.encoder, encode_texts=cache.encode_texts, texts=[query.caption],
                text_vectors=part.captions[i : i + 1], image_vectors=ref_vector[None, :],
                references=[Reference(ref_vector, str(part.reference_paths[row]))],
            )
            out[i] = compose(method, inp, params).vector
        return l2_normalize(out)

    def _score(
        self, part: _Part, scores: np.ndarray
    ) -> tuple[dict[str, float], np.ndarray, dict[str, dict[str, float]]]:
        ds = part.dataset
        index = ds.name_to_index()
        targets = [[index[t] for t in q.targets] for q in ds.queries]
        references = [index.get(q.reference, -1) for q in ds.queries]
        if self.protocol == "cirr":
            ranked = M.rank_gallery(scores)
            subsets = [[index[m] for m in (q.subset or []) if m in index] for q in ds.queries]

            def measure(rows: np.ndarray) -> dict[str, float]:
                refs, tgts = [references[r] for r in rows], [targets[r][0] for r in rows]
                found = {**M.cirr_recall_at_k(ranked[rows], refs, tgts),
                         **M.cirr_recall_subset_at_k(ranked[rows], refs, tgts, [subsets[r] for r in rows])}
                # CIRR's leaderboard "Avg": the mean of Recall@5 and Recall_subset@1.
                found["avg"] = (found["r@5"] + found["subset_r@1"]) / 2
                return found

            ranks = M.first_relevant_rank(ranked, [[t[0]] for t in targets], excluded=[[r] for r in references])
        elif self.protocol == "circo":
            ranked = M.rank_gallery(scores, k=CURVE_MAX_K)

            def measure(rows: np.ndarray) -> dict[str, float]:
                return {**M.circo_map_at_k(ranked[rows], [targets[r] for r in rows]),
                        **M.circo_recall_at_k(ranked[rows], [targets[r][0] for r in rows])}

            ranks = M.first_relevant_rank(ranked, [[t[0]] for t in targets])
        else:
            ranked = M.rank_gallery(scores, k=CURVE_MAX_K)

            def measure(rows: np.ndarray) -> dict[str, float]:
                return M.fashioniq_recall(ranked[rows], [targets[r][0] for r in rows])

            ranks = M.first_relevant_rank(ranked, [[t[0]] for t in targets])
        overall = measure(np.arange(len(ds.queries)))
        groups = {name: measure(rows) for name, rows in _group_flags(part.heldout).items()}
        return overall, ranks, groups


def _reference_paths(dataset: ComposedDataset, names: list[str]) -> list[Path]:
    """Image files of reference images missing from the gallery: next to the gallery's, with its suffix."""
    folder, suffix = dataset.gallery_paths[0].parent, dataset.gallery_paths[0].suffix
    paths = []
    for name in names:
        candidates = [folder / f"{name}{s}" for s in dict.fromkeys((suffix, ".png", ".jpg", ".jpeg"))]
        found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            raise DatasetFormatError(folder, f"reference image {name!r} is neither in the gallery nor in this folder")
        paths.append(found)
    return paths


# ------------------------------------------------------------------------------------------------------
# Zero-shot classification
# ------------------------------------------------------------------------------------------------------


class ClassificationTask(Task):
    """Zero-shot classification of class folders: one prompt, or an ensemble of prompts averaged per class."""

    kind = "classification"
    default_methods = ("prompt", "ensemble")
    headline = ("acc@1", "acc@5", "mean_per_class_recall")
    own_methods = {"prompt": {"template": PROMPT_TEMPLATE}, "ensemble": {"templates": list(ENSEMBLE_TEMPLATES)}}

    def check_method(self, spec: MethodSpec) -> None:
        super().check_method(spec)
        params = self.full_params(spec)
        templates = [params["template"]] if spec.name == "prompt" else params["templates"]
        if isinstance(templates, str):
            templates = [templates]
        if not templates or any(not isinstance(t, str) or "{}" not in t for t in templates):
            raise EvalError(f"prompt templates must be text with '{{}}' where the class name goes, got {templates!r}")

    def load(self) -> None:
        self.dataset = read_imagefolder(self.data, self.options.get("classnames"))
        self.annotation_files = [
            f for f in (self.data / "classnames.txt", self.data / "classnames.json", self.data / "labels.json")
            if f.is_file()
        ]
        self.image_paths = list(self.dataset.image_paths)
        self.groups = _group_flags(self._heldout_flags())
        self.info = {"name": self.data.name, "images": len(self.image_paths), "classes": len(self.dataset.classnames)}

    def _heldout_flags(self) -> np.ndarray | None:
        """ShapesWorld class folders come with labels.json marking images that show held-out combinations."""
        labels = self.data / "labels.json"
        if not labels.is_file():
            return None
        flags = {r["file"]: bool(r["heldout"]) for r in json.loads(labels.read_text(encoding="utf-8"))}
        keys = [p.relative_to(self.data).as_posix() for p in self.image_paths]
        return np.array([flags.get(k, False) for k in keys], dtype=bool) if all(k in flags for k in keys) else None

    def prepare(self, cache: EmbeddingCache) -> None:
        self.image_vectors = cache.images("images", self.image_paths)

    def evaluate(self, spec: MethodSpec, cache: EmbeddingCache) -> MethodResult:
        params = self.full_params(spec)
        templates = [params["template"]] if spec.name == "prompt" else params["templates"]
        templates = [templates] if isinstance(templates, str) else list(templates)
        names = self.dataset.classnames
        texts = [t.format(c) for c in names for t in templates]
        vectors = cache.texts(texts).reshape(len(names), len(templates), -1)
        # CLIP's zero-shot classifier: the mean of each class's unit prompt vectors, normalised again.
        classifier = l2_normalize(vectors.mean(axis=1))
        logits = self.image_vectors @ classifier.T
        labels = self.dataset.labels

        def measure(rows: np.ndarray) -> dict[str, float]:
            found = M.topk_accuracy(logits[rows], labels[rows], (1, 5))
            found["mean_per_class_recall"] = M.mean_per_class_recall(logits[rows], labels[rows])
            return found

        result = MethodResult(measure(np.arange(len(labels))), params)
        ks = list(range(1, min(10, len(names)) + 1))
        accuracy = M.topk_accuracy(logits, labels, ks)
        result.curves = {"top-k accuracy": {"k": ks, "value": [accuracy[f"acc@{k}"] for k in ks]}}
        result.groups = {name: measure(rows) for name, rows in self.groups.items()}
        return result


# ------------------------------------------------------------------------------------------------------
# Instance retrieval (revisited Oxford / Paris)
# ------------------------------------------------------------------------------------------------------


class InstanceTask(Task):
    """Image-to-image retrieval on rOxford5k/rParis6k: queries cropped to their box, mAP per protocol."""

    kind = "instance"
    default_methods = ("cosine",)
    headline = ("easy_map", "medium_map", "hard_map")
    own_methods = {"cosine": {}, "aqe": {"m": 5, "alpha": 3.0}}

    def __init__(self, name: str, data: Path, options: dict[str, Any], revisited: str) -> None:
        super().__init__(name, data, options)
        self.revisited = revisited

    def load(self) -> None:
        self.dataset = read_revisited(self.data, self.revisited, images_dir=self.options.get("images_dir"))
        self.annotation_files = [self.data / f"gnd_{self.revisited}.pkl"]
        self.image_paths = list(self.dataset.gallery_paths) + list(self.dataset.query_paths)
        self.info = {"name": self.dataset.name, "database": len(self.dataset.gallery_paths),
                     "queries": len(self.dataset.query_paths)}

    def prepare(self, cache: EmbeddingCache) -> None:
        self.database = cache.images("database", self.dataset.gallery_paths)
        # The revisitop protocol crops each query to its box; crop_queries=False keeps whole query images.
        boxes = self.dataset.query_bbx if self.options.get("crop_queries", True) else None
        self.queries = cache.images("queries", self.dataset.query_paths, boxes)

    def evaluate(self, spec: MethodSpec, cache: EmbeddingCache) -> MethodResult:
        params = self.full_params(spec)
        queries = self.queries
        scores = queries @ self.database.T
        if spec.name == "aqe":
            from pixquery.query.rerank import alpha_qe

            m = max(1, min(int(params["m"]), len(self.database)))
            top = M.rank_gallery(scores, k=m)
            queries = np.stack([
                alpha_qe(q, self.database[t], scores[i, t], float(params["alpha"]))
                for i, (q, t) in enumerate(zip(queries, top, strict=True))
            ])
            scores = queries @ self.database.T
        ranked = M.rank_gallery(scores)
        result = MethodResult({}, params)
        for protocol in M.REVISITED_PROTOCOLS:
            found = M.mean_average_precision(ranked, self.dataset.gnd, protocol)
            result.metrics.update({f"{protocol}_{key}": value for key, value in found.items()})
        return result


# ------------------------------------------------------------------------------------------------------
# Registry
# ------------------------------------------------------------------------------------------------------

TASKS: dict[str, tuple[type[Task], dict[str, Any]]] = {
    "flickr30k": (RetrievalTask, {"karpathy": "flickr30k", "shapesworld": False}),
    "coco": (RetrievalTask, {"karpathy": "coco", "shapesworld": False}),
    "shapesworld-retrieval": (RetrievalTask, {"karpathy": "shapesworld", "shapesworld": True}),
    "cirr": (ComposedTask, {"protocol": "cirr", "shapesworld": False}),
    "circo": (ComposedTask, {"protocol": "circo", "shapesworld": False}),
    "fashioniq": (ComposedTask, {"protocol": "fashioniq", "shapesworld": False}),
    "shapesworld-cir": (ComposedTask, {"protocol": "cirr", "shapesworld": True}),
    "shapesworld-circo": (ComposedTask, {"protocol": "circo", "shapesworld": True}),
    "classification": (ClassificationTask, {}),
    "roxford": (InstanceTask, {"revisited": "roxford5k"}),
    "rparis": (InstanceTask, {"revisited": "rparis6k"}),
}
"""Task name -> (class, constructor arguments)."""


def make_task(name: str, data: Path, options: dict[str, Any]) -> Task:
    """Build the task `name` over the data folder `data`; raises `EvalError` for an unknown task."""
    if name not in TASKS:
        raise EvalError(f"unknown task {name!r}; tasks: {', '.join(TASKS)}")
    cls, kwargs = TASKS[name]
    return cls(name, Path(data), options, **kwargs)

