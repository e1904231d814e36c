"""minisbert.tokenizer.unicode_regex against the reference library's Oniguruma.

Each pattern cuts the same texts with the `tokenizers` Split pre-tokenizer (behaviour
"isolated": every match a piece, every stretch between matches a piece) and with the
translated Python pattern; the piece offsets must be equal. The texts: the catalog messages of
every language (a share by default, all of them with --slow), the edge strings of
tokenizer_fixtures.py, and strings built to reach each construct.
"""

from __future__ import annotations

import time

import pytest

import corpus
from minisbert.tokenizer import unicode_regex
from minisbert.tokenizer.unicode_regex import UnsupportedPattern, compile_pattern, find_spans
from tokenizer_fixtures import JAPANESE_EDGE, WORDPIECE_EDGE, XLMR_EDGE

CONTRACTIONS = "(?i:'s|'t|'re|'ve|'m|'ll|'d)"
PATTERNS = {
    "gpt2": r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""",
    # GPT-4's cl100k_base, which Llama 3 also uses (three digits at most per number)
    "cl100k": CONTRACTIONS + r"""|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
                             r"""|\s*[\r\n]+|\s+(?!\S)|\s+""",
    # Qwen2: one digit per piece
    "qwen2": CONTRACTIONS + r"""|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
                            r"""|\s*[\r\n]+|\s+(?!\S)|\s+""",
    # o200k_base: words split at case changes
    "o200k": r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"""
             + CONTRACTIONS + r"""?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+"""
             r"""[\p{Ll}\p{Lm}\p{Lo}\p{M}]*""" + CONTRACTIONS + r"""?|\p{N}{1,3}"""
             r"""| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+""",
    # a DeepSeek-style split: punctuation before letters, letters with their marks
    "deepseek": r"""[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?"""
                r"""[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""",
    # BLOOM: a nested class inside a negated one
    "bloom": r""" ?[^(\s|[.,!?…。，、।۔،])]+""",
    "digits": r"""\p{N}{1,3}""",
}

# Constructs the tokenizer patterns above do not all use, each where it differs from re's.
CONSTRUCTS = [
    r"\s+", r"\S+", r"\d+", r"\D+", r"\w+", r"\W+", r"\h+", r"\bx", r"x\B", r"\P{L}+",
    r"\p{^N}+", r"\p{Letter}+", r"\p{Lowercase_Letter}", r"\p{LC}+", r"\p{Zs}", r"\p{Cc}+",
    r"\p{Cf}", r"\p{Sc}|\p{Sm}", r"\p{Pd}\p{Ps}?", r"\p{Mn}+", r"[\p{L}&&[^a-z]]+",
    r"[a-z[0-9]]+", r"[^\P{Lu}]", r"^\w+", r"\w+$", r"\s+$", r"a\Z|b\z", r"\R", r"(?m:a.b)",
    r"a.b", r"(?i)stra", r"(?i:ǅ)", r"\x{41}|\u00e9|\x7e", r"(?<w>\w)\k<w>", r"(\w)\1",
    r"[\x{3040}-\x{30FF}]+", r"\p{N}++", r"(?>\s+)", r"\w+?", r"\s*",
]


def reference_pieces(pattern: str, texts: list[str]) -> list[list[tuple[int, int]]]:
    from tokenizers import Regex, pre_tokenizers
    split = pre_tokenizers.Split(Regex(pattern), behavior="isolated")
    return [[span for _, span in split.pre_tokenize_str(t)] for t in texts]


def our_pieces(compiled, text: str) -> list[tuple[int, int]]:
    """Isolated split: each match a piece, each stretch between matches a piece."""
    pieces, end = [], 0
    for a, b in find_spans(compiled, text):
        if a > end:
            pieces.append((end, a))
        if b > a:
            pieces.append((a, b))
        end = b
    if end < len(text):
        pieces.append((end, len(text)))
    return pieces


def compare(pattern: str, texts: list[str]) -> list[int]:
    """Indices of the texts cut differently; prints the first few."""
    pytest.importorskip("tokenizers")
    compiled = compile_pattern(pattern)
    ref = reference_pieces(pattern, texts)
    bad = [i for i, t in enumerate(texts) if our_pieces(compiled, t) != ref[i]]
    for i in bad[:3]:
        print(f"  {texts[i]!r}\n    ours {our_pieces(compiled, texts[i])}\n    ref  {ref[i]}")
    return bad


EDGE = [*WORDPIECE_EDGE, *XLMR_EDGE.values(), *JAPANESE_EDGE,
        "'s 'S 'ſ 'T 'RE 're've'M 'LL 'lL 'D 'd's", "don't I'LL we'Ve you'RE",
        "a\r\nb\n\n\r\r\n c  \n  d\t\t\n", " \x85 \u2028\u2029 \x1c\x1d\x1e\x1f \x0b\x0c",
        "٠١٢٣ ०१२३ ๐๑๒ ①②③ ½ Ⅻ 〇 12345678 1,234.56", "ＡＢＣ１２３ ｶﾞｷﾞ ﾊﾟ",
        "e\u0301\u0302 a\u0308\u0323 ﬁ\u0301", "Hello WORLD HeLLo camelCaseWord XMLHttpRequest",
        "tab\tend  \u3000\u3000x", "   leading and trailing   ", "\U0001F600\U0001F3FD\u200d",
        "path/to/file.txt:12 (see [1]) {x: y} <tag/>", "!!!???...,,, ---___",
        "\x00\x01\x7f\x80\x9f", "Ⓐⓑ 🄰🅐🅰", "ǅǈǋ ᾈ",
        "ابجد، ١٢٣۔ हिन्दी। 中文，测试。", "straße STRASSE ẞ", "a-b_c d.e",
    ]


@pytest.mark.parametrize("name", list(PATTERNS))
def test_tokenizer_patterns_match_reference_on_edge_strings(name):
    bad = compare(PATTERNS[name], EDGE)
    print(f"{name}: {len(EDGE) - len(bad)} of {len(EDGE)} edge strings cut as the reference")
    assert not bad


@pytest.mark.parametrize("name", list(PATTERNS))
def test_tokenizer_patterns_match_reference_on_random_strings(name):
    """5,000 strings of 1 to 16 characters drawn from the characters the patterns tell apart
    (a fixed seed)."""
    import random
    pool = list("aZ'sStTrReEvVmMlLdD 0９٣Ⅻ\t\n\r\x0b\x85\u2028\u3000\xa0\x1c.,!?…。/-_\u0301"
                "\u093fǅé日ｶﾞ\U0001f600\U0001d400\u200d\x00")
    rng = random.Random(0)
    texts = ["".join(rng.choice(pool) for _ in range(rng.randint(1, 16))) for _ in range(5_000)]
    bad = compare(PATTERNS[name], texts)
    print(f"{name}: {len(texts) - len(bad)} of {len(texts)} random strings cut as the reference")
    assert not bad


@pytest.mark.parametrize("pattern", CONSTRUCTS)
def test_constructs_match_reference(pattern):
    bad = compare(pattern, EDGE + ["ab\nab\nab", "ab\nab\n", "a\nb aab bb xx Éé", "xx x x"])
    assert not bad


def test_tokenizer_patterns_match_reference_on_every_language(corpus_share):
    """Every catalog message of every language with --slow (over a million); by default
    8,000 taken evenly across them."""
    texts = corpus_share(list(corpus.every_language()), 8_000)
    for name, pattern in PATTERNS.items():
        bad = compare(pattern, texts)
        print(f"{name}: {len(texts) - len(bad)} of {len(texts)} messages cut as the reference")
        assert not bad, name


def test_gpt2_pattern_matches_byte_level_pre_tokenizer(corpus_share):
    """The ByteLevel pre-tokenizer (use_regex) cuts with GPT-2's pattern."""
    pytest.importorskip("tokenizers")
    from tokenizers import pre_tokenizers
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    compiled = compile_pattern(PATTERNS["gpt2"])
    texts = EDGE + corpus_share(list(corpus.every_language()), 5_000)
    bad = [t for t in texts
           if our_pieces(compiled, t) != [s for _, s in byte_level.pre_tokenize_str(t)]]
    print(f"{len(texts) - len(bad)} of {len(texts)} texts cut as ByteLevel")
    assert not bad, bad[:3]


# Classes over every code point: where Python's Unicode tables and the reference's agree, the
# sets must be equal; the code points that differ must all be ones Python leaves unassigned.
QUICK_CLASSES = [r"\p{L}"]
SLOW_CLASSES = [r"\p{N}", r"\s", r"\w", r"[^\s\p{L}\p{N}]", r"\p{Lu}", r"\p{Ll}", r"\p{Lt}",
                r"\p{Lm}", r"\p{Lo}", r"\p{M}", r"\p{Nd}",
                r"\p{P}", r"\p{S}", r"\p{Z}", r"\p{C}", r"\p{Cf}", r"\p{Co}", r"\d", r"\h"]


@pytest.mark.parametrize("pattern", QUICK_CLASSES + [pytest.param(p, marks=pytest.mark.slow)
                                                     for p in SLOW_CLASSES])
def test_classes_over_every_code_point(pattern):
    pytest.importorskip("tokenizers")
    import unicodedata
    from tokenizers import Regex, pre_tokenizers
    code_points = [c for c in range(1, 0x110000) if not 0xD800 <= c <= 0xDFFF]
    text = "".join(map(chr, code_points))
    kept = pre_tokenizers.Split(Regex(pattern), behavior="removed").pre_tokenize_str(text)
    not_matched = set()
    for _, (a, b) in kept:
        not_matched.update(code_points[a:b])
    theirs = set(code_points) - not_matched
    ours = {code_points[i] for a, b in find_spans(compile_pattern(pattern), text)
            for i in range(a, b)}
    differ = ours ^ theirs
    new = [c for c in differ if unicodedata.category(chr(c)) == "Cn"]
    print(f"{pattern}: {len(theirs)} code points in the reference's class, {len(ours)} in ours;"
          f" {len(differ)} differ, {len(new)} of them unassigned in Unicode "
          f"{unicodedata.unidata_version}")
    assert len(new) == len(differ), sorted(set(differ) - set(new))[:20]


def test_characters_newer_than_pythons_tables():
    """Garay digits and U+1C89 (Unicode 16.0) are \\p{N} and \\p{L} to the reference; where the
    running Python's tables predate them they are unassigned here, and only there do the
    cuts differ."""
    import unicodedata
    text = "\U00010D40\U00010D49 \u1C89"
    bad = compare(PATTERNS["qwen2"], [text])
    known = unicodedata.category("\U00010D40") == "Cn"
    print(f"Unicode {unicodedata.unidata_version} here: "
          f"{'differs' if bad else 'agrees'} on characters of Unicode 16.0")
    assert bool(bad) == known


def test_unsupported_constructs_are_refused_by_name():
    for pattern, what in [(r"\p{Han}", "scripts"), (r"\X", r"\X"), (r"a(?i)b", "option group"),
                          (r"\K", r"\K"), (r"[a", "unclosed")]:
        with pytest.raises(UnsupportedPattern, match=what.replace("\\", "\\\\")):
            compile_pattern(pattern)


def test_compiling_is_fast():
    """The category tables are built once (the first pattern pays ~0.1 s), then cached."""
    unicode_regex._general_categories.cache_clear()
    unicode_regex._named_set.cache_clear()
    unicode_regex.translate.cache_clear()
    compile_pattern.cache_clear()
    start = time.perf_counter()
    for pattern in PATTERNS.values():
        compile_pattern(pattern)
    elapsed = time.perf_counter() - start
    print(f"compiled {len(PATTERNS)} patterns from nothing cached in {elapsed:.3f} s")
    assert elapsed < 1.0
