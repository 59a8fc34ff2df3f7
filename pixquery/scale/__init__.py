"""Scaling out: embedding on a Ray cluster (`pixquery.scale.ray_index`). Approximate and Milvus stores live in
`pixquery.store`; docs/scale.md explains how the pieces fit for a collection larger than one machine."""
