"""Tokenizer front ends: text -> the ids the encoder sees, one module per kind of tokenizer.

    base.py      the `Tokenizer` interface (tokenize, encode, encode_with_cut, finish), special
                 tokens, surrogate repair (`well_formed`), WordPiece and vocab.txt
    bert.py      BertTokenizer: English WordPiece (all-MiniLM-L6-v2; also MPNet's and
                 DistilBERT's tokenizers, which are the same with other special tokens)
    japanese.py  JapaneseTokenizer: MeCab words, then WordPiece (BertJapaneseTokenizer)
    xlmr.py      XLMRobertaTokenizer: SentencePiece pieces with XLM-R's ids
    bpe.py       RobertaTokenizer: GPT-2's byte-level BPE (all-distilroberta-v1)
    tokenizer_json.py  TokenizerJson: any tokenizer.json (Hugging Face "fast" tokenizers), run
                 as a pipeline of its components: normalizers.py, pre_tokenizers.py,
                 subword_models.py, post_processors.py

`load_tokenizer` picks the front end a model folder was made for: tokenizer.json where the
folder has one (what sentence-transformers loads), except for MeCab's Japanese tokenizer, whose
word splitting the file cannot describe; else the front end the files and config name. The front ends import
SentencePiece and MeCab (fugashi) only when a tokenizer that needs them is made, so importing
this package needs neither.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ModelFileMissing, TokenizerError
from ..families import FAMILIES
from .base import Tokenizer, read_token_config
from .bert import BertTokenizer
from .bpe import RobertaTokenizer
from .japanese import JapaneseTokenizer
from .tokenizer_json import TokenizerJson
from .xlmr import XLMRobertaTokenizer

__all__ = ["Tokenizer", "load_tokenizer", "read_token_config"]

# tokenizer_class in tokenizer_config.json (without "Fast") -> the front end that runs it.
# MPNet's and DistilBERT's tokenizers are BERT's WordPiece with their own special tokens, which
# BertTokenizer reads from the folder.
FRONT_ENDS = {
    "BertTokenizer": BertTokenizer,
    "MPNetTokenizer": BertTokenizer,
    "DistilBertTokenizer": BertTokenizer,
    "BertJapaneseTokenizer": JapaneseTokenizer,
    "XLMRobertaTokenizer": XLMRobertaTokenizer,
    "RobertaTokenizer": RobertaTokenizer,
    # tokenizer.json alone, read as the Rust library reads it (ModernBERT's folders name this
    # class; any folder with a tokenizer.json is read from it, see load_tokenizer)
    "PreTrainedTokenizerFast": TokenizerJson,
}


def load_tokenizer(folder: Path, max_length: int, lowercase: bool = False,
                   model_type: str | None = None, rows: int | None = None) -> Tokenizer:
    """The front end the model folder was made for, chosen from tokenizer_config.json and files.

    max_length: most ids `encode` returns, special tokens included. lowercase: the folder's
    sentence_bert_config.json `do_lower_case`, lowercasing the text before the tokenizer proper.
    model_type (config.json's): whose front end to try first when tokenizer_config.json names
    none. rows: the rows of the model's embedding table; every id the tokenizer can give must
    be one of them (checked here, since NumPy would read id -1 as the last row).
    """
    config = read_token_config(folder / "tokenizer_config.json")
    cls_name = (config.get("tokenizer_class") or "").removesuffix("Fast")
    if (folder / "tokenizer.json").is_file() and cls_name != "BertJapaneseTokenizer":
        tokenizer = TokenizerJson(folder, config, max_length, lowercase)
    else:
        if not cls_name:  # older folders name no class: the files say which tokenizer it is
            cls_name = _front_end_by_files(folder, model_type)
        if cls_name not in FRONT_ENDS:
            raise TokenizerError(
                f"{folder / 'tokenizer_config.json'} asks for {config['tokenizer_class']}; "
                f"minisbert has {', '.join(FRONT_ENDS)}.")
        tokenizer = FRONT_ENDS[cls_name](folder, config, max_length, lowercase)
    if rows is not None:
        check_token_ids(tokenizer, rows, folder)
    return tokenizer


def check_token_ids(tokenizer: Tokenizer, rows: int, folder: Path) -> None:
    """Refuse a tokenizer that can give an id outside the embedding table's rows 0 .. rows-1:
    an added token of id -1 would silently read the last row, one past the end would fail
    in the middle of encoding."""
    for token, i in tokenizer.token_ids().items():
        if not (type(i) is int and 0 <= i < rows):
            raise TokenizerError(
                f"{folder}: the tokenizer gives {token!r} the id {i!r}, but the model's "
                f"embedding table has rows 0 to {rows - 1} (config.json's vocab_size "
                f"{rows}). The tokenizer files belong to another model, or are corrupt; "
                "download the folder again.")


def _front_end_by_files(folder: Path, model_type: str | None) -> str:
    """The tokenizer_class of the first family (model_type's first) whose tokenizer files are
    all in the folder."""
    families = sorted(FAMILIES.items(), key=lambda item: item[0] != model_type)
    for _, family in families:
        if all((folder / f).exists() for f in family.tokenizer_files):
            return family.tokenizer
    # Nothing says which tokenizer: name the files rather than guess.
    sets = {" + ".join(f.tokenizer_files): f.tokenizer for _, f in families}
    listed = ["tokenizer.json"] + [f"{files} ({cls})" for files, cls in sets.items()]
    raise ModelFileMissing(f"{folder}: none of {', '.join(listed[:-1])} or {listed[-1]} is "
                           "here, and tokenizer_config.json names no tokenizer_class; download "
                           "the complete model folder.")
