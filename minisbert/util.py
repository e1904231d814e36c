"""sentence-transformers' `util` embedding functions in NumPy: similarities, exact search,
paraphrase mining, community detection and quantization.

    from minisbert import util                  # was: from sentence_transformers import util
    scores = util.cos_sim(queries, corpus)      # [n, m]
    hits = util.semantic_search(queries, corpus, top_k=3)
    hits[0]  # [{"corpus_id": 7, "score": 0.69}, {"corpus_id": 2, "score": 0.41}, ...]

Same names, arguments, defaults and results as sentence_transformers.util, with these
differences:
- Results are NumPy arrays, not torch tensors: float32, or float64 when an input is float64
  (the dtype torch would give). Inputs may be NumPy arrays, (nested) lists, or torch tensors
  (converted with NumPy; torch is never imported here). Integers and float16 are computed in
  float32 (torch keeps integers as integers, and refuses them where it normalizes).
- `euclidean_sim` computes exact distances; torch.cdist, which sentence-transformers calls,
  takes the shortcut ‖a‖² − 2a·b + ‖b‖² in float32 for more than 25 rows, and is then off by
  up to 1e-3 for near-identical normalized vectors (0.02 for unnormalized ones).
- `semantic_search` also searches an opened index (`index.read_index`), a block at a time, and
  its default corpus_chunk_size is 50 000 (500 000 there, which assumes a GPU).
- Equal scores (ties) come back in index order; the order of ties is unspecified there.

Left out: sparse vectors, multi-vector (ColBERT) scores, the approximate searches over faiss
and usearch (ann.py has one), and everything about training.
"""

from __future__ import annotations

import numpy as np

from . import pooling
from .errors import EmbeddingInputError
from .progress import ProgressBar

# ---------------------------------------------------------------------------- inputs


def _as_array(x) -> np.ndarray:
    """An array-like (NumPy, nested list, CPU or GPU torch tensor) as a NumPy array, dtype kept."""
    if type(x).__module__.startswith("torch"):  # a tensor: detached and moved, torch not imported
        x = x.detach().cpu()
        if str(x.dtype) == "torch.bfloat16":  # NumPy has no bfloat16
            x = x.float()
        return x.numpy()
    if isinstance(x, (list, tuple)) and x and type(x[0]).__module__.startswith("torch"):
        return np.stack([_as_array(e) for e in x])
    return np.asarray(x)


def _as_floats(x) -> np.ndarray:
    """Vectors as floats, without copying a float32 or float64 array (a memory-mapped corpus
    stays on disk). Types follow sentence-transformers: nested lists of numbers become float32
    (torch's default), arrays keep float64, and narrower floats (float16) or integers are
    widened to float32."""
    from_numbers = isinstance(x, (list, tuple)) and not (x and all(hasattr(e, "dtype") for e in x))
    x = _as_array(x)
    if from_numbers or not np.issubdtype(x.dtype, np.floating) or x.dtype.itemsize < 4:
        x = x.astype(np.float32)
    return x


def _as_2d(x) -> np.ndarray:
    """A [d] vector or [n, d] matrix as [n, d] floats (see _as_floats)."""
    x = _as_floats(x)
    if x.ndim == 1:
        x = x[None, :]  # [d] -> [1, d]
    if x.ndim != 2:
        raise EmbeddingInputError(f"expected a vector [d] or a matrix [n, d] of embeddings, "
                                  f"got shape {x.shape}")
    return x


def _two_sets(a, b) -> tuple[np.ndarray, np.ndarray, np.dtype]:
    """Both sets of vectors as [n, d] and [m, d], and the dtype of their scores."""
    a, b = _as_2d(a), _as_2d(b)
    if a.shape[1] != b.shape[1]:
        raise EmbeddingInputError(f"cannot compare {a.shape[1]}-d vectors with {b.shape[1]}-d "
                                  "vectors; were they made by the same model?")
    return a, b, np.result_type(a.dtype, b.dtype, np.float32)  # float32, or float64 if given


def _pairs(a, b) -> tuple[np.ndarray, np.ndarray]:
    """The two sides of a pairwise score: same shapes (or shapes that broadcast), floats."""
    a, b = _as_floats(a), _as_floats(b)
    try:
        np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise EmbeddingInputError(f"pairwise scores need vectors in pairs: shapes {a.shape} and "
                                  f"{b.shape} do not match") from None
    return a, b


def _row_norms(x: np.ndarray) -> np.ndarray:
    """‖row‖ for each row, floored at 1e-12 as torch's F.normalize does: [n, d] -> [n].
    einsum avoids np.linalg.norm's temporary x*x, which is as large as x."""
    return np.maximum(np.sqrt(np.einsum("ij,ij->i", x, x)), 1e-12)


# ---------------------------------------------------------------------------- similarities

def normalize_embeddings(embeddings) -> np.ndarray:
    """Each vector scaled to unit length, x / max(‖x‖, 1e-12) (a zero vector stays zero);
    same shape, [d] or [n, d]."""
    return pooling.normalize(_as_floats(embeddings))


def cos_sim(a, b) -> np.ndarray:
    """Cosine similarity of every row of a with every row of b: [n, d], [m, d] -> [n, m].

    A 1-D input counts as one row. Computed as (a/‖a‖) · bᵀ / ‖b‖ rather than normalizing b
    first, so b (often the big corpus) is never copied; the two orders agree to float32
    rounding. A zero vector scores 0 against everything.
    """
    a, b, dtype = _two_sets(a, b)
    a_unit = (a / _row_norms(a)[:, None]).astype(dtype, copy=False)  # [n, d]
    return (a_unit @ b.T) / _row_norms(b).astype(dtype)[None, :]  # [n, d] @ [d, m] -> [n, m]


def dot_score(a, b) -> np.ndarray:
    """Dot product of every row of a with every row of b: [n, d], [m, d] -> [n, m]."""
    a, b, dtype = _two_sets(a, b)
    return (a @ b.T).astype(dtype, copy=False)  # [n, d] @ [d, m] -> [n, m]


def euclidean_sim(a, b) -> np.ndarray:
    """Minus the Euclidean distance of every row of a to every row of b: [n, m].

    ‖a − b‖² = ‖a‖² − 2a·b + ‖b‖² lets a matrix product do the work, but in float32 the
    subtraction cancels: two near-identical vectors come out ~1e-3 apart. In float64 the same
    formula stays within 1e-7 of the exact distance for embedding-sized norms, so it is used
    there, and the result rounded back.
    """
    a, b, dtype = _two_sets(a, b)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    squared = (np.einsum("ij,ij->i", a64, a64)[:, None] - 2 * (a64 @ b64.T)  # [n, m]
               + np.einsum("ij,ij->i", b64, b64)[None, :])
    return -np.sqrt(np.maximum(squared, 0)).astype(dtype)  # rounding can dip below 0


_BLOCK_ELEMENTS = 1 << 22  # manhattan_sim's [rows, m, d] differences: 16 MB of float32 a block


def manhattan_sim(a, b) -> np.ndarray:
    """Minus the Manhattan (L1) distance of every row of a to every row of b: [n, m].

    No matrix product gives Σ|a − b|, so the differences are formed, a block of rows of a at
    a time to bound the memory, and summed in float64."""
    a, b, dtype = _two_sets(a, b)
    out = np.empty((len(a), len(b)), dtype=dtype)  # [n, m]
    rows = max(1, _BLOCK_ELEMENTS // max(1, b.size))
    for r0 in range(0, len(a), rows):
        diff = np.abs(a[r0:r0 + rows, None, :] - b[None, :, :])  # [r, 1, d] - [1, m, d] -> [r, m, d]
        out[r0:r0 + rows] = -diff.sum(axis=2, dtype=np.float64)  # [r, m, d] -> [r, m]
    return out


def pairwise_cos_sim(a, b) -> np.ndarray:
    """Cosine similarity of a[i] with b[i]: [n, d], [n, d] -> [n] ([d], [d] -> a 0-d array)."""
    a, b = _pairs(a, b)
    return np.sum(pooling.normalize(a) * pooling.normalize(b), axis=-1)  # [n, d] -> [n]


def pairwise_dot_score(a, b) -> np.ndarray:
    """Dot product of a[i] with b[i]: [n, d], [n, d] -> [n]."""
    a, b = _pairs(a, b)
    return np.sum(a * b, axis=-1)  # [n, d] -> [n]


def pairwise_euclidean_sim(a, b) -> np.ndarray:
    """Minus the Euclidean distance of a[i] to b[i]: [n, d], [n, d] -> [n]."""
    a, b = _pairs(a, b)
    diff = a - b  # [n, d]
    return -np.sqrt(np.sum(diff * diff, axis=-1))  # [n, d] -> [n]


def pairwise_manhattan_sim(a, b) -> np.ndarray:
    """Minus the Manhattan distance of a[i] to b[i]: [n, d], [n, d] -> [n]."""
    a, b = _pairs(a, b)
    return -np.sum(np.abs(a - b), axis=-1)  # [n, d] -> [n]


# The names config_sentence_transformers.json may give as similarity_fn_name: the score of
# every pair of rows, and of row i with row i.
SIMILARITY_FUNCTIONS = {
    "cosine": (cos_sim, pairwise_cos_sim),
    "dot": (dot_score, pairwise_dot_score),
    "euclidean": (euclidean_sim, pairwise_euclidean_sim),
    "manhattan": (manhattan_sim, pairwise_manhattan_sim),
}


# ---------------------------------------------------------------------------- search

def _rank(scores: np.ndarray) -> np.ndarray:
    """The scores as ranked: NaN (from a NaN in an embedding) above every number, as torch.topk
    ranks it, so a NaN score is returned like sentence-transformers' rather than lost."""
    return np.where(np.isnan(scores), np.inf, scores)


def _top_k(queries: np.ndarray, blocks, k: int, query_chunk_size: int,
           score_function) -> tuple[np.ndarray, np.ndarray]:
    """The k best corpus rows for each query, best first (ties in corpus order): scores
    [nq, k] and ids [nq, k]. `blocks` yields (first id, [nc, d] rows) a block at a time, and
    k must be at most the corpus size. Only a running top k per query is kept, so no
    queries × corpus score matrix is ever built."""
    # The running top-k of every query: -inf and id -1 until real scores push them out.
    best_scores = np.full((len(queries), k), -np.inf, dtype=np.float64)  # [nq, k]
    best_ids = np.full((len(queries), k), -1, dtype=np.int64)  # [nq, k]

    # Corpus chunks outside, query chunks inside: the corpus (maybe memory-mapped) is read once.
    for c0, chunk in blocks:
        kc = min(k, len(chunk))
        for q0 in range(0, len(queries), query_chunk_size):
            q1 = min(q0 + query_chunk_size, len(queries))
            scores = _as_array(score_function(queries[q0:q1], chunk))  # [nq', nc]
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
    return (np.take_along_axis(best_scores, order, axis=1),
            np.take_along_axis(best_ids, order, axis=1))


def _check_chunks(top_k: int, query_chunk_size: int, corpus_chunk_size: int) -> None:
    if top_k < 0 or query_chunk_size < 1 or corpus_chunk_size < 1:
        raise EmbeddingInputError("top_k must be at least 0, query_chunk_size and "
                                  "corpus_chunk_size at least 1")


def semantic_search(query_embeddings, corpus_embeddings, query_chunk_size: int = 100,
                    corpus_chunk_size: int = 50_000, top_k: int = 10,
                    score_function=cos_sim) -> list[list[dict]]:
    """For each query, the top_k corpus entries by score, best first:
    `[[{"corpus_id": int, "score": float}, ...], ...]`, one list per query.

    Exact (brute force), but a block at a time: the corpus in chunks of `corpus_chunk_size`
    rows, the queries in chunks of `query_chunk_size`, so a million 768-d vectors, even
    memory-mapped from disk, never need a queries × corpus score matrix, nor a normalized copy
    of themselves, in memory. `score_function(queries [q, d], corpus [c, d]) -> [q, c]`,
    higher is closer. top_k 0, or an empty corpus (`np.array([])`, `[]`, shape [0, d]), gives
    one empty list per query; no queries ([0, d]) give [].

    `corpus_embeddings` may also be an opened index (`index.read_index`): its rows are then
    mapped from disk a block of corpus_chunk_size rows at a time, and each block is unmapped
    before the next, so an index larger than the memory (or the address space) this process
    may use is searched in the memory of one block.
    """
    queries = _as_2d(query_embeddings)
    _check_chunks(top_k, query_chunk_size, corpus_chunk_size)
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
    best_scores, best_ids = _top_k(queries, blocks, k, query_chunk_size, score_function)
    return [[{"corpus_id": int(i), "score": float(s)} for i, s in zip(ids_row, scores_row)]
            for ids_row, scores_row in zip(best_ids, best_scores)]


def paraphrase_mining(model, sentences: list[str], show_progress_bar: bool = False,
                      batch_size: int = 32, query_chunk_size: int = 5000,
                      corpus_chunk_size: int = 100_000, max_pairs: int = 500_000,
                      top_k: int = 100, score_function=cos_sim, truncate_dim: int | None = None,
                      prompt_name: str | None = None,
                      prompt: str | None = None) -> list[list[float | int]]:
    """The most similar pairs of sentences, `[[score, i, j], ...]` with i < j, best first:
    the sentences embedded with `model.encode` (its batch_size, truncate_dim, prompt_name and
    prompt arguments), then `paraphrase_mining_embeddings`."""
    embeddings = model.encode(sentences, batch_size=batch_size,
                              show_progress_bar=show_progress_bar, truncate_dim=truncate_dim,
                              prompt_name=prompt_name, prompt=prompt)
    return paraphrase_mining_embeddings(embeddings, query_chunk_size=query_chunk_size,
                                        corpus_chunk_size=corpus_chunk_size,
                                        max_pairs=max_pairs, top_k=top_k,
                                        score_function=score_function)


def paraphrase_mining_embeddings(embeddings, query_chunk_size: int = 5000,
                                 corpus_chunk_size: int = 100_000, max_pairs: int = 500_000,
                                 top_k: int = 100,
                                 score_function=cos_sim) -> list[list[float | int]]:
    """The most similar pairs among the vectors, `[[score, i, j], ...]` with i < j, best first
    (ties by i, then j), at most max_pairs of them.

    Each vector's top_k neighbours (itself left out) are the candidates, as in
    sentence-transformers; a pair found from both ends keeps the score computed from the
    smaller index's row. `score_function` is assumed symmetric.
    """
    x = _as_2d(embeddings)
    _check_chunks(top_k, query_chunk_size, corpus_chunk_size)
    n = 0 if x.size == 0 else len(x)
    k = min(top_k + 1, n)  # +1: each vector finds itself too
    if k == 0 or max_pairs < 1:
        return []
    blocks = [(c0, x[c0:c0 + corpus_chunk_size]) for c0 in range(0, n, corpus_chunk_size)]
    kept_scores = np.empty(0, dtype=np.float64)  # the best pairs so far, at most max_pairs
    kept_keys = np.empty(0, dtype=np.int64)  # each pair (i, j), i < j, as i * n + j
    for q0 in range(0, n, query_chunk_size):
        scores, ids = _top_k(x[q0:q0 + query_chunk_size], blocks, k, query_chunk_size,
                             score_function)  # [nq, k], best first
        rows = np.arange(q0, q0 + len(ids))[:, None]  # [nq, 1]: each query's own index
        others = ids != rows  # [nq, k]
        keep = others & (np.cumsum(others, axis=1) <= top_k)  # the first top_k that are not self
        i, j = np.broadcast_to(rows, ids.shape)[keep], ids[keep]  # [p], row-major order
        keys = np.minimum(i, j) * n + np.maximum(i, j)
        # Earlier rows come first in the concatenation, and np.unique keeps a key's first place.
        all_keys = np.concatenate([kept_keys, keys])
        all_scores = np.concatenate([kept_scores, scores[keep]])
        _, first = np.unique(all_keys, return_index=True)
        if len(first) > max_pairs:
            first = first[np.argpartition(-_rank(all_scores[first]), max_pairs - 1)[:max_pairs]]
        kept_keys, kept_scores = all_keys[first], all_scores[first]
    order = np.lexsort((kept_keys, -_rank(kept_scores)))  # best first, ties by (i, j)
    return [[float(s), int(key // n), int(key % n)]
            for s, key in zip(kept_scores[order], kept_keys[order])]


def community_detection(embeddings, threshold: float = 0.75, min_community_size: int = 10,
                        batch_size: int = 1024,
                        show_progress_bar: bool = False) -> list[list[int]]:
    """Groups of vectors within cosine `threshold` of a central one, largest first, each at
    least `min_community_size` long (the centre counts), no vector in two groups:
    `[[centre, member, ...], ...]`, members by decreasing similarity to the centre.

    As sentence-transformers: every vector with at least min_community_size vectors at or
    above the threshold (itself included) is a candidate centre; candidates are taken largest
    first (ties by centre index), each keeping only the vectors no earlier group has taken,
    and dropped if fewer than min_community_size remain or its centre is taken. Similarities
    are computed batch_size rows at a time: [batch_size, n] in memory.
    """
    x = _as_floats(embeddings)
    if min_community_size < 1 or batch_size < 1:
        raise EmbeddingInputError("min_community_size and batch_size must be at least 1")
    if x.ndim >= 1 and len(x) == 0:  # no vectors ([] or shape [0, d])
        return []
    unit = pooling.normalize(_as_2d(x))  # [n, d]
    n = len(unit)
    if n < min_community_size:
        return []
    # torch compares in float32 against float32(threshold): 0.7 is 0.699999988 there too.
    cut = np.float32(threshold)
    candidates = []  # (centre, members best first)
    bar = ProgressBar(n, show=show_progress_bar, unit="rows", desc="Finding clusters")
    for b0 in range(0, n, batch_size):
        scores = unit[b0:b0 + batch_size] @ unit.T  # [b, d] @ [d, n] -> [b, n]
        close = scores >= cut  # [b, n]
        for r in np.flatnonzero(close.sum(axis=1) >= min_community_size):
            members = np.flatnonzero(close[r])
            members = members[np.argsort(-scores[r, members], kind="stable")]
            candidates.append((b0 + int(r), members))
        bar.update(len(scores))
    bar.close()

    candidates.sort(key=lambda c: len(c[1]), reverse=True)  # stable: ties by centre index
    taken = np.zeros(n, dtype=bool)
    communities = []
    for centre, members in candidates:
        if taken[centre]:
            continue
        free = members[~taken[members]]
        if len(free) >= min_community_size:
            community = [centre] + free[free != centre].tolist()
            communities.append(community)
            taken[community] = True
    return sorted(communities, key=len, reverse=True)


# ---------------------------------------------------------------------------- quantization

PRECISIONS = ("float32", "int8", "uint8", "binary", "ubinary")


def quantization_ranges(embeddings: np.ndarray, precision: str = "int8",
                        calibration_embeddings=None) -> np.ndarray:
    """The [2, d] per-dimension (minimum, maximum) int8/uint8 quantization maps to 0..255: of
    `calibration_embeddings` if given, else of the embeddings themselves (which then must be
    more than one vector; ~100 or more give stable ranges)."""
    if calibration_embeddings is not None:
        calibration = _as_array(calibration_embeddings)
    elif embeddings.ndim == 1 or len(embeddings) == 1:
        raise EmbeddingInputError(
            f"{precision} quantization needs ranges, and one embedding cannot give them: pass "
            "ranges= or calibration_embeddings= from a representative set of embeddings.")
    else:
        calibration = embeddings
    return np.vstack((calibration.min(axis=0), calibration.max(axis=0)))  # [2, d]


def quantize_embeddings(embeddings, precision: str, ranges=None,
                        calibration_embeddings=None):
    """The embeddings in a smaller type, exactly as sentence-transformers quantizes them:

    - "float32": the floats as float32.
    - "uint8" / "int8": per dimension, the range [min, max] (`ranges`, a [2, d] array; else from
      `calibration_embeddings`; else from the embeddings) cut into 255 steps:
      floor((x − min) / step) clipped to 0..255, as uint8, or minus 128 as int8. A dimension
      whose min equals its max gets step 1.
    - "ubinary" / "binary": one bit per dimension (1 where x > 0), packed 8 to a byte
      ([n, d] -> [n, ceil(d / 8)]) as uint8, or minus 128 as int8.

    A list of [tokens, d] matrices (multi-vector embeddings) gives a list, quantized with
    ranges shared by all of them.
    """
    if precision not in PRECISIONS:
        raise EmbeddingInputError(f"precision {precision!r} is not supported; use one of "
                                  f"{', '.join(PRECISIONS)}")
    if isinstance(embeddings, (list, tuple)):
        if not embeddings:
            return []
        if getattr(embeddings[0], "ndim", 0) == 2:  # multi-vector: one set of ranges for all
            matrices = [_as_array(m) for m in embeddings]
            if precision.endswith("int8") and ranges is None:
                together = np.concatenate(matrices)
                if len(together) or calibration_embeddings is not None:
                    ranges = quantization_ranges(together, precision, calibration_embeddings)
            return [quantize_embeddings(m, precision, ranges, calibration_embeddings)
                    for m in matrices]
    x = _as_array(embeddings)  # dtype kept: float64 rounds otherwise than float32 below
    if not np.issubdtype(x.dtype, np.floating):
        raise EmbeddingInputError(f"embeddings to quantize must be floats, not {x.dtype}; "
                                  "quantize the float embeddings the model gave")
    if x.ndim == 2 and len(x) == 0:  # nothing to calibrate or pack: an empty result
        width = x.shape[1] if precision.endswith("int8") else (x.shape[1] + 7) // 8
        if precision != "float32":
            return np.zeros((0, width), dtype=np.uint8 if precision[0] == "u" else np.int8)

    if precision == "float32":
        return x.astype(np.float32)
    if precision.endswith("int8"):
        if ranges is None:
            ranges = quantization_ranges(x, precision, calibration_embeddings)
        ranges = _as_array(ranges).astype(np.float32, copy=False)  # [2, d]
        low = ranges[0]
        step = (ranges[1] - low) / 255
        step = np.where(step == 0, 1, step)  # a constant dimension: every value in bucket 0
        buckets = np.clip(np.floor((x - low) / step), 0, 255)  # [n, d], 0..255
        return buckets.astype(np.uint8) if precision == "uint8" else (buckets - 128).astype(np.int8)
    bits = np.packbits(x > 0, axis=-1)  # [n, d] -> [n, ceil(d / 8)] uint8
    return bits if precision == "ubinary" else (bits.astype(np.int16) - 128).astype(np.int8)
