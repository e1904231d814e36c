"""Helpers shared by the parity tests: building small HuggingFace models with random weights
as sentence-transformers folders, and printing how far apart two results are."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def write_sentence_transformers_files(folder: Path, *, dim: int, max_seq_length: int,
                                      do_lower_case: bool = False, pooling: str = "mean",
                                      normalize: bool = False) -> None:
    """Add modules.json, sentence_bert_config.json and 1_Pooling/config.json to a HF folder."""
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize",
                        "type": "sentence_transformers.models.Normalize"})
    (folder / "modules.json").write_text(json.dumps(modules, indent=2))
    (folder / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": max_seq_length, "do_lower_case": do_lower_case}))
    (folder / "1_Pooling").mkdir(exist_ok=True)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": dim,
        "pooling_mode_cls_token": pooling == "cls",
        "pooling_mode_mean_tokens": pooling == "mean",
        "pooling_mode_max_tokens": pooling == "max",
        "pooling_mode_mean_sqrt_len_tokens": pooling == "mean_sqrt_len_tokens",
        "pooling_mode_weightedmean_tokens": pooling == "weightedmean",
        "pooling_mode_lasttoken": pooling == "lasttoken",
    }))


def save_random_roberta(folder: Path, family: str, *, vocab_size: int, hidden: int, layers: int,
                        heads: int, intermediate: int, max_position_embeddings: int,
                        std: float = 0.2, seed: int = 0) -> None:
    """A random RobertaModel ("roberta") or XLMRobertaModel ("xlm-roberta"), weights drawn by
    scale_weights, saved into folder as config.json + model.safetensors. Both families share
    fairseq's conventions: pad id 1 (positions numbered from 2), one token type, eps 1e-5."""
    import torch
    import transformers
    prefix = {"roberta": "Roberta", "xlm-roberta": "XLMRoberta"}[family]
    config = getattr(transformers, prefix + "Config")(
        vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers,
        num_attention_heads=heads, intermediate_size=intermediate,
        max_position_embeddings=max_position_embeddings, type_vocab_size=1, layer_norm_eps=1e-5,
        pad_token_id=1, bos_token_id=0, eos_token_id=2, hidden_act="gelu")
    torch.manual_seed(seed)
    # With the pooler, as real checkpoints have it (sentence-transformers ignores it).
    model = getattr(transformers, prefix + "Model")(config).eval()
    scale_weights(model, std=std, seed=seed)
    model.save_pretrained(folder)


def scale_weights(model, std: float = 0.2, seed: int = 0) -> None:
    """Redraw every weight matrix and embedding with a large std, so attention is sharp and a
    wrong mask, offset or transpose changes the output visibly (at init std 0.02 attention is
    nearly uniform and hides such bugs). LayerNorm scales get random values around 1."""
    import torch
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm" in name and name.endswith("weight"):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(std * torch.randn(p.shape, generator=gen))


def compare(name: str, ours: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """Print and return (max abs difference, min cosine) of two [n, d] arrays."""
    ours = np.atleast_2d(ours).astype(np.float64)
    ref = np.atleast_2d(ref).astype(np.float64)
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    maxdiff = float(np.abs(ours - ref).max()) if ours.size else 0.0
    cos = (ours * ref).sum(1) / np.maximum(np.linalg.norm(ours, axis=1) * np.linalg.norm(ref, axis=1), 1e-30)
    mincos = float(cos.min()) if cos.size else 1.0
    print(f"\n{name}: n={len(ours)} dim={ours.shape[1]}  ours[0,:4]={np.round(ours[0, :4], 6).tolist()}"
          f"  ref[0,:4]={np.round(ref[0, :4], 6).tolist()}\n"
          f"{name}: maxdiff = {maxdiff:.3e}, min cosine = {mincos:.9f}")
    return maxdiff, mincos


def first_mismatches(texts, ours, ref, show: int = 5) -> list[int]:
    """Indices where two id lists differ; prints the first few side by side."""
    bad = [i for i, (a, b) in enumerate(zip(ours, ref)) if a != b]
    print(f"\ncompared {len(texts)} strings, {len(bad)} mismatches")
    for i in bad[:show]:
        print(f"  text {texts[i]!r}\n    ours {ours[i]}\n    ref  {ref[i]}")
    return bad


def encode_both(ours, ref_model, texts: list[str], n_cut: int, max_seq_length: int):
    """minisbert's and sentence-transformers' encode() of the same texts, (ours, ref); prints
    how many texts are cut at max_seq_length and how long each library took. minisbert's
    warning about cut texts is silenced: the cut is what these tests compare."""
    import time
    import warnings

    import minisbert
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", minisbert.TruncationWarning)
        a = ours.encode(texts)
    mid = time.perf_counter()
    b = ref_model.encode(texts)
    print(f"\n{len(texts)} texts, {n_cut} cut at {max_seq_length} tokens; encode: minisbert "
          f"{mid - start:.1f}s, sentence-transformers {time.perf_counter() - mid:.1f}s")
    return a, b
