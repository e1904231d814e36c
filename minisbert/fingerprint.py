"""A model's fingerprint: 16 hex digits that name the vector space a model folder's vectors
live in, so that an index (index.py) can refuse a query model other than the one that made it.

The hash covers what decides the vectors: modules.json, the module configs (pooling, Dense),
config.json, and the weights. It reads ~70 KB per weight file, not the whole file: the
safetensors header (every tensor's name, dtype and shape) and 16 evenly spaced 4 KiB samples
of the data. Fine-tuning changes nearly every weight, so the samples catch it.

Left out: an edit confined to a few weights between the samples goes unnoticed, and two
folders whose weights differ only in storage (a .bin and its .safetensors) get different
fingerprints, though their vectors agree.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from .weights import find_weights, read_safetensors_header
from .folder import read_json, read_modules

_SAMPLES = 16  # pieces of the weights hashed by the fingerprint...
_SAMPLE_BYTES = 4096  # ...of this many bytes each


def _canonical_json(path: Path, drop=()) -> bytes:
    """The file's JSON re-serialized with sorted keys, so formatting does not matter."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, dict):
        data = {k: v for k, v in data.items() if k not in drop and not k.startswith("_")}
    return json.dumps(data, sort_keys=True).encode()


def model_fingerprint(folder: str | os.PathLike) -> str:
    """16 hex digits that name a model's vector space: a hash of modules.json, the module
    configs (pooling, Dense), config.json, and the weights: for model.safetensors its header
    (every tensor's name, dtype, shape) and 16 evenly spaced 4 KiB samples of the data. It
    reads ~70 KB, not the whole file: fine-tuning changes nearly every weight, so the samples
    catch it; an edit confined to a few weights between the samples would go unnoticed.
    pytorch_model.bin is sampled the same way (its size, then 16 samples of the whole file);
    a sharded checkpoint hashes its index and each shard; Dense modules' weights are hashed too.

    Bookkeeping keys of config.json (transformers_version, _name_or_path) are left out, so
    re-saving a folder with another transformers release keeps its fingerprint.
    """
    pipeline = read_modules(folder)
    h = hashlib.sha256()
    if pipeline.modules_json is not None:
        h.update(_canonical_json(pipeline.modules_json))
        for module in pipeline.modules:  # the other modules' settings (pooling modes)
            config = pipeline.folder(module) / "config.json"
            if module.kind != "Transformer" and config.is_file():
                h.update(_canonical_json(config))
    h.update(_canonical_json(pipeline.transformer_dir / "config.json",
                             drop={"transformers_version"}))
    _hash_weights(h, find_weights(pipeline.transformer_dir))
    for module in pipeline.modules:
        if module.kind == "Dense":
            _hash_weights(h, find_weights(pipeline.folder(module)))
    return h.hexdigest()[:16]


def _hash_weights(h, weights: Path) -> None:
    """Feed a weight file (or a sharded checkpoint's index and shards) to the hash `h`."""
    if weights.name.endswith(".index.json"):
        h.update(_canonical_json(weights))  # which tensor lives in which shard
        weight_map = read_json(weights).get("weight_map") or {}
        for shard in sorted(set(weight_map.values())):
            _hash_weights(h, weights.parent / Path(shard).name)
        return
    size = weights.stat().st_size
    data_start = 0
    with open(weights, "rb") as f:
        if weights.suffix == ".safetensors":
            _, data_start = read_safetensors_header(weights)
            f.seek(8)
            h.update(f.read(data_start - 8))  # the header's bytes as stored
        else:
            h.update(str(size).encode())  # a pickle's names sit among the data: size and samples
        last = max(size - _SAMPLE_BYTES, data_start)
        for offset in np.linspace(data_start, last, _SAMPLES).astype(np.int64):
            f.seek(int(offset))
            h.update(f.read(_SAMPLE_BYTES))
