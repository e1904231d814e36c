"""SentencePiece's compiled normalization map: tokenizer.json's `Precompiled` normalizer.

A SentencePiece model carries its normalization (nmt_nfkc, nfkc, nmt_nfkc_cf, ...) as one
binary string, `precompiled_charsmap`, which tokenizer.json stores in base64:

    u32 little-endian   n, the size in bytes of the trie
    n bytes             a Darts double-array trie (u32 units) over UTF-8 byte strings; each
                        key's value is an offset into the table below
    the rest            the replacements, NUL-terminated UTF-8 strings one after the other

Each unit of the trie packs a label (the byte that leads to it, bits 0-7), a has-leaf flag (bit
8) and the offset of its children (bits 10-31, shifted left by 8 more when bit 9 is set); the
unit reached from a node by the byte c sits at index node ^ c and must carry the label c, and
a key ends at a node whose leaf unit (index node ^ 0) holds the value in its low 31 bits.

How the reference library applies it (and so this module, exactly):
  1. the text is cut into extended grapheme clusters (Unicode's UAX #29);
  2. a cluster shorter than 6 UTF-8 bytes is looked up whole: if some key is a prefix of it,
     the cluster is replaced by the value of the SHORTEST such key (so "ｶ" + a combining accent,
     5 bytes, becomes "カ": the accent is dropped, as the reference drops it);
  3. otherwise, or if no key is a prefix, each character is looked up alone and replaced by
     its value if it is a key, kept if not.

Speed: most text needs nothing, and most of the rest is changed character by character. So a
text none of whose characters is a key (or could start a cluster of several) is returned as it
is (one regex search); where no cluster of several characters starts with (part of) a key, one
str.translate does the rest; only around the clusters that do start so is the text cut into
clusters and looked up in the trie. The grapheme classes come from `unicodedata` plus the small
tables below (Unicode 14 in Python 3.11; the reference's are newer).

Left out: the cluster rule for Indic conjuncts (GB9c, Unicode 15.1): it only joins clusters of
three-byte characters, which are 6 bytes or more, and so are looked up character by character
either way. Offsets (alignments between the text and its normalized form) are not tracked.
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np

from ..errors import TokenizerError
from .unicode_regex import (Ranges, category_ranges, char_class, code_points, complement,
                            intersection, union)

# ---------------------------------------------------------------------------- grapheme classes

# Grapheme_Cluster_Break values that unicodedata cannot give, as code point ranges (Unicode 14).
_PREPEND = ((0x0600, 0x0605), (0x06DD, 0x06DD), (0x070F, 0x070F), (0x0890, 0x0891),
            (0x08E2, 0x08E2), (0x0D4E, 0x0D4E), (0x110BD, 0x110BD), (0x110CD, 0x110CD),
            (0x111C2, 0x111C3), (0x1193F, 0x1193F), (0x11941, 0x11941), (0x11A3A, 0x11A3A),
            (0x11A84, 0x11A89), (0x11D46, 0x11D46))
# Other_Grapheme_Extend: spacing vowel signs and others that extend like marks (U+FF9E/FF9F, the
# half-width voiced sound marks, are why "ｶﾞ" is one cluster).
_OTHER_EXTEND = ((0x09BE, 0x09BE), (0x09D7, 0x09D7), (0x0B3E, 0x0B3E), (0x0B57, 0x0B57),
                 (0x0BBE, 0x0BBE), (0x0BD7, 0x0BD7), (0x0CC2, 0x0CC2), (0x0CD5, 0x0CD6),
                 (0x0D3E, 0x0D3E), (0x0D57, 0x0D57), (0x0DCF, 0x0DCF), (0x0DDF, 0x0DDF),
                 (0x1B35, 0x1B35), (0x200C, 0x200C), (0x302E, 0x302F), (0xFF9E, 0xFF9F),
                 (0x1133E, 0x1133E), (0x11357, 0x11357), (0x114B0, 0x114B0),
                 (0x114BD, 0x114BD), (0x115AF, 0x115AF), (0x11930, 0x11930),
                 (0x1D165, 0x1D165), (0x1D16E, 0x1D172), (0xE0020, 0xE007F),
                 (0x1F3FB, 0x1F3FF))  # the last: emoji skin-tone modifiers
# Spacing marks (Mc) that do not count as SpacingMark, and two letters that do (Thai, Lao am).
_NOT_SPACING_MARK = ((0x102B, 0x102C), (0x1038, 0x1038), (0x1062, 0x1064), (0x1067, 0x106D),
                     (0x1083, 0x1083), (0x1087, 0x108C), (0x108F, 0x108F), (0x109A, 0x109C),
                     (0x1A61, 0x1A61), (0x1A63, 0x1A64), (0xAA7B, 0xAA7B), (0xAA7D, 0xAA7D),
                     (0x11720, 0x11721))
_EXTRA_SPACING_MARK = ((0x0E33, 0x0E33), (0x0EB3, 0x0EB3))
# Extended_Pictographic (emoji and the symbols they grew from): a ZWJ between two of them does
# not break a cluster (GB11).
_EXTENDED_PICTOGRAPHIC = (
    (0x00A9, 0x00A9), (0x00AE, 0x00AE), (0x203C, 0x203C), (0x2049, 0x2049), (0x2122, 0x2122),
    (0x2139, 0x2139), (0x2194, 0x2199), (0x21A9, 0x21AA), (0x231A, 0x231B), (0x2328, 0x2328),
    (0x2388, 0x2388), (0x23CF, 0x23CF), (0x23E9, 0x23F3), (0x23F8, 0x23FA), (0x24C2, 0x24C2),
    (0x25AA, 0x25AB), (0x25B6, 0x25B6), (0x25C0, 0x25C0), (0x25FB, 0x25FE), (0x2600, 0x2605),
    (0x2607, 0x2612), (0x2614, 0x2685), (0x2690, 0x2705), (0x2708, 0x2712), (0x2714, 0x2714),
    (0x2716, 0x2716), (0x271D, 0x271D), (0x2721, 0x2721), (0x2728, 0x2728), (0x2733, 0x2734),
    (0x2744, 0x2744), (0x2747, 0x2747), (0x274C, 0x274C), (0x274E, 0x274E), (0x2753, 0x2755),
    (0x2757, 0x2757), (0x2763, 0x2767), (0x2795, 0x2797), (0x27A1, 0x27A1), (0x27B0, 0x27B0),
    (0x27BF, 0x27BF), (0x2934, 0x2935), (0x2B05, 0x2B07), (0x2B1B, 0x2B1C), (0x2B50, 0x2B50),
    (0x2B55, 0x2B55), (0x3030, 0x3030), (0x303D, 0x303D), (0x3297, 0x3297), (0x3299, 0x3299),
    (0x1F000, 0x1F0FF), (0x1F10D, 0x1F10F), (0x1F12F, 0x1F12F), (0x1F16C, 0x1F171),
    (0x1F17E, 0x1F17F), (0x1F18E, 0x1F18E), (0x1F191, 0x1F19A), (0x1F1AD, 0x1F1E5),
    (0x1F201, 0x1F20F), (0x1F21A, 0x1F21A), (0x1F22F, 0x1F22F), (0x1F232, 0x1F23A),
    (0x1F23C, 0x1F23F), (0x1F249, 0x1F3FA), (0x1F400, 0x1F53D), (0x1F546, 0x1F64F),
    (0x1F680, 0x1F6FF), (0x1F774, 0x1F77F), (0x1F7D5, 0x1F7FF), (0x1F80C, 0x1F80F),
    (0x1F848, 0x1F84F), (0x1F85A, 0x1F85F), (0x1F888, 0x1F88F), (0x1F8AE, 0x1F8FF),
    (0x1F90C, 0x1F93A), (0x1F93C, 0x1F945), (0x1F947, 0x1FAFF), (0x1FC00, 0x1FFFD))
_HANGUL_L = ((0x1100, 0x115F), (0xA960, 0xA97C))
_HANGUL_V = ((0x1160, 0x11A7), (0xD7B0, 0xD7C6))
_HANGUL_T = ((0x11A8, 0x11FF), (0xD7CB, 0xD7FB))
_HANGUL_LV = tuple((cp, cp) for cp in range(0xAC00, 0xD7A4, 28))  # syllables without a final
_REGIONAL_INDICATOR = ((0x1F1E6, 0x1F1FF),)


@lru_cache(maxsize=None)
def grapheme_classes() -> dict[str, Ranges]:
    """Unicode's Grapheme_Cluster_Break classes (and Extended_Pictographic) as code point
    ranges; what is in none of them is "Other"."""
    joiners = code_points("\u200c\u200d")
    extend = union(category_ranges("Mn"), category_ranges("Me"), _OTHER_EXTEND)
    prepend = _PREPEND
    # Control: Cc, Cf, Zl, Zp, and the unassigned code points kept for format characters,
    # except the joiners, the prepended concatenation marks and the tag characters (Extend).
    control = union(*map(category_ranges, ("Cc", "Zl", "Zp", "Cf")),
                    _unassigned_among(((0x2065, 0x2065), (0xFFF0, 0xFFF8), (0xE0000, 0xE0FFF))))
    control = _minus(control, union(joiners, prepend, extend, code_points("\r\n")))
    spacing = _minus(union(category_ranges("Mc"), _EXTRA_SPACING_MARK),
                     union(extend, _NOT_SPACING_MARK))
    return {"CR": code_points("\r"), "LF": code_points("\n"), "Control": control,
            "Extend": _minus(extend, code_points("\u200d")), "ZWJ": code_points("\u200d"),
            "SpacingMark": spacing, "Prepend": prepend, "RI": _REGIONAL_INDICATOR,
            "L": _HANGUL_L, "V": _HANGUL_V, "T": _HANGUL_T, "LV": _HANGUL_LV,
            "LVT": _minus(((0xAC00, 0xD7A3),), _HANGUL_LV),
            "ExtPict": _EXTENDED_PICTOGRAPHIC}


def _minus(a: Ranges, b: Ranges) -> Ranges:
    return complement(union(complement(a), b))


def _unassigned_among(r: Ranges) -> Ranges:
    return intersection(r, category_ranges("Cn"))


@lru_cache(maxsize=None)
def cluster_pattern() -> re.Pattern:
    """One extended grapheme cluster, as UAX #29 writes the rules in regular-expression form:
    CR LF, or a control, or prepends + a core + extenders, where the core is a Hangul
    syllable, a pair of regional indicators (a flag), emoji joined by ZWJ, or any other
    character."""
    c = {name: char_class(r) for name, r in grapheme_classes().items()}
    hangul = (f"{c['L']}*(?:{c['V']}+|{c['LV']}{c['V']}*|{c['LVT']}){c['T']}*"
              f"|{c['L']}+|{c['T']}+")
    emoji = f"{c['ExtPict']}(?:{c['Extend']}*{c['ZWJ']}{c['ExtPict']})*"
    g = grapheme_classes()
    not_control = char_class(union(g["Control"], code_points("\r\n")), negated=True)
    core = f"(?:{hangul}|{c['RI']}{c['RI']}|{emoji}|{not_control})"
    extenders = char_class(union(g["Extend"], g["ZWJ"], g["SpacingMark"]))
    return re.compile(f"\r\n|{c['Control']}|\r|\n|{c['Prepend']}*{core}{extenders}*", re.DOTALL)


def grapheme_clusters(text: str) -> list[str]:
    """The text cut into extended grapheme clusters (for tests and readers; `normalize` only
    cuts where it needs to)."""
    return cluster_pattern().findall(text)


@lru_cache(maxsize=None)
def _joined_by_context() -> tuple[frozenset[str], frozenset[str]]:
    """(regional indicators, Extended_Pictographic): the characters whose joining to the one
    before depends on more than that one (the count of indicators before, for flags; an emoji
    before the ZWJ before, for emoji sequences). For every other pair of characters the
    cluster pattern started at the first tells whether the second joins it."""
    g = grapheme_classes()
    return tuple(frozenset(chr(cp) for lo, hi in g[k] for cp in range(lo, hi + 1))
                 for k in ("RI", "ExtPict"))


# ---------------------------------------------------------------------------- the trie

def _offset(unit: np.ndarray) -> np.ndarray:
    return (unit >> 10) << ((unit & (1 << 9)) >> 6)


def _read_trie(charsmap: bytes) -> tuple[np.ndarray, bytes]:
    """(trie units, the replacement table) of a precompiled_charsmap."""
    if len(charsmap) < 4:
        raise TokenizerError(f"precompiled_charsmap is {len(charsmap)} bytes long; it should "
                             "start with a 4-byte trie size. The tokenizer.json is corrupt.")
    size = int.from_bytes(charsmap[:4], "little")
    n_units = size // 4
    if 4 + 4 * n_units > len(charsmap) or n_units == 0:
        raise TokenizerError(f"precompiled_charsmap says its trie is {size} bytes, but holds "
                             f"{len(charsmap) - 4} bytes in all; the tokenizer.json is corrupt.")
    units = np.frombuffer(charsmap, dtype="<u4", count=n_units, offset=4).astype(np.int64)
    return units, charsmap[4 + 4 * n_units:]


def _key_table(units: np.ndarray, max_length: int = 64) -> tuple[dict[int, int], np.ndarray]:
    """From the trie: {code point: value} for the keys that are one character, and the code
    points that begin a longer key.

    Walked top down, one depth at a time for all nodes at once. The child reached from a node
    by the byte c is the unit at (node's base ^ c) whose label is c, so the units are first
    sorted by (index ^ label), the base of the node they hang from; a node's children are then
    one slice of that order. Each path carries its depth and its first four bytes (enough for
    its first character)."""
    n = len(units)
    index = np.arange(n, dtype=np.int64)
    label = units & 0xFF
    base = index ^ _offset(units)  # [n] the base of the node each unit leads to
    is_child = ((units >> 31) == 0) & (label != 0) & (index != 0)  # leaf values have bit 31
    child = index[is_child]
    hangs_from = child ^ label[child]
    order = np.argsort(hangs_from, kind="stable")
    child, hangs_from = child[order], hangs_from[order]

    node = np.zeros(1, dtype=np.int64)  # the root, unit 0
    depth = np.zeros(1, dtype=np.int64)
    head = np.zeros(1, dtype=np.int64)  # the path's first four bytes, the first in the low bits
    heads, lengths, values = [], [], []
    for _ in range(max_length):
        lo = np.searchsorted(hangs_from, base[node], "left")
        hi = np.searchsorted(hangs_from, base[node], "right")
        count = hi - lo
        if not count.any():
            break
        parent = np.repeat(np.arange(len(node)), count)  # [m] for each child, its node
        starts = np.repeat(lo - np.cumsum(count) + count, count)
        node = child[np.arange(count.sum()) + starts]  # [m]
        byte = label[node]
        shift = 8 * np.minimum(depth[parent], 3)
        head = head[parent] | np.where(depth[parent] < 4, byte << shift, 0)
        depth = depth[parent] + 1
        ends = ((units[node] >> 8) & 1) == 1  # a key ends here; its value is at the base
        heads.append(head[ends])
        lengths.append(depth[ends])
        values.append(units[np.minimum(base[node[ends]], n - 1)] & ((1 << 31) - 1))
    else:
        raise TokenizerError(f"precompiled_charsmap has keys over {max_length} bytes; the trie is "
                             "corrupt (SentencePiece's keys are a few characters).")
    head, length, value = (np.concatenate(x) for x in (heads, lengths, values))
    first, first_length = _first_code_point(head)
    one_char = first_length == length
    single = dict(zip(first[one_char].tolist(), value[one_char].tolist()))
    return single, np.unique(first[~one_char])


def _first_code_point(head: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The code point that UTF-8 bytes begin with (given as the first four bytes packed into
    an integer, the first in the low bits), and its length in bytes."""
    b = [(head >> (8 * k)) & 0xFF for k in range(4)]
    length = np.select([b[0] < 0x80, b[0] < 0xE0, b[0] < 0xF0], [1, 2, 3], 4)
    cp = np.select([length == 1, length == 2, length == 3], [b[0], b[0] & 0x1F, b[0] & 0x0F],
                   b[0] & 0x07)
    for k in range(1, 4):
        cp = np.where(length > k, (cp << 6) | (b[k] & 0x3F), cp)
    return cp, length


_ASTRAL = re.compile("[^\x00-\uffff]")  # a character above U+FFFF


class Precompiled:
    """normalize(text): what tokenizer.json's {"type": "Precompiled"} normalizer does, given
    the decoded bytes of its precompiled_charsmap."""

    def __init__(self, charsmap: bytes):
        units, self._strings = _read_trie(bytes(charsmap))
        try:
            self._strings.decode("utf-8")
        except UnicodeDecodeError as e:
            raise TokenizerError(f"precompiled_charsmap: its replacement strings are not UTF-8 "
                                 f"({e}); the tokenizer.json is corrupt.") from None
        self._units = units.tolist()  # a list is faster than an array to walk unit by unit
        single, starts = _key_table(units)
        # {code point: replacement} for each character that is a key, for str.translate
        self._translation = {cp: self._string_at(v) for cp, v in single.items()}
        keys = code_points("".join(map(chr, single)))
        begins = union(keys, code_points("".join(map(chr, starts.tolist()))))
        g = grapheme_classes()
        extenders = union(g["Extend"], g["ZWJ"], g["SpacingMark"])
        not_control = union(g["Control"], code_points("\r\n"))
        # A character the map changes when it stands alone ...
        self._changes = re.compile(char_class(keys))
        # ... and where a cluster of several characters begins with a character that begins a
        # key: only there can the lookup of a whole cluster differ from that of its characters.
        # Clusters of several characters start with a character followed by an extender, with
        # CR before LF, or with a prepended mark.
        self._several = re.compile("|".join(
            f"{char_class(first)}(?={char_class(second, negated)})" for first, second, negated in
            [(begins, extenders, False),
             (intersection(begins, code_points("\r")), code_points("\n"), False),
             (intersection(begins, g["Prepend"]), not_control, True)] if first))
        # The first test of every text: none of these characters (all of them up to U+FFFF,
        # so that re scans for them with a bitmap) and none above U+FFFF means no change.
        bmp = ((0, 0xFFFF),)
        self._maybe = re.compile(char_class(intersection(
            union(keys, extenders, code_points("\n"), g["Prepend"]), bmp)))
        self.n_single = len(single)  # characters that are keys (for reports)

    def _string_at(self, offset: int) -> str:
        """The replacement that starts at `offset` in the table (up to its NUL)."""
        end = self._strings.find(b"\0", offset)
        return self._strings[offset:end if end >= 0 else len(self._strings)].decode("utf-8")

    def _shortest_key_value(self, text: bytes) -> str | None:
        """The replacement of the shortest key that is a prefix of `text`, or None: the
        reference's common-prefix search lists the keys from the shortest and takes the first."""
        units, n = self._units, len(self._units)
        node = (units[0] >> 10) << ((units[0] & (1 << 9)) >> 6)
        for byte in text:
            if byte == 0:
                return None  # the search stops at a NUL byte
            node ^= byte
            if node >= n or units[node] & ((1 << 31) | 0xFF) != byte:
                return None
            unit = units[node]
            node ^= (unit >> 10) << ((unit & (1 << 9)) >> 6)
            if (unit >> 8) & 1:
                return self._string_at(units[node] & ((1 << 31) - 1))
        return None

    def _normalize_cluster(self, cluster: str) -> str:
        """One grapheme cluster, as the reference does it: whole if under 6 bytes and some key
        is a prefix of it, else character by character."""
        encoded = cluster.encode("utf-8", "surrogatepass")
        if len(encoded) < 6:
            whole = self._shortest_key_value(encoded)
            if whole is not None:
                return whole
        return cluster.translate(self._translation)

    def normalize(self, text: str) -> str:
        if self._maybe.search(text) is None and _ASTRAL.search(text) is None:
            return text  # the common case: nothing to change
        several = self._several.search(text)
        if several is None:
            # every cluster is normalized as its characters are
            if self._changes.search(text) is None:
                return text  # the common case: nothing to change
            return text.translate(self._translation)
        clusters = cluster_pattern()
        indicators, pictographs = _joined_by_context()
        out, done = [], 0
        while several is not None:
            # back to a certain cluster boundary, then forward cluster by cluster to the one
            # holding the character found
            start = several.start()
            while start > done and (text[start] in indicators
                                    or (text[start] in pictographs and text[start - 1] == "\u200d")
                                    or clusters.match(text, start - 1).end() > start):
                start -= 1
            while True:
                end = clusters.match(text, start).end()
                if end > several.start():
                    break
                start = end
            out.append(text[done:start].translate(self._translation))
            out.append(self._normalize_cluster(text[start:end]))
            done = end
            several = self._several.search(text, end)
        out.append(text[done:].translate(self._translation))
        return "".join(out)
