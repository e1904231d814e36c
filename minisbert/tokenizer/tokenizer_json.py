"""The tokenizer.json front end: any Hugging Face "fast" tokenizer, read and run in Python.

tokenizer.json is what the Rust `tokenizers` library (and so every transformers "Fast"
tokenizer, and sentence-transformers) loads. It names a pipeline of components, each a small
class here, named as in the file:

    text
     -> added tokens      literal "[CLS]", "<mask>", "<|endoftext|>" ... cut out first (here)
     -> normalizer        text -> text: Unicode forms, lowercasing, SentencePiece's character
                          map ... (normalizers.py)
     -> pre-tokenizer     text -> words: white space, punctuation, regex splits, GPT-2's byte
                          symbols, SentencePiece's "▁" ... (pre_tokenizers.py)
     -> model             each word -> token ids: WordPiece, BPE, Unigram (subword_models.py)
     -> post-processor    the special tokens around the ids, after truncation
                          (post_processors.py)

Added tokens are matched in two passes, as the Rust library does: tokens marked
`"normalized": false` (all special tokens, usually) in the raw text, then those marked
`"normalized": true` in each remaining piece after the normalizer, spelled as the normalizer
spells them. The longest token wins where several start at one place. A token with `lstrip`
(`rstrip`) takes the white space before (after) it along; one with `single_word` is taken only
where no word character touches it. Each piece of text between added tokens goes through the
normalizer, pre-tokenizer and model on its own.

sentence_bert_config.json's do_lower_case: sentence-transformers puts a Lowercase normalizer in
front of the file's normalizer (unless it already has one); so does minisbert.

Note that transformers 5 does not always run the file as written: for the tokenizer classes it
knows (XLMRobertaTokenizer, LlamaTokenizer, ...) it keeps the file's vocabulary and
post-processor but rebuilds normalizer and pre-tokenizer from the class's own recipe, which is
the same for files those classes wrote. minisbert runs the file, like `tokenizers` itself.

Left out: decoding, offsets, padding (the encoder pads), left truncation and strides.
"""

from __future__ import annotations

import re
from itertools import chain
from pathlib import Path

from ..errors import TokenizerError
from ..folder import read_json
from .base import Tokenizer, read_special_tokens, truncate_pair, well_formed
from .bpe import WHITE_SPACE
from .normalizers import Lowercase, Sequence, build_normalizer
from .post_processors import build_post_processor
from .pre_tokenizers import CLASSES, build_pre_tokenizer
from .subword_models import build_model

_WORD = "a_1"  # CLASSES' representatives of word characters (\w)


class AddedToken:
    def __init__(self, spec: dict):
        if not (isinstance(spec, dict) and isinstance(spec.get("content"), str)
                and spec["content"] and isinstance(spec.get("id"), int)):
            raise TokenizerError(f"the added token {spec!r} has no content or id")
        self.content, self.id = spec["content"], spec["id"]
        self.single_word = bool(spec.get("single_word"))
        self.lstrip, self.rstrip = bool(spec.get("lstrip")), bool(spec.get("rstrip"))
        self.normalized = bool(spec.get("normalized", not spec.get("special")))


class AddedTokenMatcher:
    """Finds a set of added tokens in text (the tokens' spelling -> AddedToken)."""

    def __init__(self, tokens: dict[str, AddedToken]):
        self.tokens = tokens
        # Longest first: at one position, the longest token that matches wins.
        ordered = sorted(tokens, key=len, reverse=True)
        self.pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def split(self, text: str) -> list[tuple[str, int | None]]:
        """[(piece, None) for text, (piece, id) for an added token], covering the text."""
        if self.pattern is None or not text:
            return [(text, None)] if text else []
        out, done = [], 0  # done: where the last piece ended
        for m in self.pattern.finditer(text):
            token = self.tokens[m.group()]
            start, stop = m.span()
            if token.single_word and (
                    (start > 0 and text[start - 1].translate(CLASSES) in _WORD)
                    or (stop < len(text) and text[stop].translate(CLASSES) in _WORD)):
                continue  # part of a longer word
            if token.lstrip:  # take the white space before it, not beyond the last piece
                start = max(len(text[:start].rstrip(WHITE_SPACE)), done)
            if token.rstrip:
                stop = len(text) - len(text[stop:].lstrip(WHITE_SPACE))
            if done < start:
                out.append((text[done:start], None))
            out.append((text[start:stop], token.id))
            done = stop
        if done < len(text):
            out.append((text[done:], None))
        return out


class TokenizerJson(Tokenizer):
    """The Tokenizer interface (base.py) over a tokenizer.json pipeline; `encode_pair` too."""

    def __init__(self, folder: Path, config: dict, max_length: int, lowercase: bool = False):
        """config: tokenizer_config.json; lowercase: sentence_bert_config.json's do_lower_case."""
        super().__init__(max_length, lowercase)
        self.path = path = Path(folder) / "tokenizer.json"
        spec = read_json(path, required=True, error=TokenizerError)
        try:
            self._build(spec, lowercase)
        except TokenizerError as e:
            raise TokenizerError(f"{path}: {e}; minisbert cannot run this tokenizer.") from None
        # The padding id: the configuration's pad token, else the file's padding settings.
        pad = read_special_tokens(folder, config, {"pad_token": ""})["pad_token"]
        padding = spec.get("padding") or {}
        self.pad_id = self.token_id(pad) if pad and self.token_id(pad) is not None \
            else padding.get("pad_id", 0)

    def _build(self, spec: dict, lowercase: bool) -> None:
        if not isinstance(spec.get("model"), dict):
            raise TokenizerError("it has no \"model\" object")
        self.model = build_model(spec["model"])
        self.normalizer = build_normalizer(spec.get("normalizer"))
        self.pre_tokenizer = build_pre_tokenizer(spec.get("pre_tokenizer"))
        self.template = build_post_processor(spec.get("post_processor"))
        added = spec.get("added_tokens") or []
        if not isinstance(added, list):
            raise TokenizerError("its added_tokens is not a list")
        added = [AddedToken(t) for t in added]
        self.added_ids = {t.content: t.id for t in added}
        self.raw_tokens = AddedTokenMatcher({t.content: t for t in added if not t.normalized})
        # Normalized tokens are looked for as the file's normalizer spells them (the Rust
        # library spells them once, when the file is loaded).
        spell = self.normalizer.normalize if self.normalizer else (lambda s: s)
        self.normalized_tokens = AddedTokenMatcher(
            {spell(t.content): t for t in added if t.normalized and spell(t.content)})
        if lowercase and not _has_lowercase(self.normalizer):
            self.normalizer = Sequence([Lowercase()] + (
                self.normalizer.normalizers if isinstance(self.normalizer, Sequence)
                else [self.normalizer] if self.normalizer else []))
        self.cls_id = self.template.first_special()
        self.sep_id = self.template.last_special()

    def token_ids(self) -> dict[str, int]:
        template = {f"the template's special token {i}": i
                    for item, _ in self.template.single + self.template.pair
                    if item not in ("A", "B") for i in item}
        return {**self.model.vocab, **self.added_ids, **template,
                "the padding token": self.pad_id}

    def token_id(self, token: str) -> int | None:
        return self.added_ids.get(token, self.model.vocab.get(token))

    # ------------------------------------------------------------------------ the pipeline

    def tokenize(self, text: str) -> list[int]:
        """The text's ids, without special tokens: added tokens, then normalize, pre-tokenize
        and the model on each piece between them."""
        text, ids = well_formed(text), []
        raw = self.raw_tokens.pattern
        if raw is None or raw.search(text) is None:  # the usual case: no added token in it
            self._piece_ids(text, True, ids)
            return ids
        for n, (piece, token_id) in enumerate(self.raw_tokens.split(text)):
            if token_id is None:
                self._piece_ids(piece, n == 0, ids)
            else:
                ids.append(token_id)
        return ids

    def _piece_ids(self, piece: str, at_start: bool, ids: list[int]) -> None:
        """Append the ids of a piece of text without raw added tokens. at_start: does the
        piece start the text? (Metaspace's prepend_scheme "first" asks.)"""
        if self.normalizer is not None:
            piece = self.normalizer.normalize(piece)
        if self.normalized_tokens.pattern is None:
            parts = [(piece, None)] if piece else []
        else:
            parts = self.normalized_tokens.split(piece)
        for m, (part, token_id) in enumerate(parts):
            if token_id is not None:
                ids.append(token_id)
                continue
            words = [part]
            if self.pre_tokenizer is not None:
                words, _ = self.pre_tokenizer.pre_tokenize(words, at_start and m == 0)
            ids += chain.from_iterable(map(self.model.tokenize, words))

    def explain(self, text: str) -> list[tuple[str, object]]:
        """Each stage's output for one text, for reading (scripts/explain_tokenizer.py prints
        it): [(stage, value)], added tokens shown as (token, id)."""
        pieces, words, ids = [], [], []
        for n, (piece, token_id) in enumerate(self.raw_tokens.split(well_formed(text))):
            if token_id is not None:
                pieces.append((piece, token_id))
                words.append((piece, token_id))
                continue
            normalized = self.normalizer.normalize(piece) if self.normalizer else piece
            for m, (part, part_id) in enumerate(self.normalized_tokens.split(normalized)):
                pieces.append(part if part_id is None else (part, part_id))
                if part_id is not None:
                    words.append((part, part_id))
                elif self.pre_tokenizer is not None:
                    words += self.pre_tokenizer.pre_tokenize([part], n == 0 and m == 0)[0]
                else:
                    words.append(part)
        model_ids = [[w[1]] if isinstance(w, tuple) else list(self.model.tokenize(w))
                     for w in words]
        ids = self.encode(text)
        return [("added tokens + normalizer", pieces), ("pre-tokenizer", words),
                ("model", model_ids), ("post-processor", ids)]

    # ------------------------------------------------------------------------ the interface

    def encode_with_cut(self, text: str) -> tuple[list[int], int]:
        """The ids the model sees (truncated to max_length, the template's special tokens
        kept), and how many of the text's ids truncation cut."""
        ids = self.tokenize(text)
        keep = max(self.max_length - self.template.added_single, 0)
        return self.template.apply_single(ids[:keep]), max(len(ids) - keep, 0)

    def encode_pair(self, a: str, b: str) -> tuple[list[int], list[int]]:
        """(ids, token type ids) of the pair a, b, as a cross-encoder sees it: each text's ids
        cut "longest first" until the pair and the template's special tokens fit max_length."""
        ids_a, ids_b = self.tokenize(a), self.tokenize(b)
        budget = max(self.max_length - self.template.added_pair, 0)
        n_a, n_b = truncate_pair(len(ids_a), len(ids_b), budget)
        return self.template.apply(ids_a[:n_a], ids_b[:n_b])


def _has_lowercase(normalizer) -> bool:
    parts = normalizer.normalizers if isinstance(normalizer, Sequence) else [normalizer]
    return any(isinstance(n, Lowercase) for n in parts)
