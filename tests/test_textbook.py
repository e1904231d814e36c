"""The fast encoder (encoder.py) against the textbook one (textbook.py), in NumPy alone.

Both run the same random parameter trees, laid out as checkpoint.load_params lays out a real
checkpoint (linear weights as transposed views of torch's [out, in]), with large weights so
that attention is sharp and a wrong mask, position or transpose shows. Every family, every
activation, batches of ragged length: a one-token text, a text as long as the position table
allows, runs of equal length, unsorted. No torch, no transformers.
"""

import dataclasses
import math

import numpy as np
import pytest

from minisbert import activations, encoder, pooling, textbook
from minisbert.encoder import EncoderConfig
from minisbert.families import Blocks
from reference import compare

FAMILIES = {
    # BERT: positions 0..s-1, two token types, eps 1e-12
    "bert": dict(type_vocab_size=2, layer_norm_eps=1e-12, pad_token_id=0,
                 positions_after_padding_idx=False),
    # XLM-R: positions counted from pad_token_id + 1, one token type, eps 1e-5. RoBERTa's
    # encoder is this one with other data.
    "xlmr": dict(type_vocab_size=1, layer_norm_eps=1e-5, pad_token_id=1,
                 positions_after_padding_idx=True),
    # MPNet: positions as XLM-R, no token types, a relative position bias in every layer
    "mpnet": dict(type_vocab_size=0, layer_norm_eps=1e-5, pad_token_id=1,
                  positions_after_padding_idx=True, relative_attention_buckets=32),
    # DistilBERT: positions 0..s-1, no token types, eps 1e-12
    "distilbert": dict(type_vocab_size=0, layer_norm_eps=1e-12, pad_token_id=0,
                       positions_after_padding_idx=False),
    # ModernBERT: rotary positions (a global and a local base), pre-LN without biases, GeGLU,
    # a local layer between global ones whose window (3 on each side) is shorter than most
    # texts here, so the window shows
    "modernbert": dict(type_vocab_size=0, layer_norm_eps=1e-5, pad_token_id=0,
                       positions_after_padding_idx=False, rope_theta=160000.0,
                       local_rope_theta=10000.0, layer_kinds=("global", "local", "global"),
                       window=3, norm_bias=False, attention_bias=False, up_bias=False,
                       down_bias=False,
                       blocks=Blocks(norm_placement="pre", positions="rotary",
                                     feed_forward="gated", first_attention_norm=False)),
    # GTE: rotary positions with scaled frequencies (its NTK form), post-LN, gated up
    "gte": dict(type_vocab_size=1, layer_norm_eps=1e-12, pad_token_id=1,
                positions_after_padding_idx=False, rope_theta=160000.0, rope_scale=8 ** (2 / 8),
                up_bias=False, blocks=Blocks(positions="rotary", feed_forward="gated")),
    # NomicBERT: rotary positions (base 1000), post-LN, SwiGLU, no linear biases
    "nomic": dict(type_vocab_size=2, layer_norm_eps=1e-12, pad_token_id=0,
                  positions_after_padding_idx=False, rope_theta=1000.0, attention_bias=False,
                  up_bias=False, down_bias=False,
                  blocks=Blocks(positions="rotary", feed_forward="gated")),
}
# The rotary families' parameter trees differ from BERT's: no position table, gated
# feed-forwards, linears and norms without bias (None) where the family has none, and for
# ModernBERT no norm before the first attention and a final norm.
ROTARY = {"modernbert", "gte", "nomic"}
MAX_TOKENS = 40  # the longest text the position table holds, in every family
# Ragged and unsorted; equal neighbours make runs of equal length in encoder.Layout.
LENGTHS = [1, MAX_TOKENS, 7, 7, 3, 1, 23, MAX_TOKENS, 2]


def config(family: str, act: str = "gelu") -> EncoderConfig:
    fam = FAMILIES[family]
    extra = fam["pad_token_id"] + 1 if fam["positions_after_padding_idx"] else 0
    layers = len(fam.get("layer_kinds", ())) or 2
    return EncoderConfig(hidden_size=32, num_layers=layers, num_heads=4, intermediate_size=64,
                         vocab_size=101, max_position_embeddings=MAX_TOKENS + extra,
                         hidden_act=act, architecture=family, **fam)


def random_params(cfg: EncoderConfig, seed: int = 0, std: float = 0.3) -> dict:
    """A parameter tree for cfg, shaped and laid out like checkpoint.load_params' output."""
    rng = np.random.default_rng(seed)
    d, ff = cfg.hidden_size, cfg.intermediate_size

    def normal(*shape, scale=std):
        return (scale * rng.standard_normal(shape)).astype(np.float32)

    def linear(n_in, n_out, bias=True):  # stored [out, in] as torch does; used transposed
        return {"w": normal(n_out, n_in).T, "b": normal(n_out) if bias else None}

    def norm():  # LayerNorm scales around 1
        return {"g": 1 + normal(d, scale=0.2),
                "b": normal(d, scale=0.2) if cfg.norm_bias else None}

    if cfg.architecture in ROTARY:
        embeddings = {"word": normal(cfg.vocab_size, d, scale=0.05), "ln": norm()}
        attn = cfg.attention_bias
        layers = [{"attn": {"q": linear(d, d, attn), "k": linear(d, d, attn),
                            "v": linear(d, d, attn), "out": linear(d, d, attn)},
                   "ln_attn": norm() if i or cfg.blocks.first_attention_norm else None,
                   "ffn": {"gate": linear(d, ff, cfg.up_bias), "up": linear(d, ff, cfg.up_bias),
                           "down": linear(ff, d, cfg.down_bias)},
                   "ln_ffn": norm()} for i in range(cfg.num_layers)]
        params = {"embeddings": embeddings, "layers": layers}
        if cfg.blocks.norm_placement == "pre":
            params["final_norm"] = norm()
        if cfg.type_vocab_size:
            params["embeddings"]["token_type"] = normal(cfg.type_vocab_size, d, scale=0.05)
        return params

    # Embedding rows as small as in trained models (std ~0.05), so LayerNorm's eps matters:
    # 1e-5 instead of 1e-12 moves the embeddings by ~1e-3.
    params = {
        "embeddings": {"word": normal(cfg.vocab_size, d, scale=0.05),
                       "position": normal(cfg.max_position_embeddings, d, scale=0.05),
                       "ln": norm()},
        "layers": [{"attn": {"q": linear(d, d), "k": linear(d, d), "v": linear(d, d),
                             "out": linear(d, d)},
                    "ln_attn": norm(),
                    "ffn": {"up": linear(d, ff), "down": linear(ff, d)},
                    "ln_ffn": norm()} for _ in range(cfg.num_layers)],
    }
    if cfg.type_vocab_size:
        params["embeddings"]["token_type"] = normal(cfg.type_vocab_size, d, scale=0.05)
    if cfg.relative_attention_buckets:  # as large as the scores, so a wrong bucket shows
        params["relative_attention_bias"] = normal(cfg.relative_attention_buckets,
                                                   cfg.num_heads, scale=3.0)
    return params


def random_batch(cfg: EncoderConfig, lengths, seed: int = 1):
    """ids and mask [b, s], padded with the pad id; real ids are never the pad id."""
    rng = np.random.default_rng(seed)
    ids = np.full((len(lengths), max(lengths)), cfg.pad_token_id, dtype=np.int64)
    mask = np.zeros_like(ids)
    for row, n in enumerate(lengths):
        real = rng.integers(0, cfg.vocab_size - 1, n)
        ids[row, :n] = real + (real >= cfg.pad_token_id)  # skip the pad id
        mask[row, :n] = 1
    return ids, mask


def assert_tokens_close(name, ours, ref, mask):
    """Token vectors at real places: |ours - ref| <= 1e-4 + 1e-5·|ref|; prints the worst."""
    real = mask.astype(bool)
    ours, ref = ours[real].astype(np.float64), ref[real].astype(np.float64)
    worst = float((np.abs(ours - ref) - 1e-5 * np.abs(ref)).max())
    compare(name, ours, ref)
    print(f"{name}: worst |diff| - 1e-5·|ref| = {worst:.3e} (atol 1e-4)")
    assert worst <= 1e-4


@pytest.mark.parametrize("act", sorted(activations.ACTIVATIONS))
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_fast_encoder_equals_textbook(family, act):
    cfg = config(family, act)
    params = random_params(cfg)
    ids, mask = random_batch(cfg, LENGTHS)
    fast = encoder.encode_tokens(ids, mask, params, cfg)  # [b, s, d]
    slow = textbook.encode_tokens(ids, mask, params, cfg)
    assert fast.dtype == slow.dtype == np.float32
    assert fast.shape == slow.shape == (*ids.shape, cfg.hidden_size)
    assert_tokens_close(f"{family}/{act} tokens", fast, slow, mask)
    assert np.all(slow[mask == 0] == 0) and np.all(fast[mask == 0] == 0)
    pooled_fast = pooling.normalize(pooling.pool(fast, mask, ("mean",)))
    pooled_slow = pooling.normalize(pooling.pool(slow, mask, ("mean",)))
    maxdiff, _ = compare(f"{family}/{act} normalized mean", pooled_fast, pooled_slow)
    assert maxdiff <= 1e-5


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_textbook_padding_does_not_reach_real_tokens(family):
    cfg = config(family)
    params = random_params(cfg)
    ids, mask = random_batch(cfg, LENGTHS)
    out = textbook.encode_tokens(ids, mask, params, cfg)
    # Other ids under the mask: every real token must come out exactly the same.
    noisy = np.where(mask > 0, ids, np.random.default_rng(2).integers(0, cfg.vocab_size, ids.shape))
    assert np.any(noisy != ids)
    np.testing.assert_array_equal(textbook.encode_tokens(noisy, mask, params, cfg), out)
    # Each text alone, with no padding at all, gives its row of the batch.
    for row, n in enumerate(LENGTHS):
        alone = textbook.encode_tokens(ids[row:row + 1, :n], mask[row:row + 1, :n], params, cfg)
        np.testing.assert_allclose(alone[0], out[row, :n], atol=1e-5, rtol=1e-5)


def test_relative_position_bias_counts():
    # MPNet's bias must change every token of a text of two tokens or more, in both forms
    # (a one-token text attends to itself alone, whatever the bias): with the table zeroed the
    # model is an XLM-R without token types.
    cfg = config("mpnet")
    params = random_params(cfg)
    ids, mask = random_batch(cfg, LENGTHS)
    flat = {**params, "relative_attention_bias": np.zeros_like(params["relative_attention_bias"])}
    several = (mask > 0) & (mask.sum(axis=1, keepdims=True) > 1)
    for form in (textbook, encoder):
        with_bias = form.encode_tokens(ids, mask, params, cfg)[several]
        without = form.encode_tokens(ids, mask, flat, cfg)[several]
        change = np.abs(with_bias - without).max(axis=-1)  # per token
        print(f"\n{form.__name__}: the bias moves each token by "
              f"{change.min():.2f}..{change.max():.2f}")
        assert change.min() > 1e-2


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_positions_are_the_familys(family):
    # A text's last token reads the last row of the position table: a text one token longer
    # would not fit, in any family.
    cfg = config(family)
    ids, _ = random_batch(cfg, [MAX_TOKENS])
    pos = encoder.position_ids(ids, cfg)
    first = cfg.pad_token_id + 1 if cfg.positions_after_padding_idx else 0
    np.testing.assert_array_equal(pos[0], np.arange(first, first + MAX_TOKENS))
    assert pos.max() == cfg.max_position_embeddings - 1


def test_textbook_activations_are_the_fast_ones():
    assert textbook.ACTIVATIONS.keys() == activations.ACTIVATIONS.keys()
    x = np.concatenate([np.linspace(-100, 100, 200_001),
                        np.random.default_rng(3).standard_normal(10_000) * 4]).astype(np.float32)
    for name, act in textbook.ACTIVATIONS.items():
        ours, fast = act(x), activations.ACTIVATIONS[name](x)
        assert ours.dtype == np.float32, name
        diff = np.abs(ours.astype(np.float64) - fast)
        print(f"\n{name}: textbook vs fast maxdiff = {diff.max():.2e}")
        assert np.all(diff <= 1e-6 * (1 + np.abs(fast))), name


def test_textbook_gelu_is_exact_to_1e7():
    # x·Φ(x) with Φ from erfc on either side of 0, against math.erf in float64.
    x = np.linspace(-10, 10, 100_001).astype(np.float32)
    exact = np.array([0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x.astype(np.float64)])
    err = np.abs(textbook.gelu(x) - exact)
    ulp = np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)
    print(f"\ntextbook gelu: max abs error vs math.erf = {err.max():.2e}")
    assert np.all(err <= 1e-7 + 2 * ulp)


def test_softmax_and_layer_norm_by_definition():
    rng = np.random.default_rng(4)
    x = (3 * rng.standard_normal((5, 7))).astype(np.float32)
    p = textbook.softmax(x)
    e = np.exp(x.astype(np.float64))
    np.testing.assert_allclose(p, e / e.sum(axis=-1, keepdims=True), rtol=1e-6)
    np.testing.assert_allclose(textbook.softmax(np.float32([[1000, 0]])), [[1, 0]])  # no overflow
    g, b = rng.standard_normal(7).astype(np.float32), rng.standard_normal(7).astype(np.float32)
    y = textbook.layer_norm(x, g, b, eps=1e-5).astype(np.float64)
    z = (y - b) / g  # undo the scale and shift: mean 0, variance 1 - eps/(var + eps)
    np.testing.assert_allclose(z.mean(axis=-1), 0, atol=1e-6)
    np.testing.assert_allclose(z.var(axis=-1), x.astype(np.float64).var(axis=-1)
                               / (x.astype(np.float64).var(axis=-1) + 1e-5), rtol=1e-5)


@pytest.mark.parametrize("scores", [4096, 16384])
@pytest.mark.parametrize("family", sorted(ROTARY))
def test_long_texts_a_block_of_queries_at_a_time(family, scores, monkeypatch):
    # Texts whose scores do not fit one block go a block of queries at a time (a local layer's
    # block reading only its window): the same numbers as the textbook's whole [s, s] scores.
    # With a budget of 4096 scores, 300 tokens make 2 blocks (218 queries) per head in a
    # global layer and 5 (61 queries) in a local one; with 16384, 1100 tokens make 5 blocks
    # (238 queries) in a global layer.
    monkeypatch.setattr(encoder, "_SCORES", scores)
    lengths = [300, 130, 130, 2, 61] if scores == 4096 else [1100, 4]
    cfg = config(family)
    cfg = EncoderConfig(**{**cfg.__dict__, "max_position_embeddings": max(lengths)})
    params = random_params(cfg)
    ids, mask = random_batch(cfg, lengths)
    fast = encoder.encode_tokens(ids, mask, params, cfg)
    slow = textbook.encode_tokens(ids, mask, params, cfg)
    assert_tokens_close(f"{family} {lengths} tokens", fast, slow, mask)
    pooled = [pooling.normalize(pooling.pool(t, mask, ("mean",))) for t in (fast, slow)]
    maxdiff, _ = compare(f"{family} {lengths} normalized mean", *pooled)
    assert maxdiff <= 1e-5


def test_local_window_counts():
    # ModernBERT's local layer must see exactly `window` tokens on either side: changing a
    # token window + 1 places away from the first token leaves the first token's vector after
    # a lone local layer untouched, changing one `window` places away does not.
    cfg = config("modernbert")
    cfg = EncoderConfig(**{**cfg.__dict__, "num_layers": 1, "layer_kinds": ("local",)})
    params = random_params(cfg)
    params["layers"][0]["ln_attn"] = None
    ids, mask = random_batch(cfg, [20])
    for form in (textbook, encoder):
        base = form.encode_tokens(ids, mask, params, cfg)[0, 0]
        for offset, changes in ((cfg.window, True), (cfg.window + 1, False)):
            other = ids.copy()
            other[0, offset] = (other[0, offset] + 7) % cfg.vocab_size
            moved = np.abs(form.encode_tokens(other, mask, params, cfg)[0, 0] - base).max()
            print(f"\n{form.__name__}: token {offset} away moves the first by {moved:.2e}")
            assert (moved > 1e-3) if changes else (moved == 0)


# ---------------------------------------------------------------------------- decoder embedders

def _decoder_case(model_type: str):
    """A small Qwen3 (causal, 4 query heads over 2 key/value heads) or Gemma 3 (bidirectional,
    sliding window of 8 on every other layer, 3 query heads over 1) config, and a random tree
    with bfloat16-exact weights, as checkpoint.load_params(keep_bf16=True) lays it out."""
    from minisbert.families import FAMILIES, encoder_config
    keys = dict(hidden_size=48, num_hidden_layers=4, intermediate_size=80, vocab_size=97,
                max_position_embeddings=64, rms_norm_eps=1e-6)
    if model_type.startswith("qwen3"):
        keys.update(num_attention_heads=4, num_key_value_heads=2, head_dim=16, rope_theta=1e6)
        if model_type == "qwen3-sliding":  # causal windows of 6 tokens from the third layer on
            keys.update(use_sliding_window=True, sliding_window=6, max_window_layers=2)
        model_type = "qwen3"
    else:
        keys.update(num_attention_heads=3, num_key_value_heads=1, head_dim=32,
                    sliding_window=8, query_pre_attn_scalar=24,
                    use_bidirectional_attention=True,
                    layer_types=["sliding_attention", "full_attention"] * 2)
    cfg = encoder_config({"model_type": model_type, **keys}, "config.json")
    rng = np.random.default_rng(7)
    from minisbert.checkpoint import tree_shapes

    def bits(shape, std):  # bfloat16 bit patterns of N(0, std²) (centre 1 for Qwen3's norms)
        x = rng.standard_normal(shape).astype(np.float32) * std
        return (x.view(np.uint32) >> 16).astype(np.uint16)

    outside, layer = tree_shapes(cfg)

    def tree(shapes):
        out = {}
        for path, shape in shapes.items():
            *parents, leaf = path.split(".")
            node = out
            for key in parents:
                node = node.setdefault(key, {})
            if len(shape) == 1:  # a norm's scale
                w = bits(shape, 0.2)
                if cfg.norm_offset == 0:
                    w = encoder.widen_bf16(w) + 1
                    w = (w.view(np.uint32) >> 16).astype(np.uint16)
                node[leaf] = {"g": w, "b": None}
            elif path == "embeddings.word":
                node[leaf] = bits(shape, 1.0)
            else:
                node[leaf] = {"w": bits(shape, 0.15).T, "b": None}  # [in, out] view, as the loader's
        return out

    params = tree(outside)
    params["layers"] = [tree(layer) for _ in range(cfg.num_layers)]
    assert set(params["layers"][0]) >= {"ln_attn", "attn", "ln_ffn", "ffn"}
    assert set(layer) <= set(FAMILIES[model_type].names)
    return cfg, params


@pytest.mark.parametrize("columns", [False, True], ids=["bf16-whole", "bf16-columns"])
@pytest.mark.parametrize("blocked", [False, True], ids=["whole", "query-blocks"])
@pytest.mark.parametrize("model_type", ["qwen3", "qwen3-sliding", "gemma3_text"])
def test_decoder_textbook_matches_fast(model_type, blocked, columns, monkeypatch):
    """textbook.decode_tokens on float32 weights against encoder.decode_tokens on the same
    weights kept as bfloat16 bits: ragged batch, texts past the window, grouped heads.
    query-blocks: a score budget so small that every text of 8 tokens or more goes a block of
    queries at a time (the path of an 8,192-token text), causal blocks reading fewer keys.
    bf16-columns: every bfloat16 matrix widened and multiplied a few columns at a time (the
    path of a short query), not whole."""
    products = []  # how each bfloat16 product went: True for a block of columns at a time
    if columns:
        monkeypatch.setattr(encoder, "_BF16_FEW_ROWS", 10**9)
        monkeypatch.setattr(encoder, "_BF16_COLUMNS", 5)
    widen_bf16 = encoder.widen_bf16  # a block of columns reaches it as [columns, in] rows
    monkeypatch.setattr(encoder, "widen_bf16", lambda bits: products.append(
        bits.ndim == 2 and bits.shape[0] <= 5) or widen_bf16(bits))
    split = []  # how many blocks each long text's queries went in
    if blocked:
        def recorded(length, window, causal=False, inner=encoder._query_blocks):
            found = list(inner(length, window, causal))
            split.append(len(found))
            return iter(found)
        monkeypatch.setattr(encoder, "_SCORES", 16)
        monkeypatch.setattr(encoder, "_CAUSAL_QUERIES", 4)
        monkeypatch.setattr(encoder, "_LOCAL_QUERIES", 4)
        monkeypatch.setattr(encoder, "_query_blocks", recorded)
    cfg, bf16 = _decoder_case(model_type)
    f32 = encoder.widen(bf16)
    f32["layers"] = [encoder.widen(layer) for layer in bf16["layers"]]
    lengths = [1, 30, 7, 7, 3, 19, 30, 2]
    rng = np.random.default_rng(8)
    ids = np.zeros((len(lengths), max(lengths)), dtype=np.int64)
    mask = np.zeros_like(ids)
    for i, n in enumerate(lengths):
        ids[i, :n], mask[i, :n] = rng.integers(0, cfg.vocab_size, n), 1
    plain = textbook.decode_tokens(ids, mask, f32, cfg)
    fast = encoder.decode_tokens(ids, mask, bf16, cfg)
    assert fast.dtype == np.float32 and np.all(fast[mask == 0] == 0)
    assert (max(split) > 1) if blocked else not split
    assert any(products) == columns  # blocks of 5 columns (fewer at a matrix's end)
    compare(f"{model_type} textbook vs fast", encoder.Layout.from_mask(mask).to_packed(fast),
            encoder.Layout.from_mask(mask).to_packed(plain))
    np.testing.assert_allclose(fast, plain, atol=1e-4, rtol=1e-5)
    # the window and the causal rule matter here: a layer that saw everything would differ
    wide = dataclasses.replace(cfg, window=0, blocks=dataclasses.replace(
        cfg.blocks, attention="bidirectional" if cfg.causal else "causal"))
    assert np.abs(encoder.decode_tokens(ids, mask, bf16, wide) - fast).max() > 1e-2


@pytest.mark.parametrize("model_type", ["qwen3", "gemma3_text"])
def test_decoder_long_text_never_holds_every_score(model_type, monkeypatch):
    """One text of 4,096 tokens through the fast form, its heads in two threads: its peak
    allocation stays under half of one layer's [heads, s, s] scores (the textbook's), since
    attention goes a block of queries at a time. Causal Qwen3: a token sees only what
    precedes it, so the first 30 tokens' vectors equal those of the 30-token text alone."""
    import tracemalloc

    from minisbert import threads
    monkeypatch.setattr(threads, "workers", lambda: 2)  # the peak grows with the threads
    cfg, bf16 = _decoder_case(model_type)
    s = 4096
    ids = np.random.default_rng(9).integers(0, cfg.vocab_size, (1, s))
    mask = np.ones_like(ids)
    tracemalloc.start()
    try:
        long = encoder.decode_tokens(ids, mask, bf16, cfg)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    every_score = cfg.num_heads * s * s * 4
    print(f"{model_type}: peak {peak / 2**20:.0f} MB, [h, s, s] scores {every_score / 2**20:.0f} MB")
    assert peak < every_score / 2
    assert np.isfinite(long).all()
    if cfg.causal:
        short = encoder.decode_tokens(ids[:, :30], mask[:, :30], bf16, cfg)
        np.testing.assert_allclose(long[0, :30], short[0], atol=1e-4, rtol=1e-5)
