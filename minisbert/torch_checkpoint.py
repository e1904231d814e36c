"""Reading PyTorch's checkpoint files (pytorch_model.bin) without torch, and without running them.

Since torch 1.6, `torch.save(state_dict, "pytorch_model.bin")` writes a zip archive:
    pytorch_model/data.pkl     a pickle of the state dict {name: tensor}
    pytorch_model/data/<key>   the raw bytes of each storage (a flat buffer tensors are views of)
    pytorch_model/byteorder    "little" (absent in old files, which are little endian too)
    pytorch_model/version, .format_version, ...
(the top folder is named after the file, or "archive"). In the pickle each tensor is a call
    torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, hooks)
and each storage a persistent id ("storage", torch.FloatStorage, key, device, numel), which
the loader must resolve to the bytes of data/<key>.

A pickle is a small program: unpickling calls whatever functions it names, so a hostile file
runs `os.system(...)` the moment it is loaded by a plain `pickle.load` (or `torch.load` with
weights_only=False). This reader runs the pickle on an unpickler that knows exactly the few
names a state dict needs and answers each with a NumPy stand-in of its own; any other name
(`os.system`, `builtins.exec`, `subprocess.Popen`, ...) is refused before it is called, so
nothing the file asks for ever runs. torch's own `weights_only=True` loader works the same way.

Storages are memory-mapped when the archive stores them uncompressed (torch always does), so,
as with safetensors, a large embedding table costs RAM only for the rows read.

Left out: the legacy format of torch < 1.6 (a bare pickle stream; a clear error says how to
convert it), sparse, quantized and complex tensors, and anything in the file that is not a
tensor. Only weights.py calls this module; it turns the dtypes into float32 (checkpoint.py knows the
tensor names).
"""

from __future__ import annotations

import _compat_pickle
import math
import mmap
import os
import pickle
import struct
import tarfile
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np

from .errors import CheckpointError

# torch's storage classes -> (safetensors dtype name, how the bytes are viewed, little endian).
# BF16 has no NumPy dtype: its bytes are read as uint16 and widened by weights.py.
_STORAGES = {
    "DoubleStorage": ("F64", "<f8"), "FloatStorage": ("F32", "<f4"),
    "HalfStorage": ("F16", "<f2"), "BFloat16Storage": ("BF16", "<u2"),
    "LongStorage": ("I64", "<i8"), "IntStorage": ("I32", "<i4"), "ShortStorage": ("I16", "<i2"),
    "CharStorage": ("I8", "i1"), "ByteStorage": ("U8", "u1"), "BoolStorage": ("BOOL", "?"),
}

# What torch < 1.6 wrote first: a pickled magic number (then the protocol, sys info, the state
# dict, and the storages' bytes, all in one stream).
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def _how_to_convert(path: Path) -> str:
    load = f"torch.load('{path.name}', weights_only=True)"
    return (f"Convert it once where torch is installed: `from safetensors.torch import save_file; "
            f"save_file({load}, 'model.safetensors')` (or `torch.save({load}, '{path.name}')`, "
            "which writes the zip format minisbert reads).")


# The objects the unpickler hands out are tuples (of a subclass with no attributes): a pickle
# can neither call them nor set attributes on them with its BUILD instruction.
class _StorageType(tuple):
    """What the pickle gets for `torch.FloatStorage` etc.: (dtype name, NumPy dtype)."""
    __slots__ = ()


class _Storage(tuple):
    """A storage resolved from its persistent id: (dtype name, flat array of its elements)."""
    __slots__ = ()


class _Tensor(tuple):
    """A rebuilt tensor: (dtype name, array)."""
    __slots__ = ()


class _Malformed(Exception):
    """Arguments in the pickle that do not describe a tensor; reported with the file's name."""


def read_torch_checkpoint(path: str | os.PathLike) -> dict[str, tuple[str, np.ndarray]]:
    """Every tensor of a torch.save'd state dict: name -> (safetensors dtype name, array).

    Arrays are read-only views of the memory-mapped file (or of its bytes) in their stored
    dtype, BF16 as uint16; weights.py converts them to float32.
    """
    path = Path(path)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            return _read_archive(path, archive)
    _refuse_non_zip(path)


def _read_archive(path: Path, archive: zipfile.ZipFile) -> dict[str, tuple[str, np.ndarray]]:
    pickles = [n for n in archive.namelist() if n.count("/") == 1 and n.endswith("/data.pkl")]
    if len(pickles) != 1:
        raise CheckpointError(f"{path} is a zip file but not a PyTorch checkpoint: it should hold "
                              f"one <name>/data.pkl, and holds {len(pickles)}. Download it again.")
    prefix = pickles[0][:-len("data.pkl")]
    byteorder = "little"
    if prefix + "byteorder" in archive.namelist():
        byteorder = archive.read(prefix + "byteorder").decode("ascii", "replace").strip()
    if byteorder not in ("little", "big"):
        raise CheckpointError(f"{path}: {prefix}byteorder says {byteorder!r}; expected 'little' "
                              "or 'big'. The file is corrupt; download it again.")
    storages = _StorageReader(path, archive, prefix + "data/", byteorder)
    with archive.open(pickles[0]) as f:
        state = _unpickle(path, f, storages.load)
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a pickled {type(state).__name__}, not a state dict "
                              "{name: tensor}; minisbert reads model weights saved with "
                              "torch.save(model.state_dict(), ...).")
    tensors = {}
    for name, value in state.items():
        if not isinstance(name, str) or not isinstance(value, _Tensor):
            raise CheckpointError(
                f"{path}: entry {name!r} of the state dict is {_describe(value)}, not a "
                "tensor; minisbert reads files holding only {name: tensor}. Save the model's "
                "state_dict() alone, or convert the file to model.safetensors.")
        tensors[name] = tuple(value)
    return tensors


class _StateDictUnpickler(pickle.Unpickler):
    """An unpickler that knows only the names a state dict needs. `find_class` is the one place
    a pickle obtains anything callable (the GLOBAL, STACK_GLOBAL, INST and EXT instructions all
    go through it), so a name missing from `_ALLOWED` is never imported, let alone called."""

    def __init__(self, file, path: Path, load_storage):
        super().__init__(file)
        self.path = path
        self.load_storage = load_storage

    def find_class(self, module: str, name: str):
        # Pickles of protocol 0-2 may spell modules as Python 2 did (__builtin__ for builtins).
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if module == "torch" and name in _STORAGES:
            return _StorageType(_STORAGES[name])
        found = _ALLOWED.get((module, name))
        if found is None:
            raise CheckpointError(
                f"{self.path}: the pickle asks for {module}.{name}, which a checkpoint of weights "
                "never needs; minisbert refused it and ran nothing. A pickle can carry code that "
                "runs when it is loaded: only if you trust where the file comes from, load it with "
                "torch and save its state dict as model.safetensors "
                "(safetensors.torch.save_file).")
        return found

    def persistent_load(self, pid):
        # ("storage", storage type, key, device, number of elements); the device is only a
        # label here, every storage is read into host memory.
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType) and isinstance(pid[2], str)
                and type(pid[4]) is int and pid[4] >= 0):
            raise _Malformed(f"the pickle refers to {_short(pid)}, which is not a storage")
        code, dtype = pid[1]
        return _Storage((code, self.load_storage(pid[2], dtype, pid[4])))


def _unpickle(path: Path, file, load_storage,
              what: str = "its pickle cannot be read as a state dict"):
    try:
        return _StateDictUnpickler(file, path, load_storage).load()
    except CheckpointError:
        raise
    except _Malformed as e:
        raise CheckpointError(f"{path}: {e}. The file is corrupt or not a PyTorch checkpoint; "
                              "download it again.") from None
    except Exception as e:  # not a pickle, or a broken one: stack underflow, wrong types, EOF...
        raise CheckpointError(f"{path}: {what} ({type(e).__name__}: {_short(str(e))}). The "
                              "file is corrupt or not a PyTorch checkpoint; download it "
                              "again.") from None


def _describe(value) -> str:
    if isinstance(value, _Tensor):
        return "a tensor"
    return f"the {type(value).__name__} {_short(value, 40)}"


def _short(value, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


# ---------------------------------------------------------------------------- the allowed names

def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None) -> _Tensor:
    """The tensor of `size` whose element [i, j, ...] is
    storage[offset + i·stride[0] + j·stride[1] + ...], as a view. Every argument is checked
    first: they come from the file."""
    if not isinstance(storage, _Storage):
        raise _Malformed(f"a tensor is rebuilt from {_short(storage)}, not from a storage")
    if not (type(storage_offset) is int and isinstance(size, tuple) and isinstance(stride, tuple)
            and len(size) == len(stride)
            and all(type(n) is int and n >= 0 for n in (storage_offset, *size, *stride))):
        raise _Malformed(f"a tensor has a malformed layout: offset {_short(storage_offset)}, "
                         f"size {_short(size)}, stride {_short(stride)}")
    code, flat = storage
    count = math.prod(size)  # Python integers: a huge size cannot wrap around
    if count == 0:
        return _Tensor((code, flat[:0].reshape(size)))
    last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= flat.size:
        raise _Malformed(f"a tensor of size {list(size)} at offset {storage_offset} reaches "
                         f"element {last} of a storage of {flat.size} elements")
    contiguous = all(s == math.prod(size[i + 1:]) for i, (n, s) in enumerate(zip(size, stride))
                     if n > 1)
    if contiguous:  # the usual case: a plain slice of the storage
        return _Tensor((code, flat[storage_offset:storage_offset + count].reshape(size)))
    # A transposed or sliced tensor saved as it was: the same view NumPy-side, no copy.
    view = np.lib.stride_tricks.as_strided(
        flat[storage_offset:], shape=size, strides=[s * flat.itemsize for s in stride],
        writeable=False)
    return _Tensor((code, view))


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None) -> _Tensor:
    """nn.Parameter(tensor): for inference, the tensor itself."""
    if not isinstance(data, _Tensor):
        raise _Malformed(f"a parameter is rebuilt from {_short(data)}, not from a tensor")
    return data


# (module, name) the pickle asks for -> what it gets instead; `find_class` answers the storage
# classes of _STORAGES too. OrderedDict is the state dict itself (model.state_dict() also
# pickles a BUILD that sets its `_metadata` attribute, which is harmless).
_ALLOWED = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
}


# ---------------------------------------------------------------------------- storages

class _StorageReader:
    """Reads data/<key> of the archive as a flat array, once per key (tensors that share a
    storage, such as tied weights, are views of one array)."""

    def __init__(self, path: Path, archive: zipfile.ZipFile, folder: str, byteorder: str):
        self.path, self.archive, self.folder, self.byteorder = path, archive, folder, byteorder
        self.cache: dict[str, np.ndarray] = {}
        self.mapped = None

    def load(self, key: str, dtype: str, numel: int) -> np.ndarray:
        if key in self.cache:
            return self.cache[key]
        name = self.folder + key
        try:
            info = self.archive.getinfo(name)
        except KeyError:
            raise CheckpointError(f"{self.path}: the pickle refers to storage {key!r} but the "
                                  f"archive has no {name}. The file is truncated or corrupt; "
                                  "download it again.") from None
        item = np.dtype(dtype)
        if self.byteorder == "big":
            item = item.newbyteorder(">")
        if info.file_size < numel * item.itemsize:
            raise CheckpointError(f"{self.path}: storage {key!r} should hold {numel} elements "
                                  f"({numel * item.itemsize} bytes) but {name} has "
                                  f"{info.file_size} bytes. Download the file again.")
        if info.compress_type == zipfile.ZIP_STORED:
            flat = np.frombuffer(self._map(), dtype=item, count=numel,
                                 offset=self._data_offset(info))
        else:  # a re-compressed archive: decompress this storage into memory
            flat = np.frombuffer(self.archive.read(name), dtype=item, count=numel)
        if self.byteorder == "big":
            flat = flat.astype(item.newbyteorder("<"))  # rare: byte-swap once, a copy
            flat.flags.writeable = False
        self.cache[key] = flat
        return flat

    def _map(self):
        if self.mapped is None:
            with open(self.path, "rb") as f:
                self.mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        return self.mapped

    def _data_offset(self, info: zipfile.ZipInfo) -> int:
        # An entry's bytes follow its 30-byte local header, its name and its extra field (whose
        # length torch uses to align the data to 64 bytes).
        header = self._map()[info.header_offset:info.header_offset + 30]
        if len(header) < 30 or header[:4] != b"PK\x03\x04":
            raise CheckpointError(f"{self.path}: the zip entry {info.filename} has no local "
                                  "header; the file is corrupt, download it again.")
        name_len, extra_len = struct.unpack("<HH", header[26:30])
        start = info.header_offset + 30 + name_len + extra_len
        if start + info.file_size > len(self._map()):
            raise CheckpointError(f"{self.path}: {info.filename} runs past the end of the file; "
                                  "it is truncated, download it again.")
        return start


# ---------------------------------------------------------------------------- not a zip

def _refuse_non_zip(path: Path):
    """Explain what a file that is not a zip archive is, without running any of it."""
    if tarfile.is_tarfile(path):
        raise CheckpointError(f"{path} is in PyTorch's oldest checkpoint format (a tar archive, "
                              "torch < 0.4), which minisbert does not read. "
                              + _how_to_convert(path))
    def no_storages(pid):
        raise CheckpointError(f"{path}: a bare pickle stream with storages is the legacy "
                              "checkpoint format of torch < 1.6, which minisbert does not read. "
                              + _how_to_convert(path))

    # The same restricted unpickler reads the first pickle of the file: a legacy checkpoint
    # starts with a magic number, a hostile file is refused at the first name it asks for.
    with open(path, "rb") as f:
        first = _unpickle(path, f, no_storages, what="the file is neither a zip archive (the "
                          "format torch.save writes) nor a readable pickle")
    if type(first) is int and first == _LEGACY_MAGIC:
        raise CheckpointError(f"{path} is in PyTorch's legacy checkpoint format (saved by "
                              "torch < 1.6, or with _use_new_zipfile_serialization=False), which "
                              "minisbert does not read. " + _how_to_convert(path))
    raise CheckpointError(f"{path} is a bare pickle, not a PyTorch checkpoint (torch.save writes "
                          "a zip archive). Save the weights with torch.save(model.state_dict(), "
                          "...) or as model.safetensors.")
