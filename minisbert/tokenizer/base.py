"""What every tokenizer front end shares: the interface, special tokens, surrogate repair, and
the WordPiece step.

A front end turns text into the ids the encoder sees. Each one implements `tokenize(text)`,
the content ids without special tokens; `encode(text)` here adds them (`[CLS] … [SEP]` for
BERT, `<s> … </s>` for XLM-R) and truncates to `max_length`, counting the special tokens.
The front ends are `bert.BertTokenizer` (English WordPiece), `japanese.JapaneseTokenizer`
(MeCab + WordPiece) and `xlmr.XLMRobertaTokenizer` (SentencePiece with XLM-R ids);
`load_tokenizer` in this package's `__init__` picks one from the model folder's files.

Here: the `Tokenizer` base class; the special tokens' spellings, read from the folder
(`read_special_tokens`, `token_content`) and cut out of the input (`special_pattern`,
`split_special`); `well_formed`, the surrogate repair every front end applies first; and
WordPiece with its vocab.txt reader, which the English and Japanese front ends share.

Pairs of texts (cross-encoders) go through `encode_pair`: both texts' ids cut "longest first"
to fit, then the pair template of the front end, with token type ids: BERT's
`[CLS] A [SEP] B [SEP]` (types 0 for A and its [SEP], 1 for B and the last [SEP]), XLM-R's and
RoBERTa's `<s> A </s></s> B </s>` (every type 0). tokenizer.json front ends use the file's
template instead.

Left out: decoding ids back to text, offsets, added tokens beyond the special
ones, and everything a single front end needs alone (normalization, MeCab, SentencePiece).
"""

from __future__ import annotations

import math
import re
import reprlib
from functools import lru_cache
from pathlib import Path

from ..errors import ModelFileMissing, TokenizerError
from ..folder import check_not_lfs_pointer, read_json


class Tokenizer:
    """The interface of every front end: subclasses set the three ids below, call
    `Tokenizer.__init__`, and implement `tokenize`."""

    cls_id: int  # id put before the text (`[CLS]`, `<s>`)
    sep_id: int  # id put after it (`[SEP]`, `</s>`)
    pad_id: int  # id used to fill short rows of a batch
    specials: re.Pattern | None = None  # literal special tokens to take as such in the input
    # The pair template, [cls] A [sep]×pair_separators B [sep]: BERT puts one separator
    # between the texts and gives B type 1; XLM-R and RoBERTa put two, and all types are 0.
    pair_separators: int = 1
    second_type: int = 1

    def __init__(self, max_length: int, lowercase: bool = False):
        self.max_length = max_length  # most ids `encode` returns, special tokens included
        # sentence_bert_config.json's do_lower_case: sentence-transformers lowercases the text
        # (each character on its own, special tokens left alone) before the tokenizer proper.
        # The tokenizer's own do_lower_case (tokenizer_config.json) is a separate switch.
        self.lowercase_input = lowercase

    def pieces(self, text: str):
        """Yield (piece, is_special): the text cut at literal special tokens such as "[MASK]"."""
        for piece, is_special in split_special(well_formed(text), self.specials):
            if self.lowercase_input and not is_special:
                piece = "".join(c.lower() for c in piece)
            yield piece, is_special

    def tokenize(self, text: str) -> list[int]:
        raise NotImplementedError

    def token_ids(self) -> dict[str, int]:
        """Every token this tokenizer can give, with its id (load checks each against the
        rows of the embedding table). Front ends with a vocabulary add it."""
        return {"the first special token": self.cls_id, "the last special token": self.sep_id,
                "the padding token": self.pad_id, **getattr(self, "special_ids", {})}

    def encode(self, text: str) -> list[int]:
        """Exactly the ids the model sees: special tokens included, truncated to max_length."""
        return self.encode_with_cut(text)[0]

    def encode_with_cut(self, text: str) -> tuple[list[int], int]:
        """`encode(text)`, and how many tokens truncation cut from the end of the text."""
        return self.finish(self.tokenize(text))

    def encode_pair(self, a: str, b: str) -> tuple[list[int], list[int]]:
        """(ids, token type ids) of the pair a, b as a cross-encoder sees it: each text's ids
        cut "longest first" until both and the special tokens fit max_length."""
        ids_a, ids_b = self.tokenize(a), self.tokenize(b)
        n_a, n_b = truncate_pair(len(ids_a), len(ids_b), self.max_length - 2 - self.pair_separators)
        first = [self.cls_id, *ids_a[:n_a], *[self.sep_id] * self.pair_separators]
        second = [*ids_b[:n_b], self.sep_id]
        return first + second, [0] * len(first) + [self.second_type] * len(second)

    def finish(self, ids: list[int]) -> tuple[list[int], int]:
        """Content ids -> (truncated ids with the special tokens around them, ids cut)."""
        keep = self.max_length - 2  # the special tokens take two of the places
        return [self.cls_id, *ids[:keep], self.sep_id], max(len(ids) - keep, 0)


def truncate_pair(n_a: int, n_b: int, budget: int) -> tuple[int, int]:
    """How many ids of a and of b to keep so that both fit in `budget` ("longest_first").

    If the shorter one fits in half the budget, it is kept whole and the longer gets the rest;
    otherwise each gets half (the second one the odd place)."""
    if n_a + n_b <= budget:
        return n_a, n_b
    short, long_ = sorted((n_a, n_b))
    long_ = short if short > budget else max(short, budget - short)
    if short + long_ > budget:
        short, long_ = budget // 2, budget // 2 + budget % 2
    return (long_, short) if n_a > n_b else (short, long_)


class CharTable(dict):
    """A `str.translate` table filled in as characters are met: each character's replacement
    is worked out once, by `rule`, and after that the whole text is mapped in C."""

    def __init__(self, rule):
        super().__init__()
        self.rule = rule

    def __missing__(self, cp: int) -> str:
        out = self[cp] = self.rule(chr(cp))
        return out


_SURROGATE = re.compile("[\ud800-\udfff]")


def well_formed(text: str) -> str:
    """The text with its surrogate code points repaired as UTF-16 decoding repairs them: a high
    surrogate followed by a low one becomes the character the pair encodes, any other becomes
    U+FFFD (REPLACEMENT CHARACTER).

    A Python str can hold surrogates (from "\\ud800" in JSON, `errors="surrogateescape"`, or
    UTF-16 data cut in the middle of a pair), but they are not characters and cannot be encoded
    as UTF-8, so the reference libraries reject them with an obscure error (HuggingFace's
    tokenizers: TypeError; SentencePiece: TypeError or RuntimeError; MeCab: UnicodeEncodeError).
    U+FFFD is Unicode's stand-in for ill-formed text, which each front end then treats as the
    reference treats a literal U+FFFD.
    """
    if not _SURROGATE.search(text):
        return text  # the usual case: nothing to repair, no copy
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def split_special(text: str, pattern: re.Pattern | None):
    """Yield (piece, is_special): literal special tokens such as "[MASK]" in the input are
    taken as those tokens, as HuggingFace's tokenizers do, before any normalization."""
    if pattern is None:
        if text:
            yield text, False
        return
    pos = 0
    for m in pattern.finditer(text):
        if m.start() > pos:
            yield text[pos:m.start()], False
        yield m.group(), True
        pos = m.end()
    if pos < len(text):
        yield text[pos:], False


def special_pattern(tokens) -> re.Pattern | None:
    tokens = sorted(set(tokens), key=len, reverse=True)  # longest first: "[MASK]" before "[M"
    return re.compile("|".join(map(re.escape, tokens))) if tokens else None


# ---------------------------------------------------------------------------- the config files

def _is_token(value) -> bool:
    """A special token as the files write it: "[CLS]", {"content": "[CLS]", ...}, or null."""
    return value is None or isinstance(value, str) or (
        isinstance(value, dict) and isinstance(value.get("content"), str))


def _is_length(value) -> bool:
    """model_max_length: a number above 0 (transformers writes 1e30-like numbers for "none")."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and (isinstance(value, int) or math.isfinite(value)) and value > 0)


# The values of tokenizer_config.json and special_tokens_map.json the front ends read, and
# what each must be; a key ending in "_token" is a special token (`_is_token`).
_TOKEN_CONFIG_VALUES = {
    "tokenizer_class": (lambda v: v is None or isinstance(v, str), "a class name string"),
    "model_max_length": (_is_length, "a number above 0"),
    "added_tokens_decoder": (lambda v: v is None or (isinstance(v, dict) and all(
        isinstance(t, dict) for t in v.values())), "an object of {\"content\": ...} objects"),
    "never_split": (lambda v: v is None or (isinstance(v, list) and all(
        isinstance(t, str) for t in v)), "a list of strings"),
    "mecab_kwargs": (lambda v: v is None or isinstance(v, dict), "an object"),
    "word_tokenizer_type": (lambda v: v is None or isinstance(v, str), "a string"),
    "subword_tokenizer_type": (lambda v: v is None or isinstance(v, str), "a string"),
}


def read_token_config(path: Path) -> dict:
    """tokenizer_config.json or special_tokens_map.json ({} when absent), each value the front
    ends read checked for its type, so a wrong one is a TokenizerError naming the file and the
    key rather than a TypeError from deep inside a front end."""
    config = read_json(path, error=TokenizerError)
    for key, value in config.items():
        check, want = (_is_token, 'a string, {"content": "..."} or null') \
            if key.endswith("_token") else _TOKEN_CONFIG_VALUES.get(key, (None, None))
        if check is not None and not check(value):
            raise TokenizerError(f"{path}: {key!r} is {reprlib.repr(value)}; it must be {want}. "
                                 "Fix the file, or download it again.")
    return config


def token_content(token) -> str | None:
    """A special token's spelling: the files hold either "[CLS]" or {"content": "[CLS]", ...}."""
    return token.get("content") if isinstance(token, dict) else token


def read_special_tokens(folder: Path, config: dict, defaults: dict[str, str]) -> dict[str, str]:
    """The spelling of each special token in `defaults` ({"cls_token": "[CLS]", ...}), by key:
    tokenizer_config.json's (`config`) over special_tokens_map.json's, else the default."""
    found = {**read_token_config(folder / "special_tokens_map.json"), **config}
    return {key: token_content(found.get(key)) or default for key, default in defaults.items()}


# ---------------------------------------------------------------------------- WordPiece

# The special tokens of BERT's WordPiece vocabularies, and their usual spelling.
WORDPIECE_SPECIAL_TOKENS = {"unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]",
                            "pad_token": "[PAD]", "mask_token": "[MASK]"}


def read_vocab(path: Path) -> dict[str, int]:
    """vocab.txt: one token per line, its id is its line number."""
    if not path.is_file():
        raise ModelFileMissing(f"{path}: no such file. A WordPiece model folder needs vocab.txt; "
                               "download the complete folder.")
    with open(path, "rb") as f:
        check_not_lfs_pointer(path, f.read(64), TokenizerError)
    try:
        with open(path, encoding="utf-8") as f:
            vocab = {line.rstrip("\n"): i for i, line in enumerate(f)}
    except UnicodeDecodeError:
        raise TokenizerError(f"{path} is not UTF-8 text; the file is corrupt, download it "
                             "again.") from None
    return vocab


class WordPiece:
    """Greedy longest-match-first subword split of one word, as in the original BERT.

    "unaffable" -> "un", "##aff", "##able": take the longest prefix in the vocab, then the
    longest "##"-prefixed piece of what is left, and so on. If some remainder matches nothing,
    the whole word becomes one unknown token; words longer than 100 characters too.
    """

    def __init__(self, vocab: dict[str, int], unk_token: str, max_chars: int = 100,
                 prefix: str = "##"):
        if unk_token not in vocab:
            raise TokenizerError(f"the vocabulary has no unknown token {unk_token!r}")
        self.vocab = vocab
        self.unk_id = vocab[unk_token]
        self.max_chars = max_chars
        self.prefix = prefix  # marks a piece that continues a word ("##aff")
        # Words repeat a lot in real text; remembering their split makes tokenizing ~3x faster.
        self.split = lru_cache(maxsize=1 << 16)(self._split)

    def _split(self, word: str) -> tuple[int, ...]:
        if len(word) > self.max_chars:
            return (self.unk_id,)
        ids = []
        start = 0
        while start < len(word):
            for end in range(len(word), start, -1):
                piece = word[start:end] if start == 0 else self.prefix + word[start:end]
                if piece in self.vocab:
                    ids.append(self.vocab[piece])
                    start = end
                    break
            else:
                return (self.unk_id,)
        return tuple(ids)

