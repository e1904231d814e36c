"""Each tokenizer front end against the ids stored in tests/fixtures (tests/tokenizer_fixtures.py
says what they hold and how scripts/make_tokenizer_fixtures.py made them from transformers).

The first test needs no reference library: it is how an install without torch checks its
tokenizers. The second runs the reference on the same strings, so a fixture that no longer
matches transformers fails here rather than vouching for stale ids.
"""

from __future__ import annotations

import json

import pytest

import tokenizer_fixtures as fx
from minisbert.tokenizer import load_tokenizer
from minisbert.tokenizer.bert import BertTokenizer
from reference import first_mismatches


FOLDERS = {"wordpiece": "minilm_path", "xlmr": "xlmr_tokenizer_folder",
           "xlmr_json": "xlmr_json_folder",
           "japanese": "ja_tokenizer_folder"}  # fixtures; RoBERTa's folder is stored whole


@pytest.fixture(scope="module", params=fx.FRONT_ENDS)
def stored(request):
    """(front end, the fixture's data, the tokenizer folder it was made with)."""
    front_end = request.param
    if front_end == "xlmr":
        pytest.importorskip("sentencepiece")
    elif front_end == "xlmr_json":  # SentencePiece's character map, in the project
        pytest.importorskip("minisbert.tokenizer.precompiled")
    elif front_end == "japanese":
        pytest.importorskip("fugashi")
        pytest.importorskip("ipadic")
    folder = fx.ROBERTA_DIR if front_end == "roberta" else request.getfixturevalue(
        FOLDERS[front_end])
    data = fx.read(front_end)
    if front_end == "wordpiece":
        assert fx.sha256(folder / "vocab.txt") == data["files"]["vocab.txt"], (
            f"{folder / 'vocab.txt'} is not the vocabulary wordpiece.json was made with")
    else:
        fx.check_artifact(front_end)
    return front_end, data, folder


def tokenizers(front_end, folder, max_length, lowercase):
    """(name, tokenizer): the front end load_tokenizer picks for the folder; for all-MiniLM-L6-v2,
    whose folder has a tokenizer.json, also BertTokenizer on its vocab.txt (what a folder
    without tokenizer.json gets)."""
    tok = load_tokenizer(folder, max_length, lowercase=lowercase)
    yield type(tok).__name__, tok
    if front_end == "wordpiece":
        config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
        yield "BertTokenizer", BertTokenizer(folder, config, max_length, lowercase)


def variants(front_end, data):
    """(label, lowercase, key of the expected ids): Japanese is stored cased and lowercase."""
    yield "cased", False, "ids"
    if front_end == "japanese":
        yield "lowercase", True, "ids_lowercase"


def test_ids_equal_the_stored_ones(stored):
    front_end, data, folder = stored
    texts = [case["text"] for case in data["cases"]]
    assert len(texts) >= 300, f"{front_end}: only {len(texts)} stored strings"
    for label, lowercase, key in variants(front_end, data):
        for name, tok in tokenizers(front_end, folder, data["max_length"], lowercase):
            got = [tok.encode(t) for t in texts]
            want = [case[key] for case in data["cases"]]
            print(f"\n{front_end} ({label}, {name}) against {fx.ids_path(front_end).name}:",
                  end="")
            assert not first_mismatches(texts, got, want)
    differs = [case for case in data["cases"] if "differs" in case]
    if front_end == "xlmr":  # the documented differences are stored, and really differ
        assert {case["differs"] for case in differs} == {
            "grapheme", "U+0085", "score tie", "<mask> after normalization"}
        assert all(case["ids"] != case["transformers_ids"] for case in differs)


def test_stored_ids_are_still_the_references(stored):
    front_end, data, folder = stored
    transformers = pytest.importorskip("transformers")
    if front_end == "xlmr_json":
        tokenizers = pytest.importorskip("tokenizers")
        rust = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
        rust.no_padding()
        rust.enable_truncation(data["max_length"])
        references = {"ids": lambda text, truncation, max_length: {
            "input_ids": rust.encode(text).ids}}
    elif front_end in ("wordpiece", "roberta"):
        references = {"ids": transformers.AutoTokenizer.from_pretrained(folder)}
    elif front_end == "xlmr":
        references = {"ids": transformers.XLMRobertaTokenizer.from_pretrained(folder)}
    else:
        from japanese_folder import IPADIC, hf_tokenizer
        references = {"ids": hf_tokenizer(folder, mecab_kwargs=IPADIC),
                      "ids_lowercase": hf_tokenizer(folder, mecab_kwargs=IPADIC,
                                                    do_lower_case=True)}
    if front_end == "xlmr":  # the documented differences: minisbert follows SentencePiece
        import sentencepiece
        from xlmr_folder import sp_ids
        sp = sentencepiece.SentencePieceProcessor(model_file=str(fx.SP_MODEL))
        differs = [case for case in data["cases"] if "differs" in case]
        assert [sp_ids(sp, case["text"]) for case in differs] == [case["ids"] for case in differs]
    for key, ref in references.items():
        for case in data["cases"]:
            want = case.get("transformers_ids", case[key])
            got = ref(case["text"], truncation=True, max_length=data["max_length"])["input_ids"]
            assert got == want, (f"{fx.ids_path(front_end).name} is stale for "
                                 f"{json.dumps(case['text'])[:80]}: regenerate it with "
                                 f"{fx.REGENERATE}")
