"""The model families minisbert runs, as data: one `Family` entry per config.json model_type.

A family says, in one place,
  - how config.json's keys become the encoder's settings (`EncoderConfig`), with defaults;
  - which blocks its layers are built from, in which order (`Blocks`): the norm and where it
    sits, the position scheme, the attention, the feed-forward;
  - the names its checkpoints give each tensor, the prefix task checkpoints add, and the
    tensors to skip;
  - the pooling a folder without modules.json gets, the tokenizer its folders use when
    tokenizer_config.json names none, and the files that tokenizer is built from;
  - the classification head its `*ForSequenceClassification` checkpoints (cross-encoders,
    rerankers) put on the encoder (`ClassifierHead`), with its own settings (`HeadConfig`).
checkpoint.py reads the names, model.py the pooling, tokenizer/ the front end, download.py the
files, and both encoders (textbook.py, encoder.py) the blocks; none of them tests a model_type.

Adding a family is one entry here, plus the blocks it brings if the encoders lack them (see
"Adding a model" in docs/how-it-works.md).

`encoder_config` is the config.json schema (`head_config` for the head): it reads the file's settings as the family says and
checks each one's type and range, so a broken file is refused here, naming the key, rather than
failing later inside NumPy.

Left out: families whose config.json asks for blocks the encoders lack (they are refused with
the list of model_types that run), and every setting that only matters for training.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .activations import ACTIVATIONS
from .errors import ConfigError, UnsupportedModelError


@dataclass(frozen=True)
class Blocks:
    """Which block a layer uses at each step. Each value names a function in both encoders
    (textbook.py and encoder.py)."""
    # "layer": LayerNorm, with scale and shift; "rms": RMSNorm, a scale only (times
    # EncoderConfig.norm_offset + w: Gemma stores its scales centred on 0)
    norm: str = "layer"
    # "post": add, then normalize; "pre": normalize each sublayer's input, add its output as
    # it is, and normalize once after the last layer ("final_norm" in the names)
    norm_placement: str = "post"
    # "absolute": a learned table added to the embeddings; "rotary": q and k of every layer
    # turned by their position (textbook.rotary_embedding), no table
    positions: str = "absolute"
    # "bidirectional": every token sees its whole text; "causal": a token sees itself and the
    # tokens before it (Qwen3). A local layer (EncoderConfig.layer_kinds) sees only its
    # window either way.
    attention: str = "bidirectional"
    feed_forward: str = "plain"  # down(act(up(x))); "gated": down(act(gate(x)) · up(x))
    # False: the first layer has no norm before attention (ModernBERT: its input is the
    # embedding norm's output)
    first_attention_norm: bool = True
    # The layer as a whole: "encoder" (encoder_layer: BERT's attention, every head its own
    # keys and values) or "decoder" (decoder_layer, run by decode_tokens: a language model's
    # block, grouped-query attention over fewer key/value heads, q and k RMS-normalized per
    # head, pre-norm RMSNorm, no embedding norm). Qwen3 and Gemma 3 use "decoder".
    layer: str = "encoder"
    # Gemma: each sublayer's output is normalized too before it is added ("ln_attn_out",
    # "ln_ffn_out" in the names)
    output_norms: bool = False


@dataclass(frozen=True)
class EncoderConfig:
    hidden_size: int  # d, the width of every token vector
    num_layers: int
    num_heads: int  # d must divide evenly into heads
    intermediate_size: int  # width of the feed-forward hidden layer (4·d in base models)
    vocab_size: int
    max_position_embeddings: int  # rows in the position table
    type_vocab_size: int  # rows in the token-type table (2 for BERT, 1 for XLM-R, 0: no table)
    layer_norm_eps: float  # 1e-12 for BERT and DistilBERT, 1e-5 for XLM-R, RoBERTa, MPNet
    hidden_act: str  # name of the feed-forward activation, see activations.ACTIVATIONS
    pad_token_id: int
    # XLM-R, RoBERTa and MPNet number real positions from pad_token_id + 1 (fairseq's
    # convention) and give padding the position pad_token_id; BERT numbers positions 0..s-1.
    positions_after_padding_idx: bool
    # Rows of MPNet's learned relative position bias table ([rows, heads]); 0: no such bias.
    relative_attention_buckets: int = 0
    # config.json's model_type: the key of its Family (which tensor names the checkpoint uses).
    architecture: str = "bert"
    # DistilBERT's sinusoidal_pos_embds: a position table missing from the checkpoint is the
    # fixed sine/cosine one (checkpoint.sinusoidal_positions); a stored one is used as it is.
    sinusoidal_positions: bool = False
    blocks: Blocks = Blocks()  # which blocks each layer runs, from the family
    # Which tensors have a bias: norms (ModernBERT's have none), attention's projections,
    # a feed-forward's first projections (up, and gate if gated) and its last (down).
    norm_bias: bool = True
    attention_bias: bool = True
    up_bias: bool = True
    down_bias: bool = True
    # Rotary positions: the base of global layers, of local layers when it differs
    # (ModernBERT: 160000 and 10000; 0: the same), and a divisor of every frequency
    # (textbook.rotary_frequencies says how GTE's NTK scaling becomes one).
    rope_theta: float = 10000.0
    local_rope_theta: float = 0.0
    rope_scale: float = 1.0
    # Each layer's kind, "global" (a token sees its whole text) or "local" (only the tokens at
    # most `window` positions away, on either side); () means every layer is global.
    layer_kinds: tuple[str, ...] = ()
    window: int = 0
    # The decoder embedders' attention (Blocks.layer "decoder"): key/value heads, each shared
    # by num_heads / kv_heads query heads (0: as many as query heads); each head's width when
    # config.json gives it (0: hidden_size / num_heads; Qwen3-Embedding-0.6B: 16 heads of 128
    # on a width of 1,024); the factor on q·kᵀ (0: 1/√head_dim; Gemma: 1/√query_pre_attn_scalar).
    num_kv_heads: int = 0
    head_size: int = 0
    attention_scale: float = 0.0
    embedding_scale: float = 1.0  # multiplies the token vectors: Gemma √d (as float32)
    norm_offset: float = 0.0  # RMSNorm scales by offset + w: Gemma 1

    @property
    def head_dim(self) -> int:
        return self.head_size or self.hidden_size // self.num_heads

    @property
    def kv_heads(self) -> int:
        return self.num_kv_heads or self.num_heads

    @property
    def causal(self) -> bool:
        return self.blocks.attention == "causal"

    @property
    def scale(self) -> float:
        """The factor on q·kᵀ."""
        return self.attention_scale or self.head_dim ** -0.5

    def layer_window(self, i: int) -> int:
        """How far layer i's attention reaches on either side: 0 for no limit (global)."""
        return self.window if self.layer_kinds and self.layer_kinds[i] == "local" else 0

    def layer_rope_theta(self, i: int) -> float:
        """The rotary base of layer i: local layers may have their own (ModernBERT)."""
        if self.layer_window(i) and self.local_rope_theta:
            return self.local_rope_theta
        return self.rope_theta

    @property
    def max_tokens(self) -> int:
        """How many tokens one text may have: the rows of the position table (512 for BERT and
        XLM-R), or, for rotary positions, which have no table, max_position_embeddings, the
        length the model was trained to (8,192 for ModernBERT and GTE)."""
        if self.positions_after_padding_idx:
            return self.max_position_embeddings - self.pad_token_id - 1
        return self.max_position_embeddings


REQUIRED = object()  # a config.json key with no default: the file must have it
# An EncoderConfig setting: (the config.json key that holds it, its value when the key is
# absent or null), or a plain value the family fixes whatever the file says. The key may be a
# tuple of keys, the first present one counting (a family whose files come in two dialects).
Setting = tuple[str | tuple[str, ...], object] | int | float | str | bool


class Part(NamedTuple):
    """A parameter stored as one of `of` equal blocks of rows of a fused tensor (and of its
    bias), `index` counting from 0: ModernBERT's Wqkv holds q, k and v as Part(name, 0..2, 3)."""
    name: str
    index: int
    of: int


@dataclass(frozen=True)
class HeadConfig:
    """The settings of a sequence-classification head (see ClassifierHead), from config.json."""
    num_labels: int  # scores per pair: 1 for a reranker (its relevance), more for classifiers
    pooling: str = "cls"  # the token vector(s) it reads: "cls" (the first token) or "mean"
    activation: str = "tanh"  # between its two linear layers, a key of activations.ACTIVATIONS
    norm: bool = False  # a LayerNorm after the activation (ModernBERT's head)
    norm_eps: float = 1e-5
    dense_bias: bool = True  # does the first linear layer have a bias?
    norm_bias: bool = True  # does the norm have a shift?


@dataclass(frozen=True)
class ClassifierHead:
    """The head `*ForSequenceClassification` puts on the encoder, as one block:

        pooled = x[:, 0] (or the mean of the real tokens)   [b, s, d] -> [b, d]
        h      = act(pooled · W_dense + b_dense)             [b, d] -> [b, d]
        h      = norm(h)                                     only where HeadConfig.norm
        logits = h · W_out + b_out                           [b, d] -> [b, labels]

    BERT's is its pooler (dense + tanh on [CLS]) followed by `classifier`; XLM-R's is
    `classifier.dense`, tanh, `classifier.out_proj` on <s>: the same block, other names.
    ModernBERT's reads the mean of the pair's tokens (classifier_pooling), then `head.dense`
    without bias, GELU, `head.norm` without shift and `classifier`.
    """
    # "dense", "out" (and "norm") -> the checkpoint's name for that linear layer or norm, with
    # the family's task prefix removed (BERT's pooler is inside BertModel: "bert.pooler.dense")
    names: dict[str, str]
    # HeadConfig field -> Setting, as Family.config (num_labels is read from id2label)
    config: dict[str, Setting] = field(default_factory=dict)

# Tensors checkpoints hold that a sentence encoder's forward pass does not use: buffers of
# position numbers, the pooler, and the heads of task models. Regular expressions over names
# with the task prefix already removed.
COMMON_IGNORED = (r"(^|\.)position_ids$", r"^pooler\.", r"^cls\.", r"^lm_head\.",
                  r"^classifier\.")


@dataclass(frozen=True)
class Family:
    # EncoderConfig field -> Setting. Defaults are those of transformers' config classes.
    config: dict[str, Setting]
    # Path of a parameter in the encoder's tree -> the checkpoint's name for it, "{i}" for the
    # layer number. A name ending in ".weight" is one tensor (an embedding table); any other is
    # the prefix of a linear layer or a norm, whose ".weight" and ".bias" follow it (the bias
    # only where EncoderConfig's *_bias says so). A Part is a block of a fused tensor.
    names: dict[str, str | Part]
    # What task checkpoints (BertModel inside BertForMaskedLM, ...) put before those names;
    # sentence-transformers checkpoints have none.
    prefixes: tuple[str, ...] = ()
    ignored: tuple[str, ...] = COMMON_IGNORED  # see COMMON_IGNORED
    blocks: Blocks = Blocks()
    # The pooling of a folder without modules.json (sentence-transformers' default is mean).
    pooling: tuple[str, ...] = ("mean",)
    # tokenizer_class when tokenizer_config.json names none (a key of tokenizer.FRONT_ENDS),
    # and the files that tokenizer is built from (download fetches them; load needs them).
    tokenizer: str = "BertTokenizer"
    tokenizer_files: tuple[str, ...] = ("vocab.txt",)
    # The head of the family's *ForSequenceClassification (cross-encoders); None: not supported.
    head: ClassifierHead | None = None
    # Settings that are not one key each (rotary bases and scaling, layer kinds, keys whose
    # values need translating): config.json, its path -> EncoderConfig fields. It also refuses
    # the options of the family that minisbert does not implement.
    read: Callable[[dict, Path], dict] | None = field(default=None, compare=False)


# ---------------------------------------------------------------------------- the families

# BERT's config.json keys, which XLM-R, RoBERTa and MPNet share.
_BERT_CONFIG: dict[str, Setting] = {
    "hidden_size": ("hidden_size", REQUIRED),
    "num_layers": ("num_hidden_layers", REQUIRED),
    "num_heads": ("num_attention_heads", REQUIRED),
    "intermediate_size": ("intermediate_size", REQUIRED),
    "vocab_size": ("vocab_size", REQUIRED),
    "max_position_embeddings": ("max_position_embeddings", REQUIRED),
    "type_vocab_size": ("type_vocab_size", 2),
    "layer_norm_eps": ("layer_norm_eps", 1e-12),
    "hidden_act": ("hidden_act", "gelu"),
    "pad_token_id": ("pad_token_id", 0),
    "positions_after_padding_idx": False,
}
# fairseq's numbering (XLM-R, RoBERTa): positions count from pad_token_id + 1 (see EncoderConfig).
_FAIRSEQ_CONFIG: dict[str, Setting] = {**_BERT_CONFIG, "pad_token_id": ("pad_token_id", 1),
                                       "positions_after_padding_idx": True}
# BERT's tensor names, which XLM-R and RoBERTa share.
_BERT_NAMES = {
    "embeddings.word": "embeddings.word_embeddings.weight",
    "embeddings.position": "embeddings.position_embeddings.weight",
    "embeddings.token_type": "embeddings.token_type_embeddings.weight",
    "embeddings.ln": "embeddings.LayerNorm",
    "attn.q": "encoder.layer.{i}.attention.self.query",
    "attn.k": "encoder.layer.{i}.attention.self.key",
    "attn.v": "encoder.layer.{i}.attention.self.value",
    "attn.out": "encoder.layer.{i}.attention.output.dense",
    "ln_attn": "encoder.layer.{i}.attention.output.LayerNorm",
    "ffn.up": "encoder.layer.{i}.intermediate.dense",
    "ffn.down": "encoder.layer.{i}.output.dense",
    "ln_ffn": "encoder.layer.{i}.output.LayerNorm",
}

# BertForSequenceClassification: the pooler (dense + tanh on [CLS]), then `classifier`.
_BERT_HEAD = ClassifierHead(names={"dense": "pooler.dense", "out": "classifier"})
# RobertaClassificationHead (XLM-R's too): dense + tanh on <s>, then out_proj.
_FAIRSEQ_HEAD = ClassifierHead(names={"dense": "classifier.dense", "out": "classifier.out_proj"})

FAMILIES: dict[str, Family] = {
    "bert": Family(config=_BERT_CONFIG, names=_BERT_NAMES, prefixes=("bert.",), head=_BERT_HEAD),
    "xlm-roberta": Family(
        config=_FAIRSEQ_CONFIG, names=_BERT_NAMES, prefixes=("roberta.", "xlm_roberta."),
        tokenizer="XLMRobertaTokenizer", tokenizer_files=("sentencepiece.bpe.model",),
        head=_FAIRSEQ_HEAD),
    "roberta": Family(
        config=_FAIRSEQ_CONFIG, names=_BERT_NAMES, prefixes=("roberta.",),
        tokenizer="RobertaTokenizer", tokenizer_files=("vocab.json", "merges.txt")),
    "mpnet": Family(
        config={
            **_BERT_CONFIG,
            "type_vocab_size": 0,  # no token types
            "pad_token_id": 1,  # MPNet numbers positions after padding index 1, whatever the config
            "positions_after_padding_idx": True,
            # rows of the relative position bias table; the model always uses the first 32
            "relative_attention_buckets": ("relative_attention_num_buckets", 32),
        },
        names={
            "embeddings.word": "embeddings.word_embeddings.weight",
            "embeddings.position": "embeddings.position_embeddings.weight",
            "embeddings.ln": "embeddings.LayerNorm",
            "attn.q": "encoder.layer.{i}.attention.attn.q",
            "attn.k": "encoder.layer.{i}.attention.attn.k",
            "attn.v": "encoder.layer.{i}.attention.attn.v",
            "attn.out": "encoder.layer.{i}.attention.attn.o",
            "ln_attn": "encoder.layer.{i}.attention.LayerNorm",
            "ffn.up": "encoder.layer.{i}.intermediate.dense",
            "ffn.down": "encoder.layer.{i}.output.dense",
            "ln_ffn": "encoder.layer.{i}.output.LayerNorm",
            # one [buckets, heads] table, shared by every layer
            "relative_attention_bias": "encoder.relative_attention_bias.weight",
        },
        prefixes=("mpnet.",), tokenizer="MPNetTokenizer"),
    "distilbert": Family(
        config={
            "hidden_size": ("dim", REQUIRED),
            "num_layers": ("n_layers", REQUIRED),
            "num_heads": ("n_heads", REQUIRED),
            "intermediate_size": ("hidden_dim", REQUIRED),
            "vocab_size": ("vocab_size", REQUIRED),
            "max_position_embeddings": ("max_position_embeddings", REQUIRED),
            "type_vocab_size": 0,  # no token types
            "layer_norm_eps": 1e-12,  # hard-coded in DistilBERT, not in its config
            "hidden_act": ("activation", "gelu"),
            "pad_token_id": ("pad_token_id", 0),
            "positions_after_padding_idx": False,
            "sinusoidal_positions": ("sinusoidal_pos_embds", False),
        },
        names={
            "embeddings.word": "embeddings.word_embeddings.weight",
            "embeddings.position": "embeddings.position_embeddings.weight",
            "embeddings.ln": "embeddings.LayerNorm",
            "attn.q": "transformer.layer.{i}.attention.q_lin",
            "attn.k": "transformer.layer.{i}.attention.k_lin",
            "attn.v": "transformer.layer.{i}.attention.v_lin",
            "attn.out": "transformer.layer.{i}.attention.out_lin",
            "ln_attn": "transformer.layer.{i}.sa_layer_norm",
            "ffn.up": "transformer.layer.{i}.ffn.lin1",
            "ffn.down": "transformer.layer.{i}.ffn.lin2",
            "ln_ffn": "transformer.layer.{i}.output_layer_norm",
        },
        prefixes=("distilbert.",),
        # the masked-LM head of DistilBertForMaskedLM
        ignored=(*COMMON_IGNORED, r"^vocab_(transform|layer_norm|projector)\."),
        tokenizer="DistilBertTokenizer"),
}


# ---------------------------------------------------------------------------- rotary families
# ModernBERT, GTE and NomicBERT: rotary positions (no position table), gated feed-forwards,
# fused q/k/v tensors. Their rope settings and layer kinds come from a `read` function each,
# since their config files say them in several dialects.


def _refuse(path: Path, what: str) -> None:
    raise UnsupportedModelError(f"{path}: {what}; minisbert does not implement it.")


def _rope_settings(config: dict, path: Path, theta: float, head_dim: int,
                   parameters: dict | None = None) -> dict:
    """rope_theta and rope_scale from a rope parameters dict (transformers 5's rope_parameters,
    or an older rope_scaling): "default" and "linear" scaling, and Alibaba's fixed "ntk"
    scaling, which is the base theta·f with frequencies divided by f^(2 / head_dim)."""
    parameters = dict(parameters or {})
    theta = float(parameters.get("rope_theta", theta))
    kind = parameters.get("rope_type", parameters.get("type", "default"))
    factor = parameters.get("factor", 1.0)
    if kind == "default":
        return {"rope_theta": theta}
    if not isinstance(factor, (int, float)) or isinstance(factor, bool) or factor <= 0:
        raise ConfigError(f"{path}: the rope scaling factor is {json.dumps(factor)}; it must be "
                          "a positive number. Fix the file, or download it again.")
    if kind == "linear":
        return {"rope_theta": theta, "rope_scale": float(factor)}
    if kind == "ntk" and parameters.get("mixed_b") is None:
        return {"rope_theta": theta * factor, "rope_scale": float(factor) ** (2 / head_dim)}
    _refuse(path, f"rope scaling {json.dumps(parameters)} (minisbert has default, linear and "
                  "GTE's fixed ntk)")


def _head_dim(config: dict, path: Path, hidden: tuple[str, ...], heads: tuple[str, ...]) -> int:
    d = _setting(config, path, hidden, int)
    h = _setting(config, path, heads, int)
    return d // max(h, 1)


def _read_modernbert(config: dict, path: Path) -> dict:
    """ModernBERT's layer kinds (layer_types, or every global_attn_every_n_layers-th layer
    global from the first), its window (local_attention // 2 on each side) and its two rotary
    bases (rope_parameters per layer kind, or global_rope_theta / local_rope_theta)."""
    n = _setting(config, path, "num_hidden_layers", int)
    types = config.get("layer_types")
    if types is None:
        every = _setting(config, path, "global_attn_every_n_layers", int, 3)
        if every < 1:
            raise ConfigError(f"{path}: 'global_attn_every_n_layers' is {every}; it must be at "
                              "least 1. Fix the file, or download it again.")
        types = ["sliding_attention" if i % every else "full_attention" for i in range(n)]
    kinds = {"full_attention": "global", "sliding_attention": "local"}
    if not (isinstance(types, list) and len(types) == n and all(t in kinds for t in types)):
        raise ConfigError(f"{path}: 'layer_types' must list {n} layers, each full_attention or "
                          "sliding_attention. Fix the file, or download it again.")
    local = _setting(config, path, "local_attention", int, 128)
    head_dim = _head_dim(config, path, ("hidden_size",), ("num_attention_heads",))
    rope = config.get("rope_parameters") or {}
    if config.get("rope_scaling"):
        _refuse(path, f"rope_scaling {json.dumps(config['rope_scaling'])}")
    full = _rope_settings(config, path, _setting(config, path, "global_rope_theta", float,
                                                 160000.0), head_dim, rope.get("full_attention"))
    sliding = _rope_settings(config, path, _setting(config, path, "local_rope_theta", float,
                                                    10000.0), head_dim,
                             rope.get("sliding_attention"))
    if full.get("rope_scale", 1.0) != sliding.get("rope_scale", 1.0):
        _refuse(path, "a different rope scaling for global and local layers")
    return {"layer_kinds": tuple(kinds[t] for t in types), "window": local // 2,
            "rope_theta": full["rope_theta"], "local_rope_theta": sliding["rope_theta"],
            "rope_scale": full.get("rope_scale", 1.0)}


def _read_gte(config: dict, path: Path) -> dict:
    """GTE's rotary base and scaling: rope_theta with Alibaba's rope_scaling ({"type": "ntk",
    "factor": f}), or transformers 5's rope_parameters; refuses the remote code's options
    that change the model (RMSNorm, log-n attention scaling, unpacked q/k/v)."""
    positions = config.get("position_embedding_type", "rope")
    if positions != "rope":
        _refuse(path, f"position_embedding_type {positions!r} in a GTE model (rope only)")
    if config.get("layer_norm_type", "layer_norm") != "layer_norm":
        _refuse(path, f"layer_norm_type {config['layer_norm_type']!r}")
    if config.get("logn_attention_scale") or config.get("logn_attention_clip1"):
        _refuse(path, "logn_attention_scale")
    if config.get("pack_qkv") is False:
        _refuse(path, "pack_qkv false (separate q, k and v tensors)")
    head_dim = _head_dim(config, path, ("hidden_size",), ("num_attention_heads",))
    theta = _setting(config, path, "rope_theta", float, 160000.0)
    parameters = config.get("rope_parameters") or config.get("rope_scaling")
    return _rope_settings(config, path, theta, head_dim, parameters)


def _read_nomic_bert(config: dict, path: Path) -> dict:
    """NomicBERT in either dialect: nomic's remote-code config (GPT-2 style keys,
    activation_function "swiglu", rotary_emb_base, bias switches) or transformers 5's."""
    for key, allowed in (("prenorm", False), ("parallel_block", False), ("use_rms_norm", False),
                         ("rotary_emb_interleaved", False), ("causal", False)):
        if config.get(key, allowed) != allowed:
            _refuse(path, f"{key} {json.dumps(config[key])}")
    if config.get("rotary_emb_fraction", 1.0) != 1.0:
        _refuse(path, f"rotary_emb_fraction {config['rotary_emb_fraction']} (rotary positions "
                      "on part of each head)")
    if config.get("rotary_scaling_factor") is not None:
        _refuse(path, "rotary_scaling_factor (dynamic NTK scaling)")
    settings = {}
    act = config.get("activation_function")
    if act is not None:  # nomic's names for its gated feed-forward
        gated = {"swiglu": "silu", "geglu": "gelu"}
        if act not in gated:
            _refuse(path, f"activation_function {act!r} (swiglu or geglu only)")
        settings["hidden_act"] = gated[act]
    for field_name, key in (("attention_bias", "qkv_proj_bias"), ("up_bias", "mlp_fc1_bias"),
                            ("down_bias", "mlp_fc2_bias")):
        settings[field_name] = _setting(config, path, key, bool, False)
    head_dim = _head_dim(config, path, ("hidden_size", "n_embd"), ("num_attention_heads", "n_head"))
    theta = _setting(config, path, ("rope_theta", "rotary_emb_base"), float, 1000.0)
    settings.update(_rope_settings(config, path, theta, head_dim, config.get("rope_parameters")))
    return settings


# The rotary families' common config keys (ModernBERT names a few of them its own way).
_ROTARY_CONFIG: dict[str, Setting] = {**_BERT_CONFIG, "positions_after_padding_idx": False}
_GTE_NAMES = {
    "embeddings.word": "embeddings.word_embeddings.weight",
    "embeddings.token_type": "embeddings.token_type_embeddings.weight",
    "embeddings.ln": "embeddings.LayerNorm",
    "attn.q": Part("encoder.layer.{i}.attention.qkv_proj", 0, 3),
    "attn.k": Part("encoder.layer.{i}.attention.qkv_proj", 1, 3),
    "attn.v": Part("encoder.layer.{i}.attention.qkv_proj", 2, 3),
    "attn.out": "encoder.layer.{i}.attention.o_proj",
    "ln_attn": "encoder.layer.{i}.attn_ln",
    # up_gate_proj: the up projection's rows, then the gate's
    "ffn.up": Part("encoder.layer.{i}.mlp.up_gate_proj", 0, 2),
    "ffn.gate": Part("encoder.layer.{i}.mlp.up_gate_proj", 1, 2),
    "ffn.down": "encoder.layer.{i}.mlp.down_proj",
    "ln_ffn": "encoder.layer.{i}.mlp_ln",
}
_GTE = Family(
    config={**_ROTARY_CONFIG, "type_vocab_size": ("type_vocab_size", 1),
            "pad_token_id": ("pad_token_id", 1), "max_position_embeddings":
            ("max_position_embeddings", 8192), "up_bias": False},
    names=_GTE_NAMES, prefixes=("new.",), read=_read_gte,
    blocks=Blocks(positions="rotary", feed_forward="gated"),
    tokenizer="XLMRobertaTokenizer", tokenizer_files=("tokenizer.json",))

# ModernBertForSequenceClassification (gte-reranker-modernbert-base): the first token or the
# mean of the real tokens, then ModernBertPredictionHead (dense, its own activation, a norm
# without a shift unless norm_bias), then `classifier`.
_MODERNBERT_HEAD = ClassifierHead(
    names={"dense": "head.dense", "norm": "head.norm", "out": "classifier"},
    config={"pooling": ("classifier_pooling", "cls"),
            "activation": ("classifier_activation", "gelu"),
            "norm": True, "norm_eps": ("norm_eps", 1e-5),
            "dense_bias": ("classifier_bias", False), "norm_bias": ("norm_bias", False)})

FAMILIES.update({
    # answerdotai/ModernBERT and its embedders (gte-modernbert, modernbert-embed, ruri-v3)
    "modernbert": Family(
        config={**_ROTARY_CONFIG,
                "type_vocab_size": 0,
                "max_position_embeddings": ("max_position_embeddings", 8192),
                "layer_norm_eps": ("norm_eps", 1e-5),
                "hidden_act": ("hidden_activation", "gelu"),
                "pad_token_id": ("pad_token_id", 50283),
                "norm_bias": ("norm_bias", False), "attention_bias": ("attention_bias", False),
                "up_bias": ("mlp_bias", False), "down_bias": ("mlp_bias", False)},
        names={
            "embeddings.word": "embeddings.tok_embeddings.weight",
            "embeddings.ln": "embeddings.norm",
            "attn.q": Part("layers.{i}.attn.Wqkv", 0, 3),
            "attn.k": Part("layers.{i}.attn.Wqkv", 1, 3),
            "attn.v": Part("layers.{i}.attn.Wqkv", 2, 3),
            "attn.out": "layers.{i}.attn.Wo",
            "ln_attn": "layers.{i}.attn_norm",
            # Wi: the activated half's rows (ModernBERT calls it "input"), then the gate's
            # (which multiplies): in this tree's terms, gate then up
            "ffn.gate": Part("layers.{i}.mlp.Wi", 0, 2),
            "ffn.up": Part("layers.{i}.mlp.Wi", 1, 2),
            "ffn.down": "layers.{i}.mlp.Wo",
            "ln_ffn": "layers.{i}.mlp_norm",
            "final_norm": "final_norm",
        },
        prefixes=("model.",), read=_read_modernbert,
        ignored=(*COMMON_IGNORED, r"^head\.", r"^decoder\."),  # the masked-LM head
        head=_MODERNBERT_HEAD,
        blocks=Blocks(norm_placement="pre", positions="rotary", feed_forward="gated",
                      first_attention_norm=False),
        tokenizer="PreTrainedTokenizerFast", tokenizer_files=("tokenizer.json",)),
    # Alibaba-NLP's GTE (gte-multilingual-base; Snowflake's arctic-embed-m-v2.0): the remote
    # code's model_type "new", and "gte", which transformers 5 reads natively
    "new": _GTE,
    "gte": _GTE,
    # nomic-ai/nomic-embed-text-v1 and v1.5
    "nomic_bert": Family(
        config={**_ROTARY_CONFIG,
                "hidden_size": (("hidden_size", "n_embd"), REQUIRED),
                "num_layers": (("num_hidden_layers", "n_layer"), REQUIRED),
                "num_heads": (("num_attention_heads", "n_head"), REQUIRED),
                "intermediate_size": (("intermediate_size", "n_inner"), REQUIRED),
                "max_position_embeddings": (("max_position_embeddings", "n_positions"), 2048),
                "layer_norm_eps": (("layer_norm_eps", "layer_norm_epsilon"), 1e-12),
                "hidden_act": (("hidden_act", "activation_function"), "silu")},
        names={
            "embeddings.word": "embeddings.word_embeddings.weight",
            "embeddings.token_type": "embeddings.token_type_embeddings.weight",
            "embeddings.ln": "emb_ln",
            "attn.q": Part("encoder.layers.{i}.attn.Wqkv", 0, 3),
            "attn.k": Part("encoder.layers.{i}.attn.Wqkv", 1, 3),
            "attn.v": Part("encoder.layers.{i}.attn.Wqkv", 2, 3),
            "attn.out": "encoder.layers.{i}.attn.out_proj",
            "ln_attn": "encoder.layers.{i}.norm1",
            "ffn.up": "encoder.layers.{i}.mlp.fc11",  # multiplies
            "ffn.gate": "encoder.layers.{i}.mlp.fc12",  # activated
            "ffn.down": "encoder.layers.{i}.mlp.fc2",
            "ln_ffn": "encoder.layers.{i}.norm2",
        },
        prefixes=("nomic_bert.",), read=_read_nomic_bert,
        blocks=Blocks(positions="rotary", feed_forward="gated")),
})


# ---------------------------------------------------------------------------- decoder embedders
# Qwen3-Embedding (Qwen3) and EmbeddingGemma (Gemma 3): language-model blocks used as sentence
# encoders (Blocks.layer "decoder"). Every norm is RMSNorm without a bias, no projection has a
# bias, positions are rotary; their heads, windows and rotary bases come from `_read_decoder`.

# Defaults of transformers' Qwen3Config and Gemma3TextConfig, for keys a config.json leaves out.
_DECODER_DEFAULTS = {
    "qwen3": {"rope_theta": 10000.0, "sliding_window": 4096},
    "gemma3_text": {"rope_theta": 1_000_000.0, "rope_local_base_freq": 10_000.0,
                    "sliding_window": 4096, "query_pre_attn_scalar": 256, "head_dim": 256},
}


def _decoder_rope_thetas(config: dict, path: Path, model_type: str) -> tuple[float, float]:
    """Rotary bases (full layers, sliding layers), from either form transformers writes:
    `rope_parameters` (5.x; Gemma: one entry per layer kind) or `rope_theta` and Gemma's
    `rope_local_base_freq` (4.x, as the released checkpoints have them)."""
    defaults = _DECODER_DEFAULTS[model_type]
    params = config.get("rope_parameters") or {}
    if not isinstance(params, dict):
        raise ConfigError(f"{path}: rope_parameters is {json.dumps(params)}; it should be an "
                          "object. Fix the file, or download it again.")
    per_kind = params if "full_attention" in params or "sliding_attention" in params else \
        {"full_attention": params, "sliding_attention": params if model_type == "qwen3" else {}}
    scaling = config.get("rope_scaling")
    thetas = []
    for kind, key in (("full_attention", "rope_theta"),
                      ("sliding_attention", "rope_local_base_freq")):
        entry = per_kind.get(kind) or {}
        if not isinstance(entry, dict):
            raise ConfigError(f"{path}: rope_parameters' {kind} is {json.dumps(entry)}; it "
                              "should be an object. Fix the file, or download it again.")
        rope_type = entry.get("rope_type", entry.get("type", "default"))
        if rope_type != "default" or (scaling and kind == "full_attention"):
            _refuse(path, f"rotary scaling {json.dumps(scaling or entry)} (minisbert runs the "
                          "default rotary positions of decoder embedders)")
        if "rope_theta" in entry:
            theta = entry["rope_theta"]
        else:
            theta_key = key if model_type == "gemma3_text" else "rope_theta"
            theta = _setting(config, path, theta_key, float, defaults[theta_key])
        if isinstance(theta, bool) or not isinstance(theta, (int, float)) or theta <= 0:
            raise ConfigError(f"{path}: the rotary base of {kind} layers is {theta!r}; it must "
                              "be a positive number. Fix the file, or download it again.")
        thetas.append(float(theta))
    return thetas[0], thetas[1]


def _read_decoder(config: dict, path: Path) -> dict:
    """Qwen3's or Gemma 3's heads (query, key/value, width), layer kinds and window, rotary
    bases, attention and embedding scales, and (Gemma) bidirectional attention."""
    model_type = config["model_type"]
    defaults = _DECODER_DEFAULTS[model_type]
    gemma = model_type == "gemma3_text"

    def whole(key: str, default=REQUIRED) -> int:
        value = _setting(config, path, key, int, defaults.get(key, default))
        if value < 1:
            raise ConfigError(f"{path}: {key!r} is {value}; it must be at least 1. Fix the "
                              "file, or download it again.")
        return value

    d, layers = whole("hidden_size"), whole("num_hidden_layers")
    heads = whole("num_attention_heads")
    head_dim = whole("head_dim", d // heads)
    # Qwen3 ignores its sliding_window unless use_sliding_window is set
    if head_dim % 2:
        raise ConfigError(f"{path}: head_dim {head_dim} is odd; rotary positions need an even "
                          "one. Fix the file, or download it again.")
    window = whole("sliding_window") if gemma or config.get("use_sliding_window") else None
    kinds = config.get("layer_types")
    if kinds is None:  # transformers' rule when config.json does not list them
        if gemma:
            every = whole("sliding_window_pattern", 6)
            kinds = ["full_attention" if (i + 1) % every == 0 else "sliding_attention"
                     for i in range(layers)]
        else:
            first = _setting(config, path, "max_window_layers", int, 28)
            kinds = ["sliding_attention" if window is not None and i >= first else
                     "full_attention" for i in range(layers)]
    if not (isinstance(kinds, list) and len(kinds) == layers
            and set(kinds) <= {"full_attention", "sliding_attention"}):
        raise ConfigError(f"{path}: layer_types should list 'full_attention' or "
                          f"'sliding_attention' for each of the {layers} layers; it is "
                          f"{json.dumps(kinds)}. Fix the file, or download it again.")
    causal = not (gemma and _setting(config, path, "use_bidirectional_attention", bool, False))
    if gemma and config.get("attn_logit_softcapping") is not None:
        _refuse(path, "attn_logit_softcapping (soft-capped attention scores)")
    if config.get("attention_bias"):
        _refuse(path, "attention_bias true (Qwen3 and Gemma 3 run without attention biases)")
    full_theta, sliding_theta = _decoder_rope_thetas(config, path, model_type)
    settings = {
        "num_kv_heads": whole("num_key_value_heads", heads), "head_size": head_dim,
        # a local layer's reach: a causal window of w tokens (config.json's sliding_window)
        # holds the query and the w - 1 before it (transformers: key > query - w); Gemma's
        # bidirectional window sees w // 2 tokens on each side (transformers halves the window
        # to w // 2 + 1 and keeps the keys closer than that)
        "layer_kinds": tuple("local" if k == "sliding_attention" else "global" for k in kinds),
        "window": 0 if window is None else window - 1 if causal else window // 2,
        "rope_theta": full_theta,
        "local_rope_theta": sliding_theta if sliding_theta != full_theta else 0.0,
    }
    if gemma:
        settings.update(
            attention_scale=_setting(config, path, "query_pre_attn_scalar", float,
                                     defaults["query_pre_attn_scalar"]) ** -0.5,
            # √d rounded to float32, as transformers casts it to the weights' dtype (a model
            # run in bfloat16 would round it further, to 27.75 for d = 768)
            embedding_scale=float(np.float32(d ** 0.5)), norm_offset=1.0)
        if not causal:
            settings["blocks"] = replace(FAMILIES[model_type].blocks, attention="bidirectional")
    return settings


_DECODER_BLOCKS = Blocks(norm="rms", norm_placement="pre", positions="rotary",
                         attention="causal", feed_forward="gated", layer="decoder")
_DECODER_CONFIG: dict[str, Setting] = {
    "hidden_size": ("hidden_size", REQUIRED),
    "num_layers": ("num_hidden_layers", REQUIRED),
    "num_heads": ("num_attention_heads", REQUIRED),
    "intermediate_size": ("intermediate_size", REQUIRED),
    "vocab_size": ("vocab_size", REQUIRED),
    "type_vocab_size": 0, "pad_token_id": 0,  # no token types; padding is never looked up
    "positions_after_padding_idx": False,
    "layer_norm_eps": ("rms_norm_eps", 1e-6),
    "norm_bias": False, "attention_bias": False, "up_bias": False, "down_bias": False,
}
# Qwen3Model / Gemma3TextModel as save_pretrained writes them (a sentence-transformers folder);
# their ForCausalLM checkpoints put "model." first. Beware the one name that means two things:
# Qwen3's post_attention_layernorm normalizes the feed-forward's INPUT, Gemma's normalizes the
# attention's OUTPUT (its feed-forward input is pre_feedforward_layernorm).
_DECODER_NAMES = {
    "embeddings.word": "embed_tokens.weight",
    "ln_attn": "layers.{i}.input_layernorm",
    "attn.q": "layers.{i}.self_attn.q_proj",
    "attn.k": "layers.{i}.self_attn.k_proj",
    "attn.v": "layers.{i}.self_attn.v_proj",
    "attn.out": "layers.{i}.self_attn.o_proj",
    "attn.q_norm": "layers.{i}.self_attn.q_norm",
    "attn.k_norm": "layers.{i}.self_attn.k_norm",
    "ffn.gate": "layers.{i}.mlp.gate_proj",
    "ffn.up": "layers.{i}.mlp.up_proj",
    "ffn.down": "layers.{i}.mlp.down_proj",
    "final_norm": "norm",
}
_DECODER_IGNORED = (*COMMON_IGNORED, r"(^|\.)rotary_emb\.")  # the LM head, rotary buffers

FAMILIES.update({
    # Qwen/Qwen3-Embedding-0.6B (and 4B, 8B): causal attention, pooled at its last token (the
    # end-of-text token its tokenizer appends)
    "qwen3": Family(
        config={**_DECODER_CONFIG,
                "max_position_embeddings": ("max_position_embeddings", 32768),
                "hidden_act": ("hidden_act", "silu")},
        names={**_DECODER_NAMES, "ln_ffn": "layers.{i}.post_attention_layernorm"},
        prefixes=("model.",), ignored=_DECODER_IGNORED, blocks=_DECODER_BLOCKS,
        read=_read_decoder, pooling=("lasttoken",),
        tokenizer="PreTrainedTokenizerFast", tokenizer_files=("tokenizer.json",)),
    # google/embeddinggemma-300m: Gemma 3 with use_bidirectional_attention (its `read` makes
    # the attention bidirectional), the sublayers' outputs normalized, mean pooling
    "gemma3_text": Family(
        config={**_DECODER_CONFIG,
                "max_position_embeddings": ("max_position_embeddings", 131_072),
                "hidden_act": ("hidden_activation", "gelu_pytorch_tanh")},
        names={**_DECODER_NAMES,
               "ln_attn_out": "layers.{i}.post_attention_layernorm",
               "ln_ffn": "layers.{i}.pre_feedforward_layernorm",
               "ln_ffn_out": "layers.{i}.post_feedforward_layernorm"},
        prefixes=("model.",), ignored=_DECODER_IGNORED,
        blocks=replace(_DECODER_BLOCKS, output_norms=True),
        read=_read_decoder,
        tokenizer="PreTrainedTokenizerFast", tokenizer_files=("tokenizer.json",)),
})


def tokenizer_file_sets() -> list[tuple[str, ...]]:
    """The sets of files a tokenizer can be built from, one per front end, in FAMILIES order."""
    return list(dict.fromkeys(f.tokenizer_files for f in FAMILIES.values()))


# ---------------------------------------------------------------------------- config.json

_JSON_TYPES = {int: "a whole number", float: "a number", str: "a string", bool: "true or false"}
# The kind of value each setting read from config.json holds; every other one is a whole number.
_KINDS = {"layer_norm_eps": float, "hidden_act": str, "sinusoidal_positions": bool,
          "norm_bias": bool, "attention_bias": bool, "up_bias": bool, "down_bias": bool,
          "rope_theta": float}
_LEAST = {"pad_token_id": 0}  # the smallest value a setting may have; 1 for the other numbers


def _setting(config: dict, path: Path, key: str | tuple[str, ...], kind: type,
             default=REQUIRED):
    """config[key], checked to be a `kind` (float accepts whole numbers too); a key that is
    absent or null gives `default`, or is a ConfigError when there is none. A tuple of keys:
    the first one the file has."""
    if isinstance(key, tuple):
        key = next((k for k in key if config.get(k) is not None), key[0])
    value = config.get(key)
    if value is None:
        if default is REQUIRED:
            raise ConfigError(f"{path} has no {key!r}; it is incomplete, download it again.")
        return default
    accepted = (int, float) if kind is float else kind
    # JSON true is no number, although Python's True is an int.
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, accepted):
        raise ConfigError(f"{path}: {key!r} is {json.dumps(value)[:80]}; it must be "
                          f"{_JSON_TYPES[kind]}. Fix the file, or download it again.")
    return float(value) if kind is float else value


def _present(config: dict, key: str | tuple[str, ...]) -> str:
    """The key a setting was read from (of a tuple of keys, the first the file has)."""
    if isinstance(key, tuple):
        return next((k for k in key if config.get(k) is not None), key[0])
    return key


def family_of(config: dict, path: Path) -> Family:
    """The Family of a parsed config.json (at `path`), by its model_type."""
    model_type = _setting(config, path, "model_type", str, default=None)
    if model_type not in FAMILIES:
        archs = ", ".join(map(str, config.get("architectures") or [])) or "none"
        raise UnsupportedModelError(
            f"{path}: model_type {model_type!r} (architectures: {archs}) is not supported; "
            f"minisbert runs {', '.join(FAMILIES)} encoders.")
    return FAMILIES[model_type]


def encoder_config(config: dict, path: Path) -> EncoderConfig:
    """The encoder's settings from config.json (at `path`), each checked for its type, read
    as the Family of the file's model_type says."""
    family = family_of(config, path)
    positions = _setting(config, path, "position_embedding_type", str, default="absolute")
    if family.blocks.positions == "absolute" and positions != "absolute":
        raise UnsupportedModelError(f"{path}: position_embedding_type {positions!r} is not "
                                    "supported; minisbert implements absolute positions only "
                                    f"for {config['model_type']} models.")
    settings = {"architecture": config["model_type"], "blocks": family.blocks}
    for name, source in family.config.items():
        if not isinstance(source, tuple):  # fixed by the family
            settings[name] = source
            continue
        key, default = source
        kind = _KINDS.get(name, int)
        value = settings[name] = _setting(config, path, key, kind, default)
        least = _LEAST.get(name, 1)
        # JSON as Python reads it allows NaN, Infinity and 1e309 (= inf): a norm's eps of
        # those, or below 0, would make every vector NaN without a word.
        if kind is float and not (math.isfinite(value) and value >= 0):
            raise ConfigError(f"{path}: {key!r} is {value}; it must be a finite number, 0 or "
                              "more (BERT's is 1e-12). Fix the file, or download it again.")
        if kind is int and value < least:
            raise ConfigError(f"{path}: {key!r} is {value}; it must be at least {least}. Fix the "
                              "file, or download it again.")
    if family.read is not None:
        settings.update(family.read(config, path))
    cfg = EncoderConfig(**settings)

    keys = {name: _present(config, source[0]) for name, source in family.config.items()
            if isinstance(source, tuple)}  # for the messages below
    if cfg.hidden_act not in ACTIVATIONS:
        raise UnsupportedModelError(f"{path}: {keys['hidden_act']} {cfg.hidden_act!r} is not "
                                    f"supported; minisbert implements {', '.join(ACTIVATIONS)}.")
    if not cfg.head_size and cfg.hidden_size % cfg.num_heads:
        raise UnsupportedModelError(f"{path}: {keys['hidden_size']} {cfg.hidden_size} does not "
                                    f"divide into {cfg.num_heads} attention heads.")
    if cfg.num_heads % cfg.kv_heads:
        raise UnsupportedModelError(f"{path}: {cfg.num_heads} attention heads do not split into "
                                    f"groups for {cfg.kv_heads} key/value heads.")
    if 0 < cfg.relative_attention_buckets < 32:
        raise UnsupportedModelError(
            f"{path}: relative_attention_num_buckets is {cfg.relative_attention_buckets}, but "
            "MPNet always looks up 32 relative position buckets, so the table needs at least 32.")
    return cfg


# ---------------------------------------------------------------------------- the head

def is_sequence_classifier(config: dict) -> bool:
    """Does config.json describe a `*ForSequenceClassification` model (a cross-encoder)?"""
    archs = config.get("architectures") or []
    return bool(archs) and isinstance(archs[0], str) and \
        archs[0].endswith("ForSequenceClassification")


def head_config(config: dict, path: Path) -> HeadConfig:
    """The classification head's settings from config.json (at `path`), read as the head of
    the file's family says; refused if the family has no head minisbert runs."""
    family = family_of(config, path)
    if family.head is None:
        runs = ", ".join(name for name, f in FAMILIES.items() if f.head is not None)
        raise UnsupportedModelError(
            f"{path}: minisbert runs no sequence-classification head for model_type "
            f"{config['model_type']!r}; cross-encoders run for {runs}.")
    # transformers counts the labels by id2label (saved with every config); num_labels is
    # what older files hold; 2 is PretrainedConfig's default.
    id2label = config.get("id2label")
    if id2label is not None and not isinstance(id2label, dict):
        raise ConfigError(f"{path}: 'id2label' is {json.dumps(id2label)}; it must map label "
                          "numbers to names. Fix the file, or download it again.")
    num_labels = len(id2label) if id2label else _setting(config, path, "num_labels", int, 2)
    if num_labels < 1:
        raise ConfigError(f"{path}: the model has no labels; a cross-encoder needs at least one.")
    settings = {"num_labels": num_labels}
    for name, source in family.head.config.items():
        if not isinstance(source, tuple):
            settings[name] = source
            continue
        kind = type(HeadConfig.__dataclass_fields__[name].default)
        settings[name] = _setting(config, path, source[0], kind, source[1])
    head = HeadConfig(**settings)
    if head.pooling not in ("cls", "mean"):
        raise UnsupportedModelError(f"{path}: classifier pooling {head.pooling!r} is not "
                                    "supported; minisbert implements cls and mean.")
    if head.activation not in ACTIVATIONS:
        raise UnsupportedModelError(f"{path}: classifier activation {head.activation!r} is not "
                                    f"supported; minisbert implements {', '.join(ACTIVATIONS)}.")
    return head
