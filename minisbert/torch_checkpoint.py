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
The machine is this module's own (`_Unpickler`), not Python's: it also bounds the work a file
can ask for (bytes, objects, nesting; see the limits below), which Python's cannot.

Storages are memory-mapped (torch stores every member uncompressed; a compressed one is
refused), so, as with safetensors, a large embedding table costs RAM only for the rows read.

Left out: the legacy format of torch < 1.6 (a bare pickle stream; a clear error says how to
convert it), sparse, quantized and complex tensors, and anything in the file that is not a
tensor. Only weights.py calls this module; it turns the dtypes into float32 (checkpoint.py knows the
tensor names).
"""

from __future__ import annotations

import _compat_pickle
import codecs
import math
import mmap
import os
import pickletools
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
    if prefix + "byteorder" in archive.namelist():  # b"little" or b"big", nothing longer
        raw = _read_member(path, archive, prefix + "byteorder", limit=16)
        byteorder = raw.decode("ascii", "replace").strip()
        if byteorder not in ("little", "big"):
            raise CheckpointError(f"{path}: {prefix}byteorder says {_describe(byteorder)}; "
                                  "expected 'little' or 'big'. The file is corrupt; download it "
                                  "again.")
    storages = _StorageReader(path, archive, prefix + "data/", byteorder)
    data = _read_member(path, archive, pickles[0], limit=MAX_PICKLE_BYTES)
    state = _unpickle(path, data, storages.load)
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a pickled {type(state).__name__}, not a state dict "
                              "{name: tensor}; minisbert reads model weights saved with "
                              "torch.save(model.state_dict(), ...).")
    tensors = {}
    for name, value in state.items():
        if not isinstance(name, str) or not isinstance(value, _Tensor):
            raise CheckpointError(
                f"{path}: entry {_quote(name) if isinstance(name, str) else _describe(name)} "
                f"of the state dict is {_describe(value)}, not a tensor; minisbert reads files "
                "holding only {name: tensor}. Save the model's state_dict() alone, or convert the "
                "file to model.safetensors.")
        tensors[name] = tuple(value)
    # Tensors are views: one storage seen under many names (memoized once, named a thousand
    # times) would become a copy per name in float32. Tied weights see a storage twice.
    viewed = sum(array.size for _, array in tensors.values())
    stored = sum(flat.size for flat in storages.cache.values())
    if viewed > MAX_VIEWS * max(stored, 1):
        raise CheckpointError(
            f"{path}: its tensors hold {viewed} elements, more than {MAX_VIEWS} times the "
            f"elements of the storages they view ({stored}); a checkpoint of weights shares a "
            "storage between a few tied tensors at most. The file is corrupt or hostile.")
    return tensors


def _read_member(path: Path, archive: zipfile.ZipFile, name: str, limit: int) -> bytes:
    """The bytes of a small member of the archive, refused if compressed or over `limit`."""
    info = archive.getinfo(name)
    _refuse_compressed(path, info)
    if info.file_size > limit:
        raise CheckpointError(f"{path}: {_clip(name)} is {info.file_size} bytes, more than the "
                              f"{limit} a checkpoint needs; the file is corrupt or hostile.")
    with archive.open(info) as f:
        return f.read(limit)


def _refuse_compressed(path: Path, info: zipfile.ZipInfo) -> None:
    # torch.save stores every member as it is. A compressed one (re-zipped by hand, or a zip
    # bomb: 831 bytes of bzip2 inflate to 1 GB) would have to be inflated whole to be read.
    if info.compress_type != zipfile.ZIP_STORED:
        raise CheckpointError(
            f"{path}: {_clip(info.filename)} is compressed; torch.save stores every member "
            "uncompressed, and minisbert reads only such files. Save it again with torch.save, "
            "or convert it to model.safetensors.")


# ---------------------------------------------------------------------------- the pickle machine

# What one pickle may cost. A state dict of n tensors makes about 15 n objects nested 4 deep,
# in about 150 n bytes of pickle: these allow some 60,000 tensors, far more than any encoder.
MAX_PICKLE_BYTES = 32 << 20
MAX_OBJECTS = 1_000_000
MAX_DEPTH = 64  # containers inside containers
MAX_VIEWS = 4  # the tensors may hold this many times the elements of their storages (tied weights)
_OPCODE_NAMES = {op.code.encode("latin-1"): op.name for op in pickletools.opcodes}


class _Unpickler:
    """A pickle machine for state dicts. A pickle is a program for a stack machine: push an
    int, push a string, make a tuple of the items since the last MARK, call a function named
    by GLOBAL with a tuple of arguments (REDUCE), ... This machine runs the forty-odd
    instructions torch.save writes (protocols 0 to 5), each checked, and refuses the others.

    Every name a pickle asks for goes through `find_class`, which answers only the few a state
    dict needs, with stand-ins of this module; anything else (`os.system`, `builtins.exec`) is
    refused before it is called. The machine also bounds its own work: at most MAX_OBJECTS
    values, nested at most MAX_DEPTH deep, dict keys of strings and numbers only (so nothing is
    hashed for long), and BUILD (which sets attributes) only on dicts it made. Nothing it does
    walks a value: a description names its type and length (`_describe`)."""

    def __init__(self, data: bytes, path: Path, load_storage):
        self.data, self.pos = bytes(data), 0
        self.path, self.load_storage = path, load_storage
        self.stack: list = []
        self.marks: list[int] = []  # stack heights at each MARK
        self.memo: dict = {}
        self.made = 0  # values created
        self.depth: dict[int, int] = {}  # id(container) -> how deep it nests
        self.keep: list = []  # the containers, alive, so that their ids stay theirs

    # -- reading the instruction stream
    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise _Malformed("the pickle ends in the middle of an instruction")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def line(self) -> bytes:  # protocol 0 writes its arguments as text lines
        end = self.data.find(b"\n", self.pos, self.pos + 512) - self.pos  # none is longer
        if end < 0:
            raise _Malformed("the pickle has a text argument that does not end")
        return self.take(end + 1)[:-1]

    def number(self, fmt: str) -> int:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    # -- the stack
    def push(self, value, items=()) -> None:
        self.made += 1
        if self.made > MAX_OBJECTS:
            raise _Malformed(f"the pickle makes more than {MAX_OBJECTS} objects")
        if items:  # an empty container nests 1 deep, the depth `nest` assumes when it has none
            self.nest(value, items)
        self.stack.append(value)

    def nest(self, container, items) -> None:
        """Record how deep `container` nests now that it holds `items` too."""
        deepest = max((self.depth.get(id(x), 1 if isinstance(x, (list, tuple, dict)) else 0)
                       for x in items), default=0)
        depth = max(self.depth.get(id(container), 1), deepest + 1)
        if depth > MAX_DEPTH:
            raise _Malformed(f"the pickle nests containers deeper than {MAX_DEPTH} levels")
        if id(container) not in self.depth:
            self.keep.append(container)
        self.depth[id(container)] = depth

    def pop(self):
        if len(self.stack) <= (self.marks[-1] if self.marks else 0):
            raise _Malformed("the pickle takes a value from an empty stack")
        return self.stack.pop()

    def pop_mark(self) -> list:
        if not self.marks:
            raise _Malformed("the pickle has no MARK where an instruction needs one")
        start = self.marks.pop()
        items = self.stack[start:]
        del self.stack[start:]
        return items

    # -- building containers
    def add_items(self, target, pairs) -> None:
        if not isinstance(target, dict):
            raise _Malformed(f"the pickle sets items of {_describe(target)}, not of a dict")
        for key, _ in pairs:
            if not (key is None or isinstance(key, (str, int, float))):
                raise _Malformed(f"the pickle has a dict key that is {_describe(key)}; a state "
                                 "dict's keys are strings")
        target.update(pairs)
        self.nest(target, [v for _, v in pairs])

    def append(self, target, items) -> None:
        if type(target) is not list:
            raise _Malformed(f"the pickle appends to {_describe(target)}, not to a list")
        target.extend(items)
        self.nest(target, items)

    def call(self, func, args):
        if not any(func is allowed for allowed in _ALLOWED.values()):
            raise _Malformed(f"the pickle calls {_describe(func)}, which is not a function")
        if type(args) is not tuple:
            raise _Malformed(f"the pickle calls a function with {_describe(args)} as arguments")
        if func is OrderedDict:  # OrderedDict() and then SETITEMS, as pickle writes it
            if args:
                raise _Malformed("the pickle makes an OrderedDict from arguments")
            return OrderedDict()
        return func(*args)

    def find_class(self, module: str, name: str):
        # Pickles of protocol 0-2 may spell modules as Python 2 did (__builtin__ for builtins).
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if module == "torch" and name in _STORAGES:
            return _StorageType(_STORAGES[name])
        found = _ALLOWED.get((module, name))
        if found is None:
            raise CheckpointError(
                f"{self.path}: the pickle asks for {_clip(module)}.{_clip(name)}, which a "
                "checkpoint of weights never needs; minisbert refused it and ran nothing. A "
                "pickle can carry code that runs when it is loaded: only if you trust where the "
                "file comes from, load it with torch and save its state dict as "
                "model.safetensors (safetensors.torch.save_file).")
        return found

    def persistent_load(self, pid):
        # ("storage", storage type, key, device, number of elements); the device is only a
        # label here, every storage is read into host memory.
        if not (type(pid) is tuple and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType) and type(pid[2]) is str
                and type(pid[4]) is int and pid[4] >= 0):
            raise _Malformed(f"the pickle refers to {_describe(pid)}, which is not a storage")
        code, dtype = pid[1]
        return _Storage((code, self.load_storage(pid[2], dtype, pid[4])))

    # -- the instructions
    def load(self):
        """Run the pickle to its STOP instruction; the value it leaves."""
        data, ops = self.data, _INSTRUCTIONS
        while self.pos < len(data):
            op = data[self.pos]
            self.pos += 1
            run = ops.get(op)
            if run is None:
                name = _OPCODE_NAMES.get(bytes([op]), f"byte {op:#04x}")
                raise _Malformed(f"the pickle uses the instruction {name}, which a state dict "
                                 "never needs")
            if run is _Unpickler.op_STOP:
                return self.pop()
            run(self)
        raise _Malformed("the pickle ends before its STOP instruction")

    def op_STOP(self): pass  # (handled by load)
    def op_PROTO(self): self.take(1)
    def op_FRAME(self): self.take(8)  # frames only help a reader prefetch
    def op_MARK(self): self.marks.append(len(self.stack))
    def op_POP(self): self.pop()
    def op_POP_MARK(self): self.pop_mark()
    def op_DUP(self): self.stack.append(self.top())

    # numbers; LONG4 and text longer than 40 digits exceed anything a tensor's layout holds
    def op_NONE(self): self.push(None)
    def op_NEWTRUE(self): self.push(True)
    def op_NEWFALSE(self): self.push(False)
    def op_BININT(self): self.push(self.number("<i"))
    def op_BININT1(self): self.push(self.number("<B"))
    def op_BININT2(self): self.push(self.number("<H"))
    def op_LONG1(self): self.push(int.from_bytes(self.take(self.number("<B")), "little", signed=True))
    def op_BINFLOAT(self): self.push(self.number(">d"))
    def op_INT(self):  # protocol 0 spells True and False as I01 and I00
        text = self.line()
        self.push(text == b"01" if text in (b"00", b"01") else self.decimal(text))
    def op_LONG(self): self.push(self.decimal(self.line().rstrip(b"L")))
    def op_FLOAT(self): self.push(self.decimal(self.line(), float))

    def decimal(self, text: bytes, kind=int):
        if len(text) > 40:
            raise _Malformed("the pickle has a number of more than 40 digits")
        return kind(text)

    # strings
    def op_SHORT_BINUNICODE(self): self.push(self.text(self.number("<B")))
    def op_BINUNICODE(self): self.push(self.text(self.number("<I")))
    def op_BINUNICODE8(self): self.push(self.text(self.number("<Q")))
    def op_UNICODE(self): self.push(self.line().decode("raw-unicode-escape"))
    def op_SHORT_BINSTRING(self): self.push(self.take(self.number("<B")).decode("ascii"))
    def op_BINSTRING(self): self.push(self.take(self.number("<i")).decode("ascii"))
    def op_STRING(self):  # Python 2's str, quoted, with escapes
        quoted = self.line()
        if len(quoted) < 2 or quoted[0] != quoted[-1] or quoted[:1] not in (b"'", b'"'):
            raise _Malformed("the pickle has a STRING without its quotes")
        self.push(codecs.escape_decode(quoted[1:-1])[0].decode("ascii"))

    def text(self, n: int) -> str:
        return self.take(n).decode("utf-8", "surrogatepass")

    # containers
    def op_EMPTY_LIST(self): self.push([])
    def op_EMPTY_DICT(self): self.push({})
    def op_EMPTY_TUPLE(self): self.push(())
    def op_LIST(self):
        items = self.pop_mark()
        self.push(items, items)
    def op_TUPLE(self):
        items = self.pop_mark()
        self.push(tuple(items), items)
    def op_TUPLE1(self): self.tuple_of(1)
    def op_TUPLE2(self): self.tuple_of(2)
    def op_TUPLE3(self): self.tuple_of(3)
    def tuple_of(self, n: int):
        items = [self.pop() for _ in range(n)][::-1]
        self.push(tuple(items), items)
    def op_DICT(self):
        items = self.pop_mark()
        self.push({})
        self.add_items(self.stack[-1], list(zip(items[::2], items[1::2])))
    def op_APPEND(self):
        item = self.pop()
        self.append(self.stack[-1] if self.stack else None, [item])
    def op_APPENDS(self):
        items = self.pop_mark()
        self.append(self.stack[-1] if self.stack else None, items)
    def op_SETITEM(self):
        value, key = self.pop(), self.pop()
        self.add_items(self.stack[-1] if self.stack else None, [(key, value)])
    def op_SETITEMS(self):
        items = self.pop_mark()
        self.add_items(self.stack[-1] if self.stack else None, list(zip(items[::2], items[1::2])))

    # the memo: values kept by number, to be pushed again (shared storages, tied weights)
    def op_PUT(self): self.memo[self.decimal(self.line())] = self.top()
    def op_BINPUT(self): self.memo[self.number("<B")] = self.top()
    def op_LONG_BINPUT(self): self.memo[self.number("<I")] = self.top()
    def op_MEMOIZE(self): self.memo[len(self.memo)] = self.top()
    def op_GET(self): self.stack.append(self.recall(self.decimal(self.line())))
    def op_BINGET(self): self.stack.append(self.recall(self.number("<B")))
    def op_LONG_BINGET(self): self.stack.append(self.recall(self.number("<I")))

    def top(self):
        if not self.stack:
            raise _Malformed("the pickle memoizes a value from an empty stack")
        return self.stack[-1]

    def recall(self, key: int):
        if key not in self.memo:
            raise _Malformed(f"the pickle recalls memo entry {key}, which it never stored")
        return self.memo[key]

    # names, calls, storages
    def op_GLOBAL(self):
        module = self.line().decode("utf-8", "replace")
        self.push(self.find_class(module, self.line().decode("utf-8", "replace")))
    def op_STACK_GLOBAL(self):
        name, module = self.pop(), self.pop()
        if type(module) is not str or type(name) is not str:
            raise _Malformed("the pickle names a global with something other than strings")
        self.push(self.find_class(module, name))
    def op_INST(self):  # protocol 0: call a class named inline with the items since MARK
        module = self.line().decode("utf-8", "replace")
        func = self.find_class(module, self.line().decode("utf-8", "replace"))
        self.push(self.call(func, tuple(self.pop_mark())))
    def op_OBJ(self):
        items = self.pop_mark()
        if not items:
            raise _Malformed("the pickle has an OBJ instruction with nothing to call")
        self.push(self.call(items[0], tuple(items[1:])))
    def op_REDUCE(self):
        args = self.pop()
        self.push(self.call(self.pop(), args))
    def op_BUILD(self):
        # BUILD sets an object's attributes from a state. torch writes one for the state
        # dict's `_metadata` (module versions, not needed for inference): dropped. On anything
        # else, a function above all, it would change minisbert itself: refused.
        self.pop()
        if type(self.top()) not in (dict, OrderedDict):
            raise _Malformed(f"the pickle sets attributes (BUILD) of {_describe(self.top())}; "
                             "only a state dict's own metadata may be set")
    def op_BINPERSID(self): self.push(self.persistent_load(self.pop()))
    def op_PERSID(self): self.push(self.persistent_load(self.line().decode("ascii", "replace")))


# opcode byte -> the method that runs it
_INSTRUCTIONS = {code[0]: getattr(_Unpickler, "op_" + name)
                 for code, name in _OPCODE_NAMES.items() if hasattr(_Unpickler, "op_" + name)}


def _unpickle(path: Path, data: bytes, load_storage, what: str | None = None):
    """Run the pickle `data`; every failure is a CheckpointError naming `path` (and `what`
    could not be read, if given)."""
    about = f"{path}: {what}" if what else f"{path}: its pickle cannot be read as a state dict"
    try:
        return _Unpickler(data, path, load_storage).load()
    except CheckpointError:
        raise
    except _Malformed as e:
        raise CheckpointError(f"{about + ': ' if what else f'{path}: '}{e}. The file is corrupt "
                              "or not a PyTorch checkpoint; download it again.") from None
    except Exception as e:  # a broken pickle: wrong argument types or counts, bad text ...
        raise CheckpointError(f"{about} ({type(e).__name__}: {_clip(str(e))}). The file is "
                              "corrupt or not a PyTorch checkpoint; download it again.") from None


def _describe(value) -> str:
    """A few words for a value from the file, without walking it (a value may be a list whose
    repr is 2**60 characters long, or nested too deep for repr to reach its end)."""
    if isinstance(value, _Tensor):
        return "a tensor"
    if isinstance(value, (list, tuple, dict)):
        n = len(value)
        return f"a {type(value).__name__} of {n} item{'s' if n != 1 else ''}"
    if isinstance(value, str):
        return f"the str {_quote(value, 40)}"
    if isinstance(value, (int, float)) or value is None:  # at most 255 bytes of digits
        return f"the {type(value).__name__} {_clip(repr(value), 40)}"
    return f"a {type(value).__name__}"


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def _quote(text: str, limit: int = 80) -> str:
    """repr() of a string from the file, cut to about `limit` characters."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + "…"


# ---------------------------------------------------------------------------- the allowed names

def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None) -> _Tensor:
    """The tensor of `size` whose element [i, j, ...] is
    storage[offset + i·stride[0] + j·stride[1] + ...], as a view. Every argument is checked
    first: they come from the file."""
    if not isinstance(storage, _Storage):
        raise _Malformed(f"a tensor is rebuilt from {_describe(storage)}, not from a storage")
    if not (type(storage_offset) is int and type(size) is tuple and type(stride) is tuple
            and len(size) == len(stride) <= 64
            and all(type(n) is int and n >= 0 for n in (storage_offset, *size, *stride))):
        raise _Malformed(f"a tensor has a malformed layout: offset {_describe(storage_offset)}, "
                         f"size {_describe(size)}, stride {_describe(stride)}")
    code, flat = storage
    count = math.prod(size)  # Python integers: a huge size cannot wrap around
    if count == 0:
        return _Tensor((code, flat[:0].reshape(size)))
    last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= flat.size:
        raise _Malformed(f"a tensor of size {list(size)} at offset {storage_offset} reaches "
                         f"element {last} of a storage of {flat.size} elements")
    if not _distinct_elements(size, stride):
        # A stride-0 (expanded) or overlapping view: one stored float16 seen as 30000 x 30000
        # would be 3.6 GB once converted to float32. Weights never share elements so.
        raise _Malformed(f"a tensor of size {list(size)} and stride {list(stride)} reads some "
                         "elements more than once (an expanded or overlapping view), which a "
                         "checkpoint of weights never holds")
    contiguous = all(s == math.prod(size[i + 1:]) for i, (n, s) in enumerate(zip(size, stride))
                     if n > 1)
    if contiguous:  # the usual case: a plain slice of the storage
        return _Tensor((code, flat[storage_offset:storage_offset + count].reshape(size)))
    # A transposed or sliced tensor saved as it was: the same view NumPy-side, no copy.
    view = np.lib.stride_tricks.as_strided(
        flat[storage_offset:], shape=size, strides=[s * flat.itemsize for s in stride],
        writeable=False)
    return _Tensor((code, view))


def _distinct_elements(size: tuple, stride: tuple) -> bool:
    """Whether every element of the view is a different element of the storage. Taking the
    axes from the smallest stride up, each stride must step past everything the axes before it
    reach (a transposed or sliced tensor does; an expanded one, stride 0, does not). The test
    is sufficient, not necessary: an interleaving no tensor operation makes is refused too."""
    reach = 0  # the farthest element the axes so far reach from the first
    for s, n in sorted((s, n) for n, s in zip(size, stride) if n > 1):
        if s <= reach:
            return False
        reach += (n - 1) * s
    return True


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None) -> _Tensor:
    """nn.Parameter(tensor): for inference, the tensor itself."""
    if not isinstance(data, _Tensor):
        raise _Malformed(f"a parameter is rebuilt from {_describe(data)}, not from a tensor")
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
            cached = self.cache[key]
            if cached.dtype.newbyteorder("<") != np.dtype(dtype).newbyteorder("<"):
                raise CheckpointError(f"{self.path}: the pickle reads storage {_quote(key)} as "
                                      f"{cached.dtype.name} and as {np.dtype(dtype).name}; a "
                                      "torch.save'd file never does. The file is corrupt; "
                                      "download it again.")
            return cached
        name = self.folder + key
        try:
            info = self.archive.getinfo(name)
        except KeyError:
            raise CheckpointError(f"{self.path}: the pickle refers to storage {_quote(key)} "
                                  f"but the archive has no {_clip(name)}. The file is truncated or corrupt; "
                                  "download it again.") from None
        item = np.dtype(dtype)
        if self.byteorder == "big":
            item = item.newbyteorder(">")
        _refuse_compressed(self.path, info)
        if info.file_size < numel * item.itemsize:
            raise CheckpointError(f"{self.path}: storage {_quote(key)} should hold {numel} "
                                  f"elements ({numel * item.itemsize} bytes) but {_clip(name)} "
                                  f"has {info.file_size} bytes. Download the file again.")
        flat = np.frombuffer(self._map(), dtype=item, count=numel, offset=self._data_offset(info))
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
        first = _unpickle(path, f.read(MAX_PICKLE_BYTES), no_storages, what="the file is neither a zip archive (the "
                          "format torch.save writes) nor a readable pickle")
    if type(first) is int and first == _LEGACY_MAGIC:
        raise CheckpointError(f"{path} is in PyTorch's legacy checkpoint format (saved by "
                              "torch < 1.6, or with _use_new_zipfile_serialization=False), which "
                              "minisbert does not read. " + _how_to_convert(path))
    raise CheckpointError(f"{path} is a bare pickle, not a PyTorch checkpoint (torch.save writes "
                          "a zip archive). Save the weights with torch.save(model.state_dict(), "
                          "...) or as model.safetensors.")
