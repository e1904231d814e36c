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
config.json as families.py says, and the parameter tree): LayerNorm eps, the activation,
where position ids start, whether there is a token-type table (not in MPNet and DistilBERT),
whether a relative position bias is added to the attention scores (MPNet), and which block
each step of a layer uses (`cfg.blocks`, looked up in NORMS and FEED_FORWARDS). Their tensor
names differ too, which only checkpoint.py reads (from families.py). The activations are
activations.py's.

Cross-encoders end in a classification head instead of pooling: `classify` runs the encoder
and `classifier_head` on it, and, as the head reads only the first token of each text, computes
the last layer for that token alone (`first_token_layer`). Token types come as data
(`type_ids`): a pair's second text has type 1 in BERT, every token 0 elsewhere.

Left out on purpose: dropout (inference only), relative position embeddings other than MPNet's
bias, cross attention, and any training code.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from .activations import ACTIVATIONS
from .families import EncoderConfig, HeadConfig
from .textbook import position_ids, relative_position_bias

# EncoderConfig is families.py's (imported here too, for callers of this module). The steps where
# the fast form has nothing to add are the textbook's: position numbering (position_ids) and
# MPNet's relative position bias (relative_position_bias).


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


def linear(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """x·W + b with W stored [in, out] (checkpoint.py transposes torch's [out, in] once)."""
    # Textbook: x @ w + b on [b, s, in]. Here: folding [..., in] to 2-D makes this one large
    # BLAS call; NumPy runs a 3-D @ 2-D product as one small call per leading index, several
    # times slower.
    y = x.reshape(-1, x.shape[-1]) @ w  # [n, in] -> [n, out]
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


def _blocks(texts: int, heads: int, length: int):
    """Split texts × heads into blocks whose [length, length] score matrices fit in cache.

    Textbook: the scores of every text and head at once, [b, h, s, s].

    A block's scores go from q·kᵀ through exp() to the product with v while they stay in
    the CPU's L2 cache; one long text's scores for all heads at once would not (12 heads ×
    256² floats are 3 MB).
    """
    pairs = max(1, _SCORES // (length * length))  # (text, head) pairs per block
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


# Each family names one function per step of a layer (families.Blocks); these tables hold them.
NORMS = {"layer": layer_norm}
FEED_FORWARDS = {"plain": feed_forward}


def residual(x: np.ndarray, sublayer, norm: dict, cfg: EncoderConfig) -> np.ndarray:
    """x plus sublayer(x), with the norm where the family puts it ("post": add, then normalize)."""
    normalize = NORMS[cfg.blocks.norm]
    if cfg.blocks.norm_placement != "post":
        raise ValueError(f"norm_placement {cfg.blocks.norm_placement!r} is not implemented")
    return normalize(x + sublayer(x), **norm, eps=cfg.layer_norm_eps)  # [n, d]


def encoder_layer(x: np.ndarray, layout: Layout, attn: dict, ln_attn: dict, ffn: dict,
                  ln_ffn: dict, cfg: EncoderConfig,
                  position_bias: np.ndarray | None = None) -> np.ndarray:
    """One transformer block: self-attention, then the feed-forward, each added to its input
    with a norm (`residual`), each the block cfg.blocks names."""
    feed, act = FEED_FORWARDS[cfg.blocks.feed_forward], ACTIVATIONS[cfg.hidden_act]
    x = residual(x, lambda h: multi_head_attention(h, layout, **attn, num_heads=cfg.num_heads,
                                                   position_bias=position_bias), ln_attn, cfg)
    return residual(x, lambda h: feed(h, **ffn, act=act), ln_ffn, cfg)


def embed(ids: np.ndarray, layout: Layout, word: np.ndarray, position: np.ndarray, ln: dict,
          cfg: EncoderConfig, token_type: np.ndarray | None = None,
          type_ids: np.ndarray | None = None) -> np.ndarray:
    """Vectors of the real tokens before the first layer: word + position (+ type), normalized.
    MPNet and DistilBERT have no token-type table. type_ids [b, s]: None for all zeros."""
    # Fancy indexing reads only the rows this batch needs, so a memory-mapped 250k-row table
    # stays on disk except for those rows. Textbook: word[ids], the rows of padding too.
    x = word[ids.reshape(-1)[layout.real]]  # [n] -> [n, d]
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
    for layer in layers:
        x = encoder_layer(x, layout, **layer, cfg=cfg, position_bias=position_bias)
    return x


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
