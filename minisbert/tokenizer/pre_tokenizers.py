"""tokenizer.json's pre-tokenizers: the second stage, normalized text -> words.

The model (WordPiece, BPE, Unigram) then works on each word alone, so a word boundary is never
crossed by a token. Each class is one pre-tokenizer `type` of tokenizer.json, built by
`build_pre_tokenizer`, with one method, `pre_tokenize(words, at_start) -> (words, at_start)`:
it cuts every word of the list further. `at_start` says whether the first word begins at the
very start of the input text (only Metaspace's prepend_scheme "first" asks).

    BertPreTokenizer  split at white space (dropped) and around each punctuation character
    Whitespace        runs of word characters, and runs of other non-space characters
    WhitespaceSplit   split at white space (dropped)
    Punctuation       each punctuation character split off, as `behavior` says
    Digits            digits split off, one by one or in runs
    Split             a literal or a regex pattern, with one of five behaviours (below)
    Metaspace         " " -> "▁", a "▁" put in front, words start at each "▁" (SentencePiece)
    ByteLevel         GPT-2's words (optional), each spelled as one printable character per
                      UTF-8 byte (bpe.py)
    CharDelimiterSplit  split at one character (dropped)
    Sequence          several of these in order

How a pattern's matches cut a word (`behavior`), on "a-b--c" with the pattern "-":
    Removed             a | b | c                  (matches dropped)
    Isolated            a | - | b | - | - | c      (matches become words)
    MergedWithPrevious  a- | b- | - | c            (a match joins the word before it)
    MergedWithNext      a | -b | - | -c            (a match joins the word after it)
    Contiguous          a | - | b | -- | c         (adjacent matches become one word)
`invert` swaps the roles of matches and the text between them. Empty words are dropped.

Character classes follow Unicode as the Rust library's do, not Python's `re`: white space is
the White_Space property, a word character is a letter, mark, decimal or letter number,
connector punctuation or joiner, punctuation is ASCII's plus every P* category, a digit any N*
category. Each character is first replaced by a one-letter representative of its classes
(`CLASSES`), and an ASCII regex runs on that string; its matches cut the original text at the
same places (bpe.py does the same for GPT-2's pattern).

Left out: UnicodeScripts, offsets.
"""

from __future__ import annotations

import re
import unicodedata

from ..errors import TokenizerError
from . import bert
from .base import CharTable
from .bpe import BYTE_TO_CHAR, WHITE_SPACE, gpt2_words
from .normalizers import build, compile_regex
from .unicode_regex import find_spans

# ---------------------------------------------------------------------------- character classes

# Other_Alphabetic symbols (circled and squared letters): word characters though category So.
_ALPHABETIC_SYMBOLS = ((0x24B6, 0x24E9), (0x1F130, 0x1F149), (0x1F150, 0x1F169),
                       (0x1F170, 0x1F189))


def _is_word(c: str, category: str) -> bool:
    if category[0] in "LM" or category in ("Nd", "Nl", "Pc") or c in "\u200c\u200d":
        return True
    return any(lo <= ord(c) <= hi for lo, hi in _ALPHABETIC_SYMBOLS)


def _representative(c: str) -> str:
    """ " " white space; "p" punctuation; "_" word and punctuation (connector punctuation);
    "1" word and digit (decimal and letter numbers); "2" digit only (other numbers);
    "a" word only; "x" none of these."""
    if c in WHITE_SPACE:
        return " "
    category = unicodedata.category(c)
    punct = bert._is_punctuation(c)
    word = _is_word(c, category)
    if category[0] == "N":
        return "1" if word else "2"
    if punct:
        return "_" if word else "p"
    return "a" if word else "x"


CLASSES = CharTable(_representative)
SPACE, PUNCT, DIGIT = " ", "[p_]", "[12]"  # the classes, as regexes over representatives


def class_matches(text: str, pattern: re.Pattern) -> list[tuple[int, int]]:
    """Where `pattern` (over representatives) matches the text: [(start, end), ...]."""
    return [m.span() for m in pattern.finditer(text.translate(CLASSES))]


# ---------------------------------------------------------------------------- splitting

def split_spans(length: int, matches, behavior: str, invert: bool = False):
    """Cut text of `length` characters at `matches` [(start, end), ...] as `behavior` says
    (module docstring); the words' spans, empty ones dropped."""
    segments, prev = [], 0  # (start, end, is_match), covering the whole text
    for start, end in matches:
        if prev < start:
            segments.append((prev, start, invert))
        segments.append((start, end, not invert))
        prev = end
    if prev < length:
        segments.append((prev, length, invert))

    if behavior == "Removed":
        spans = [(s, e) for s, e, is_match in segments if not is_match]
    elif behavior == "Isolated":
        spans = [(s, e) for s, e, _ in segments]
    elif behavior == "Contiguous":
        spans, previous = [], False
        for s, e, is_match in segments:
            if spans and is_match == previous:
                spans[-1] = (spans[-1][0], e)
            else:
                spans.append((s, e))
            previous = is_match
    elif behavior == "MergedWithPrevious":
        spans, previous = [], False
        for s, e, is_match in segments:
            if spans and is_match and not previous:
                spans[-1] = (spans[-1][0], e)
            else:
                spans.append((s, e))
            previous = is_match
    elif behavior == "MergedWithNext":
        spans, previous = [], False
        for s, e, is_match in reversed(segments):
            if spans and is_match and not previous:
                spans[-1] = (s, spans[-1][1])
            else:
                spans.append((s, e))
            previous = is_match
        spans.reverse()
    else:
        raise TokenizerError(f"the split behavior {behavior!r} is not one of Removed, Isolated, "
                             "MergedWithPrevious, MergedWithNext, Contiguous")
    return [(s, e) for s, e in spans if e > s]


class Splitter:
    """A pre-tokenizer that cuts each word on its own: subclasses give `spans(word)`."""

    def spans(self, word: str) -> list[tuple[int, int]]:
        raise NotImplementedError

    def pre_tokenize(self, words: list[str], at_start: bool) -> tuple[list[str], bool]:
        out = []
        for i, word in enumerate(words):
            spans = self.spans(word)
            if i == 0 and at_start:
                at_start = bool(spans) and spans[0][0] == 0
            out += [word[s:e] for s, e in spans]
        return out, at_start and bool(out)


class PatternSplit(Splitter):
    """Split, Punctuation, Digits, CharDelimiterSplit: matches of a regex, cut by behavior."""

    def __init__(self, regex: re.Pattern, behavior: str, invert: bool = False,
                 on_classes: bool = False):
        split_spans(0, [], behavior)  # an unknown behavior fails here, at load
        self.regex, self.behavior, self.invert = regex, behavior, invert
        self.on_classes = on_classes  # does the regex run on CLASSES representatives?

    def spans(self, word):
        if self.on_classes:
            matches = [m.span() for m in self.regex.finditer(word.translate(CLASSES))]
        else:  # a file's pattern: matched as the reference iterates (empty matches too)
            matches = find_spans(self.regex, word)
        return split_spans(len(word), matches, self.behavior, self.invert)


_NOT_PY_SPACE = re.compile("[\x1c-\x1f]")  # str.split() splits here, White_Space does not
_WHITE_SPACE_RUN = re.compile(f"[{re.escape(WHITE_SPACE)}]+")


def split_white_space(text: str) -> list[str]:
    """text.split(), with Unicode's White_Space (str.split also splits at U+001C..U+001F)."""
    if _NOT_PY_SPACE.search(text) is None:
        return text.split()  # the usual case, in C
    return [w for w in _WHITE_SPACE_RUN.split(text) if w]


def _starts_with_space(words: list[str], at_start: bool) -> bool:
    return at_start and bool(words) and words[0][:1] not in WHITE_SPACE


class WhitespaceSplit:
    def pre_tokenize(self, words, at_start):
        return [w for word in words for w in split_white_space(word)], \
            _starts_with_space(words, at_start)


class BertPreTokenizer:
    """White space dropped, every punctuation character a word of its own (bert.py's tables)."""

    def pre_tokenize(self, words, at_start):
        at_start = _starts_with_space(words, at_start)
        return [w for word in words
                for w in split_white_space(word.translate(bert._PUNCTUATION_APART))], at_start


class Whitespace(Splitter):
    """The regex \\w+|[^\\w\\s]+: matches kept, the white space between them dropped."""
    WORDS = re.compile(r"[a_1]+|[^a_1 ]+")

    def spans(self, word):
        return class_matches(word, self.WORDS)


class Metaspace:
    """SentencePiece's view of spaces: each " " becomes `replacement` ("▁"), a "▁" is put in
    front (prepend_scheme "always"; "first": only at the start of the input; "never"), and
    with `split` every "▁" starts a new word."""

    def __init__(self, replacement="▁", prepend_scheme="always", split=True):
        if prepend_scheme not in ("always", "first", "never"):
            raise TokenizerError(f"Metaspace's prepend_scheme {prepend_scheme!r} is not always, "
                                 "first or never")
        self.replacement, self.scheme, self.split = replacement, prepend_scheme, split

    def pre_tokenize(self, words, at_start):
        rep, out = self.replacement, []
        for i, word in enumerate(words):
            word = word.replace(" ", rep)
            if (self.scheme == "always" or (self.scheme == "first" and i == 0 and at_start)) \
                    and not word.startswith(rep):
                word = rep + word
            if not self.split:
                out.append(word)
                continue
            first, *rest = word.split(rep)
            if first:
                out.append(first)
            out += [rep + w for w in rest]
        return out, at_start and bool(out)


def byte_symbols(word: str) -> str:
    """The word's UTF-8 bytes, one printable character each (GPT-2's table, bpe.py)."""
    if word.isascii():  # one byte per character, numbered as the character: skip the encoding
        return word.translate(BYTE_TO_CHAR)
    return word.encode("utf-8").decode("latin-1").translate(BYTE_TO_CHAR)


class ByteLevel:
    """add_prefix_space: a " " before each word that lacks one; use_regex: GPT-2's words;
    then every word spelled in byte symbols."""

    def __init__(self, add_prefix_space=True, use_regex=True):
        self.add_prefix_space, self.use_regex = add_prefix_space, use_regex

    def pre_tokenize(self, words, at_start):
        out = []
        for word in words:
            if self.add_prefix_space and not word.startswith(" "):
                word = " " + word
            out += map(byte_symbols, gpt2_words(word) if self.use_regex else [word])
        return out, at_start and bool(out)


class Sequence:
    def __init__(self, pre_tokenizers: list):
        self.pre_tokenizers = pre_tokenizers

    def pre_tokenize(self, words, at_start):
        for p in self.pre_tokenizers:
            words, at_start = p.pre_tokenize(words, at_start)
        return words, at_start


def _split(spec):
    pattern = spec["pattern"]
    if "String" in pattern:
        regex = re.compile(re.escape(pattern["String"])) if pattern["String"] else re.compile("(?!)")
    else:
        regex = compile_regex(pattern)
    return PatternSplit(regex, spec["behavior"], bool(spec.get("invert", False)))


def _metaspace(spec):
    scheme = spec.get("prepend_scheme")
    if scheme is None:  # files written before prepend_scheme existed
        scheme = "always" if spec.get("add_prefix_space", True) else "never"
    return Metaspace(spec.get("replacement", "▁"), scheme, spec.get("split", True))


BUILDERS = {
    "BertPreTokenizer": lambda s: BertPreTokenizer(),
    "Whitespace": lambda s: Whitespace(),
    "WhitespaceSplit": lambda s: WhitespaceSplit(),
    "Punctuation": lambda s: PatternSplit(re.compile(PUNCT), s.get("behavior", "Isolated"),
                                          on_classes=True),
    "Digits": lambda s: PatternSplit(re.compile(DIGIT), "Isolated", on_classes=True)
    if s.get("individual_digits") else PatternSplit(re.compile(DIGIT), "Contiguous",
                                                    on_classes=True),
    "Split": _split,
    "Metaspace": _metaspace,
    "ByteLevel": lambda s: ByteLevel(s.get("add_prefix_space", True), s.get("use_regex", True)),
    "CharDelimiterSplit": lambda s: PatternSplit(re.compile(re.escape(s["delimiter"])),
                                                 "Removed"),
    "Sequence": lambda s: Sequence([build_pre_tokenizer(p) for p in s["pretokenizers"]]),
}


def build_pre_tokenizer(spec: dict | None):
    """The pre-tokenizer a tokenizer.json `pre_tokenizer` object describes; None for null."""
    if spec is None:
        return None
    return build(spec, BUILDERS, "pre-tokenizer")
