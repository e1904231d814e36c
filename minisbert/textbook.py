"""The transformer encoder (BERT, XLM-R, RoBERTa, MPNet, DistilBERT, ModernBERT, GTE,
NomicBERT) in textbook form: the maths, plainly.

A batch of texts is `ids` and `mask`, both [b, s] (texts × positions, padded to the longest
text, mask 1 for real tokens). Every layer works on the whole padded grid x: [b, s, d], and
the mask keeps padding out of attention. Each function is one step of the paper, named after
it, with a shape comment on every line that changes a shape. The parameter tree is the one
`checkpoint.load_params` builds, with keys equal to the argument names, so the tree is the
call graph: `encoder_layer(x, attention_bias, **params["layers"][i], cfg=cfg)`.

The families differ only in data (families.py): LayerNorm eps, the activation, where positions
start (`position_ids`), whether the tree has a token-type table (MPNet and DistilBERT have
none), which block each step of a layer uses (`cfg.blocks`), and MPNet's relative position
bias, a learned [buckets, heads] table: the scores of every layer get, for each head, a number
that depends on how far, and in which direction, the key is from the query
(`relative_position_bias`). It goes into the same attention bias as the mask. ModernBERT, GTE
and NomicBERT bring four more blocks, each a section at the end of this file: rotary positions
(q and k turned by their position, instead of a position table), local windows (ModernBERT's
local layers: a bias of -inf on keys farther than the window), the gated feed-forward, and the
pre-LN `residual` (ModernBERT).

The decoder embedders (Qwen3, Gemma 3) are the last section: their layer, `decoder_layer`,
says each difference from BERT's as one function (RMSNorm, q/k norms, grouped key/value heads,
the causal rule as data); `encode_tokens` hands them to `decode_tokens`.

This file needs nothing from the rest of minisbert but `EncoderConfig`. `encoder.py` is the
fast form of the same function and takes the steps it does not speed up (position numbering,
MPNet's buckets) from here: it packs the real tokens together instead of padding them, groups
texts of equal length instead of masking, and computes GELU and softmax in place in
cache-sized blocks. tests/test_textbook.py holds the two equal. Read this file to learn the
model; run that one.

A cross-encoder (reranker) reads a pair of texts as one sequence, its second text marked by
token type 1 in BERT (`type_ids`), and ends in a classification head instead of pooling
(`classifier_head`, `classify`): the first token's vector (or, in ModernBERT's, the mean of
the pair's tokens), a dense layer with tanh (BERT's "pooler"; ModernBERT's GELU, then a
norm), then a linear layer to one score per label.

Left out, as in encoder.py: dropout (inference only), relative position embeddings other than
MPNet's bias, and any training code. Also left out on purpose: every speed technique. A padded position gets a vector
computed like any other, which nothing uses; it is set to zero at the end, as encoder.py
returns it.
"""

from __future__ import annotations

import math

import numpy as np

from .families import EncoderConfig, HeadConfig

# ---------------------------------------------------------------------------- activations

_erf = np.frompyfunc(math.erf, 1, 1)  # math.erf on each element (of a float64 array)


def gelu(x: np.ndarray) -> np.ndarray:
    """Exact GELU, x·Φ(x) with Φ(x) = (1 + erf(x/√2))/2, the standard normal CDF: BERT's and
    XLM-R's "gelu". In float64, so that 1 + erf(x/√2), near 0 for negative x, keeps its digits."""
    x64 = x.astype(np.float64)
    return (x64 * (1 + _erf(x64 / math.sqrt(2)).astype(np.float64)) / 2).astype(x.dtype)


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1 + np.tanh(np.float32(math.sqrt(2 / math.pi)) * (x + 0.044715 * x**3)))


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.tanh(0.5 * x))  # = 1/(1 + e^-x), without overflowing e^-x


def quick_gelu(x: np.ndarray) -> np.ndarray:
    return x * sigmoid(1.702 * x)


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0)


def silu(x: np.ndarray) -> np.ndarray:
    return x * sigmoid(x)


# The plain form of each activation in activations.ACTIVATIONS, the table the runtime uses
# (tests/test_textbook.py checks that both name the same functions).
ACTIVATIONS = {"gelu": gelu, "gelu_new": gelu_tanh, "gelu_pytorch_tanh": gelu_tanh,
               "gelu_fast": gelu_tanh, "quick_gelu": quick_gelu, "relu": relu,
               "silu": silu, "swish": silu, "sigmoid": sigmoid, "tanh": np.tanh,
               "linear": lambda x: x}

# ---------------------------------------------------------------------------- positions


def position_ids(ids: np.ndarray, cfg: EncoderConfig) -> np.ndarray:
    """Row of the position table for each place of the grid: [b, s] -> [b, s]."""
    if cfg.positions_after_padding_idx:
        # fairseq/XLM-R: tokens count up from pad_token_id + 1 and padding sits at pad_token_id.
        # "Padding" means the pad id, not the attention mask: a literal "<pad>" typed in the
        # text gets the padding position too, as in HuggingFace.
        m = (ids != cfg.pad_token_id).astype(np.int64)
        return np.cumsum(m, axis=1) * m + cfg.pad_token_id
    return np.broadcast_to(np.arange(ids.shape[1]), ids.shape)


def relative_position_buckets(length: int, num_buckets: int = 32,
                              max_distance: int = 128) -> np.ndarray:
    """T5's bidirectional buckets of the distance between query and key, as MPNet uses them:
    [length, length] bucket index for each (query, key) of a text of `length` tokens.

    Half the buckets are for keys before the query, half for keys after it. Within each half,
    the first num_buckets / 4 distances (0..7 for 32 buckets) get a bucket each; longer ones share
    logarithmically wider buckets up to `max_distance`, and everything beyond falls in the last.
    """
    pos = np.arange(length)
    n = pos[:, None] - pos[None, :]  # [q, k]: query position - key position
    half = num_buckets // 2
    bucket = np.where(n < 0, half, 0)  # keys after the query use the upper half
    n = np.abs(n)
    exact = half // 2
    # The arithmetic of the reference: the log in float32, then truncation toward zero. A
    # distance whose scaled log is a whole number in exact arithmetic (16, 32, 64 for 32
    # buckets) sits on a bucket edge, where another rounding could cross it.
    log_ratio = np.log(np.maximum(n, exact).astype(np.float32) / np.float32(exact))
    scaled = log_ratio / np.float32(math.log(max_distance / exact)) * np.float32(half - exact)
    large = np.minimum(exact + scaled.astype(np.int64), half - 1)
    return bucket + np.where(n < exact, n, large)  # [q, k]


def relative_position_bias(table: np.ndarray, length: int) -> np.ndarray:
    """The bias MPNet adds to every layer's attention scores, [heads, q, k], looked up in the
    learned table, [buckets, heads], by each (query, key)'s bucket. The reference always makes
    32 buckets, whatever its config's relative_attention_num_buckets (the table's rows) says."""
    return table[relative_position_buckets(length)].transpose(2, 0, 1)  # [q, k, h] -> [h, q, k]


# ---------------------------------------------------------------------------- layers


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))  # minus the max: exp() cannot overflow
    return e / e.sum(axis=-1, keepdims=True)


def layer_norm(x: np.ndarray, g: np.ndarray, b: np.ndarray | None, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)  # [..., d] -> [..., 1]
    var = np.var(x, axis=-1, keepdims=True)  # [..., d] -> [..., 1], biased, as torch's LayerNorm
    y = g * (x - mean) / np.sqrt(var + eps)
    return y if b is None else y + b  # ModernBERT's norms have no bias


def linear(x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    y = x @ w  # [..., in] @ [in, out] -> [..., out]
    return y if b is None else y + b  # no bias in ModernBERT, NomicBERT, GTE's gated pair


def attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """softmax(q·kᵀ/√hd + bias)·v; q, k, v: [b, h, s, hd], bias: [b, 1, 1, s] (the mask) or,
    with MPNet's relative position bias in it, [b, h, s, s]."""
    scores = q @ k.swapaxes(-1, -2) / np.float32(math.sqrt(q.shape[-1]))  # -> [b, h, s, s]
    return softmax(scores + bias) @ v  # [b, h, s, s] @ [b, h, s, hd] -> [b, h, s, hd]


def multi_head_attention(x: np.ndarray, attention_bias: np.ndarray, q: dict, k: dict, v: dict,
                         out: dict, num_heads: int,
                         rotary: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """rotary: (cos, sin) [s, hd] of each position (rotary_embedding), or None."""
    b, s, d = x.shape

    def split_heads(t):  # [b, s, d] -> [b, s, h, hd] -> [b, h, s, hd]
        return t.reshape(b, s, num_heads, d // num_heads).transpose(0, 2, 1, 3)

    q_, k_ = split_heads(linear(x, **q)), split_heads(linear(x, **k))  # [b, h, s, hd] each
    if rotary is not None:  # rotary families: q and k turned by their positions
        q_, k_ = apply_rotary(q_, *rotary), apply_rotary(k_, *rotary)
    heads = attention(q_, k_, split_heads(linear(x, **v)), attention_bias)  # [b, h, s, hd]
    merged = heads.transpose(0, 2, 1, 3).reshape(b, s, d)  # -> [b, s, h, hd] -> [b, s, d]
    return linear(merged, **out)  # [b, s, d] -> [b, s, d]


def feed_forward(x: np.ndarray, up: dict, down: dict, act) -> np.ndarray:
    return linear(act(linear(x, **up)), **down)  # [b, s, d] -> [b, s, 4d] -> [b, s, d]


# ---------------------------------------------------------------------------- gated feed-forward


def gated_feed_forward(x: np.ndarray, gate: dict, up: dict, down: dict, act) -> np.ndarray:
    """A GLU (Shazeer, "GLU Variants Improve Transformer"): down(act(gate x) · up x). GELU
    makes it GeGLU (ModernBERT, GTE), SiLU SwiGLU (NomicBERT)."""
    return linear(act(linear(x, **gate)) * linear(x, **up), **down)  # [b, s, d] -> [b, s, ff] -> [b, s, d]


def rms_norm(x: np.ndarray, g: np.ndarray, b: np.ndarray | None, eps: float,
             offset: float = 0.0) -> np.ndarray:
    """RMSNorm (the decoder embedders): x / √(mean(x²) + eps) · (offset + g) over the last
    axis; no mean subtracted, no shift (b is always None). Qwen3: offset 0; Gemma stores its
    scales centred on 0 and multiplies by (1 + g)."""
    rms = np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + np.float32(eps))  # [..., d] -> [..., 1]
    return x / rms * (np.float32(offset) + g)


# Each family names one function per step of a layer (families.Blocks); these tables hold them.
NORMS = {"layer": layer_norm, "rms": rms_norm}
FEED_FORWARDS = {"plain": feed_forward, "gated": gated_feed_forward}


def residual(x: np.ndarray, sublayer, norm: dict | None, cfg: EncoderConfig) -> np.ndarray:
    """x plus sublayer(x), with the norm where the family puts it: "post" (BERT's order) adds
    the sublayer's output to x, then normalizes the sum; "pre" (ModernBERT) normalizes the
    sublayer's input and adds its output to x as it is, so the sum is never normalized until
    the final norm. norm None: no norm at all (ModernBERT's first attention, whose input the
    embedding norm has just normalized)."""
    normalize = NORMS[cfg.blocks.norm]
    if cfg.blocks.norm_placement == "pre":
        h = x if norm is None else normalize(x, **norm, eps=cfg.layer_norm_eps)
        return x + sublayer(h)  # [b, s, d]
    if cfg.blocks.norm_placement != "post":
        raise ValueError(f"norm_placement {cfg.blocks.norm_placement!r} is not implemented")
    return normalize(x + sublayer(x), **norm, eps=cfg.layer_norm_eps)  # [b, s, d]


def encoder_layer(x: np.ndarray, attention_bias: np.ndarray, attn: dict, ln_attn: dict | None,
                  ffn: dict, ln_ffn: dict, cfg: EncoderConfig,
                  rotary: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """One transformer block: self-attention, then the feed-forward, each added to its input
    with a norm (`residual`), each the block cfg.blocks names."""
    feed, act = FEED_FORWARDS[cfg.blocks.feed_forward], ACTIVATIONS[cfg.hidden_act]
    x = residual(x, lambda h: multi_head_attention(h, attention_bias, **attn,
                                                   num_heads=cfg.num_heads, rotary=rotary),
                 ln_attn, cfg)
    return residual(x, lambda h: feed(h, **ffn, act=act), ln_ffn, cfg)


def embed(ids: np.ndarray, word: np.ndarray, ln: dict, cfg: EncoderConfig,
          position: np.ndarray | None = None, token_type: np.ndarray | None = None,
          type_ids: np.ndarray | None = None) -> np.ndarray:
    """word + position (+ token type), normalized. Positions: BERT and DistilBERT 0..s-1;
    XLM-R, RoBERTa and MPNet count from pad_token_id + 1 (see position_ids); rotary families
    have no position table (their positions enter attention). Token types: type_ids [b, s],
    or every token type 0 (single sentences) when None."""
    x = word[ids]  # [b, s] -> [b, s, d]
    if position is not None:
        x = x + position[position_ids(ids, cfg)]  # [b, s, d]
    if token_type is not None:  # MPNet, DistilBERT and ModernBERT have no token types
        types = np.zeros_like(ids) if type_ids is None else type_ids
        x = x + token_type[types]  # [b, s] -> [b, s, d]
    return NORMS[cfg.blocks.norm](x, **ln, eps=cfg.layer_norm_eps)


def encode_tokens(ids: np.ndarray, mask: np.ndarray, params: dict, cfg: EncoderConfig,
                  type_ids: np.ndarray | None = None) -> np.ndarray:
    """Token ids [b, s] and mask [b, s] (type ids [b, s]: None for all 0) -> token vectors
    [b, s, d] (zeros at padded places)."""
    if cfg.blocks.layer == "decoder":  # Qwen3, Gemma 3: see the last section
        return decode_tokens(ids, mask, params, cfg)
    # The mask as a bias added to every score: 0 for a real key, the most negative float32
    # for a padded one, whose weight after softmax is then exactly 0.
    attention_bias = np.where(mask[:, None, None, :] > 0, np.float32(0),
                              np.finfo(np.float32).min)  # [b, s] -> [b, 1, 1, s]
    if "relative_attention_bias" in params:  # MPNet: the same bias in every layer
        # Added to the mask: exact at real keys (+0), still the most negative at padded ones.
        relative = relative_position_bias(params["relative_attention_bias"], ids.shape[1])
        attention_bias = attention_bias + relative[None]  # + [1, h, s, s] -> [b, h, s, s]
    x = embed(ids, **params["embeddings"], cfg=cfg, type_ids=type_ids)  # [b, s] -> [b, s, d]
    for i, layer in enumerate(params["layers"]):
        bias = attention_bias
        if cfg.layer_window(i):  # a local layer: keys beyond the window are masked too
            bias = attention_bias + window_bias(ids.shape[1], cfg.layer_window(i))  # [b, 1, s, s]
        rotary = None
        if cfg.blocks.positions == "rotary":
            rotary = rotary_embedding(ids.shape[1], cfg.head_dim, cfg.layer_rope_theta(i),
                                      cfg.rope_scale)
        x = encoder_layer(x, bias, **layer, cfg=cfg, rotary=rotary)  # [b, s, d] -> [b, s, d]
    if "final_norm" in params:  # pre-LN families normalize the last block's output
        x = NORMS[cfg.blocks.norm](x, **params["final_norm"], eps=cfg.layer_norm_eps)
    return np.where(mask[..., None] > 0, x, np.float32(0))  # [b, s, d]


# ---------------------------------------------------------------------------- rotary positions
# RoPE (Su et al., RoFormer): no position table; instead, in every layer, each head's query
# and key vectors are turned by angles proportional to their token's position, pair of
# dimensions by pair of dimensions, each pair at its own speed. A turned q·k then depends on
# how far apart the two tokens are, not on where they are. The pairs are (i, i + hd/2), the
# convention of transformers' `rotate_half` (not neighbouring dimensions).


def rotary_frequencies(head_dim: int, theta: float, scale: float = 1.0) -> np.ndarray:
    """RoPE's angular speeds, one per pair of dimensions: 1 / theta^(2i / head_dim) / scale,
    i = 0 .. head_dim/2 - 1, as float32 [head_dim/2].

    The reference computes them in float32; the power here is taken in float64 from the same
    float32 exponents and rounded once, which gives torch's float32 values (to an ulp at
    most on a few of the slowest frequencies, where an ulp moves an angle by < 1e-6 rad).

    `scale` divides every frequency, which is the same as dividing every position by it:
    transformers' "linear" rope scaling. GTE's fixed NTK scaling (Alibaba's code, rope_scaling
    {"type": "ntk", "factor": f}) takes the base theta·f and divides the frequencies by
    f^(2 / head_dim): families.py reads it as theta·f and scale f^(2 / head_dim).
    """
    exponents = np.arange(0, head_dim, 2, dtype=np.float32) / np.float32(head_dim)  # [hd/2]
    inv_freq = np.float32(1) / (theta ** exponents.astype(np.float64)).astype(np.float32)
    if scale != 1.0:
        inv_freq /= np.float32(scale)
    return inv_freq  # [hd/2]


def rotary_tables(positions: np.ndarray, inv_freq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin of each token's angles, position × frequency: [n] -> two [n, hd/2].

    The angle is a float32 product, as in the reference (positions are whole numbers, exact in
    float32 up to 2^24); its cosine and sine are taken in float64 and rounded once.
    """
    angles = positions.astype(np.float32)[:, None] * inv_freq  # [n, 1] * [hd/2] -> [n, hd/2]
    angles = angles.astype(np.float64)
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


def rotary_embedding(s: int, head_dim: int, theta: float,
                     scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin of the angles of positions 0..s-1, [s, hd] each: position p, dimension j
    turns by p · inv_freq[j mod hd/2] (each angle twice, once per member of its pair)."""
    inv_freq = rotary_frequencies(head_dim, theta, scale)  # [hd/2]
    cos, sin = rotary_tables(np.arange(s), inv_freq)  # [s, hd/2] each
    return np.concatenate([cos, cos], axis=-1), np.concatenate([sin, sin], axis=-1)  # [s, hd]


def rotate_half(x: np.ndarray) -> np.ndarray:
    """[a, b] -> [-b, a] on the two halves of the last axis: each pair (a_i, b_i) turned by
    90 degrees."""
    a, b = np.split(x, 2, axis=-1)  # [..., hd] -> 2 x [..., hd/2]
    return np.concatenate([-b, a], axis=-1)  # [..., hd]


def apply_rotary(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """Turn each pair of x [b, h, s, hd] by its position's angle (cos, sin: [s, hd]): the 2-D
    rotation (a, b) -> (a·cos - b·sin, b·cos + a·sin), written with rotate_half."""
    return x * cos + rotate_half(x) * sin  # [b, h, s, hd]


# ---------------------------------------------------------------------------- local windows
# ModernBERT's local layers: a token attends only to the tokens at most `window` positions
# away (local_attention // 2 on each side); every few layers a global one sees the whole text.


def window_allows(query_pos: np.ndarray, key_pos: np.ndarray, window: int) -> np.ndarray:
    """May a query at query_pos read the key at key_pos in a local layer? Yes when they are at
    most `window` positions apart, on either side (ModernBERT: window = local_attention // 2,
    so a token sees 2·window + 1 tokens, itself included)."""
    return np.abs(query_pos - key_pos) <= window


def window_bias(s: int, window: int) -> np.ndarray:
    """[s, s]: 0 where query i may read key j (window_allows), -inf where it may not."""
    pos = np.arange(s)
    allowed = window_allows(pos[:, None], pos[None, :], window)  # [s, s]
    return np.where(allowed, np.float32(0), np.float32(-np.inf))


# ---------------------------------------------------------------------------- cross-encoders


def classifier_head(x: np.ndarray, mask: np.ndarray, dense: dict, out: dict, head: HeadConfig,
                    norm: dict | None = None) -> np.ndarray:
    """A sequence-classification head on token vectors x [b, s, d] (mask [b, s]) -> logits
    [b, labels]: pool, dense, activation (tanh in BERT and XLM-R), the norm where the family
    has one (ModernBERT), then the output layer."""
    if head.pooling == "cls":
        pooled = x[:, 0]  # the first token, [CLS] or <s>: [b, s, d] -> [b, d]
    else:  # "mean": the average of the real tokens
        m = mask[..., None].astype(np.float32)  # [b, s, 1]
        pooled = (x * m).sum(axis=1) / m.sum(axis=1)  # [b, s, d] -> [b, d]
    h = ACTIVATIONS[head.activation](linear(pooled, **dense))  # [b, d] -> [b, d]
    if norm is not None:
        h = layer_norm(h, **norm, eps=head.norm_eps)
    return linear(h, **out)  # [b, d] -> [b, labels]


def classify(ids: np.ndarray, mask: np.ndarray, params: dict, cfg: EncoderConfig,
             head: HeadConfig, type_ids: np.ndarray | None = None) -> np.ndarray:
    """A cross-encoder on b pairs, each one sequence (ids, mask, type ids [b, s]) -> logits
    [b, labels]."""
    x = encode_tokens(ids, mask, params, cfg, type_ids)  # [b, s, d]
    return classifier_head(x, mask, **params["head"], head=head)  # [b, labels]


# ---------------------------------------------------------------------------- decoder embedders
# Qwen3-Embedding and EmbeddingGemma: language-model blocks used as sentence encoders
# (Blocks.layer "decoder"). The same grid x: [b, s, d] and mask as above; what changes, one
# function each:
#   rms_norm                  instead of layer_norm: no mean, no shift (Gemma: scale 1 + g)
#   decoder_layer             pre-norm: x + f(norm(x)), one final norm after the last layer;
#                             Gemma also normalizes each sublayer's output before adding it
#   grouped_query_attention   fewer key/value heads than query heads, each serving a group;
#                             every query and key head RMS-normalized before its rotation
#                             (apply_rotary, above)
#   visibility_bias           causal (Qwen3) or bidirectional (EmbeddingGemma), with or
#                             without a local window (window_allows, above): which keys a
#                             query may see, as data
#   gated_feed_forward        act(x·Wgate) ⊙ (x·Wup), then down (above): SwiGLU, tanh GeGLU
#   embed_scaled              the token vectors alone, times √d in Gemma; no position table


def visibility_bias(mask: np.ndarray, window: int, causal: bool) -> np.ndarray:
    """Which keys each query may see, as the bias added to its scores: [b, s] -> [b, 1, s, s].

    A real key is seen when it is at most `window` positions away (window_allows; 0: any
    distance) and, in a causal model (Qwen3), not after the query. One function for every
    kind of layer: the kinds differ only in these two values (EncoderConfig.layer_window,
    Blocks.attention).
    """
    s = mask.shape[1]
    i, j = np.arange(s)[:, None], np.arange(s)[None, :]  # query, key positions
    visible = np.ones((s, s), dtype=bool)  # [q, k]
    if window:
        visible &= window_allows(i, j, window)
    if causal:
        visible &= j <= i
    visible = visible[None, None] & (mask[:, None, None, :] > 0)  # and not padding: [b, 1, s, s]
    return np.where(visible, np.float32(0), np.finfo(np.float32).min)


def grouped_query_attention(x: np.ndarray, bias: np.ndarray, rotary: tuple[np.ndarray, np.ndarray],
                            q: dict, k: dict, v: dict, out: dict, q_norm: dict, k_norm: dict,
                            cfg: EncoderConfig) -> np.ndarray:
    """Self-attention with kv_heads key/value heads shared by num_heads query heads: query
    head h uses key/value head h // (num_heads / kv_heads). x: [b, s, d] -> [b, s, d];
    rotary: (cos, sin) [s, hd]."""
    b, s, _ = x.shape
    hd = cfg.head_dim

    def split_heads(t):  # [b, s, heads·hd] -> [b, s, heads, hd] -> [b, heads, s, hd]
        return t.reshape(b, s, -1, hd).transpose(0, 2, 1, 3)

    eps, offset = cfg.layer_norm_eps, cfg.norm_offset
    qh = rms_norm(split_heads(linear(x, **q)), **q_norm, eps=eps, offset=offset)  # [b, h, s, hd]
    kh = rms_norm(split_heads(linear(x, **k)), **k_norm, eps=eps, offset=offset)  # [b, kv, s, hd]
    vh = split_heads(linear(x, **v))  # [b, kv, s, hd]
    qh, kh = apply_rotary(qh, *rotary), apply_rotary(kh, *rotary)
    group = cfg.num_heads // cfg.kv_heads
    kh, vh = np.repeat(kh, group, axis=1), np.repeat(vh, group, axis=1)  # [b, kv, s, hd] -> [b, h, s, hd]
    scores = qh @ kh.swapaxes(-1, -2) * np.float32(cfg.scale)  # -> [b, h, s, s]
    heads = softmax(scores + bias) @ vh  # [b, h, s, s] @ [b, h, s, hd] -> [b, h, s, hd]
    merged = heads.transpose(0, 2, 1, 3).reshape(b, s, -1)  # -> [b, s, h, hd] -> [b, s, h·hd]
    return linear(merged, **out)  # [b, s, h·hd] -> [b, s, d]


def decoder_layer(x: np.ndarray, bias: np.ndarray, rotary: tuple[np.ndarray, np.ndarray],
                  ln_attn: dict, attn: dict, ln_ffn: dict, ffn: dict, cfg: EncoderConfig,
                  ln_attn_out: dict | None = None, ln_ffn_out: dict | None = None) -> np.ndarray:
    """One pre-norm block: x + attention(norm(x)), then x + feed_forward(norm(x)). Gemma also
    normalizes each sublayer's output before adding it (ln_attn_out, ln_ffn_out)."""
    def norm(t, w):
        return rms_norm(t, **w, eps=cfg.layer_norm_eps, offset=cfg.norm_offset)

    a = grouped_query_attention(norm(x, ln_attn), bias, rotary, **attn, cfg=cfg)
    x = x + (a if ln_attn_out is None else norm(a, ln_attn_out))
    f = gated_feed_forward(norm(x, ln_ffn), **ffn, act=ACTIVATIONS[cfg.hidden_act])
    return x + (f if ln_ffn_out is None else norm(f, ln_ffn_out))


def embed_scaled(ids: np.ndarray, word: np.ndarray, cfg: EncoderConfig) -> np.ndarray:
    """The token vectors, times cfg.embedding_scale (Gemma: √d, rounded to float32 as the
    weights are; Qwen3: 1). No position table: positions enter attention as rotations."""
    return word[ids] * np.float32(cfg.embedding_scale)  # [b, s] -> [b, s, d]


def decode_tokens(ids: np.ndarray, mask: np.ndarray, params: dict, cfg: EncoderConfig) -> np.ndarray:
    """A decoder embedder: token ids [b, s] and mask [b, s] (real tokens first, padding
    after) -> token vectors [b, s, d], zeros at padded places.

    Positions are 0..s-1 in every text. Each layer has its window (cfg.layer_window: 0 for a
    global layer) and its rotary base (cfg.layer_rope_theta)."""
    s = ids.shape[1]
    x = embed_scaled(ids, **params["embeddings"], cfg=cfg)  # [b, s, d]
    for i, layer in enumerate(params["layers"]):
        bias = visibility_bias(mask, cfg.layer_window(i), cfg.causal)  # [b, 1, s, s]
        rotary = rotary_embedding(s, cfg.head_dim, cfg.layer_rope_theta(i), cfg.rope_scale)
        x = decoder_layer(x, bias, rotary, **layer, cfg=cfg)  # [b, s, d] -> [b, s, d]
    x = rms_norm(x, **params["final_norm"], eps=cfg.layer_norm_eps, offset=cfg.norm_offset)
    return np.where(mask[..., None] > 0, x, np.float32(0))  # [b, s, d]
