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

    @property
    def max_tokens(self) -> int:
        """How many tokens the position table can hold (512 for every family here)."""
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

def layer_norm(x: np.ndarray, g: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    """Normalize each token vector over its last axis (biased variance), then scale and shift."""
    # Textbook: g·(x - mean)/√(np.var(x) + eps) + b. Here: centered once, the variance as a dot
    # product of the centered rows, then scaled and shifted in place (no temporaries).
    out = x - x.mean(axis=-1, keepdims=True)  # [..., d], centered
    var = np.einsum("...i,...i->...", out, out)[..., None] / np.float32(x.shape[-1])  # [..., 1]
    out /= np.sqrt(var + np.float32(eps))
    out *= g
    out += b
    return out


def linear(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """x·W + b with W stored [in, out] (checkpoint.py transposes torch's [out, in] once); no
    b: no bias (the decoder embedders' projections)."""
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

    def to_grid(self, x: np.ndarray) -> np.ndarray:
        """[n, k] packed -> [b, s, k] with zeros at padded places."""
        grid = np.zeros((self.batch * self.width, x.shape[-1]), dtype=x.dtype)
        grid[self.real] = x
        return grid.reshape(self.batch, self.width, -1)

    def to_packed(self, grid: np.ndarray) -> np.ndarray:
        """[b, s, k] -> [n, k], the real tokens only: the inverse of `to_grid`, for comparing
        with a padded reference (the encoder itself never builds a grid until pooling)."""
        return grid.reshape(self.batch * self.width, -1)[self.real]


def _blocks(texts: int, heads: int, length: int, group: int = 1):
    """Split texts × heads into blocks whose [length, length] score matrices fit in cache.

    Textbook: the scores of every text and head at once, [b, h, s, s].

    A block's scores go from q·kᵀ through exp() to the product with v while they stay in
    the CPU's L2 cache; one long text's scores for all heads at once would not (12 heads ×
    256² floats are 3 MB). With grouped-query attention a (text, key/value head) pair has
    `group` query heads, so `group` score matrices.
    """
    pairs = max(1, 4 * _BLOCK // (group * length * length))  # (text, head) pairs per block
    if pairs >= heads:  # whole texts, several at a time
        step = pairs // heads
        for t in range(0, texts, step):
            yield slice(t, t + step), slice(None)
    else:  # a few heads of one text at a time
        for t in range(texts):
            for h in range(0, heads, pairs):
                yield slice(t, t + 1), slice(h, h + pairs)


def multi_head_attention(x: np.ndarray, layout: Layout, q: dict, k: dict, v: dict, out: dict,
                         num_heads: int, position_bias: np.ndarray | None = None) -> np.ndarray:
    """Self-attention: every token mixes the value vectors of all tokens of its own text."""
    n, d = x.shape
    head_dim = d // num_heads
    # Textbook: the whole padded grid split into heads at once, [b, s, d] -> [b, h, s, hd].
    # Here: each run of equal-length texts seen as [texts, heads, length, hd] views of the
    # packed rows, a cache-sized block of (text, head) pairs at a time.
    q_ = linear(x, **q)  # [n, d] -> [n, d]
    q_ *= np.float32(1 / math.sqrt(head_dim))  # the same as scaling q·kᵀ, on a smaller array
    k_, v_ = linear(x, **k), linear(x, **v)  # [n, d] each
    mixed = np.empty_like(q_)  # [n, d], every row written below
    for start, texts, length in layout.groups:
        # The group's rows seen as [texts, length, heads, hd]: a view, nothing is copied.
        # Transposing a block of it to [texts, heads, length, hd] is a view too; matmul reads
        # each head's [length, hd] matrix from it in place, with a row stride of d.
        rows = slice(start, start + texts * length)
        q4, k4, v4, m4 = (a[rows].reshape(texts, length, num_heads, head_dim)
                          for a in (q_, k_, v_, mixed))
        for t, h in _blocks(texts, num_heads, length):
            # [., length, h., hd] -> [., h., length, hd]: each head's rows, still views
            qb, kb, vb, ob = (a[t, :, h].transpose(0, 2, 1, 3) for a in (q4, k4, v4, m4))
            bias_t = None if position_bias is None else position_bias[h, :length, :length]
            attention(qb, kb, vb, out=ob, bias_t=bias_t)
    return linear(mixed, **out)  # [n, d] -> [n, d]


def feed_forward(x: np.ndarray, up: dict, down: dict, act) -> np.ndarray:
    h = linear(x, **up)  # [n, d] -> [n, 4d]
    return linear(act(h, out=h), **down)  # [n, 4d] -> [n, d]; textbook: act(h), a new array


def encoder_layer(x: np.ndarray, layout: Layout, attn: dict, ln_attn: dict, ffn: dict,
                  ln_ffn: dict, cfg: EncoderConfig,
                  position_bias: np.ndarray | None = None) -> np.ndarray:
    """One post-LN transformer block (BERT's original order: add, then normalize)."""
    eps = cfg.layer_norm_eps
    x = layer_norm(x + multi_head_attention(x, layout, **attn, num_heads=cfg.num_heads,
                                            position_bias=position_bias),
                   **ln_attn, eps=eps)
    return layer_norm(x + feed_forward(x, **ffn, act=ACTIVATIONS[cfg.hidden_act]),
                      **ln_ffn, eps=eps)


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


def embed(ids: np.ndarray, layout: Layout, word: np.ndarray, position: np.ndarray, ln: dict,
          cfg: EncoderConfig, token_type: np.ndarray | None = None) -> np.ndarray:
    """Vectors of the real tokens before the first layer: word + position (+ type), normalized.
    MPNet and DistilBERT have no token-type table."""
    # Fancy indexing reads only the rows this batch needs, so a memory-mapped 250k-row table
    # stays on disk except for those rows. Textbook: word[ids], the rows of padding too.
    x = word[ids.reshape(-1)[layout.real]]  # [n] -> [n, d]
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
    for layer in params["layers"]:
        x = encoder_layer(x, layout, **layer, cfg=cfg, position_bias=position_bias)
    return layout.to_grid(x)


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

    def reach(self, kind: str) -> tuple[int | None, int | None]:
        """How far a query sees, (before, after) in tokens, None for no limit: a query at i
        sees the key at j when i - j <= before and j - i <= after.

        Causal: nothing after. A causal sliding window of w tokens holds the query and the
        w - 1 before it (transformers: key > query - w). Gemma's bidirectional window sees
        w // 2 tokens each side (transformers halves the window of config.json, w // 2 + 1,
        and keeps keys closer than that)."""
        after = 0 if self.causal else None
        if kind != "sliding" or self.sliding_window is None:
            return None, after
        if self.causal:
            return self.sliding_window - 1, 0
        return self.sliding_window // 2, self.sliding_window // 2


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


def rotary_angles(positions: np.ndarray, head_dim: int,
                  theta: float) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin of each position's angles for the first half of a head: [n] -> two
    [n, hd/2] (the second half turns by the same angles)."""
    inv_freq = 1 / np.float32(theta) ** (np.arange(0, head_dim, 2, dtype=np.float32)
                                         / np.float32(head_dim))  # [hd/2]
    angles = positions.astype(np.float32)[:, None] * inv_freq  # [n, hd/2]
    return np.cos(angles), np.sin(angles)


def rotate(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """Rotary positions in place: each pair (x1, x2) = (x[i], x[i + hd/2]) of a head becomes
    (x1·cos - x2·sin, x2·cos + x1·sin). x: [n, heads, hd]; cos, sin: [n, 1, hd/2]."""
    # Textbook: x·cos + rotate_half(x)·sin on the whole head, with rotate_half a new array
    # and cos, sin repeated for both halves. Here: the two halves as views, updated in place.
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    x2_sin, x1_sin = x2 * sin, x1 * sin
    x1 *= cos
    x1 -= x2_sin
    x2 *= cos
    x2 += x1_sin
    return x


def visibility_bias_t(length: int, before: int | None, after: int | None) -> np.ndarray | None:
    """The window of textbook.visibility_bias for one text of `length` tokens, transposed as
    `attention` keeps its scores: [keys, queries], 0 where the key is seen, the most negative
    float32 where not. None when every key is seen (a full bidirectional layer)."""
    # Textbook: one [b, 1, s, s] bias for the padded batch, padding included. Here: no
    # padding to hide (runs of equal length), so only the window, the same for every text.
    if (before is None or before >= length - 1) and (after is None or after >= length - 1):
        return None
    key, query = np.arange(length)[:, None], np.arange(length)[None, :]
    visible = np.ones((length, length), dtype=bool)
    if before is not None:
        visible &= query - key <= before
    if after is not None:
        visible &= key - query <= after
    return np.where(visible, np.float32(0), np.finfo(np.float32).min)


def grouped_query_attention(x: np.ndarray, layout: Layout, cos: np.ndarray, sin: np.ndarray,
                            reach: tuple[int | None, int | None], q: dict, k: dict, v: dict,
                            out: dict, q_norm: dict, k_norm: dict,
                            cfg: DecoderConfig) -> np.ndarray:
    """Self-attention with fewer key/value heads than query heads, within each text's window.
    x: [n, d] -> [n, d]; cos, sin: [n, 1, hd/2], each token's rotary angles."""
    n = x.shape[0]
    hd, kv = cfg.head_dim, cfg.num_kv_heads
    group = cfg.num_heads // kv
    eps, offset = cfg.rms_norm_eps, cfg.norm_offset
    q_ = linear(x, **q).reshape(n, cfg.num_heads, hd)  # [n, d] -> [n, h, hd]
    k_ = linear(x, **k).reshape(n, kv, hd)  # [n, d] -> [n, kv, hd]
    v_ = linear(x, **v)  # [n, kv·hd]
    rotate(rms_norm(q_, **q_norm, eps=eps, offset=offset, out=q_), cos, sin)
    rotate(rms_norm(k_, **k_norm, eps=eps, offset=offset, out=k_), cos, sin)
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
        bias_t = visibility_bias_t(length, *reach)  # [keys, queries] or None
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


def decoder_layer(x: np.ndarray, layout: Layout, cos: np.ndarray, sin: np.ndarray, reach,
                  ln_attn: dict, attn: dict, ln_ffn: dict, ffn: dict, cfg: DecoderConfig,
                  ln_attn_out: dict | None = None, ln_ffn_out: dict | None = None) -> np.ndarray:
    """One pre-norm block (Gemma: with its sublayers' outputs normalized too)."""
    eps, offset = cfg.rms_norm_eps, cfg.norm_offset
    a = grouped_query_attention(rms_norm(x, **ln_attn, eps=eps, offset=offset), layout,
                                cos, sin, reach, **attn, cfg=cfg)
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
        cos, sin = rotary_angles(positions, cfg.head_dim, cfg.rope_theta(kind))  # [n, hd/2]
        angles[kind] = cos[:, None], sin[:, None], cfg.reach(kind)  # [n, 1, hd/2]
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
