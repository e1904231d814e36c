"""The Japanese front end (MeCab + WordPiece) and sonoisa-style models, against HuggingFace's
BertJapaneseTokenizer, BertModel and sentence-transformers run in the same test (without them:
tests/test_tokenizer_fixtures.py, and the error tests here).

Every id test compares Japanese gettext messages (tests/corpus.py: 10,000 spread over the
catalogs by default, all ~34,500 with --slow) plus edge strings, with the 32,000-entry
vocabulary stored in tests/fixtures (conftest.py's ja_vocab).
The reference tokenizer is forced to ipadic (`mecab_kwargs={"mecab_dic": "ipadic"}`): transformers
5 would otherwise use unidic_lite, and `test_forgetting_ipadic_changes_ids` shows that would
change the ids of a quarter of the corpus.
"""

from __future__ import annotations

import json
import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

import minisbert
from corpus import lines, spread, translations
from japanese_folder import IPADIC, hf_tokenizer, make_folder, write_tokenizer_files
from minisbert.errors import MissingDependencyError
from minisbert.tokenizer.japanese import JapaneseTokenizer
from reference import compare, first_mismatches, write_sentence_transformers_files
from tokenizer_fixtures import JAPANESE_EDGE as EDGE


def hf_ids(tokenizer, texts) -> list[list[int]]:
    # truncation=True cuts at the folder's model_max_length (512), as the model card's recipe does
    return [tokenizer(t, truncation=True)["input_ids"] for t in texts]


def our_tokenizer(folder: Path, max_length: int = 512, lowercase_input: bool = False):
    config = json.loads((folder / "tokenizer_config.json").read_text())
    # lowercase: what minisbert.load passes from sentence_bert_config.json
    return JapaneseTokenizer(folder, config, max_length, lowercase=lowercase_input)


def compare_ids(texts, ours, ref) -> list[int]:
    t = time.perf_counter()
    got = [ours.encode(s) for s in texts]
    print(f"\nours: {time.perf_counter() - t:.1f}s for {len(texts)} strings", end="")
    return first_mismatches(texts, got, ref)


@pytest.fixture(scope="module")
def vocab(ja_vocab) -> list[str]:
    return ja_vocab


@pytest.fixture(scope="module")
def hf():
    """hf(folder, **kwargs): transformers' BertJapaneseTokenizer."""
    pytest.importorskip("transformers")
    return hf_tokenizer


@pytest.fixture(scope="module")
def texts(corpus_share) -> list[str]:
    """Japanese messages (every one with --slow, 10,000 spread over the catalogs otherwise)
    and the edge strings; the tests that take them run MeCab."""
    pytest.importorskip("fugashi")
    pytest.importorskip("ipadic")
    messages = translations("ja")
    assert len(messages) > 30_000
    return corpus_share(messages, 10_000) + EDGE


@pytest.fixture(scope="module")
def folders(tmp_path_factory, vocab) -> dict[str, Path]:
    """Tokenizer folders: sonoisa's config, and cl-tohoku's (no mecab_kwargs: ipadic implied)."""
    root = tmp_path_factory.mktemp("ja_tokenizers")
    configs = {
        "sonoisa": {},
        "no_dic": {"mecab_kwargs": None},
        "no_dic_lower": {"mecab_kwargs": None, "do_lower_case": True},
        "unidic_lite": {"mecab_kwargs": {"mecab_dic": "unidic_lite"}},
        "character": {"subword_tokenizer_type": "character"},
    }
    for name, config in configs.items():
        write_tokenizer_files(root / name, vocab, **config)
    return {name: root / name for name in configs}


# ---------------------------------------------------------------------------- token ids

@pytest.mark.parametrize("lowercase", [False, True], ids=["cased", "lowercase"])
def test_ids_match_transformers(vocab, folders, texts, hf, lowercase):
    t = time.perf_counter()
    reference = hf(folders["sonoisa"], mecab_kwargs=IPADIC, do_lower_case=lowercase)
    ref = hf_ids(reference, texts)
    print(f"\nreference: {time.perf_counter() - t:.1f}s for {len(texts)} strings")
    # The vocabulary exercises every path of WordPiece: whole words, "##" pieces, [UNK]
    # (51 of the default 10,000 messages hold an [UNK], 2,566 a "##" piece; more with --slow).
    continuation = {i for i, t in enumerate(vocab) if t.startswith("##")}
    unk_id = vocab.index("[UNK]")
    unk = sum(unk_id in ids for ids in ref)
    multi = sum(not continuation.isdisjoint(ids) for ids in ref)
    print(f"strings with [UNK]: {unk}, with ## pieces: {multi}, longest: {max(map(len, ref))} ids")
    assert unk > 40 and multi > 1000

    # sonoisa's folder: ipadic named, lowercasing from sentence_bert_config.json
    ours = our_tokenizer(folders["sonoisa"], lowercase_input=lowercase)
    assert compare_ids(texts, ours, ref) == []
    # cl-tohoku's style: no dictionary named (ipadic implied), lowercasing from tokenizer_config
    ours = our_tokenizer(folders["no_dic_lower" if lowercase else "no_dic"])
    assert compare_ids(texts, ours, ref) == []


def test_lowercasing_matters_on_this_corpus(folders, texts):
    """The lowercase test above is not vacuous: a quarter of the messages hold capitals."""
    cased = our_tokenizer(folders["sonoisa"])
    lower = our_tokenizer(folders["sonoisa"], lowercase_input=True)
    differ = sum(cased.encode(s) != lower.encode(s) for s in texts)
    print(f"\nlowercasing changes the ids of {differ} of {len(texts)} strings")
    assert differ > len(texts) // 5


# The edge strings where lowercasing the raw text is not lowercasing in the tokenizer, and why.
LOWER_FIRST_DIFFERS = {
    "①②③ ㈱ ㍻ № ℡ ㍱ ℌ Ⅻ": "NFKC after lower(): № becomes No, not no",
    "[CLS]文の前[SEP]": "lowercased special tokens are plain text",
    "[MASK]は何ですか": "the same",
    "これは[MASK]です。": "the same",
    "[mask] [ＭＡＳＫ] [UNK][PAD]": "the same",
    "ΟΔΟΣ ΣΑΣ ς": "lower() of the whole text writes a word-final sigma as ς",
    "İstanbul ǅ ß": "lower() writes İ as i + U+0307 before MeCab splits the text",
}


def test_older_sentence_transformers_lowercasing(folders, texts, hf):
    """Older sentence-transformers releases lowercased the raw text (`text.lower()`) and then
    ran the tokenizer without lowercasing. On real messages that gives our ids; it differs only on
    the edge strings of LOWER_FIRST_DIFFERS."""
    messages = texts[:-len(EDGE)]
    ref = hf(folders["sonoisa"], mecab_kwargs=IPADIC)
    ours = our_tokenizer(folders["sonoisa"], lowercase_input=True)
    assert compare_ids(messages, ours, hf_ids(ref, [s.lower() for s in messages])) == []
    differ = [s for s in EDGE if ours.encode(s) != ref(s.lower(), truncation=True)["input_ids"]]
    print(f"edge strings where the two ways differ: {differ}")
    assert set(differ) == set(LOWER_FIRST_DIFFERS)


def test_forgetting_ipadic_changes_ids(folders, texts, hf):
    """transformers 5 reads a folder that names no dictionary with unidic_lite; the vocab is
    ipadic's, so the ids change. This is why every reference here is forced to ipadic."""
    pytest.importorskip("unidic_lite")
    ref = hf(folders["no_dic"])  # no mecab_kwargs: transformers' own default
    assert "unidic_lite" in ref.word_tokenizer.mecab.dictionary_info[0]["filename"]
    bad = compare_ids(texts, our_tokenizer(folders["no_dic"]), hf_ids(ref, texts))
    assert len(bad) > len(texts) // 5


def test_unidic_lite_when_named(folders, texts, hf):
    pytest.importorskip("unidic_lite")
    sample = spread(texts[:-len(EDGE)], 5000) + EDGE
    ref = hf_ids(hf(folders["unidic_lite"]), sample)  # the folder names it
    assert compare_ids(sample, our_tokenizer(folders["unidic_lite"]), ref) == []


@pytest.mark.parametrize("lowercase", [False, True], ids=["cased", "lowercase"])
def test_character_subwords(folders, texts, hf, lowercase):
    sample = spread(texts[:-len(EDGE)], 5000) + EDGE
    ref = hf_ids(hf(folders["character"], mecab_kwargs=IPADIC, do_lower_case=lowercase), sample)
    ours = our_tokenizer(folders["character"], lowercase_input=lowercase)
    assert compare_ids(sample, ours, ref) == []


def test_missing_fugashi_is_one_clear_error(folders, monkeypatch):
    monkeypatch.setitem(sys.modules, "fugashi", None)  # `import fugashi` now raises ImportError
    with pytest.raises(MissingDependencyError, match=re.escape("pip install 'minisbert[ja]'")):
        our_tokenizer(folders["sonoisa"])


def test_missing_ipadic_is_one_clear_error(folders, monkeypatch):
    monkeypatch.setitem(sys.modules, "ipadic", None)
    with pytest.raises(MissingDependencyError, match=re.escape("pip install 'minisbert[ja]'")):
        our_tokenizer(folders["no_dic"])  # ipadic by default, too


def test_missing_named_dictionary_names_it(tmp_path, vocab, monkeypatch):
    monkeypatch.setitem(sys.modules, "unidic", None)
    write_tokenizer_files(tmp_path, vocab, mecab_kwargs={"mecab_dic": "unidic"})
    with pytest.raises(MissingDependencyError, match="pip install unidic"):
        our_tokenizer(tmp_path)


# ---------------------------------------------------------------------------- embeddings

def embedding_texts(vocab_folder: Path) -> list[str]:
    """≥500 real messages: an even spread, lines with Latin words (lowercasing changes them)
    and messages longer than 80 tokens (the folder's max_seq_length cuts them)."""
    tok = our_tokenizer(vocab_folder, max_length=10**6)
    # Stripped: sentence-transformers 6.2 and the model card do not strip, minisbert does.
    all_lines = [s.strip() for s in lines(translations("ja"))]
    latin = [s for s in all_lines if re.search("[A-Z]", s)]
    long = sorted((m.strip() for m in translations("ja") if len(tok.encode(m)) > 80),
                  key=lambda m: len(tok.encode(m)))
    texts = list(dict.fromkeys(spread(all_lines, 300) + spread(latin, 150) + spread(long, 80)
                               + long[-1:]))  # the longest passes 512 tokens
    n_latin = sum(bool(re.search("[A-Z]", s)) for s in texts)
    n_long = sum(len(tok.encode(s)) > 80 for s in texts)
    n_512 = sum(len(tok.encode(s)) > 512 for s in texts)
    print(f"\n{len(texts)} texts: {n_latin} with capitals, {n_long} over 80 tokens, "
          f"{n_512} over 512")
    assert len(texts) >= 500 and n_latin >= 150 and n_long >= 80 and n_512 >= 1
    return texts


def sentence_transformers_reading(folder: Path):
    """sentence-transformers on the folder as it is: max_seq_length 80, do_lower_case true.

    sentence-transformers 6.2 cannot load such a folder: for do_lower_case it sets the
    tokenizer's `do_lower_case`, which BertJapaneseTokenizer has no setter for (AttributeError).
    So, if that happens, we build the same pipeline with the tokenizer's do_lower_case switched
    on when it is made, which is what that line means to do.
    """
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    kwargs = {"mecab_kwargs": IPADIC}
    try:
        return SentenceTransformer(str(folder), device="cpu", processor_kwargs=kwargs)
    except AttributeError as e:
        print(f"\nsentence-transformers cannot load the folder ({e}); making the tokenizer "
              "lowercase itself instead")
    sbert = json.loads((folder / "sentence_bert_config.json").read_text())
    transformer = Transformer(str(folder), max_seq_length=sbert["max_seq_length"],
                              processor_kwargs={**kwargs, "do_lower_case": sbert["do_lower_case"]})
    assert transformer.tokenizer.do_lower_case is True and transformer.max_seq_length == 80
    pooling = Pooling(transformer.get_embedding_dimension(), "mean")
    return SentenceTransformer(modules=[transformer, pooling], device="cpu")


def model_card_reading(folder: Path, texts: list[str]) -> np.ndarray:
    """The model card's recipe: BertJapaneseTokenizer (padding to the longest, truncation at 512,
    no lowercasing) + BertModel + mean pooling over the real tokens, batches of 8."""
    import torch
    from transformers import BertModel

    tokenizer = hf_tokenizer(folder, mecab_kwargs=IPADIC)
    model = BertModel.from_pretrained(str(folder)).eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(texts), 8):
            batch = tokenizer(texts[i:i + 8], padding="longest", truncation=True,
                              return_tensors="pt")
            tokens = model(**batch)[0]  # [b, s, d]
            mask = batch["attention_mask"].unsqueeze(-1).float()  # [b, s, 1]
            out.append(((tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9)).numpy())
    return np.concatenate(out)


def normalized(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def check_both_readings(folder: Path, texts: list[str]) -> None:
    t = time.perf_counter()
    ours = minisbert.load(folder)
    assert ours.max_seq_length == 80 and ours.tokenizer.lowercase_input
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", minisbert.TruncationWarning)  # texts over 80 tokens, on purpose
        got = ours.encode(texts)
    t_ours = time.perf_counter() - t
    t = time.perf_counter()
    ref = sentence_transformers_reading(folder).encode(texts, convert_to_numpy=True)
    print(f"\nfolder reading: minisbert {t_ours:.1f}s, "
          f"sentence-transformers {time.perf_counter() - t:.1f}s")
    maxdiff, mincos = compare("folder (80, lowercase) vs sentence-transformers",
                              normalized(got), normalized(ref))
    assert maxdiff <= 1e-5

    t = time.perf_counter()
    card = minisbert.load(folder, max_seq_length=512, do_lower_case=False)
    got_card = card.encode(texts)
    t_ours = time.perf_counter() - t
    t = time.perf_counter()
    ref_card = model_card_reading(folder, texts)
    print(f"\nmodel card reading: minisbert {t_ours:.1f}s, "
          f"transformers {time.perf_counter() - t:.1f}s")
    maxdiff, mincos = compare("model card (512, cased) vs transformers recipe",
                              normalized(got_card), normalized(ref_card))
    assert maxdiff <= 1e-5

    # The two readings really differ: on texts with capitals or over 80 tokens.
    apart = np.abs(normalized(got) - normalized(got_card)).max(axis=1)
    print(f"readings differ (> 1e-3) on {int((apart > 1e-3).sum())} of {len(texts)} texts")
    assert (apart > 1e-3).sum() >= 200


@pytest.fixture(scope="module")
def reference_stack():
    for name in ("fugashi", "ipadic", "torch", "transformers", "sentence_transformers"):
        pytest.importorskip(name)


def test_embeddings_small(tmp_path_factory, vocab, folders, reference_stack):
    folder = make_folder(tmp_path_factory.mktemp("ja_small"), vocab,
                         layers=2, hidden=128, heads=4, intermediate=512)
    check_both_readings(folder, embedding_texts(folders["sonoisa"]))


@pytest.mark.slow
def test_embeddings_base_size(tmp_path_factory, vocab, folders, reference_stack):
    """sonoisa's real shapes: vocab 32000, 12 layers x 768, 12 heads, intermediate 3072.

    Attention logits grow like std² · width. std 0.2 at width 128 makes them ~N(0, 5²); at 768
    it makes them ~N(0, 31²), attention becomes a hard argmax and float32 itself drifts 5e-5
    from float64 (torch as much as minisbert; measured). So the weights keep the small model's
    sharpness: std 0.2 · √(128/768) ≈ 0.082.
    """
    folder = make_folder(tmp_path_factory.mktemp("ja_base"), vocab, layers=12, hidden=768,
                         heads=12, intermediate=3072, std=0.2 * (128 / 768) ** 0.5)
    check_both_readings(folder, embedding_texts(folders["sonoisa"]))


def test_missing_fugashi_through_load(tmp_path_factory, vocab, monkeypatch):
    """The one clear error also reaches a user calling minisbert.load."""
    folder = tmp_path_factory.mktemp("ja_nofugashi")
    write_tokenizer_files(folder, vocab)
    (folder / "config.json").write_text(json.dumps({
        "model_type": "bert", "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2,
        "intermediate_size": 16, "vocab_size": len(vocab), "max_position_embeddings": 512}))
    write_sentence_transformers_files(folder, dim=8, max_seq_length=80, do_lower_case=True)
    monkeypatch.setitem(sys.modules, "fugashi", None)
    with pytest.raises(MissingDependencyError, match=re.escape("pip install 'minisbert[ja]'")):
        minisbert.load(folder)
