"""The activation functions, fast form, and the one table that names them.

Each takes a float32 array and returns one of the same shape; `out=` writes the result there
(the feed-forward layer passes its own temporary, `out=h`). `textbook.py` writes the same
functions plainly; tests/test_textbook.py holds each equal to its plain form, and
tests/test_layers.py to torch's.

Left out: activations no supported model uses (mish, hardswish, relu6, ...): a config.json
naming one is refused, with this table's names.
"""

from __future__ import annotations

import math

import numpy as np


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

    Textbook: x/2·(1 + erf(x/√2)), with math.erf per element in float64 (textbook.gelu), far
    too slow here. Written here as max(x, 0) - |x|·Φ(-|x|) with Φ(-a) = erfc(a/√2)/2, which
    is the same function (xΦ(x) = x - xΦ(-x)) computed in float32 with no cancellation: that
    form in float32 subtracts two numbers near 1 for negative x and keeps only ~1e-6 of
    accuracy there.
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


def _blockwise(formula, x: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    """formula(xb, tb) on cache-sized blocks of x, as `gelu` runs: xb a block of x, tb a
    scratch block of the same size that formula fills with the result, written to out."""
    out = np.empty_like(x) if out is None else out
    src, dst = x.reshape(-1), out.reshape(-1)
    scratch = np.empty(min(_BLOCK, src.size), dtype=x.dtype)
    for i in range(0, src.size, _BLOCK):
        xb = src[i:i + _BLOCK]
        tb = scratch[:xb.size]
        formula(xb, tb)
        dst[i:i + _BLOCK] = tb  # out=x is safe: formula has read this block of x already
    return out


# Textbook: each function's one-line form (textbook.py), whole-array passes with a temporary
# each. Here: the same formula, pass by pass, on one cache-sized block at a time, in place.

def _gelu_tanh_block(x: np.ndarray, t: np.ndarray) -> None:
    # 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))); the 0.044715·x·x·x order as written there
    np.multiply(x, np.float32(0.044715), out=t)
    t *= x
    t *= x
    t += x
    t *= np.float32(math.sqrt(2 / math.pi))
    np.tanh(t, out=t)
    t += np.float32(1)
    t *= x
    t *= np.float32(0.5)  # exact: (0.5·x)·u and 0.5·(x·u) are the same float32


def _sigmoid_block(x: np.ndarray, t: np.ndarray) -> None:
    # 1/(1+e^-x) overflows e^-x for very negative x; 0.5·(1 + tanh(x/2)) is stable everywhere.
    np.multiply(x, np.float32(0.5), out=t)
    np.tanh(t, out=t)
    t += np.float32(1)
    t *= np.float32(0.5)


def _silu_block(x: np.ndarray, t: np.ndarray) -> None:
    _sigmoid_block(x, t)  # x·sigmoid(x)
    t *= x


def _quick_gelu_block(x: np.ndarray, t: np.ndarray) -> None:
    np.multiply(x, np.float32(1.702), out=t)  # x·sigmoid(1.702·x)
    _sigmoid_block(t, t)
    t *= x


def gelu_tanh(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """GELU, tanh approximation (`gelu_new`, `gelu_pytorch_tanh`, `gelu_fast`)."""
    return _blockwise(_gelu_tanh_block, x, out)


def sigmoid(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    return _blockwise(_sigmoid_block, x, out)


def quick_gelu(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    return _blockwise(_quick_gelu_block, x, out)


def relu(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    return np.maximum(x, np.float32(0), out=out)


def silu(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    return _blockwise(_silu_block, x, out)


def tanh(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    return np.tanh(x, out=out)


def linear(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """The identity (transformers' "linear" activation; torch's nn.Identity in a Dense module)."""
    return _into(x, out)


# config.json's hidden_act (and a Dense module's torch class, see dense.py) -> the function:
# the one table of activations the runtime uses. The names are transformers' (ACT2FN).
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
    "sigmoid": sigmoid,
    "tanh": tanh,
    "linear": linear,
}
