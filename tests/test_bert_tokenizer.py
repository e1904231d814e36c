"""English WordPiece ids against HuggingFace's tokenizer of the real all-MiniLM-L6-v2, through
both of minisbert's front ends for it (without the reference: tests/test_tokenizer_fixtures.py)."""

import pytest

import corpus
from reference import first_mismatches
from tokenizer_fixtures import WORDPIECE_EDGE

@pytest.fixture(scope="module", params=["tokenizer.json", "vocab.txt"])
def tokenizers(request, minilm, minilm_path):
    """minisbert's two front ends for the folder: the tokenizer.json pipeline (what load picks,
    the folder having that file) and BertTokenizer on vocab.txt (folders without it)."""
    transformers = pytest.importorskip("transformers")
    if request.param == "tokenizer.json":
        ours = minilm.tokenizer
    else:
        from minisbert.folder import read_json
        from minisbert.tokenizer.bert import BertTokenizer
        ours = BertTokenizer(minilm_path, read_json(minilm_path / "tokenizer_config.json"),
                             minilm.max_seq_length)
    ref = transformers.AutoTokenizer.from_pretrained(minilm_path)
    return ours, ref


def reference_ids(ref, texts, max_length):
    return ref(texts, truncation=True, max_length=max_length)["input_ids"]


def test_ids_match_on_every_english_message(tokenizers, corpus_share):
    """Every English message with --slow; 10,000 spread over them by default."""
    ours, ref = tokenizers
    texts = corpus.english("ja")
    assert len(texts) > 30_000, "expected ~34k English messages in the ja catalogs"
    texts = corpus_share(texts, 10_000)
    got = [ours.encode(t) for t in texts]
    want = reference_ids(ref, texts, ours.max_length)
    assert not first_mismatches(texts, got, want)


def test_ids_match_on_edge_strings(tokenizers):
    ours, ref = tokenizers
    got = [ours.encode(t) for t in WORDPIECE_EDGE]
    want = reference_ids(ref, WORDPIECE_EDGE, ours.max_length)
    assert not first_mismatches(WORDPIECE_EDGE, got, want)
    longest = max(range(len(WORDPIECE_EDGE)), key=lambda i: len(WORDPIECE_EDGE[i]))
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
