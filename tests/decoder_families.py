"""Random-weight Qwen3 and Gemma 3 (EmbeddingGemma) models at their real layouts, for the
decoder-embedder tests and the benchmark.

`save_random_qwen3` and `save_random_gemma3` write what transformers' save_pretrained writes
for Qwen3Model and Gemma3TextModel (config.json, model.safetensors), in float32 or bfloat16,
with weights large enough that a wrong mask, window, rotation or norm shows. The defaults are
small (a few layers, a narrow width); the real shapes are QWEN3_EMBEDDING_0_6B and
EMBEDDINGGEMMA_300M.
"""

from __future__ import annotations

from pathlib import Path

# Qwen/Qwen3-Embedding-0.6B's config.json (its vocab is that of the trained tokenizer)
QWEN3_EMBEDDING_0_6B = dict(hidden_size=1024, num_hidden_layers=28, num_attention_heads=16,
                            num_key_value_heads=8, head_dim=128, intermediate_size=3072,
                            rope_theta=1_000_000.0, rms_norm_eps=1e-6, tie_word_embeddings=True,
                            max_position_embeddings=32768, vocab_size=151669,
                            use_sliding_window=False, max_window_layers=28, hidden_act="silu")
# google/embeddinggemma-300m's config.json (gemma3_text with bidirectional attention)
EMBEDDINGGEMMA_300M = dict(hidden_size=768, num_hidden_layers=24, num_attention_heads=3,
                           num_key_value_heads=1, head_dim=256, intermediate_size=1152,
                           sliding_window=512, rope_theta=1_000_000.0,
                           rope_local_base_freq=10_000.0, query_pre_attn_scalar=256,
                           use_bidirectional_attention=True, rms_norm_eps=1e-6,
                           hidden_activation="gelu_pytorch_tanh", max_position_embeddings=2048,
                           vocab_size=262144, tie_word_embeddings=True,
                           layer_types=["sliding_attention"] * 5 + ["full_attention"]
                           + ["sliding_attention"] * 5 + ["full_attention"]
                           + ["sliding_attention"] * 5 + ["full_attention"]
                           + ["sliding_attention"] * 5 + ["full_attention"])


def scale_decoder_weights(model, std: float, seed: int = 0, norm_centre: float = 1.0) -> None:
    """Redraw every weight: projections and embeddings N(0, std²), RMSNorm scales around
    norm_centre (1 for Qwen3's w; 0 for Gemma's, which scales by 1 + w)."""
    import torch
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(norm_centre + 0.2 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(std * torch.randn(p.shape, generator=gen))


def _save(model, folder: Path, dtype: str) -> None:
    import torch
    if dtype == "bfloat16":
        model = model.to(torch.bfloat16)
    elif dtype != "float32":
        raise ValueError(dtype)
    model.save_pretrained(folder)


def save_random_qwen3(folder: Path, *, vocab_size: int, dtype: str = "float32", seed: int = 0,
                      std: float = 0.08, **overrides) -> None:
    """A random Qwen3Model with Qwen3-Embedding-0.6B's config keys; by default 3 layers of
    width 64 (4 query heads, 2 key/value heads of 32), unless overridden."""
    import torch
    import transformers
    keys = {**QWEN3_EMBEDDING_0_6B, "hidden_size": 64, "num_hidden_layers": 3,
            "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32,
            "intermediate_size": 96, **overrides, "vocab_size": vocab_size}
    config = transformers.Qwen3Config(**keys, bos_token_id=None, eos_token_id=vocab_size - 1)
    torch.manual_seed(seed)
    model = transformers.Qwen3Model(config).eval()
    scale_decoder_weights(model, std=std, seed=seed, norm_centre=1.0)
    _save(model, folder, dtype)


def save_random_gemma3(folder: Path, *, vocab_size: int, dtype: str = "float32", seed: int = 0,
                       std: float = 0.08, **overrides) -> None:
    """A random Gemma3TextModel with EmbeddingGemma's config keys; by default 4 layers of
    width 64 (2 query heads, 1 key/value head of 32; sliding, full, sliding, full) and a
    window of 8 tokens, so test texts pass it."""
    import torch
    import transformers
    keys = {**EMBEDDINGGEMMA_300M, "hidden_size": 64, "num_hidden_layers": 4,
            "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 32,
            "intermediate_size": 96, "sliding_window": 8, "query_pre_attn_scalar": 32,
            "layer_types": ["sliding_attention", "full_attention"] * 2,
            **overrides, "vocab_size": vocab_size}
    config = transformers.Gemma3TextConfig(**keys, pad_token_id=0, eos_token_id=1,
                                           bos_token_id=2)
    torch.manual_seed(seed)
    model = transformers.Gemma3TextModel(config).eval()
    scale_decoder_weights(model, std=std, seed=seed, norm_centre=0.0)
    _save(model, folder, dtype)
