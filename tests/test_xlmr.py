"""XLM-RoBERTa (paraphrase-multilingual-mpnet-base-v2's architecture) against HuggingFace.

Ids: minisbert's SentencePiece front end against transformers' XLMRobertaTokenizer on the
translated gettext messages of 21 languages (40,000 spread over them by default, every one with
--slow), with a SentencePiece model trained on those catalogs
(stored in tests/fixtures; without transformers, tests/test_tokenizer_fixtures.py checks the ids). Where the two differ, the difference must belong to a class this file documents
(and shows); anything else fails.
Embeddings: minisbert against sentence-transformers on random-weight XLMRobertaModels, small
(always) and at the real model's shapes (--slow).
"""

from __future__ import annotations

import json
import re
import resource
import shutil
import subprocess
import sys
import time
import warnings
from collections import Counter

import numpy as np
import pytest

import corpus
import minisbert
import xlmr_folder
from minisbert.tokenizer import load_tokenizer
from minisbert.tokenizer.xlmr import XLMRobertaTokenizer
from reference import compare
from tokenizer_fixtures import XLMR_EDGE, XLMR_LITERAL_SPECIALS
from xlmr_folder import DOCUMENTED, MAX_LEN, documented_class, hf_ids, sp_ids


# ---------------------------------------------------------------------------- fixtures
# sp_model, xlmr_tokenizer_folder and xlmr_reference (transformers) come from conftest.py.

@pytest.fixture(scope="session")
def sp(sp_model):
    """Plain SentencePiece on the same model."""
    sentencepiece = pytest.importorskip("sentencepiece")
    return sentencepiece.SentencePieceProcessor(model_file=str(sp_model))


@pytest.fixture(scope="session")
def tok_folder(xlmr_tokenizer_folder):
    return xlmr_tokenizer_folder


@pytest.fixture(scope="session")
def hf(xlmr_reference):
    return xlmr_reference


@pytest.fixture(scope="session")
def ours(tok_folder):
    pytest.importorskip("sentencepiece")
    tok = load_tokenizer(tok_folder, MAX_LEN)
    assert isinstance(tok, XLMRobertaTokenizer)
    return tok


# ---------------------------------------------------------------------------- documented classes
# xlmr_folder.documented_class says how each class is recognised; DOCUMENTED holds examples.

@pytest.mark.parametrize("cls,text", [(c, t) for c, ts in DOCUMENTED.items() for t in ts])
def test_documented_difference(cls, text, sp, hf, ours):
    ref = hf_ids(hf, [text])[0]
    mine = ours.encode(text)
    print(f"\n{cls}: {text!r}\n  ours {hf.convert_ids_to_tokens(mine)}"
          f"\n  HF   {hf.convert_ids_to_tokens(ref)}")
    assert mine != ref, ("HuggingFace agrees here now: drop the example (for a score tie, the "
                         "SentencePiece model may have changed and no longer tie on it)")
    assert mine == sp_ids(sp, text)
    assert documented_class(text, sp, hf, ours) == cls


# ---------------------------------------------------------------------------- ids

def test_id_table_matches_reference(sp, hf, ours):
    """XLM-R's numbering: <s>=0 <pad>=1 </s>=2 <unk>=3, piece i -> i+1, <mask> last."""
    n = sp.get_piece_size()
    assert hf.convert_ids_to_tokens([0, 1, 2, 3, n + 1]) == ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    assert hf.convert_tokens_to_ids([sp.id_to_piece(i) for i in range(3, n)]) == list(range(4, n + 1))
    assert len(hf) == n + 2
    assert ours.special_ids == {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": n + 1}
    assert (ours.cls_id, ours.sep_id, ours.pad_id) == (hf.cls_token_id, hf.sep_token_id, hf.pad_token_id)


def test_ids_match_reference_on_corpus(sp, hf, ours, corpus_share):
    """Every translated message of 21 languages with --slow (over 500,000); by default 40,000
    of them taken evenly across the catalogs, which keeps the default run short."""
    texts = xlmr_folder.corpus_texts()
    assert len(texts) > 500_000
    texts = corpus_share(texts, 40_000)  # every one with --slow
    start = time.perf_counter()
    ref = hf_ids(hf, texts)
    t_ref = time.perf_counter() - start
    start = time.perf_counter()
    mine = ours.encode_batch(texts)
    t_ours = time.perf_counter() - start
    assert mine[:2000] == [ours.encode(t) for t in texts[:2000]]  # batch == one by one

    bad = [i for i, (a, b) in enumerate(zip(mine, ref)) if a != b]
    classes = {i: documented_class(texts[i], sp, hf, ours) for i in bad}
    counts = Counter(classes.values())
    print(f"\ncompared {len(texts)} messages of {len(xlmr_folder.LANGS)} languages "
          f"({sum(map(len, ref))} ids, {sum(len(r) == MAX_LEN for r in ref)} truncated at {MAX_LEN}); "
          f"HF {t_ref:.1f}s, ours {t_ours:.1f}s")
    print(f"mismatches: {len(bad)} " + str(dict(counts)))
    for i in bad:
        a, b = mine[i], ref[i]
        k = next((j for j, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        window = slice(max(k - 2, 0), k + 3)  # around the first differing id
        print(f"  [{classes[i]}] {texts[i][:60]!r}\n    ours {hf.convert_ids_to_tokens(a[window])}"
              f"\n    HF   {hf.convert_ids_to_tokens(b[window])}")
    assert counts[None] == 0, "mismatches outside the documented classes"
    for i in bad:
        assert mine[i] == sp_ids(sp, texts[i])


@pytest.mark.parametrize("name", [*XLMR_EDGE, "long text"])
@pytest.mark.parametrize("max_length", [128, MAX_LEN])
def test_edge_strings(name, max_length, hf, tok_folder):
    text = XLMR_EDGE[name] if name in XLMR_EDGE else " ".join(corpus.translations("ja")[:300])
    tok = load_tokenizer(tok_folder, max_length)
    ref = hf_ids(hf, [text], max_length)[0]
    assert tok.encode(text) == ref
    assert len(ref) <= max_length


@pytest.mark.parametrize("text", XLMR_LITERAL_SPECIALS)
def test_literal_special_tokens_match_reference(text, hf, ours):
    """We take literal special tokens as HF does (not as plain SentencePiece would)."""
    assert ours.encode(text) == hf_ids(hf, [text])[0]


FRAGMENTS = ["<s>", "</s>", "<pad>", "<unk>", "<mask>", "<", ">", "/", "s", "mask", " ", "  ",
             "\n", "\t", "hello", "мир", "世界", "こんにちは", "مرحبا", "नमस्ते", "สวัสดี", "▁", "123",
             "-", "é", "x"]


def test_random_mixtures_of_specials_and_text(sp, hf, ours):
    """Text fragments, whitespace and special tokens glued in any order (literal ones too,
    "<" + "mask" + ">")."""
    hypothesis = pytest.importorskip("hypothesis")
    st = pytest.importorskip("hypothesis.strategies")

    @hypothesis.settings(max_examples=400, deadline=None, database=None)
    @hypothesis.given(parts=st.lists(st.sampled_from(FRAGMENTS), max_size=12))
    def check(parts):
        text = "".join(parts)
        if ours.encode(text) != hf_ids(hf, [text])[0]:
            # none of these fragments is in a documented class, but runs of "-" can tie
            assert documented_class(text, sp, hf, ours) == "score tie", text

    check()


# ---------------------------------------------------------------------------- errors

def test_missing_sentencepiece_library(tok_folder, monkeypatch):
    monkeypatch.setitem(sys.modules, "sentencepiece", None)  # makes `import sentencepiece` fail
    with pytest.raises(minisbert.MissingDependencyError, match=r"pip install 'minisbert\[xlmr\]'"):
        load_tokenizer(tok_folder, 128)


def test_missing_model_file(tok_folder, tmp_path):
    shutil.copy(tok_folder / "tokenizer_config.json", tmp_path)
    with pytest.raises(minisbert.ModelFileMissing, match="sentencepiece.bpe.model"):
        load_tokenizer(tmp_path, 128)


@pytest.mark.parametrize("content,match", [
    (b"\x00garbage\xff" * 10, "not a SentencePiece model"),
    (b"version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 5069051\n", "Git LFS pointer"),
])
def test_corrupt_model_file(tok_folder, tmp_path, content, match):
    shutil.copy(tok_folder / "tokenizer_config.json", tmp_path)
    (tmp_path / "sentencepiece.bpe.model").write_bytes(content)
    with pytest.raises(minisbert.TokenizerError, match=match) as e:
        load_tokenizer(tmp_path, 128)
    assert str(tmp_path / "sentencepiece.bpe.model") in str(e.value)


@pytest.mark.parametrize("config", [{"tokenizer_class": "XLMRobertaTokenizerFast"}, None])
def test_tokenizer_dispatch(tok_folder, tmp_path, config):
    """tokenizer_class with or without "Fast"; no tokenizer_config.json at all, only the model."""
    shutil.copy(tok_folder / "sentencepiece.bpe.model", tmp_path)
    if config is not None:
        (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    assert isinstance(load_tokenizer(tmp_path, 128), XLMRobertaTokenizer)


# ---------------------------------------------------------------------------- embeddings

def embedding_texts(per_lang: int, long_per_lang: int) -> list[str]:
    """Messages spread over each language's catalogs, plus some of its longest ones, which
    run past max_seq_length and so test truncation."""
    texts = []
    for lang in xlmr_folder.LANGS:
        msgs = corpus.translations(lang)
        texts += corpus.spread(msgs, per_lang)
        texts += corpus.spread([m for m in msgs if len(m) > 400], long_per_lang)
    texts += ["", "👨\u200d👩\u200d👧\u200d👦", "hello <mask> world", "</s> x <s>"]
    return list(dict.fromkeys(texts))


def check_embeddings(folder, texts, max_seq_length, ours_raw=None):
    """sentence-transformers vs minisbert on `texts`: ids first, then pooled and normalized."""
    from sentence_transformers import SentenceTransformer
    st = SentenceTransformer(str(folder), device="cpu")
    model = minisbert.load(folder)
    assert model.max_seq_length == max_seq_length and model.cfg.positions_after_padding_idx
    ref_ids = hf_ids(st.tokenizer, [t.strip() for t in texts], max_seq_length)
    our_ids = model.tokenizer.encode_batch([t.strip() for t in texts])
    assert our_ids == ref_ids
    print(f"\n{len(texts)} texts, {sum(len(r) == max_seq_length for r in ref_ids)} "
          f"truncated at {max_seq_length} tokens")

    start = time.perf_counter()
    ref = st.encode(texts, convert_to_numpy=True)
    t_ref = time.perf_counter() - start
    if ours_raw is None:
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", minisbert.TruncationWarning)  # cut on purpose
            ours_raw = model.encode(texts)
        print(f"encode: sentence-transformers {t_ref:.1f}s, minisbert {time.perf_counter() - start:.1f}s")
    else:
        print(f"encode: sentence-transformers {t_ref:.1f}s")
    raw = ours_raw
    compare("pooled", raw, ref)
    np.testing.assert_allclose(raw, ref, atol=1e-4, rtol=1e-5)
    unit = ref / np.linalg.norm(ref, axis=1, keepdims=True)
    maxdiff, mincos = compare("normalized", minisbert.pooling.normalize(raw), unit)
    assert maxdiff <= 1e-5 and mincos >= 1 - 1e-6
    return ref_ids


@pytest.fixture(scope="session")
def small_folder(tmp_path_factory, sp_model):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("sentence_transformers")
    # max_position_embeddings = max_seq_length + 2: a 64-token text uses the table's last row.
    return xlmr_folder.make_xlmr_folder(tmp_path_factory.mktemp("xlmr_small"), sp_model, hidden=96,
                                        layers=2, heads=4, intermediate=384, max_seq_length=64,
                                        max_position_embeddings=66)


def test_embeddings_small_model(small_folder):
    texts = embedding_texts(per_lang=20, long_per_lang=6)
    ids = check_embeddings(small_folder, texts, max_seq_length=64)
    assert len(texts) >= 500 and sum(len(r) == 64 for r in ids) >= 100


# HF numbers XLM-R positions over tokens that are not <pad> (encoder.position_ids; see
# docs/how-it-works.md), not over the attention mask: they differ only when the text itself
# holds a literal <pad> (id 1).
def test_embeddings_with_literal_pad_token(small_folder):
    check_embeddings(small_folder, ["a <pad> b", "<pad>", "plain text"], max_seq_length=64)


def test_unsupported_architectures_are_clear_errors(small_folder, tmp_path):
    base = json.loads((small_folder / "config.json").read_text())
    from minisbert.families import FAMILIES
    supported = re.escape(", ".join(FAMILIES))
    cases = [({"model_type": "gpt2", "architectures": ["GPT2Model"]},
              f"'gpt2'.*GPT2Model.*runs {supported} encoders"),
             ({"model_type": "t5"}, f"'t5'.*runs {supported}"),
             ({"model_type": None}, "model_type None"),
             ({"position_embedding_type": "relative_key"}, "relative_key")]
    for change, match in cases:
        folder = tmp_path / str(len(list(tmp_path.iterdir())))
        shutil.copytree(small_folder, folder)
        (folder / "config.json").write_text(json.dumps({**base, **change}))
        with pytest.raises(minisbert.UnsupportedModelError, match=match):
            minisbert.load(folder)


# ---------------------------------------------------------------------------- real shapes

# Load and encode in a fresh process (no torch in it), so its memory is minisbert's own. Memory is
# read from /proc: ru_maxrss would report the parent's peak, which Linux carries across exec.
_OURS_IN_SUBPROCESS = """
import json, sys, time
import numpy as np
import minisbert

def status_mb(key):  # VmRSS: resident now; VmHWM: peak resident
    line = next(l for l in open("/proc/self/status") if l.startswith(key + ":"))
    return int(line.split()[1]) / 1024

def mapped_mb(path):  # resident pages of the memory-mapped checkpoint
    rss, inside = 0, False
    for line in open("/proc/self/smaps"):
        if "-" in line.split()[0]:
            inside = line.rstrip().endswith(path)
        elif inside and line.startswith("Rss:"):
            rss += int(line.split()[1])
    return rss / 1024

folder, texts_path, out_path = sys.argv[1:]
texts = json.load(open(texts_path))
start = time.perf_counter()
model = minisbert.load(folder)
loaded = time.perf_counter()
rss_loaded = status_mb("VmRSS")
emb = model.encode(texts)
done = time.perf_counter()
np.save(out_path, emb)
print(json.dumps({"load_s": loaded - start, "encode_s": done - loaded, "rss_after_load_mb": rss_loaded,
                  "peak_mb": status_mb("VmHWM"),
                  "checkpoint_resident_mb": mapped_mb(folder + "/model.safetensors")}))
"""


@pytest.mark.slow
def test_embeddings_base_size_model(tmp_path, sp_model):
    """paraphrase-multilingual-mpnet-base-v2's shapes: 12 x 768, 12 heads, 3072, vocab 250002,
    514 positions, max_seq_length 128; random weights, our small SentencePiece model."""
    # Weight std 0.07, not 0.2: attention logits spread by about width·std², so 0.07 at width
    # 768 makes attention as sharp as 0.2 does in the 96-wide model. At 0.2 this deep and wide
    # the model is chaotic: torch fp32 itself is 2.6e-3 away from torch fp64 on the pooled
    # output, so no fp32 implementation could be held to the tolerances below.
    for name in ("torch", "transformers", "sentence_transformers"):
        pytest.importorskip(name)
    start = time.perf_counter()
    folder = xlmr_folder.make_xlmr_folder(tmp_path / "base", sp_model, hidden=768, layers=12,
                                          heads=12, intermediate=3072, max_seq_length=128,
                                          max_position_embeddings=514, vocab_size=250002, std=0.07)
    print(f"\nbuilt and saved the base-size model in {time.perf_counter() - start:.1f}s "
          f"({(folder / 'model.safetensors').stat().st_size / 2**30:.2f} GiB)")
    texts = embedding_texts(per_lang=20, long_per_lang=6)  # the small test's texts

    (tmp_path / "texts.json").write_text(json.dumps(texts))
    run = subprocess.run([sys.executable, "-c", _OURS_IN_SUBPROCESS, str(folder.resolve()),
                          str(tmp_path / "texts.json"), str(tmp_path / "ours.npy")],
                         check=True, capture_output=True, text=True)
    stats = json.loads(run.stdout.strip().splitlines()[-1])
    table_mb = 250002 * 768 * 4 / 2**20
    rest_mb = (folder / "model.safetensors").stat().st_size / 2**20 - table_mb
    print(f"minisbert in its own process: load {stats['load_s']:.1f}s, encode {len(texts)} texts "
          f"{stats['encode_s']:.1f}s; resident after load {stats['rss_after_load_mb']:.0f} MB, "
          f"peak {stats['peak_mb']:.0f} MB; checkpoint pages resident after encode "
          f"{stats['checkpoint_resident_mb']:.0f} MB of {table_mb + rest_mb:.0f} MB "
          f"(word table {table_mb:.0f} MB, everything else {rest_mb:.0f} MB)")
    # Loading copies nothing large: the word table alone would not fit under this bound.
    assert stats["rss_after_load_mb"] < table_mb
    # Encoding reads only the rows it gathers: even if every other tensor is resident, at most
    # a tenth of the table can be (a copy of the table would have touched all of it).
    assert stats["checkpoint_resident_mb"] - rest_mb < 0.1 * table_mb

    check_embeddings(folder, texts, max_seq_length=128, ours_raw=np.load(tmp_path / "ours.npy"))
    print(f"peak RSS of the test process (torch model included): "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
