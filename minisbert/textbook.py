"""The transformer encoder (BERT and XLM-RoBERTa) in textbook form: the maths, plainly.

A batch of texts is `ids` and `mask`, both [b, s] (texts × positions, padded to the longest
text, mask 1 for real tokens). Every layer works on the whole padded grid x: [b, s, d], and
the mask keeps padding out of attention. Each function is one step of the paper, named after
it, with a shape comment on every line that changes a shape. The parameter tree is the one
`checkpoint.load_params` builds, with keys equal to the argument names, so the tree is the
call graph: `encoder_layer(x, attention_bias, **params["layers"][i], cfg=cfg)`.

`encoder.py` is the fast form of the same function: it packs the real tokens together instead
of padding them, groups texts of equal length instead of masking, and computes GELU and
softmax in place in cache-sized blocks. tests/test_textbook.py holds the two equal. Read this
file to learn the model; run that one.

Left out, as in encoder.py: dropout (inference only), token types other than 0 (single
sentences), relative position embeddings, the pooler head, and any training code. Also left
out on purpose: every speed technique. A padded position gets a vector computed like any
other, which nothing uses; it is set to zero at the end, as encoder.py returns it.
"""

from __future__ import annotations

import math

import numpy as np

from .encoder import EncoderConfig, erfc_nonnegative, position_ids

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


def linear(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    return x @ w + b  # [..., in] @ [in, out] -> [..., out]


def attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """softmax(q·kᵀ/√hd + bias)·v; q, k, v: [b, h, s, hd], bias: [b, 1, 1, s]."""
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


def embed(ids: np.ndarray, word: np.ndarray, position: np.ndarray, token_type: np.ndarray,
          ln: dict, cfg: EncoderConfig) -> np.ndarray:
    """word + position + token type, normalized. Positions: BERT 0..s-1; XLM-R counts from
    pad_token_id + 1 (see encoder.position_ids)."""
    x = word[ids] + position[position_ids(ids, cfg)]  # [b, s] -> [b, s, d]
    x = x + token_type[np.zeros_like(ids)]  # single sentences: every token has type 0
    return layer_norm(x, **ln, eps=cfg.layer_norm_eps)


def encode_tokens(ids: np.ndarray, mask: np.ndarray, params: dict,
                  cfg: EncoderConfig) -> np.ndarray:
    """Token ids [b, s] and mask [b, s] -> token vectors [b, s, d] (zeros at padded places)."""
    # The mask as a bias added to every score: 0 for a real key, the most negative float32
    # for a padded one, whose weight after softmax is then exactly 0.
    attention_bias = np.where(mask[:, None, None, :] > 0, np.float32(0),
                              np.finfo(np.float32).min)  # [b, s] -> [b, 1, 1, s]
    x = embed(ids, **params["embeddings"], cfg=cfg)  # [b, s] -> [b, s, d]
    for layer in params["layers"]:
        x = encoder_layer(x, attention_bias, **layer, cfg=cfg)  # [b, s, d] -> [b, s, d]
    return np.where(mask[..., None] > 0, x, np.float32(0))  # [b, s, d]
