"""Oniguruma patterns, as tokenizer.json writes them, translated into Python `re` patterns.

The `Split` pre-tokenizer of a tokenizer.json (`{"pattern": {"Regex": ...}}`) and the
`ByteLevel` one (GPT-2's pattern) are run by the reference library with Oniguruma, whose
syntax Python's `re` mostly shares. What differs, and how each difference is translated:

  \\p{L} \\P{N} \\p{Lu} ...   Unicode general categories (and their one-letter groups), which
                            `re` lacks: each becomes an explicit character class, built once
                            from `unicodedata` over every code point (`category_ranges`);
  \\s \\d \\w \\h              Oniguruma's are Unicode's White_Space, Nd, its own "word" (L,
                            M, Nd, Nl, Pc and the few symbols of `_WORD_EXTRAS`) and ASCII hex
                            digits; `re`'s \\s also matches U+001C..U+001F and its \\w is
                            str.isalnum() + "_", so all four become explicit classes too (and
                            \\b is rebuilt on Oniguruma's \\w);
  [a[b]] [a&&[^b]]           nested classes and intersections: every bracket expression is
                            resolved into code point ranges here, then written out;
  ^ $                        Oniguruma's are line anchors (what `re` calls MULTILINE);
  (?m) (?m:...)              Oniguruma's m lets . match a newline (`re`'s s);
  \\Z \\z \\R (?<name>) \\k<n>  end before a final newline, end, a line break, named groups.

Everything else (alternation, (?i:...), look-arounds, possessive and lazy quantifiers, atomic
groups, {m,n}) is written the same in both and passes through. `find_spans` iterates matches as
the reference does (an empty match right after a match is skipped).

The categories are those of the running Python's `unicodedata` (Unicode 14.0 in Python 3.11);
the reference's Oniguruma has newer tables (Unicode 16.0 in tokenizers 0.23), so a character
assigned after Unicode 14 is "unassigned" (\\p{Cn}) here: the one place the two can differ.

Left out: Oniguruma's case-insensitive matching also folds one character to several ((?i)ss
matches "ß", fi matches "ﬁ"); `re` folds one to one, so such a pattern can match less here (the
contractions of the GPT-4-style patterns hold no such pair). And these, which raise
`UnsupportedPattern` naming the construct: scripts and the binary properties other than those
`_named_set` knows (\\p{Han}, \\p{Greek}, \\p{Alpha}, ...), \\X, \\K, \\G, \\N, \\O, absent
operators (?~...), conditionals, callouts, and option groups other than i, m and x at the start
or with a colon.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from ..errors import TokenizerError

MAX_CODE_POINT = 0x10FFFF

Ranges = tuple[tuple[int, int], ...]  # sorted, disjoint, non-adjacent inclusive (lo, hi) pairs


class UnsupportedPattern(TokenizerError):
    """A tokenizer.json regex uses Oniguruma syntax this translation does not cover."""


# ---------------------------------------------------------------------------- character sets

@lru_cache(maxsize=None)
def _general_categories() -> dict[str, Ranges]:
    """{two-letter general category: its code point ranges}, in one pass over every code point
    (about 0.1 s, done the first time a pattern needs it)."""
    ranges: dict[str, list[list[int]]] = {}
    category = unicodedata.category
    previous, start = category("\0"), 0
    for cp in range(1, MAX_CODE_POINT + 2):
        c = category(chr(cp)) if cp <= MAX_CODE_POINT else None
        if c != previous:
            ranges.setdefault(previous, []).append([start, cp - 1])
            previous, start = c, cp
    return {c: tuple((lo, hi) for lo, hi in r) for c, r in ranges.items()}


def union(*sets: Ranges) -> Ranges:
    pairs = sorted(p for s in sets for p in s)
    out: list[list[int]] = []
    for lo, hi in pairs:
        if out and lo <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return tuple((lo, hi) for lo, hi in out)


def complement(s: Ranges) -> Ranges:
    out, nxt = [], 0
    for lo, hi in s:
        if lo > nxt:
            out.append((nxt, lo - 1))
        nxt = hi + 1
    if nxt <= MAX_CODE_POINT:
        out.append((nxt, MAX_CODE_POINT))
    return tuple(out)


def intersection(a: Ranges, b: Ranges) -> Ranges:
    return complement(union(complement(a), complement(b)))


def code_points(text: str) -> Ranges:
    return union(*(((ord(c), ord(c)),) for c in text))


_CATEGORY_NAMES = {  # Unicode's long names of the general categories, as \p{Letter} spells them
    "letter": "L", "casedletter": "LC", "uppercaseletter": "Lu", "lowercaseletter": "Ll",
    "titlecaseletter": "Lt", "modifierletter": "Lm", "otherletter": "Lo",
    "mark": "M", "combiningmark": "M", "nonspacingmark": "Mn", "spacingmark": "Mc",
    "enclosingmark": "Me", "number": "N", "decimalnumber": "Nd", "letternumber": "Nl",
    "othernumber": "No", "punctuation": "P", "connectorpunctuation": "Pc",
    "dashpunctuation": "Pd", "openpunctuation": "Ps", "closepunctuation": "Pe",
    "initialpunctuation": "Pi", "finalpunctuation": "Pf", "otherpunctuation": "Po",
    "symbol": "S", "mathsymbol": "Sm", "currencysymbol": "Sc", "modifiersymbol": "Sk",
    "othersymbol": "So", "separator": "Z", "spaceseparator": "Zs", "lineseparator": "Zl",
    "paragraphseparator": "Zp", "other": "C", "control": "Cc", "format": "Cf",
    "surrogate": "Cs", "privateuse": "Co", "unassigned": "Cn",
}

# Unicode's White_Space property: Oniguruma's \s (Python's \s adds U+001C..U+001F).
WHITE_SPACE = ("\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
               "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")

# Oniguruma's \w is L, M, Nd, Nl and Pc, plus the letters that are Alphabetic without being
# L or Nl (circled and squared Latin letters, So), plus the superscript digits and fractions
# of Latin-1 (its table for U+0000..U+00FF marks them as word characters).
_WORD_EXTRAS = ((0xB2, 0xB3), (0xB9, 0xB9), (0xBC, 0xBE), (0x24B6, 0x24E9), (0x1F130, 0x1F149),
                (0x1F150, 0x1F169), (0x1F170, 0x1F189))


def category_ranges(short: str) -> Ranges:
    table = _general_categories()
    if short == "LC":
        return union(table.get("Lu", ()), table.get("Ll", ()), table.get("Lt", ()))
    return union(*(r for c, r in table.items() if c.startswith(short)))


@lru_cache(maxsize=None)
def _named_set(name: str) -> Ranges:
    """The code points of a property or class name, as Oniguruma spells them."""
    if name in ("space", "whitespace"):
        return code_points(WHITE_SPACE)
    if name == "digit":
        return category_ranges("Nd")
    if name == "word":
        return union(*map(category_ranges, ("L", "M", "Nd", "Nl", "Pc")), _WORD_EXTRAS)
    if name in ("xdigit", "asciihexdigit", "hexdigit"):
        return code_points("0123456789ABCDEFabcdef")
    if name == "any":
        return ((0, MAX_CODE_POINT),)
    if name == "assigned":
        return complement(category_ranges("Cn"))
    if name == "ascii":
        return ((0, 0x7F),)
    short = _CATEGORY_NAMES.get(name)
    if short is None:
        short = next((c for c in _general_categories() if c.lower() == name), None)
        if short is None and name in ("l", "m", "n", "p", "s", "z", "c", "lc"):
            short = "LC" if name == "lc" else name.upper()
    if short is None:
        raise UnsupportedPattern(
            f"\\p{{{name}}}: only Unicode general categories (L, Lu, N, Nd, P, S, Z, M, C, ... "
            "or their long names), Any, Assigned, ASCII, Space, Digit, Word and XDigit are "
            "supported; scripts (\\p{Han}, ...) and other properties are not.")
    return category_ranges(short)


def _property(body: str) -> tuple[Ranges, bool]:
    """\\p{body}: (its code points, negated?). Oniguruma ignores case, spaces, '_' and '-' in
    property names, and \\p{^L} is \\P{L}."""
    negated = body.startswith("^")
    key = re.sub(r"[\s_\-]", "", body[negated:]).lower()
    return _named_set(key), negated


# Python re writes each code point as an escape, so nothing in a class needs quoting
def _class_item(lo: int, hi: int) -> str:
    def esc(cp: int) -> str:
        return f"\\U{cp:08x}" if cp > 0xFFFF else f"\\u{cp:04x}"
    return esc(lo) if lo == hi else f"{esc(lo)}-{esc(hi)}"


def _bracket(ranges: Ranges, negated: bool = False) -> str:
    return "[" + "^" * negated + "".join(_class_item(lo, hi) for lo, hi in ranges) + "]"


def char_class(ranges: Ranges, negated: bool = False) -> str:
    """A character class matching the code points in `ranges` (or, negated, all others).

    re looks a character up in a class of code points up to U+FFFF in one step (a bitmap), but
    a class holding any higher code point is searched range by range: ~1 µs a character for
    \\p{L}'s 650 ranges. So a class reaching past U+FFFF is written as two: its U+0000..U+FFFF
    part, and its higher part behind a one-range guard, which only the rare characters above
    U+FFFF ever reach."""
    if not ranges:
        return r"[\s\S]" if negated else "(?!)"
    bmp = tuple((lo, min(hi, 0xFFFF)) for lo, hi in ranges if lo <= 0xFFFF)
    astral = tuple((max(lo, 0x10000), hi) for lo, hi in ranges if hi > 0xFFFF)
    if not astral:
        return _bracket(bmp, negated)  # a negated one matches every astral character, as it should
    if not bmp:
        return _bracket(astral, negated) if not negated else \
            f"(?:[\\x00-\\uffff]|(?=[^\\x00-\\uffff]){_bracket(astral, True)})"
    if negated:
        return (f"(?:(?=[\\x00-\\uffff]){_bracket(bmp, True)}"
                f"|(?=[^\\x00-\\uffff]){_bracket(astral, True)})")
    return f"(?:{_bracket(bmp)}|(?=[^\\x00-\\uffff]){_bracket(astral)})"


# ---------------------------------------------------------------------------- translation

_SIMPLE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "f": "\f", "v": "\v", "a": "\a",
                   "e": "\x1b"}
# \s \d \w \h, by the property each stands for; the upper-case escape is the complement
_CLASS_ESCAPES = {"s": "space", "d": "digit", "w": "word", "h": "xdigit"}
_UNSUPPORTED_ESCAPES = "XKGNOyYgc"


class _Translator:
    """One pass over an Oniguruma pattern, writing the `re` pattern as it goes."""

    def __init__(self, pattern: str):
        self.p, self.i, self.out = pattern, 0, []

    def fail(self, what: str) -> UnsupportedPattern:
        return UnsupportedPattern(f"tokenizer regex {self.p!r}: {what} (at position {self.i}); "
                                  "this Oniguruma construct has no translation to Python's re.")

    def peek(self, n: int = 1) -> str:
        return self.p[self.i:self.i + n]

    def translate(self) -> str:
        while self.i < len(self.p):
            c = self.p[self.i]
            if c == "\\":
                self.out.append(self.escape_outside())
            elif c == "[":
                ranges, negated = self.bracket()
                self.out.append(char_class(ranges, negated))
            elif c == "(":
                self.out.append(self.group_open())
            elif c == "^":
                self.i += 1
                self.out.append("(?m:^)")
            elif c == "$":
                self.i += 1
                self.out.append("(?m:$)")
            else:
                self.i += 1
                self.out.append(c)
        return "".join(self.out)

    # -- outside brackets
    def escape_outside(self) -> str:
        self.i += 1
        if self.i >= len(self.p):
            raise self.fail("a pattern ending in a lone backslash")
        c = self.p[self.i]
        if c in "pP":
            ranges, negated = self.property_escape()
            return char_class(ranges, negated != (c == "P"))
        if c.lower() in _CLASS_ESCAPES:
            self.i += 1
            return char_class(_named_set(_CLASS_ESCAPES[c.lower()]), c.isupper())
        if c in "bB":
            self.i += 1
            w = char_class(_named_set("word"))
            boundary = f"(?:(?<={w})(?!{w})|(?<!{w})(?={w}))"
            not_boundary = f"(?:(?<={w})(?={w})|(?<!{w})(?!{w}))"
            return boundary if c == "b" else not_boundary
        if c == "A":
            self.i += 1
            return r"\A"
        if c == "z":
            self.i += 1
            return r"\Z"
        if c == "Z":
            self.i += 1
            return r"(?=\n?\Z)"
        if c == "R":
            self.i += 1
            return r"(?>\r\n|[\n\x0b\x0c\r\x85\u2028\u2029])"
        if c == "k" and self.peek(2) == "k<":
            end = self.p.find(">", self.i)
            name = self.p[self.i + 2:end]
            self.i = end + 1
            return f"(?P={name})" if not name.isdigit() else f"\\{name}"
        if c.isdigit() and c != "0":
            start = self.i
            while self.i < len(self.p) and self.p[self.i].isdigit():
                self.i += 1
            return "\\" + self.p[start:self.i] + "(?:)"  # a back-reference, cut from what follows
        if c in _UNSUPPORTED_ESCAPES:
            raise self.fail(f"\\{c}")
        return re.escape(chr(self.code_point_escape()))

    def property_escape(self) -> tuple[Ranges, bool]:
        """At the p/P of \\p{...}: (code points, negated by ^)."""
        if self.peek(2)[1:] != "{":
            raise self.fail("\\p without braces")
        end = self.p.find("}", self.i)
        if end < 0:
            raise self.fail("an unclosed \\p{")
        body = self.p[self.i + 2:end]
        self.i = end + 1
        return _property(body)

    def code_point_escape(self) -> int:
        """At the character after a backslash that stands for one character: its code point."""
        c = self.p[self.i]
        self.i += 1
        if c in _SIMPLE_ESCAPES:
            return ord(_SIMPLE_ESCAPES[c])
        if c == "x":
            if self.peek() == "{":
                end = self.p.index("}", self.i)
                digits, self.i = self.p[self.i + 1:end], end + 1
            else:
                digits = re.match(r"[0-9A-Fa-f]{0,2}", self.p[self.i:]).group()
                self.i += len(digits)
            return int(digits or "0", 16)
        if c == "u":
            digits = self.p[self.i:self.i + 4]
            if not re.fullmatch(r"[0-9A-Fa-f]{4}", digits):
                raise self.fail("\\u without four hex digits")
            self.i += 4
            return int(digits, 16)
        if c == "0":
            digits = re.match(r"[0-7]{0,2}", self.p[self.i:]).group()
            self.i += len(digits)
            return int("0" + digits, 8)
        if c.isalnum():
            self.i -= 1
            raise self.fail(f"the escape \\{c}")
        return ord(c)

    def group_open(self) -> str:
        rest = self.p[self.i:]
        named = re.match(r"\(\?<([A-Za-z_]\w*)>", rest)
        if named:
            self.i += named.end()
            return f"(?P<{named.group(1)}>"
        options = re.match(r"\(\?([imx]*)(?:-([imx]*))?(:|\))", rest)
        if options and (options.group(1) or options.group(2)):
            on, off = options.group(1), options.group(2) or ""
            if options.group(3) == ")" and self.i != 0:
                raise self.fail("an option group (?i) after the start; write (?i:...)")
            self.i += options.end()
            # Oniguruma's m is "dot matches newline", re's s
            on, off = on.replace("m", "s"), off.replace("m", "s")
            return f"(?{on}{'-' + off if off else ''}{options.group(3)}"
        if rest.startswith(("(?~", "(?(", "(?{", "(*")):
            raise self.fail(f"the group {rest[:3]!r}")
        self.i += 1
        return "("

    # -- inside brackets
    def bracket(self) -> tuple[Ranges, bool]:
        """At '[': the class's code points and whether it is negated (kept apart so that a
        negated class is written as [^...] of its complement, not as a huge list)."""
        self.i += 1
        negated = self.peek() == "^"
        self.i += negated
        operands: list[Ranges] = []  # the parts joined by &&, intersected at the end
        items: list[Ranges] = []
        first = True
        while True:
            if self.i >= len(self.p):
                raise self.fail("an unclosed [")
            c = self.p[self.i]
            if c == "]" and not first:
                self.i += 1
                break
            first = False
            if c == "&" and self.peek(2) == "&&":
                self.i += 2
                operands.append(union(*items))
                items = []
                continue
            if c == "[":
                posix = re.match(r"\[:(\^?)(\w+):\]", self.p[self.i:])
                if posix:
                    self.i += posix.end()
                    chars = _named_set(posix.group(2).lower())
                    items.append(complement(chars) if posix.group(1) else chars)
                else:
                    inner, inner_negated = self.bracket()
                    items.append(complement(inner) if inner_negated else inner)
                continue
            lo = self.class_atom()
            if isinstance(lo, tuple):  # a class escape: \p{..}, \s, ...
                items.append(lo)
                continue
            if self.peek() == "-" and self.p[self.i + 1:self.i + 2] not in ("]", ""):
                self.i += 1
                hi = self.class_atom()
                if isinstance(hi, tuple) or hi < lo:
                    raise self.fail("a bad range in a character class")
                items.append(((lo, hi),))
            else:
                items.append(((lo, lo),))
        operands.append(union(*items))
        result = operands[0]
        for other in operands[1:]:
            result = intersection(result, other)
        return result, negated

    def class_atom(self) -> int | Ranges:
        """One element of a class: a code point, or the code points of a class escape."""
        c = self.p[self.i]
        if c != "\\":
            self.i += 1
            return ord(c)
        self.i += 1
        if self.i >= len(self.p):
            raise self.fail("a pattern ending in a lone backslash")
        c = self.p[self.i]
        if c in "pP":
            ranges, negated = self.property_escape()
            return complement(ranges) if negated != (c == "P") else ranges
        if c.lower() in _CLASS_ESCAPES:
            self.i += 1
            ranges = _named_set(_CLASS_ESCAPES[c.lower()])
            return complement(ranges) if c.isupper() else ranges
        if c == "b":  # in a class, \b is backspace
            self.i += 1
            return 8
        return self.code_point_escape()


@lru_cache(maxsize=256)
def translate(pattern: str) -> str:
    """The Python `re` spelling of an Oniguruma pattern (see the module docstring)."""
    return _Translator(pattern).translate()


@lru_cache(maxsize=256)
def compile_pattern(pattern: str) -> re.Pattern:
    """An Oniguruma pattern from tokenizer.json, compiled with Python's re so that it matches
    the same spans. Raises UnsupportedPattern for syntax it does not translate."""
    try:
        return re.compile(translate(pattern))
    except re.error as e:
        raise UnsupportedPattern(f"tokenizer regex {pattern!r} could not be translated to "
                                 f"Python's re ({e}); the file may be corrupt, or use Oniguruma "
                                 "syntax this project does not cover.") from None


def find_spans(pattern: re.Pattern, text: str) -> list[tuple[int, int]]:
    """(start, end) of each match, left to right, as the reference iterates them: after a
    match, an empty match at its end is skipped (re.finditer keeps it, and then lets a
    non-empty match start there, which the reference never does)."""
    spans = [m.span() for m in pattern.finditer(text)]
    if all(a < b for a, b in spans):
        return spans  # no empty match: both iterations are the same search repeated
    spans, pos, last_end = [], 0, None
    while pos <= len(text):
        m = pattern.search(text, pos)
        if m is None:
            break
        a, b = m.span()
        if a == b and last_end == b:
            pos = b + 1
            continue
        spans.append((a, b))
        pos = last_end = b
    return spans
