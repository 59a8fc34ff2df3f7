"""Queries: what the user asked (`spec.QuerySpec`), how images and texts compose (`compose`), and how results are
ranked, filtered and cut (`engine.run_query`). The faces use the plain data types of `spec` and `jsonspec`; the
engine itself is reached through the facade (`pixquery.api.Library.search`)."""
