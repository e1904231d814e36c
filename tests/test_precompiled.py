"""minisbert.tokenizer.precompiled against the reference library's Precompiled normalizer.

The compiled maps come from real SentencePiece models: the XLM-R test model (nmt_nfkc), as
transformers writes it into tokenizer.json, and tiny models trained here with the other
normalization rules (nfkc, nmt_nfkc_cf, nfkc_cf); SentencePiece compiles the same map for a
rule whatever text it is trained on. Each is compared with
tokenizers.normalizers.Precompiled(charsmap).normalize_str on the edge strings and on the
catalog messages of every language (a share by default, all with --slow).
"""

from __future__ import annotations

import base64
import io
import json
import time

import pytest

import corpus
from minisbert.errors import TokenizerError
from minisbert.tokenizer.precompiled import Precompiled, grapheme_clusters
from tokenizer_fixtures import JAPANESE_EDGE, SP_MODEL, WORDPIECE_EDGE, XLMR_EDGE

RULES = ["nmt_nfkc", "nfkc", "nmt_nfkc_cf", "nfkc_cf"]
# nmt_nfkc is the slowest rule to compare and XLM-R's own: its corpus-wide case runs with --slow,
# its edge cases always
CORPUS_RULES = [pytest.param("nmt_nfkc", marks=pytest.mark.slow), *RULES[1:]]

EDGE = [
    *WORDPIECE_EDGE, *XLMR_EDGE.values(), *JAPANESE_EDGE,
    "\x85", "a\x85b", "\x00", "a\x00b\x00", "\u3000x\u3000", "\r\n", "a\r\nb\r\r\n\n\r",
    "\t\x0b\x0c\x1c\x1f\x7f\x80\x9f", "\u200b\u200c\u200d\u2060\ufeff\u00ad",
    "ｶﾞ", "ｶﾞ\u0301", "ｶ\u0301", "ｶﾞﾟ\u3099", "ﾊﾟﾋﾟﾌﾟ", "ｱ\u3099", "カ\u3099", "ｳﾞｧｲｵﾘﾝ",
    "ﬁ\u0301", "e\u0301", "e\u0301\u0302", "A\u030a", "Å", "o\u0308\u0304", "<\u0338 =\u0338",
    "ＡＢＣ ａｂｃ １２３ ！？ ＃＄％", "ｈｔｔｐ：／／ｅｘａｍｐｌｅ．ｃｏｍ", "￥１，０００",
    "한국어 \u1100\u1161\u11a8 가\u11a8 ﾡﾢ ㄱㅏ", "㈱ ㍻ ℡ ① ⑴ ⒜ ㎏ ㌔",
    "👨\u200d👩\u200d👧\u200d👦 👍🏽 🏳️\u200d🌈 ❤️ ©️ ™️ ‼️ ©\u200d™\u0301",
    "\u0600١٢ \u0600ｶ\u0301 \u06dd\u0661", "A\u0903 a\u0903 ａ\u0903",
    "İstanbul ǅ ß ẞ ΣΑΣ ﬀ ﬃ Ⅻ ǈ", "\U0001d400\U0001d41a \U0001f130 \U0001f189",
    "  多个  空格  ", "Ⓐⓑ ¼ ½ ² ³ µ º ª", "\u2028\u2029\u205f\u2000\u200a\u202f\u00a0",
]


def _charsmap_of(model: bytes) -> bytes:
    from sentencepiece import sentencepiece_model_pb2
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(model)
    return proto.normalizer_spec.precompiled_charsmap


def _train(rule: str) -> bytes:
    import sentencepiece as spm
    out = io.BytesIO()
    lines = ["hello world", "abc def ghi", "minisbert reads tokenizer files"] * 30
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=out,
                                   vocab_size=40, model_type="char", minloglevel=2,
                                   normalization_rule_name=rule)
    return _charsmap_of(out.getvalue())


def _from_tokenizer_json(model_path) -> bytes:
    """precompiled_charsmap as transformers writes it into tokenizer.json for XLM-R."""
    import importlib
    from types import SimpleNamespace
    converters = importlib.import_module("transformers.convert_slow_tokenizer")
    specials = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
                "sep_token": "</s>", "pad_token": "<pad>", "cls_token": "<s>",
                "mask_token": "<mask>"}
    slow = SimpleNamespace(vocab_file=str(model_path), add_prefix_space=True, legacy=True,
                           convert_tokens_to_ids=lambda token: 0, **specials)
    spec = json.loads(converters.XLMRobertaConverter(slow).converted().to_str())["normalizer"]
    found = [n for n in [spec, *spec.get("normalizers", [])] if n["type"] == "Precompiled"]
    assert len(found) == 1, spec
    return base64.b64decode(found[0]["precompiled_charsmap"])


@pytest.fixture(scope="module")
def charsmaps() -> dict[str, bytes]:
    pytest.importorskip("sentencepiece")
    pytest.importorskip("google.protobuf")
    maps = {"nmt_nfkc": _charsmap_of(SP_MODEL.read_bytes())}
    maps.update({rule: _train(rule) for rule in RULES[1:]})
    return maps


def test_xlmr_charsmap_is_the_one_tokenizer_json_holds(charsmaps):
    pytest.importorskip("transformers")
    assert _from_tokenizer_json(SP_MODEL) == charsmaps["nmt_nfkc"]


def compare(charsmap: bytes, texts: list[str]) -> tuple[list[int], float, float]:
    """Indices of the texts normalized differently, and the seconds each side took."""
    from tokenizers import normalizers
    reference = normalizers.Precompiled(charsmap)
    ours = Precompiled(charsmap)
    start = time.perf_counter()
    mine = [ours.normalize(t) for t in texts]
    t_ours = time.perf_counter() - start
    start = time.perf_counter()
    theirs = [reference.normalize_str(t) for t in texts]
    t_ref = time.perf_counter() - start
    bad = [i for i, (a, b) in enumerate(zip(mine, theirs)) if a != b]
    for i in bad[:3]:
        print(f"  {texts[i]!r}\n    ours {mine[i]!r}\n    ref  {theirs[i]!r}")
    return bad, t_ours, t_ref


@pytest.mark.parametrize("rule", RULES)
def test_matches_reference_on_edge_strings(charsmaps, rule):
    pytest.importorskip("tokenizers")
    bad, _, _ = compare(charsmaps[rule], EDGE)
    print(f"{rule}: {len(EDGE) - len(bad)} of {len(EDGE)} edge strings as the reference")
    assert not bad


@pytest.mark.parametrize("rule", CORPUS_RULES)
def test_matches_reference_on_every_language(charsmaps, rule, corpus_share):
    """Every catalog message of every language with --slow (over a million); by default
    4,000 taken evenly across them. Prints the time per 10,000 messages of each side."""
    pytest.importorskip("tokenizers")
    texts = corpus_share(list(corpus.every_language()), 4_000)
    bad, t_ours, t_ref = compare(charsmaps[rule], texts)
    ours = Precompiled(charsmaps[rule])
    changed = sum(ours.normalize(t) != t for t in texts[:20_000])
    per_10k = 10_000 / len(texts)
    print(f"{rule}: {len(texts) - len(bad)} of {len(texts)} messages as the reference "
          f"({changed} of the first {min(len(texts), 20_000)} changed); per 10,000 messages "
          f"ours {t_ours * per_10k * 1e3:.0f} ms, tokenizers {t_ref * per_10k * 1e3:.0f} ms")
    assert not bad


# Characters where cluster rules and keys meet: keys, combining marks, half-width kana and their
# voiced marks, prepended marks, CR/LF, joiners, Hangul jamo, emoji, flags, controls, NUL.
TRICKY = list("aeAE<=>\r\n\t \x00\x85\u200d\u200c\u0301\u0308\u0338\u3099\u309a\uff9e\uff9f"
              "\uff76\uff8a\u30ab\u0600\u0661\u06dd\u0903\u0915\u093c\u0e01\u0e33\u1100"
              "\u1161\u11a8\uac00\uac01\u00a9\u2122\u203c\ufe0f\U0001f1ef\U0001f1f5\U0001f44d"
              "\U0001f3fd\U0001f469\u00e9\ufb01\u3000\u00a0\u1e9e\u00df\u0130\U0001d400"
              "\U0001f149\U0001f202\u1dc0\u20d7\u05b0\u064b\u0345\u0399")


@pytest.mark.parametrize("rule", RULES)
def test_matches_reference_on_random_tricky_strings(charsmaps, rule):
    """5,000 strings of 1 to 12 characters drawn from TRICKY (a fixed seed)."""
    pytest.importorskip("tokenizers")
    import random
    rng = random.Random(0)
    texts = ["".join(rng.choice(TRICKY) for _ in range(rng.randint(1, 12)))
             for _ in range(5_000)]
    bad, _, _ = compare(charsmaps[rule], texts)
    print(f"{rule}: {len(texts) - len(bad)} of {len(texts)} random strings as the reference")
    assert not bad


def test_short_cluster_is_replaced_by_its_shortest_key(charsmaps):
    """A cluster under 6 bytes that starts with a key becomes that key's replacement, and the
    rest of the cluster is dropped; at 6 bytes or more each character is looked up alone."""
    p = Precompiled(charsmaps["nmt_nfkc"])
    assert grapheme_clusters("ｶ\u0301ｶﾞ") == ["ｶ\u0301", "ｶﾞ"]
    assert p.normalize("ｶ\u0301") == "カ"  # 5 bytes: the accent goes
    assert p.normalize("ｶﾞ") == "カ\u3099"  # 6 bytes: character by character
    assert p.normalize("e\u0301") == "é"  # a key of two characters
    assert p.normalize("plain text") == "plain text"


def test_load_is_fast(charsmaps):
    start = time.perf_counter()
    for charsmap in charsmaps.values():
        Precompiled(charsmap)
    elapsed = time.perf_counter() - start
    print(f"loaded {len(charsmaps)} maps in {elapsed:.2f} s")
    assert elapsed < 4.0


@pytest.mark.parametrize("broken", [b"", b"\x01\x00", (1000).to_bytes(4, "little") + b"\0" * 8,
                                    (0).to_bytes(4, "little")])
def test_corrupt_charsmap_is_refused(broken):
    with pytest.raises(TokenizerError, match="precompiled_charsmap"):
        Precompiled(broken)
