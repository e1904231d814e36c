"""Reading weight files: every tensor of a checkpoint, by its name, as float32 NumPy arrays.

  - safetensors: the container is parsed here (no torch, no extra library) and memory-mapped,
    so a 768 MB embedding table costs no RAM until rows of it are read;
  - pytorch_model.bin: read through torch_checkpoint.py, without torch;
  - a checkpoint split into shards: the .index.json's weight_map says which file holds what.
F16, BF16 and F64 tensors are converted to float32 (every computation here is float32).

What the names mean, and which tensors a model needs, is checkpoint.py's job, not this one's.

The safetensors format: 8 bytes little-endian header length N, N bytes of JSON mapping each
tensor name to {dtype, shape, data_offsets}, then the raw little-endian C-order data.

Left out: writing weight files, and dtypes other than floats and integers (F8, complex).
"""

from __future__ import annotations

import json
import math
import mmap
import os
import reprlib
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np

from . import torch_checkpoint
from .errors import CheckpointError, ModelFileMissing
from .folder import check_not_lfs_pointer, read_json

# safetensors dtype -> how its bytes are viewed. BF16 has no NumPy dtype: read as uint16.
_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2",
           "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1", "U8": "u1", "BOOL": "?"}
# Bounds on what a header may ask for, far above any real checkpoint: the header itself (the
# safetensors library's own limit; a 250k-vocabulary model's is a few KB), and a tensor's rank.
MAX_HEADER_BYTES = 100_000_000
MAX_DIMS = 32

# Values from a file are quoted in messages this short, whatever their size or nesting.
_quote = reprlib.Repr()
_quote.maxlevel, _quote.maxlist, _quote.maxdict, _quote.maxstring, _quote.maxother = 3, 6, 4, 60, 60


def read_safetensors_header(path: str | os.PathLike) -> tuple[dict, int]:
    """A .safetensors file's header, checked: (tensor name -> {dtype, shape, data_offsets},
    the byte where the data starts). `__metadata__` is left out. The data is not read."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileMissing(f"{path}: no such file. Download it with the rest of the model "
                               "folder.")
    size = path.stat().st_size
    with open(path, "rb") as f:
        start = f.read(64)
        check_not_lfs_pointer(path, start, CheckpointError)
        if size < 8:
            raise CheckpointError(f"{path} is {size} bytes: too short to be a safetensors file. "
                                  "It is truncated or empty; download it again.")
        header_len = int.from_bytes(start[:8], "little")
        if header_len > MAX_HEADER_BYTES:
            raise CheckpointError(f"{path}: the header says it is {header_len} bytes long; a "
                                  f"safetensors header may be at most {MAX_HEADER_BYTES}. The file "
                                  "is corrupt or not a safetensors file; download it again.")
        if 8 + header_len > size:
            raise CheckpointError(
                f"{path}: header says it is {header_len} bytes long but the file has {size} bytes. "
                "The file is truncated or not a safetensors file; download it again.")
        f.seek(8)
        try:
            header = json.loads(f.read(header_len))
        # ValueError: JSONDecodeError, and numbers of more than 4300 digits; RecursionError:
        # arrays or objects nested a thousand deep.
        except (ValueError, RecursionError) as e:
            raise CheckpointError(f"{path}: the header is not valid JSON "
                                  f"({type(e).__name__}: {str(e)[:200]}). The file is corrupt "
                                  "or not a safetensors file; download it again.") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: the header is not a JSON object; download the file again.")
    header.pop("__metadata__", None)
    return header, 8 + header_len


def read_safetensors(path: str | os.PathLike, keep_bf16: bool = False) -> dict[str, np.ndarray]:
    """Map every tensor of a .safetensors file to a read-only float32 array.

    F32 tensors are zero-copy views into the memory-mapped file; F16/BF16/F64 are converted
    to float32 (a copy), since every computation here is float32. keep_bf16: BF16 tensors are
    left in the file too, as uint16 views of their bits (bf16_to_float32 converts them).
    """
    path = Path(path)
    header, data_start = read_safetensors_header(path)
    data_len = path.stat().st_size - data_start
    buffer = _map(path) if data_len else b""
    tensors = {}
    for name, info in header.items():
        dtype, shape, (begin, end) = _entry(path, name, info)
        item = np.dtype(_DTYPES[dtype])
        count = math.prod(shape)  # a Python int: [2**32, 2**32] must not wrap around in int64
        if not end <= data_len or end - begin != count * item.itemsize:
            raise CheckpointError(
                f"{path}: tensor {_quote.repr(name)} is {dtype} {_quote.repr(shape)}, "
                f"{_quote.repr(count * item.itemsize)} bytes, but its data_offsets are "
                f"{_quote.repr(begin)}..{_quote.repr(end)} of the "
                f"{data_len} bytes of data. The file is truncated or corrupt; download it again.")
        if count == 0:  # nothing to read (and an empty data section has nothing to map)
            raw = np.zeros(0, dtype=item)
        else:
            raw = np.frombuffer(buffer, dtype=item, count=count, offset=data_start + begin)
        keep = keep_bf16 and dtype == "BF16"
        tensors[name] = (raw if keep else _to_float32(raw, dtype)).reshape(shape)
    return tensors


def _entry(path: Path, name: str, info) -> tuple[str, list[int], tuple[int, int]]:
    """A header entry's (dtype, shape, (begin, end)), each checked to be what the format says:
    a known dtype, a list of at most MAX_DIMS whole numbers >= 0, two offsets begin <= end."""
    def whole(n) -> bool:  # JSON true is no number, although Python's True is an int
        return type(n) is int and n >= 0

    if not isinstance(info, dict):
        problem = f"is a JSON {type(info).__name__}, not an object"
    elif not {"dtype", "shape", "data_offsets"} <= info.keys():
        problem = "lacks dtype, shape or data_offsets"
    elif not isinstance(info["dtype"], str):
        problem = f"has the dtype {_quote.repr(info['dtype'])}, not a string"
    elif not (isinstance(info["shape"], list) and len(info["shape"]) <= MAX_DIMS
              and all(map(whole, info["shape"]))):
        problem = (f"has the shape {_quote.repr(info['shape'])}, not a list of at most "
                   f"{MAX_DIMS} whole numbers")
    elif not (isinstance(info["data_offsets"], list) and len(info["data_offsets"]) == 2
              and all(map(whole, info["data_offsets"]))
              and info["data_offsets"][0] <= info["data_offsets"][1]):
        problem = (f"has the data_offsets {_quote.repr(info['data_offsets'])}, not two whole "
                   "numbers [begin, end]")
    elif info["dtype"] not in _DTYPES:
        raise CheckpointError(f"{path}: tensor {_quote.repr(name)} has dtype "
                              f"{_quote.repr(info['dtype'])}, which minisbert cannot read (it "
                              "reads F32, F16, BF16, F64 and integers).")
    else:
        return info["dtype"], info["shape"], tuple(info["data_offsets"])
    raise CheckpointError(f"{path}: the header entry of tensor {_quote.repr(name)} {problem}; "
                          "the file is corrupt, download it again.")


def _map(path: Path):
    # A private read-only mapping: pages are read from disk on first touch and can be dropped
    # again by the OS, so a large table costs RAM only for the rows actually gathered.
    with open(path, "rb") as f:
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)


def bf16_to_float32(bits: np.ndarray) -> np.ndarray:
    """bfloat16 stored as its 16 bits (uint16) -> float32, exactly: a bfloat16 is the top half
    of a float32, so the bits are shifted into the high half of 32. Keeps the array's layout
    (a transposed view stays transposed) and its shape (a 0-d array stays an array)."""
    # One pass: each uint16 is read, widened and shifted on its way into the uint32 result
    # (astype, then <<= in place, would write and reread the 4 bytes: 16% slower, measured).
    wide = np.empty_like(bits, dtype=np.uint32)
    np.left_shift(bits, np.uint32(16), out=wide, dtype=np.uint32)
    return wide.view(np.float32)


def _to_float32(raw: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "F32":
        return raw
    if dtype == "BF16":
        return bf16_to_float32(raw)
    if dtype in ("F16", "F64"):
        return raw.astype(np.float32)
    return raw  # integer tensors (position_ids buffers) are never used as weights


# ---------------------------------------------------------------------------- other containers

# The weight files a folder may hold, in the order transformers looks for them.
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json",
                "pytorch_model.bin", "pytorch_model.bin.index.json")


def find_weights(folder: str | os.PathLike) -> Path:
    """The weight file of a model (or module) folder: the first of WEIGHT_FILES it holds."""
    folder = Path(folder)
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    raise ModelFileMissing(f"{folder} holds no weights: none of {', '.join(WEIGHT_FILES)}. "
                           "Download the complete folder.")


def read_weight_map(index_path: str | os.PathLike,
                    error: type[Exception] = CheckpointError) -> dict[str, list[str]]:
    """A sharded checkpoint's index (model.safetensors.index.json): shard file -> the tensors
    it holds. Shards are plain file names beside the index; an index naming anything else
    (a path, "..") raises `error`, since the downloader turns these names into file paths."""
    index_path = Path(index_path)
    index = read_json(index_path, required=True, error=error)
    weight_map = index.get("weight_map")
    if not (isinstance(weight_map, dict) and weight_map
            and all(isinstance(v, str) for v in weight_map.values())):
        raise error(f"{index_path} has no weight_map {{tensor name: shard file}}; "
                    "download it again.")
    by_shard: dict[str, list[str]] = {}
    for name, shard in weight_map.items():
        by_shard.setdefault(shard, []).append(name)
    for shard, names in by_shard.items():
        if PurePosixPath(shard).name != shard or PureWindowsPath(shard).name != shard \
                or shard in ("", ".", ".."):  # a file beside the index, no path
            raise error(f"{index_path} puts {names[0]} in {shard!r}, which is not a file name "
                        "in the same folder; refusing the index.")
    return by_shard


def read_tensors(path: str | os.PathLike, keep_bf16: bool = False) -> dict[str, np.ndarray]:
    """Every tensor of a weight file, as float32 (integers as they are), whatever its container:
    .safetensors, torch's pytorch_model.bin, or the .index.json of a sharded checkpoint.
    keep_bf16: safetensors' BF16 tensors as uint16 bits, not widened (see read_safetensors)."""
    path = Path(path)
    if path.name.endswith(".index.json"):
        return read_sharded(path, keep_bf16)
    if path.suffix == ".safetensors":
        return read_safetensors(path, keep_bf16)
    return read_pytorch_bin(path)


def read_pytorch_bin(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every tensor of a torch.save'd state dict, as float32, without torch and without running
    anything the file asks for (see torch_checkpoint.py)."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileMissing(f"{path}: no such file. Download the complete model folder.")
    with open(path, "rb") as f:
        check_not_lfs_pointer(path, f.read(64), CheckpointError)
    return {name: _to_float32(raw, dtype)
            for name, (dtype, raw) in torch_checkpoint.read_torch_checkpoint(path).items()}


def read_sharded(index_path: str | os.PathLike, keep_bf16: bool = False) -> dict[str, np.ndarray]:
    """A checkpoint split into shards: model.safetensors.index.json's `weight_map` says which
    shard file (beside the index) holds each tensor; the shards are read and merged."""
    index_path = Path(index_path)
    tensors = {}
    for shard, names in read_weight_map(index_path).items():
        shard_path = index_path.parent / shard
        if not shard_path.is_file():
            raise ModelFileMissing(f"{shard_path}: no such file, but {index_path.name} says it "
                                   f"holds {len(names)} tensor(s) ({names[0]}, ...). Download "
                                   "every shard of the checkpoint.")
        if shard_path.name.endswith(".index.json"):
            raise CheckpointError(f"{index_path} names another index, {shard}, as a shard.")
        found = read_tensors(shard_path, keep_bf16)
        missing = [n for n in names if n not in found]
        if missing:
            raise CheckpointError(
                f"{shard_path} lacks {len(missing)} tensor(s) that {index_path.name} places in it: "
                f"{', '.join(missing[:5])}{' …' if len(missing) > 5 else ''}. The shard and the "
                "index come from different versions; download both again.")
        tensors.update((n, found[n]) for n in names)
    return tensors
