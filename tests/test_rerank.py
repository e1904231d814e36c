"""Cross-encoders (minisbert.CrossEncoder) against sentence-transformers' CrossEncoder.

The folders are random-weight rerankers at the layouts of ms-marco-MiniLM-L6-v2 (BERT),
bge-reranker-base / bge-reranker-v2-m3 (XLM-R) and gte-reranker-modernbert-base (ModernBERT),
saved by sentence-transformers
(tests/cross_encoder_folders.py). The pairs are real catalog messages (tests/corpus.py), some
made longer than max_length on the query's side, on the passage's, or on both, so the
"longest first" cut is compared too. Each test prints the worst difference.

Tolerances: token ids and type ids equal; scores (after the activation) within 1e-5; raw
logits within 1e-4 + 1e-5 relative. The NumPy-only tests (textbook against fast form, inputs,
broken folders) run without the reference stack.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

import cross_encoder_folders as cef
import minisbert
from minisbert import encoder, textbook

SCORE_TOL = 1e-5


def long_pairs(pairs: list[tuple[str, str]], n: int = 6) -> list[tuple[str, str]]:
    """Pairs past max_length on the query's side, the passage's, and both."""
    out = []
    for i, (q, p) in enumerate(pairs[:3 * n]):
        side = i % 3
        out.append((" ".join([q] * 25) if side != 1 else q, " ".join([p] * 12) if side else p))
    return out


@pytest.fixture(scope="module")
def pairs():
    base = cef.query_passage_pairs(60)
    return base + long_pairs(base)


# ---------------------------------------------------------------------------- the folders

@pytest.fixture(scope="module")
def minilm_reranker(tmp_path_factory, minilm_path):
    """ms-marco-MiniLM-L6-v2's layout (BERT 6 × 384, 12 heads, one label, the real 30,522
    WordPiece vocabulary) with max_length 64, so that catalog pairs get cut."""
    pytest.importorskip("sentence_transformers")
    return cef.make_bert_reranker(tmp_path_factory.mktemp("ce") / "ms-marco-MiniLM-L6-v2",
                                  minilm_path, max_length=64)


@pytest.fixture(scope="module")
def bge_reranker(tmp_path_factory, sp_model):
    """bge-reranker-base's head and tokenizer, reduced width and depth, max_length 64."""
    pytest.importorskip("sentence_transformers")
    return cef.make_xlmr_reranker(tmp_path_factory.mktemp("ce") / "bge-reranker-base", sp_model,
                                  max_length=64)


@pytest.fixture(scope="module")
def bge_m3_reranker(tmp_path_factory, sp_model):
    """bge-reranker-v2-m3's 8,194 positions and max_length 8,192, reduced width and depth."""
    pytest.importorskip("sentence_transformers")
    return cef.make_xlmr_reranker(tmp_path_factory.mktemp("ce") / "bge-reranker-v2-m3", sp_model,
                                  layout=cef.BGE_V2_M3)


@pytest.fixture(scope="module")
def modernbert_reranker(tmp_path_factory):
    """gte-reranker-modernbert-base's head (mean pooling, dense without bias, GELU, a norm
    without shift) on gte-modernbert-base's reduced encoder (4 layers, local windows of 8 on
    either side), a ModernBERT-style tokenizer.json, max_length 64."""
    pytest.importorskip("sentence_transformers")
    root = tmp_path_factory.mktemp("ce")
    return cef.make_modernbert_reranker(root / "gte-reranker-modernbert-base",
                                        root / "tokenizers", max_length=64)


def with_config(folder: Path, target: Path, **changes) -> Path:
    """A copy of folder whose config.json has `changes`."""
    shutil.copytree(folder, target)
    config = json.loads((target / "config.json").read_text())
    (target / "config.json").write_text(json.dumps({**config, **changes}, indent=2))
    return target


@pytest.fixture(scope="module")
def numpy_reranker(tmp_path_factory, sp_model):
    return cef.make_numpy_reranker(tmp_path_factory.mktemp("ce") / "numpy-reranker", sp_model)


def without_tokenizer_json(folder: Path, target: Path) -> Path:
    """The folder with tokenizer.json removed: the vocab.txt or SentencePiece front end runs."""
    shutil.copytree(folder, target)
    (target / "tokenizer.json").unlink()
    return target


def reference(folder: Path):
    st = pytest.importorskip("sentence_transformers")
    return st.CrossEncoder(str(folder), device="cpu")


def check_pairs(folder: Path, ours_folder: Path, pairs, *, activation: str | None = None):
    """minisbert's predict on ours_folder against sentence-transformers' on folder: ids, type
    ids, scores and raw logits."""
    import torch
    ref = reference(folder)
    ours = minisbert.CrossEncoder(ours_folder)
    assert ours.max_length == ref.max_seq_length and ours.num_labels == ref.num_labels
    enc = ref.tokenizer([q for q, _ in pairs], [p for _, p in pairs], truncation="longest_first",
                        max_length=ref.max_seq_length)
    tokenized = ours.tokenize(pairs)
    bad = [i for i, (ids, types) in enumerate(tokenized)
           if ids != enc["input_ids"][i] or types != enc.get("token_type_ids", [types] * len(pairs))[i]]
    cut = sum(len(ids) == ours.max_length for ids, _ in tokenized)
    print(f"\n{len(pairs)} pairs, {cut} cut at max_length={ours.max_length}; id mismatches: {len(bad)}")
    assert not bad, [(pairs[i], tokenized[i], enc["input_ids"][i]) for i in bad[:2]]
    assert cut >= 6, "the pairs should reach max_length"

    ours_scores, ref_scores = ours.predict(pairs), ref.predict(pairs)
    diff = float(np.abs(ours_scores - ref_scores).max())
    print(f"scores ({ours.activation_fn}): ours[:3]={ours_scores[:3].tolist()} "
          f"ref[:3]={ref_scores[:3].tolist()}\nscores maxdiff = {diff:.3e}")
    assert ours_scores.dtype == np.float32 and ours_scores.shape == ref_scores.shape
    assert diff <= SCORE_TOL

    ours_logits = ours.predict(pairs, activation_fn="linear")
    ref_logits = ref.predict(pairs, activation_fn=torch.nn.Identity())
    print(f"logits maxdiff = {np.abs(ours_logits - ref_logits).max():.3e} "
          f"(largest {np.abs(ref_logits).max():.2f})")
    np.testing.assert_allclose(ours_logits, ref_logits, atol=1e-4, rtol=1e-5)
    return ours, ref


# ---------------------------------------------------------------------------- parity

@pytest.mark.parametrize("front_end", ["tokenizer.json", "vocab.txt"])
def test_minilm_reranker_scores(minilm_reranker, pairs, front_end, tmp_path):
    folder = minilm_reranker if front_end == "tokenizer.json" else \
        without_tokenizer_json(minilm_reranker, tmp_path / "vocab-only")
    check_pairs(minilm_reranker, folder, pairs)


@pytest.mark.parametrize("front_end", ["tokenizer.json", "sentencepiece"])
def test_bge_reranker_scores(bge_reranker, pairs, front_end, tmp_path):
    folder = bge_reranker if front_end == "tokenizer.json" else \
        without_tokenizer_json(bge_reranker, tmp_path / "sp-only")
    check_pairs(bge_reranker, folder, pairs)


def test_bge_v2_m3_reranker_scores(bge_m3_reranker, pairs, tmp_path):
    folder = without_tokenizer_json(bge_m3_reranker, tmp_path / "sp-only")
    ours = minisbert.CrossEncoder(folder)
    assert ours.max_length == 8192
    # the same model cut at 64 tokens, so truncation is compared too
    ref = reference(bge_m3_reranker)
    ref.max_seq_length = 64
    short = minisbert.CrossEncoder(folder, max_length=64)
    a, b = short.predict(pairs), ref.predict(pairs)
    print(f"\nmax_length 64: scores maxdiff = {np.abs(a - b).max():.3e}")
    assert np.abs(a - b).max() <= SCORE_TOL
    ref.max_seq_length = 8192
    a, b = ours.predict(pairs), ref.predict(pairs)
    print(f"max_length 8192: scores maxdiff = {np.abs(a - b).max():.3e}")
    assert np.abs(a - b).max() <= SCORE_TOL


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_modernbert_reranker_scores(modernbert_reranker, pairs, pooling, tmp_path):
    """gte-reranker-modernbert-base's mean pooling, and the same weights read at the first
    token (ModernBertConfig's default classifier_pooling)."""
    folder = modernbert_reranker if pooling == "mean" else \
        with_config(modernbert_reranker, tmp_path / "cls", classifier_pooling="cls")
    ours, _ = check_pairs(folder, folder, pairs)
    assert ours.head.pooling == pooling and ours.head.norm and not ours.head.dense_bias


def assert_same_order(ours: list[dict], ref: list[dict]) -> bool:
    """rank's order equals the reference's, except that exact ties of the reference may
    swap places. Distinct documents can make equal pairs once cut at max_length: the
    reference gives those bit-equal scores and keeps them in document order, while ours,
    computed in other batches, differ by rounding (3e-8) and come in either order."""
    ref_score = {r["corpus_id"]: r["score"] for r in ref}
    swapped = [(x["corpus_id"], y["corpus_id"]) for x, y in zip(ours, ref)
               if x["corpus_id"] != y["corpus_id"]]
    print(f"places where exact ties of the reference came in the other order: {len(swapped)}")
    assert len(ours) == len(ref) and all(ref_score[x] == ref_score[y] for x, y in swapped)
    return True


def test_modernbert_rank_and_pair_template(modernbert_reranker, pairs, tmp_path):
    """rank's order equals sentence-transformers'; a tokenizer.json whose pair template marks
    the second text with token type 1 changes nothing, as ModernBERT has no token types."""
    ours, ref = minisbert.CrossEncoder(modernbert_reranker), reference(modernbert_reranker)
    query, documents = pairs[1][0], list(dict.fromkeys(p for _, p in pairs))
    a, b = ours.rank(query, documents), ref.rank(query, documents)
    worst = max(abs(x["score"] - y["score"]) for x, y in zip(a, b))
    print(f"\nrank of {len(documents)} documents: maxdiff = {worst:.3e}")
    assert_same_order(a, b) and worst <= SCORE_TOL

    typed = tmp_path / "typed"
    shutil.copytree(modernbert_reranker, typed)
    tok = json.loads((typed / "tokenizer.json").read_text())
    for piece in tok["post_processor"]["pair"][3:]:  # $B [SEP]: token type 1, as BERT's
        next(iter(piece.values()))["type_id"] = 1
    (typed / "tokenizer.json").write_text(json.dumps(tok))
    typed_model = minisbert.CrossEncoder(typed)
    assert max(typed_model.tokenize(pairs[:1])[0][1]) == 1
    assert np.array_equal(typed_model.predict(pairs), ours.predict(pairs))


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_modernbert_head_textbook_equals_fast_form(modernbert_reranker, pairs, pooling,
                                                   tmp_path):
    """ModernBERT's head (pre-LN layers, the mean of the pair's tokens or its first token,
    the norm without shift) in textbook.classify and encoder.classify."""
    folder = modernbert_reranker if pooling == "mean" else \
        with_config(modernbert_reranker, tmp_path / "cls", classifier_pooling="cls")
    model = minisbert.CrossEncoder(folder)
    plain, fast = textbook_and_fast(model, pairs[::7])
    print(f"\n{pooling}: textbook vs fast: maxdiff = {np.abs(plain - fast).max():.3e}")
    np.testing.assert_allclose(fast, plain, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["bge-reranker-base", "bge-reranker-v2-m3",
                                    "gte-reranker-modernbert-base"])
def test_real_shape_rerankers(layout, sp_model, pairs, tmp_path):
    """The encoders at their real shapes (768 × 12, 1024 × 24, ModernBERT's 768 × 22), the
    test vocabularies (8,000 pieces or ids)."""
    pytest.importorskip("sentence_transformers")
    if layout == "gte-reranker-modernbert-base":
        folder = cef.make_modernbert_reranker(tmp_path / layout, tmp_path / "tokenizers",
                                              real=True, max_length=128)
        check_pairs(folder, folder, pairs)
        return
    shape = {"bge-reranker-base": cef.BGE_BASE, "bge-reranker-v2-m3": cef.BGE_V2_M3}[layout]
    folder = cef.make_xlmr_reranker(tmp_path / layout, sp_model, layout=shape, real=True,
                                    max_length=128)
    check_pairs(folder, without_tokenizer_json(folder, tmp_path / "sp-only"), pairs)


def test_rank_matches_reference(minilm_reranker, pairs):
    ours, ref = minisbert.CrossEncoder(minilm_reranker), reference(minilm_reranker)
    query = pairs[0][0]
    # distinct documents: two equal ones score equally up to rounding, in either order
    documents = list(dict.fromkeys(p for _, p in pairs))
    a = ours.rank(query, documents, return_documents=True)
    b = ref.rank(query, documents, return_documents=True)
    gap = min((x["score"] - y["score"] for x, y in zip(b, b[1:])
               if x["score"] != y["score"]), default=0)
    print(f"\nrank of {len(documents)} documents: ours top 3 "
          f"{[(r['corpus_id'], round(r['score'], 6)) for r in a[:3]]}, "
          f"reference {[(r['corpus_id'], round(r['score'], 6)) for r in b[:3]]}; "
          f"closest unequal reference scores {gap:.2e} apart")
    assert_same_order(a, b)
    assert all(r["text"] == documents[r["corpus_id"]] for r in a)
    assert max(abs(x["score"] - y["score"]) for x, y in zip(a, b)) <= SCORE_TOL
    top = ours.rank(query, documents, top_k=5)
    assert [r["corpus_id"] for r in top] == [r["corpus_id"] for r in a[:5]]
    assert set(top[0]) == {"corpus_id", "score"}


def test_single_pair_and_batch_sizes(minilm_reranker, pairs):
    ours = minisbert.CrossEncoder(minilm_reranker)
    many = ours.predict(pairs, batch_size=7)
    assert np.abs(many - ours.predict(pairs)).max() <= 1e-6
    one = ours.predict(pairs[3])
    assert np.ndim(one) == 0 and abs(float(one) - many[3]) <= 1e-6
    assert ours.predict([]).shape == (0,)
    as_list = ours.predict(pairs[:4], convert_to_numpy=False)
    assert isinstance(as_list, list) and len(as_list) == 4


def test_saved_activation_and_hub_layout(minilm_path, pairs, tmp_path):
    """An activation saved by sentence-transformers 6 (config_sentence_transformers.json) and
    one in config.json, as the hub's older reranker folders hold it."""
    folder = cef.make_bert_reranker(tmp_path / "identity", minilm_path, activation="identity",
                                    max_length=64, num_hidden_layers=2)
    ours, _ = check_pairs(folder, folder, pairs[-30:])
    assert ours.activation_fn == "linear"
    hub = cef.as_hub_folder(folder, tmp_path / "hub-tanh", activation="tanh")
    ref, ours = reference(hub), minisbert.CrossEncoder(hub)
    assert ours.activation_fn == "tanh"
    diff = np.abs(ours.predict(pairs[-30:]) - ref.predict(pairs[-30:])).max()
    print(f"hub folder, Tanh in config.json: maxdiff = {diff:.3e}")
    assert diff <= SCORE_TOL
    plain = cef.as_hub_folder(folder, tmp_path / "hub-default", activation=None)
    assert minisbert.CrossEncoder(plain).activation_fn == "sigmoid"  # the default for 1 label


def test_several_labels_and_softmax(minilm_path, pairs, tmp_path):
    """A 3-label classifier: [n, 3] scores, Identity by default, softmax on request; rank
    refuses it as sentence-transformers does."""
    folder = cef.make_bert_reranker(tmp_path / "nli", minilm_path, num_labels=3, max_length=64,
                                    num_hidden_layers=2)
    ours, ref = check_pairs(folder, folder, pairs[-30:])
    assert ours.predict(pairs[-30:]).shape == (30, 3) and ours.activation_fn == "linear"
    a = ours.predict(pairs[-30:], apply_softmax=True)
    b = ref.predict(pairs[-30:], apply_softmax=True)
    print(f"softmax maxdiff = {np.abs(a - b).max():.3e}")
    assert np.abs(a - b).max() <= SCORE_TOL and np.allclose(a.sum(axis=1), 1, atol=1e-6)
    with pytest.raises(minisbert.UnsupportedModelError, match="one label"):
        ours.rank("q", ["a", "b"])


# ---------------------------------------------------------------------------- NumPy alone

def test_textbook_equals_fast_form(numpy_reranker):
    """encoder.classify (packed tokens, the last layer for the first token only) against
    textbook.classify (the padded batch, every token) on pairs of different lengths."""
    import corpus
    model = minisbert.CrossEncoder(numpy_reranker)
    texts = corpus.spread(corpus.english("ja"), 40)
    plain, fast = textbook_and_fast(model, list(zip(texts[:20], texts[20:])))
    print(f"\ntextbook vs fast: maxdiff = {np.abs(plain - fast).max():.3e}")
    assert plain.shape == (20, 1)
    np.testing.assert_allclose(fast, plain, atol=1e-5, rtol=1e-5)


def textbook_and_fast(model, pairs) -> tuple[np.ndarray, np.ndarray]:
    """textbook.classify's and encoder.classify's logits for pairs, one padded batch of
    mixed lengths."""
    tokenized = model.tokenize(pairs)
    width = max(len(ids) for ids, _ in tokenized)
    ids = np.full((len(pairs), width), model.tokenizer.pad_id, dtype=np.int64)
    types, mask = np.zeros_like(ids), np.zeros_like(ids)
    for r, (x, t) in enumerate(tokenized):
        ids[r, :len(x)], types[r, :len(t)], mask[r, :len(x)] = x, t, 1
    assert len(set(mask.sum(1))) > 5  # the batch mixes lengths
    plain = textbook.classify(ids, mask, model.params, model.cfg, model.head, types)
    fast = encoder.classify(ids, mask, model.params, model.cfg, model.head, types)
    return plain, fast


@pytest.mark.parametrize("bad, match", [
    ("a string", "list of"),
    ([("q", 3)], r"pairs\[0\]"),
    ([("q", "a", "b")], r"pairs\[0\]"),
    ([["q", "a"], "qa"], r"pairs\[1\]"),
    (None, "list of"),
])
def test_bad_pairs_are_clear_errors(numpy_reranker, bad, match):
    model = minisbert.CrossEncoder(numpy_reranker)
    with pytest.raises(minisbert.PairInputError, match=match):
        model.predict(bad)


def test_bad_rank_inputs(numpy_reranker):
    model = minisbert.CrossEncoder(numpy_reranker)
    with pytest.raises(minisbert.PairInputError):
        model.rank(["q"], ["a"])
    with pytest.raises(minisbert.PairInputError):
        model.rank("q", "a document, not a list")
    with pytest.raises(ValueError, match="activation_fn"):
        model.predict([("q", "a")], activation_fn="softplus")


def test_folders_of_the_wrong_kind(numpy_reranker, sp_model, tmp_path):
    import xlmr_folder
    encoder_folder = xlmr_folder.make_numpy_xlmr_folder(tmp_path / "bi", sp_model, hidden=32,
                                                        layers=1, heads=4, intermediate=64,
                                                        max_seq_length=32)
    with pytest.raises(minisbert.UnsupportedModelError, match="ForSequenceClassification"):
        minisbert.CrossEncoder(encoder_folder)
    with pytest.raises(minisbert.UnsupportedModelError, match="CrossEncoder"):
        minisbert.load(numpy_reranker)
    # a head whose tensors do not fit the config: named, not a NumPy traceback
    broken = tmp_path / "broken"
    shutil.copytree(numpy_reranker, broken)
    config = json.loads((broken / "config.json").read_text())
    config["id2label"] = {"0": "a", "1": "b"}
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(minisbert.CheckpointError, match="classifier.out_proj"):
        minisbert.CrossEncoder(broken)
    # an activation sentence-transformers would import and minisbert does not implement
    (broken / "config.json").write_text(json.dumps(
        {**config, "id2label": {"0": "a"}, "sentence_transformers": {
            "activation_fn": "torch.nn.modules.activation.Softplus"}}))
    with pytest.raises(minisbert.UnsupportedModelError, match="Softplus"):
        minisbert.CrossEncoder(broken)
    # not torch's: sentence-transformers falls back to the default, with a warning
    (broken / "config.json").write_text(json.dumps(
        {**config, "id2label": {"0": "a"}, "sentence_transformers": {
            "activation_fn": "mypackage.Scorer"}}))
    with pytest.warns(UserWarning, match="not torch's"):
        assert minisbert.CrossEncoder(broken).activation_fn == "sigmoid"


# ---------------------------------------------------------------------------- the server

@pytest.fixture(scope="module")
def rerank_server(numpy_reranker, minilm_path, tmp_path_factory):
    """`minisbert serve` with an embedder and a reranker together, on a loopback port."""
    for name in ("starlette", "uvicorn", "httpx"):
        pytest.importorskip(name)
    from test_serve import Server
    srv = Server(["--model", minilm_path, "--model", numpy_reranker],
                 tmp_path_factory.mktemp("log") / "rerank-server.log")
    yield srv
    srv.stop()


def _post(server, path, body):
    import httpx
    return httpx.post(server.url + path, json=body, timeout=120)


def test_served_scores_equal_predict(rerank_server, numpy_reranker):
    import corpus
    model = minisbert.CrossEncoder(numpy_reranker)
    texts = corpus.spread(corpus.english("ja"), 30)
    query, documents = texts[0], texts[1:] + [" ".join(texts[1:8])]  # the last one gets cut
    want = model.predict([(query, d) for d in documents])
    logits = model.predict([(query, d) for d in documents], activation_fn="linear")
    order = [int(i) for i in np.argsort(-want, kind="stable")]

    r = _post(rerank_server, "/rerank", {"query": query, "texts": documents, "truncate": True,
                                         "return_text": True})
    assert r.status_code == 200, r.text
    got = r.json()
    assert [g["index"] for g in got] == order
    assert all(g["text"] == documents[g["index"]] for g in got)
    tei = max(abs(g["score"] - want[g["index"]]) for g in got)
    raw = _post(rerank_server, "/rerank", {"query": query, "texts": documents, "truncate": True,
                                           "raw_scores": True}).json()
    raw_diff = max(abs(g["score"] - logits[g["index"]]) for g in raw)
    assert set(raw[0]) == {"index", "score"}

    r = _post(rerank_server, "/v1/rerank", {"model": numpy_reranker.name, "query": query,
                                            "documents": [{"text": d} for d in documents],
                                            "top_n": 5, "return_documents": True})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [g["index"] for g in body["results"]] == order[:5]
    assert body["model"] == numpy_reranker.name
    assert all(g["document"] == {"text": documents[g["index"]]} for g in body["results"])
    pair_tokens = sum(len(ids) for ids, _ in model.tokenize([(query, d) for d in documents]))
    assert body["usage"]["total_tokens"] == pair_tokens
    cohere = max(abs(g["relevance_score"] - want[g["index"]]) for g in body["results"])
    print(f"\n/rerank maxdiff = {tei:.3e}, raw {raw_diff:.3e}; /v1/rerank maxdiff = {cohere:.3e}")
    assert max(tei, raw_diff, cohere) <= 1e-6


def test_concurrent_rerank_requests_share_batches(rerank_server, numpy_reranker):
    """16 clients at once: every answer equals predict."""
    from concurrent.futures import ThreadPoolExecutor
    import corpus
    model = minisbert.CrossEncoder(numpy_reranker)
    texts = corpus.spread(corpus.english("ja"), 80)
    jobs = [(texts[i], texts[i + 1:i + 9]) for i in range(0, 64, 4)]

    def ask(job):
        query, docs = job
        return _post(rerank_server, "/v1/rerank", {"query": query, "documents": docs}).json()

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(ask, jobs))
    worst = 0.0
    for (query, docs), answer in zip(jobs, answers):
        want = model.predict([(query, d) for d in docs])
        for g in answer["results"]:
            worst = max(worst, abs(g["relevance_score"] - want[g["index"]]))
    print(f"\n{len(jobs)} concurrent requests: maxdiff = {worst:.3e}")
    assert worst <= 1e-6


@pytest.mark.parametrize("path, body, status", [
    ("/rerank", {"texts": ["a"]}, 400),
    ("/rerank", {"query": "q"}, 400),
    ("/rerank", {"query": "q", "texts": []}, 400),
    ("/rerank", {"query": "q", "texts": ["a", 3]}, 400),
    ("/rerank", {"query": 5, "texts": ["a"]}, 400),
    ("/rerank", {"query": "q", "texts": ["a"], "raw_scores": "yes"}, 422),
    ("/rerank", {"query": "q", "texts": ["word " * 200]}, 413),
    ("/rerank", {"query": "q", "texts": ["a"] * 2049}, 413),
    ("/rerank", [1, 2], 400),
    ("/v1/rerank", {"query": "q", "documents": "a"}, 400),  # one string is a list of one: 200
    ("/v1/rerank", {"query": "q", "documents": ["a"], "top_n": 0}, 400),
    ("/v1/rerank", {"query": "q", "documents": ["a"], "top_n": "3"}, 400),
    ("/v1/rerank", {"query": "q", "documents": [{"title": "a"}]}, 400),
    ("/v1/rerank", {"query": "q", "documents": ["a"], "model": "nope"}, 404),
    ("/v1/rerank", {"query": "q", "documents": ["a"], "model": "MINILM"}, 400),
    ("/v1/embeddings", {"input": "a", "model": "RERANKER"}, 400),
    ("/v1/rerank", {"query": "", "documents": ["a"]}, 400),
])
def test_malformed_rerank_requests(rerank_server, minilm_path, numpy_reranker, path, body, status):
    if isinstance(body, dict) and body.get("model") in ("MINILM", "RERANKER"):
        body = {**body, "model": {"MINILM": minilm_path.name,
                                  "RERANKER": numpy_reranker.name}[body["model"]]}
    if path == "/v1/rerank" and body.get("documents") == "a":  # a single string is accepted
        r = _post(rerank_server, path, body)
        assert r.status_code == 200 and len(r.json()["results"]) == 1
        return
    r = _post(rerank_server, path, body)
    print(f"\n{path} {str(body)[:60]} -> {r.status_code} {r.text[:160]}")
    assert r.status_code == status
    error = r.json()
    if path == "/rerank":
        assert set(error) == {"error", "error_type"} and error["error"]
    else:
        assert error["error"]["message"]


def test_bad_json_body(rerank_server):
    import httpx
    r = httpx.post(rerank_server.url + "/v1/rerank", content=b"{not json", timeout=30)
    assert r.status_code == 400 and r.json()["error"]["message"]


# ---------------------------------------------------------------------------- the command line

SCORED = __import__("re").compile(r"Text: (.*?) \(Score:(-?\d+\.\d{3})\)$", __import__("re").M)


@pytest.fixture(scope="module")
def passages_file(tmp_path_factory, pairs):
    from minisbert.textfile import read_texts
    path = tmp_path_factory.mktemp("cli") / "passages.txt"
    passages = list(dict.fromkeys(p for _, p in cef.query_passage_pairs(40)))
    path.write_text("\n".join(passages) + "\n", encoding="utf-8")
    return path, read_texts(str(path), "lines", None)  # the texts as the command reads them


def test_rerank_command_equals_reference_rank(minilm_reranker, passages_file):
    from cli_support import run_cli
    path, passages = passages_file
    query = cef.query_passage_pairs(40)[5][0]
    proc = run_cli("rerank", "--model", minilm_reranker, "-q", query, "-i", path, "-k", "5")
    assert proc.returncode == 0, proc.stderr
    printed = SCORED.findall(proc.stdout)
    want = reference(minilm_reranker).rank(query, passages, top_k=5)
    print(f"\n{proc.stdout}reference: {[(w['corpus_id'], round(w['score'], 3)) for w in want]}")
    assert [text for text, _ in printed] == [passages[w["corpus_id"]] for w in want]
    assert all(abs(float(score) - w["score"]) <= 0.0005 + 1e-5 for (_, score), w in
               zip(printed, want))  # printed with 3 decimals


def test_search_with_rerank(minilm_reranker, minilm_path, passages_file):
    """search --rerank: the bi-encoder's top candidates (all 40 here, fewer than 50), reordered
    by the cross-encoder, equal sentence-transformers' rank of the same candidates."""
    from cli_support import run_cli
    path, passages = passages_file
    query = cef.query_passage_pairs(40)[7][0]
    proc = run_cli("search", "-i", path, "--model", minilm_path, "--rerank", minilm_reranker,
                   "-p", query, "-k", "3")
    assert proc.returncode == 0, proc.stderr
    printed = [text for text, _ in SCORED.findall(proc.stdout)]
    want = reference(minilm_reranker).rank(query, passages, top_k=3)
    print(f"\n{proc.stdout}")
    assert printed == [passages[w["corpus_id"]] for w in want]
    # with two candidates, only the bi-encoder's top two can come back
    proc = run_cli("search", "-i", path, "--model", minilm_path, "--rerank", minilm_reranker,
                   "-p", query, "-k", "1", "--rerank-candidates", "2")
    assert proc.returncode == 0 and len(SCORED.findall(proc.stdout)) == 1


def test_rerank_command_errors(numpy_reranker, minilm_path, tmp_path):
    from cli_support import assert_one_line_error, run_cli
    texts = tmp_path / "t.txt"
    texts.write_text("one\ntwo\n")
    assert_one_line_error(run_cli("rerank", "--model", minilm_path, "-q", "x", "-i", texts),
                          "ForSequenceClassification")
    assert_one_line_error(run_cli("search", "-i", texts, "--model", numpy_reranker, "-p", "x"),
                          "CrossEncoder")
    proc = run_cli("rerank", "--model", numpy_reranker, "-q", "one", "-i", texts)
    assert proc.returncode == 0 and len(SCORED.findall(proc.stdout)) == 2
