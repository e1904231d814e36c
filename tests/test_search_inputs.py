"""cos_sim and semantic_search on the empty and odd inputs sentence-transformers' util accepts.

Each case states the result by hand (what sentence-transformers' util returns for it, and why),
and where torch and sentence-transformers are installed, runs their util on the same input in
the same test and compares. Without them, only that comparison is skipped, case by case.
The numeric cases follow sentence-transformers' own tests (tests/util/test_retrieval.py and
tests/util/test_similarity.py): float64 inputs searched in odd-sized chunks and checked against
a full top-k, cosine similarity of float64 matrices, and a small case with known values.
"""

from __future__ import annotations

import numpy as np
import pytest

import minisbert

RNG = np.random.default_rng(17)
Q = RNG.normal(size=(2, 4)).astype(np.float32)  # two queries
C = RNG.normal(size=(3, 4)).astype(np.float32)  # a corpus of three


def reference_util():
    pytest.importorskip("torch", reason="the reference needs torch")
    return pytest.importorskip("sentence_transformers", reason="the reference needs "
                               "sentence-transformers").util


def as_numpy(x):
    return x.numpy() if hasattr(x, "numpy") else np.asarray(x)


def assert_same_hits(ours, ref, atol=1e-6):
    """Same number of lists and hits, same ids, scores within atol (NaN equal to NaN)."""
    assert len(ours) == len(ref)
    worst = 0.0
    for o, r in zip(ours, ref):
        assert [h["corpus_id"] for h in o] == [h["corpus_id"] for h in r], (o, r)
        a = np.array([h["score"] for h in o])
        b = np.array([h["score"] for h in r])
        np.testing.assert_allclose(a, b, atol=atol, equal_nan=True)
        if len(a) and not np.isnan(a).all():
            worst = max(worst, float(np.nanmax(np.abs(a - b))))
    print(f"\n{len(ours)} result lists, max score difference = {worst:.2e}")


# ---------------------------------------------------------------------------- semantic_search

SEARCH_CASES = {
    # (queries, corpus, kwargs) -> expected shape of the result: hits per query
    "empty 1-D corpus np.array([])": (Q, np.array([]), {}, [0, 0]),
    "empty list corpus": (Q, [], {}, [0, 0]),
    "corpus of shape [0, d]": (Q, np.zeros((0, 4), np.float32), {}, [0, 0]),
    "no queries, shape [0, d]": (np.zeros((0, 4), np.float32), C, {}, []),
    "both empty: one empty query": (np.array([]), np.array([]), {}, [0]),
    "top_k 0": (Q, C, {"top_k": 0}, [0, 0]),
    "top_k above the corpus size": (Q, C, {"top_k": 10}, [3, 3]),
    "1-D query: one query": (Q[0], C, {}, [3]),
    "1-D corpus: one corpus vector": (Q, C[0], {}, [1, 1]),
    "lists of numbers": (Q.tolist(), C.tolist(), {}, [3, 3]),
    "lists of arrays": (list(Q), list(C), {}, [3, 3]),
    "float64": (Q.astype(np.float64), C.astype(np.float64), {}, [3, 3]),
    "float16": (Q.astype(np.float16), C.astype(np.float16), {}, [3, 3]),
    "chunks of one": (Q, C, {"query_chunk_size": 1, "corpus_chunk_size": 1, "top_k": 2}, [2, 2]),
}


@pytest.mark.parametrize("name", SEARCH_CASES)
def test_semantic_search_odd_inputs(name):
    queries, corpus, kwargs, lengths = SEARCH_CASES[name]
    ours = minisbert.semantic_search(queries, corpus, **kwargs)
    assert [len(hits) for hits in ours] == lengths
    for hits in ours:  # every hit is a real corpus entry, best first
        assert all(0 <= h["corpus_id"] < len(C) for h in hits)
        scores = [h["score"] for h in hits]
        assert scores == sorted(scores, reverse=True)
    util = reference_util()
    assert_same_hits(ours, util.semantic_search(queries, corpus, **kwargs), atol=1e-6)


def test_semantic_search_nan_scores_are_returned_not_dropped():
    """A NaN in an embedding gives NaN scores; torch.topk ranks NaN above every number, so
    sentence-transformers returns those entries, never an invented id."""
    corpus = np.vstack([C, np.full((1, 4), np.nan, np.float32)])  # entry 3 is NaN
    ours = minisbert.semantic_search(Q, corpus, top_k=2)
    assert [[h["corpus_id"] for h in hits][0] for hits in ours] == [3, 3]
    assert all(np.isnan(hits[0]["score"]) and not np.isnan(hits[1]["score"]) for hits in ours)
    util = reference_util()
    assert_same_hits(ours, util.semantic_search(Q, corpus, top_k=2))


def test_semantic_search_negative_top_k_is_refused():
    with pytest.raises(ValueError, match="top_k"):
        minisbert.semantic_search(Q, C, top_k=-1)


def test_semantic_search_float64_in_odd_chunks_equals_full_top_k():
    """sentence-transformers' test_semantic_search: 20 float64 queries, 1000 corpus vectors,
    chunks of 5 queries and 17 corpus vectors; the hits are the full matrix's top 10."""
    rng = np.random.default_rng(3)
    corpus, queries = rng.normal(size=(1000, 100)), rng.normal(size=(20, 100))
    hits = minisbert.semantic_search(queries, corpus, top_k=10, query_chunk_size=5,
                                     corpus_chunk_size=17)
    full = (queries / np.linalg.norm(queries, axis=1, keepdims=True)) @ \
        (corpus / np.linalg.norm(corpus, axis=1, keepdims=True)).T  # [20, 1000], float64
    top = np.argsort(-full, axis=1)[:, :10]
    assert [[h["corpus_id"] for h in q] for q in hits] == top.tolist()
    diff = max(abs(h["score"] - full[i, h["corpus_id"]]) for i, q in enumerate(hits) for h in q)
    print(f"\nfloat64 scores vs the full matrix: max difference = {diff:.2e}")
    assert diff < 1e-12
    util = reference_util()
    import torch
    assert_same_hits(hits, util.semantic_search(torch.from_numpy(queries),
                                                torch.from_numpy(corpus), top_k=10,
                                                query_chunk_size=5, corpus_chunk_size=17),
                     atol=1e-12)


# ---------------------------------------------------------------------------- cos_sim

COS_CASES = {
    # (a, b) -> (shape, dtype) of the result
    "no rows in a": (np.zeros((0, 4), np.float32), C, ((0, 3), np.float32)),
    "no rows in b": (C, np.zeros((0, 4), np.float32), ((3, 0), np.float32)),
    "two empty vectors: one 0-d row each": (np.array([]), np.array([]), ((1, 1), np.float64)),
    "1-D a": (Q[0], C, ((1, 3), np.float32)),
    "lists of numbers: float32": ([1.0, 0.0], [[0.0, 1.0], [1.0, 1.0]], ((1, 2), np.float32)),
    "lists of arrays": (list(Q), list(C), ((2, 3), np.float32)),
    "float64 stays float64": (Q.astype(np.float64), C.astype(np.float64), ((2, 3), np.float64)),
    "float16 computed in float32": (Q.astype(np.float16), C.astype(np.float16),
                                    ((2, 3), np.float32)),
    "zero vector: 0, not NaN": (np.zeros((1, 4), np.float32), C, ((1, 3), np.float32)),
}


@pytest.mark.parametrize("name", COS_CASES)
def test_cos_sim_odd_inputs(name):
    a, b, (shape, dtype) = COS_CASES[name]
    ours = minisbert.cos_sim(a, b)
    assert ours.shape == shape and ours.dtype == dtype, (ours.shape, ours.dtype)
    assert not np.isnan(ours).any()
    util = reference_util()
    ref = as_numpy(util.cos_sim(a, b))
    print(f"\n{name}: ours {ours.dtype} {ours.shape}, reference {ref.dtype} {ref.shape}, "
          f"max difference = {np.abs(ours - ref).max(initial=0):.2e}")
    assert ref.shape == shape and ref.dtype == dtype
    np.testing.assert_allclose(ours, ref, atol=1e-6)


def test_cos_sim_known_values_and_float64():
    """sentence-transformers' test_dot_score_cos_sim and test_pytorch_cos_sim, in our words."""
    a = np.array([[1, 0]], dtype=np.float32)
    b = np.array([[1, 0], [0, 1], [-1, 0]], dtype=np.float32)
    np.testing.assert_allclose(minisbert.cos_sim(a, b), [[1.0, 0.0, -1.0]], atol=1e-7)

    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(50, 100)), rng.normal(size=(50, 100))
    want = np.array([[u @ v / np.linalg.norm(u) / np.linalg.norm(v) for v in y] for u in x])
    ours = minisbert.cos_sim(x, y)
    print(f"\nfloat64 [50, 50] vs the formula: max difference = {np.abs(ours - want).max():.2e}")
    assert ours.dtype == np.float64
    np.testing.assert_allclose(ours, want, atol=1e-12)
    util = reference_util()
    np.testing.assert_allclose(ours, as_numpy(util.cos_sim(x, y)), atol=1e-12)


@pytest.mark.parametrize("a, b", [(np.array([]), C), (Q[None], C), (np.float32(1), C),
                                  (Q, C[:, :3])], ids=["0-d vs 4-d", "3-D", "scalar",
                                                       "4-d vs 3-d"])
def test_cos_sim_inputs_that_cannot_be_compared_raise(a, b):
    """Where sentence-transformers raises (shapes that do not multiply), so do we, saying why."""
    with pytest.raises(ValueError, match="expected a vector|cannot compare"):
        minisbert.cos_sim(a, b)
