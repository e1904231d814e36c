"""Encoding on several worker processes of one machine: `minisbert encode --workers N`.

Each worker is a process of its own with a single-threaded BLAS that encodes one chunk of texts
at a time, one batch after another. Every worker memory-maps the same model.safetensors, so the
operating system's page cache holds one copy of the weights for all of them; what a worker adds
is its own activations and the Python interpreter. Processes scale past what the threads of one
process can (tokenizing, pooling and Python's own steps hold the GIL), at the price of that
memory and of sending texts and vectors between processes.

A chunk gives the same vectors whichever process encodes it: the same texts make the same
batches, and each batch runs on a single-threaded BLAS, as `SentenceTransformer.encode` runs it on
several cores. So an index made with --workers 2 equals one made with the threaded default.

Left out: workers on other machines (see distributed.py for Ray).
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
from collections import deque
from concurrent.futures import ProcessPoolExecutor

_model = None  # the model of this worker process
_batch_size = 32
_prompt = None  # put before every text; None: the model's default prompt


def _start_worker(folder: str, batch_size: int, prompt: str | None) -> None:
    global _model, _batch_size, _prompt
    try:  # Linux: end with the parent process, even if it is killed (kill -9) mid-job
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    from .model import load
    _model, _batch_size, _prompt = load(folder), batch_size, prompt


def _encode_chunk(texts: list[str]):
    return _model.encode(texts, batch_size=_batch_size, prompt=_prompt, show_progress_bar=False)


class WorkerPool:
    """N processes, each with the model at `folder` loaded once.

        with WorkerPool(folder, 2) as pool:
            for vectors in pool.map(chunks_of_texts):   # in order
                ...
    """

    def __init__(self, folder, n: int, batch_size: int = 32, prompt: str | None = None):
        self.n = n
        # A fresh interpreter per worker ("spawn"), not a fork of this one: a fork would copy
        # this process's BLAS threads' state. OPENBLAS_NUM_THREADS=1 is read when NumPy loads.
        # It stays set while the pool lives, for workers the pool starts later.
        self._saved = os.environ.get("OPENBLAS_NUM_THREADS")
        os.environ["OPENBLAS_NUM_THREADS"] = "1"
        self._pool = ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_start_worker,
                                         initargs=(str(folder), batch_size, prompt))

    def map(self, chunks, key=lambda item: item):
        """Yield (item, vectors of key(item)) for each item, in order. At most 2 chunks per
        worker are in flight, so memory stays bounded however long `chunks` is."""
        pending = deque()
        for item in chunks:
            pending.append((item, self._pool.submit(_encode_chunk, key(item))))
            if len(pending) >= 2 * self.n:
                first, future = pending.popleft()
                yield first, future.result()
        while pending:
            first, future = pending.popleft()
            yield first, future.result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._saved is None:
            os.environ.pop("OPENBLAS_NUM_THREADS", None)
        else:
            os.environ["OPENBLAS_NUM_THREADS"] = self._saved

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

