"""MPNet (all-mpnet-base-v2's architecture) against HuggingFace's MPNetModel."""

from __future__ import annotations

import time

import numpy as np
import pytest

from minisbert.encoder import relative_position_buckets


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
