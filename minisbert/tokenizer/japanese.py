"""Japanese BERT's front end (HuggingFace's BertJapaneseTokenizer): MeCab words, then WordPiece.

Japanese has no spaces between words, so a morphological analyser (MeCab, through fugashi)
cuts the text into words first. Step by step, for one text:
  1. literal special tokens ("[MASK]", "[CLS]", ...) are cut out and taken as such;
  2. each remaining piece is NFKC-normalized (full-width "ＡＢＣ" -> "ABC", half-width
     "ｶﾞ" -> "ガ", "\u3000" -> " ");
  3. MeCab splits it into words with the dictionary tokenizer_config.json names in
     `mecab_kwargs.mecab_dic`: ipadic when it names none, unidic_lite or unidic when named;
  4. if lowercasing, each word (MeCab's surface form) is lowercased;
  5. each word is split by WordPiece ("##" continuation pieces, [UNK] for a word it cannot
     build), or, with `subword_tokenizer_type: character`, into single characters.

Which dictionary: transformers 4 defaulted to ipadic and transformers 5 to unidic_lite. The
models (cl-tohoku, sonoisa) were trained with ipadic; their vocabularies hold ipadic's words,
so another dictionary silently changes the ids. We keep ipadic as the default.

Lowercasing happens in step 4, after NFKC and MeCab, for either switch: the tokenizer's own
`do_lower_case` (tokenizer_config.json) or the folder's (sentence_bert_config.json, passed in
as `lowercase`). That is where BertJapaneseTokenizer lowercases, and sentence-transformers
6 means to hand the folder's switch to the tokenizer (on this tokenizer it fails with an
AttributeError; tests/test_japanese.py works around it). Older sentence-transformers releases
lowercased the raw text instead: the same ids on all 34,500 Japanese test messages, different
only on compatibility characters such as "№" (NFKC makes it "No" after the lowercasing) and on
a literal "[MASK]" (lowercased into plain text).

Surrogate code points, which MeCab cannot take, are first repaired (`base.well_formed`).
A NUL character ends the text for MeCab, as it does for the reference (same ids).
Threads may share the tokenizer: a lock keeps them from using the MeCab tagger at once.

Left out: word tokenizers other than MeCab (basic, sudachi, jumanpp), sentencepiece subwords,
added tokens beyond the five special ones, pairs of texts.
"""

from __future__ import annotations

import importlib
import os
import threading
import unicodedata
from pathlib import Path

from ..errors import MissingDependencyError, TokenizerError
from .base import (WORDPIECE_SPECIAL_TOKENS, Tokenizer, WordPiece, read_special_tokens,
                   read_vocab, special_pattern, split_special, well_formed)

_INSTALL = "pip install 'minisbert[ja]'"
_DICTIONARIES = ("ipadic", "unidic_lite", "unidic")


def mecab_tagger(dictionary: str | None, option: str | None, config_path: Path):
    """A fugashi tagger reading the named dictionary (None: only `option`, e.g. "-d <dir>").
    config_path: the tokenizer_config.json asking for it, named in error messages."""
    try:
        import fugashi
    except ImportError:
        raise MissingDependencyError(
            f"{config_path}: Japanese models need the MeCab binding fugashi and the ipadic "
            f"dictionary: {_INSTALL}") from None
    option = option or ""
    if dictionary is not None:
        if dictionary not in _DICTIONARIES:
            raise TokenizerError(f"{config_path} names the MeCab dictionary {dictionary!r}; "
                                 f"minisbert knows {', '.join(_DICTIONARIES)}.")
        try:
            dicdir = importlib.import_module(dictionary).DICDIR
        except ImportError:
            hint = _INSTALL if dictionary == "ipadic" else f"pip install {dictionary}"
            raise MissingDependencyError(
                f"{config_path}: this model's tokenizer uses the MeCab dictionary {dictionary}, "
                f"which is not installed: {hint}") from None
        if not os.path.isdir(dicdir):  # the unidic package downloads its data separately
            raise MissingDependencyError(
                f"{config_path}: the {dictionary} package is installed but its data is not "
                f"({dicdir}): python -m {dictionary} download")
        # -r: the dictionary's own mecabrc, so no system-wide MeCab configuration is needed.
        option = f'-d "{dicdir}" -r "{dicdir}/mecabrc" ' + option
    try:
        return fugashi.GenericTagger(option, quiet=True)  # quiet: our error says it all
    except RuntimeError as e:
        raise TokenizerError(f"{config_path}: MeCab could not start with options {option!r}: "
                             f"{e}") from None


class JapaneseTokenizer(Tokenizer):
    def __init__(self, folder: Path, config: dict, max_length: int, lowercase: bool = False):
        """config: tokenizer_config.json; lowercase: sentence_bert_config.json's do_lower_case."""
        super().__init__(max_length, lowercase)
        word_type = config.get("word_tokenizer_type", "basic")
        self.subword_type = config.get("subword_tokenizer_type", "wordpiece")
        if word_type != "mecab" or self.subword_type not in ("wordpiece", "character"):
            raise TokenizerError(
                f"{folder / 'tokenizer_config.json'}: word_tokenizer_type {word_type!r} with "
                f"subword_tokenizer_type {self.subword_type!r}; minisbert implements mecab with "
                "wordpiece or character.")
        self.vocab = read_vocab(folder / "vocab.txt")
        names = read_special_tokens(folder, config, WORDPIECE_SPECIAL_TOKENS)
        missing = [t for t in names.values() if t not in self.vocab]
        if missing:
            raise TokenizerError(f"{folder / 'vocab.txt'} lacks the special tokens {missing}.")
        self.wordpiece = WordPiece(self.vocab, names["unk_token"])
        self.unk_id = self.wordpiece.unk_id
        self.cls_id = self.vocab[names["cls_token"]]
        self.sep_id = self.vocab[names["sep_token"]]
        self.pad_id = self.vocab[names["pad_token"]]
        self.specials = special_pattern(names.values())
        # BertJapaneseTokenizer's own do_lower_case (False unless the config says so). The
        # folder's sentence_bert_config.json value arrives separately (`lowercase_input`).
        self.do_lower_case = bool(config.get("do_lower_case", False))
        # Words never lowercased. A MeCab surface never equals "[MASK]" (MeCab splits the
        # brackets off), but the reference checks, so we do too.
        self.never_lower = set(names.values()) | set(config.get("never_split") or ())

        mecab = config.get("mecab_kwargs") or {}
        self.normalize = mecab.get("normalize_text", True)
        self.tagger = mecab_tagger(mecab.get("mecab_dic", "ipadic"), mecab.get("mecab_option"),
                                   folder / "tokenizer_config.json")
        # A MeCab tagger parses into one lattice of its own, and fugashi's nodes point into it:
        # another parse overwrites the nodes of the last (fugashi reads their features lazily).
        # So one thread at a time parses and reads its words. Parsing holds the GIL anyway
        # (fugashi does not release it), so the lock costs no parallelism.
        self.tagger_lock = threading.Lock()

    def token_ids(self) -> dict[str, int]:
        return {**self.vocab, **super().token_ids()}

    def words(self, text: str, lowercase: bool) -> list[str]:
        """MeCab's words (surface forms) of a text without special tokens."""
        if self.normalize:
            text = unicodedata.normalize("NFKC", text)
        with self.tagger_lock:
            words = [node.surface for node in self.tagger(text)]  # MeCab drops the spaces itself
        if lowercase:
            # str.lower on the whole word, so a Greek final sigma becomes "ς", as in the reference.
            words = [w if w in self.never_lower else w.lower() for w in words]
        return words

    def tokenize(self, text: str) -> list[int]:
        lowercase = self.do_lower_case or self.lowercase_input
        ids = []
        # Not self.pieces(): that would lowercase before NFKC; here it happens per MeCab word.
        for piece, is_special in split_special(well_formed(text), self.specials):
            if is_special:
                ids.append(self.vocab[piece])
                continue
            for word in self.words(piece, lowercase):
                if self.subword_type == "character":
                    # One id per character; NFKC again since lowercasing can undo it.
                    ids.extend(self.vocab.get(c, self.unk_id)
                               for c in unicodedata.normalize("NFKC", word))
                else:
                    # MeCab's words hold no spaces, but the reference splits at them, so do we.
                    for part in word.split():
                        ids.extend(self.wordpiece.split(part))
        return ids

