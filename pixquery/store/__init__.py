"""Remember what is indexed (the catalog) and find nearest vectors (vector stores).

Store kinds (the `store` of an index's config.json):
  flat                    exact search over the raw vectors (the default)
  faiss-hnsw              raw vectors + a faiss HNSW graph: fast, holds the vectors in memory
  faiss-ivfpq             raw vectors + faiss IVF-PQ codes re-ranked from disk: lean on memory
  auto                    flat, HNSW or IVF-PQ, chosen by collection size and a memory budget
  milvus:PATH_OR_URL      raw vectors + a Milvus collection: embedded Milvus Lite for a path (relative paths are
                          relative to the index directory), a Milvus server or cluster for http(s)://HOST:PORT

Every kind keeps the raw vectors in the flat store's files, so an index can switch kinds
(`Library.set_store`) without embedding anything again.
"""
