"""Cross-encoder (reranker) folders for the tests, at the layouts of real rerankers, with random
weights: nothing on this machine reaches the model hub.

Each builder makes a transformers `*ForSequenceClassification` model, redraws its weights
(reference.scale_weights, so that a wrong token type, offset or head shows; the head at
1/√d, `scale_head`), loads it with
sentence-transformers' `CrossEncoder` (which reads max_length and the activation) and saves it
with `CrossEncoder.save_pretrained`, which writes what sentence-transformers 6 puts in a folder:
config.json, model.safetensors, tokenizer.json, tokenizer_config.json, modules.json,
sentence_bert_config.json and config_sentence_transformers.json (the activation). The
tokenizer files the hub's folders carry beside tokenizer.json (vocab.txt, or
sentencepiece.bpe.model, and special_tokens_map.json) are copied in too, so a test can delete
tokenizer.json and run the older front ends on the same folder.

    ms-marco-MiniLM-L6-v2   BertForSequenceClassification 384 wide, 6 layers, 12 heads, one
                            label; all-MiniLM-L6-v2's uncased vocabulary (the same 30,522
                            WordPieces), max_length 512
    bge-reranker-base       XLMRobertaForSequenceClassification 768/12/12, one label, eps 1e-5,
                            positions after the padding index (514 rows)
    bge-reranker-v2-m3      XLMRobertaForSequenceClassification 1024/24/16, 8,194 positions,
                            max_length 8,192
    gte-reranker-modernbert-base
                            ModernBertForSequenceClassification 768/22/12 (gte-modernbert-base's
                            encoder: rotary, pre-LN, GeGLU, local layers), mean pooling, its
                            head's dense without bias, GELU and a norm without shift; one label,
                            max_length 8,192
The XLM-R ones use the SentencePiece model stored in tests/fixtures (8,000 pieces) instead of
the real 250,002-piece vocabulary, the ModernBERT one a ModernBERT-style tokenizer.json trained
on the catalogs (tests/hf_tokenizers.py, 8,000 ids, its pair template `[CLS] A [SEP] B [SEP]`);
their encoders keep the real shapes only with `real=True` (tests mark those slow); otherwise
they are reduced in width and depth.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import reference

# The layouts: transformers config arguments and the tokenizer's max_length.
MINILM_RERANKER = dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                       intermediate_size=1536, max_position_embeddings=512)
BGE_BASE = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                intermediate_size=3072, max_position_embeddings=514)
BGE_V2_M3 = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                 intermediate_size=4096, max_position_embeddings=8194)
# What the XLM-R layouts are cut to by default: the same head, positions and tokenizer.
REDUCED = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)

# The std of the encoder's random weights: large enough that attention is sharp and a wrong
# token type, position or mask shows in every score, small enough that float32 rounding in
# the two libraries stays well under the tolerance (0.2 made logits differ by 2e-5 between
# two float32 runs of torch itself, against float64).
STD = 0.1
ACTIVATIONS = {"sigmoid": "Sigmoid", "identity": "Identity", "tanh": "Tanh"}


def scale_head(model, seed: int = 0) -> None:
    """Redraw the classification head (BERT's pooler and classifier, XLM-R's classifier) at
    std 1/√d, after reference.scale_weights drew everything at 0.2: each of its two layers
    then keeps the scale of its input, so logits are a few units, as a trained reranker's
    (ms-marco-MiniLM-L6-v2 gives about -11..11), instead of amplifying the encoder's float32
    rounding fifteen-fold."""
    import torch
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith(("classifier.", "bert.pooler.", "head.")):
                p.copy_(torch.randn(p.shape, generator=gen) / p.shape[-1] ** 0.5)


def _save(model, tokenizer_dir: Path, folder: Path, *, max_length: int | None,
          activation: str | None, extra_files: tuple[str, ...]) -> Path:
    """Save `model` beside the tokenizer files, reload it as sentence-transformers'
    CrossEncoder and save that into `folder`, plus the hub's extra tokenizer files."""
    import torch
    from sentence_transformers import CrossEncoder
    staging = folder.parent / f"{folder.name}-staging"
    model.save_pretrained(staging)
    for path in tokenizer_dir.iterdir():
        if path.is_file():
            shutil.copy(path, staging / path.name)
    kwargs = {}
    if activation is not None:
        kwargs["activation_fn"] = getattr(torch.nn, ACTIVATIONS[activation])()
    ce = CrossEncoder(str(staging), device="cpu", max_length=max_length, **kwargs)
    ce.save_pretrained(str(folder))
    for name in extra_files:
        if (tokenizer_dir / name).exists():
            shutil.copy(tokenizer_dir / name, folder / name)
    shutil.rmtree(staging)
    return folder


def make_bert_reranker(folder: Path, vocab_folder: Path, *, num_labels: int = 1,
                       max_length: int | None = None, activation: str | None = None,
                       seed: int = 0, **layout) -> Path:
    """A BertForSequenceClassification reranker folder at ms-marco-MiniLM-L6-v2's layout (or
    `layout`'s config arguments), around the BERT tokenizer files of `vocab_folder` (vocab.txt,
    tokenizer.json, tokenizer_config.json, special_tokens_map.json)."""
    torch = pytest.importorskip("torch")  # random weights saved by the reference stack
    transformers = pytest.importorskip("transformers")
    folder = Path(folder)
    tok_dir = folder.parent / f"{folder.name}-tokenizer"
    tok_dir.mkdir(parents=True, exist_ok=True)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json",
                 "special_tokens_map.json"):
        shutil.copy(Path(vocab_folder) / name, tok_dir / name)
    vocab_size = sum(1 for _ in open(tok_dir / "vocab.txt", encoding="utf-8"))
    config = transformers.BertConfig(vocab_size=vocab_size, num_labels=num_labels,
                                     **{**MINILM_RERANKER, **layout})
    torch.manual_seed(seed)
    model = transformers.BertForSequenceClassification(config).eval()
    reference.scale_weights(model, std=STD, seed=seed)
    scale_head(model, seed=seed)
    _save(model, tok_dir, folder, max_length=max_length, activation=activation,
          extra_files=("vocab.txt", "special_tokens_map.json"))
    shutil.rmtree(tok_dir)
    return folder


def make_xlmr_reranker(folder: Path, sp_model: Path, *, layout: dict = BGE_BASE,
                       real: bool = False, num_labels: int = 1, max_length: int | None = None,
                       activation: str | None = None, seed: int = 0) -> Path:
    """An XLMRobertaForSequenceClassification reranker folder at `layout` (BGE_BASE,
    BGE_V2_M3), cut to REDUCED unless `real`, around XLM-R's tokenizer made from `sp_model`
    (tokenizer.json as transformers 5 saves it, and sentencepiece.bpe.model)."""
    import torch
    import transformers
    import xlmr_folder
    folder = Path(folder)
    tok_dir = folder.parent / f"{folder.name}-tokenizer"
    model_max_length = layout["max_position_embeddings"] - 2
    xlmr_folder.write_tokenizer_files(tok_dir, sp_model, model_max_length=model_max_length)
    transformers.XLMRobertaTokenizer.from_pretrained(tok_dir).save_pretrained(tok_dir)
    config = transformers.XLMRobertaConfig(
        vocab_size=xlmr_folder.sentencepiece_piece_count(sp_model) + 2, type_vocab_size=1,
        layer_norm_eps=1e-5, pad_token_id=1, bos_token_id=0, eos_token_id=2,
        num_labels=num_labels, **{**layout, **({} if real else REDUCED)})
    torch.manual_seed(seed)
    model = transformers.XLMRobertaForSequenceClassification(config).eval()
    reference.scale_weights(model, std=STD, seed=seed)
    scale_head(model, seed=seed)
    _save(model, tok_dir, folder, max_length=max_length, activation=activation,
          extra_files=("sentencepiece.bpe.model", "special_tokens_map.json"))
    shutil.rmtree(tok_dir)
    return folder


# gte-reranker-modernbert-base's config.json: gte-modernbert-base's encoder with the head's
# settings (ModernBertConfig's defaults, except mean pooling), as far as they are known here.
GTE_RERANKER_MODERNBERT = {"architectures": ["ModernBertForSequenceClassification"],
                           "classifier_pooling": "mean", "classifier_activation": "gelu",
                           "classifier_bias": False, "classifier_dropout": 0.0}


def make_modernbert_reranker(folder: Path, tokenizer_cache: Path, *, real: bool = False,
                             max_length: int | None = None, num_labels: int = 1,
                             seed: int = 0, **config) -> Path:
    """A ModernBertForSequenceClassification reranker folder at gte-reranker-modernbert-base's
    layout (`config` overrides config.json's keys), cut to gte-modernbert-base's reduced
    widths (tests/encoder_families.py) unless `real`, around a ModernBERT-style tokenizer.json
    (trained once into tokenizer_cache). Weights as encoder_families.random_model draws them:
    the head's norm scales near 1, its linear layers at std 1.4/√d."""
    import encoder_families
    folder = Path(folder)
    tok_dir = folder.parent / f"{folder.name}-tokenizer"
    tok_dir.mkdir(parents=True, exist_ok=True)
    tok = encoder_families.write_tokenizer(tok_dir, "modernbert", tokenizer_cache)
    size = "real" if real else "small"
    hub = {**encoder_families.layout_config("gte-modernbert-base", size),
           **GTE_RERANKER_MODERNBERT, "num_labels": num_labels, **config}
    vocab = len(tok)
    hub["vocab_size"] = max(vocab, hub["vocab_size"]) if real else -(-vocab // 64) * 64
    hub.update(pad_token_id=tok.pad_token_id, cls_token_id=tok.cls_token_id,
               sep_token_id=tok.sep_token_id, bos_token_id=tok.cls_token_id,
               eos_token_id=tok.sep_token_id)
    model = encoder_families.random_model("modernbert", hub, seed, sharpness=1.0 if real else 1.4,
                                          task="ForSequenceClassification")
    _save(model, tok_dir, folder, max_length=max_length, activation=None,
          extra_files=("special_tokens_map.json",))
    shutil.rmtree(tok_dir)
    return folder


def as_hub_folder(folder: Path, target: Path, activation: str | None = "sigmoid") -> Path:
    """The same model as the hub's older reranker folders hold it: no sentence-transformers
    files (modules.json, sentence_bert_config.json, config_sentence_transformers.json), the
    activation in config.json under "sentence_transformers" (sentence-transformers 4 and 5)."""
    shutil.copytree(folder, target)
    for name in ("modules.json", "sentence_bert_config.json",
                 "config_sentence_transformers.json", "README.md"):
        (target / name).unlink(missing_ok=True)
    if activation is not None:
        config = json.loads((target / "config.json").read_text())
        config["sentence_transformers"] = {
            "activation_fn": f"torch.nn.modules.{'linear' if activation == 'identity' else 'activation'}."
                             f"{ACTIVATIONS[activation]}"}
        (target / "config.json").write_text(json.dumps(config, indent=2))
    return target


def query_passage_pairs(n: int, lang: str = "ja") -> list[tuple[str, str]]:
    """n (query, passage) pairs of real catalog text: a short English message as the query,
    a longer one (or its translation) as the passage, spread over the catalogs. Passages run
    from a few words to paragraphs, so some pairs pass max_length on either side."""
    import corpus
    messages = corpus.english(lang)
    short = [m.strip() for m in messages if 10 <= len(m.strip()) <= 60]
    long_ = [m.strip() for m in messages if len(m.strip()) > 60]
    queries, passages = corpus.spread(short, n), corpus.spread(long_, n)
    return list(zip(queries, passages))


def make_numpy_reranker(folder: Path, sp_model: Path, *, hidden: int = 32, layers: int = 2,
                        heads: int = 4, intermediate: int = 64, max_length: int = 64,
                        num_labels: int = 1, seed: int = 0) -> Path:
    """An XLM-R reranker folder written with NumPy alone (no torch), in the hub's layout
    (config.json says XLMRobertaForSequenceClassification; no sentence-transformers files),
    for the tests that run without the reference stack: textbook against fast, the command
    line, the server, broken folders."""
    import numpy as np
    import xlmr_folder
    from minisbert.weights import read_tensors
    folder = Path(folder)
    xlmr_folder.make_numpy_xlmr_folder(folder, sp_model, hidden=hidden, layers=layers,
                                       heads=heads, intermediate=intermediate,
                                       max_seq_length=max_length, seed=seed)
    for name in ("modules.json", "sentence_bert_config.json"):
        (folder / name).unlink()
    shutil.rmtree(folder / "1_Pooling")
    config = json.loads((folder / "config.json").read_text())
    config.update(architectures=["XLMRobertaForSequenceClassification"],
                  id2label={str(i): f"LABEL_{i}" for i in range(num_labels)},
                  label2id={f"LABEL_{i}": i for i in range(num_labels)})
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    tok_config = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps({**tok_config,
                                                              "model_max_length": max_length}))
    rng = np.random.default_rng(seed + 1)
    tensors = {"roberta." + name: np.array(a) for name, a in
               read_tensors(folder / "model.safetensors").items()}
    for name, shape in (("classifier.dense", (hidden, hidden)),
                        ("classifier.out_proj", (num_labels, hidden))):
        tensors[name + ".weight"] = (rng.standard_normal(shape) / hidden ** 0.5).astype(np.float32)
        tensors[name + ".bias"] = (0.1 * rng.standard_normal(shape[:1])).astype(np.float32)
    xlmr_folder.write_safetensors(folder / "model.safetensors", tensors)
    return folder
