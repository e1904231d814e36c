"""XLM-RoBERTa model folders for the tests, built here because nothing on this machine reaches
the model hub: a SentencePiece unigram model trained on the gettext catalogs (tests/corpus.py)
and a random-weight XLMRobertaModel around it, saved as a sentence-transformers folder.

The tokenizer files mirror those of sentence-transformers/paraphrase-multilingual-mpnet-base-v2
(less tokenizer.json, which transformers rebuilds from sentencepiece.bpe.model)."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import corpus
from reference import scale_weights, write_sentence_transformers_files

# Twenty-one languages in fourteen scripts: CJK, Hangul, Arabic, Devanagari, Thai, Cyrillic,
# Hebrew, Greek, Bengali, Tamil, Latin with many diacritics.
LANGS = ("ja", "zh_CN", "ko", "ar", "hi", "th", "ru", "uk", "he", "el", "fa", "bn", "ta",
         "vi", "tr", "pl", "de", "fr", "es", "pt_BR", "it")

SPECIAL_TOKENS = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
                  "sep_token": "</s>", "pad_token": "<pad>", "cls_token": "<s>",
                  # RoBERTa's convention: "<mask>" swallows the space before it.
                  "mask_token": {"content": "<mask>", "single_word": False, "lstrip": True,
                                 "rstrip": False, "normalized": True}}


def corpus_texts(langs=LANGS) -> list[str]:
    """Every distinct translated message of every language, whole (newlines and all)."""
    texts = []
    for lang in langs:
        texts.extend(corpus.translations(lang))
    return list(dict.fromkeys(texts))


def train_sentencepiece(path: Path, vocab_size: int = 8000, per_lang: int = 2000) -> Path:
    """Train a unigram model like XLM-R's (<unk>=0, <s>=1, </s>=2, NFKC-style normalization)
    on lines spread over every language's catalogs plus English. Deterministic."""
    import sentencepiece
    lines = corpus.spread(corpus.lines(corpus.english("ja")), per_lang)
    for lang in LANGS:
        lines += corpus.spread(corpus.lines(corpus.translations(lang)), per_lang)
    model = io.BytesIO()
    # character_coverage < 1 leaves the rarest characters out, so the tests also see <unk>.
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=model, vocab_size=vocab_size,
        model_type="unigram", character_coverage=0.9995, num_threads=2, minloglevel=2)
    path.write_bytes(model.getvalue())
    return path


def write_tokenizer_files(folder: Path, sp_model: Path, model_max_length: int = 512) -> Path:
    """sentencepiece.bpe.model, tokenizer_config.json and special_tokens_map.json."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(sp_model, folder / "sentencepiece.bpe.model")
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {**SPECIAL_TOKENS, "model_max_length": model_max_length,
         "tokenizer_class": "XLMRobertaTokenizer"}, indent=2))
    (folder / "special_tokens_map.json").write_text(json.dumps(SPECIAL_TOKENS, indent=2))
    return folder


def make_xlmr_folder(folder: Path, sp_model: Path, *, hidden: int, layers: int, heads: int,
                     intermediate: int, max_seq_length: int, max_position_embeddings: int = 514,
                     vocab_size: int | None = None, std: float = 0.2, seed: int = 0) -> Path:
    """A sentence-transformers folder (mean pooling) around a random XLMRobertaModel.

    XLM-R conventions: vocab = pieces + 2 (<pad> and <mask> come on top of SentencePiece's
    pieces), pad id 1, positions numbered from 2 (so max_position_embeddings is the longest
    text + 2), one token type, LayerNorm eps 1e-5."""
    import sentencepiece
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaModel

    n_pieces = sentencepiece.SentencePieceProcessor(model_file=str(sp_model)).get_piece_size()
    config = XLMRobertaConfig(
        vocab_size=vocab_size or n_pieces + 2, hidden_size=hidden, num_hidden_layers=layers,
        num_attention_heads=heads, intermediate_size=intermediate,
        max_position_embeddings=max_position_embeddings, type_vocab_size=1, layer_norm_eps=1e-5,
        pad_token_id=1, bos_token_id=0, eos_token_id=2, hidden_act="gelu")
    torch.manual_seed(seed)
    model = XLMRobertaModel(config).eval()  # with the pooler, as real checkpoints have
    scale_weights(model, std=std, seed=seed)
    model.save_pretrained(folder)  # config.json + model.safetensors
    del model
    write_tokenizer_files(folder, sp_model)
    write_sentence_transformers_files(folder, dim=hidden, max_seq_length=max_seq_length)
    return folder
