"""Run a `QuerySpec` against an index: embed, compose, search (filters inside), post-process.

The flow of one query:

1. filters -> SQL over the catalog -> allowed ids, handed *into* the vector search;
2. texts (long ones split and combined) and images -> vectors -> a composition method -> one query vector;
   negatives in "subtract" mode move that vector;
3. one `VectorStore.search` for k results, or for a candidate pool when a re-ranker needs one
   (α-QE searches twice);
4. on the pool, optionally: database-side augmentation, penalty negatives, hubness reduction (QB-Norm, CSLS);
   then the calibrated relevance cut-off, MMR diversity and the date sort.

A plain text query costs the text encode and one matrix product; everything that needs more (a vocabulary, a
query bank, collection statistics) is computed once and cached (`pixquery.query.textbank`,
`pixquery.query.collection`). Queries that arrive together (a server under load) run as one batch with
`run_queries`: one text-encoder call for all their texts and one `VectorStore.search` per filter for all their
vectors, then each query's own steps as above.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from PIL import Image

from pixquery.errors import NotFoundError, QueryError
from pixquery.models.base import Encoder, l2_normalize
from pixquery.query import negatives as neg
from pixquery.query import rerank as rr
from pixquery.query.collection import calibration_sample, store_cached
from pixquery.query.compose import ComposeInput, Composition, compose
from pixquery.query.cutoff import (
    NULL_TEMPLATE,
    NULL_WORDS,
    CutoffRule,
    WordNull,
    describe,
    match_mask,
    null_min_z,
    parse_cutoff,
)
from pixquery.query.filters import compile_filters
from pixquery.query.inversion import DEFAULT_TEMPLATE
from pixquery.query.longtext import encode_texts
from pixquery.query.rewrite import Captioner, Reference, Rewriter
from pixquery.query.spec import QuerySpec, WeightedImage, WeightedText
from pixquery.query.textbank import distinguishable, embed_texts, embed_words, encoder_identity, load_words
from pixquery.store.base import VectorStore
from pixquery.store.catalog import Catalog, FileRow

MIN_POOL = 100
POOL_FACTOR = 4
BANK_SIZE = 1024
"""Query-bank size for collection statistics: enough for stable per-item statistics, small enough to stay fast."""


@dataclass
class Hit:
    """One search result."""

    id: int
    path: str
    score: float
    row: FileRow

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: id, path, score and the photo's metadata."""
        return {"id": self.id, "path": self.path, "score": round(float(self.score), 6), **self.row.metadata()}


@dataclass
class SearchContext:
    """What a query runs against, and the optional resources some methods use.

    Attributes:
        encoder, store, catalog: the index.
        captioner, rewriter: plugins for the `rewrite` and `pdv` methods (see `pixquery.query.rewrite`).
        vocabulary: words for the inversion method and the default query bank (list or file; None = shipped).
        query_bank: texts of typical queries for hubness reduction and the "bank" cut-off (None = the
            vocabulary in the template "a photo of a {}").
        read_indexed: decodes an indexed image by catalog id only while it is still the file indexed (the facade's
            `Library.read_image`); the pixels of a catalog reference come from it, never from its bare path.
    """

    encoder: Encoder
    store: VectorStore
    catalog: Catalog
    captioner: Captioner | None = None
    rewriter: Rewriter | None = None
    vocabulary: list[str] | str | None = None
    query_bank: list[str] | None = None
    read_indexed: Callable[[int], Image.Image] | None = None
    prepared: PreparedBatch | None = None
    """What `run_queries` computed once for a whole batch (None for a query run alone)."""


@dataclass
class PreparedBatch:
    """Text vectors and store searches computed once for a batch of queries, looked up by each query's own run.

    A lookup that misses (a text no batch call embedded, a search the batch did not run) is computed as for a
    query alone, so a batch can only save work, never change what a query does.
    """

    texts: dict[tuple[tuple[str, ...], bool], np.ndarray] = field(default_factory=dict)
    """(a query's texts, long_text) -> their unit vectors."""
    searches: dict[tuple[bytes, int], tuple[np.ndarray | None, np.ndarray, np.ndarray]] = field(default_factory=dict)
    """(query vector bytes, k) -> (allowed ids, scores, ids) of one store search."""

    def embedded(self, texts: list[str], long_text: bool) -> np.ndarray | None:
        return self.texts.get((tuple(texts), long_text))

    def searched(self, vector: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, ...] | None:
        ran = self.searches.get((vector.tobytes(), k))
        if ran is None:
            return None
        ran_allowed, scores, ids = ran
        same_filter = ran_allowed is allowed or (
            ran_allowed is not None and allowed is not None and np.array_equal(ran_allowed, allowed)
        )
        return (scores, ids) if same_filter else None


@dataclass
class QueryOutcome:
    """Hits plus what the engine decided on the way (method run, words or captions found, cut-off)."""

    hits: list[Hit]
    method: str
    vector: np.ndarray
    notes: dict[str, Any] = field(default_factory=dict)
    matches: int | None = None
    """With a cut-off: how many candidates were judged matches (before truncation to k)."""


# --- embedding ---------------------------------------------------------------------------------------------------


def embed_images(items: list[WeightedImage], ctx: SearchContext) -> np.ndarray:
    """Vectors of query images: stored vectors for catalog ids, freshly embedded files and uploads otherwise."""
    vectors = []
    for item in items:
        if item.catalog_id is not None:
            try:
                vectors.append(ctx.store.get(np.array([item.catalog_id]))[0])
            except KeyError:
                raise NotFoundError(f"no indexed image has id {item.catalog_id}") from None
            continue
        from pixquery.media.decode import ImageDecodeError, open_image  # only here: a text query decodes nothing

        try:
            image = item.image if item.image is not None else open_image(item.path)
        except ImageDecodeError as exc:
            raise QueryError(f"cannot read query image {item.path}: {exc}") from None
        vectors.append(ctx.encoder.encode_images([image])[0])
    if not vectors:
        return np.zeros((0, ctx.encoder.dim), np.float32)
    return np.array(vectors, np.float32).reshape(len(items), -1)


def _embed_texts(ctx: SearchContext, texts: list[str], long_text: bool = True) -> np.ndarray:
    """Unit vectors of texts (long ones split and combined), from the batch's table when a batch embedded them."""
    if ctx.prepared is not None:
        vectors = ctx.prepared.embedded(texts, long_text)
        if vectors is not None:
            return vectors
    return encode_texts(ctx.encoder, texts, long_text)


def _references(items: list[WeightedImage], vectors: np.ndarray, ctx: SearchContext) -> list[Reference]:
    refs = []
    for item, vector in zip(items, vectors, strict=True):
        if item.catalog_id is None:
            refs.append(Reference(vector, item.path, item.image))
            continue
        row = ctx.catalog.get(item.catalog_id)
        # An indexed image is read only through the context's verified reader: a file swapped since indexing
        # (a link to something outside the roots) must not reach a captioner.
        reader = ctx.read_indexed
        opener = (lambda i=item.catalog_id, read=reader: read(i)) if reader is not None else None
        refs.append(Reference(vector, row.path if row is not None else None, None, opener))
    return refs


def _weights(items: list[WeightedText] | list[WeightedImage]) -> np.ndarray:
    return np.array([float(i.weight) for i in items], np.float32)


def compose_query(spec: QuerySpec, ctx: SearchContext) -> Composition:
    """The composed query vector of the spec's positive parts (negatives not applied)."""
    long_text = bool(spec.params.get("long_text", True))

    def encode(texts: list[str]) -> np.ndarray:
        return _embed_texts(ctx, texts, long_text)

    texts = [t.text for t in spec.texts]
    image_vectors = embed_images(spec.images, ctx)
    inp = ComposeInput(
        encoder=ctx.encoder,
        encode_texts=encode,
        texts=texts,
        text_vectors=encode(texts) if texts else None,
        text_weights=_weights(spec.texts),
        image_vectors=image_vectors if len(image_vectors) else None,
        image_weights=_weights(spec.images),
        references=_references(spec.images, image_vectors, ctx),
        captioner=ctx.captioner,
        rewriter=ctx.rewriter,
        vocabulary=ctx.vocabulary,
    )
    return compose(spec.method, inp, spec.params)


def _negatives(spec: QuerySpec, ctx: SearchContext) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors of the negatives and their λ (negative_scale × weight)."""
    parts = []
    if spec.negative_texts:
        parts.append(_embed_texts(ctx, [t.text for t in spec.negative_texts]))
    if spec.negative_images:
        parts.append(embed_images(spec.negative_images, ctx))
    if not parts:
        return np.zeros((0, ctx.encoder.dim), np.float32), np.zeros(0, np.float32)
    scale = float(spec.params.get("negative_scale", neg.DEFAULT_SCALE[spec.negative_mode]))
    weights = np.concatenate([_weights(spec.negative_texts), _weights(spec.negative_images)])
    return np.concatenate(parts).astype(np.float32), scale * weights


def query_vector(spec: QuerySpec, ctx: SearchContext) -> np.ndarray:
    """The final query vector: the composition, moved away from the negatives in "subtract" mode."""
    vector = compose_query(spec, ctx).vector
    if spec.negative_mode == "subtract":
        negatives, lambdas = _negatives(spec, ctx)
        vector = neg.subtract(vector, negatives, lambdas)
    return vector


# --- collection statistics ---------------------------------------------------------------------------------------


def _bank(ctx: SearchContext, images_only: bool) -> tuple[np.ndarray, np.ndarray | None, str]:
    """The query bank: stored images for image-only queries (self-matches masked), texts otherwise."""
    if images_only:
        ids, vectors = calibration_sample(ctx.store, BANK_SIZE, seed=1)
        return vectors, ids, "images"
    if ctx.query_bank:
        texts = list(ctx.query_bank)
        if len(texts) > BANK_SIZE:
            texts = [texts[i] for i in np.linspace(0, len(texts) - 1, BANK_SIZE).astype(int)]
        return embed_texts(ctx.encoder, texts, kind="bank"), None, f"bank:{hash(tuple(texts))}"
    words = load_words(ctx.vocabulary, default="inversion")
    vectors = embed_words(ctx.encoder, words, DEFAULT_TEMPLATE)
    if len(vectors) > BANK_SIZE:
        vectors = vectors[np.linspace(0, len(vectors) - 1, BANK_SIZE).astype(int)]
    return vectors, None, f"vocab:{hash(tuple(words))}"


def bank_stats(ctx: SearchContext, images_only: bool, options: dict[str, Any]) -> rr.BankStats:
    """Per-item query-bank statistics of the whole collection, cached per store content and bank."""
    beta, k = rr.option(options, "beta"), int(rr.option(options, "csls_k"))
    bank, bank_ids, bank_key = _bank(ctx, images_only)

    def build() -> rr.BankStats:
        ids, vectors = ctx.store.all_vectors()
        return rr.bank_statistics(ids, vectors, bank, beta, k, bank_ids)

    return store_cached(ctx.store, ("bank", bank_key, beta, k), build)


# --- the query -----------------------------------------------------------------------------------------------------


_allowed_cache: weakref.WeakKeyDictionary[Catalog, dict[Any, tuple[Any, np.ndarray]]] = weakref.WeakKeyDictionary()


def _allowed_ids(spec: QuerySpec, ctx: SearchContext) -> np.ndarray | None:
    """Ids the filters allow; repeated filters (a user paging or refining the text) reuse the last answer
    while the catalog is unchanged, since reading many ids from SQLite costs more than the search."""
    where = compile_filters(spec.filters)
    if where.empty:
        return None
    version = ctx.catalog.data_version()
    slot = _allowed_cache.setdefault(ctx.catalog, {})
    hit = slot.get(where)
    if hit is not None and hit[0] == version:
        return hit[1]
    allowed = np.asarray(ctx.catalog.select_ids(where), np.int64)
    if len(slot) > 32:
        slot.clear()
    slot[where] = (version, allowed)
    return allowed


def _search(ctx: SearchContext, vector: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, ...]:
    ran = ctx.prepared.searched(vector, k, allowed) if ctx.prepared is not None else None
    scores, ids = ran if ran is not None else ctx.store.search(vector[None, :], k, allowed_ids=allowed)
    keep = ids[0] >= 0
    return scores[0][keep].astype(np.float32), ids[0][keep]


def _pool_size(spec: QuerySpec, needs_pool: bool) -> int:
    if not needs_pool:
        return spec.k
    return int(spec.rerank.pool or max(POOL_FACTOR * spec.k, MIN_POOL))


def run_query(spec: QuerySpec, ctx: SearchContext) -> QueryOutcome:
    """Run a query; returns the hits (best first, or by date) and what the engine decided on the way."""
    spec.validate()
    rule = parse_cutoff(spec.cutoff)
    allowed = _allowed_ids(spec, ctx)
    composition = compose_query(spec, ctx)
    notes = dict(composition.notes)
    method = notes.pop("method", spec.method)
    q = composition.vector
    negatives, lambdas = _negatives(spec, ctx)
    if spec.negative_mode == "subtract":
        q = neg.subtract(q, negatives, lambdas)
    if allowed is not None and len(allowed) == 0:
        return QueryOutcome([], method, q, notes, 0 if rule else None)

    options = spec.rerank.options
    penalise = spec.negative_mode == "penalty" and len(negatives) > 0
    needs_pool = spec.rerank.active or penalise
    pool = _pool_size(spec, needs_pool)

    if spec.rerank.expansion == "aqe":
        m = int(rr.option(options, "aqe_m"))
        top_scores, top_ids = _search(ctx, q, m, allowed)
        if len(top_ids):
            q = rr.alpha_qe(q, ctx.store.get(top_ids), top_scores, rr.option(options, "aqe_alpha"))
    scores, ids = _search(ctx, q, pool, allowed)
    vectors = ctx.store.get(ids) if (needs_pool and len(ids)) else None
    scores, calibrated = _rescore(spec, ctx, q, ids, scores, vectors, negatives, lambdas)

    order = np.lexsort((ids, -scores))
    scores, ids, calibrated = scores[order], ids[order], calibrated[order]
    vectors = vectors[order] if vectors is not None else None
    matches = None
    if rule is not None and len(ids):
        keep = _cutoff_mask(rule, spec, ctx, q, ids, calibrated)
        matches = int(keep.sum())
        scores, ids = scores[keep], ids[keep]
        vectors = vectors[keep] if vectors is not None else None
        notes["cutoff"] = {"rule": rule.rule, "value": rule.value}
    if spec.rerank.diversity > 0 and vectors is not None and len(ids):
        picked = rr.mmr(scores, vectors, spec.k, spec.rerank.diversity)
        scores, ids = scores[picked], ids[picked]
    scores, ids = scores[: spec.k], ids[: spec.k]
    hits = hits_from(scores, ids, ctx.catalog)
    if spec.sort == "date":
        hits = sort_by_date(hits)
    return QueryOutcome(hits, method, q, notes, matches)


def _rescore(
    spec: QuerySpec,
    ctx: SearchContext,
    q: np.ndarray,
    ids: np.ndarray,
    scores: np.ndarray,
    vectors: np.ndarray | None,
    negatives: np.ndarray,
    lambdas: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Pool scores after the optional steps, and the calibrated scores the cut-off reads.

    The cut-off reads cosine-scale scores (after negative penalties, before DBA and hubness reduction), since its
    calibration compares them with the query's cosine scores over the collection.
    """
    options = spec.rerank.options
    if spec.negative_mode == "penalty" and len(negatives) and vectors is not None:
        taus, scales = _penalty_calibration(spec, ctx, q, negatives)
        scores = neg.penalty(scores, vectors, negatives, lambdas, taus, scales)
    calibrated = scores.copy()
    if spec.rerank.expansion == "dba" and vectors is not None:
        scores = _dba_scores(ctx, q, vectors, options)
    if spec.rerank.hubness and len(ids):
        stats = bank_stats(ctx, images_only=not spec.texts, options=options)
        if spec.rerank.hubness == "qbnorm":
            scores = rr.qbnorm(scores, ids, stats)
        else:
            scores = rr.csls(scores, ids, stats, int(rr.option(options, "csls_k")))
    return scores, calibrated


def execute(spec: QuerySpec, ctx: SearchContext) -> list[Hit]:
    """Run a query and return hits, best first (or by date taken with sort="date")."""
    return run_query(spec, ctx).hits


# --- several queries at once ---------------------------------------------------------------------------------------


def run_queries(specs: Sequence[QuerySpec], ctx: SearchContext) -> list[QueryOutcome | Exception]:
    """Run several queries as one batch: each entry is that query's outcome, or the error it alone raised.

    All their distinct texts (positive and negative) are embedded in one text-encoder call (one per text for an
    int8 tower, whose results would otherwise depend on the batch); the text-only queries whose first stage is a
    single search (no query expansion) share one `VectorStore.search` per filter and k, their vectors stacked into
    one matrix product (or one ANN call). Then every query runs its own steps through `run_query` (filters,
    negatives, re-ranking, cut-off, sort), which finds its texts and its search done, so an outcome is the one the
    query gets alone, up to float rounding of batched arithmetic.
    """
    prepared = PreparedBatch()
    batch_ctx = replace(ctx, prepared=prepared)
    valid = [spec for spec in specs if _valid(spec)]
    _embed_batch(valid, batch_ctx)
    _search_batch(valid, batch_ctx)
    outcomes: list[QueryOutcome | Exception] = []
    for spec in specs:
        try:
            outcomes.append(run_query(spec, batch_ctx))
        except Exception as exc:  # one query's error (bad filter, missing id, a bug) is that query's answer alone
            outcomes.append(exc)
    return outcomes


def _valid(spec: QuerySpec) -> bool:
    try:
        spec.validate()
    except QueryError:
        return False  # run_query raises it again, for this query alone
    return True


def _embed_batch(specs: Sequence[QuerySpec], ctx: SearchContext) -> None:
    """Embed the texts of the whole batch into `ctx.prepared`: every distinct text in one encoder call per long-text
    setting, or, for an int8 tower, each query's list of texts in the call it would make alone."""
    assert ctx.prepared is not None
    lists: dict[tuple[tuple[str, ...], bool], None] = {}  # what each query will ask for, in order, once
    for spec in specs:
        if spec.texts:
            lists[(tuple(t.text for t in spec.texts), bool(spec.params.get("long_text", True)))] = None
        if spec.negative_texts:
            lists[(tuple(t.text for t in spec.negative_texts), True)] = None
        with contextlib.suppress(QueryError):  # a bad cut-off is that query's own error, raised when it runs
            if _describes(spec, parse_cutoff(spec.cutoff)):
                lists[(tuple(describe(t.text) for t in spec.texts), True)] = None
    # An int8 tower quantises its activations over its whole input (dynamic quantisation): a text embedded beside
    # others comes out slightly different from the same text embedded with other company, so a query's answer would
    # depend on who else was asking. There each query's texts go in the call that query makes alone.
    if ctx.encoder.precision == "int8":
        calls = [(list(texts), long_text) for texts, long_text in lists]
    else:
        distinct: dict[bool, dict[str, None]] = {}
        for texts, long_text in lists:
            distinct.setdefault(long_text, {}).update(dict.fromkeys(texts))
        calls = [(list(texts), long_text) for long_text, texts in distinct.items()]
    rows: dict[tuple[str, bool], np.ndarray] = {}
    for texts, long_text in calls:
        try:
            vectors = encode_texts(ctx.encoder, texts, long_text)
        except Exception:  # each query embeds its own texts again and gets its own error
            continue
        if ctx.encoder.precision == "int8":
            ctx.prepared.texts[(tuple(texts), long_text)] = vectors
        else:
            rows.update(((text, long_text), row) for text, row in zip(texts, vectors, strict=True))
    for texts, long_text in lists:
        if all((text, long_text) in rows for text in texts):
            ctx.prepared.texts[(texts, long_text)] = np.stack([rows[(text, long_text)] for text in texts])


def _search_batch(specs: Sequence[QuerySpec], ctx: SearchContext) -> None:
    """Run the first-stage search of every text-only query in one store search per (filter, k)."""
    assert ctx.prepared is not None
    groups: dict[tuple[Any, int], tuple[np.ndarray | None, list[np.ndarray]]] = {}
    for spec in specs:
        if spec.images or spec.negative_images or spec.rerank.expansion == "aqe":
            continue  # image queries embed files; α-QE searches twice with different vectors
        try:
            allowed = _allowed_ids(spec, ctx)
            vector = query_vector(spec, ctx)
        except Exception:  # run_query raises it again, for this query alone
            continue
        if allowed is not None and len(allowed) == 0:
            continue
        penalise = spec.negative_mode == "penalty" and bool(spec.negative_texts)
        k = _pool_size(spec, spec.rerank.active or penalise)
        key = (compile_filters(spec.filters), k)
        groups.setdefault(key, (allowed, []))[1].append(vector)
    for (_, k), (allowed, vectors) in groups.items():
        unique = list({v.tobytes(): v for v in vectors}.values())
        scores, ids = ctx.store.search(np.stack(unique), k, allowed_ids=allowed)
        for row, vector in enumerate(unique):
            ctx.prepared.searches[(vector.tobytes(), k)] = (allowed, scores[row : row + 1], ids[row : row + 1])


def _penalty_calibration(
    spec: QuerySpec, ctx: SearchContext, q: np.ndarray, negatives: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(τ, c) of each negative: fixed with `negative_tau`, else calibrated on the collection sample."""
    if "negative_tau" in spec.params:
        return np.full(len(negatives), float(spec.params["negative_tau"]), np.float32), np.ones(len(negatives))
    _, sample = calibration_sample(ctx.store)
    return neg.calibrate(q, negatives, sample, float(spec.params.get("negative_z", neg.TAU_Z)))


def _dba_scores(ctx: SearchContext, q: np.ndarray, vectors: np.ndarray, options: dict[str, Any]) -> np.ndarray:
    """Scores of the pool after database-side augmentation of each candidate with its stored neighbours."""
    m = int(rr.option(options, "dba_m"))
    nb_scores, nb_ids = ctx.store.search(vectors, m)
    flat = nb_ids.reshape(-1)
    unique = np.unique(flat[flat >= 0])
    lookup = dict(zip(unique.tolist(), ctx.store.get(unique), strict=True))
    dim = vectors.shape[1]
    nb_vectors = np.array([[lookup.get(int(i), np.zeros(dim, np.float32)) for i in row] for row in nb_ids], np.float32)
    nb_scores = np.where(nb_ids >= 0, nb_scores, 0.0)
    return (rr.dba(nb_vectors, nb_scores, rr.option(options, "aqe_alpha")) @ q).astype(np.float32)


def _cutoff_mask(
    rule: CutoffRule, spec: QuerySpec, ctx: SearchContext, q: np.ndarray, ids: np.ndarray, scores: np.ndarray
) -> np.ndarray:
    if _describes(spec, rule):
        return _described_mask(rule, spec, ctx, q, ids, scores)
    _, sample = calibration_sample(ctx.store)
    sample_scores = sample @ q
    if rule.needs_null:
        best_z = word_null(ctx).best_z(ctx.store.get(ids), query=q)
        return match_mask(rule, scores, sample_scores, item_best_z=best_z, min_z=null_min_z(ctx.store.count()))
    if not rule.needs_bank:
        return match_mask(rule, scores, sample_scores)
    stats = bank_stats(ctx, images_only=not spec.texts, options=spec.rerank.options)
    rows = stats.rows(ids)
    return match_mask(rule, scores, sample_scores, stats.mean[rows], stats.std[rows])


def _describes(spec: QuerySpec, rule: CutoffRule | None) -> bool:
    """Whether `rule` is the null rule of a text query (which embeds the query as a description)."""
    return rule is not None and rule.needs_null and bool(spec.texts) and not spec.images


def _described_mask(
    rule: CutoffRule, spec: QuerySpec, ctx: SearchContext, q: np.ndarray, ids: np.ndarray, scores: np.ndarray
) -> np.ndarray:
    """The null rule of a text query: each result's score for the query in the bank's words ("a photo of a cat.")
    against its best rival word's. A negative's penalty (the difference between `scores` and the plain cosines)
    counts against the described query too."""
    described_q = l2_normalize(_weights(spec.texts) @ _embed_texts(ctx, [describe(t.text) for t in spec.texts]))
    vectors = ctx.store.get(ids)
    penalty = scores - vectors @ q
    rival = word_null(ctx).best_rival(vectors, [q, described_q])
    return match_mask(rule, scores, np.zeros(0, np.float32), described=vectors @ described_q + penalty,
                      item_rival=rival)


def word_null(ctx: SearchContext) -> WordNull:
    """The null cut-off's bank: the shipped common words and the model's own concept names (`known_concepts`),
    embedded once per model (cached on disk), with their score statistics over the collection sample (cached per
    store content; only queries without text use them). Words the model cannot tell apart are left out (a
    closed-vocabulary model gives all unknown words one vector)."""

    def build() -> WordNull:
        words = null_words(ctx.encoder)
        vectors = embed_words(ctx.encoder, words, NULL_TEMPLATE)
        keep = distinguishable(vectors)
        _, sample = calibration_sample(ctx.store)
        return WordNull.build(vectors[keep], sample, embed_words(ctx.encoder, words, "{}")[keep])

    return store_cached(ctx.store, ("null", encoder_identity(ctx.encoder)), build)


def null_words(encoder: Encoder) -> list[str]:
    """The null's descriptions: `NULL_WORDS` and the encoder's `known_concepts`, each once (case ignored)."""
    words: dict[str, str] = {}
    for word in [*load_words(NULL_WORDS), *encoder.known_concepts]:
        words.setdefault(word.strip().lower(), word.strip())
    return [word for key, word in words.items() if key]


def sort_by_date(hits: list[Hit]) -> list[Hit]:
    """Hits ordered by date taken, oldest first; hits without a date keep their order after the dated ones."""
    dated = sorted((h for h in hits if h.row.taken_at), key=lambda h: h.row.taken_at)
    return dated + [h for h in hits if not h.row.taken_at]


def hits_from(scores: np.ndarray, ids: np.ndarray, catalog: Catalog) -> list[Hit]:
    """Join ranked ids with their catalog rows (dropping padding)."""
    valid = [(int(i), float(s)) for i, s in zip(ids, scores, strict=True) if i >= 0]
    rows = catalog.get_many(i for i, _ in valid)
    return [Hit(i, rows[i].path, s, rows[i]) for i, s in valid if i in rows]
