"""Each encoder function against torch.nn.functional on random float32 arrays; erfc, GELU's
exact form and the activations' in-place use against math and themselves (no torch needed)."""

import math

import numpy as np
import pytest

from minisbert import activations, encoder

rng = np.random.default_rng(0)


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


@pytest.fixture(scope="module")
def F(torch):
    return torch.nn.functional


def rand(*shape, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(np.float32)


def check(name, ours, ref, atol, rtol=0.0):
    """|ours - ref| <= atol + rtol·|ref| everywhere; prints the worst absolute difference."""
    ref = ref.detach().numpy() if hasattr(ref, "detach") else ref
    assert ours.dtype == np.float32, f"{name} returned {ours.dtype}"
    diff = np.abs(ours.astype(np.float64) - ref)
    print(f"\n{name}: maxdiff = {diff.max():.2e} (atol {atol:.0e}, rtol {rtol:.0e})")
    assert np.all(diff <= atol + rtol * np.abs(ref))


def test_erfc_is_accurate_to_1e7():
    z = np.linspace(0, 10, 200_001)
    ours = activations.erfc_nonnegative(z)
    exact = np.array([math.erfc(v) for v in z])
    diff, rel = np.abs(ours - exact).max(), np.abs(ours / exact - 1).max()
    print(f"\nerfc: maxdiff vs math.erfc = {diff:.2e}, relative {rel:.2e}")
    assert diff <= 1e-7  # so erf = 1 - erfc is within 1e-7 too
    assert rel <= 1.2e-7  # the fit's bound; GELU's accuracy for negative x rests on it


def test_gelu_exact_form_within_1e7_of_exact():
    x = np.concatenate([np.linspace(-10, 10, 100_001), rand(10_000, scale=3)]).astype(np.float32)
    exact = np.array([0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x.astype(np.float64)])
    ours = activations.gelu(x)
    # the only error beyond erf's is float32 rounding of the result itself
    ulp = np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)
    err = np.abs(ours - exact)
    print(f"\ngelu: max abs error vs exact = {err.max():.2e}, beyond float32 rounding = "
          f"{np.maximum(err - ulp, 0).max():.2e}")
    assert np.all(err <= 1e-7 + ulp)


def test_gelu_against_torch(torch, F):
    x = np.concatenate([np.linspace(-10, 10, 100_001), rand(10_000, scale=3)]).astype(np.float32)
    ours = activations.gelu(x)
    # torch's float32 GELU computes 1 + erf(x/√2), which cancels for x < -3 and leaves it ~1e-6
    # from the exact value there (ours is within 1e-7 of exact, checked above).
    check("gelu vs F.gelu", ours, F.gelu(torch.from_numpy(x)), atol=2e-6, rtol=1e-6)


@pytest.mark.parametrize("name, ref", [
    ("gelu_new", lambda F, t: F.gelu(t, approximate="tanh")),
    ("gelu_pytorch_tanh", lambda F, t: F.gelu(t, approximate="tanh")),
    ("gelu_fast", lambda F, t: F.gelu(t, approximate="tanh")),
    ("quick_gelu", lambda F, t: t * (1.702 * t).sigmoid()),
    ("relu", lambda F, t: F.relu(t)),
    ("silu", lambda F, t: F.silu(t)),
    ("swish", lambda F, t: F.silu(t)),
])
def test_activations(F, torch, name, ref):
    x = rand(64, 3072, scale=4)
    # a few float32 ulps: values reach |x| ~ 16, where one ulp is ~1e-6
    check(name, activations.ACTIVATIONS[name](x), ref(F, torch.from_numpy(x)), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("name", sorted(activations.ACTIVATIONS))
def test_activation_in_place_gives_the_same_values(name):
    # The feed-forward layer calls act(h, out=h). More than one GELU block, and a last block
    # that is not full, so every block is checked for reading x before overwriting it.
    x = rand(3 * activations._BLOCK + 1001, scale=4)
    expected = activations.ACTIVATIONS[name](x)
    y = x.copy()
    got = activations.ACTIVATIONS[name](y, out=y)
    assert got is y
    np.testing.assert_array_equal(got, expected)


def test_activations_survive_extreme_inputs():
    x = np.array([-1e4, -100, -20, 0, 20, 100, 1e4], dtype=np.float32)
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow to 0 is fine
        for name, fn in activations.ACTIVATIONS.items():
            assert np.all(np.isfinite(fn(x))), name


@pytest.mark.parametrize("eps", [1e-12, 1e-5])
def test_layer_norm(torch, F, eps):
    x, g, b = rand(3, 7, 384, scale=5) + 3, rand(384), rand(384)
    ref = F.layer_norm(torch.from_numpy(x), (384,), torch.from_numpy(g), torch.from_numpy(b), eps)
    check(f"layer_norm eps={eps}", encoder.layer_norm(x, g, b, eps), ref, atol=1e-5)


def test_linear_with_torch_layout_weight(torch, F):
    x, w, b = rand(3, 7, 384), rand(1536, 384), rand(1536)  # w as torch stores it: [out, in]
    ref = F.linear(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b))
    check("linear", encoder.linear(x, w.T, b), ref, atol=1e-4)


@pytest.mark.parametrize("shape", [(2, 4, 9, 16), (1, 3, 300, 32), (5, 2, 1, 8)])
def test_attention_of_stacked_heads(torch, F, shape):
    # scores q·kᵀ with std √hd (up to ~±25): sharp weights, so a wrong axis shows; larger
    # scores would only show float32 noise (a score's rounding error becomes a relative error
    # of its weight)
    q, k, v = (rand(*shape) for _ in range(3))
    ours = encoder.attention(q, k, v, out=np.empty_like(q))
    t = torch.from_numpy
    ref = F.softmax(t(q) @ t(k).transpose(-1, -2), dim=-1) @ t(v)
    check(f"attention {shape}", ours, ref, atol=1e-5)


@pytest.mark.parametrize("lengths", [
    [11, 6, 1],  # every text its own length
    [7, 7, 5, 5, 5, 1],  # runs of equal length, attended to together
    [300, 300, 40, 3],  # long texts: a few heads at a time, so scores stay in cache
])
def test_multi_head_attention_with_padding_mask(torch, F, lengths):
    b, s, d, h = len(lengths), max(lengths), 64, 4
    x = rand(b, s, d)
    wq, wk, wv, wo = (rand(d, d, scale=0.3) for _ in range(4))  # torch layout [out, in]
    bq, bk, bv, bo = (rand(d) for _ in range(4))
    mask = np.array([[1] * n + [0] * (s - n) for n in lengths])

    layout = encoder.Layout.from_mask(mask)
    ours = encoder.multi_head_attention(
        layout.to_packed(x), layout,
        q={"w": wq.T, "b": bq}, k={"w": wk.T, "b": bk}, v={"w": wv.T, "b": bv},
        out={"w": wo.T, "b": bo}, num_heads=h)

    t = torch.from_numpy
    heads = lambda y: y.view(b, s, h, d // h).transpose(1, 2)  # noqa: E731
    q, k, v = (heads(F.linear(t(x), t(w), t(bias))) for w, bias in ((wq, bq), (wk, bk), (wv, bv)))
    attn_mask = t(mask).bool()[:, None, None, :]  # True = may attend
    ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
    ref = F.linear(ctx.transpose(1, 2).reshape(b, s, d), t(wo), t(bo))
    # Only real tokens are computed (packed): padded query rows would be discarded anyway.
    check(f"multi_head_attention {lengths}", ours, layout.to_packed(ref.numpy()), atol=1e-4)


def test_xlmr_position_ids_skip_padding(torch):
    cfg = encoder.EncoderConfig(hidden_size=8, num_layers=1, num_heads=2, intermediate_size=16,
                                vocab_size=10, max_position_embeddings=514, type_vocab_size=1,
                                layer_norm_eps=1e-5, hidden_act="gelu", pad_token_id=1,
                                positions_after_padding_idx=True)
    ids = np.array([[0, 5, 6, 2], [0, 5, 2, 1]])
    mask = (ids != 1).astype(np.int64)
    # what fairseq / transformers' create_position_ids_from_input_ids computes
    ref = (torch.cumsum(torch.from_numpy(mask), dim=1) * torch.from_numpy(mask) + 1).numpy()
    np.testing.assert_array_equal(encoder.position_ids(ids, cfg), ref)
    assert cfg.max_tokens == 512
