"""Pooling modes, include_prompt and truncate_dim, each against sentence-transformers' own code
run on the same random token vectors (torch and sentence-transformers are test-only)."""

import itertools
import json
import warnings

import numpy as np
import pytest

from minisbert import pooling
from minisbert.errors import ConfigError, UnsupportedModelError

LENGTHS = [12, 1, 5, 3, 12, 7, 2]  # real tokens per text, padded on the right to 12


def _batch(d=16, seed=0):
    rng = np.random.default_rng(seed)
    s = max(LENGTHS)
    x = rng.standard_normal((len(LENGTHS), s, d)).astype(np.float32)
    mask = (np.arange(s)[None, :] < np.array(LENGTHS)[:, None]).astype(np.int64)
    x[mask == 0] = 100 + 50 * rng.standard_normal((int((mask == 0).sum()), d))  # loud padding
    return x, mask


def _st_pool(x, mask, modes, prompt_length):
    torch = pytest.importorskip("torch")
    Pooling = pytest.importorskip("sentence_transformers.sentence_transformer.modules").Pooling
    module = Pooling(x.shape[-1], pooling_mode=modes if len(modes) > 1 else modes[0],
                     include_prompt=prompt_length == 0)
    features = {"token_embeddings": torch.from_numpy(x), "attention_mask": torch.from_numpy(mask)}
    if prompt_length:
        features["prompt_length"] = prompt_length
    with torch.no_grad():
        return module(features)["sentence_embedding"].numpy()


@pytest.mark.parametrize("prompt_length", [0, 1, 3, 12])
@pytest.mark.parametrize("modes", [(m,) for m in pooling.MODES]
                         + [("cls", "mean", "weightedmean", "lasttoken"), ("lasttoken", "max")])
def test_modes_match_sentence_transformers(modes, prompt_length):
    """Every mode, alone and concatenated, with the prompt's first tokens left out
    (include_prompt: false): 3 leaves some texts with no token at all, 12 leaves every text
    empty, where sentence-transformers' own conventions (zeros, -inf, token 0) must match too."""
    x, mask = _batch()
    ref = _st_pool(x, mask, modes, prompt_length)
    ours = pooling.pool(x, mask, modes, prompt_length=prompt_length)
    assert ours.shape == ref.shape and ours.dtype == np.float32
    finite = np.isfinite(ref)
    assert (np.isfinite(ours) == finite).all() and (ours[~finite] == ref[~finite]).all()
    worst = float(np.abs(ours[finite] - ref[finite]).max(initial=0.0))
    print(f"\n{'+'.join(modes)}, prompt_length {prompt_length}: maxdiff = {worst:.2e}")
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-6)


def test_prompt_masking_changes_what_each_mode_sees():
    """Leaving out the first 3 tokens is not a no-op (so the comparison above is not vacuous):
    it changes every text longer than 3 tokens in every mode but lasttoken (cls moves past
    the prompt), and for lasttoken the texts that the prompt covers whole (they become zeros)."""
    x, mask = _batch()
    long_rows = np.array(LENGTHS) > 3
    for mode in pooling.MODES:
        full = pooling.pool(x, mask, (mode,))
        cut = pooling.pool(x, mask, (mode,), prompt_length=3)
        changed = (full != cut).any(axis=1)
        if mode == "lasttoken":
            assert (changed == ~long_rows).all(), mode
        else:
            assert changed[long_rows].all(), mode


def test_flags_read_in_sentence_transformers_order():
    """The older one-flag-per-mode format, every combination of flags: the same modes in the
    same order as sentence-transformers' Pooling builds from them (none on -> mean)."""
    Pooling = pytest.importorskip("sentence_transformers.sentence_transformer.modules").Pooling
    flags = list(pooling._FLAGS)
    for on in itertools.product([False, True], repeat=len(flags)):
        config = {"word_embedding_dimension": 8, **dict(zip(flags, on))}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # the flags are deprecated there
            ref = Pooling(embedding_dimension=8, **dict(zip(flags, on))).pooling_mode
        ref = (ref,) if isinstance(ref, str) else tuple(ref)
        assert pooling.read_config(config, "config.json").modes == ref, on


@pytest.mark.parametrize("modes, include_prompt", [(("mean",), True), (("lasttoken",), False),
                                                   (("weightedmean", "cls", "max"), False)])
def test_config_saved_by_sentence_transformers(tmp_path, modes, include_prompt):
    Pooling = pytest.importorskip("sentence_transformers.sentence_transformer.modules").Pooling
    Pooling(8, pooling_mode=modes if len(modes) > 1 else modes[0],
            include_prompt=include_prompt).save(str(tmp_path))
    config = json.loads((tmp_path / "config.json").read_text())
    print(f"\nsaved: {config}")
    read = pooling.read_config(config, tmp_path / "config.json")
    assert read == pooling.PoolingConfig(modes, include_prompt)


@pytest.mark.parametrize("config, error, message", [
    ({"word_embedding_dimension": 8, "pooling_mode": "attention"}, UnsupportedModelError,
     r"pooling mode 'attention' is not supported; minisbert implements cls, max, mean, "
     r"mean_sqrt_len_tokens, weightedmean, lasttoken"),
    ({"embedding_dimension": 8, "pooling_mode": ["mean", 3]}, ConfigError, r"pooling_mode is \["),
    ({"embedding_dimension": 8, "pooling_mode": []}, ConfigError, r"pooling_mode is \[\]"),
    ({"word_embedding_dimension": 8, "include_prompt": "no"}, ConfigError, r"include_prompt is 'no'"),
    ({"pooling_mode_mean_tokens": True}, ConfigError, r"no word_embedding_dimension"),
])
def test_bad_configs_are_named(config, error, message):
    with pytest.raises(error, match=message) as e:
        pooling.read_config(config, "1_Pooling/config.json")
    assert "1_Pooling/config.json" in str(e.value)


@pytest.mark.parametrize("dim", [1, 8, 31, 32])
def test_truncate_then_normalize_as_sentence_transformers(dim):
    torch = pytest.importorskip("torch")
    util = pytest.importorskip("sentence_transformers.util")
    x = np.random.default_rng(1).standard_normal((5, 32)).astype(np.float32)
    # A model with a Normalize module: cut the unit vectors, then normalize_embeddings=True.
    unit = pooling.normalize(x)
    ref = torch.nn.functional.normalize(util.truncate_embeddings(torch.from_numpy(unit), dim), dim=1)
    ours = pooling.normalize(pooling.truncate(unit, dim))
    print(f"\ntruncate_dim {dim}: maxdiff = {np.abs(ours - ref.numpy()).max():.2e}")
    np.testing.assert_allclose(ours, ref.numpy(), rtol=1e-6, atol=1e-6)
    assert pooling.truncate(x, dim).shape == (5, dim)
    np.testing.assert_array_equal(pooling.truncate(x[0], dim), x[0, :dim])  # a single vector


@pytest.mark.parametrize("dim", [0, 33, -1, 2.5, True, None, "8"])
def test_truncate_dim_out_of_range_is_a_clear_error(dim):
    with pytest.raises(ValueError, match=r"truncate_dim=.*32 components.*from 1 to 32"):
        pooling.truncate(np.zeros((2, 32), np.float32), dim)
