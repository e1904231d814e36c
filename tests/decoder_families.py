"""Random-weight Qwen3-Embedding and EmbeddingGemma folders at their real layouts, for the
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
    # the ids of tests/hf_tokenizers.py's Gemma-style tokenizer: <unk> 0, <s> 1, </s> 2
    config = transformers.Gemma3TextConfig(**keys, pad_token_id=0, bos_token_id=1,
                                           eos_token_id=2)
    torch.manual_seed(seed)
    model = transformers.Gemma3TextModel(config).eval()
    scale_decoder_weights(model, std=std, seed=seed, norm_centre=0.0)
    _save(model, folder, dtype)


# ---------------------------------------------------------------------------- model folders

# Qwen3-Embedding-0.6B's config_sentence_transformers.json prompts
QWEN3_PROMPTS = {"query": "Instruct: Given a web search query, retrieve relevant passages that "
                          "answer the query\nQuery:", "document": ""}
# EmbeddingGemma's: retrieval, and one per task
GEMMA_PROMPTS = {
    "query": "task: search result | query: ", "document": "title: none | text: ",
    "BitextMining": "task: search result | query: ", "Clustering": "task: clustering | query: ",
    "Classification": "task: classification | query: ",
    "InstructionRetrieval": "task: code retrieval | query: ",
    "MultilabelClassification": "task: classification | query: ",
    "PairClassification": "task: sentence similarity | query: ",
    "Reranking": "task: search result | query: ", "Retrieval": "task: search result | query: ",
    "Retrieval-query": "task: search result | query: ",
    "Retrieval-document": "title: none | text: ",
    "STS": "task: sentence similarity | query: ",
    "Summarization": "task: summarization | query: "}

_TOKENIZERS: dict = {}


def trained_tokenizer(style: str, vocab_size: int = 4000) -> Path:
    """A folder holding the catalogs' tokenizer in `style` ("qwen2" or "gemma", built by
    tests/hf_tokenizers.py: Qwen2's byte-level BPE appending <|endoftext|>; Gemma 3's
    SentencePiece BPE with byte fallback, <bos> ... <eos>), trained once per process."""
    import tempfile

    import hf_tokenizers
    if (style, vocab_size) not in _TOKENIZERS:
        train = getattr(hf_tokenizers, f"train_{style}_tokenizer")
        out = Path(tempfile.mkdtemp(prefix=f"tok-{style}-"))
        _TOKENIZERS[style, vocab_size] = train(out, vocab_size)
    return _TOKENIZERS[style, vocab_size]


def _copy_tokenizer(style: str, vocab_size: int, folder: Path, **config) -> int:
    """The trained tokenizer's files into folder, tokenizer_config.json updated with config;
    returns its vocabulary size."""
    import json
    import shutil
    source = trained_tokenizer(style, vocab_size)
    shutil.copy(source / "special_tokens_map.json", folder / "special_tokens_map.json")
    pipeline = json.loads((source / "tokenizer.json").read_text())
    if style == "gemma":
        # Gemma 3's own file (and transformers 5's GemmaTokenizer, which rebuilds these two
        # whatever the file says): spaces spelled "▁" without one put before the text, and
        # the text split after each space.
        pipeline["normalizer"] = {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}
        pipeline["pre_tokenizer"] = {"type": "Split", "pattern": {"String": " "},
                                     "behavior": "MergedWithPrevious", "invert": False}
    _write_json(folder / "tokenizer.json", pipeline)
    tok_config = json.loads((source / "tokenizer_config.json").read_text())
    _write_json(folder / "tokenizer_config.json", {**tok_config, **config})
    return len(pipeline["model"]["vocab"]) + sum(
        t["id"] >= len(pipeline["model"]["vocab"]) for t in pipeline["added_tokens"])


def _write_json(path: Path, value) -> None:
    import json
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False))


def _modules(folder: Path, pooling: str, dense: list[tuple[int, int]]) -> None:
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    for i, _ in enumerate(dense):
        modules.append({"idx": 2 + i, "name": str(2 + i), "path": f"{2 + i}_Dense",
                        "type": "sentence_transformers.models.Dense"})
    n = len(modules)
    modules.append({"idx": n, "name": str(n), "path": f"{n}_Normalize",
                    "type": "sentence_transformers.models.Normalize"})
    _write_json(folder / "modules.json", modules)


def _pooling(folder: Path, dim: int, mode: str) -> None:
    flags = {"cls": "cls_token", "mean": "mean_tokens", "max": "max_tokens",
             "mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
             "weightedmean": "weightedmean_tokens", "lasttoken": "lasttoken"}
    _write_json(folder / "1_Pooling" / "config.json", {
        "word_embedding_dimension": dim,
        **{f"pooling_mode_{flag}": name == mode for name, flag in flags.items()},
        "include_prompt": True})


def _dense(folder: Path, n_in: int, n_out: int, dtype: str, seed: int) -> None:
    """A sentence-transformers Dense module without bias or activation, as EmbeddingGemma's."""
    import torch
    from safetensors.torch import save_file
    _write_json(folder / "config.json", {"in_features": n_in, "out_features": n_out,
                                         "bias": False, "activation_function":
                                         "torch.nn.modules.linear.Identity"})
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(n_out, n_in, generator=gen) / n_in ** 0.5
    save_file({"linear.weight": w.to(getattr(torch, dtype)).contiguous()},
              str(folder / "model.safetensors"))


def make_qwen3_embedding(folder: Path, *, dtype: str = "float32", max_seq_length: int = 48,
                         vocab_size: int = 4000, **overrides) -> Path:
    """A Qwen3-Embedding-0.6B-like sentence-transformers folder with random weights: Qwen3Model
    (save_random_qwen3, `overrides` for its config), a Qwen2-style tokenizer.json that appends
    <|endoftext|>, left padding, last-token pooling, Normalize, the instruction prompt."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab = _copy_tokenizer("qwen2", vocab_size, folder, padding_side="left",
                            model_max_length=131072)
    save_random_qwen3(folder, vocab_size=vocab, dtype=dtype, **overrides)
    hidden = overrides.get("hidden_size", 64)
    _modules(folder, "lasttoken", [])
    _pooling(folder, hidden, "lasttoken")
    _write_json(folder / "sentence_bert_config.json",
                {"max_seq_length": max_seq_length, "do_lower_case": False})
    _write_json(folder / "config_sentence_transformers.json", {
        "prompts": QWEN3_PROMPTS, "default_prompt_name": None, "similarity_fn_name": "cosine"})
    return folder


def make_embeddinggemma(folder: Path, *, dtype: str = "float32", max_seq_length: int = 48,
                        vocab_size: int = 4000, dense_width: int = 256, **overrides) -> Path:
    """An EmbeddingGemma-like sentence-transformers folder with random weights: Gemma3TextModel
    with bidirectional attention (save_random_gemma3), a Gemma-style tokenizer.json (<bos> ...
    <eos>), mean pooling, two Dense modules without bias or activation (d -> dense_width -> d;
    768 -> 3072 -> 768 in the real model), Normalize, and its prompts."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab = _copy_tokenizer("gemma", vocab_size, folder, padding_side="right",
                            model_max_length=2048)
    save_random_gemma3(folder, vocab_size=vocab, dtype=dtype, **overrides)
    hidden = overrides.get("hidden_size", 64)
    _modules(folder, "mean", [(hidden, dense_width), (dense_width, hidden)])
    _pooling(folder, hidden, "mean")
    _dense(folder / "2_Dense", hidden, dense_width, dtype, seed=1)
    _dense(folder / "3_Dense", dense_width, hidden, dtype, seed=2)
    _write_json(folder / "sentence_bert_config.json",
                {"max_seq_length": max_seq_length, "do_lower_case": False})
    _write_json(folder / "config_sentence_transformers.json", {
        "prompts": GEMMA_PROMPTS, "default_prompt_name": None, "similarity_fn_name": "cosine"})
    return folder
