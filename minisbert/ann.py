"""Approximate nearest neighbours over an index, through usearch (optional extra `ann`).

    from minisbert import ann
    from minisbert.index import read_index
    index = read_index("my-index")
    graph = ann.build(index)          # an HNSW graph of the index's vectors, saved beside them
    hits = graph.search(model.encode(["a question"]), top_k=10)   # as semantic_search returns

Exact search (util.semantic_search) reads every vector for every query batch: a single
query over 10 million 384-d vectors reads 15 GB. An HNSW graph (Malkov & Yashunin, 2016) links
each vector to a few near ones and answers a query by walking the graph from an entry point,
touching a few thousand vectors instead; the price is that it may miss a true neighbour.
docs/corpora.md measures how often (recall@10) against exact search, and how much faster.

The graph is built from the index's vectors a block at a time (`Index.blocks`) and saved in
the index folder as ann.usearch, with ann.json recording how many rows it covers, so a graph
built for another version of the index is refused.

Left out: quantized vectors (usearch can store f16 or i8: smaller, slightly less exact), and
updating a graph in place.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .errors import MissingDependencyError
from .index import Index, SearchIndexError

FILE = "ann.usearch"
CONNECTIVITY = 16  # graph edges per vector (usearch's M): more, better recall, more memory
EXPANSION_ADD = 128  # candidates kept while inserting: more, a better graph, slower build
# Candidates kept while searching: more, better recall, slower queries. 128: recall@10 0.967
# on 100,000 all-MiniLM-L6-v2 vectors, where usearch's default of 64 gave 0.938 (docs/corpora.md).
EXPANSION_SEARCH = 128


def _usearch():
    try:
        from usearch.index import Index as UsearchIndex
    except ImportError:
        raise MissingDependencyError(
            "approximate search needs usearch: pip install 'minisbert[ann]'") from None
    return UsearchIndex


class AnnIndex:
    """An HNSW graph over the rows of an index; `search` returns what semantic_search does."""

    def __init__(self, graph, count: int):
        self.graph = graph
        self.count = count

    def search(self, query_embeddings, top_k: int = 10,
               expansion_search: int | None = None) -> list[list[dict]]:
        queries = np.atleast_2d(np.asarray(query_embeddings, dtype=np.float32))  # [nq, d]
        if expansion_search is not None:
            self.graph.expansion_search = expansion_search
        found = self.graph.search(queries, min(top_k, self.count))
        keys = np.atleast_2d(found.keys)  # [nq, k] row numbers
        scores = 1.0 - np.atleast_2d(found.distances)  # usearch's "cos" is 1 - cosine
        # [nq] neighbours found (a batch of one comes back as a single result, without counts)
        counts = np.atleast_1d(getattr(found, "counts", len(found.keys)))
        return [[{"corpus_id": int(i), "score": float(s)} for i, s in zip(k[:n], sc[:n])]
                for k, sc, n in zip(keys, scores, counts)]


def build(index: Index, save: bool = True, connectivity: int = CONNECTIVITY,
          expansion_add: int = EXPANSION_ADD, expansion_search: int = EXPANSION_SEARCH,
          block_rows: int = 65_536) -> AnnIndex:
    """An HNSW graph of every row of `index` (cosine similarity), saved in its folder unless
    save=False. Building uses every core."""
    graph = _usearch()(ndim=index.dim, metric="cos", dtype="f32", connectivity=connectivity,
                       expansion_add=expansion_add, expansion_search=expansion_search)
    for start, block in index.blocks(block_rows):
        graph.add(np.arange(start, start + len(block)), np.asarray(block))
    if save:
        graph.save(str(index.path / FILE))
        settings = {"count": index.count, "fingerprint": index.model["fingerprint"],
                    "connectivity": connectivity, "expansion_add": expansion_add,
                    "expansion_search": expansion_search}
        (index.path / "ann.json").write_text(json.dumps(settings, indent=2) + "\n")
    return AnnIndex(graph, index.count)


def load(index: Index, view: bool = True) -> AnnIndex:
    """The graph saved by `build` in the index's folder; view=True memory-maps it."""
    UsearchIndex = _usearch()
    path = Path(index.path) / FILE
    try:
        settings = json.loads((index.path / "ann.json").read_text())
    except (OSError, ValueError):
        raise SearchIndexError(f"{path.parent} has no approximate index; build one with "
                               "minisbert.ann.build(read_index(FOLDER)).") from None
    if settings["count"] != index.count or settings["fingerprint"] != index.model["fingerprint"]:
        raise SearchIndexError(f"{path} was built for another version of the index "
                               f"({settings['count']} rows); build it again.")
    graph = UsearchIndex.restore(str(path), view=view)
    graph.expansion_search = settings["expansion_search"]
    return AnnIndex(graph, index.count)
