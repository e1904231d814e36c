"""Test fixtures for the Japanese front end: a realistic WordPiece vocabulary and model folders.

The real sonoisa vocab.txt is not on this machine, so `build_vocab` makes one of the same
kind and size from the Japanese gettext translations (tests/corpus.py): MeCab (ipadic) splits
the text into surfaces, and the vocabulary takes, in this order,
  - the special tokens [PAD] [UNK] [CLS] [SEP] [MASK] (ids 0-4, as in cl-tohoku's vocab),
  - every character seen at least twice, alone and as a "##" continuation,
  - every surface seen at least three times (whole words),
  - the most frequent "##" substrings of surfaces, until `size` entries.
So frequent words are one piece, rarer words split into several ("##" pieces), and words with
a character seen once (or an emoji) become [UNK]: all three paths of WordPiece get exercised.
scripts/make_tokenizer_fixtures.py stores the 32,000-entry one in tests/fixtures/japanese, and
the tests read it from there (conftest.py's ja_vocab).

`make_folder` saves a random-weight BertModel as a sentence-transformers folder laid out like
sonoisa/sentence-bert-base-ja-mean-tokens-v2.
"""

from __future__ import annotations

import json
import unicodedata
from collections import Counter
from pathlib import Path

from corpus import translations
from reference import scale_weights, write_sentence_transformers_files

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def ipadic_tagger():
    import fugashi
    import ipadic
    return fugashi.GenericTagger(f'-d "{ipadic.DICDIR}" -r "{ipadic.DICDIR}/mecabrc"')


def build_vocab(size: int = 32000) -> list[str]:
    tagger = ipadic_tagger()
    words = Counter()
    for text in translations("ja"):
        words.update(node.surface for node in tagger(unicodedata.normalize("NFKC", text)))
    chars = Counter()
    for w, n in words.items():
        for c in w:
            chars[c] += n
    by_freq = lambda counter: sorted(counter, key=lambda k: (-counter[k], k))  # noqa: E731  stable

    vocab = list(SPECIALS)
    seen = set(vocab)

    def add(token):
        if token not in seen and len(vocab) < size:
            seen.add(token)
            vocab.append(token)

    for c in by_freq(chars):
        if chars[c] >= 2:
            add(c)
            add("##" + c)
    for w in by_freq(words):
        if words[w] >= 3:
            add(w)
    pieces = Counter()
    for w, n in words.items():
        for i in range(1, len(w)):
            for j in range(i + 2, min(len(w), i + 8) + 1):  # 2..8 characters
                pieces["##" + w[i:j]] += n
    for p in by_freq(pieces):
        add(p)
    assert len(vocab) == size, f"the corpus yields only {len(vocab)} vocabulary entries"
    return vocab


# Every reference tokenizer is forced to ipadic: transformers 5 reads a folder that names no
# dictionary with unidic_lite (test_japanese.py::test_forgetting_ipadic_changes_ids).
IPADIC = {"mecab_dic": "ipadic"}


def hf_tokenizer(folder: Path, **kwargs):
    """transformers' BertJapaneseTokenizer on a folder (pass mecab_kwargs=IPADIC)."""
    from transformers import BertJapaneseTokenizer
    return BertJapaneseTokenizer.from_pretrained(str(folder), **kwargs)


TOKENIZER_CONFIG = {
    # What sonoisa/sentence-bert-base-ja-mean-tokens-v2's tokenizer_config.json says.
    "tokenizer_class": "BertJapaneseTokenizer",
    "word_tokenizer_type": "mecab",
    "subword_tokenizer_type": "wordpiece",
    "do_lower_case": False,
    "mecab_kwargs": {"mecab_dic": "ipadic"},
    "model_max_length": 512,
}


def write_tokenizer_files(folder: Path, vocab: list[str], **config) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("".join(t + "\n" for t in vocab), encoding="utf-8")
    cfg = {k: v for k, v in {**TOKENIZER_CONFIG, **config}.items() if v is not None}
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg, ensure_ascii=False, indent=2))


def make_folder(folder: Path, vocab: list[str], *, layers: int, hidden: int, heads: int,
                intermediate: int, std: float = 0.2, seed: int = 0) -> Path:
    """A random-weight BertModel saved like the sonoisa folder: max_seq_length 80 and
    do_lower_case true in sentence_bert_config.json, mean pooling, no Normalize.
    `std` is the weights' spread (tests/reference.py scale_weights)."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=intermediate,
                        max_position_embeddings=512, pad_token_id=0)
    model = BertModel(config, add_pooling_layer=True).eval()
    scale_weights(model, std=std, seed=seed)
    model.save_pretrained(folder)
    write_tokenizer_files(folder, vocab)
    write_sentence_transformers_files(folder, dim=hidden, max_seq_length=80, do_lower_case=True)
    return folder
