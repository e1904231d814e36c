"""XLM-RoBERTa's tokenizer: SentencePiece pieces, renumbered the way fairseq's XLM-R numbers them.

The model folder's `sentencepiece.bpe.model` (a unigram model, despite the name) does all the
work: its own normalization table (NFKC-like, from the model file), whitespace handling and
the segmentation into pieces. This module only renumbers the pieces and adds `<s> … </s>`.

Literal special tokens in the text ("<s>", "</s>", "<pad>", "<unk>", "<mask>") are taken as
those tokens, as HuggingFace's XLMRobertaTokenizer (what sentence-transformers runs) does:
the text is cut at them and each remaining part goes through SentencePiece on its own. (The
`lstrip` flag configs set on "<mask>" changes no id: SentencePiece drops that space anyway.)

Where HuggingFace's tokenizer still differs from SentencePiece (the tests show each case
against the reference), minisbert follows SentencePiece, the model's own tool:
  - a grapheme cluster of several code points whose first character the normalization
    rewrites, e.g. half-width "ｶﾞ" or "ａ" + U+0308: HuggingFace normalizes per cluster and
    can drop or separate the marks;
  - U+0085 (NEXT LINE): HuggingFace splits words at it, SentencePiece keeps it as a character;
  - segmentations that tie in score, e.g. "0000" as "000" + "0" or "0" + "000": each library
    keeps a different one;
  - text that only becomes "<mask>" after normalization (full-width "＜ｍａｓｋ＞"): special
    tokens are matched in the raw text here, after normalization there.

Surrogate code points, which SentencePiece rejects, are first repaired (`base.well_formed`).
Threads may share the tokenizer: SentencePiece's encoding is a const C++ method that releases
the GIL and is itself run from a thread pool by SentencePiece's batch API.

SentencePiece itself is imported when a tokenizer is made, not with this module, so
`import minisbert` works without it.

Left out: pairs of texts, offsets, user-defined SentencePiece symbols, decoding.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import MissingDependencyError, ModelFileMissing, TokenizerError
from ..folder import check_not_lfs_pointer
from .base import Tokenizer, read_special_tokens, special_pattern

# fairseq's dictionary puts these four first; XLM-R kept that numbering.
BOS, PAD, EOS, UNK = 0, 1, 2, 3
SPECIAL_TOKENS = {"bos_token": "<s>", "pad_token": "<pad>", "eos_token": "</s>",
                  "unk_token": "<unk>", "mask_token": "<mask>"}


def _import_sentencepiece():
    try:
        import sentencepiece
    except ImportError:
        raise MissingDependencyError(
            "XLM-RoBERTa models need the sentencepiece library: pip install 'minisbert[xlmr]'"
        ) from None
    return sentencepiece


def _load_model(path: Path):
    if not path.is_file():
        raise ModelFileMissing(f"{path}: no such file. An XLM-RoBERTa model folder needs "
                               "sentencepiece.bpe.model; download the complete folder.")
    sentencepiece = _import_sentencepiece()
    data = path.read_bytes()
    check_not_lfs_pointer(path, data, TokenizerError)
    try:
        return sentencepiece.SentencePieceProcessor(model_proto=data)
    except (RuntimeError, OSError) as e:
        raise TokenizerError(f"{path} is not a SentencePiece model ({e}); "
                             "the file is corrupt, download it again.") from None


class XLMRobertaTokenizer(Tokenizer):
    pair_separators, second_type = 2, 0  # <s> A </s></s> B </s>, every token type 0

    def __init__(self, folder: Path, config: dict, max_length: int, lowercase: bool = False):
        """config: tokenizer_config.json; lowercase: sentence_bert_config.json's do_lower_case."""
        super().__init__(max_length, lowercase)
        self.sp = _load_model(folder / "sentencepiece.bpe.model")
        n_pieces = self.sp.get_piece_size()
        # The five special tokens and their ids. Their spelling comes from the config (it is
        # always the default in practice); their ids are fixed by the renumbering below.
        names = read_special_tokens(folder, config, SPECIAL_TOKENS)
        self.special_ids = {names["bos_token"]: BOS, names["pad_token"]: PAD,
                            names["eos_token"]: EOS, names["unk_token"]: UNK,
                            names["mask_token"]: n_pieces + 1}
        self.specials = special_pattern(self.special_ids)
        self.cls_id, self.sep_id, self.pad_id = BOS, EOS, PAD

    def token_ids(self) -> dict[str, int]:
        # The pieces are numbered 0 .. n - 1 by SentencePiece, so 3 .. n here (see _renumber).
        return {"the last SentencePiece piece": self.sp.get_piece_size(), **super().token_ids()}

    def _renumber(self, ids: list[int]) -> list[int]:
        # SentencePiece numbers its pieces <unk>=0, <s>=1, </s>=2, then ordinary pieces from 3.
        # fairseq built XLM-R's dictionary as <s>=0, <pad>=1, </s>=2, <unk>=3 followed by the
        # ordinary pieces, which shifts each of them up by one (piece 3 -> id 4), and appended
        # <mask> after the last piece (piece count + 1). SentencePiece's unknown (0) becomes 3.
        # Its <s> and </s> never come out of encoding text, so they need no rule here.
        return [UNK if i == 0 else i + 1 for i in ids]

    def tokenize(self, text: str) -> list[int]:
        return self.tokenize_batch([text])[0]

    def tokenize_batch(self, texts: list[str]) -> list[list[int]]:
        """`tokenize` for many texts: one SentencePiece call for all of them, which runs faster."""
        parts = [list(self.pieces(t)) for t in texts]
        plain = [piece for p in parts for piece, is_special in p if not is_special]
        encoded = iter(self.sp.encode(plain))
        out = []
        for p in parts:
            ids = []
            for piece, is_special in p:
                # Each stretch of text between special tokens is encoded on its own, so it starts
                # a new word ("▁" prefix), exactly as the reference tokenizer does.
                ids.extend([self.special_ids[piece]] if is_special else self._renumber(next(encoded)))
            out.append(ids)
        return out

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """`encode` for many texts."""
        return [self.finish(ids)[0] for ids in self.tokenize_batch(texts)]
