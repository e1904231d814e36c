"""A saved search index: texts, their embeddings, and which model made them.

An index is a folder:
  embeddings.npy  float32 [n, dim], row i embeds text i; opened memory-mapped, so a big index
                  is searched straight from disk
  texts.jsonl     one JSON string per line
  index.json      the model's identity (name, dim, fingerprint) and the number of texts;
                  written last, so a folder without it is an unfinished index

Vectors from two different models live in unrelated spaces: comparing them gives confident
nonsense, never an error. So an index remembers a fingerprint of its model's weights, and
`check_model` refuses a query model whose fingerprint differs.

Left out: appending to an index, and any compression of the vectors.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .checkpoint import find_weights, read_safetensors_header
from .errors import SearchIndexError
from .folder import read_json, read_modules

FORMAT = "minisbert-index"
VERSION = 1
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


def model_identity(model, folder: str | os.PathLike, name: str | None = None) -> dict:
    """What an index records about the model that made it. `name` defaults to the folder's
    name; pass the hub name (e.g. "sentence-transformers/all-MiniLM-L6-v2") to record that."""
    folder = Path(os.path.abspath(folder))  # not resolve(): keep weights/x, not its link target
    return {"name": name or folder.name, "dim": model.dim,
            "fingerprint": model_fingerprint(folder), "path": str(folder)}


@dataclass
class Index:
    texts: list[str]
    embeddings: np.ndarray  # [n, dim]; memory-mapped when read by read_index
    model: dict  # model_identity() of the model that made the embeddings
    path: Path | None = None


def write_index(folder: str | os.PathLike, texts: list[str], embeddings: np.ndarray,
                model: dict) -> Path:
    """Save texts and their embeddings (from the model described by `model`) as an index."""
    folder = Path(folder)
    embeddings = np.asarray(embeddings, dtype=np.float32)
    if embeddings.shape != (len(texts), model["dim"]):
        raise ValueError(f"embeddings have shape {embeddings.shape}; expected "
                         f"({len(texts)}, {model['dim']}), one row per text")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "index.json").unlink(missing_ok=True)  # the folder is unfinished until the end
    # Each file is written beside its final name and renamed: a search that has the old
    # embeddings memory-mapped keeps reading the old file, never a half-written one.
    with open(folder / "embeddings.npy.tmp", "wb") as f:
        np.save(f, embeddings)
    os.replace(folder / "embeddings.npy.tmp", folder / "embeddings.npy")
    lines = "".join(json.dumps(text, ensure_ascii=False) + "\n" for text in texts)
    (folder / "texts.jsonl.tmp").write_text(lines, encoding="utf-8")
    os.replace(folder / "texts.jsonl.tmp", folder / "texts.jsonl")
    meta = {"format": FORMAT, "version": VERSION, "count": len(texts), "model": model}
    (folder / "index.json.tmp").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n",
                                           encoding="utf-8")
    os.replace(folder / "index.json.tmp", folder / "index.json")
    return folder


def read_index(folder: str | os.PathLike) -> Index:
    """Open an index folder; the embeddings are memory-mapped, not read."""
    folder = Path(folder)
    if not (folder / "index.json").is_file():
        raise SearchIndexError(f"{folder} is not a minisbert index (no index.json); make one "
                               "with `minisbert encode -i FILE -o FOLDER`.")
    try:
        meta = json.loads((folder / "index.json").read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT or meta.get("version") != VERSION:
            raise ValueError(f"format {meta.get('format')!r} version {meta.get('version')!r}")
        with open(folder / "texts.jsonl", encoding="utf-8") as f:
            texts = [json.loads(line) for line in f]
        embeddings = np.load(folder / "embeddings.npy", mmap_mode="r")
        expected = (meta["count"], meta["model"]["dim"])
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise SearchIndexError(f"{folder}: unreadable index ({e!r}); make it again with "
                               "`minisbert encode`.") from None
    if embeddings.shape != expected or len(texts) != expected[0]:
        raise SearchIndexError(
            f"{folder}: {len(texts)} texts and embeddings of shape {embeddings.shape}, but "
            f"index.json says {expected[0]} x {expected[1]}; the index is damaged, make it "
            "again with `minisbert encode`.")
    return Index(texts, embeddings, meta["model"], folder)


def check_model(index: Index, model: dict) -> None:
    """Refuse to search `index` with vectors from a model other than the one that made it."""
    made = index.model
    if made["fingerprint"] != model["fingerprint"] or made["dim"] != model["dim"]:
        raise SearchIndexError(
            f"{index.path} was made with model {made['name']!r} (fingerprint "
            f"{made['fingerprint']}, dim {made['dim']}), not with {model['name']!r} (fingerprint "
            f"{model['fingerprint']}, dim {model['dim']}); its vectors are not comparable. "
            f"Search it with --model {made.get('path') or made['name']}, or rebuild it with the "
            "model you want.")
