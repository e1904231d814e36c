"""tokenizer.json's normalizers: the first stage of the pipeline, text -> text.

Each class is one normalizer `type` of tokenizer.json, built from its JSON object by
`build_normalizer`, with one method, `normalize(text) -> text`:

    NFC, NFD, NFKC, NFKD  Unicode normalization forms (`unicodedata`)
    Lowercase             each character lowercased on its own (no Greek final-sigma rule)
    StripAccents          combining marks (categories Mn, Mc, Me) dropped; usually after NFD
    BertNormalizer        BERT's cleaning, CJK spacing, accent stripping and lowercasing
                          (the same character tables as bert.py)
    Precompiled           SentencePiece's compiled character map, stored in the file (precompiled.py)
    Replace               a literal string or a regex replaced everywhere
    Prepend               a string put before non-empty text ("▁" in Llama-style files)
    Strip                 white space stripped at the left and/or right
    Sequence              several of these in order

The Rust library also tracks, for every character, where it came from in the original text
(for offsets); minisbert needs only ids, so a normalizer here is a plain str -> str function.
Left out: Nmt, ByteLevel normalizer, and offsets.
"""

from __future__ import annotations

import base64
import binascii
import unicodedata

from ..errors import TokenizerError
from . import bert
from .base import CharTable
from .bpe import WHITE_SPACE
from .unicode_regex import compile_pattern

# Per character, as the Rust library lowercases (Python's str.lower would apply the final-sigma
# rule to a whole word).
LOWER = CharTable(str.lower)
# StripAccents drops every combining mark (Mn, Mc, Me); BertNormalizer only nonspacing ones (Mn).
NO_MARKS = CharTable(lambda c: "" if unicodedata.category(c)[0] == "M" else c)
CJK_APART = CharTable(lambda c: f" {c} " if bert._is_cjk(c) else c)


class UnicodeForm:
    """NFC, NFD, NFKC or NFKD."""

    def __init__(self, form: str):
        self.form = form

    def normalize(self, text: str) -> str:
        # is_normalized is a fast check in C; most text is already NFC
        if unicodedata.is_normalized(self.form, text):
            return text
        return unicodedata.normalize(self.form, text)


class Lowercase:
    def normalize(self, text: str) -> str:
        return text.translate(LOWER)


class StripAccents:
    def normalize(self, text: str) -> str:
        return text.translate(NO_MARKS)


class BertNormalizer:
    """clean_text: drop control characters, white space to " "; handle_chinese_chars: spaces
    around CJK ideographs; strip_accents (None: as lowercase): NFD, then marks dropped;
    lowercase. bert.py explains each table."""

    def __init__(self, clean_text=True, handle_chinese_chars=True, strip_accents=None,
                 lowercase=True):
        self.clean_text, self.handle_chinese_chars = clean_text, handle_chinese_chars
        self.strip_accents = lowercase if strip_accents is None else strip_accents
        self.lowercase = lowercase

    def normalize(self, text: str) -> str:
        if self.clean_text:  # cleaning and CJK spacing in one table
            text = text.translate(bert._CLEAN[bool(self.handle_chinese_chars)])
        elif self.handle_chinese_chars:
            text = text.translate(CJK_APART)
        if self.strip_accents:
            text = unicodedata.normalize("NFD", text).translate(bert._NO_MARKS)
        if self.lowercase:
            text = text.translate(bert._LOWER)
        return text


class Precompiled:
    """SentencePiece's normalization rules, compiled into the file as base64
    (`precompiled_charsmap`); precompiled.py reads and applies them."""

    def __init__(self, precompiled_charsmap: str | None = None):
        try:
            charsmap = base64.b64decode(precompiled_charsmap or "", validate=True)
        except (binascii.Error, ValueError):
            raise TokenizerError("the Precompiled normalizer's precompiled_charsmap is not "
                                 "base64") from None
        if not charsmap:  # an empty map (some converted files) changes nothing
            self.normalize = lambda text: text
            return
        from .precompiled import Precompiled as CharsMap
        self.normalize = CharsMap(charsmap).normalize


class Replace:
    """pattern: {"String": s} (a literal) or {"Regex": r} (Oniguruma syntax)."""

    def __init__(self, pattern: dict, content: str):
        self.content = content
        self.literal = pattern.get("String")
        self.regex = None if self.literal is not None else compile_regex(pattern)

    def normalize(self, text: str) -> str:
        if self.regex is None:
            return text.replace(self.literal, self.content) if self.literal else text
        return self.regex.sub(lambda m: self.content, text)  # the content is literal text


class Prepend:
    def __init__(self, prepend: str):
        self.prepend = prepend

    def normalize(self, text: str) -> str:
        return self.prepend + text if text else text


class Strip:
    """White space here is Unicode's White_Space (Python's str.strip would also strip
    U+001C..U+001F)."""

    def __init__(self, strip_left=True, strip_right=True):
        self.left, self.right = strip_left, strip_right

    def normalize(self, text: str) -> str:
        if self.left:
            text = text.lstrip(WHITE_SPACE)
        if self.right:
            text = text.rstrip(WHITE_SPACE)
        return text


class Sequence:
    def __init__(self, normalizers: list):
        self.normalizers = normalizers

    def normalize(self, text: str) -> str:
        for n in self.normalizers:
            text = n.normalize(text)
        return text


def compile_regex(pattern: dict):
    """The regex of a {"Regex": "..."} pattern, translated from Oniguruma's syntax."""
    source = pattern.get("Regex")
    if not isinstance(source, str):
        raise TokenizerError(f"the pattern {pattern!r} is neither {{\"String\": ...}} nor "
                             "{\"Regex\": ...}")
    try:
        return compile_pattern(source)
    except TokenizerError:
        raise
    except Exception as e:  # a construct the translator does not know
        raise TokenizerError(f"the regex {source!r} cannot be run ({e})") from None


def _sequence(spec):
    return Sequence([build_normalizer(s) for s in spec.get("normalizers") or []])


BUILDERS = {
    "NFC": lambda s: UnicodeForm("NFC"), "NFD": lambda s: UnicodeForm("NFD"),
    "NFKC": lambda s: UnicodeForm("NFKC"), "NFKD": lambda s: UnicodeForm("NFKD"),
    "Lowercase": lambda s: Lowercase(),
    "StripAccents": lambda s: StripAccents(),
    "BertNormalizer": lambda s: BertNormalizer(s.get("clean_text", True),
                                               s.get("handle_chinese_chars", True),
                                               s.get("strip_accents"), s.get("lowercase", True)),
    "Precompiled": lambda s: Precompiled(s.get("precompiled_charsmap")),
    "Replace": lambda s: Replace(s["pattern"], s["content"]),
    "Prepend": lambda s: Prepend(s["prepend"]),
    "Strip": lambda s: Strip(s.get("strip_left", True), s.get("strip_right", True)),
    "Sequence": _sequence,
}


def build_normalizer(spec: dict | None):
    """The normalizer a tokenizer.json `normalizer` object describes; None for null."""
    if spec is None:
        return None
    return build(spec, BUILDERS, "normalizer")


def build(spec, builders: dict, stage: str):
    """Look up `spec["type"]` in `builders` and build it; a clear TokenizerError for a type
    minisbert lacks or a malformed object (the front end adds the file's name)."""
    if not isinstance(spec, dict) or not isinstance(spec.get("type"), str):
        raise TokenizerError(f"the {stage} {spec!r} has no \"type\"")
    kind = spec["type"]
    if kind not in builders:
        raise TokenizerError(f"it names the {stage} type {kind!r}, which minisbert does not "
                             f"implement (it has {', '.join(builders)})")
    try:
        return builders[kind](spec)
    except TokenizerError:
        raise
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        raise TokenizerError(f"the {stage} {kind} lacks or misstates a setting ({e!r})") from None
