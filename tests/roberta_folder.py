"""RoBERTa model folders for the tests, built here because nothing on this machine reaches the
model hub: a byte-level BPE vocabulary trained on the gettext catalogs (tests/corpus.py) with
HuggingFace's `tokenizers` library, saved as RoBERTa's vocab.json + merges.txt, and (for the
model tests) a random-weight RobertaModel around it, saved as a sentence-transformers folder.

The tokenizer files mirror those of sentence-transformers/all-distilroberta-v1: vocab.json,
merges.txt, tokenizer_config.json and special_tokens_map.json naming RoBERTa's special tokens
(<s>=0 <pad>=1 </s>=2 <unk>=3, <mask> last, swallowing the space before it)."""

from __future__ import annotations

import json
from pathlib import Path

import corpus

# Twenty-two languages in fourteen scripts, and English.
LANGS = ("ja", "zh_CN", "ko", "ar", "hi", "th", "ru", "uk", "he", "el", "fa", "bn", "ta",
         "vi", "tr", "pl", "de", "fr", "es", "pt_BR", "it", "nl")

SPECIAL_TOKENS = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
                  "sep_token": "</s>", "pad_token": "<pad>", "cls_token": "<s>",
                  # RoBERTa's convention: "<mask>" swallows the space before it.
                  "mask_token": {"content": "<mask>", "single_word": False, "lstrip": True,
                                 "rstrip": False, "normalized": False}}


def corpus_texts(langs=LANGS) -> list[str]:
    """Every distinct English message and translated message of every language, whole."""
    texts = corpus.english("ja")
    for lang in langs:
        texts.extend(corpus.translations(lang))
    return list(dict.fromkeys(texts))


def train_bpe(folder: Path, vocab_size: int = 30000, per_lang: int = 3000) -> Path:
    """Train a byte-level BPE vocabulary as RoBERTa's was made (GPT-2's pre-tokenization, all
    256 byte symbols, <s> <pad> </s> <unk> first and <mask> last) on lines spread over every
    language's catalogs plus English; write vocab.json and merges.txt. Deterministic."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    lines = corpus.spread(corpus.lines(corpus.english("ja")), per_lang)
    for lang in LANGS:
        lines += corpus.spread(corpus.lines(corpus.translations(lang)), per_lang)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, show_progress=False,
                                  special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(lines, trainer=trainer)
    folder.mkdir(parents=True, exist_ok=True)
    tok.model.save(str(folder))  # vocab.json, merges.txt
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    vocab["<mask>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    return folder


def write_tokenizer_config(folder: Path, *, add_prefix_space: bool = False,
                           model_max_length: int = 512) -> Path:
    """tokenizer_config.json and special_tokens_map.json, as all-distilroberta-v1 has them."""
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {**SPECIAL_TOKENS, "add_prefix_space": add_prefix_space, "errors": "replace",
         "trim_offsets": True, "model_max_length": model_max_length,
         "tokenizer_class": "RobertaTokenizer"}, indent=2))
    (folder / "special_tokens_map.json").write_text(json.dumps(SPECIAL_TOKENS, indent=2))
    return folder


# How the tokenizer files of a RoBERTa folder look, depending on who saved it.
LAYOUTS = {
    # vocab.json + merges.txt + tokenizer.json + both configs (sentence-transformers' upload)
    "all-distilroberta-v1": {"vocab_merges": True, "tokenizer_json": True},
    # what transformers 5 writes: tokenizer.json and tokenizer_config.json, nothing else
    "transformers-5-save": {"vocab_merges": False, "tokenizer_json": True},
    # older uploads: no tokenizer.json; "<mask>" is a plain string in tokenizer_config.json and
    # its lstrip flag only in special_tokens_map.json
    "no-tokenizer-json": {"vocab_merges": True, "tokenizer_json": False, "plain_mask": True},
    # add_prefix_space: true (a leading space on every stretch of text)
    "add-prefix-space": {"vocab_merges": True, "tokenizer_json": True, "add_prefix_space": True},
}


def write_layout(folder: Path, bpe_files: Path, layout: str) -> Path:
    """A RoBERTa tokenizer folder in one of LAYOUTS, from trained vocab.json + merges.txt."""
    import shutil
    import transformers
    spec = LAYOUTS[layout]
    staging = folder.parent / f"{folder.name}-staging"
    shutil.copytree(bpe_files, staging)
    write_tokenizer_config(staging, add_prefix_space=spec.get("add_prefix_space", False))
    if spec.get("plain_mask"):
        config = json.loads((staging / "tokenizer_config.json").read_text())
        config["mask_token"] = "<mask>"
        (staging / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    folder.mkdir(parents=True)
    if spec["tokenizer_json"]:
        saved = folder.parent / f"{folder.name}-saved"
        transformers.AutoTokenizer.from_pretrained(staging).save_pretrained(saved)
        shutil.copy(saved / "tokenizer.json", folder)
        if not spec["vocab_merges"]:
            shutil.copy(saved / "tokenizer_config.json", folder)
            return folder
    for name in ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(staging / name, folder)
    return folder


def make_roberta_folder(folder: Path, bpe_files: Path, *, hidden: int, layers: int, heads: int,
                        intermediate: int, max_seq_length: int, max_position_embeddings: int,
                        vocab_size: int | None = None, std: float = 0.2, seed: int = 0) -> Path:
    """A sentence-transformers folder (mean pooling, then Normalize, as all-distilroberta-v1)
    around a random RobertaModel, with the all-distilroberta-v1 tokenizer layout.

    RoBERTa's conventions: pad id 1, positions numbered from 2 (so max_position_embeddings is
    the longest text + 2), one token type, LayerNorm eps 1e-5."""
    from reference import save_random_roberta, write_sentence_transformers_files
    write_layout(folder, bpe_files, "all-distilroberta-v1")
    n_symbols = len(json.loads((folder / "vocab.json").read_text(encoding="utf-8")))
    save_random_roberta(folder, "roberta", vocab_size=vocab_size or n_symbols, hidden=hidden,
                        layers=layers, heads=heads, intermediate=intermediate,
                        max_position_embeddings=max_position_embeddings, std=std, seed=seed)
    write_sentence_transformers_files(folder, dim=hidden, max_seq_length=max_seq_length,
                                      normalize=True)
    return folder
