"""English WordPiece ids against HuggingFace's tokenizer of the real all-MiniLM-L6-v2."""

import pytest

import corpus
from reference import first_mismatches

transformers = pytest.importorskip("transformers")

EDGE = [
    "", " ", "\t\n\r ", "\u3000", "a",
    "Café naïve façade Ångström résumé",  # accents (stripped by the uncased model)
    "ΣΑΣ σας Ὀδυσσεύς ΆΈΉ",  # Greek, final sigma, polytonic
    "東京は日本の首都です。中文测试",  # CJK ideographs become words of their own
    "カタカナ ひらがな 한국어",  # kana and Hangul are not in the CJK ranges
    "👨‍👩‍👧‍👦 👍🏽 🏳️‍🌈 ❤️",  # emoji with joiners, skin tones, variation selectors
    "nul\x00byte bell\x07 esc\x1b[0m del\x7f zwsp\u200b bom\ufeff rep\ufffd",  # controls
    "vt\x0bff\x0cnel\x85 nbsp\xa0thin\u2009ls\u2028ps\u2029",  # space-like characters
    "private\ue000use",
    "$100+<tag>=^`|~ 50% \"quotes\" «guillemets» ¿qué? — –",
    "[CLS] literal [SEP] and [MASK] in text, [mask] lowercase",
    "İstanbul ǅ ﬁ ß ẞ",  # lowercase expansions and ligatures
    "x" * 101 + " " + "y" * 100,  # a word over 100 characters is one [UNK]
    "The quick brown fox jumps over the lazy dog. " * 120,  # far beyond max_seq_length
    "e\u0301 combining acute, a\u0308 umlaut",
    "ﾃｽﾄ full-width ＡＢＣ１２３",
    "\U00020000 \U0002a700 \U0002b820 \U0002ceb0",  # CJK extension planes
]


@pytest.fixture(scope="module")
def tokenizers(minilm_path):
    import minisbert
    ours = minisbert.load(minilm_path).tokenizer
    ref = transformers.AutoTokenizer.from_pretrained(minilm_path)
    return ours, ref


def reference_ids(ref, texts, max_length):
    return ref(texts, truncation=True, max_length=max_length)["input_ids"]


def test_ids_match_on_every_english_message(tokenizers):
    ours, ref = tokenizers
    texts = corpus.english("ja")
    assert len(texts) > 30_000, "expected ~34k English messages in the ja catalogs"
    got = [ours.encode(t) for t in texts]
    want = reference_ids(ref, texts, ours.max_length)
    assert not first_mismatches(texts, got, want)


def test_ids_match_on_edge_strings(tokenizers):
    ours, ref = tokenizers
    got = [ours.encode(t) for t in EDGE]
    want = reference_ids(ref, EDGE, ours.max_length)
    assert not first_mismatches(EDGE, got, want)
    longest = max(range(len(EDGE)), key=lambda i: len(EDGE[i]))
    assert len(got[longest]) == ours.max_length  # the long text really was truncated


def test_ids_match_on_other_languages(tokenizers):
    """The English model meets foreign text too: accents, scripts and punctuation of 12 languages."""
    ours, ref = tokenizers
    texts = []
    for lang in ("de", "fr", "el", "ru", "ar", "hi", "th", "zh_CN", "ko", "vi", "tr", "pl"):
        texts += corpus.spread(corpus.translations(lang), 400)
    got = [ours.encode(t) for t in texts]
    want = reference_ids(ref, texts, ours.max_length)
    assert not first_mismatches(texts, got, want)


def test_truncation_counts_special_tokens(minilm_path):
    import minisbert
    model = minisbert.load(minilm_path, max_seq_length=16)
    ids = model.tokenizer.encode("word " * 100)
    assert len(ids) == 16 and ids[0] == 101 and ids[-1] == 102
