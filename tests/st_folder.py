"""Model folders written by sentence-transformers itself, with random weights, in the layouts of
real models: a BERT encoder with all-MiniLM-L6-v2's uncased WordPiece vocabulary, then Pooling,
Dense modules and Normalize, and prompts in config_sentence_transformers.json.

sentence-transformers 6 saves the tokenizer as tokenizer.json only; minisbert reads WordPiece
from vocab.txt, so the vocab.txt tokenizer.json was made from is copied beside it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from reference import scale_weights

TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json",
                   "special_tokens_map.json")


def make_folder(root: Path, vocab_folder: Path, *, hidden: int = 32, layers: int = 2,
                heads: int = 4, pooling: str | list[str] = "mean", include_prompt: bool = True,
                dense: tuple[tuple[int, str], ...] = (), normalize: bool = False,
                prompts: dict | None = None, default_prompt_name: str | None = None,
                max_seq_length: int = 64, seed: int = 0) -> Path:
    """Save Transformer -> Pooling -> Dense (each (out_features, torch activation name)) ->
    [Normalize] as sentence-transformers does, to root/"model"; return that folder."""
    import torch
    import transformers
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import (Dense, Normalize, Pooling,
                                                                    Transformer)
    hf = root / "hf"
    hf.mkdir(parents=True)
    for name in TOKENIZER_FILES:
        shutil.copy(vocab_folder / name, hf / name)
    torch.manual_seed(seed)
    config = transformers.BertConfig(
        vocab_size=30522, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=2 * hidden if hidden < 128 else 4 * hidden, max_position_embeddings=128)
    encoder = transformers.BertModel(config, add_pooling_layer=False).eval()
    scale_weights(encoder, seed=seed)
    encoder.save_pretrained(hf)

    modules = [Transformer(str(hf), max_seq_length=max_seq_length),
               Pooling(hidden, pooling_mode=pooling, include_prompt=include_prompt)]
    width = hidden * (1 if isinstance(pooling, str) else len(pooling))  # modes concatenated
    gen = torch.Generator().manual_seed(seed + 1)
    for out_features, activation in dense:
        module = Dense(width, out_features, activation_function=getattr(torch.nn, activation)())
        with torch.no_grad():  # pre-activations of about unit size: tanh's curved part
            for p in module.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) / width ** 0.5)
        modules.append(module)
        width = out_features
    if normalize:
        modules.append(Normalize())
    model = SentenceTransformer(modules=modules, prompts=prompts,
                                default_prompt_name=default_prompt_name, device="cpu")
    folder = root / "model"
    model.save(str(folder))
    shutil.copy(vocab_folder / "vocab.txt", folder / "vocab.txt")
    shutil.rmtree(hf)
    return folder


def texts(n: int = 120) -> list[str]:
    """Real English messages, stripped (sentence-transformers 6 does not strip, minisbert does),
    with a few edge cases: empty, one character, a long one cut at max_seq_length."""
    import corpus
    picked = [t.strip() for t in corpus.spread(corpus.english("ja"), n)]
    return [t for t in picked if t] + ["", "a", " ".join(picked)[:2000]]
