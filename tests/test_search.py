"""cos_sim and semantic_search against sentence-transformers' util, and saved indexes.

The reference results come from `sentence_transformers.util` (torch) on the same embeddings;
the index tests store sentence-transformers' own embeddings of examples/input.txt.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import minisbert
from minisbert.errors import SearchIndexError
from minisbert.fingerprint import model_fingerprint
from minisbert.index import check_model, model_identity, read_index, write_index

from cli_support import EXAMPLE, assert_one_line_error, run_cli


@pytest.fixture(scope="module")
def util():
    pytest.importorskip("torch")
    return pytest.importorskip("sentence_transformers").util


@pytest.fixture(scope="module")
def reference_search(util):
    """sentence-transformers' semantic_search on NumPy arrays."""
    import torch

    def search(queries, corpus, top_k):
        return util.semantic_search(torch.from_numpy(queries), torch.from_numpy(corpus), top_k=top_k)
    return search


def assert_same_hits(ours, ref, tie=1e-6) -> None:
    """Same scores rank by rank; same corpus ids except where scores tie (order undefined)."""
    assert len(ours) == len(ref)
    worst = 0.0
    for q, (o, r) in enumerate(zip(ours, ref)):
        assert len(o) == len(r), q
        o_scores = np.array([h["score"] for h in o])
        r_scores = np.array([h["score"] for h in r])
        worst = max(worst, float(np.abs(o_scores - r_scores).max(initial=0)))
        np.testing.assert_allclose(o_scores, r_scores, atol=2e-6)
        for rank, (a, b) in enumerate(zip(o, r)):
            if a["corpus_id"] != b["corpus_id"]:  # allowed only between tied scores
                assert abs(a["score"] - b["score"]) < tie, (q, rank, a, b)
    print(f"\n{len(ours)} queries, top {len(ours[0]) if ours else 0}: "
          f"max score difference = {worst:.2e}")


def test_cos_sim_matches_sentence_transformers(util):
    rng = np.random.default_rng(0)
    a = rng.normal(size=(7, 48)).astype(np.float32)
    b = rng.normal(size=(50, 48)).astype(np.float32)
    b[3] = 0  # a zero vector: both clamp the norm at 1e-12 and give 0, not NaN
    ours = minisbert.cos_sim(a, b)
    ref = util.cos_sim(a, b).numpy()
    print(f"\ncos_sim [7, 50]: max difference = {np.abs(ours - ref).max():.2e}")
    assert ours.shape == (7, 50) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, atol=1e-6)
    # A single vector counts as one row, as in sentence-transformers.
    np.testing.assert_allclose(minisbert.cos_sim(a[0], b), util.cos_sim(a[0], b).numpy(), atol=1e-6)


@pytest.mark.parametrize("n_queries, n_corpus, top_k, query_chunk, corpus_chunk", [
    (1, 5, 10, 100, 50_000),       # top_k larger than the corpus: all of it, ranked
    (20, 3000, 1, 7, 256),         # the CLI's default top_k
    (20, 3000, 10, 7, 256),
    (20, 3000, 60, 6, 25),         # top_k larger than a corpus chunk: the merge carries it
    (33, 1000, 1000, 10, 333),     # top_k = corpus: a full ranking
])
def test_semantic_search_matches_sentence_transformers(reference_search, n_queries, n_corpus, top_k,
                                                       query_chunk, corpus_chunk):
    rng = np.random.default_rng(n_corpus + top_k)
    queries = rng.normal(size=(n_queries, 48)).astype(np.float32)
    corpus = rng.normal(size=(n_corpus, 48)).astype(np.float32)
    ours = minisbert.semantic_search(queries, corpus, top_k=top_k, query_chunk_size=query_chunk,
                                     corpus_chunk_size=corpus_chunk)
    assert_same_hits(ours, reference_search(queries, corpus, top_k))


def test_semantic_search_on_real_embeddings(minilm_reference, reference_search):
    """sentence-transformers' own MiniLM embeddings of the example file: same ranking."""
    model = minilm_reference
    texts = EXAMPLE.read_text(encoding="utf-8").splitlines()
    corpus = model.encode(texts)
    queries = model.encode(["How fast is the neural accelerator?", "明日は雨ですか？",
                            "when does the library open", "planets and their moons"])
    ours = minisbert.semantic_search(queries, corpus, top_k=5, corpus_chunk_size=4)
    assert_same_hits(ours, reference_search(queries, corpus, 5))


def large_search(**chunks):
    """30 queries over a 200k x 64 corpus; the score blocks semantic_search asked for."""
    rng = np.random.default_rng(1)
    corpus = rng.normal(size=(200_000, 64)).astype(np.float32)
    queries = rng.normal(size=(30, 64)).astype(np.float32)
    blocks = []

    def spy(q, c):
        blocks.append((len(q), len(c)))
        return minisbert.cos_sim(q, c)

    hits = minisbert.semantic_search(queries, corpus, top_k=10, score_function=spy, **chunks)
    return queries, corpus, hits, blocks


def test_chunked_search_over_large_corpus_equals_unchunked():
    """200k x 64 corpus in small odd-sized blocks: same hits as in one block, and no score
    block ever larger than the chunk sizes."""
    _, _, chunked, blocks = large_search(query_chunk_size=8, corpus_chunk_size=7919)
    assert max(b[0] for b in blocks) <= 8 and max(b[1] for b in blocks) <= 7919
    assert len(blocks) == 4 * 26  # ceil(30/8) query chunks x ceil(200000/7919) corpus chunks
    _, _, whole, blocks = large_search(query_chunk_size=30, corpus_chunk_size=200_000)
    assert blocks == [(30, 200_000)]
    assert_same_hits(chunked, whole)


def test_chunked_search_over_large_corpus_matches_sentence_transformers(reference_search):
    queries, corpus, chunked, _ = large_search(query_chunk_size=8, corpus_chunk_size=7919)
    assert_same_hits(chunked, reference_search(queries, corpus, 10))


# ---------------------------------------------------------------------------- indexes

def perturbed_copy(src, dst):
    """A model folder with src's config and safetensors header but slightly different weights,
    like a fine-tuned model: only the weight samples can tell the two apart."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("model.safetensors"))
    raw = bytearray((src / "model.safetensors").read_bytes())
    data_start = 8 + int.from_bytes(raw[:8], "little")
    weights = np.frombuffer(raw, dtype="<f4", offset=data_start)  # every tensor is F32 here
    noise = np.random.default_rng(0).normal(scale=0.01, size=weights.shape).astype(np.float32)
    raw[data_start:] = (weights * (1 + noise)).astype("<f4").tobytes()
    (dst / "model.safetensors").write_bytes(raw)
    return dst


@pytest.fixture(scope="module")
def reference(minilm_reference):
    """sentence-transformers' MiniLM and its embeddings of the example file's lines."""
    model = minilm_reference
    texts = [t for t in EXAMPLE.read_text(encoding="utf-8").splitlines() if t.strip()]
    return model, texts, model.encode(texts)


def test_index_written_reloaded_memory_mapped_and_queried(tmp_path, minilm_path, minilm, reference,
                                                         reference_search):
    st_model, texts, embeddings = reference
    identity = model_identity(minilm, minilm_path)
    write_index(tmp_path / "idx", texts, embeddings, identity)

    index = read_index(tmp_path / "idx")
    assert isinstance(index.embeddings, np.memmap) and index.embeddings.dtype == np.float32
    assert index.texts == texts and index.model == identity
    np.testing.assert_array_equal(index.embeddings, embeddings)
    query = st_model.encode(["Which train goes to Sapporo?"])
    ours = minisbert.semantic_search(query, index.embeddings, top_k=3)
    assert_same_hits(ours, reference_search(query, embeddings, 3))
    assert "Sapporo" in texts[ours[0][0]["corpus_id"]]
    check_model(index, identity)  # its own model: accepted


def test_fingerprint_follows_the_weights_not_the_formatting(tmp_path, minilm_path):
    same = shutil.copytree(minilm_path, tmp_path / "same")
    config = json.loads((same / "config.json").read_text())
    config["transformers_version"] = "9.9.9"  # bookkeeping, and a different layout of the file
    (same / "config.json").write_text(json.dumps(config, indent=7, sort_keys=True))
    other = perturbed_copy(minilm_path, tmp_path / "other")
    prints = {p.name: model_fingerprint(p) for p in (minilm_path, same, other)}
    print(f"\nfingerprints: {prints}")
    assert prints["same"] == prints["model"]
    assert prints["other"] != prints["model"]


def test_index_refuses_another_model(tmp_path, minilm_path, minilm, reference):
    from sentence_transformers import SentenceTransformer
    _, texts, embeddings = reference
    other = perturbed_copy(minilm_path, tmp_path / "other-model")
    # The perturbed model really embeds differently, so the refusal is warranted.
    moved = SentenceTransformer(str(other), device="cpu").encode(texts[:3])
    assert np.abs(moved - embeddings[:3]).max() > 1e-3

    write_index(tmp_path / "idx", texts, embeddings,
                model_identity(minilm, minilm_path))
    with pytest.raises(SearchIndexError, match="was made with model 'model'"):
        check_model(read_index(tmp_path / "idx"),
                    model_identity(minisbert.load(other), other))
    proc = run_cli("search", "--index", tmp_path / "idx", "--model", other, "-p", "trains")
    assert_one_line_error(proc, "idx was made with model 'model'", "'other-model'",
                          "not comparable")
    assert proc.stdout == ""
