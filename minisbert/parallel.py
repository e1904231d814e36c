"""Encoding several batches at once, one per core.

NumPy runs matrix products on a multi-threaded BLAS, but everything else it does (GELU,
softmax, LayerNorm, gathers) on one core, so with a threaded BLAS the other cores idle for a
third of an encoder layer. Instead, `encode` runs one batch per core in Python threads, each
with a single-threaded BLAS: NumPy releases the GIL inside its loops and BLAS calls, so every
step of every layer keeps all cores busy. It also holds up when other programs load the
machine, where a threaded BLAS spinning on busy cores slows down many times over.

The thread count is the BLAS's own (OPENBLAS_NUM_THREADS, else the CPUs). Changing it at run
time needs OpenBLAS's C API, found in the library NumPy loaded; with any other BLAS (MKL,
Accelerate) batches run one after another, as before. While an encode runs, other NumPy code
in the process gets a single-threaded BLAS too.
"""

from __future__ import annotations

import ctypes
import threading
from contextlib import contextmanager
from functools import lru_cache


@lru_cache(maxsize=1)
def _openblas_threads():
    """(get, set) of the OpenBLAS NumPy loaded, or None if there is none to be found."""
    try:
        with open("/proc/self/maps") as f:  # Linux: the shared libraries of this process
            paths = {line.split()[-1] for line in f if "openblas" in line.rsplit("/", 1)[-1]}
    except OSError:
        return None
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        # NumPy's wheels ship OpenBLAS with its symbols renamed (scipy_openblas…64_).
        for name in ("scipy_openblas_{}_num_threads64_", "openblas_{}_num_threads64_",
                     "openblas_{}_num_threads"):
            get, set_ = getattr(lib, name.format("get"), None), getattr(lib, name.format("set"), None)
            if get and set_:
                get.restype, set_.argtypes = ctypes.c_int, [ctypes.c_int]
                return get, set_
    return None


_lock = threading.Lock()
_users = 0  # encodes running now
_saved = 1  # BLAS threads before the first of them started


def workers() -> int:
    """How many batches to run at once: the BLAS's thread count, 1 if it cannot be changed."""
    api = _openblas_threads()
    if api is None:
        return 1
    with _lock:
        return _saved if _users else max(1, api[0]())


@contextmanager
def single_threaded_blas():
    """BLAS on one thread inside the block, restored when the last concurrent block ends."""
    global _users, _saved
    api = _openblas_threads()
    if api is None:
        yield
        return
    get, set_ = api
    with _lock:
        if _users == 0:
            _saved = get()
            set_(1)
        _users += 1
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if _users == 0:
                set_(_saved)
