"""Property-based tests: each tokenizer front end, on random strings, never crashes and gives
the ids of its HuggingFace reference (run here, on the same string).

The strings are glued from real text (words, punctuation and spaces of gettext messages in
several languages, tests/corpus.py), random code points from all of Unicode (controls, format
characters, combining marks, unassigned and private-use code points, surrogates) and a few
characters known to be awkward (NUL, U+0085, U+FFFD, BOM, joiners, bidi controls, ideographic
space). Hypothesis is derandomized, so every run tries the same 300 strings per front end.

Surrogates: no reference accepts them (HuggingFace raises TypeError). minisbert repairs them
first (`tokenizer.base.well_formed`: a pair becomes its character, a lone one U+FFFD), so a string with
surrogates must get the reference's ids for its repaired form.

Allowed differences: for XLM-R, the classes PARITY.md item 8 and tests/test_xlmr.py document,
recognised by test_xlmr's own `documented_class`; for WordPiece and MeCab + WordPiece, none.
"""

from __future__ import annotations

import re
import time
from collections import Counter

import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

import corpus
import xlmr_folder
from minisbert.tokenizer import load_tokenizer
from minisbert.tokenizer.base import well_formed

transformers = pytest.importorskip("transformers")

EXAMPLES = 300
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])

# Real text cut into words, single punctuation characters and runs of white space.
LANGS = ("ja", "zh_CN", "ko", "ar", "he", "hi", "th", "ru", "el", "de", "fr", "vi")


def _fragments() -> list[str]:
    texts = corpus.spread(corpus.english("ja"), 300)
    for lang in LANGS:
        texts += corpus.spread(corpus.translations(lang), 100)
    pieces = set()
    for t in texts:
        pieces.update(re.findall(r"\w+|\s+|[^\w\s]", t))
    return sorted(pieces)


FRAGMENTS = _fragments()
AWKWARD = ["\x00", "\x85", "\ufffd", "\ufeff", "\u200b", "\u200c", "\u200d", "\u202e", "\u2066",
           "\u3000", "\u00a0", "\t", "\r\n", "\u0301", "\u20e3", "\ufe0f", "\U0001F3FD", "\ud800",
           "\udc00", "\ud83d\ude00", "ｶﾞ", "[MASK]", "<mask>", "</s>", "[SEP]"]
# Every code point, surrogates included (hypothesis leaves them out unless told).
ANY_CHAR = st.characters(exclude_categories=())

TEXTS = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.sampled_from(AWKWARD),
                           st.text(ANY_CHAR, min_size=1, max_size=4)),
                 max_size=24).map("".join)


class Tally:
    """How many strings a property saw and how many held surrogates or differed, printed at the
    end of the test, so a run shows what was really exercised."""

    def __init__(self, name):
        self.name, self.counts, self.start = name, Counter(), time.perf_counter()

    def add(self, text, *labels):
        self.counts["strings"] += 1
        if re.search("[\ud800-\udfff]", text):
            self.counts["with surrogates"] += 1
        if any(c in text for c in AWKWARD):
            self.counts["with an awkward character"] += 1
        self.counts.update(labels)

    def report(self):
        print(f"\n{self.name}: {dict(self.counts)} in {time.perf_counter() - self.start:.1f}s")


# ---------------------------------------------------------------------------- English WordPiece

@pytest.fixture(scope="module")
def wordpiece(minilm_path):
    ours = load_tokenizer(minilm_path, 256)
    ref = transformers.AutoTokenizer.from_pretrained(minilm_path)
    tally = Tally("WordPiece (all-MiniLM-L6-v2)")
    yield ours, ref, tally
    tally.report()


@SETTINGS
@given(text=TEXTS)
@example(text="\ud800")
@example(text="a\udc80b \ud83d\ude00")
def test_wordpiece_matches_reference(wordpiece, text):
    ours, ref, tally = wordpiece
    tally.add(text)
    want = ref(well_formed(text), truncation=True, max_length=256)["input_ids"]
    assert ours.encode(text) == want


# ---------------------------------------------------------------------------- XLM-R SentencePiece

@pytest.fixture(scope="module")
def xlmr(tmp_path_factory):
    """The SentencePiece model tests/test_xlmr.py trains (same function, same corpus, so the
    same model and the same documented ties), with its tokenizer files."""
    sentencepiece = pytest.importorskip("sentencepiece")
    from test_xlmr import documented_class, hf_ids, sp_ids

    folder = tmp_path_factory.mktemp("xlmr_properties")
    sp_model = xlmr_folder.train_sentencepiece(folder / "trained.model")
    xlmr_folder.write_tokenizer_files(folder, sp_model)
    sp = sentencepiece.SentencePieceProcessor(model_file=str(sp_model))
    hf = transformers.XLMRobertaTokenizer.from_pretrained(folder)
    ours = load_tokenizer(folder, 512)
    tally = Tally("XLM-R SentencePiece")

    def check(text):
        repaired = well_formed(text)
        mine, want = ours.encode(text), hf_ids(hf, [repaired])[0]
        if mine == want:
            tally.add(text)
            return
        cls = documented_class(repaired, sp, hf, ours)
        tally.add(text, f"differs: {cls}")
        assert cls is not None, (text, hf.convert_ids_to_tokens(mine),
                                 hf.convert_ids_to_tokens(want))
        if not ours.specials.search(repaired):  # then we follow plain SentencePiece, as documented
            assert mine == sp_ids(sp, repaired)

    yield check
    tally.report()


@SETTINGS
@given(text=TEXTS)
@example(text="\ud800")
@example(text="a\udc80b \ud83d\ude00 <mask>")
def test_xlmr_matches_reference_or_a_documented_difference(xlmr, text):
    xlmr(text)


# ---------------------------------------------------------------------------- Japanese MeCab

@pytest.fixture(scope="module")
def japanese(tmp_path_factory):
    """The vocabulary and tokenizer config tests/test_japanese.py uses (sonoisa's: ipadic)."""
    pytest.importorskip("fugashi")
    pytest.importorskip("ipadic")
    from japanese_folder import build_vocab, write_tokenizer_files
    from test_japanese import IPADIC, hf_tokenizer, our_tokenizer

    folder = tmp_path_factory.mktemp("ja_properties")
    write_tokenizer_files(folder, build_vocab(32000))
    ours = our_tokenizer(folder, max_length=512)
    ref = hf_tokenizer(folder, mecab_kwargs=IPADIC)
    tally = Tally("Japanese MeCab + WordPiece")
    yield ours, ref, tally
    tally.report()


@SETTINGS
@given(text=TEXTS)
@example(text="\ud800")
@example(text="東京\udc80都 \ud83d\ude00")
def test_japanese_matches_reference(japanese, text):
    ours, ref, tally = japanese
    tally.add(text)
    assert ours.encode(text) == ref(well_formed(text), truncation=True)["input_ids"]
