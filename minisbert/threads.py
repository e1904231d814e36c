"""Encoding several batches at once, one per core.

NumPy runs matrix products on a multi-threaded BLAS, but everything else it does (GELU,
softmax, LayerNorm, gathers) on one core, so with a threaded BLAS the other cores idle for a
third of an encoder layer. Instead, `run_batches` (which `encode` calls) runs one batch per
core in Python threads, each with a single-threaded BLAS: NumPy releases the GIL inside its
loops and BLAS calls, so every step of every layer keeps all cores busy. It also holds up
when other programs load the machine, where a threaded BLAS spinning on busy cores slows
down many times over.

The thread count is the BLAS's own (OPENBLAS_NUM_THREADS, else the CPUs). Changing it at run
time needs OpenBLAS's C API, found in the library NumPy loaded; with any other BLAS (MKL,
Accelerate) batches run one after another, as before. While an encode runs, other NumPy code
in the process gets a single-threaded BLAS too.

The threads are started once per process, by the first encode that needs them, and reused by
every encode after it (a server runs thousands): starting and joining a pool per call would
cost more than a short batch. A fork gets a pool of its own when it first needs one.
"""

from __future__ import annotations

import ctypes
import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from functools import lru_cache
from typing import Callable, Iterable


@lru_cache(maxsize=1)
def _openblas():
    """(the OpenBLAS NumPy loaded, the prefix of its symbols), or None if there is none."""
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
        for prefix, suffix in (("scipy_openblas_", "64_"), ("openblas_", "64_"), ("openblas_", "")):
            if getattr(lib, f"{prefix}get_num_threads{suffix}", None):
                return lib, (prefix, suffix)
    return None


def _openblas_function(name: str, restype, argtypes=()):
    found = _openblas()
    if found is None:
        return None
    lib, (prefix, suffix) = found
    f = getattr(lib, f"{prefix}{name}{suffix}", None)
    if f is not None:
        f.restype, f.argtypes = restype, list(argtypes)
    return f


@lru_cache(maxsize=1)
def _openblas_threads():
    """(get, set) of the OpenBLAS NumPy loaded, or None if there is none to be found."""
    get = _openblas_function("get_num_threads", ctypes.c_int)
    set_ = _openblas_function("set_num_threads", None, [ctypes.c_int])
    return (get, set_) if get and set_ else None


def describe_blas() -> str:
    """Which BLAS NumPy runs and with which kernels, e.g. "OpenBLAS 0.3.31 (SkylakeX kernels)".

    OpenBLAS picks its kernels for the CPU when it loads, unless OPENBLAS_CORETYPE names
    others: on a CPU with AVX-512, the AVX2 ("Haswell") kernels multiply matrices at about
    half the speed, so a benchmark has to say which ones ran.
    """
    config = _openblas_function("get_config", ctypes.c_char_p)
    corename = _openblas_function("get_corename", ctypes.c_char_p)
    if config is None or corename is None:
        return "not OpenBLAS (numpy.show_config() tells which BLAS)"
    version = config().decode(errors="replace").split()[:2]  # ["OpenBLAS", "0.3.31…"]
    forced = os.environ.get("OPENBLAS_CORETYPE")
    how = f", chosen by OPENBLAS_CORETYPE={forced}" if forced else ""
    return f"{' '.join(version)} ({corename().decode()} kernels{how})"


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


_pools: dict[int, ThreadPoolExecutor] = {}  # thread count -> the process's pool of that size
_pools_lock = threading.Lock()
_local = threading.local()  # .in_pool: this thread is one of the pools' workers


def _mark_pool_thread() -> None:
    _local.in_pool = True


def _pool(n_threads: int) -> ThreadPoolExecutor:
    """The process's pool of n_threads threads, started on first use and kept. (A pool per size:
    one that is replaced while another encode still submits to it would refuse that encode.)"""
    with _pools_lock:
        if n_threads not in _pools:
            _pools[n_threads] = ThreadPoolExecutor(n_threads, thread_name_prefix="minisbert-batch",
                                                   initializer=_mark_pool_thread)
        return _pools[n_threads]


def _forget_pools() -> None:
    """In a forked child: the parent's pool threads do not exist here, so start afresh."""
    global _pools_lock
    _pools.clear()
    _pools_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pools)


def run_batches(work: Callable, batches: Iterable, done: Callable[[int], object] = lambda n: None):
    """Call work(rows) for each batch of text indices, one batch per core at a time, and
    done(len(rows)) as each batch finishes (in order), e.g. to move a progress bar.

    With one text, when the BLAS's threads cannot be changed, or when called from inside a
    batch (an encode within `work`: waiting on the pool from its own thread could wait forever),
    batches run one after another on this thread, and the BLAS keeps its threads.
    """
    batches = list(batches)  # a few small index arrays; the pool would take them all at once
    n_workers = workers()
    nested = getattr(_local, "in_pool", False)
    if n_workers > 1 and sum(len(rows) for rows in batches) > 1 and not nested:
        pool = _pool(n_workers)
        with single_threaded_blas():
            futures = [pool.submit(work, rows) for rows in batches]
            try:
                for rows, future in zip(batches, futures):
                    future.result()  # raises what work raised
                    done(len(rows))
            finally:  # on an error (or Ctrl-C): drop the batches not started, wait for the rest
                for future in futures:
                    future.cancel()
                wait(futures)
    else:
        for rows in batches:
            work(rows)
            done(len(rows))


def run_tasks(work: Callable, tasks: Iterable) -> None:
    """Call work(task) for each task, in threads (one per core, each with a single-threaded
    BLAS) when this thread is not already one of several batches run_batches runs at once;
    otherwise one after another. The tasks must write disjoint outputs. The encoder uses it
    for the heads of one long text, where one batch alone would leave all but BLAS on one
    core."""
    tasks = list(tasks)
    with _lock:
        busy = _users > 0  # batches (of this or another encode) already use the cores
    nested = getattr(_local, "in_pool", False)
    n_workers = 1 if busy or nested else workers()
    if n_workers > 1 and len(tasks) > 1:
        pool = _pool(n_workers)
        with single_threaded_blas():
            futures = [pool.submit(work, task) for task in tasks]
            try:
                for future in futures:
                    future.result()  # raises what work raised
            finally:
                for future in futures:
                    future.cancel()
                wait(futures)
    else:
        for task in tasks:
            work(task)
