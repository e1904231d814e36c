"""Tokenizer front ends: text -> the ids the encoder sees, one module per kind of tokenizer.

    base.py      the `Tokenizer` interface (tokenize, encode, encode_with_cut, finish), special
                 tokens, surrogate repair (`well_formed`), WordPiece and vocab.txt
    bert.py      BertTokenizer: English WordPiece (all-MiniLM-L6-v2)
    japanese.py  JapaneseTokenizer: MeCab words, then WordPiece (BertJapaneseTokenizer)
    xlmr.py      XLMRobertaTokenizer: SentencePiece pieces with XLM-R's ids

`load_tokenizer` picks the front end a model folder was made for. The front ends import
SentencePiece and MeCab (fugashi) only when a tokenizer that needs them is made, so importing
this package needs neither.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ModelFileMissing, TokenizerError
from ..folder import read_json
from .base import Tokenizer
from .bert import BertTokenizer
from .japanese import JapaneseTokenizer
from .xlmr import XLMRobertaTokenizer

__all__ = ["Tokenizer", "load_tokenizer"]


def load_tokenizer(folder: Path, max_length: int, lowercase: bool = False) -> Tokenizer:
    """The front end the model folder was made for, chosen from tokenizer_config.json and files.

    max_length: most ids `encode` returns, special tokens included. lowercase: the folder's
    sentence_bert_config.json `do_lower_case`, lowercasing the text before the tokenizer proper.
    """
    config = read_json(folder / "tokenizer_config.json", error=TokenizerError)
    cls_name = (config.get("tokenizer_class") or "").removesuffix("Fast")
    if cls_name == "BertJapaneseTokenizer":
        return JapaneseTokenizer(folder, config, max_length, lowercase)
    if cls_name == "XLMRobertaTokenizer" or (not cls_name and (folder / "sentencepiece.bpe.model").exists()):
        return XLMRobertaTokenizer(folder, config, max_length, lowercase)
    if not cls_name and not (folder / "vocab.txt").exists():
        # Nothing says which tokenizer: name both files rather than guess WordPiece's.
        raise ModelFileMissing(f"{folder}: neither vocab.txt (WordPiece) nor "
                               "sentencepiece.bpe.model (XLM-R) is here, and minisbert needs one "
                               "of them (it does not read tokenizer.json); download the complete "
                               "model folder.")
    if cls_name in ("BertTokenizer", ""):
        return BertTokenizer(folder, config, max_length, lowercase)
    raise TokenizerError(
        f"{folder / 'tokenizer_config.json'} asks for {config['tokenizer_class']}; minisbert has "
        "BertTokenizer (WordPiece), BertJapaneseTokenizer (MeCab + WordPiece) and "
        "XLMRobertaTokenizer (SentencePiece).")
