"""BERT's English tokenizer: clean, normalize, split on spaces and punctuation, then WordPiece.

It reproduces the HuggingFace fast tokenizer (BertNormalizer + BertPreTokenizer + WordPiece),
which is what sentence-transformers runs, character class by character class:
  - cleaning drops NUL, U+FFFD and control/format/private-use/surrogate characters (but keeps
    tab, newline and carriage return as spaces), and turns every white-space character into " ";
  - CJK ideographs become words of their own (spaces around each);
  - with lowercasing, accents are stripped (NFD, then nonspacing marks dropped) and each
    character is lowercased on its own (so Greek final sigma is not special-cased);
  - words split at white space and around every punctuation character, where "punctuation"
    is ASCII's (including $+<=>^`|~) plus every Unicode P* category.

Surrogate code points are first repaired (`base.well_formed`): a pair becomes the character
it encodes, a lone one U+FFFD, which cleaning drops. Threads may share the tokenizer: tokenizing
changes no state but caches (WordPiece's lru_cache, and the per-character tables below, whose
entries are the same whoever fills them in).

Literal special tokens in the text ("[MASK]", or MPNet's "<s>", "<mask>") are taken as those
tokens; tokenizer.json says which (its `added_tokens`).

Left out: `never_split`, pairs of texts, offsets.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

from ..errors import TokenizerError
from ..folder import read_json
from .base import (WORDPIECE_SPECIAL_TOKENS, CharTable, Tokenizer, WordPiece, read_special_tokens,
                   read_vocab, special_pattern, split_special)

# White_Space characters that survive cleaning; U+000B, U+000C, U+0085 are control characters
# and are dropped before this test, as in the reference.
_SPACES = frozenset("\t\n\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
                    "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")
_DROPPED_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cs"})
_CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
               (0x2B740, 0x2B81F), (0x2B920, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))


def _is_dropped(c: str) -> bool:
    return c == "\0" or c == "\ufffd" or (c not in "\t\n\r"
                                          and unicodedata.category(c) in _DROPPED_CATEGORIES)


def _is_cjk(c: str) -> bool:
    cp = ord(c)
    return any(lo <= cp <= hi for lo, hi in _CJK_RANGES)


def _is_punctuation(c: str) -> bool:
    cp = ord(c)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(c).startswith("P")


def _clean(c: str, split_cjk: bool) -> str:
    if _is_dropped(c):
        return ""
    if c in _SPACES:
        return " "
    return f" {c} " if split_cjk and _is_cjk(c) else c


_CLEAN = {True: CharTable(lambda c: _clean(c, True)), False: CharTable(lambda c: _clean(c, False))}
_NO_MARKS = CharTable(lambda c: "" if unicodedata.category(c) == "Mn" else c)
_LOWER = CharTable(str.lower)  # per character, as the reference does (no final-sigma rule)
_PUNCTUATION_APART = CharTable(lambda c: f" {c} " if _is_punctuation(c) else c)


def normalize(text: str, lowercase: bool, strip_accents: bool, split_cjk: bool) -> str:
    text = text.translate(_CLEAN[split_cjk])
    if strip_accents:
        text = unicodedata.normalize("NFD", text).translate(_NO_MARKS)
    if lowercase:
        text = text.translate(_LOWER)
    return text


def split_words(text: str) -> list[str]:
    """Split at white space, and make every punctuation character a word of its own."""
    return text.translate(_PUNCTUATION_APART).split()


def added_tokens(path: Path) -> list[tuple[str, int, bool]]:
    """tokenizer.json's `added_tokens`, as (content, id, normalized); [] without the file."""
    added = read_json(path, error=TokenizerError).get("added_tokens") or []
    out = []
    for token in added if isinstance(added, list) else [added]:
        if not (isinstance(token, dict) and isinstance(token.get("content"), str)
                and token["content"] and isinstance(token.get("id"), int)):
            raise TokenizerError(f"{path}: the added token {token!r} has no content or id; "
                                 "download the file again.")
        out.append((token["content"], token["id"], bool(token.get("normalized"))))
    return out


class BertTokenizer(Tokenizer):
    def __init__(self, folder: Path, config: dict, max_length: int, lowercase: bool = False):
        """config: tokenizer_config.json; lowercase: sentence_bert_config.json's do_lower_case."""
        super().__init__(max_length, lowercase)
        vocab = read_vocab(folder / "vocab.txt")
        names = read_special_tokens(folder, config, WORDPIECE_SPECIAL_TOKENS)
        missing = [names[key] for key in ("unk_token", "cls_token", "sep_token", "pad_token")
                   if names[key] not in vocab]
        if missing:  # a truncated vocab.txt, or one of another model
            raise TokenizerError(f"{folder / 'vocab.txt'} lacks the special tokens {missing}; "
                                 "download the file again.")
        self.wordpiece = WordPiece(vocab, names["unk_token"])
        self.cls_id = vocab[names["cls_token"]]
        self.sep_id = vocab[names["sep_token"]]
        self.pad_id = vocab[names["pad_token"]]
        # The tokenizer's own switches (tokenizer_config.json).
        self.do_lower_case = bool(config.get("do_lower_case", True))
        strip = config.get("strip_accents")
        self.strip_accents = self.do_lower_case if strip is None else bool(strip)
        self.split_cjk = bool(config.get("tokenize_chinese_chars", True))
        # Literal special tokens in the text are taken as such. Which ones: the folder's
        # tokenizer.json lists them as `added_tokens` (the fast tokenizer sentence-transformers
        # runs reads them there), else the special tokens named above ([MASK] may be absent).
        # A token marked "normalized" is found in the normalized text instead of the raw one:
        # all-mpnet-base-v2's "<unk>" (id 3, beside its real unknown token [UNK]) also matches
        # "<UNK>", as lowercasing makes it "<unk>".
        raw = {t: vocab[t] for t in names.values() if t in vocab}
        normalized = {}
        added = added_tokens(folder / "tokenizer.json")
        if added:
            raw = {content: i for content, i, norm in added if not norm}
            normalized = {self.normalize(content).strip(): i for content, i, norm in added if norm}
        self.special_ids = {**normalized, **raw}
        self.specials = special_pattern(raw)
        self.normalized_specials = special_pattern(t for t in normalized if t)

    def normalize(self, text: str) -> str:
        return normalize(text, self.do_lower_case, self.strip_accents, self.split_cjk)

    def token_ids(self) -> dict[str, int]:
        return {**self.wordpiece.vocab, **super().token_ids()}

    def tokenize(self, text: str) -> list[int]:
        ids = []
        for piece, is_special in self.pieces(text):
            if is_special:
                ids.append(self.special_ids[piece])
                continue
            for part, is_added in split_special(self.normalize(piece), self.normalized_specials):
                if is_added:
                    ids.append(self.special_ids[part])
                    continue
                for word in split_words(part):
                    ids.extend(self.wordpiece.split(word))
        return ids
