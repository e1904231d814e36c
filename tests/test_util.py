"""minisbert.util against sentence_transformers.util, run in the same test on the same inputs.

sentence-transformers' own util tests (tests/util/ in its repository) are not in the wheel, so
their cases are written again here from the behaviour: every function on random vectors
(unnormalized, 32-d) and on real all-MiniLM-L6-v2 embeddings of gettext messages (normalized,
384-d), each result compared with the reference's. Tolerances are the project's: normalized
scale 1e-5 absolute; unnormalized scores atol 1e-4 + rtol 1e-5; quantized outputs exactly
equal. Search, mining and communities must give the same ids and scores; where two scores are
equal (the uncased model gives "Error" and "error" one embedding), the order among them is
unspecified on both sides, so a result may differ only by entries tied within the tolerance.
"""

from __future__ import annotations

import numpy as np
import pytest

import minisbert
from minisbert import util

RNG = np.random.default_rng(26)
A = RNG.normal(size=(40, 32)).astype(np.float32)  # 40 random vectors
B = RNG.normal(size=(30, 32)).astype(np.float32)  # 30 more
NORMALIZED = 1e-5  # scores of unit vectors (cosines, distances below 2)
RAW = dict(atol=1e-4, rtol=1e-5)  # scores of unnormalized vectors (distances ~50)

MATRIX = ["cos_sim", "dot_score", "euclidean_sim", "manhattan_sim"]
PAIRWISE = ["pairwise_cos_sim", "pairwise_dot_score", "pairwise_euclidean_sim",
            "pairwise_manhattan_sim"]


def reference_util():
    pytest.importorskip("torch", reason="the reference needs torch")
    return pytest.importorskip("sentence_transformers",
                               reason="the reference needs sentence-transformers").util


def as_numpy(x):
    return x.numpy() if hasattr(x, "numpy") else np.asarray(x)


def tolerance(name: str, data: str) -> dict:
    """Unit scale (cosines; any score of unit vectors but the Manhattan distance, ~20 for
    384-d ones): 1e-5; otherwise the tolerance of raw outputs."""
    unit_scale = name.endswith("cos_sim") or (data == "real" and "manhattan" not in name)
    return {"atol": NORMALIZED, "rtol": 0} if unit_scale else RAW


def assert_close(what, ours, ref, atol, rtol=0.0):
    ref = as_numpy(ref)
    assert ours.shape == ref.shape and ours.dtype == ref.dtype, \
        (what, ours.shape, ref.shape, ours.dtype, ref.dtype)
    worst = float(np.abs(ours.astype(np.float64) - ref).max(initial=0))
    print(f"\n{what}: ours {ours.reshape(-1)[:3]} reference {ref.reshape(-1)[:3]} "
          f"{ours.dtype} {ours.shape}, maxdiff = {worst:.2e}")
    np.testing.assert_allclose(ours, ref, atol=atol, rtol=rtol)


def assert_same_ranking(what, ours, ref, atol):
    """Two ranked lists of (key, score), best first: the same scores position by position, and
    the same key for each score, except among entries whose scores tie within atol. A key in
    one list only must tie with the last entry (the cut-off)."""
    assert len(ours) == len(ref), (what, len(ours), len(ref))
    if not ours:
        return 0
    np.testing.assert_allclose([s for _, s in ours], [s for _, s in ref], atol=atol)
    mine, theirs = dict(ours), dict(ref)
    assert len(mine) == len(ours) and len(theirs) == len(ref), "a key twice in one list"
    cut = ref[-1][1]
    for key in mine.keys() ^ theirs.keys():
        score = mine.get(key, theirs.get(key))
        assert abs(score - cut) <= atol, (what, key, score, cut)
    for key in mine.keys() & theirs.keys():
        assert abs(mine[key] - theirs[key]) <= atol, (what, key, mine[key], theirs[key])
    return sum(a[0] != b[0] for a, b in zip(ours, ref))  # places where ties swapped keys


@pytest.fixture(scope="module")
def real(minilm):
    """all-MiniLM-L6-v2 embeddings of 300 gettext messages, near-duplicates included."""
    import corpus
    texts = corpus.spread(corpus.lines(corpus.english()), 300)
    return texts, minilm.encode(texts)


def data(name, real):
    if name == "random":
        return A, B
    _, x = real
    return x[:150], x[150:]


# ---------------------------------------------------------------------------- scores

@pytest.mark.parametrize("source", ["random", "real"])
@pytest.mark.parametrize("name", [n for n in MATRIX if n != "euclidean_sim"])
def test_matrix_scores_equal_the_reference(name, source, real):
    a, b = data(source, real)
    ours = getattr(util, name)(a, b)
    assert ours.shape == (len(a), len(b))
    ref = getattr(reference_util(), name)(a, b)
    assert_close(f"{name} {source}", ours, ref, **tolerance(name, source))


@pytest.mark.parametrize("source", ["random", "real"])
def test_euclidean_sim_is_exact_where_torch_cdist_is_not(source, real):
    """torch.cdist (under sentence-transformers' euclidean_sim) computes exact differences for
    up to 25 rows and the float32 shortcut ‖a‖² − 2a·b + ‖b‖² above: there the reference is
    itself off (most for near-identical vectors), so ours is compared with float64 distances,
    and with the reference where it is exact."""
    a, b = data(source, real)
    a = np.vstack([a, a[:3]])  # three distances of exactly 0
    ours = util.euclidean_sim(a, b=a)
    exact = -np.sqrt(((a[:, None, :].astype(np.float64) - a[None]) ** 2).sum(-1))
    ref = as_numpy(reference_util().euclidean_sim(a, a))
    ours_err, ref_err = np.abs(ours - exact).max(), np.abs(ref - exact).max()
    print(f"\neuclidean_sim {source} [{len(a)}, {len(a)}] vs float64: ours {ours_err:.2e}, "
          f"sentence-transformers {ref_err:.2e}")
    tol = tolerance("euclidean_sim", source)
    np.testing.assert_allclose(ours, exact, **tol)
    assert ours_err <= ref_err
    small = a[:20]  # up to 25 rows torch computes the differences: exact too
    assert_close(f"euclidean_sim {source} [20, 20]", util.euclidean_sim(small, small),
                 reference_util().euclidean_sim(small, small), **tol)


@pytest.mark.parametrize("source", ["random", "real"])
@pytest.mark.parametrize("name", PAIRWISE)
def test_pairwise_scores_equal_the_reference(name, source, real):
    a, b = data(source, real)
    n = min(len(a), len(b))
    ref_util = reference_util()
    ours = getattr(util, name)(a[:n], b[:n])
    assert ours.shape == (n,)
    assert_close(f"{name} {source}", ours, getattr(ref_util, name)(a[:n], b[:n]),
                 **tolerance(name, source))
    one = getattr(util, name)(a[0], b[0])  # two vectors: a 0-d result, as torch gives
    assert_close(f"{name} 1-D", one, getattr(ref_util, name)(a[0], b[0]),
                 **tolerance(name, source))


@pytest.mark.parametrize("name", MATRIX + PAIRWISE)
def test_scores_keep_the_references_dtypes_and_take_tensors(name):
    """float64 in, float64 out; lists of numbers are float32, as torch.tensor makes them; a
    torch tensor is accepted as it is."""
    torch = pytest.importorskip("torch")
    ref_util = reference_util()
    fn, ref_fn = getattr(util, name), getattr(ref_util, name)
    a64, b64 = A[:20].astype(np.float64), B[:20].astype(np.float64)  # 20: cdist's exact path
    assert_close(f"{name} float64", fn(a64, b64), ref_fn(a64, b64), **tolerance(name, "random"))
    assert_close(f"{name} lists", fn(A[:3].tolist(), B[:3].tolist()),
                 ref_fn(A[:3].tolist(), B[:3].tolist()), **tolerance(name, "random"))
    ours = fn(torch.from_numpy(A[:5]), torch.from_numpy(B[:5]))
    assert isinstance(ours, np.ndarray)
    assert_close(f"{name} tensors", ours, ref_fn(A[:5], B[:5]), **tolerance(name, "random"))


def test_zero_vectors_score_zero_not_nan():
    zero = np.zeros((2, 32), np.float32)
    ref_util = reference_util()
    for name in ("cos_sim", "pairwise_cos_sim"):
        ours = getattr(util, name)(zero, B[:2])
        assert not np.isnan(ours).any() and (ours == 0).all()
        assert_close(f"{name} of zero vectors", ours, getattr(ref_util, name)(zero, B[:2]),
                     atol=0)
    assert (util.normalize_embeddings(zero) == 0).all()


def test_normalize_embeddings_equals_the_reference(real):
    torch = pytest.importorskip("torch")
    ref_util = reference_util()
    _, x = real
    for what, v in [("random [40, 32]", A), ("random 1-D", A[0]), ("real", x * 3),
                    ("float64", A.astype(np.float64))]:
        ours = util.normalize_embeddings(v)
        assert_close(f"normalize_embeddings {what}", ours,
                     ref_util.normalize_embeddings(torch.from_numpy(np.ascontiguousarray(v))),
                     atol=NORMALIZED)


def test_mismatched_shapes_raise_a_clear_error():
    with pytest.raises(minisbert.EmbeddingInputError, match="cannot compare 32-d vectors with "
                       "31-d"):
        util.dot_score(A, B[:, :31])
    with pytest.raises(minisbert.EmbeddingInputError, match="pairs"):
        util.pairwise_cos_sim(A, B)
    with pytest.raises(minisbert.EmbeddingInputError, match="matrix"):
        util.manhattan_sim(A[None], B)


def test_similarity_function_names_are_sentence_transformers():
    st = reference_util().SimilarityFunction
    for name, (fn, pairwise) in util.SIMILARITY_FUNCTIONS.items():
        assert st.to_similarity_fn(name).__name__ == fn.__name__
        assert st.to_similarity_pairwise_fn(name).__name__ == pairwise.__name__


# ---------------------------------------------------------------------------- semantic_search

def hits_as_pairs(hits):
    return [[(h["corpus_id"], h["score"]) for h in q] for q in hits]


@pytest.mark.parametrize("score", MATRIX)
@pytest.mark.parametrize("source", ["random", "real"])
def test_semantic_search_with_each_score_function(score, source, real):
    queries, corpus = data(source, real)
    queries = queries[:25]  # at most 25 rows: torch.cdist's exact path (see above)
    kwargs = dict(top_k=7, query_chunk_size=4, corpus_chunk_size=11)
    ours = util.semantic_search(queries, corpus, score_function=getattr(util, score), **kwargs)
    ref_util = reference_util()
    ref = ref_util.semantic_search(queries, corpus, score_function=getattr(ref_util, score),
                                   **kwargs)
    tol = tolerance(score, source)
    atol = tol["atol"] + tol["rtol"] * 50  # raw scores are at most ~50 here
    swapped = sum(assert_same_ranking(f"{score} query {i}", o, r, atol)
                  for i, (o, r) in enumerate(zip(hits_as_pairs(ours), hits_as_pairs(ref))))
    print(f"\nsemantic_search {score} {source}: {len(ours)} queries × 7 hits equal "
          f"({swapped} places where tied scores came in another order)")


def test_semantic_search_edge_cases():
    ref_util = reference_util()
    for what, q, c, kw in [("1-D query", A[0], B, {}), ("1-D corpus", A, B[0], {}),
                           ("top_k above the corpus", A[:3], B[:4], {"top_k": 10}),
                           ("empty corpus", A[:3], np.zeros((0, 32), np.float32), {}),
                           ("zero query", np.zeros(32, np.float32), B, {"top_k": 3})]:
        ours, ref = util.semantic_search(q, c, **kw), ref_util.semantic_search(q, c, **kw)
        assert [len(x) for x in ours] == [len(x) for x in ref], what
        for o, r in zip(hits_as_pairs(ours), hits_as_pairs(ref)):
            assert_same_ranking(what, o, r, 1e-6)
    assert minisbert.semantic_search is util.semantic_search
    assert minisbert.cos_sim is util.cos_sim


# ---------------------------------------------------------------------------- paraphrase mining

def mined(pairs):
    return [((i, j), s) for s, i, j in pairs]


@pytest.mark.parametrize("kwargs", [{}, {"top_k": 3, "max_pairs": 60},
                                    {"top_k": 5, "max_pairs": 1000, "query_chunk_size": 7,
                                     "corpus_chunk_size": 13}],
                         ids=["defaults", "top_k 3 max_pairs 60", "odd chunks"])
def test_paraphrase_mining_embeddings_equals_the_reference(kwargs, real):
    torch = pytest.importorskip("torch")
    _, x = real
    ours = util.paraphrase_mining_embeddings(x, **kwargs)
    ref = reference_util().paraphrase_mining_embeddings(torch.from_numpy(x), **kwargs)
    assert all(i < j for _, i, j in ours)
    swapped = assert_same_ranking("paraphrase pairs", mined(ours), mined(ref), NORMALIZED)
    print(f"\nparaphrase_mining_embeddings {kwargs}: {len(ours)} pairs, best "
          f"{ours[0]} (reference {ref[0]}); {swapped} places where tied pairs swapped")


def test_paraphrase_mining_encodes_with_the_model(minilm, minilm_reference, real):
    texts = real[0][:120]
    ours = util.paraphrase_mining(minilm, texts, top_k=5, max_pairs=100)
    ref = reference_util().paraphrase_mining(minilm_reference, texts, top_k=5, max_pairs=100)
    swapped = assert_same_ranking("paraphrase_mining", mined(ours), mined(ref), NORMALIZED)
    print(f"\nparaphrase_mining on {len(texts)} messages: {len(ours)} pairs, best "
          f"{ours[0]}: {texts[ours[0][1]]!r} ~ {texts[ours[0][2]]!r} ({swapped} tie swaps)")


def test_paraphrase_mining_edge_cases():
    torch = pytest.importorskip("torch")
    ref_util = reference_util()
    for what, x, kw in [("one vector", A[:1], {}), ("top_k 0", A, {"top_k": 0}),
                        ("top_k above the count", A[:6], {"top_k": 50}),
                        ("max_pairs 0", A, {"max_pairs": 0})]:
        ours = util.paraphrase_mining_embeddings(x, **kw)
        ref = ref_util.paraphrase_mining_embeddings(torch.from_numpy(x), **kw)
        assert_same_ranking(what, mined(ours), mined(ref), RAW["atol"])
    assert util.paraphrase_mining_embeddings(np.zeros((0, 32), np.float32)) == []


# ---------------------------------------------------------------------------- communities

def clusters(n_per, spread, seed):
    """Tight groups of the given sizes around random centres, then loose random vectors."""
    rng = np.random.default_rng(seed)
    groups = [rng.normal(size=(1, 32)) + spread * rng.normal(size=(n, 32)) for n in n_per]
    return np.vstack(groups + [rng.normal(size=(40, 32))]).astype(np.float32)


def assert_same_communities(what, ours, ref, x, threshold):
    """Same communities in the same order, each with the same centre and members; members by
    decreasing cosine with the centre. Precondition, checked: no cosine within 1e-5 of the
    threshold, so float32 rounding cannot move a vector across it."""
    unit = x / np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)
    cos = unit @ unit.T
    assert np.abs(cos - threshold).min() > 1e-5, "pick another threshold: a cosine is on it"
    assert [(c[0], len(c), set(c)) for c in ours] == [(c[0], len(c), set(c)) for c in ref], what
    for community in ours:
        scores = cos[community[0], community[1:]]
        assert (np.diff(scores) <= 1e-6).all(), what
    print(f"\n{what}: {len(ours)} communities of sizes {[len(c) for c in ours]}")


@pytest.mark.parametrize("threshold, size, batch", [(0.9, 5, 1024), (0.9, 5, 7), (0.8, 12, 16)])
def test_community_detection_equals_the_reference(threshold, size, batch):
    x = clusters([12, 15, 6, 20], 0.05, seed=int(threshold * 100) + size)
    ours = util.community_detection(x, threshold=threshold, min_community_size=size,
                                    batch_size=batch)
    ref = reference_util().community_detection(x, threshold=threshold, min_community_size=size,
                                               batch_size=batch)
    assert ours, "the groups should be found"
    assert_same_communities(f"community_detection t={threshold} min={size} batch={batch}",
                            ours, ref, x, threshold)


def test_community_detection_on_real_messages(real):
    _, x = real
    ours = util.community_detection(x, threshold=0.71, min_community_size=3)
    ref = reference_util().community_detection(x, threshold=0.71, min_community_size=3)
    assert_same_communities("community_detection on MiniLM embeddings", ours, ref, x, 0.71)


def test_community_detection_edge_cases():
    ref_util = reference_util()
    for what, x, kw in [("empty", np.zeros((0, 32), np.float32), {}),
                        ("fewer than min_community_size", A[:5], {}),
                        ("one vector, min size 1", A[0], {"min_community_size": 1}),
                        ("every vector alone", A, {"min_community_size": 1})]:
        assert util.community_detection(x, **kw) == ref_util.community_detection(x, **kw), what


# ---------------------------------------------------------------------------- quantization

@pytest.mark.parametrize("precision", util.PRECISIONS)
@pytest.mark.parametrize("calibration", ["embeddings", "calibration_embeddings", "ranges"])
@pytest.mark.parametrize("source", ["random", "real", "float64"])
def test_quantize_embeddings_equals_the_reference_exactly(precision, calibration, source, real):
    ref_util = reference_util()
    x, other = data("random" if source == "float64" else source, real)
    if source == "float64":
        x, other = x.astype(np.float64), other.astype(np.float64)
    kwargs = {"embeddings": {}, "calibration_embeddings": {"calibration_embeddings": other},
              "ranges": {"ranges": np.vstack([other.min(0), other.max(0)])}}[calibration]
    ours = util.quantize_embeddings(x, precision, **kwargs)
    ref = ref_util.quantize_embeddings(x, precision, **kwargs)
    assert ours.dtype == ref.dtype and ours.shape == ref.shape
    differ = int((ours != ref).sum())
    print(f"\nquantize {source} {precision} from {calibration}: {ours.dtype} {ours.shape}, "
          f"{differ} values differ")
    assert differ == 0
    one = util.quantize_embeddings(x[0], precision, **kwargs) if calibration != "embeddings" \
        else None  # one vector: ranges must come from elsewhere
    if one is not None:
        assert (one == ref_util.quantize_embeddings(x[0], precision, **kwargs)).all()


def test_quantize_embeddings_tensors_lists_and_multi_vector(real):
    torch = pytest.importorskip("torch")
    ref_util = reference_util()
    _, x = real
    for precision in ("int8", "ubinary"):
        ours = util.quantize_embeddings(torch.from_numpy(x), precision)
        assert (ours == ref_util.quantize_embeddings(torch.from_numpy(x), precision)).all()
        ours = util.quantize_embeddings(list(x[:50]), precision)
        assert (ours == ref_util.quantize_embeddings(list(x[:50]), precision)).all()
        matrices = [x[:10], x[10:13], x[13:40]]  # three texts' token vectors: shared ranges
        ours = util.quantize_embeddings(matrices, precision)
        ref = ref_util.quantize_embeddings(matrices, precision)
        assert len(ours) == 3 and all((o == r).all() and o.dtype == r.dtype
                                      for o, r in zip(ours, ref))
        empty = util.quantize_embeddings(np.zeros((0, 384), np.float32), precision)
        ref_empty = ref_util.quantize_embeddings(np.zeros((0, 384), np.float32), precision)
        assert empty.shape == ref_empty.shape and empty.dtype == ref_empty.dtype
    assert util.quantize_embeddings([], "int8") == []


def test_quantize_embeddings_refuses_what_the_reference_refuses():
    ref_util = reference_util()
    cases = [("one vector, no ranges", (A[:1], "int8")), ("1-D, no ranges", (A[0], "uint8")),
             ("integers", (A.astype(np.int8), "binary")), ("unknown precision", (A, "int4"))]
    for what, args in cases:
        with pytest.raises(minisbert.EmbeddingInputError) as ours:
            util.quantize_embeddings(*args)
        print(f"\n{what}: {ours.value}")
        with pytest.raises(Exception):
            ref_util.quantize_embeddings(*args)
