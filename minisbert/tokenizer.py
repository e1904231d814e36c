"""What every tokenizer front end shares: special tokens, truncation, and the WordPiece step.

A front end turns text into the ids the encoder sees. Each one implements `tokenize(text)`,
the content ids without special tokens; `encode(text)` here adds them (`[CLS] … [SEP]` for
BERT, `<s> … </s>` for XLM-R) and truncates to `max_length`, counting the special tokens.

Front ends: `bert_tokenizer.BertTokenizer` (English WordPiece), `japanese_tokenizer`
(MeCab + WordPiece) and `xlmr_tokenizer` (SentencePiece with XLM-R ids). `load_tokenizer`
picks one from the model folder's files.

Front ends may be used from several threads at once (see each one for its library).
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from .errors import ModelFileMissing, TokenizerError
from .folder import read_json


class Tokenizer:
    """Base class: subclasses set the fields below and implement `tokenize`."""

    cls_id: int  # id put before the text (`[CLS]`, `<s>`)
    sep_id: int  # id put after it (`[SEP]`, `</s>`)
    pad_id: int  # id used to fill short rows of a batch
    max_length: int  # most ids `encode` returns, special tokens included
    specials: re.Pattern | None = None  # literal special tokens to take as such in the input
    # sentence_bert_config.json's do_lower_case: sentence-transformers lowercases the text
    # (each character on its own, special tokens left alone) before the tokenizer proper.
    lowercase_input: bool = False

    def pieces(self, text: str):
        """Yield (piece, is_special): the text cut at literal special tokens such as "[MASK]"."""
        for piece, is_special in split_special(well_formed(text), self.specials):
            if self.lowercase_input and not is_special:
                piece = "".join(c.lower() for c in piece)
            yield piece, is_special

    def tokenize(self, text: str) -> list[int]:
        raise NotImplementedError

    def encode(self, text: str) -> list[int]:
        """Exactly the ids the model sees: special tokens included, truncated to max_length."""
        return self.encode_with_cut(text)[0]

    def encode_with_cut(self, text: str) -> tuple[list[int], int]:
        """`encode(text)`, and how many tokens truncation cut from the end of the text."""
        return self.finish(self.tokenize(text))

    def finish(self, ids: list[int]) -> tuple[list[int], int]:
        """Content ids -> (truncated ids with the special tokens around them, ids cut)."""
        keep = self.max_length - 2  # the special tokens take two of the places
        return [self.cls_id, *ids[:keep], self.sep_id], max(len(ids) - keep, 0)


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


# ---------------------------------------------------------------------------- WordPiece

def read_vocab(path: Path) -> dict[str, int]:
    """vocab.txt: one token per line, its id is its line number."""
    if not path.is_file():
        raise ModelFileMissing(f"{path}: no such file. A WordPiece model folder needs vocab.txt; "
                               "download the complete folder.")
    try:
        with open(path, encoding="utf-8") as f:
            vocab = {line.rstrip("\n"): i for i, line in enumerate(f)}
    except UnicodeDecodeError:
        raise TokenizerError(f"{path} is not UTF-8 text; the file is corrupt, download it "
                             "again.") from None
    if next(iter(vocab), "").startswith("version https://git-lfs"):
        raise TokenizerError(f"{path} is a Git LFS pointer, not the vocabulary; run `git lfs pull` "
                             "in the model folder or download the file again.")
    return vocab


class WordPiece:
    """Greedy longest-match-first subword split of one word, as in the original BERT.

    "unaffable" -> "un", "##aff", "##able": take the longest prefix in the vocab, then the
    longest "##"-prefixed piece of what is left, and so on. If some remainder matches nothing,
    the whole word becomes one unknown token; words longer than 100 characters too.
    """

    def __init__(self, vocab: dict[str, int], unk_token: str, max_chars: int = 100):
        if unk_token not in vocab:
            raise TokenizerError(f"the vocabulary has no unknown token {unk_token!r}")
        self.vocab = vocab
        self.unk_id = vocab[unk_token]
        self.max_chars = max_chars
        # Words repeat a lot in real text; remembering their split makes tokenizing ~3x faster.
        self.split = lru_cache(maxsize=1 << 16)(self._split)

    def _split(self, word: str) -> tuple[int, ...]:
        if len(word) > self.max_chars:
            return (self.unk_id,)
        ids = []
        start = 0
        while start < len(word):
            for end in range(len(word), start, -1):
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self.vocab:
                    ids.append(self.vocab[piece])
                    start = end
                    break
            else:
                return (self.unk_id,)
        return tuple(ids)


def load_tokenizer(folder: Path, max_length: int) -> Tokenizer:
    """Pick the front end the model folder was made for, from tokenizer_config.json and files."""
    config = read_json(folder / "tokenizer_config.json", error=TokenizerError)
    cls_name = (config.get("tokenizer_class") or "").removesuffix("Fast")
    if cls_name == "BertJapaneseTokenizer":
        from .japanese_tokenizer import JapaneseTokenizer
        return JapaneseTokenizer(folder, config, max_length)
    if cls_name == "XLMRobertaTokenizer" or (not cls_name and (folder / "sentencepiece.bpe.model").exists()):
        from .xlmr_tokenizer import XLMRobertaTokenizer
        return XLMRobertaTokenizer(folder, config, max_length)
    if not cls_name and not (folder / "vocab.txt").exists():
        # Nothing says which tokenizer: name both files rather than guess WordPiece's.
        raise ModelFileMissing(f"{folder}: neither vocab.txt (WordPiece) nor "
                               "sentencepiece.bpe.model (XLM-R) is here, and minisbert needs one "
                               "of them (it does not read tokenizer.json); download the complete "
                               "model folder.")
    if cls_name in ("BertTokenizer", "") :
        from .bert_tokenizer import BertTokenizer
        return BertTokenizer(folder, config, max_length)
    raise TokenizerError(
        f"{folder / 'tokenizer_config.json'} asks for {config['tokenizer_class']}; minisbert has "
        "BertTokenizer (WordPiece), BertJapaneseTokenizer (MeCab + WordPiece) and "
        "XLMRobertaTokenizer (SentencePiece).")
