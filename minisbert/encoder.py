"""The transformer encoder (BERT, XLM-R, RoBERTa, MPNet, DistilBERT, ModernBERT, GTE,
NomicBERT) as pure NumPy functions, fast form.

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
config.json as families.py says, and the parameter tree): LayerNorm eps, the activation,
where position ids start, whether there is a token-type table (not in MPNet and DistilBERT),
whether a relative position bias is added to the attention scores (MPNet), and which block
each step of a layer uses (`cfg.blocks`, looked up in NORMS and FEED_FORWARDS). Their tensor
names differ too, which only checkpoint.py reads (from families.py). The activations are
activations.py's.

Long texts (ModernBERT and GTE read 8,192 tokens) never build a text's whole [h, s, s]
scores: attention goes one head and a block of queries at a time (`_query_blocks`), and a
local layer's block reads only the keys in its window.

Cross-encoders end in a classification head instead of pooling: `classify` runs the encoder
and `classifier_head` on it, and, as the head reads only the first token of each text, computes
the last layer for that token alone (`first_token_layer`). Token types come as data
(`type_ids`): a pair's second text has type 1 in BERT, every token 0 elsewhere.

The decoder embedders (Qwen3-Embedding, EmbeddingGemma; Blocks.layer "decoder") have a layer
of their own, `decoder_layer`, at the end of this file: grouped-query attention with q/k norms,
causal or bidirectional, RMSNorm, bfloat16 weights widened one layer at a time. They share
this file's rotary tables, gated feed-forward, window bias and blocks of queries;
`encode_tokens` hands them to `decode_tokens`.

Left out on purpose: dropout (inference only), relative position embeddings other than MPNet's
bias, cross attention, and any training code.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass

import numpy as np

from . import threads
from .activations import ACTIVATIONS
from .families import EncoderConfig, HeadConfig
from .textbook import (position_ids, relative_position_bias, rotary_frequencies, rotary_tables,
                       window_allows)
# bfloat16 bits -> float32: the weight readers' function, under the name the decoder uses here.
from .weights import bf16_to_float32 as widen_bf16

# EncoderConfig is families.py's (imported here too, for callers of this module). The steps where
# the fast form has nothing to add are the textbook's: position numbering (position_ids),
# MPNet's relative position bias (relative_position_bias), the rotary angles
# (rotary_frequencies, rotary_tables) and the rule of a local window (window_allows).


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


def linear(x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    """x·W + b with W stored [in, out] (checkpoint.py transposes torch's [out, in] once);
    b None: no bias (ModernBERT, NomicBERT and GTE's gated projections have none)."""
    # Textbook: x @ w + b on [b, s, in]. Here: folding [..., in] to 2-D makes this one large
    # BLAS call; NumPy runs a 3-D @ 2-D product as one small call per leading index, several
    # times slower.
    x2 = x.reshape(-1, x.shape[-1])
    if w.dtype == np.uint16:  # bfloat16 bits, as a decoder embedder's file holds them
        y = _bf16_product(x2, w)
    else:
        y = x2 @ w  # [n, in] -> [n, out]
    if b is not None:
        y += b
    return y.reshape(*x.shape[:-1], w.shape[1])


# Fewer rows than this: a bfloat16 weight is widened a block of columns at a time (see below).
_BF16_FEW_ROWS = 64
_BF16_COLUMNS = 256  # [in, 256] float32: 1 MB at in = 1,024, which stays in the L2 cache


def _bf16_product(x: np.ndarray, bits: np.ndarray) -> np.ndarray:
    """x [n, in] @ W [in, out], W given as bfloat16 bits (uint16): x @ widen_bf16(W).

    Textbook: float32 weights. Widening all of W costs reading its 2 bytes and writing and
    reading back 4 per weight, which for a few rows (one short query) takes longer than the
    product itself. So for fewer than _BF16_FEW_ROWS rows W is widened a block of columns
    at a time, each block multiplied while it is still in the cache: memory then sees only
    the 2 bytes of each weight, half of what a float32 copy would read. For more rows, the
    product's arithmetic dominates and W is widened whole, for one large BLAS call."""
    if x.shape[0] >= _BF16_FEW_ROWS:
        return x @ widen_bf16(bits)
    # bits is a transposed view of the file's [out, in] matrix, so a block of its columns is
    # a block of the file's rows, [cols, in], contiguous. Multiplied as [cols, in] @ [in, n]:
    # OpenBLAS runs that product twice as fast as x @ block.T (measured, n = 10, in = 768).
    x_t = np.ascontiguousarray(x.T)  # [in, n]
    y = np.empty((x.shape[0], bits.shape[1]), dtype=np.float32)
    for j in range(0, bits.shape[1], _BF16_COLUMNS):
        cols = slice(j, j + _BF16_COLUMNS)
        y[:, cols] = (widen_bf16(bits.T[cols]) @ x_t).T  # [cols, n] -> [n, cols]
    return y


def attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, out: np.ndarray,
              bias_t: np.ndarray | None = None) -> np.ndarray:
    """softmax(q·kᵀ + bias)·v for a stack of heads, written into `out`.

    q, k, v, out: [..., length, hd]; q already scaled by 1/√hd. `out` may be a strided view.
    bias_t: MPNet's relative position bias, transposed as the scores are, [heads, keys, queries],
    or a local layer's window (-inf beyond it), [keys, queries].
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

    @property
    def first(self) -> np.ndarray:
        """[b] the row in x of each text's first token ([CLS], <s>); every text has one."""
        lengths = np.diff(self.real // self.width, prepend=-1)  # nonzero where a text starts
        return np.flatnonzero(lengths)

    def to_grid(self, x: np.ndarray) -> np.ndarray:
        """[n, k] packed -> [b, s, k] with zeros at padded places."""
        grid = np.zeros((self.batch * self.width, x.shape[-1]), dtype=x.dtype)
        grid[self.real] = x
        return grid.reshape(self.batch, self.width, -1)

    def to_packed(self, grid: np.ndarray) -> np.ndarray:
        """[b, s, k] -> [n, k], the real tokens only: the inverse of `to_grid`, for comparing
        with a padded reference (the encoder itself never builds a grid until pooling)."""
        return grid.reshape(self.batch * self.width, -1)[self.real]


_SCORES = 1 << 18  # attention scores per block: 1 MB of float32, which stays in L2 cache


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


def _query_blocks(length: int, window: int, causal: bool = False):
    """Split one text's queries into blocks, each with the keys it reads: (queries, keys) slices.

    Textbook: all queries against all keys at once, [h, s, s] scores: 3.2 GB for one text of
    8,192 tokens and 12 heads. Here: a block of queries at a time, one head at a time, so the
    scores held at once are [keys, block], a few MB however long the text is. A
    global layer's block reads every key; a local layer's reads only the keys within `window`
    positions of the block, so its cost grows with length × window instead of length²; a
    causal layer's reads only the keys up to its last query.
    Softmax runs over each query's own keys, so splitting the queries changes no number.
    """
    if window:  # block × (block + 2·window) scores
        # A query reads 2·window + 1 keys, its block block + 2·window: blocks as wide as the
        # window read 1.5× the keys they need, where blocks filling the cache budget (452
        # queries at window 64) read 4.5×; narrower blocks mean more, smaller products.
        block = max(_LOCAL_QUERIES, window)
    elif causal:  # block × (keys up to the block's end) scores
        # A query reads the keys up to itself, half of the text's on average; b blocks of
        # _CAUSAL_QUERIES read (b + 1) / 2b of the keys, 62.5% at 512 tokens.
        block = _CAUSAL_QUERIES
    else:  # block × length scores, about 16·_SCORES (16 MB)
        # Larger than a local block: with every key in a block, the products q·kᵀ and e·v
        # are long and thin, and BLAS runs such a product of few queries far below its
        # speed (measured, 8,192 keys, hd 64: 32 queries per block 20x slower than 512).
        block = max(_SCORES >> 10, (_SCORES << 4) // length)
    for q0 in range(0, length, block):
        q1 = min(q0 + block, length)
        if window:
            keys = slice(max(0, q0 - window), min(length, q1 + window if not causal else q1))
        else:
            keys = slice(0, q1 if causal else length)
        yield slice(q0, q1), keys


_LOCAL_QUERIES = 32  # a local layer's fewest queries per block, for a narrow window

# A causal layer's queries per block: small enough to skip most of the keys after them, large
# enough for q·kᵀ and e·v to be products BLAS runs at speed. Measured at Qwen3-0.6B's shape
# (4 texts of 512 tokens, one core), one attention sublayer, its four projections (0.17 s)
# included: 32 queries 0.295 s, 64 0.278 s, 128 0.272 s, 256 0.274 s; the whole text at
# once, masking half of the scores, 0.318 s.
_CAUSAL_QUERIES = 128


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
    scale = 1 / math.sqrt(head_dim)  # on q: the same as scaling q·kᵀ, on a smaller array
    if rotary is not None:  # in place, q scaled as it is rotated
        apply_rotary(q_.reshape(n, num_heads, head_dim), *rotary, scale=scale)
        apply_rotary(k_.reshape(n, num_heads, head_dim), *rotary)
    else:
        q_ *= np.float32(scale)
    mixed = np.empty_like(q_)  # [n, d], every row written by _mix
    _mix(q_, k_, v_, mixed, layout, num_heads, position_bias, window)
    del q_, k_, v_  # freed before the output projection: three [n, d] arrays less at the peak
    return linear(mixed, **out)  # [n, d] -> [n, d]


def _mix(q_: np.ndarray, k_: np.ndarray, v_: np.ndarray, mixed: np.ndarray, layout: Layout,
         num_heads: int, position_bias: np.ndarray | None, window: int) -> None:
    """Attention of multi_head_attention's q, k, v ([n, d] each, q scaled), written into
    `mixed` [n, d]: each run of equal-length texts, a block of (text, head) pairs at a time."""
    head_dim = q_.shape[1] // num_heads
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
            def one_head(pair, q4=q4, k4=k4, v4=v4, m4=m4, length=length):
                t, h = pair
                qh, kh, vh, oh = (a[t, :, h] for a in (q4, k4, v4, m4))  # [length, hd] each
                for qs, ks in _query_blocks(length, window):
                    bias_t = None
                    if window:  # keys beyond the window of a query get -inf
                        bias_t = _window_bias_t(ks.start - qs.start, ks.stop - ks.start,
                                                qs.stop - qs.start, window)
                    elif position_bias is not None:
                        bias_t = position_bias[h, ks, qs]
                    attention(qh[qs], kh[ks], vh[ks], out=oh[qs], bias_t=bias_t)
            # Each head writes its own columns of `mixed`: heads may run in parallel threads
            # (threads.run_tasks: when this encode is not already one of several batches
            # run at once), so exp() and the softmax use every core, not only BLAS.
            threads.run_tasks(one_head, itertools.product(range(texts), range(num_heads)))
            continue
        for t, h in _blocks(texts, num_heads, length):
            # [., length, h., hd] -> [., h., length, hd]: each head's rows, still views
            qb, kb, vb, ob = (a[t, :, h].transpose(0, 2, 1, 3) for a in (q4, k4, v4, m4))
            bias_t = None if position_bias is None else position_bias[h, :length, :length]
            attention(qb, kb, vb, out=ob, bias_t=bias_t)


def feed_forward(x: np.ndarray, up: dict, down: dict, act) -> np.ndarray:
    h = linear(x, **up)  # [n, d] -> [n, 4d]
    return linear(act(h, out=h), **down)  # [n, 4d] -> [n, d]; textbook: act(h), a new array


def gated_feed_forward(x: np.ndarray, gate: dict, up: dict, down: dict, act) -> np.ndarray:
    """down(act(gate(x)) · up(x)): a GLU feed-forward (GeGLU with GELU, SwiGLU with SiLU).

    The activated projection is `gate`: ModernBERT's first half of Wi, GTE's second half of
    up_gate_proj, NomicBERT's fc12 (families.py says which is which)."""
    h = linear(x, **gate)  # [n, d] -> [n, ff]
    act(h, out=h)  # textbook: act(gate(x)), a new array
    h *= linear(x, **up)  # [n, ff]
    return linear(h, **down)  # [n, ff] -> [n, d]


def rms_norm(x: np.ndarray, g: np.ndarray, b: np.ndarray | None, eps: float, offset: float = 0.0,
             out: np.ndarray | None = None) -> np.ndarray:
    """x / √(mean(x²) + eps) · (offset + g) over the last axis (b: always None)."""
    # Textbook: np.mean(x * x), a temporary as large as x. Here: the mean square as one
    # einsum, and the division and scaling written into `out` (x itself, for q and k).
    ms = np.einsum("...i,...i->...", x, x)[..., None]  # [..., 1]
    ms /= np.float32(x.shape[-1])
    ms += np.float32(eps)
    y = np.divide(x, np.sqrt(ms, out=ms), out=out)
    y *= (np.float32(offset) + g) if offset else g
    return y


# Each family names one function per step of a layer (families.Blocks); these tables hold them.
NORMS = {"layer": layer_norm, "rms": rms_norm}
FEED_FORWARDS = {"plain": feed_forward, "gated": gated_feed_forward}


def residual(x: np.ndarray, sublayer, norm: dict | None, cfg: EncoderConfig) -> np.ndarray:
    """x plus sublayer(x), with the norm where the family puts it: "post" (BERT's order) adds,
    then normalizes the sum; "pre" (ModernBERT) gives the sublayer a normalized copy of x and
    adds its output to x as it is (norm None: no norm, ModernBERT's first attention)."""
    normalize = NORMS[cfg.blocks.norm]
    if cfg.blocks.norm_placement == "pre":
        h = x if norm is None else normalize(x, **norm, eps=cfg.layer_norm_eps)
        y = sublayer(h)
        del h  # the normalized copy is not needed for the sum: one array less at the peak
        y += x  # textbook: x + sublayer(h), a new array
        return y  # [n, d]
    if cfg.blocks.norm_placement != "post":
        raise ValueError(f"norm_placement {cfg.blocks.norm_placement!r} is not implemented")
    return normalize(x + sublayer(x), **norm, eps=cfg.layer_norm_eps)  # [n, d]


def encoder_layer(x: np.ndarray, layout: Layout, attn: dict, ln_attn: dict | None, ffn: dict,
                  ln_ffn: dict, cfg: EncoderConfig, **context) -> np.ndarray:
    """One transformer block: self-attention, then the feed-forward, each added to its input
    with a norm (`residual`), each the block cfg.blocks names. `context`: what attention needs
    besides the weights (MPNet's position_bias; rotary cos/sin; a local layer's window)."""
    feed, act = FEED_FORWARDS[cfg.blocks.feed_forward], ACTIVATIONS[cfg.hidden_act]
    x = residual(x, lambda h: multi_head_attention(h, layout, **attn, num_heads=cfg.num_heads,
                                                   **context), ln_attn, cfg)
    return residual(x, lambda h: feed(h, **ffn, act=act), ln_ffn, cfg)


def embed(ids: np.ndarray, layout: Layout, word: np.ndarray, ln: dict, cfg: EncoderConfig,
          position: np.ndarray | None = None, token_type: np.ndarray | None = None,
          type_ids: np.ndarray | None = None) -> np.ndarray:
    """Vectors of the real tokens before the first layer: word + position (+ type), normalized.
    MPNet, DistilBERT and ModernBERT have no token-type table; rotary families no position
    table. type_ids [b, s]: None for all zeros."""
    # Fancy indexing reads only the rows this batch needs, so a memory-mapped 250k-row table
    # stays on disk except for those rows. Textbook: word[ids], the rows of padding too.
    x = word[ids.reshape(-1)[layout.real]]  # [n] -> [n, d]
    if position is not None:
        x += position[position_ids(ids, cfg).reshape(-1)[layout.real]]
    if token_type is not None:
        if type_ids is None:
            x += token_type[0]  # single sentences: every token has type 0, one row for all
        else:
            x += token_type[type_ids.reshape(-1)[layout.real]]  # [n] -> [n, d]
    return NORMS[cfg.blocks.norm](x, **ln, eps=cfg.layer_norm_eps)


def encode_tokens(ids: np.ndarray, mask: np.ndarray, params: dict, cfg: EncoderConfig,
                  type_ids: np.ndarray | None = None) -> np.ndarray:
    """The whole encoder: token ids [b, s] and mask [b, s] (type_ids [b, s], None for all
    zeros) -> token vectors [b, s, d] (zeros at padded places)."""
    if cfg.blocks.layer == "decoder":  # Qwen3, Gemma 3: see the last section
        return decode_tokens(ids, mask, params, cfg)
    layout = Layout.from_mask(mask)
    x = _encode_packed(ids, layout, params, cfg, type_ids)  # [n, d]
    return layout.to_grid(x)


def _encode_packed(ids: np.ndarray, layout: Layout, params: dict, cfg: EncoderConfig,
                   type_ids: np.ndarray | None, skip_last: bool = False) -> np.ndarray:
    """The embeddings and the layers (all but the last with skip_last) on the packed real
    tokens: [n, d]."""
    x = embed(ids, layout, **params["embeddings"], cfg=cfg, type_ids=type_ids)  # [n, d]
    position_bias = None
    if "relative_attention_bias" in params:  # MPNet: one bias for every layer, computed once
        # Textbook: the bias of the padded grid, [h, s, s], added to every text's scores.
        # Here: each run of texts of length L takes its top-left [h, L, L] corner, the same
        # numbers, since a bias depends only on key - query position. Transposed once here,
        # as `attention` keeps the scores, and copied so that each row is contiguous.
        bias = relative_position_bias(params["relative_attention_bias"], layout.width)
        position_bias = np.ascontiguousarray(bias.swapaxes(-1, -2))  # [h, q, k] -> [h, k, q]
    layers = params["layers"][:-1] if skip_last else params["layers"]
    rotations = {}  # rotary base -> (cos, sin) of every packed token, made once per batch
    for i, layer in enumerate(layers):
        context = {"position_bias": position_bias, "window": cfg.layer_window(i)}
        if cfg.blocks.positions == "rotary":
            theta = cfg.layer_rope_theta(i)
            if theta not in rotations:
                inv_freq = rotary_frequencies(cfg.head_dim, theta, cfg.rope_scale)
                rotations[theta] = rotary_tables(layout.positions(), inv_freq)  # [n, hd/2] x2
            context["rotary"] = rotations[theta]
        x = encoder_layer(x, layout, **layer, cfg=cfg, **context)  # [n, d]
    if "final_norm" in params and not skip_last:  # pre-LN: the last output is not normalized
        x = NORMS[cfg.blocks.norm](x, **params["final_norm"], eps=cfg.layer_norm_eps)
    return x


# ---------------------------------------------------------------------------- rotary positions

def apply_rotary(x: np.ndarray, cos: np.ndarray, sin: np.ndarray, scale: float = 1.0,
                 norm: tuple[np.ndarray, float, float] | None = None) -> np.ndarray:
    """Rotate each head's vector by its token's angles, in place: x [n, h, hd], cos/sin
    [n, hd/2] (textbook.rotary_tables). Returns x.

    rotate_half's convention (not interleaved pairs): dimension i is paired with i + hd/2,
    and each pair (a, b) turns by its angle into (a·cos - b·sin, b·cos + a·sin).
    norm (g, eps, offset): each head's vector RMS-normalized first (Qwen3 and Gemma's q/k
    norms, rms_norm's arguments). scale: the result multiplied by it (1/√hd, for q).
    """
    # Textbook: x·[cos, cos] + rotate_half(x)·[sin, sin] with rotate_half(x) = [-b, a], after
    # the norm and before the scaling, each a pass over the whole array (q is 16 MB for 2,048
    # tokens). Here: the same products and sums without the doubled tables or rotate_half's
    # copy, and norm, rotation and scale done on one cache-sized block of tokens before the
    # next; the scale is folded into the norm's weights, or else into the block's angles.
    n, h, hd = x.shape
    half = hd // 2
    w = None
    if norm is not None:
        g, eps, offset = norm
        w = ((np.float32(offset) + g) if offset else g) * np.float32(scale)  # [hd]
    rows = max(1, _ROTARY_BLOCK // (h * hd))  # tokens per block
    sa, sb = (np.empty((min(rows, n), h, half), dtype=x.dtype) for _ in range(2))
    for r in range(0, n, rows):
        xb = x[r:r + rows]  # [m, h, hd], a view
        m = xb.shape[0]
        c, s = cos[r:r + m, None, :], sin[r:r + m, None, :]  # [m, 1, hd/2]: every head's
        if w is not None:
            rms_norm(xb, w, None, eps, out=xb)
        elif scale != 1.0:
            c, s = c * np.float32(scale), s * np.float32(scale)
        a, b = xb[..., :half], xb[..., half:]  # [m, h, hd/2] each
        a_s, b_s = np.multiply(a, s, out=sa[:m]), np.multiply(b, s, out=sb[:m])
        a *= c
        a -= b_s  # a·cos - b·sin
        b *= c
        b += a_s  # b·cos + a·sin
    return x


_ROTARY_BLOCK = 1 << 16  # floats of q or k per block of apply_rotary: 256 KB, in the L2 cache


# ---------------------------------------------------------------------------- local windows

@functools.lru_cache(maxsize=16)
def _window_bias_t(first_key: int, keys: int, queries: int, window: int) -> np.ndarray:
    """A local layer's window (textbook.window_allows) as a bias on transposed scores,
    [keys, queries]: 0 where the query may read the key, -inf where it may not (exp(-inf) =
    0). Keys start `first_key` positions from the first query (<= 0). Blocks away from a
    text's ends all have the same one: cached."""
    bias = _visibility_bias_t(first_key, keys, queries, window, causal=False)
    bias.flags.writeable = False
    return bias


def _visibility_bias_t(first_key: int, keys: int, queries: int, window: int,
                       causal: bool) -> np.ndarray:
    """textbook.visibility_bias for a block of one text, transposed as `attention` keeps its
    scores: [keys, queries], 0 where the key is seen, -inf where not: farther than `window`
    (0: any distance) or, causal, after the query. Keys start `first_key` positions from
    the first query."""
    # Textbook: one [b, 1, s, s] bias for the padded batch, padding included. Here: no
    # padding to hide (runs of equal length), so only the window and the causal rule.
    query, key = np.arange(queries)[None, :], first_key + np.arange(keys)[:, None]
    allowed = np.ones((keys, queries), dtype=bool)
    if window:
        allowed &= window_allows(query, key, window)
    if causal:
        allowed &= key <= query
    return np.where(allowed, np.float32(0), np.float32(-np.inf))



# ---------------------------------------------------------------------------- the classifier head

def first_token_attention(x: np.ndarray, layout: Layout, q: dict, k: dict, v: dict, out: dict,
                          num_heads: int) -> np.ndarray:
    """multi_head_attention's output at the first token of each text only: [n, d] -> [b, d].

    Textbook: every token's query, [b, h, s, s] scores. The head reads only the first token
    of the last layer, so only that token's query is needed; the keys and values are still
    every token's. The scores are then [texts, h, 1, length] per run of texts."""
    n, d = x.shape
    head_dim = d // num_heads
    first = x[layout.first]  # [b, d]
    q_ = linear(first, **q)  # [b, d]
    q_ *= np.float32(1 / math.sqrt(head_dim))
    k_, v_ = linear(x, **k), linear(x, **v)  # [n, d] each
    mixed = np.empty_like(q_)  # [b, d]
    text = 0  # the texts come in layout order, one first token each
    for start, texts, length in layout.groups:
        rows = slice(start, start + texts * length)
        # [texts, length, h, hd] -> [texts, h, length, hd], views of the packed rows
        k4, v4 = (a[rows].reshape(texts, length, num_heads, head_dim).transpose(0, 2, 1, 3)
                  for a in (k_, v_))
        q4 = q_[text:text + texts].reshape(texts, num_heads, 1, head_dim)  # [texts, h, 1, hd]
        scores = q4 @ k4.swapaxes(-1, -2)  # [texts, h, 1, length]
        scores -= scores.max(axis=-1, keepdims=True)
        e = np.exp(scores, out=scores)
        e /= e.sum(axis=-1, keepdims=True)
        mixed[text:text + texts] = (e @ v4).reshape(texts, d)  # [texts, h, 1, hd] -> [texts, d]
        text += texts
    return linear(mixed, **out)  # [b, d] -> [b, d]


def first_token_layer(x: np.ndarray, layout: Layout, attn: dict, ln_attn: dict, ffn: dict,
                      ln_ffn: dict, cfg: EncoderConfig) -> np.ndarray:
    """encoder_layer's output at the first token of each text: [n, d] -> [b, d].

    Textbook: the last layer on every token, then x[:, 0]. Here the feed-forward, the norms
    and the attention's query and output run on b rows instead of n: the last layer costs
    about a sixth of the others (the key and value projections remain)."""
    normalize, eps = NORMS[cfg.blocks.norm], cfg.layer_norm_eps
    feed, act = FEED_FORWARDS[cfg.blocks.feed_forward], ACTIVATIONS[cfg.hidden_act]
    a = normalize(x[layout.first] + first_token_attention(x, layout, **attn,
                                                          num_heads=cfg.num_heads),
                  **ln_attn, eps=eps)  # [b, d]
    return normalize(a + feed(a, **ffn, act=act), **ln_ffn, eps=eps)  # [b, d]


def classifier_head(pooled: np.ndarray, dense: dict, out: dict, head: HeadConfig,
                    norm: dict | None = None) -> np.ndarray:
    """The sequence-classification head (families.ClassifierHead) on the pooled vectors:
    [b, d] -> [b, labels] logits."""
    h = ACTIVATIONS[head.activation](linear(pooled, **dense))  # [b, d] -> [b, d]
    if norm is not None:
        h = layer_norm(h, **norm, eps=head.norm_eps)
    return linear(h, **out)  # [b, d] -> [b, labels]


def classify(ids: np.ndarray, mask: np.ndarray, params: dict, cfg: EncoderConfig,
             head: HeadConfig, type_ids: np.ndarray | None = None) -> np.ndarray:
    """A cross-encoder: token ids [b, s], mask [b, s] and type ids [b, s] of b text pairs ->
    logits [b, labels]."""
    layout = Layout.from_mask(mask)
    # The shortcut reads the first token of BERT-ordered (post-norm) layers without MPNet's
    # relative bias; any other head or layer runs the whole last layer.
    first_only = (head.pooling == "cls" and cfg.blocks.norm_placement == "post"
                  and "relative_attention_bias" not in params)
    x = _encode_packed(ids, layout, params, cfg, type_ids, skip_last=first_only)  # [n, d]
    if first_only:
        pooled = first_token_layer(x, layout, **params["layers"][-1], cfg=cfg)  # [b, d]
    elif head.pooling == "cls":
        pooled = x[layout.first]  # [n, d] -> [b, d]
    else:  # the mean of each text's real tokens
        lengths = mask.sum(axis=1)  # [b]
        pooled = np.add.reduceat(x, layout.first, axis=0)  # [n, d] -> [b, d]
        pooled /= lengths[:, None].astype(np.float32)
    return classifier_head(pooled, **params["head"], head=head)  # [b, labels]


# ---------------------------------------------------------------------------- decoder embedders
# Qwen3-Embedding and EmbeddingGemma (Blocks.layer "decoder"), fast form. textbook.decode_tokens
# is the plain one; the techniques are the encoder's above (packed real tokens, runs of equal
# length, transposed scores in cache-sized blocks, a block of queries at a time for long texts)
# plus the ones marked "Textbook:" below.

def grouped_query_attention(x: np.ndarray, layout: Layout, cos: np.ndarray, sin: np.ndarray,
                            window: int, q: dict, k: dict, v: dict, out: dict,
                            q_norm: dict, k_norm: dict, cfg: EncoderConfig) -> np.ndarray:
    """Self-attention with fewer key/value heads than query heads, within each text's window
    (0: none), causal or not as cfg.blocks says. x: [n, d] -> [n, d]; cos, sin: [n, hd/2],
    each token's rotary angles."""
    n = x.shape[0]
    hd, kv = cfg.head_dim, cfg.kv_heads
    group = cfg.num_heads // kv
    eps, offset, causal = cfg.layer_norm_eps, cfg.norm_offset, cfg.causal
    q_ = linear(x, **q).reshape(n, cfg.num_heads, hd)  # [n, d] -> [n, h, hd]
    k_ = linear(x, **k).reshape(n, kv, hd)  # [n, d] -> [n, kv, hd]
    v_ = linear(x, **v)  # [n, kv·hd]
    # Each head's q and k RMS-normalized, then rotated, and q scaled (on q instead of on the
    # larger scores): one pass, in place (textbook: three).
    apply_rotary(q_, cos, sin, scale=cfg.scale, norm=(q_norm["g"], eps, offset))
    apply_rotary(k_, cos, sin, norm=(k_norm["g"], eps, offset))
    mixed = np.empty((n, cfg.num_heads * hd), dtype=np.float32)
    for start, texts, length in layout.groups:
        rows = slice(start, start + texts * length)
        # Textbook: np.repeat copies each key/value head for its group of query heads. Here:
        # the query heads of one key/value head are an axis of their own, [.., kv, group,
        # length, hd], and the key/value head gets an axis of 1 that matmul broadcasts
        # across the group, so each key and value is read where it lies, never copied.
        q5, m5 = (a[rows].reshape(texts, length, kv, group, hd) for a in (q_, mixed))
        k4, v4 = (a[rows].reshape(texts, length, kv, hd) for a in (k_, v_))
        if ((window and length - 1 > window) or (causal and length > _CAUSAL_QUERIES)
                or group * length * length > _SCORES):
            # A long text: a block of queries at a time, as multi_head_attention does, each
            # key/value head (with its group of query heads) a task; a causal block reads no
            # key after its last query. The block's bias is made once for all its heads.
            for qs, ks in _query_blocks(length, window, causal):
                bias_t = None
                if window or causal:
                    bias_t = _visibility_bias_t(ks.start - qs.start, ks.stop - ks.start,
                                                qs.stop - qs.start, window, causal)

                def one_head(pair, q5=q5, k4=k4, v4=v4, m5=m5, qs=qs, ks=ks, bias_t=bias_t):
                    t, h = pair
                    qb, ob = (a[t, qs, h].swapaxes(0, 1) for a in (q5, m5))  # [g, queries, hd]
                    attention(qb, k4[t, ks, h], v4[t, ks, h], out=ob, bias_t=bias_t)
                threads.run_tasks(one_head, itertools.product(range(texts), range(kv)))
            continue
        bias_t = None
        if causal or (window and length - 1 > window):
            bias_t = _visibility_bias_t(0, length, length, window, causal)  # [keys, queries]
        for t, h in _blocks(texts, kv, length, group):
            qb, ob = (a[t, :, h].transpose(0, 2, 3, 1, 4) for a in (q5, m5))  # [., kv., g, L, hd]
            kb, vb = (a[t, :, h].transpose(0, 2, 1, 3)[:, :, None] for a in (k4, v4))  # [., kv., 1, L, hd]
            attention(qb, kb, vb, out=ob, bias_t=bias_t)
    return linear(mixed, **out)  # [n, h·hd] -> [n, d]


def decoder_layer(x: np.ndarray, layout: Layout, cos: np.ndarray, sin: np.ndarray, window: int,
                  ln_attn: dict, attn: dict, ln_ffn: dict, ffn: dict, cfg: EncoderConfig,
                  ln_attn_out: dict | None = None, ln_ffn_out: dict | None = None) -> np.ndarray:
    """One pre-norm block (Gemma: with its sublayers' outputs normalized too)."""
    eps, offset = cfg.layer_norm_eps, cfg.norm_offset
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


def widen(tree, matrices: bool = True):
    """A parameter tree with every bfloat16 leaf (uint16 bits) widened to float32; float32
    leaves (and None) are passed through as they are. matrices=False: only the vectors (norm
    scales, biases); `linear` widens a bfloat16 matrix itself, as suits the batch."""
    if isinstance(tree, dict):
        return {key: widen(value, matrices) for key, value in tree.items()}
    if isinstance(tree, np.ndarray) and tree.dtype == np.uint16 and (matrices or tree.ndim < 2):
        return widen_bf16(tree)
    return tree


def decode_tokens(ids: np.ndarray, mask: np.ndarray, params: dict,
                  cfg: EncoderConfig) -> np.ndarray:
    """A decoder embedder: token ids [b, s] and mask [b, s] -> token vectors [b, s, d] (zeros
    at padded places). The parameter tree may hold bfloat16 weights as they lie in the file
    (uint16; checkpoint.load_params with keep_bf16): each layer's are widened to float32
    just before the layer runs."""
    layout = Layout.from_mask(mask)
    rotations = {}  # rotary base -> (cos, sin) of every packed token, made once per batch
    # Rows of the word table gathered first, then widened: a bfloat16 table stays in the
    # file, only the batch's rows become float32.
    word = params["embeddings"]["word"]
    x = widen(word[ids.reshape(-1)[layout.real]])  # [n] -> [n, d], a new array
    x *= np.float32(cfg.embedding_scale)
    for i, layer in enumerate(params["layers"]):
        theta = cfg.layer_rope_theta(i)
        if theta not in rotations:
            inv_freq = rotary_frequencies(cfg.head_dim, theta, cfg.rope_scale)  # [hd/2]
            rotations[theta] = rotary_tables(layout.positions(), inv_freq)  # [n, hd/2] x2
        # Textbook: float32 weights throughout. Here a bfloat16 checkpoint stays memory-
        # mapped, and only the running layer's weights exist as float32: its vectors here,
        # each matrix when `linear` multiplies by it (whole, or a block at a time).
        x = decoder_layer(x, layout, *rotations[theta], cfg.layer_window(i),
                          **widen(layer, matrices=False), cfg=cfg)  # [n, d]
    x = rms_norm(x, **widen(params["final_norm"]), eps=cfg.layer_norm_eps,
                 offset=cfg.norm_offset)
    return layout.to_grid(x)
