"""End to end on the real all-MiniLM-L6-v2: minisbert.encode against SentenceTransformer.encode
(batching, the encode API and the pooling error need no reference)."""

import shutil
import warnings

import numpy as np
import pytest

import corpus
import minisbert
from reference import compare, write_sentence_transformers_files

N_SENTENCES = 1200


@pytest.fixture(scope="module")
def texts():
    # whole messages, spread over every catalog: one-word labels up to multi-paragraph help
    # texts beyond max_seq_length
    return corpus.spread(corpus.english("ja"), N_SENTENCES)


def test_embeddings_match_sentence_transformers(minilm, minilm_reference, texts):
    ours, ref = minilm, minilm_reference
    n_long = sum(len(ours.tokenizer.tokenize(t)) + 2 > ours.max_seq_length for t in texts)
    print(f"\n{len(texts)} texts, {n_long} longer than max_seq_length={ours.max_seq_length}")
    assert n_long > 0
    a = ours.encode(texts)  # the folder has a Normalize module: already unit length
    b = ref.encode(texts)
    maxdiff, mincos = compare("all-MiniLM-L6-v2 normalized", a, b)
    assert maxdiff <= 1e-5 and mincos >= 1 - 1e-6


def test_unnormalized_pooled_output_matches(minilm_path, minilm_reference, texts):
    """Without the Normalize module the raw mean-pooled vectors are compared (atol 1e-4 + rtol 1e-5)."""
    from sentence_transformers import SentenceTransformer
    ours = minisbert.load(minilm_path)
    ours.normalize = False
    full = minilm_reference
    ref = SentenceTransformer(modules=[full[0], full[1]], device="cpu")  # no Normalize
    a, b = ours.encode(texts[:300]), ref.encode(texts[:300])
    compare("all-MiniLM-L6-v2 raw pooled", a, b)
    np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-5)


def test_alone_and_in_a_padded_batch_agree(minilm, texts):
    ours = minilm
    short = min(texts, key=len)
    batch = [short] + sorted(texts, key=len)[-31:]  # padded to the longest of 32
    alone = ours.encode(short)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", minisbert.TruncationWarning)  # the longest texts are cut
        in_batch = ours.encode(batch, batch_size=32)[0]
    diff = np.abs(alone - in_batch).max()
    print(f"\nalone vs padded batch: maxdiff = {diff:.2e}")
    assert diff <= 1e-6


def test_encode_api(minilm):
    ours = minilm
    one = ours.encode("A man is eating food.")
    assert one.shape == (384,) and one.dtype == np.float32
    many = ours.encode(["a", "a much longer sentence than the first one", "b"], batch_size=2)
    assert many.shape == (3, 384) and many.dtype == np.float32
    np.testing.assert_allclose(many[0], ours.encode("a"), atol=1e-6)  # input order restored
    assert ours.dim == 384 and ours.max_seq_length == 256
    # stripped like sentence-transformers
    np.testing.assert_allclose(ours.encode("  padded  "), ours.encode("padded"), atol=1e-7)


def test_max_seq_length_override(minilm_path, minilm_reference, monkeypatch, texts):
    long = max(texts, key=len)
    ours = minisbert.load(minilm_path, max_seq_length=32)
    ref = minilm_reference
    monkeypatch.setattr(ref, "max_seq_length", 32)  # the shared model gets 256 back afterwards
    assert ours.max_seq_length == 32
    compare("max_seq_length=32", ours.encode([long]), ref.encode([long]))
    np.testing.assert_allclose(ours.encode(long), ref.encode(long), atol=1e-5)


@pytest.mark.parametrize("mode", ["cls", *(pytest.param(m, marks=pytest.mark.slow)
                                            for m in ("max", "mean_sqrt_len_tokens",
                                                      "weightedmean", "lasttoken"))])
def test_pooling_modes(minilm_path, tmp_path, texts, mode):
    folder = tmp_path / mode
    shutil.copytree(minilm_path, folder)
    shutil.rmtree(folder / "1_Pooling")
    write_sentence_transformers_files(folder, dim=384, max_seq_length=256, pooling=mode)
    sample = texts[:200]
    a = minisbert.load(folder).encode(sample)
    st = pytest.importorskip("sentence_transformers")
    b = st.SentenceTransformer(str(folder), device="cpu").encode(sample)
    compare(f"pooling {mode}", a, b)
    np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-5)


def test_plain_huggingface_folder_loads_with_mean_pooling(minilm_path, tmp_path, texts):
    folder = tmp_path / "plain"
    shutil.copytree(minilm_path, folder)
    for name in ("modules.json", "sentence_bert_config.json"):
        (folder / name).unlink()
    shutil.rmtree(folder / "1_Pooling")
    st = pytest.importorskip("sentence_transformers")
    with pytest.warns(UserWarning, match="mean pooling"):
        ours = minisbert.load(folder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = st.SentenceTransformer(str(folder), device="cpu")
    assert ours.max_seq_length == ref.max_seq_length == 512
    sample = texts[:100]
    a, b = ours.encode(sample), ref.encode(sample)
    compare("plain HF folder", a, b)
    np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-5)


def test_unsupported_pooling_is_a_clear_error(minilm_path, tmp_path):
    folder = tmp_path / "attention"
    shutil.copytree(minilm_path, folder)
    (folder / "1_Pooling" / "config.json").write_text(
        '{"word_embedding_dimension": 384, "pooling_mode": "attention"}')
    with pytest.raises(minisbert.UnsupportedModelError, match="'attention' is not supported"):
        minisbert.load(folder)
