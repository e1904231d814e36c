"""From token vectors to one sentence vector, as sentence-transformers' Pooling module does,
and what happens to that vector at the end of encode (normalize, truncate).

The modes come from `1_Pooling/config.json`, written either as `"pooling_mode": "mean"` (or a
list; sentence-transformers 6 writes this) or as the older `pooling_mode_*_tokens: true` flags.
Several modes can be on at once; their results are concatenated, in the order listed, or for
the flags in sentence-transformers' order: cls, max, mean, mean_sqrt_len_tokens, weightedmean,
lasttoken.

`include_prompt: false` in that file leaves a prompt's tokens out of every mode: the first
`prompt_length` positions (the tokenized prompt without its closing special token, so [CLS]
is left out too) are masked as if they were padding.

Left out: left-padded batches (minisbert pads on the right) and sentence-transformers'
`token_weights_sum` feature.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import ArgumentError, ConfigError, UnsupportedModelError

MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")
# The older config format: one flag per mode, concatenated in MODES order.
_FLAGS = {"pooling_mode_cls_token": "cls", "pooling_mode_max_tokens": "max",
          "pooling_mode_mean_tokens": "mean",
          "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
          "pooling_mode_weightedmean_tokens": "weightedmean", "pooling_mode_lasttoken": "lasttoken"}


@dataclass(frozen=True)
class PoolingConfig:
    modes: tuple[str, ...]  # concatenated in this order
    include_prompt: bool = True  # False: a prompt's tokens do not count in any mode


def read_config(config: dict, path) -> PoolingConfig:
    """The settings of `1_Pooling/config.json` (already parsed), in either of its formats."""
    if "word_embedding_dimension" not in config and "embedding_dimension" not in config:
        raise ConfigError(f"{path} has no word_embedding_dimension; it is not a Pooling "
                          "config, download it again.")
    if "pooling_mode" in config:
        given = config["pooling_mode"]
        modes = (given,) if isinstance(given, str) else given
        if not (isinstance(modes, (list, tuple)) and modes
                and all(isinstance(m, str) for m in modes)):
            raise ConfigError(f"{path}: pooling_mode is {given!r}; it should be one of "
                              f"{', '.join(MODES)}, or a list of them.")
        modes = tuple(modes)
    else:
        # As sentence-transformers does: the flags that are on, in MODES order; none -> mean.
        modes = tuple(mode for flag, mode in _FLAGS.items() if config.get(flag)) or ("mean",)
    for mode in modes:
        if mode not in MODES:
            raise UnsupportedModelError(f"{path}: pooling mode {mode!r} is not supported; "
                                        f"minisbert implements {', '.join(MODES)}.")
    include_prompt = config.get("include_prompt", True)
    if not isinstance(include_prompt, bool):
        raise ConfigError(f"{path}: include_prompt is {include_prompt!r}; it should be true or "
                          "false.")
    return PoolingConfig(modes, include_prompt)


def pool(x: np.ndarray, mask: np.ndarray, modes: tuple[str, ...],
         prompt_length: int = 0) -> np.ndarray:
    """x: [b, s, d] token vectors, mask: [b, s] (1 = real token) -> [b, d·len(modes)].

    prompt_length > 0 (include_prompt: false) leaves the first prompt_length positions out.
    A text with no token left counts as sentence-transformers counts it: zeros for the means
    and lasttoken, -inf for max, token 0 for cls.
    """
    if prompt_length:
        mask = mask.copy()
        mask[:, :prompt_length] = 0  # the prompt's tokens now count as padding
    b, s, _ = x.shape
    rows = np.arange(b)
    m = mask[:, :, None].astype(x.dtype)  # [b, s, 1]
    count = np.maximum(m.sum(axis=1), np.float32(1e-9))  # [b, 1] tokens that count per text
    out = []
    for mode in modes:
        if mode == "cls":
            # The first token that counts: [CLS] / <s>, or the first one after the prompt.
            out.append(x[rows, mask.argmax(axis=1)])
        elif mode == "max":
            out.append(np.where(m > 0, x, -np.inf).max(axis=1))  # padding can never be the max
        elif mode == "mean":
            out.append((x * m).sum(axis=1) / count)  # [b, s, d] -> [b, d], padding excluded
        elif mode == "mean_sqrt_len_tokens":
            out.append((x * m).sum(axis=1) / np.sqrt(count))
        elif mode == "weightedmean":
            # Token i (from 1, counted from the first position even when the prompt is left
            # out) weighs i: later tokens, which have seen more of a causal model's text, more.
            w = np.arange(1, s + 1, dtype=x.dtype)[None, :, None] * m  # [b, s, 1]
            out.append((x * w).sum(axis=1) / np.maximum(w.sum(axis=1), np.float32(1e-9)))
        elif mode == "lasttoken":
            # The last token that counts: with right padding, the last real one (e.g. [SEP]).
            last = s - 1 - mask[:, ::-1].argmax(axis=1)  # [b]
            out.append(x[rows, last] * m[rows, last])  # times 0 when no token counts
        else:
            raise ValueError(f"unknown pooling mode {mode!r}; the modes are {', '.join(MODES)}")
    return out[0] if len(out) == 1 else np.concatenate(out, axis=1)


def normalize(x: np.ndarray) -> np.ndarray:
    """Scale each row to unit length, so a dot product is a cosine."""
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norm, np.float32(1e-12))


def truncate(x: np.ndarray, dim: int) -> np.ndarray:
    """The first `dim` components of each vector (a view).

    Matryoshka models are trained so that a prefix of the vector is itself an embedding. As in
    sentence-transformers, this runs after every module of the model (a Normalize module has
    already scaled the whole vector), and `normalize_embeddings` then normalizes the cut one.
    """
    check_truncate_dim(dim, x.shape[-1])
    return x[..., :dim]


def check_truncate_dim(dim, width: int) -> None:
    """A clear error unless `dim` is a whole number from 1 to `width` (the vectors' length)."""
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or not 0 < dim <= width:
        raise ArgumentError(f"truncate_dim={dim!r}: the model's vectors have {width} "
                            f"components, so truncate_dim must be a whole number from 1 to "
                            f"{width}.")
