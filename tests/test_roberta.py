"""RoBERTa's byte-level BPE tokenizer against HuggingFace's RobertaTokenizer.

A BPE vocabulary is trained here with the `tokenizers` library on the gettext catalogs and saved
as RoBERTa folders in each layout people meet (tests/roberta_folder.py); transformers'
AutoTokenizer (what sentence-transformers loads) reads the same folder. Ids must be identical on
40,000 catalog messages spread over English and ten languages (every message of English and
twenty-two languages with --slow), on edge strings, and the pre-tokenization classes on every
code point the running Python's Unicode assigns.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
import unicodedata

import pytest

import corpus
import roberta_folder
import tokenizer_fixtures as fx
from minisbert.tokenizer import load_tokenizer
from minisbert.tokenizer.bpe import BYTE_TO_CHAR, RobertaTokenizer, gpt2_words
from minisbert.errors import ModelFileMissing, TokenizerError
from minisbert.folder import read_json

MAX_LEN = 512
# English and ten languages in ten scripts: 40,000 of their messages, taken evenly, are the
# default run of the corpus test; --slow runs every message of all of roberta_folder.LANGS.
QUICK_LANGS = ("ja", "ko", "ar", "hi", "th", "he", "el", "fa", "bn", "ta")


# ---------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="session")
def bpe_files(tmp_path_factory):
    pytest.importorskip("tokenizers")
    start = time.perf_counter()
    folder = roberta_folder.train_bpe(tmp_path_factory.mktemp("bpe"))
    print(f"\ntrained a {len(json.loads((folder / 'vocab.json').read_text()))}-symbol byte-level "
          f"BPE vocabulary in {time.perf_counter() - start:.1f}s")
    return folder


@pytest.fixture(scope="session")
def layouts(bpe_files, tmp_path_factory):
    """{layout name: (our tokenizer, HuggingFace's)} for every layout of roberta_folder.LAYOUTS."""
    transformers = pytest.importorskip("transformers")
    out = {}
    for name in roberta_folder.LAYOUTS:
        folder = roberta_folder.write_layout(tmp_path_factory.mktemp("roberta") / name, bpe_files, name)
        hf = transformers.AutoTokenizer.from_pretrained(folder)
        assert type(hf).__name__ == "RobertaTokenizer", type(hf)
        ours = RobertaTokenizer(folder, read_json(folder / "tokenizer_config.json"), MAX_LEN)
        out[name] = ours, hf
    return out


def hf_ids(hf, texts, max_length=MAX_LEN, chunk=20_000):
    texts = list(texts)
    return [ids for i in range(0, len(texts), chunk)
            for ids in hf(texts[i:i + chunk], truncation=True, max_length=max_length)["input_ids"]]


def show_first_difference(hf, text, mine, ref):
    k = next((j for j, (x, y) in enumerate(zip(mine, ref)) if x != y), min(len(mine), len(ref)))
    window = slice(max(k - 2, 0), k + 3)
    print(f"  {text[:60]!r}\n    ours {hf.convert_ids_to_tokens(mine[window])}"
          f"\n    HF   {hf.convert_ids_to_tokens(ref[window])}")


# ---------------------------------------------------------------------------- pieces

def test_byte_table():
    """GPT-2's table: 256 distinct printable characters, the same set as the reference's."""
    pre_tokenizers = pytest.importorskip("tokenizers.pre_tokenizers")
    chars = list(BYTE_TO_CHAR.values())
    assert sorted(BYTE_TO_CHAR) == list(range(256))
    assert len(set(chars)) == 256 and all(c.isprintable() and not c.isspace() for c in chars)
    assert set(chars) == set(pre_tokenizers.ByteLevel.alphabet())
    assert (BYTE_TO_CHAR[ord(" ")], BYTE_TO_CHAR[ord("\n")], BYTE_TO_CHAR[ord("a")]) == ("Ġ", "Ċ", "a")


def _probe(c: str) -> str:
    # One character next to a letter, a digit, punctuation, a space and itself: a different
    # letter / number / white space / other class for `c` changes where the words end.
    return f"a{c}1{c}!{c} {c}{c}x "


def _reference_words(pre_tokenizer, text):
    return [w for w, _ in pre_tokenizer.pre_tokenize_str(text)]


def _our_words(text):
    return [w.encode("utf-8").decode("latin-1").translate(BYTE_TO_CHAR) for w in gpt2_words(text)]


@pytest.mark.slow  # default run: under five minutes (CI runs --slow)
def test_pretokenization_on_every_assigned_code_point():
    """GPT-2's pattern with classes from `unicodedata` cuts words exactly where the reference's
    \\p{L} / \\p{N} / \\s pattern does, for every code point the running Python's Unicode assigns
    (surrogates excepted), each probed in five contexts."""
    pre_tokenizers = pytest.importorskip("tokenizers.pre_tokenizers")
    ref = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    assigned = [chr(cp) for cp in range(sys.maxunicode + 1)
                if unicodedata.category(chr(cp)) not in ("Cn", "Cs")]
    bad = []
    start = time.perf_counter()
    for i in range(0, len(assigned), 256):  # 256 probes per call; one by one where they differ
        block = assigned[i:i + 256]
        text = "".join(map(_probe, block))
        if _our_words(text) != _reference_words(ref, text):
            bad += [c for c in block if _our_words(_probe(c)) != _reference_words(ref, _probe(c))]
    print(f"\n{len(assigned)} assigned code points (Unicode {unicodedata.unidata_version}) in "
          f"{time.perf_counter() - start:.1f}s; differ: {[hex(ord(c)) for c in bad[:20]]}")
    assert len(assigned) > 250_000
    assert not bad


# Letters that Unicode 16 added (Cyrillic TJE, Latin letters); the reference (Oniguruma, in
# `tokenizers` 0.23) knows them, a Python whose Unicode is older sees unassigned code points.
NEWER_LETTERS = "\u1c89\u1c8a\ua7cb\ua7cc"


@pytest.mark.parametrize("c", NEWER_LETTERS)
def test_code_points_newer_than_pythons_unicode(c):
    """The one documented difference: a code point unassigned in the running Python's Unicode
    counts as "other", where the reference's newer tables may know it as a letter."""
    pre_tokenizers = pytest.importorskip("tokenizers.pre_tokenizers")
    ref = pre_tokenizers.ByteLevel(add_prefix_space=False)
    text = f"ab{c}cd"
    mine, theirs = _our_words(text), _reference_words(ref, text)
    print(f"\nU+{ord(c):04X} is {unicodedata.category(c)} in Unicode {unicodedata.unidata_version}:"
          f" ours {mine}, reference {theirs}")
    if unicodedata.category(c) == "Cn":
        assert len(mine) == 3 and len(theirs) == 1
    else:
        assert mine == theirs


# ---------------------------------------------------------------------------- ids

def test_special_tokens_match_reference(layouts):
    for name, (ours, hf) in layouts.items():
        assert (ours.cls_id, ours.sep_id, ours.pad_id) == (hf.cls_token_id, hf.sep_token_id,
                                                           hf.pad_token_id), name
        assert ours.special_ids == {t: hf.convert_tokens_to_ids(t) for t in
                                    ("<s>", "<pad>", "</s>", "<unk>", "<mask>")}, name
        assert ours.special_ids == {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3,
                                    "<mask>": len(hf) - 1}, name
        assert ours.special_tokens["<mask>"]["lstrip"], name


def test_ids_match_reference_on_corpus(layouts, corpus_share, request):
    """Our ids against HuggingFace's on catalog messages: by default 20,000 spread over English
    and the ten QUICK_LANGS; with --slow every message of English and all of
    roberta_folder.LANGS (over 600,000)."""
    everything = request.config.getoption("--slow")
    langs = roberta_folder.LANGS if everything else QUICK_LANGS
    texts = roberta_folder.corpus_texts(langs)
    assert len(texts) > (600_000 if everything else 150_000)
    texts = corpus_share(texts, 20_000)
    ours, hf = layouts["all-distilroberta-v1"]
    start = time.perf_counter()
    ref = hf_ids(hf, texts)
    t_ref = time.perf_counter() - start
    start = time.perf_counter()
    mine = [ours.encode(t) for t in texts]
    t_ours = time.perf_counter() - start
    bad = [i for i, (a, b) in enumerate(zip(mine, ref)) if a != b]
    print(f"\ncompared {len(texts)} messages (English and {len(langs)} languages; "
          f"{sum(map(len, ref))} ids, {sum(len(r) == MAX_LEN for r in ref)} cut at {MAX_LEN}); "
          f"HF {t_ref:.1f}s, ours {t_ours:.1f}s; mismatches: {len(bad)}")
    for i in bad[:20]:
        show_first_difference(hf, texts[i], mine[i], ref[i])
    assert not bad


EDGE = {**fx.ROBERTA_EDGE, "long text": " ".join(corpus.translations("ru")[:200])}


@pytest.mark.parametrize("name", EDGE)
def test_edge_strings(name, layouts):
    text = EDGE[name]
    for layout, (ours, hf) in layouts.items():
        for max_length in (16, 128, MAX_LEN):
            ours.max_length = max_length
            try:
                mine, ref = ours.encode(text), hf_ids(hf, [text], max_length)[0]
            finally:
                ours.max_length = MAX_LEN
            if mine != ref:
                print(f"\n{layout}, max_length {max_length}:")
                show_first_difference(hf, text, mine, ref)
            assert mine == ref, (layout, max_length)


def test_surrogates_become_replacement_character(layouts):
    """The reference rejects lone surrogates; we repair them (a pair to its character, a lone
    one to U+FFFD) and give the reference's ids for the repaired text."""
    ours, hf = layouts["all-distilroberta-v1"]
    assert ours.encode("a\ud800b \ud83d\ude00") == hf_ids(hf, ["a\ufffdb 😀"])[0]


def test_truncation_counts_special_tokens(layouts):
    ours, hf = layouts["all-distilroberta-v1"]
    text = " ".join(corpus.english()[:100])
    ids, cut = ours.encode_with_cut(text)
    full = hf(text)["input_ids"]
    assert len(ids) == MAX_LEN and ids == full[:MAX_LEN - 1] + [hf.sep_token_id]
    assert cut == len(full) - MAX_LEN > 0


# ---------------------------------------------------------------------------- bad files

@pytest.fixture
def plain_folder(tmp_path):
    """A copy of the stored RoBERTa tokenizer folder (tests/fixtures/roberta): no training, so
    these tests run without the `tokenizers` library."""
    return shutil.copytree(fx.ROBERTA_DIR, tmp_path / "tok")


def _load(folder):
    return RobertaTokenizer(folder, read_json(folder / "tokenizer_config.json"), MAX_LEN)


def _merges_line_6_not_a_pair(folder):
    path = folder / "merges.txt"
    lines = path.read_text(encoding="utf-8").split("\n")
    lines[5] = "abc"
    path.write_text("\n".join(lines), encoding="utf-8")


def _merge_outside_vocabulary(folder):
    path = folder / "merges.txt"
    path.write_text(path.read_text(encoding="utf-8") + "\nzzq qzz\n", encoding="utf-8")


def _mask_token_outside_vocabulary(folder):
    config = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "special_tokens_map.json").unlink()
    config["mask_token"] = "[MASK]"
    (folder / "tokenizer_config.json").write_text(json.dumps(config))


# What is done to a good tokenizer folder -> the error loading it must raise, and its message.
BROKEN = {
    "merges line not a pair": (_merges_line_6_not_a_pair, TokenizerError,
                               r"merges.txt, line 6: 'abc' is not a pair"),
    "merge outside vocabulary": (_merge_outside_vocabulary, TokenizerError,
                                 "'zzqqzz', which the vocabulary lacks"),
    "vocab not JSON": (lambda f: (f / "vocab.json").write_text('{"a": 1,'), TokenizerError,
                       "vocab.json is not valid JSON"),
    "vocab of wrong shape": (lambda f: (f / "vocab.json").write_text('{"a": "one"}'),
                             TokenizerError, "vocab.json is not a vocabulary"),
    "merges a Git LFS pointer": (lambda f: (f / "merges.txt").write_text(
        "version https://git-lfs.github.com/spec/v1\noid sha256:0\n"), TokenizerError,
        "Git LFS pointer"),
    "merges missing": (lambda f: (f / "merges.txt").unlink(), ModelFileMissing,
                       "merges.txt: no such file"),
    "special token outside vocabulary": (_mask_token_outside_vocabulary, TokenizerError,
                                         r"special token '\[MASK\]'.*not in the vocabulary"),
}


def test_the_stored_folder_loads_before_it_is_broken(plain_folder):
    assert _load(plain_folder).encode("hello world")[0] == 0  # <s> first


@pytest.mark.parametrize("case", BROKEN)
def test_broken_tokenizer_file_is_reported(case, plain_folder):
    damage, error, message = BROKEN[case]
    damage(plain_folder)
    with pytest.raises(error, match=message) as raised:
        _load(plain_folder)
    print(f"\n{case}: {raised.value}")


# ---------------------------------------------------------------------------- embeddings

def test_load_tokenizer_picks_the_bpe_front_end(tmp_path, bpe_files):
    """Folders without tokenizer.json get RobertaTokenizer; with it, the tokenizer.json
    pipeline (tests/test_tokenizer_json.py)."""
    from minisbert.tokenizer.tokenizer_json import TokenizerJson
    with_json = roberta_folder.write_layout(tmp_path / "json", bpe_files, "all-distilroberta-v1")
    assert isinstance(load_tokenizer(with_json, MAX_LEN), TokenizerJson)
    folder = roberta_folder.write_layout(tmp_path / "tok", bpe_files, "no-tokenizer-json")
    assert isinstance(load_tokenizer(folder, MAX_LEN), RobertaTokenizer)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    del config["tokenizer_class"]  # an older folder: its files say which tokenizer it is
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    assert isinstance(load_tokenizer(folder, MAX_LEN), RobertaTokenizer)


def embedding_texts() -> list[str]:
    """Messages in English and ten other languages, runs of them longer than 512 tokens,
    literal special tokens, and text that begins or ends with white space, all stripped:
    minisbert strips each text as sentence-transformers did before version 6, and for
    byte-level BPE a leading space changes the ids."""
    texts = corpus.spread(corpus.english(), 200)
    for lang in QUICK_LANGS:
        texts += corpus.spread(corpus.translations(lang), 20)
    by_length = sorted(corpus.english(), key=len, reverse=True)  # the longest messages, by three
    texts += [" ".join(by_length[i:i + 3]) for i in range(0, 30, 3)]
    texts += ["", "hello <mask> world", "</s> x <s>", "a <pad> b", "👨‍👩‍👧‍👦", " leading",
              "trailing\n", "  both\t"]
    return list(dict.fromkeys(t.strip() for t in texts))


def check_embeddings(folder, max_seq_length):
    st = pytest.importorskip("sentence_transformers")
    import minisbert
    from reference import compare, encode_both
    ref_model = st.SentenceTransformer(str(folder), device="cpu")
    ours = minisbert.load(folder)
    assert ours.cfg.architecture == "roberta" and ours.normalize
    texts = embedding_texts()
    assert len(texts) > 400
    ref_ids = hf_ids(ref_model.tokenizer, texts, max_seq_length)
    assert [ours.tokenizer.encode(t) for t in texts] == ref_ids
    n_cut = sum(len(r) == max_seq_length for r in ref_ids)
    a, b = encode_both(ours, ref_model, texts, n_cut, max_seq_length)
    assert n_cut >= 5
    maxdiff, mincos = compare("all-distilroberta-v1 layout, normalized", a, b)
    assert maxdiff <= 1e-5 and mincos >= 1 - 1e-6


def test_embeddings_small_model(bpe_files, tmp_path):
    pytest.importorskip("transformers")
    # max_position_embeddings = max_seq_length + 2: a 64-token text uses the table's last row.
    folder = roberta_folder.make_roberta_folder(tmp_path / "small", bpe_files, hidden=64,
                                                layers=2, heads=4, intermediate=256,
                                                max_seq_length=64, max_position_embeddings=66)
    check_embeddings(folder, 64)


@pytest.mark.slow
def test_embeddings_all_distilroberta_v1_width(bpe_files, tmp_path):
    """all-distilroberta-v1's shapes: 6 x 768, 12 heads, 3072, vocab 50265, 514 positions,
    max_seq_length 512; random weights (std 0.07, see test_xlmr's base-size test), our BPE."""
    pytest.importorskip("transformers")
    folder = roberta_folder.make_roberta_folder(tmp_path / "base", bpe_files, hidden=768,
                                                layers=6, heads=12, intermediate=3072,
                                                max_seq_length=512, max_position_embeddings=514,
                                                vocab_size=50265, std=0.07)
    check_embeddings(folder, 512)
