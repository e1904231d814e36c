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

from .encoder import EncoderConfig, erfc_nonnegative, position_ids, relative_position_bias

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


def layer_norm(x: np.ndarray, g: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)  # [..., d] -> [..., 1]
    var = np.var(x, axis=-1, keepdims=True)  # [..., d] -> [..., 1], biased, as torch's LayerNorm
    return g * (x - mean) / np.sqrt(var + eps) + b


def linear(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    y = x @ w  # [..., in] @ [in, out] -> [..., out]
    return y if b is None else y + b  # the decoder embedders' projections have no bias


def attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """softmax(q·kᵀ/√hd + bias)·v; q, k, v: [b, h, s, hd], bias: [b, 1, 1, s] (the mask) or,
    with MPNet's relative position bias in it, [b, h, s, s]."""
    scores = q @ k.swapaxes(-1, -2) / np.float32(math.sqrt(q.shape[-1]))  # -> [b, h, s, s]
    return softmax(scores + bias) @ v  # [b, h, s, s] @ [b, h, s, hd] -> [b, h, s, hd]


def multi_head_attention(x: np.ndarray, attention_bias: np.ndarray, q: dict, k: dict, v: dict,
                         out: dict, num_heads: int) -> np.ndarray:
    b, s, d = x.shape

    def split_heads(t):  # [b, s, d] -> [b, s, h, hd] -> [b, h, s, hd]
        return t.reshape(b, s, num_heads, d // num_heads).transpose(0, 2, 1, 3)

    heads = attention(split_heads(linear(x, **q)), split_heads(linear(x, **k)),
                      split_heads(linear(x, **v)), attention_bias)  # [b, h, s, hd]
    merged = heads.transpose(0, 2, 1, 3).reshape(b, s, d)  # -> [b, s, h, hd] -> [b, s, d]
    return linear(merged, **out)  # [b, s, d] -> [b, s, d]


def feed_forward(x: np.ndarray, up: dict, down: dict, act) -> np.ndarray:
    return linear(act(linear(x, **up)), **down)  # [b, s, d] -> [b, s, 4d] -> [b, s, d]


def encoder_layer(x: np.ndarray, attention_bias: np.ndarray, attn: dict, ln_attn: dict,
                  ffn: dict, ln_ffn: dict, cfg: EncoderConfig) -> np.ndarray:
    """One post-LN transformer block (BERT's order: add the sublayer's output, then normalize)."""
    eps = cfg.layer_norm_eps
    x = layer_norm(x + multi_head_attention(x, attention_bias, **attn, num_heads=cfg.num_heads),
                   **ln_attn, eps=eps)
    return layer_norm(x + feed_forward(x, **ffn, act=ACTIVATIONS[cfg.hidden_act]),
                      **ln_ffn, eps=eps)


def embed(ids: np.ndarray, word: np.ndarray, position: np.ndarray, ln: dict, cfg: EncoderConfig,
          token_type: np.ndarray | None = None) -> np.ndarray:
    """word + position (+ token type), normalized. Positions: BERT and DistilBERT 0..s-1;
    XLM-R, RoBERTa and MPNet count from pad_token_id + 1 (see encoder.position_ids)."""
    x = word[ids] + position[position_ids(ids, cfg)]  # [b, s] -> [b, s, d]
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
    x = embed(ids, **params["embeddings"], cfg=cfg)  # [b, s] -> [b, s, d]
    for layer in params["layers"]:
        x = encoder_layer(x, attention_bias, **layer, cfg=cfg)  # [b, s, d] -> [b, s, d]
    return np.where(mask[..., None] > 0, x, np.float32(0))  # [b, s, d]


# ---------------------------------------------------------------------------- decoder embedders
# Qwen3-Embedding and EmbeddingGemma: language-model blocks used as sentence encoders. The
# same grid x: [b, s, d] and mask as above; what changes, one function each:
#   rms_norm                       instead of layer_norm: no mean, no shift (Gemma: scale 1 + w)
#   before the sublayers           pre-norm: x + f(norm(x)), and one final norm after the layers
#   grouped_query_attention        fewer key/value heads than query heads, each serving a group
#   q/k norms                      rms_norm of every query and key head, before the rotation
#   rotate (rotary positions)      positions enter q and k as rotations, not as added vectors
#   visibility_bias                causal (Qwen3) or bidirectional (Gemma) and a sliding window:
#                                  which keys a query may see, as data, one function for all
#   gated_feed_forward             act(x·Wgate) ⊙ (x·Wup), then down (SwiGLU, GeGLU)
#   embed_scaled                   the token vectors alone, times √d in Gemma; no position table


def rms_norm(x: np.ndarray, w: np.ndarray, eps: float, offset: float = 0.0) -> np.ndarray:
    """x / √(mean(x²) + eps) · (offset + w) over the last axis. Qwen3: offset 0; Gemma stores
    its scales centred on 0 and multiplies by (1 + w)."""
    rms = np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + np.float32(eps))  # [..., d] -> [..., 1]
    return x / rms * (np.float32(offset) + w)


def rotary_angles(positions: np.ndarray, head_dim: int, theta: float) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin of position p times each frequency θ^(-2i/hd), i < hd/2, for both halves of
    a head: [s] -> two [s, hd]. In float32 from integer positions, as the reference does."""
    inv_freq = 1 / np.float32(theta) ** (np.arange(0, head_dim, 2, dtype=np.float32)
                                         / np.float32(head_dim))  # [hd/2]
    angles = positions.astype(np.float32)[:, None] * inv_freq  # [s, 1] * [hd/2] -> [s, hd/2]
    angles = np.concatenate([angles, angles], axis=-1)  # [s, hd]: both halves turn alike
    return np.cos(angles), np.sin(angles)


def rotate(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """Turn each pair (x[i], x[i + hd/2]) of a head by its position's angle: x·cos +
    rotate_half(x)·sin, with rotate_half(x) = (-second half, first half). x: [b, h, s, hd]."""
    half = x.shape[-1] // 2
    rotated_half = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)  # [b, h, s, hd]
    return x * cos + rotated_half * sin


def visibility_bias(mask: np.ndarray, before: int | None, after: int | None) -> np.ndarray:
    """Which keys each query may see, as the bias added to the scores: [b, s] -> [b, 1, s, s].

    A query at position i sees a real key at position j when i - j <= before and j - i <=
    after; None is no limit. Causal attention (Qwen3) is after = 0; a bidirectional model sees
    both ways (after = None); a sliding window limits the distance. One function for every
    kind of layer: the kinds differ only in these two numbers.
    """
    s = mask.shape[1]
    i, j = np.arange(s)[:, None], np.arange(s)[None, :]  # query, key positions
    visible = np.ones((s, s), dtype=bool)  # [q, k]
    if before is not None:
        visible &= i - j <= before
    if after is not None:
        visible &= j - i <= after
    visible = visible[None, None] & (mask[:, None, None, :] > 0)  # and not padding: [b, 1, s, s]
    return np.where(visible, np.float32(0), np.finfo(np.float32).min)


def grouped_query_attention(x: np.ndarray, bias: np.ndarray, cos: np.ndarray, sin: np.ndarray,
                            q: dict, k: dict, v: dict, out: dict, q_norm: dict, k_norm: dict,
                            cfg) -> np.ndarray:
    """Self-attention with num_kv_heads key/value heads shared by num_heads query heads: query
    head h uses key/value head h // (num_heads / num_kv_heads). x: [b, s, d] -> [b, s, d]."""
    b, s, _ = x.shape
    hd = cfg.head_dim

    def split_heads(t):  # [b, s, heads·hd] -> [b, s, heads, hd] -> [b, heads, s, hd]
        return t.reshape(b, s, -1, hd).transpose(0, 2, 1, 3)

    eps, offset = cfg.rms_norm_eps, cfg.norm_offset
    qh = rms_norm(split_heads(linear(x, **q)), **q_norm, eps=eps, offset=offset)  # [b, h, s, hd]
    kh = rms_norm(split_heads(linear(x, **k)), **k_norm, eps=eps, offset=offset)  # [b, kv, s, hd]
    vh = split_heads(linear(x, **v))  # [b, kv, s, hd]
    qh, kh = rotate(qh, cos, sin), rotate(kh, cos, sin)
    group = cfg.num_heads // cfg.num_kv_heads
    kh, vh = np.repeat(kh, group, axis=1), np.repeat(vh, group, axis=1)  # [b, kv, s, hd] -> [b, h, s, hd]
    scores = qh @ kh.swapaxes(-1, -2) * np.float32(cfg.attention_scale)  # -> [b, h, s, s]
    heads = softmax(scores + bias) @ vh  # [b, h, s, s] @ [b, h, s, hd] -> [b, h, s, hd]
    merged = heads.transpose(0, 2, 1, 3).reshape(b, s, -1)  # -> [b, s, h, hd] -> [b, s, h·hd]
    return linear(merged, **out)  # [b, s, h·hd] -> [b, s, d]


def gated_feed_forward(x: np.ndarray, gate: dict, up: dict, down: dict, act) -> np.ndarray:
    """act(x·Wgate) ⊙ (x·Wup), then down: SwiGLU with silu (Qwen3), GeGLU with tanh GELU (Gemma)."""
    return linear(act(linear(x, **gate)) * linear(x, **up), **down)  # [b, s, d] -> [b, s, ff] -> [b, s, d]


def decoder_layer(x: np.ndarray, bias: np.ndarray, cos: np.ndarray, sin: np.ndarray,
                  ln_attn: dict, attn: dict, ln_ffn: dict, ffn: dict, cfg,
                  ln_attn_out: dict | None = None, ln_ffn_out: dict | None = None) -> np.ndarray:
    """One pre-norm block: x + attention(norm(x)), then x + feed_forward(norm(x)). Gemma also
    normalizes each sublayer's output before adding it (ln_attn_out, ln_ffn_out)."""
    def norm(t, w):
        return rms_norm(t, **w, eps=cfg.rms_norm_eps, offset=cfg.norm_offset)

    a = grouped_query_attention(norm(x, ln_attn), bias, cos, sin, **attn, cfg=cfg)
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
    positions = np.arange(ids.shape[1])
    kinds = {kind: (visibility_bias(mask, *cfg.reach(kind)),
                    *rotary_angles(positions, cfg.head_dim, cfg.rope_theta(kind)))
             for kind in set(cfg.layer_kinds)}
    x = embed_scaled(ids, **params["embeddings"], cfg=cfg)  # [b, s, d]
    for layer, kind in zip(params["layers"], cfg.layer_kinds):
        x = decoder_layer(x, *kinds[kind], **layer, cfg=cfg)  # [b, s, d] -> [b, s, d]
    x = rms_norm(x, **params["final_norm"], eps=cfg.rms_norm_eps, offset=cfg.norm_offset)
    return np.where(mask[..., None] > 0, x, np.float32(0))  # [b, s, d]
