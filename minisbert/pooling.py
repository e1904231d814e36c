"""From token vectors to one sentence vector, as sentence-transformers' Pooling module does.

The modes come from `1_Pooling/config.json`. Several can be switched on at once; their
results are concatenated in sentence-transformers' order: cls, max, mean, mean_sqrt_len.
Left out: weightedmean and lasttoken (a clear error says so).
"""

from __future__ import annotations

import numpy as np

from .errors import UnsupportedModelError

MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens")
_UNSUPPORTED = ("weightedmean_tokens", "lasttoken")


def modes_from_config(config: dict, path) -> tuple[str, ...]:
    for mode in _UNSUPPORTED:
        if config.get(f"pooling_mode_{mode}"):
            raise UnsupportedModelError(f"{path}: pooling_mode_{mode} is not supported; minisbert "
                                        f"implements {', '.join(MODES)}.")
    flags = {"cls": "pooling_mode_cls_token", "max": "pooling_mode_max_tokens",
             "mean": "pooling_mode_mean_tokens", "mean_sqrt_len_tokens": "pooling_mode_mean_sqrt_len_tokens"}
    modes = tuple(m for m in MODES if config.get(flags[m]))
    if not modes:
        raise UnsupportedModelError(f"{path} switches on no pooling mode; set one of "
                                    + ", ".join(flags.values()) + " to true.")
    return modes


def pool(x: np.ndarray, mask: np.ndarray, modes: tuple[str, ...]) -> np.ndarray:
    """x: [b, s, d] token vectors, mask: [b, s] (1 = real token) -> [b, d·len(modes)]."""
    m = mask[:, :, None].astype(x.dtype)  # [b, s, 1]
    count = np.maximum(m.sum(axis=1), np.float32(1e-9))  # [b, 1] real tokens per text
    out = []
    for mode in modes:
        if mode == "cls":
            out.append(x[:, 0])  # the first token, [CLS] / <s>
        elif mode == "max":
            out.append(np.where(m > 0, x, -np.inf).max(axis=1))  # padding can never be the max
        elif mode == "mean":
            out.append((x * m).sum(axis=1) / count)  # [b, s, d] -> [b, d], padding excluded
        elif mode == "mean_sqrt_len_tokens":
            out.append((x * m).sum(axis=1) / np.sqrt(count))
    return out[0] if len(out) == 1 else np.concatenate(out, axis=1)


def normalize(x: np.ndarray) -> np.ndarray:
    """Scale each row to unit length, so a dot product is a cosine."""
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norm, np.float32(1e-12))
