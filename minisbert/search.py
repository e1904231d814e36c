"""Exact nearest-neighbour search over sentence vectors, as sentence-transformers' `util` does it.

    hits = semantic_search(model.encode(questions), model.encode(texts), top_k=3)
    hits[0]  # [{"corpus_id": 7, "score": 0.69}, {"corpus_id": 2, "score": 0.41}, ...]

`semantic_search` compares every query with every corpus vector (brute force, exact), but a
block at a time: it walks the corpus in chunks of `corpus_chunk_size` rows and the queries in
chunks of `query_chunk_size`, keeping only a running top-k per query. So a corpus of a million
768-d vectors, even memory-mapped from disk, never needs a queries × corpus score matrix, nor
a normalized copy of itself, in memory.

Left out: approximate indexes (HNSW, IVF, quantization) here; for a few million vectors exact
search in NumPy takes seconds, and its answers need no caveats. ann.py builds one with an
optional library, for when it does not.
"""

from __future__ import annotations

import numpy as np


def _as_2d(x) -> np.ndarray:
    """A [d] vector or [n, d] matrix (NumPy, list, or CPU torch tensor) as [n, d] floats, without
    copying a float32 or float64 array (a memory-mapped corpus stays on disk).

    Types follow sentence-transformers: nested lists of numbers become float32 (torch's default),
    arrays keep float64, and narrower floats (float16) or integers are widened to float32."""
    from_numbers = isinstance(x, (list, tuple)) and not (x and all(hasattr(e, "dtype") for e in x))
    x = np.asarray(x)
    if from_numbers or not np.issubdtype(x.dtype, np.floating) or x.dtype.itemsize < 4:
        x = x.astype(np.float32)
    if x.ndim == 1:
        x = x[None, :]  # [d] -> [1, d]
    if x.ndim != 2:
        raise ValueError(f"expected a vector [d] or a matrix [n, d] of embeddings, "
                         f"got shape {x.shape}")
    return x


def _row_norms(x: np.ndarray) -> np.ndarray:
    """‖row‖ for each row, floored at 1e-12 as torch's F.normalize does: [n, d] -> [n].
    einsum avoids np.linalg.norm's temporary x*x, which is as large as x."""
    return np.maximum(np.sqrt(np.einsum("ij,ij->i", x, x)), 1e-12)


def cos_sim(a, b) -> np.ndarray:
    """Cosine similarity of every row of a with every row of b: [n, d], [m, d] -> [n, m].

    A 1-D input counts as one row, as in sentence-transformers. Computed as
    (a/‖a‖) · bᵀ / ‖b‖ rather than normalizing b first, so b (often the big corpus) is
    never copied; the two orders agree to float32 rounding.
    """
    a, b = _as_2d(a), _as_2d(b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"cannot compare {a.shape[1]}-d vectors with {b.shape[1]}-d vectors; "
                         "were they made by the same model?")
    dtype = np.result_type(a.dtype, b.dtype, np.float32)  # float32, or float64 if given float64
    a_unit = (a / _row_norms(a)[:, None]).astype(dtype, copy=False)  # [n, d]
    return (a_unit @ b.T) / _row_norms(b).astype(dtype)[None, :]  # [n, d] @ [d, m] -> [n, m]


def _rank(scores: np.ndarray) -> np.ndarray:
    """The scores as ranked: NaN (from a NaN in an embedding) above every number, as torch.topk
    ranks it, so a NaN score is returned like sentence-transformers' rather than lost."""
    return np.where(np.isnan(scores), np.inf, scores)


def semantic_search(query_embeddings, corpus_embeddings, query_chunk_size: int = 100,
                    corpus_chunk_size: int = 50_000, top_k: int = 10,
                    score_function=cos_sim) -> list[list[dict]]:
    """For each query, the top_k corpus entries by score, best first:
    `[[{"corpus_id": int, "score": float}, ...], ...]`, one list per query.

    Same arguments and result as sentence-transformers' `util.semantic_search` (whose
    corpus_chunk_size default, 500 000, assumes a GPU; 50 000 keeps a block at 20 MB here).
    `score_function(queries [q, d], corpus [c, d]) -> [q, c]`, higher is closer. Equal scores
    come back in corpus order. As there: top_k 0, or an empty corpus (`np.array([])`, `[]`,
    shape [0, d]), gives one empty list per query; no queries ([0, d]) give [].

    `corpus_embeddings` may also be an opened index (`index.read_index`): its rows are then
    mapped from disk a block of corpus_chunk_size rows at a time, and each block is unmapped
    before the next, so an index larger than the memory (or the address space) this process
    may use is searched in the memory of one block.
    """
    queries = _as_2d(query_embeddings)
    if top_k < 0 or query_chunk_size < 1 or corpus_chunk_size < 1:
        raise ValueError("top_k must be at least 0, query_chunk_size and corpus_chunk_size at "
                         "least 1")
    if hasattr(corpus_embeddings, "blocks"):  # an Index: one block mapped at a time
        n_corpus, empty = len(corpus_embeddings), len(corpus_embeddings) == 0
        blocks = corpus_embeddings.blocks(corpus_chunk_size)
    else:
        corpus = _as_2d(corpus_embeddings)
        n_corpus, empty = len(corpus), corpus.size == 0
        blocks = ((c0, corpus[c0:c0 + corpus_chunk_size])  # [nc, d], views: no copy
                  for c0 in range(0, len(corpus), corpus_chunk_size))
    k = min(top_k, n_corpus)
    if k == 0 or empty:  # top_k 0, or an empty corpus (np.array([]) too): no hits
        return [[] for _ in queries]
    # The running top-k of every query: -inf and id -1 until real scores push them out.
    best_scores = np.full((len(queries), k), -np.inf, dtype=np.float64)  # [nq, k]
    best_ids = np.full((len(queries), k), -1, dtype=np.int64)  # [nq, k]

    # Corpus chunks outside, query chunks inside: the corpus (maybe memory-mapped) is read once.
    for c0, chunk in blocks:
        kc = min(k, len(chunk))
        for q0 in range(0, len(queries), query_chunk_size):
            q1 = min(q0 + query_chunk_size, len(queries))
            scores = np.asarray(score_function(queries[q0:q1], chunk))  # [nq', nc]
            # This block's own top kc per query (unordered), then merge with the running top k.
            ids = np.argpartition(-_rank(scores), kc - 1, axis=1)[:, :kc]  # [nq', kc]
            top = np.take_along_axis(scores, ids, axis=1)  # [nq', kc]
            cand_scores = np.concatenate([best_scores[q0:q1], top], axis=1)  # [nq', k+kc]
            cand_ids = np.concatenate([best_ids[q0:q1], ids + c0], axis=1)  # [nq', k+kc]
            keep = np.argpartition(-_rank(cand_scores), k - 1, axis=1)[:, :k]  # [nq', k]
            best_scores[q0:q1] = np.take_along_axis(cand_scores, keep, axis=1)
            best_ids[q0:q1] = np.take_along_axis(cand_ids, keep, axis=1)
        del chunk  # an Index block: unmapped here, before the next one is mapped

    # Best first; lexsort's last key is the primary one, so ties fall back to corpus order.
    order = np.lexsort((best_ids, -_rank(best_scores)), axis=1)  # [nq, k]
    best_scores = np.take_along_axis(best_scores, order, axis=1)
    best_ids = np.take_along_axis(best_ids, order, axis=1)
    return [[{"corpus_id": int(i), "score": float(s)} for i, s in zip(ids_row, scores_row)]
            for ids_row, scores_row in zip(best_ids, best_scores)]
