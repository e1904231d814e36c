"""The transformer encoder (BERT, XLM-R, RoBERTa, MPNet, DistilBERT) as pure NumPy functions,
fast form.

`textbook.py` is the same function written plainly, on a padded [b, s, d] batch with a mask;
read it first. This file computes the same numbers faster (tests/test_textbook.py holds the
two equal), and each speed technique below says, in a comment marked "Textbook:", what it
does instead of the plain form.

Everything here is float32 and batched. A batch of texts is `ids` and `mask`, both [b, s]
(texts × positions, padded); inside the layers `x` is [n, d]: the n real tokens of the batch,
packed, so padding costs nothing (see `Layout`). Functions are named after
the maths and take their parameters as keyword arguments whose names match the keys of the
parameter tree built by `checkpoint.py`, so the tree is the call graph:
`encoder_layer(x, layout, **params["layers"][i], cfg=cfg)`.

Every family runs through the same code. They differ only in data (`EncoderConfig`, built from
config.json by model.encoder_config, and the parameter tree): LayerNorm eps, the activation,
where position ids start, whether there is a token-type table (not in MPNet and DistilBERT),
and whether a relative position bias is added to the attention scores (MPNet). Their tensor
names differ too, which only checkpoint.py knows.

Left out on purpose: dropout (inference only), token types other than 0 (single sentences),
relative position embeddings other than MPNet's bias, cross attention, the pooler head (mean
pooling does not use it), and any training code.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass

import numpy as np


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
    hidden_act: str  # name of the feed-forward activation, see ACTIVATIONS
    pad_token_id: int
    # XLM-R, RoBERTa and MPNet number real positions from pad_token_id + 1 (fairseq's
    # convention) and give padding the position pad_token_id; BERT numbers positions 0..s-1.
    positions_after_padding_idx: bool
    # Rows of MPNet's learned relative position bias table ([rows, heads]); 0: no such bias.
    relative_attention_buckets: int = 0
    # config.json's model_type: which tensor names the checkpoint uses (checkpoint.py).
    architecture: str = "bert"
    # DistilBERT's sinusoidal_pos_embds: a position table missing from the checkpoint is the
    # fixed sine/cosine one (checkpoint.sinusoidal_positions); a stored one is used as it is.
    sinusoidal_positions: bool = False
    # --- rotary families (ModernBERT, GTE, NomicBERT); the defaults are BERT's
    # "absolute": a learned position table added to the embeddings; "rotary": no table, q and
    # k of every layer rotated by their position instead (see `rotary_frequencies`).
    positions: str = "absolute"
    # "post": BERT's order, add a sublayer's output then normalize; "pre": normalize a
    # sublayer's input and add its output untouched, with one final norm (ModernBERT).
    norm_placement: str = "post"
    # Rotary base of global layers, and of local (sliding-window) layers when they differ
    # (ModernBERT: 160000 and 10000); 0 for local: the same as global.
    rope_theta: float = 10000.0
    local_rope_theta: float = 0.0
    # Rotary frequencies divided by this (transformers' "linear" scaling; GTE's fixed NTK
    # scaling is written this way by model.py, see `rotary_frequencies`).
    rope_scale: float = 1.0
    # Each layer's kind, "global" (every token sees every token) or "local" (a token sees only
    # keys at most `window` positions away on either side); () means every layer is global.
    layer_kinds: tuple[str, ...] = ()
    window: int = 0

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

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
        """How many tokens one text may have: the position table's rows (512 for BERT and
        XLM-R), or for rotary positions, which have no table, max_position_embeddings (8192
        for ModernBERT and GTE), the length the model was trained to."""
        if self.positions_after_padding_idx:
            return self.max_position_embeddings - self.pad_token_id - 1
        return self.max_position_embeddings


# ---------------------------------------------------------------------------- activations

# erfc(z) for z >= 0 by the Chebyshev-fitted exponent of Numerical Recipes (2nd ed., §6.2,
# `erfcc`): erfc(z) = t·exp(-z² + P(t)), t = 1/(1 + z/2), fractional error < 1.2e-7.
# NumPy has no erf and scipy is not a dependency; math.erf per element would be far too slow.
_ERFC_COEFFS = (-1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806,
                0.27886807, -1.13520398, 1.48851587, -0.82215223, 0.17087277)


def erfc_nonnegative(z: np.ndarray) -> np.ndarray:
    """Complementary error function 1 - erf(z) for z >= 0, elementwise, in z's float dtype."""
    two = z.dtype.type(2)
    t = z + two
    np.divide(two, t, out=t)  # t = 1/(1 + z/2), as 2/(2 + z): NumPy's divide is vectorized,
    # its reciprocal is not (and takes twice as long)
    poly = t * z.dtype.type(_ERFC_COEFFS[-1])
    for c in reversed(_ERFC_COEFFS[1:-1]):  # Horner's rule, in place
        poly += c
        poly *= t
    poly += _ERFC_COEFFS[0]
    poly -= np.square(z)
    out = np.exp(poly, out=poly)
    out *= t
    return out


# Textbook: x·Φ(x) on the whole array at once. Here: in cache-sized blocks, in place.
# Elementwise passes over a big [tokens, 4d] array are limited by memory bandwidth: GELU makes
# ~30 of them. Working in blocks of 64k elements (256 KB of float32) keeps each block in the
# L2 cache across all its passes, which makes GELU ~3x faster than whole-array passes.
_BLOCK = 1 << 16
# max(x, 0) against an array of zeros: NumPy vectorizes np.maximum of two arrays, but not of an
# array and a scalar, which takes six times as long.
_ZEROS = np.zeros(_BLOCK, dtype=np.float32)
_ZEROS.flags.writeable = False


def gelu(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """GELU, exact form: x·Φ(x), Φ the standard normal CDF. BERT's and XLM-R's `"gelu"`.

    Textbook: x·Φ(x) with Φ from erfc on either side of 0 (textbook.gelu). Written here as
    max(x, 0) - |x|·Φ(-|x|) with Φ(-a) = erfc(a/√2)/2, which is the same function
    (xΦ(x) = x - xΦ(-x)) computed with no cancellation: the usual x/2·(1 + erf(x/√2))
    subtracts two numbers near 1 for negative x and keeps only ~1e-6 of accuracy there.
    `out=x` overwrites x instead of allocating.
    """
    out = np.empty_like(x) if out is None else out
    src, dst = x.reshape(-1), out.reshape(-1)
    for i in range(0, src.size, _BLOCK):
        xb = src[i:i + _BLOCK]
        a = np.abs(xb)
        y = erfc_nonnegative(a * np.float32(1 / math.sqrt(2)))  # 2·Φ(-|x|)
        a *= -0.5
        y *= a  # -|x|·Φ(-|x|)
        # out=x is safe: this block of x is read (by abs above and maximum here) before the
        # add writes the same memory
        np.add(y, np.maximum(xb, _ZEROS[:xb.size]), out=dst[i:i + _BLOCK])
    return out


def _into(y: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    if out is None:
        return y
    out[...] = y
    return out


def gelu_tanh(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """GELU, tanh approximation (`gelu_new`, `gelu_pytorch_tanh`, `gelu_fast`)."""
    c = np.float32(math.sqrt(2 / math.pi))
    return _into(0.5 * x * (1.0 + np.tanh(c * (x + np.float32(0.044715) * x * x * x))), out)


def sigmoid(x: np.ndarray) -> np.ndarray:
    # 1/(1+e^-x) overflows e^-x for very negative x; tanh form is stable everywhere.
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def quick_gelu(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    return _into(x * sigmoid(np.float32(1.702) * x), out)


def relu(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    return np.maximum(x, np.float32(0), out=out)


def silu(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    return _into(x * sigmoid(x), out)


# Textbook: act(h) returns a new array. Here every activation takes `out=`: the feed-forward
# layer passes its own temporary, so the largest array of a layer ([tokens, 4d]) is not
# allocated twice.
ACTIVATIONS = {
    "gelu": gelu,
    "gelu_new": gelu_tanh,
    "gelu_pytorch_tanh": gelu_tanh,
    "gelu_fast": gelu_tanh,
    "quick_gelu": quick_gelu,
    "relu": relu,
    "silu": silu,
    "swish": silu,
}


# ---------------------------------------------------------------------------- layers

def layer_norm(x: np.ndarray, g: np.ndarray, b: np.ndarray | None, eps: float) -> np.ndarray:
    """Normalize each token vector over its last axis (biased variance), then scale and shift
    (b None: no shift, ModernBERT's norms)."""
    # Textbook: g·(x - mean)/√(np.var(x) + eps) + b. Here: centered once, the variance as a dot
    # product of the centered rows, then scaled and shifted in place (no temporaries).
    out = x - x.mean(axis=-1, keepdims=True)  # [..., d], centered
    var = np.einsum("...i,...i->...", out, out)[..., None] / np.float32(x.shape[-1])  # [..., 1]
    out /= np.sqrt(var + np.float32(eps))
    out *= g
    if b is not None:
        out += b
    return out


def linear(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """x·W + b with W stored [in, out] (checkpoint.py transposes torch's [out, in] once);
    b None: no bias (ModernBERT, NomicBERT and GTE's gated projections, and every projection
    of the decoder embedders, have none)."""
    # Textbook: x @ w + b on [b, s, in]. Here: folding [..., in] to 2-D makes this one large
    # BLAS call; NumPy runs a 3-D @ 2-D product as one small call per leading index, several
    # times slower.
    y = x.reshape(-1, x.shape[-1]) @ w  # [n, in] -> [n, out]
    if b is not None:
        y += b
    return y.reshape(*x.shape[:-1], w.shape[1])


def attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, out: np.ndarray,
              bias_t: np.ndarray | None = None) -> np.ndarray:
    """softmax(q·kᵀ + bias)·v for a stack of heads, written into `out`.

    q, k, v, out: [..., length, hd]; q already scaled by 1/√hd. `out` may be a strided view.
    bias_t: MPNet's relative position bias, transposed as the scores are, [heads, keys, queries].
    """
    # Textbook: softmax(q·kᵀ/√hd + mask)·v, a softmax over the last axis of [..., queries,
    # keys]. Here: no mask (texts come in runs of equal length), the softmax in place on the
    # scores, and the scores kept transposed, [..., keys, queries], so the softmax's max and
    # sum over the keys run down the columns: NumPy reduces such an axis a whole row of
    # queries at a time (vectorized), where reducing along each short row is ~2x slower. And
    # the division by each query's sum is done on the output, hd wide, instead of on the
    # weights, `length` wide: the same numbers, since (e/Σe)·v = (e·v)/Σe.
    scores_t = k @ q.swapaxes(-1, -2)  # [..., keys, hd] @ [..., hd, queries] -> [..., keys, queries]
    if bias_t is not None:
        scores_t += bias_t  # the same for every text: broadcast over the leading axis
    scores_t -= scores_t.max(axis=-2, keepdims=True)  # shift by the max: exp() cannot overflow
    e = np.exp(scores_t, out=scores_t)
    np.matmul(e.swapaxes(-1, -2), v, out=out)  # [..., queries, keys] @ [..., keys, hd]
    out /= e.sum(axis=-2)[..., None]  # [..., queries, 1]: each query's weights now sum to 1
    return out


@dataclass(frozen=True)
class Layout:
    """Where the real tokens of a padded batch are.

    Textbook: every layer runs on the padded grid x: [b, s, d], and a mask keeps padding out
    of attention. Here the padding is never computed at all.

    Texts in a batch have different lengths. Every step of a layer works on the n real tokens
    packed together, x: [n, d], text after text, so padding costs nothing anywhere. Only
    attention needs to know where one text ends and the next begins: it takes the texts in
    runs of equal length (`groups`), which need no padding and no mask at all. The [b, s] grid
    of texts × positions is used once, to hand the token vectors to pooling.
    """
    real: np.ndarray  # [n] flat index of each real token in the [b·s] grid
    # (first row in x, number of texts, tokens per text) for each run of equal-length texts
    groups: tuple[tuple[int, int, int], ...]
    batch: int  # b
    width: int  # s

    @classmethod
    def from_mask(cls, mask: np.ndarray) -> "Layout":
        """mask: [b, s], 1 for real tokens (a prefix of each row), 0 for padding."""
        groups, start = [], 0
        for length, run in itertools.groupby(mask.sum(axis=1).tolist()):
            texts = len(list(run))
            if length:  # a text with no tokens has nothing to attend to
                groups.append((start, texts, length))
            start += texts * length
        return cls(real=np.flatnonzero(mask), groups=tuple(groups),
                   batch=mask.shape[0], width=mask.shape[1])

    def positions(self) -> np.ndarray:
        """[n]: each packed token's position in its own text, 0 for its first token."""
        runs = [np.tile(np.arange(length), texts) for _, texts, length in self.groups]
        return np.concatenate(runs) if runs else np.zeros(0, dtype=np.int64)

    def to_grid(self, x: np.ndarray) -> np.ndarray:
        """[n, k] packed -> [b, s, k] with zeros at padded places."""
        grid = np.zeros((self.batch * self.width, x.shape[-1]), dtype=x.dtype)
        grid[self.real] = x
        return grid.reshape(self.batch, self.width, -1)

    def to_packed(self, grid: np.ndarray) -> np.ndarray:
        """[b, s, k] -> [n, k], the real tokens only: the inverse of `to_grid`, for comparing
        with a padded reference (the encoder itself never builds a grid until pooling)."""
        return grid.reshape(self.batch * self.width, -1)[self.real]


# Most scores one block of attention holds: 256k floats (1 MB), small enough to stay in the
# L2 cache from q·kᵀ through exp() to the product with v.
_SCORES = 4 * _BLOCK


def _blocks(texts: int, heads: int, length: int, group: int = 1):
    """Split texts × heads into blocks whose [length, length] score matrices fit in cache.

    Textbook: the scores of every text and head at once, [b, h, s, s].

    A block's scores go from q·kᵀ through exp() to the product with v while they stay in
    the CPU's L2 cache; one long text's scores for all heads at once would not (12 heads ×
    256² floats are 3 MB). With grouped-query attention a (text, key/value head) pair has
    `group` query heads, so `group` score matrices.
    """
    pairs = max(1, _SCORES // (group * length * length))  # (text, head) pairs per block
    if pairs >= heads:  # whole texts, several at a time
        step = pairs // heads
        for t in range(0, texts, step):
            yield slice(t, t + step), slice(None)
    else:  # a few heads of one text at a time
        for t in range(texts):
            for h in range(0, heads, pairs):
                yield slice(t, t + 1), slice(h, h + pairs)


def _query_blocks(length: int, window: int):
    """Split one text's queries into blocks, each with the keys it reads: (queries, keys) slices.

    Textbook: all queries against all keys at once, [h, s, s] scores: 3.2 GB for one text of
    8,192 tokens and 12 heads. Here: a block of queries at a time, one head at a time, so the
    scores held at once are [keys, block], about _SCORES floats however long the text is. A
    global layer's block reads every key; a local layer's reads only the keys within `window`
    positions of the block, so its cost grows with length × window instead of length².
    Softmax runs over each query's own keys, so splitting the queries changes no number.
    """
    if window:  # block × (block + 2·window) scores
        block = max(16, int(math.sqrt(window * window + _SCORES)) - window)
    else:  # block × length scores
        block = max(16, _SCORES // length)
    for q0 in range(0, length, block):
        q1 = min(q0 + block, length)
        keys = slice(max(0, q0 - window), min(length, q1 + window)) if window else slice(None)
        yield slice(q0, q1), keys


def multi_head_attention(x: np.ndarray, layout: Layout, q: dict, k: dict, v: dict, out: dict,
                         num_heads: int, position_bias: np.ndarray | None = None,
                         rotary: tuple[np.ndarray, np.ndarray] | None = None,
                         window: int = 0) -> np.ndarray:
    """Self-attention: every token mixes the value vectors of the tokens of its own text (a
    local layer, window > 0: only of those at most `window` positions away).

    rotary: (cos, sin), each [n, hd/2], every packed token's rotation (`rotary_tables`); q and
    k are rotated by it before their product. None: the positions are in x already.
    """
    n, d = x.shape
    head_dim = d // num_heads
    # Textbook: the whole padded grid split into heads at once, [b, s, d] -> [b, h, s, hd].
    # Here: each run of equal-length texts seen as [texts, heads, length, hd] views of the
    # packed rows, a cache-sized block of (text, head) pairs at a time.
    q_ = linear(x, **q)  # [n, d] -> [n, d]
    k_, v_ = linear(x, **k), linear(x, **v)  # [n, d] each
    if rotary is not None:
        q_ = apply_rotary(q_.reshape(n, num_heads, head_dim), *rotary).reshape(n, d)
        k_ = apply_rotary(k_.reshape(n, num_heads, head_dim), *rotary).reshape(n, d)
    q_ *= np.float32(1 / math.sqrt(head_dim))  # the same as scaling q·kᵀ, on a smaller array
    mixed = np.empty_like(q_)  # [n, d], every row written below
    for start, texts, length in layout.groups:
        # The group's rows seen as [texts, length, heads, hd]: a view, nothing is copied.
        # Transposing a block of it to [texts, heads, length, hd] is a view too; matmul reads
        # each head's [length, hd] matrix from it in place, with a row stride of d.
        rows = slice(start, start + texts * length)
        q4, k4, v4, m4 = (a[rows].reshape(texts, length, num_heads, head_dim)
                          for a in (q_, k_, v_, mixed))
        if (window and length - 1 > window) or length * length > _SCORES:
            # A long text, or one longer than a local layer's reach: a block of queries of
            # one head at a time ([length, hd] views of that head, [queries., hd] of them).
            for t, h in itertools.product(range(texts), range(num_heads)):
                qh, kh, vh, oh = (a[t, :, h] for a in (q4, k4, v4, m4))  # [length, hd] each
                for qs, ks in _query_blocks(length, window):
                    bias_t = None
                    if window:  # keys beyond the window of a query get -inf
                        bias_t = _window_bias_t(ks.start - qs.start, ks.stop - ks.start,
                                                qs.stop - qs.start, window)
                    elif position_bias is not None:
                        bias_t = position_bias[h, ks, qs]
                    attention(qh[qs], kh[ks], vh[ks], out=oh[qs], bias_t=bias_t)
            continue
        for t, h in _blocks(texts, num_heads, length):
            # [., length, h., hd] -> [., h., length, hd]: each head's rows, still views
            qb, kb, vb, ob = (a[t, :, h].transpose(0, 2, 1, 3) for a in (q4, k4, v4, m4))
            bias_t = None if position_bias is None else position_bias[h, :length, :length]
            attention(qb, kb, vb, out=ob, bias_t=bias_t)
    return linear(mixed, **out)  # [n, d] -> [n, d]


def feed_forward(x: np.ndarray, up: dict, down: dict, act) -> np.ndarray:
    h = linear(x, **up)  # [n, d] -> [n, 4d]
    return linear(act(h, out=h), **down)  # [n, 4d] -> [n, d]; textbook: act(h), a new array


def gated_feed_forward(x: np.ndarray, gate: dict, up: dict, down: dict, act) -> np.ndarray:
    """down(act(gate(x)) · up(x)): a GLU feed-forward (GeGLU with GELU, SwiGLU with SiLU).

    The activated projection is `gate`: ModernBERT's first half of Wi, GTE's second half of
    up_gate_proj, NomicBERT's fc12 (checkpoint.py knows which is which)."""
    h = linear(x, **gate)  # [n, d] -> [n, ff]
    act(h, out=h)  # textbook: act(gate(x)), a new array
    h *= linear(x, **up)  # [n, ff]
    return linear(h, **down)  # [n, ff] -> [n, d]


def _feed_forward(ffn: dict):
    """The feed-forward a layer's parameters call for: gated if it has a gate projection."""
    return gated_feed_forward if "gate" in ffn else feed_forward


def encoder_layer(x: np.ndarray, layout: Layout, attn: dict, ln_attn: dict, ffn: dict,
                  ln_ffn: dict, cfg: EncoderConfig, **context) -> np.ndarray:
    """One post-LN transformer block (BERT's original order: add, then normalize). GTE and
    NomicBERT use it too, with rotary positions and a gated feed-forward. `context`: what
    attention needs besides the weights (position_bias, rotary, window)."""
    eps = cfg.layer_norm_eps
    x = layer_norm(x + multi_head_attention(x, layout, **attn, num_heads=cfg.num_heads,
                                            **context),
                   **ln_attn, eps=eps)
    return layer_norm(x + _feed_forward(ffn)(x, **ffn, act=ACTIVATIONS[cfg.hidden_act]),
                      **ln_ffn, eps=eps)


def pre_norm_encoder_layer(x: np.ndarray, layout: Layout, attn: dict, ln_attn: dict | None,
                           ffn: dict, ln_ffn: dict, cfg: EncoderConfig,
                           **context) -> np.ndarray:
    """One pre-LN block (ModernBERT): each sublayer reads a normalized copy of x and adds its
    output to x unnormalized. ln_attn None: no norm before attention (ModernBERT's first
    layer, whose input the embedding norm has just normalized)."""
    eps = cfg.layer_norm_eps
    h = x if ln_attn is None else layer_norm(x, **ln_attn, eps=eps)
    x = x + multi_head_attention(h, layout, **attn, num_heads=cfg.num_heads, **context)
    h = layer_norm(x, **ln_ffn, eps=eps)
    x += _feed_forward(ffn)(h, **ffn, act=ACTIVATIONS[cfg.hidden_act])
    return x


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


def embed(ids: np.ndarray, layout: Layout, word: np.ndarray, ln: dict, cfg: EncoderConfig,
          position: np.ndarray | None = None,
          token_type: np.ndarray | None = None) -> np.ndarray:
    """Vectors of the real tokens before the first layer: word + position (+ type), normalized.
    MPNet, DistilBERT and ModernBERT have no token-type table; rotary families no position
    table."""
    # Fancy indexing reads only the rows this batch needs, so a memory-mapped 250k-row table
    # stays on disk except for those rows. Textbook: word[ids], the rows of padding too.
    x = word[ids.reshape(-1)[layout.real]]  # [n] -> [n, d]
    if position is not None:
        x += position[position_ids(ids, cfg).reshape(-1)[layout.real]]
    if token_type is not None:
        x += token_type[0]  # single sentences: every token has type 0
    return layer_norm(x, **ln, eps=cfg.layer_norm_eps)


def encode_tokens(ids: np.ndarray, mask: np.ndarray, params: dict,
                  cfg: EncoderConfig) -> np.ndarray:
    """The whole encoder: token ids [b, s] and mask [b, s] -> token vectors [b, s, d]
    (zeros at padded places)."""
    layout = Layout.from_mask(mask)
    x = embed(ids, layout, **params["embeddings"], cfg=cfg)  # [n, d]
    position_bias = None
    if "relative_attention_bias" in params:  # MPNet: one bias for every layer, computed once
        # Textbook: the bias of the padded grid, [h, s, s], added to every text's scores.
        # Here: each run of texts of length L takes its top-left [h, L, L] corner, the same
        # numbers, since a bias depends only on key - query position. Transposed once here,
        # as `attention` keeps the scores, and copied so that each row is contiguous.
        bias = relative_position_bias(params["relative_attention_bias"], layout.width)
        position_bias = np.ascontiguousarray(bias.swapaxes(-1, -2))  # [h, q, k] -> [h, k, q]
    block = pre_norm_encoder_layer if cfg.norm_placement == "pre" else encoder_layer
    rotations = {}  # rotary base -> (cos, sin) of every packed token, made once per batch
    for i, layer in enumerate(params["layers"]):
        context = {"position_bias": position_bias, "window": cfg.layer_window(i)}
        if cfg.positions == "rotary":
            theta = cfg.layer_rope_theta(i)
            if theta not in rotations:
                inv_freq = rotary_frequencies(cfg.head_dim, theta, cfg.rope_scale)
                rotations[theta] = rotary_tables(layout.positions(), inv_freq)  # [n, hd/2] x2
            context["rotary"] = rotations[theta]
        x = block(x, layout, **layer, cfg=cfg, **context)
    if "final_norm" in params:  # pre-LN: the last block's output is not normalized yet
        x = layer_norm(x, **params["final_norm"], eps=cfg.layer_norm_eps)
    return layout.to_grid(x)


# ---------------------------------------------------------------------------- rotary positions

def rotary_frequencies(head_dim: int, theta: float, scale: float = 1.0) -> np.ndarray:
    """RoPE's angular speeds, one per pair of dimensions: 1 / theta^(2i / head_dim) / scale,
    i = 0 .. head_dim/2 - 1, as float32 [head_dim/2].

    The reference computes them in float32; the power here is taken in float64 from the same
    float32 exponents and rounded once, which gives torch's float32 values (to an ulp at
    most on a few of the slowest frequencies, where an ulp moves an angle by < 1e-6 rad).

    `scale` divides every frequency, which is the same as dividing every position by it:
    transformers' "linear" rope scaling. GTE's fixed NTK scaling (Alibaba's code, rope_scaling
    {"type": "ntk", "factor": f}) takes the base theta·f and divides the frequencies by
    f^(2 / head_dim): model.py reads it as theta·f and scale f^(2 / head_dim).
    """
    exponents = np.arange(0, head_dim, 2, dtype=np.float32) / np.float32(head_dim)
    inv_freq = np.float32(1) / (theta ** exponents.astype(np.float64)).astype(np.float32)
    if scale != 1.0:
        inv_freq /= np.float32(scale)
    return inv_freq  # [hd/2]


def rotary_tables(positions: np.ndarray, inv_freq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin of each token's angles, position × frequency: [n] -> two [n, hd/2].

    The angle is a float32 product, as in the reference (positions are whole numbers, exact in
    float32 up to 2^24); its cosine and sine are taken in float64 and rounded once. RoPE's
    tables repeat these halves twice along head_dim (`rotate_half`'s convention), which
    `apply_rotary` uses without building them.
    """
    angles = positions.astype(np.float32)[:, None] * inv_freq  # [n, 1] * [hd/2] -> [n, hd/2]
    angles = angles.astype(np.float64)
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


def apply_rotary(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """Rotate each head's vector by its token's angles: x [n, h, hd], cos/sin [n, hd/2].

    rotate_half's convention (not interleaved pairs): dimension i is paired with i + hd/2,
    and each pair (a, b) turns by its angle into (a·cos - b·sin, b·cos + a·sin).
    Textbook: x·[cos, cos] + rotate_half(x)·[sin, sin] with rotate_half(x) = [-b, a]; the
    same products and sums, without building the doubled tables or rotate_half's copy.
    """
    half = x.shape[-1] // 2
    a, b = x[..., :half], x[..., half:]  # [n, h, hd/2] each
    c, s = cos[:, None, :], sin[:, None, :]  # [n, 1, hd/2]: the same angle for every head
    out = np.empty_like(x)
    np.multiply(a, c, out=out[..., :half])
    out[..., :half] -= b * s
    np.multiply(b, c, out=out[..., half:])
    out[..., half:] += a * s
    return out


# ---------------------------------------------------------------------------- local windows

def window_allows(query_pos: np.ndarray, key_pos: np.ndarray, window: int) -> np.ndarray:
    """May a query at query_pos read the key at key_pos in a local layer? Yes when they are at
    most `window` positions apart, on either side (ModernBERT: window = local_attention // 2,
    so a token sees 2·window + 1 tokens, itself included)."""
    return np.abs(query_pos - key_pos) <= window


@functools.lru_cache(maxsize=16)
def _window_bias_t(first_key: int, keys: int, queries: int, window: int) -> np.ndarray:
    """The window as a bias on transposed scores, [keys, queries]: 0 where the query may read
    the key, -inf where it may not (exp(-inf) = 0). Keys start `first_key` positions from the
    first query (<= 0). Blocks away from a text's ends all have the same one: cached."""
    allowed = window_allows(np.arange(queries)[None, :], first_key + np.arange(keys)[:, None],
                            window)
    bias = np.where(allowed, np.float32(0), np.float32(-np.inf))
    bias.flags.writeable = False
    return bias
# ---------------------------------------------------------------------------- decoder embedders
# Qwen3-Embedding and EmbeddingGemma, fast form. textbook.decode_tokens is the plain one; the
# techniques are the encoder's above (packed real tokens, runs of equal length, transposed
# scores in cache-sized blocks) plus the ones marked "Textbook:" below.

@dataclass(frozen=True)
class DecoderConfig:
    """The settings of a decoder embedder, read from config.json by model.decoder_config."""
    architecture: str  # config.json's model_type: "qwen3" or "gemma3_text"
    hidden_size: int  # d
    num_layers: int
    num_heads: int  # query heads
    num_kv_heads: int  # key/value heads; each serves num_heads / num_kv_heads query heads
    head_dim: int  # hd; num_heads · hd need not be d (Qwen3-Embedding-0.6B: 16 · 128 = 2048)
    intermediate_size: int  # width of the gated feed-forward
    vocab_size: int
    max_position_embeddings: int  # the longest text the rotary positions were trained for
    rms_norm_eps: float
    hidden_act: str  # the gate's activation: silu (Qwen3), gelu_pytorch_tanh (Gemma)
    # "full" or "sliding" for each layer (config.json's layer_types, shortened)
    layer_kinds: tuple[str, ...]
    rope_theta_full: float  # rotary base θ of full layers
    rope_theta_sliding: float  # ... and of sliding-window layers (Gemma: 10000)
    sliding_window: int | None  # config.json's sliding_window, as written there
    causal: bool  # True: a token sees only itself and earlier ones (Qwen3)
    attention_scale: float  # multiplies q·kᵀ: 1/√hd, Gemma 3: 1/√query_pre_attn_scalar
    embedding_scale: float = 1.0  # multiplies the token vectors: Gemma √d (as float32)
    norm_offset: float = 0.0  # RMSNorm scales by offset + w: Gemma stores w centred on 0

    @property
    def max_tokens(self) -> int:
        return self.max_position_embeddings

    def rope_theta(self, kind: str) -> float:
        return self.rope_theta_sliding if kind == "sliding" else self.rope_theta_full

    def layer_window(self, kind: str) -> int | None:
        """How far apart a query and a key may be in a layer of this kind (window_allows),
        None for any distance; a causal model also hides every key after its query.

        A causal sliding window of w tokens (config.json's sliding_window) holds the query
        and the w - 1 before it (transformers: key > query - w). Gemma's bidirectional
        window sees w // 2 tokens on each side (transformers halves config.json's window to
        w // 2 + 1 and keeps the keys closer than that)."""
        if kind != "sliding" or self.sliding_window is None:
            return None
        return self.sliding_window - 1 if self.causal else self.sliding_window // 2


def rms_norm(x: np.ndarray, w: np.ndarray, eps: float, offset: float = 0.0,
             out: np.ndarray | None = None) -> np.ndarray:
    """x / √(mean(x²) + eps) · (offset + w) over the last axis."""
    # Textbook: np.mean(x * x), a temporary as large as x. Here: the mean square as one
    # einsum, and the division and scaling written into `out` (x itself, for q and k).
    ms = np.einsum("...i,...i->...", x, x)[..., None]  # [..., 1]
    ms /= np.float32(x.shape[-1])
    ms += np.float32(eps)
    y = np.divide(x, np.sqrt(ms, out=ms), out=out)
    y *= (np.float32(offset) + w) if offset else w
    return y


def visibility_bias_t(length: int, window: int | None, causal: bool) -> np.ndarray | None:
    """textbook.visibility_bias for one text of `length` tokens, transposed as `attention`
    keeps its scores: [keys, queries], 0 where the key is seen, the most negative float32
    where not. None when every key is seen (a full bidirectional layer)."""
    # Textbook: one [b, 1, s, s] bias for the padded batch, padding included. Here: no
    # padding to hide (runs of equal length), so only the window, the same for every text.
    if not causal and (window is None or window >= length - 1):
        return None
    key, query = np.arange(length)[:, None], np.arange(length)[None, :]
    visible = np.ones((length, length), dtype=bool)
    if window is not None:
        visible &= window_allows(query, key, window)
    if causal:
        visible &= key <= query
    return np.where(visible, np.float32(0), np.finfo(np.float32).min)


def grouped_query_attention(x: np.ndarray, layout: Layout, cos: np.ndarray, sin: np.ndarray,
                            window: int | None, q: dict, k: dict, v: dict, out: dict,
                            q_norm: dict, k_norm: dict, cfg: DecoderConfig) -> np.ndarray:
    """Self-attention with fewer key/value heads than query heads, within each text's window.
    x: [n, d] -> [n, d]; cos, sin: [n, hd/2], each token's rotary angles."""
    n = x.shape[0]
    hd, kv = cfg.head_dim, cfg.num_kv_heads
    group = cfg.num_heads // kv
    eps, offset = cfg.rms_norm_eps, cfg.norm_offset
    q_ = linear(x, **q).reshape(n, cfg.num_heads, hd)  # [n, d] -> [n, h, hd]
    k_ = linear(x, **k).reshape(n, kv, hd)  # [n, d] -> [n, kv, hd]
    v_ = linear(x, **v)  # [n, kv·hd]
    q_ = apply_rotary(rms_norm(q_, **q_norm, eps=eps, offset=offset, out=q_), cos, sin)
    k_ = apply_rotary(rms_norm(k_, **k_norm, eps=eps, offset=offset, out=k_), cos, sin)
    q_ *= np.float32(cfg.attention_scale)  # on q instead of on the larger scores
    mixed = np.empty((n, cfg.num_heads * hd), dtype=np.float32)
    for start, texts, length in layout.groups:
        rows = slice(start, start + texts * length)
        # Textbook: np.repeat copies each key/value head for its group of query heads. Here:
        # the query heads of one key/value head are an axis of their own, [.., kv, group,
        # length, hd], and the key/value head gets an axis of 1 that matmul broadcasts
        # across the group, so each key and value is read where it lies, never copied.
        q5, m5 = (a[rows].reshape(texts, length, kv, group, hd) for a in (q_, mixed))
        k4, v4 = (a[rows].reshape(texts, length, kv, hd) for a in (k_, v_))
        bias_t = visibility_bias_t(length, window, cfg.causal)  # [keys, queries] or None
        for t, h in _blocks(texts, kv, length, group):
            qb, ob = (a[t, :, h].transpose(0, 2, 3, 1, 4) for a in (q5, m5))  # [., kv., g, L, hd]
            kb, vb = (a[t, :, h].transpose(0, 2, 1, 3)[:, :, None] for a in (k4, v4))  # [., kv., 1, L, hd]
            attention(qb, kb, vb, out=ob, bias_t=bias_t)
    return linear(mixed, **out)  # [n, h·hd] -> [n, d]


def gated_feed_forward(x: np.ndarray, gate: dict, up: dict, down: dict, act) -> np.ndarray:
    h = linear(x, **gate)  # [n, d] -> [n, ff]
    act(h, out=h)  # textbook: act(h), a new array
    h *= linear(x, **up)  # [n, ff]
    return linear(h, **down)  # [n, ff] -> [n, d]


def decoder_layer(x: np.ndarray, layout: Layout, cos: np.ndarray, sin: np.ndarray, window,
                  ln_attn: dict, attn: dict, ln_ffn: dict, ffn: dict, cfg: DecoderConfig,
                  ln_attn_out: dict | None = None, ln_ffn_out: dict | None = None) -> np.ndarray:
    """One pre-norm block (Gemma: with its sublayers' outputs normalized too)."""
    eps, offset = cfg.rms_norm_eps, cfg.norm_offset
    a = grouped_query_attention(rms_norm(x, **ln_attn, eps=eps, offset=offset), layout,
                                cos, sin, window, **attn, cfg=cfg)
    if ln_attn_out is not None:
        rms_norm(a, **ln_attn_out, eps=eps, offset=offset, out=a)
    x = x + a
    f = gated_feed_forward(rms_norm(x, **ln_ffn, eps=eps, offset=offset), **ffn,
                           act=ACTIVATIONS[cfg.hidden_act])
    if ln_ffn_out is not None:
        rms_norm(f, **ln_ffn_out, eps=eps, offset=offset, out=f)
    x += f
    return x


def widen_bf16(bits: np.ndarray) -> np.ndarray:
    """bfloat16 stored as its 16 bits (uint16) -> float32, exactly: a bfloat16 is the top half
    of a float32, so the bits are shifted into the high half of 32. Keeps the array's layout
    (a transposed view stays transposed)."""
    wide = bits.astype(np.uint32)
    wide <<= 16
    return wide.view(np.float32)


def widen(tree):
    """A parameter tree with every bfloat16 leaf (uint16 bits) widened to float32; float32
    leaves are passed through as they are."""
    if isinstance(tree, dict):
        return {key: widen(value) for key, value in tree.items()}
    if isinstance(tree, np.ndarray) and tree.dtype == np.uint16:
        return widen_bf16(tree)
    return tree


def decode_tokens(ids: np.ndarray, mask: np.ndarray, params: dict,
                  cfg: DecoderConfig) -> np.ndarray:
    """A decoder embedder: token ids [b, s] and mask [b, s] -> token vectors [b, s, d] (zeros
    at padded places). The parameter tree may hold bfloat16 weights as they lie in the file
    (uint16): each layer's are widened to float32 just before the layer runs."""
    layout = Layout.from_mask(mask)
    # Textbook: positions 0..s-1 of the padded grid. Here: the real tokens are a prefix of
    # each row, so a packed token's position is its column in the grid.
    positions = layout.real % layout.width  # [n]
    angles = {}
    for kind in set(cfg.layer_kinds):  # computed once per batch, not per layer
        inv_freq = rotary_frequencies(cfg.head_dim, cfg.rope_theta(kind))  # [hd/2]
        angles[kind] = (*rotary_tables(positions, inv_freq),  # [n, hd/2] each
                        cfg.layer_window(kind))
    # Rows of the word table gathered first, then widened: a bfloat16 table stays in the
    # file, only the batch's rows become float32.
    word = params["embeddings"]["word"]
    x = widen(word[ids.reshape(-1)[layout.real]])  # [n] -> [n, d], a new array
    x *= np.float32(cfg.embedding_scale)
    for layer, kind in zip(params["layers"], cfg.layer_kinds):
        # Textbook: float32 weights throughout. Here a bfloat16 checkpoint stays memory-
        # mapped, and only the running layer's weights exist as float32.
        x = decoder_layer(x, layout, *angles[kind], **widen(layer), cfg=cfg)
    x = rms_norm(x, **widen(params["final_norm"]), eps=cfg.rms_norm_eps, offset=cfg.norm_offset)
    return layout.to_grid(x)
