"""The tokenizer.json front end against HuggingFace's `tokenizers`, run on the same file.

Every style of tests/hf_tokenizers.py (trained on the catalogs in a session fixture) and
all-MiniLM-L6-v2's own tokenizer.json: the ids of catalog messages in every language (a share
by default, all with --slow), of the project's edge strings and of literal special tokens,
single texts and pairs, truncated as sentence-transformers and cross-encoders truncate. Then
the pieces of the pipeline alone, and bad files.
"""

from __future__ import annotations

import json
import shutil

import pytest

import corpus
import hf_tokenizers
from minisbert.errors import TokenizerError
from minisbert.tokenizer import load_tokenizer
from minisbert.tokenizer.tokenizer_json import TokenizerJson
from reference import first_mismatches
from tokenizer_fixtures import WORDPIECE_EDGE, XLMR_EDGE, XLMR_LITERAL_SPECIALS

MAX_LENGTH = 128
STYLES = ("minilm", *hf_tokenizers.STYLES)
NEEDS = {"xlmr": "minisbert.tokenizer.precompiled",
         "xlmr_converted": "minisbert.tokenizer.precompiled"}

# Added tokens, their flags (lstrip, single_word, normalized) and white space around them.
ADDED_EDGE = ["[CLS]x[SEP]", "a [MASK] b", "a  [MASK]", "[MASK][MASK]", "<|endoftext|>",
              "a<|endoftext|>b <|im_start|>", "<s>hello</s>", " <s> hello", "<unk><unk>",
              "hello <start_of_turn>user", "a" + " " * 30 + "b", "x" + " " * 9 + "y", "  ",
              "<mask>", "hello <mask>!", "hello<mask>", "\t<mask>\n", "[mask] <MASK>",
              "it's I'LL we'Re", "1234567 12.5e-3", "日本語のテキスト\r\n\r\n次の行",
              "\u00a0\u2003x\u3000y\u200b"]


def all_languages(share) -> list[str]:
    texts = share(corpus.english("ja"), 1500)
    for lang in hf_tokenizers.LANGS:
        texts += share(corpus.translations(lang), 300)
    return texts


@pytest.fixture(scope="session")
def style_folder(tmp_path_factory, minilm_path):
    """style -> the folder of its tokenizer.json, built on first use."""
    built = {}

    def get(style):
        if style == "minilm":
            return minilm_path
        if style not in built:
            pytest.importorskip("tokenizers")
            pytest.importorskip("transformers")
            if style in NEEDS:
                pytest.importorskip(NEEDS[style])
            built[style] = hf_tokenizers.STYLES[style](tmp_path_factory.mktemp(style) / "tok")
        return built[style]
    return get


def reference(folder, max_length=MAX_LENGTH):
    tokenizers = pytest.importorskip("tokenizers")
    ref = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
    ref.no_padding()
    ref.enable_truncation(max_length, strategy="longest_first")
    return ref


@pytest.mark.parametrize("style", STYLES)
def test_ids_equal_tokenizers(style, style_folder, corpus_share):
    folder = style_folder(style)
    ours, ref = load_tokenizer(folder, MAX_LENGTH), reference(folder)
    assert isinstance(ours, TokenizerJson)
    texts = all_languages(corpus_share) + WORDPIECE_EDGE + list(XLMR_EDGE.values()) \
        + XLMR_LITERAL_SPECIALS + ADDED_EDGE
    got = [ours.encode(t) for t in texts]
    want = [e.ids for e in ref.encode_batch(texts)]
    print(f"\n{style}: {len(texts)} texts", end="")
    assert not first_mismatches(texts, got, want)
    assert max(map(len, got)) == MAX_LENGTH  # truncation was exercised


@pytest.mark.parametrize("style", STYLES)
def test_pairs_equal_tokenizers(style, style_folder):
    """encode_pair: both texts' ids and token types, cut longest first to max_length."""
    folder = style_folder(style)
    ours, ref = load_tokenizer(folder, 48), reference(folder, 48)
    pairs = list(corpus.pairs("de"))[:300:3] + list(corpus.pairs("ja"))[1:300:3]
    pairs += [("", ""), ("a", ""), ("", "b"), ("x " * 80, "y"), ("x", "y " * 80),
              ("x " * 80, "y " * 81), ("hello <mask>", "[MASK] <s> world")]
    got = [ours.encode_pair(a, b) for a, b in pairs]
    want = [(e.ids, e.type_ids) for e in ref.encode_batch(pairs)]
    texts = [f"{a!r} / {b!r}" for a, b in pairs]
    print(f"\n{style}: {len(pairs)} pairs", end="")
    assert not first_mismatches(texts, got, want)


def test_lowercase_input_puts_lowercase_first(style_folder):
    """do_lower_case (sentence_bert_config.json): a Lowercase normalizer in front, as
    sentence-transformers does to the fast tokenizer; special tokens keep their case."""
    tokenizers = pytest.importorskip("tokenizers")
    folder = style_folder("roberta")
    ref = reference(folder)
    ref.normalizer = tokenizers.normalizers.Sequence([tokenizers.normalizers.Lowercase()])
    ours = load_tokenizer(folder, MAX_LENGTH, lowercase=True)
    texts = ["Hello World <mask> ΣΑΣ", "İSTANBUL <s>", *corpus.spread(corpus.english("ja"), 200)]
    assert not first_mismatches(texts, [ours.encode(t) for t in texts],
                                [e.ids for e in ref.encode_batch(texts)])


def test_old_front_ends_still_serve_folders_without_tokenizer_json(minilm_path, tmp_path):
    from minisbert.tokenizer.bert import BertTokenizer
    for name in ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(minilm_path / name, tmp_path)
    assert isinstance(load_tokenizer(tmp_path, MAX_LENGTH), BertTokenizer)
    shutil.copy(minilm_path / "tokenizer.json", tmp_path)
    assert isinstance(load_tokenizer(tmp_path, MAX_LENGTH), TokenizerJson)


def test_the_pipeline_stages(style_folder):
    """Each stage alone, on all-MiniLM-L6-v2's file (the worked example in how-it-works.md)."""
    ours = load_tokenizer(style_folder("minilm"), MAX_LENGTH)
    text = "Café naïve: unaffable!"
    normalized = ours.normalizer.normalize(text)
    assert normalized == "cafe naive: unaffable!"
    words, _ = ours.pre_tokenizer.pre_tokenize([normalized], True)
    assert words == ["cafe", "naive", ":", "unaffable", "!"]
    assert ours.encode(text) == [101, 7668, 15743, 1024, 14477, 20961, 3468, 999, 102]


# ---------------------------------------------------------------------------- bad files

def _folder_with(tmp_path, minilm_path, content: bytes | str):
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(minilm_path / name, tmp_path)
    data = content.encode() if isinstance(content, str) else content
    (tmp_path / "tokenizer.json").write_bytes(data)
    return tmp_path


def _edited(minilm_path, edit) -> str:
    spec = json.loads((minilm_path / "tokenizer.json").read_text(encoding="utf-8"))
    edit(spec)
    return json.dumps(spec)


BAD = {
    "truncated": (lambda p: (p / "tokenizer.json").read_text(encoding="utf-8")[:5000],
                  "tokenizer.json is not valid JSON"),
    "not json": (lambda p: "<html>404</html>", "tokenizer.json is not valid JSON"),
    "lfs pointer": (lambda p: "version https://git-lfs.github.com/spec/v1\noid sha256:ab\n",
                    "tokenizer.json is a Git LFS pointer"),
    "unknown normalizer": (lambda p: _edited(p, lambda s: s.update(
        normalizer={"type": "Nmt"})), "normalizer type 'Nmt'"),
    "unknown pre-tokenizer": (lambda p: _edited(p, lambda s: s.update(
        pre_tokenizer={"type": "UnicodeScripts"})), "pre-tokenizer type 'UnicodeScripts'"),
    "unknown model": (lambda p: _edited(p, lambda s: s["model"].update(type="Tiktoken")),
                      "model type 'Tiktoken'"),
    "unknown post-processor": (lambda p: _edited(p, lambda s: s.update(
        post_processor={"type": "Mystery"})), "post-processor type 'Mystery'"),
    "no unknown token": (lambda p: _edited(p, lambda s: s["model"]["vocab"].pop("[UNK]")),
                         "unknown token '\\[UNK\\]', which its vocabulary lacks"),
    "no model": (lambda p: _edited(p, lambda s: s.pop("model")), "has no \"model\""),
    "bad added token": (lambda p: _edited(p, lambda s: s["added_tokens"].append({"id": 5})),
                        "the added token .* has no content or id"),
    "bad behavior": (lambda p: _edited(p, lambda s: s.update(pre_tokenizer={
        "type": "Split", "pattern": {"String": "-"}, "behavior": "Sideways",
        "invert": False})), "split behavior 'Sideways'"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_tokenizer_json_is_one_clear_error(case, minilm_path, tmp_path):
    make, message = BAD[case]
    folder = _folder_with(tmp_path, minilm_path, make(minilm_path))
    with pytest.raises(TokenizerError, match=message) as e:
        load_tokenizer(folder, MAX_LENGTH)
    assert str(folder / "tokenizer.json") in str(e.value)
    print(f"\n{case}: {e.value}", end="")
