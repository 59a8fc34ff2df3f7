"""Queries: what the user asked (`QuerySpec`), how images and texts compose, and how results are ranked and cut.

Public entry points: `QuerySpec` (+ `WeightedText`, `WeightedImage`, `Rerank`), `SearchContext`, `execute` /
`run_query`, the composition registry `METHODS`, the JSON form (`pixquery.query.jsonspec`), and the plugin
protocols `Captioner` / `Rewriter` for caption-rewrite composition.
"""

from pixquery.query.compose import AUTO_METHOD, METHODS
from pixquery.query.engine import Hit, QueryOutcome, SearchContext, execute, query_vector, run_query
from pixquery.query.rewrite import Captioner, Reference, Rewriter, register_captioner, register_rewriter
from pixquery.query.spec import QuerySpec, Rerank, WeightedImage, WeightedText

__all__ = [
    "AUTO_METHOD",
    "METHODS",
    "Captioner",
    "Hit",
    "QueryOutcome",
    "QuerySpec",
    "Reference",
    "Rerank",
    "Rewriter",
    "SearchContext",
    "WeightedImage",
    "WeightedText",
    "execute",
    "query_vector",
    "register_captioner",
    "register_rewriter",
    "run_query",
]
