"""The transformer encoder (BERT, XLM-R, RoBERTa, MPNet, DistilBERT) in textbook form: the
maths, plainly.

A batch of texts is `ids` and `mask`, both [b, s] (texts × positions, padded to the longest
text, mask 1 for real tokens). Every layer works on the whole padded grid x: [b, s, d], and
the mask keeps padding out of attention. Each function is one step of the paper, named after
it, with a shape comment on every line that changes a shape. The parameter tree is the one
`checkpoint.load_params` builds, with keys equal to the argument names, so the tree is the
call graph: `encoder_layer(x, attention_bias, **params["layers"][i], cfg=cfg)`.

The families differ only in data: LayerNorm eps, the activation, where positions start
(`encoder.position_ids`), whether the tree has a token-type table (MPNet and DistilBERT have
none), and MPNet's relative position bias, a learned [buckets, heads] table: the scores of
every layer get, for each head, a number that depends on how far, and in which direction, the
key is from the query (`encoder.relative_position_bias`). It goes into the same attention bias
as the mask.

`encoder.py` is the fast form of the same function: it packs the real tokens together instead
of padding them, groups texts of equal length instead of masking, and computes GELU and
softmax in place in cache-sized blocks. tests/test_textbook.py holds the two equal. Read this
file to learn the model; run that one.

Left out, as in encoder.py: dropout (inference only), token types other than 0 (single
sentences), relative position embeddings other than MPNet's bias, the pooler head, and any
training code. Also left
out on purpose: every speed technique. A padded position gets a vector computed like any
other, which nothing uses; it is set to zero at the end, as encoder.py returns it.
"""

from __future__ import annotations

import math

import numpy as np

from .encoder import (EncoderConfig, erfc_nonnegative, position_ids, relative_position_bias,
                      rotary_frequencies, rotary_tables, window_allows)

# ---------------------------------------------------------------------------- activations


def normal_cdf(x: np.ndarray) -> np.ndarray:
    """Φ(x), the standard normal CDF: erfc(-x/√2)/2. erfc_nonnegative takes z >= 0 only, so
    the tail Φ(-|x|) is computed and the symmetry Φ(x) = 1 - Φ(-x) gives the other side."""
    tail = erfc_nonnegative(np.abs(x) / np.float32(math.sqrt(2))) / 2  # Φ(-|x|)
    return np.where(x < 0, tail, 1 - tail)


def gelu(x: np.ndarray) -> np.ndarray:
    return x * normal_cdf(x)  # exact GELU, BERT's and XLM-R's "gelu"


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


ACTIVATIONS = {"gelu": gelu, "gelu_new": gelu_tanh, "gelu_pytorch_tanh": gelu_tanh,
               "gelu_fast": gelu_tanh, "quick_gelu": quick_gelu, "relu": relu,
               "silu": silu, "swish": silu}

# ---------------------------------------------------------------------------- layers


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))  # minus the max: exp() cannot overflow
    return e / e.sum(axis=-1, keepdims=True)


def layer_norm(x: np.ndarray, g: np.ndarray, b: np.ndarray | None, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)  # [..., d] -> [..., 1]
    var = np.var(x, axis=-1, keepdims=True)  # [..., d] -> [..., 1], biased, as torch's LayerNorm
    y = g * (x - mean) / np.sqrt(var + eps)
    return y if b is None else y + b  # ModernBERT's norms have no bias


def linear(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    y = x @ w  # [..., in] @ [in, out] -> [..., out]
    return y if b is None else y + b  # no bias in ModernBERT, NomicBERT, GTE's gated pair, Qwen3, Gemma


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


def encoder_layer(x: np.ndarray, attention_bias: np.ndarray, attn: dict, ln_attn: dict,
                  ffn: dict, ln_ffn: dict, cfg: EncoderConfig,
                  rotary: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """One post-LN transformer block (BERT's order: add the sublayer's output, then normalize).
    GTE and NomicBERT are this block with rotary positions and a gated feed-forward."""
    eps = cfg.layer_norm_eps
    x = layer_norm(x + multi_head_attention(x, attention_bias, **attn, num_heads=cfg.num_heads,
                                            rotary=rotary),
                   **ln_attn, eps=eps)
    ffn_block = gated_feed_forward if "gate" in ffn else feed_forward
    return layer_norm(x + ffn_block(x, **ffn, act=ACTIVATIONS[cfg.hidden_act]), **ln_ffn, eps=eps)


def embed(ids: np.ndarray, word: np.ndarray, ln: dict, cfg: EncoderConfig,
          position: np.ndarray | None = None, token_type: np.ndarray | None = None) -> np.ndarray:
    """word + position (+ token type), normalized. Positions: BERT and DistilBERT 0..s-1;
    XLM-R, RoBERTa and MPNet count from pad_token_id + 1 (see encoder.position_ids); rotary
    families have no position table (their positions enter attention)."""
    x = word[ids]  # [b, s] -> [b, s, d]
    if position is not None:
        x = x + position[position_ids(ids, cfg)]  # [b, s, d]
    if token_type is not None:  # MPNet and DistilBERT have no token types
        x = x + token_type[np.zeros_like(ids)]  # single sentences: every token has type 0
    return layer_norm(x, **ln, eps=cfg.layer_norm_eps)


def encode_tokens(ids: np.ndarray, mask: np.ndarray, params: dict,
                  cfg: EncoderConfig) -> np.ndarray:
    """Token ids [b, s] and mask [b, s] -> token vectors [b, s, d] (zeros at padded places)."""
    # The mask as a bias added to every score: 0 for a real key, the most negative float32
    # for a padded one, whose weight after softmax is then exactly 0.
    attention_bias = np.where(mask[:, None, None, :] > 0, np.float32(0),
                              np.finfo(np.float32).min)  # [b, s] -> [b, 1, 1, s]
    if "relative_attention_bias" in params:  # MPNet: the same bias in every layer
        # Added to the mask: exact at real keys (+0), still the most negative at padded ones.
        relative = relative_position_bias(params["relative_attention_bias"], ids.shape[1])
        attention_bias = attention_bias + relative[None]  # + [1, h, s, s] -> [b, h, s, s]
    block = pre_norm_encoder_layer if cfg.norm_placement == "pre" else encoder_layer
    x = embed(ids, **params["embeddings"], cfg=cfg)  # [b, s] -> [b, s, d]
    for i, layer in enumerate(params["layers"]):
        bias = attention_bias
        if cfg.layer_window(i):  # a local layer: keys beyond the window are masked too
            bias = attention_bias + window_bias(ids.shape[1], cfg.layer_window(i))  # [b, 1, s, s]
        rotary = None
        if cfg.positions == "rotary":
            rotary = rotary_embedding(ids.shape[1], cfg.head_dim, cfg.layer_rope_theta(i),
                                      cfg.rope_scale)
        x = block(x, bias, **layer, cfg=cfg, rotary=rotary)  # [b, s, d] -> [b, s, d]
    if "final_norm" in params:  # pre-LN families normalize the last block's output
        x = layer_norm(x, **params["final_norm"], eps=cfg.layer_norm_eps)
    return np.where(mask[..., None] > 0, x, np.float32(0))  # [b, s, d]


# ---------------------------------------------------------------------------- rotary positions
# RoPE (Su et al., RoFormer): no position table; instead, in every layer, each head's query
# and key vectors are turned by angles proportional to their token's position, pair of
# dimensions by pair of dimensions, each pair at its own speed. A turned q·k then depends on
# how far apart the two tokens are, not on where they are. The pairs are (i, i + hd/2), the
# convention of transformers' `rotate_half` (not neighbouring dimensions).


def rotary_embedding(s: int, head_dim: int, theta: float,
                     scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin of the angles of positions 0..s-1, [s, hd] each: position p, dimension j
    turns by p · inv_freq[j mod hd/2], inv_freq[i] = 1 / theta^(2i/hd) / scale
    (encoder.rotary_frequencies, which also explains `scale`)."""
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


def window_bias(s: int, window: int) -> np.ndarray:
    """[s, s]: 0 where query i may read key j (|i - j| <= window), -inf where it may not."""
    pos = np.arange(s)
    allowed = window_allows(pos[:, None], pos[None, :], window)  # [s, s]
    return np.where(allowed, np.float32(0), np.float32(-np.inf))


# ---------------------------------------------------------------------------- gated feed-forward


def gated_feed_forward(x: np.ndarray, gate: dict, up: dict, down: dict, act) -> np.ndarray:
    """A GLU (Shazeer, "GLU Variants Improve Transformer"): down(act(gate x) · up x). GELU
    makes it GeGLU (ModernBERT, GTE), SiLU SwiGLU (NomicBERT)."""
    return linear(act(linear(x, **gate)) * linear(x, **up), **down)  # [b, s, d] -> [b, s, ff] -> [b, s, d]


# ---------------------------------------------------------------------------- pre-LN block


def pre_norm_encoder_layer(x: np.ndarray, attention_bias: np.ndarray, attn: dict,
                           ln_attn: dict | None, ffn: dict, ln_ffn: dict, cfg: EncoderConfig,
                           rotary: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """One pre-LN block (ModernBERT): normalize a sublayer's input, add its output to x as it
    is. ModernBERT's first layer has no norm before attention (ln_attn None): the embedding
    norm has just normalized x."""
    eps = cfg.layer_norm_eps
    h = x if ln_attn is None else layer_norm(x, **ln_attn, eps=eps)
    x = x + multi_head_attention(h, attention_bias, **attn, num_heads=cfg.num_heads,
                                 rotary=rotary)
    ffn_block = gated_feed_forward if "gate" in ffn else feed_forward
    return x + ffn_block(layer_norm(x, **ln_ffn, eps=eps), **ffn, act=ACTIVATIONS[cfg.hidden_act])
# ---------------------------------------------------------------------------- decoder embedders
# Qwen3-Embedding and EmbeddingGemma: language-model blocks used as sentence encoders. The
# same grid x: [b, s, d] and mask as above; what changes, one function each:
#   rms_norm                  instead of layer_norm: no mean, no shift (Gemma: scale 1 + w)
#   decoder_layer             pre-norm: x + f(norm(x)), one final norm after the last layer;
#                             Gemma also normalizes each sublayer's output before adding it
#   grouped_query_attention   fewer key/value heads than query heads, each serving a group;
#                             every query and key head RMS-normalized before its rotation
#                             (apply_rotary, above)
#   visibility_bias           causal (Qwen3) or bidirectional (EmbeddingGemma), with or
#                             without a sliding window: which keys a query may see, as data
#   gated_feed_forward        act(x·Wgate) ⊙ (x·Wup), then down (above): SwiGLU, tanh GeGLU
#   embed_scaled              the token vectors alone, times √d in Gemma; no position table


def rms_norm(x: np.ndarray, w: np.ndarray, eps: float, offset: float = 0.0) -> np.ndarray:
    """x / √(mean(x²) + eps) · (offset + w) over the last axis. Qwen3: offset 0; Gemma stores
    its scales centred on 0 and multiplies by (1 + w)."""
    rms = np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + np.float32(eps))  # [..., d] -> [..., 1]
    return x / rms * (np.float32(offset) + w)


def visibility_bias(mask: np.ndarray, window: int | None, causal: bool) -> np.ndarray:
    """Which keys each query may see, as the bias added to its scores: [b, s] -> [b, 1, s, s].

    A real key is seen when it is at most `window` positions away (window_allows; None: any
    distance) and, in a causal model (Qwen3), not after the query. One function for every
    kind of layer: the kinds differ only in these two values (DecoderConfig.layer_window).
    """
    s = mask.shape[1]
    i, j = np.arange(s)[:, None], np.arange(s)[None, :]  # query, key positions
    visible = np.ones((s, s), dtype=bool)  # [q, k]
    if window is not None:
        visible &= window_allows(i, j, window)
    if causal:
        visible &= j <= i
    visible = visible[None, None] & (mask[:, None, None, :] > 0)  # and not padding: [b, 1, s, s]
    return np.where(visible, np.float32(0), np.finfo(np.float32).min)


def grouped_query_attention(x: np.ndarray, bias: np.ndarray, rotary: tuple[np.ndarray, np.ndarray],
                            q: dict, k: dict, v: dict, out: dict, q_norm: dict, k_norm: dict,
                            cfg) -> np.ndarray:
    """Self-attention with num_kv_heads key/value heads shared by num_heads query heads: query
    head h uses key/value head h // (num_heads / num_kv_heads). x: [b, s, d] -> [b, s, d];
    rotary: (cos, sin) [s, hd]."""
    b, s, _ = x.shape
    hd = cfg.head_dim

    def split_heads(t):  # [b, s, heads·hd] -> [b, s, heads, hd] -> [b, heads, s, hd]
        return t.reshape(b, s, -1, hd).transpose(0, 2, 1, 3)

    eps, offset = cfg.rms_norm_eps, cfg.norm_offset
    qh = rms_norm(split_heads(linear(x, **q)), **q_norm, eps=eps, offset=offset)  # [b, h, s, hd]
    kh = rms_norm(split_heads(linear(x, **k)), **k_norm, eps=eps, offset=offset)  # [b, kv, s, hd]
    vh = split_heads(linear(x, **v))  # [b, kv, s, hd]
    qh, kh = apply_rotary(qh, *rotary), apply_rotary(kh, *rotary)
    group = cfg.num_heads // cfg.num_kv_heads
    kh, vh = np.repeat(kh, group, axis=1), np.repeat(vh, group, axis=1)  # [b, kv, s, hd] -> [b, h, s, hd]
    scores = qh @ kh.swapaxes(-1, -2) * np.float32(cfg.attention_scale)  # -> [b, h, s, s]
    heads = softmax(scores + bias) @ vh  # [b, h, s, s] @ [b, h, s, hd] -> [b, h, s, hd]
    merged = heads.transpose(0, 2, 1, 3).reshape(b, s, -1)  # -> [b, s, h, hd] -> [b, s, h·hd]
    return linear(merged, **out)  # [b, s, h·hd] -> [b, s, d]


def decoder_layer(x: np.ndarray, bias: np.ndarray, rotary: tuple[np.ndarray, np.ndarray],
                  ln_attn: dict, attn: dict, ln_ffn: dict, ffn: dict, cfg,
                  ln_attn_out: dict | None = None, ln_ffn_out: dict | None = None) -> np.ndarray:
    """One pre-norm block: x + attention(norm(x)), then x + feed_forward(norm(x)). Gemma also
    normalizes each sublayer's output before adding it (ln_attn_out, ln_ffn_out)."""
    def norm(t, w):
        return rms_norm(t, **w, eps=cfg.rms_norm_eps, offset=cfg.norm_offset)

    a = grouped_query_attention(norm(x, ln_attn), bias, rotary, **attn, cfg=cfg)
    x = x + (a if ln_attn_out is None else norm(a, ln_attn_out))
    f = gated_feed_forward(norm(x, ln_ffn), **ffn, act=ACTIVATIONS[cfg.hidden_act])
    return x + (f if ln_ffn_out is None else norm(f, ln_ffn_out))


def embed_scaled(ids: np.ndarray, word: np.ndarray, cfg) -> np.ndarray:
    """The token vectors, times cfg.embedding_scale (Gemma: √d, rounded to float32 as the
    weights are; Qwen3: 1). No position table: positions enter attention as rotations."""
    return word[ids] * np.float32(cfg.embedding_scale)  # [b, s] -> [b, s, d]


def decode_tokens(ids: np.ndarray, mask: np.ndarray, params: dict, cfg) -> np.ndarray:
    """A decoder embedder: token ids [b, s] and mask [b, s] (real tokens first, padding
    after) -> token vectors [b, s, d], zeros at padded places.

    Positions are 0..s-1 in every text. Each kind of layer (cfg.layer_kinds: "full" or
    "sliding") has its own visibility and its own rotary θ, computed once here."""
    s = ids.shape[1]
    kinds = {kind: (visibility_bias(mask, cfg.layer_window(kind), cfg.causal),
                    rotary_embedding(s, cfg.head_dim, cfg.rope_theta(kind)))
             for kind in set(cfg.layer_kinds)}
    x = embed_scaled(ids, **params["embeddings"], cfg=cfg)  # [b, s, d]
    for layer, kind in zip(params["layers"], cfg.layer_kinds):
        x = decoder_layer(x, *kinds[kind], **layer, cfg=cfg)  # [b, s, d] -> [b, s, d]
    x = rms_norm(x, **params["final_norm"], eps=cfg.rms_norm_eps, offset=cfg.norm_offset)
    return np.where(mask[..., None] > 0, x, np.float32(0))  # [b, s, d]
