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
import warnings

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
    texts = share(corpus.english("ja"), 150)
    for lang in hf_tokenizers.LANGS:
        texts += share(corpus.translations(lang), 30)
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


# ---------------------------------------------------------------------------- whole folders

def _vocab_size(folder) -> int:
    spec = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    vocab = spec["model"]["vocab"]
    ids = range(len(vocab)) if isinstance(vocab, list) else vocab.values()
    return max([*ids, *(t["id"] for t in spec["added_tokens"])]) + 1


def _folder_only_tokenizer_json(family, style_folder, tmp_path):
    """A sentence-transformers folder whose only tokenizer file is tokenizer.json (with
    tokenizer_config.json), around a small random model of `family`."""
    folder = tmp_path / family
    if family == "bert":
        shutil.copytree(style_folder("minilm"), folder)
        (folder / "vocab.txt").unlink()
        return folder
    from reference import save_random_roberta, write_sentence_transformers_files
    tokenizer = style_folder({"roberta": "roberta", "xlm-roberta": "xlmr"}[family])
    folder.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tokenizer / name, folder)
    save_random_roberta(folder, family, vocab_size=_vocab_size(folder), hidden=64, layers=2,
                        heads=4, intermediate=128, max_position_embeddings=130)
    write_sentence_transformers_files(folder, dim=64, max_seq_length=MAX_LENGTH, normalize=True)
    return folder


@pytest.mark.parametrize("family", ["bert", "roberta", "xlm-roberta"])
def test_folder_with_only_tokenizer_json_gives_sentence_transformers_vectors(
        family, style_folder, tmp_path):
    """minisbert.load on the folder and sentence-transformers on the same folder: the same
    ids, and normalized vectors within 1e-5, on stripped texts of many languages."""
    st = pytest.importorskip("sentence_transformers")
    import minisbert
    from reference import compare
    if family == "xlm-roberta":
        pytest.importorskip(NEEDS["xlmr"])
    folder = _folder_only_tokenizer_json(family, style_folder, tmp_path)
    assert not {"vocab.txt", "vocab.json", "merges.txt", "sentencepiece.bpe.model"} & {
        p.name for p in folder.iterdir()}
    ours = minisbert.load(folder)
    assert isinstance(ours.tokenizer, TokenizerJson)
    ref = st.SentenceTransformer(str(folder), device="cpu")
    texts = corpus.spread(corpus.english("ja"), 40)
    for lang in ("ja", "ar", "hi", "ru", "de", "th"):
        texts += corpus.spread(corpus.translations(lang), 20)
    texts = [t.strip() for t in texts + ["a <mask> b", "x " * 300]]
    want_ids = ref.tokenizer(texts, truncation=True, max_length=ours.max_seq_length)["input_ids"]
    assert not first_mismatches(texts, ours.tokenize(texts), want_ids)
    with warnings.catch_warnings():  # the long text is cut, as intended
        warnings.simplefilter("ignore", minisbert.TruncationWarning)
        vectors = ours.encode(texts, normalize_embeddings=True)
    maxdiff, _ = compare(family, vectors,
                         ref.encode(texts, normalize_embeddings=True))
    assert maxdiff <= 1e-5


def test_xlmr_folder_with_tokenizer_json_runs_without_sentencepiece(tmp_path, monkeypatch):
    """NumPy alone: an XLM-R folder whose tokenizer is the stored tokenizer.json (no
    sentencepiece.bpe.model) loads and embeds with SentencePiece unimportable, and its ids are
    the ones stored from `tokenizers` (tests/fixtures/xlmr_json.json)."""
    pytest.importorskip("minisbert.tokenizer.precompiled")
    import sys

    import numpy as np

    import minisbert
    import tokenizer_fixtures as fx
    import xlmr_folder
    fx.check_artifact("xlmr_json")
    monkeypatch.setitem(sys.modules, "sentencepiece", None)  # `import sentencepiece` fails
    folder = xlmr_folder.make_numpy_xlmr_folder(
        tmp_path / "xlmr", None, hidden=32, layers=2, heads=4, intermediate=64,
        max_seq_length=128, tokenizer_json=fx.XLMR_JSON)
    model = minisbert.load(folder)
    assert isinstance(model.tokenizer, TokenizerJson)
    data = fx.read("xlmr_json")
    cases = [c for c in data["cases"] if c["text"] == c["text"].strip()][:100]
    texts = [c["text"] for c in cases]
    want = [c["ids"][:127] + [2] if len(c["ids"]) > 128 else c["ids"] for c in cases]
    assert not first_mismatches(texts, model.tokenize(texts), want)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", minisbert.TruncationWarning)
        vectors = model.encode(texts)
    assert vectors.shape == (len(texts), 32) and np.isfinite(vectors).all()


# ---------------------------------------------------------------------------- components alone

def _component_texts() -> list[str]:
    texts = corpus.spread(corpus.english("ja"), 300)
    for lang in hf_tokenizers.LANGS:
        texts += corpus.spread(corpus.translations(lang), 40)
    return texts + WORDPIECE_EDGE + list(XLMR_EDGE.values()) + ADDED_EDGE + [
        "a-b--c", "-a-", "--", "x1y22z333", "¹²³ ½ Ⅻ ٣٤", "a_b __c", "Ⓐⓑ ⓒ", "a\u200db",
        "\x1c\x1d\x1e\x1f mixed\x1fseparators", "▁already▁spaced", " ▁x", "tab\tand  two"]


def _spec(kind: str, component) -> dict:
    """The JSON `tokenizers` writes for one component (as it appears in tokenizer.json)."""
    tokenizers = pytest.importorskip("tokenizers")
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    setattr(tok, kind, component)
    return json.loads(tok.to_str())[kind]


def _pre_tokenizers():
    from tokenizers import Regex, pre_tokenizers as pt
    behaviors = ("removed", "isolated", "merged_with_previous", "merged_with_next", "contiguous")
    out = {"Whitespace": pt.Whitespace(), "WhitespaceSplit": pt.WhitespaceSplit(),
           "BertPreTokenizer": pt.BertPreTokenizer(),
           "Digits": pt.Digits(individual_digits=False),
           "Digits individual": pt.Digits(individual_digits=True),
           "CharDelimiterSplit": pt.CharDelimiterSplit("-"),
           "ByteLevel": pt.ByteLevel(add_prefix_space=False, use_regex=True),
           "ByteLevel prefix space": pt.ByteLevel(add_prefix_space=True, use_regex=True),
           "ByteLevel no regex": pt.ByteLevel(add_prefix_space=False, use_regex=False),
           "Sequence": pt.Sequence([pt.WhitespaceSplit(), pt.Digits(individual_digits=True),
                                    pt.Metaspace(prepend_scheme="first")])}
    for scheme in ("always", "first", "never"):
        for split in (True, False):
            out[f"Metaspace {scheme} split={split}"] = pt.Metaspace(prepend_scheme=scheme,
                                                                    split=split)
    for b in behaviors:
        out[f"Punctuation {b}"] = pt.Punctuation(behavior=b)
        for invert in (False, True):
            out[f"Split '-' {b} invert={invert}"] = pt.Split("-", behavior=b, invert=invert)
            out[f"Split regex {b} invert={invert}"] = pt.Split(
                Regex(r"\s+|\p{N}|[^\s\p{L}\p{N}]+"), behavior=b, invert=invert)
    out["Split Qwen2"] = pt.Split(Regex(hf_tokenizers.QWEN2_PATTERN), behavior="isolated")
    return out


def test_each_pre_tokenizer_cuts_as_tokenizers_does():
    """Every pre-tokenizer type and option, alone, on text of every language: the same words
    as `tokenizers`' pre_tokenize_str."""
    pytest.importorskip("tokenizers")
    from minisbert.tokenizer.pre_tokenizers import build_pre_tokenizer
    texts, bad = _component_texts(), {}
    for name, ref in _pre_tokenizers().items():
        ours = build_pre_tokenizer(_spec("pre_tokenizer", ref))
        got = [ours.pre_tokenize([t], True)[0] if t else [] for t in texts]
        want = [[w for w, _ in ref.pre_tokenize_str(t)] for t in texts]
        wrong = [i for i, (a, b) in enumerate(zip(got, want)) if a != b]
        if wrong:
            bad[name] = (texts[wrong[0]], got[wrong[0]], want[wrong[0]])
    print(f"\n{len(_pre_tokenizers())} pre-tokenizers × {len(texts)} texts; differ: {bad}")
    assert not bad


def _normalizers():
    from tokenizers import Regex, normalizers as nm
    return {"NFC": nm.NFC(), "NFD": nm.NFD(), "NFKC": nm.NFKC(), "NFKD": nm.NFKD(),
            "Lowercase": nm.Lowercase(), "StripAccents": nm.Sequence([nm.NFD(), nm.StripAccents()]),
            "BertNormalizer": nm.BertNormalizer(),
            "BertNormalizer cased": nm.BertNormalizer(lowercase=False),
            "BertNormalizer no cleaning": nm.BertNormalizer(clean_text=False,
                                                            strip_accents=False),
            "BertNormalizer no CJK": nm.BertNormalizer(handle_chinese_chars=False),
            "Replace string": nm.Replace(" ", "▁"),
            "Replace regex": nm.Replace(Regex(r" {2,}|\p{N}+"), "\\1#"),
            "Prepend": nm.Prepend("▁"), "Strip": nm.Strip(),
            "Strip left": nm.Strip(left=True, right=False),
            "Sequence": nm.Sequence([nm.NFKC(), nm.Lowercase(), nm.Replace(" ", "▁")])}


def test_each_normalizer_normalizes_as_tokenizers_does():
    pytest.importorskip("tokenizers")
    from minisbert.tokenizer.normalizers import build_normalizer
    texts, bad = _component_texts(), {}
    for name, ref in _normalizers().items():
        ours = build_normalizer(_spec("normalizer", ref))
        wrong = [t for t in texts if ours.normalize(t) != ref.normalize_str(t)]
        if wrong:
            bad[name] = (wrong[0], ours.normalize(wrong[0]), ref.normalize_str(wrong[0]))
    print(f"\n{len(_normalizers())} normalizers × {len(texts)} texts; differ: {bad}")
    assert not bad
