"""Dynamic batching: the texts of concurrent requests share encoder batches.

A server that encodes each request on its own wastes the encoder on tiny batches: one short
text is a [20, 384] matrix product, and 32 of them in one batch cost far less than 32 apart.
`Batcher` keeps one queue of texts (each tagged with its request, a `Job`) and a few worker
threads, one per core as `encode` runs batches (see threads.py). The texts come tokenized: the
server has made each text's ids (prompt before it, special tokens added, cut as `encode` cuts)
to count its tokens, and the batcher encodes those same ids, so no text is tokenized twice.
Each worker:

  1. takes texts from the head of the queue, first come first served, as many as one batch of
     `encode` holds: at most `batch_size` texts and at most `model.max_batch_tokens` places once
     padded to the longest of them (the same caps `model.length_batches` applies), all with the same prompt
     (pooling leaves out one prompt's tokens per batch, when the folder says include_prompt:
     false);
  2. if that batch is not full and other requests are being encoded right now (so their
     clients are about to send more), waits for company, at most `max_wait` seconds after the
     oldest waiting text arrived; a lone client is never kept waiting;
  3. runs the encoder and the modules after it on the batch, on this thread with a
     single-threaded BLAS (the workers are the threads: no pool is started per batch), and
     writes each vector into its job's own row.

A job is done when all its rows are written; its `on_done` callback then runs (in the worker
thread). Vectors are the raw pooled outputs (`model.encode` without normalizing, even for a
folder with a Normalize module): callers normalize, so one queue serves requests that want
either. Row i of a job is what `encode(prompt=job.prompt)` gives for the text its ids came
from, up to float rounding: the BLAS may round a batch of one text differently from a larger
batch (measured: rows of batches of two texts or more were bitwise equal whatever the batch, a
text alone differed by up to 2.2e-7).

The queue is bounded: `submit` raises `QueueFull` when it holds `max_queued` texts, so an
overloaded server answers at once instead of growing without bound; a request that arrives at
an empty queue is always admitted, whatever its size, so no request is refused forever.
`cancel` drops the texts of a job whose client went away, if they are still waiting.

A cross-encoder (reranker) is batched the same way: its items are (query, document) pairs,
each an int32 [tokens, 2] array of (token id, token type id) made by `CrossEncoder.tokenize`,
so the pairs of concurrent /rerank requests share batches as texts do, under the same caps, and
each row of a job holds the pair's raw logits ([labels]); callers apply the activation.

Left out: priorities, per-client fairness (one client's 2,048 texts go before a later
client's one), and batches shared between models (each model has its own Batcher).
"""

from __future__ import annotations

import copy
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from . import threads
from .cross_encoder import CrossEncoder
from .errors import QueueFull


@dataclass(eq=False)
class Job:
    """One request's texts (as token ids) and, once done, their vectors (row i for ids[i])."""
    ids: list[np.ndarray]  # each text's token ids, int32, as encode makes them (prompt and
    #                        special tokens in, after the cut)
    on_done: Callable[["Job"], None]  # called once, from a worker thread, when every row is in
    prompt: str = ""  # the prompt the ids begin with ("" for none)
    vectors: np.ndarray = None  # [n, dim] float32, filled by the workers
    error: BaseException | None = None  # set if encoding failed; vectors are then incomplete
    cancelled: bool = False
    arrived: float = field(default_factory=time.monotonic)
    remaining: int = 0  # rows not yet written


class Batcher:
    def __init__(self, model, *, workers: int | None = None, max_wait: float = 0.005,
                 max_queued: int = 4096, batch_size: int = 32,
                 on_batch: Callable[[int, int], None] | None = None):
        self.pairs = isinstance(model, CrossEncoder)
        if self.pairs:  # rows are the logits of each pair
            self.model, self.include_prompt, self.dim = model, True, model.num_labels
        else:
            # The pooled vectors before any Normalize module: the same model with normalize off
            # (a shallow copy shares the weights and the tokenizer).
            self.model = copy.copy(model)
            self.model.normalize = False
            self.include_prompt = model.pooling.include_prompt
            self.dim = model.dim
        self.max_wait = max_wait
        self.max_queued = max_queued
        self.batch_size = batch_size
        self.max_tokens = model.max_batch_tokens
        self.on_batch = on_batch  # on_batch(texts, padded tokens) after each batch, for metrics
        self.dropped = 0  # texts of cancelled jobs removed before they were encoded
        self._queue: deque[tuple[Job, int]] = deque()  # (job, row) per waiting text
        self._active = 0  # jobs submitted and not yet done
        self._cond = threading.Condition()
        self._closing = False
        n = workers or threads.workers()
        self._threads = [threading.Thread(target=self._work, name=f"minisbert-batcher-{i}",
                                          daemon=True) for i in range(n)]
        for t in self._threads:
            t.start()

    # ------------------------------------------------------------------ callers' side

    @property
    def queued(self) -> int:
        """Texts waiting for a worker."""
        return len(self._queue)

    def submit(self, ids: list[np.ndarray], on_done, prompt: str = "") -> Job:
        """Queue one request's texts, given as their token ids (prompt first, see Job)."""
        job = Job(ids, on_done, prompt, np.empty((len(ids), self.dim), np.float32),
                  remaining=len(ids))
        with self._cond:
            if self._closing:
                raise QueueFull("the server is shutting down")
            if self._queue and len(self._queue) + len(ids) > self.max_queued:
                raise QueueFull(f"{len(self._queue)} texts are waiting already")
            self._queue.extend((job, row) for row in range(len(ids)))
            self._active += 1
            self._cond.notify_all()
        return job

    def cancel(self, job: Job) -> None:
        """Drop the job's texts that no worker has taken yet; the rest finish as usual."""
        with self._cond:
            if job.cancelled:
                return
            job.cancelled = True
            kept = deque(entry for entry in self._queue if entry[0] is not job)
            removed = len(self._queue) - len(kept)
            if removed:
                self._queue = kept
                self.dropped += removed
                job.remaining -= removed
                if job.remaining == 0:
                    self._active -= 1
            self._cond.notify_all()

    def close(self) -> None:
        """Encode what is queued, then stop the workers."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        for t in self._threads:
            t.join()

    # ------------------------------------------------------------------ workers' side

    def _batch_end(self) -> tuple[int, bool]:
        """(how many queue entries the next batch takes, whether that batch is full)."""
        width = 0
        for n, (job, row) in enumerate(self._queue):
            if n == self.batch_size or job.prompt != self._queue[0][0].prompt:
                return n, True  # full, or the next text wants another prompt
            width = max(width, len(job.ids[row]))
            if n and (n + 1) * width > self.max_tokens:  # this text would overflow the cap
                return n, True
        return len(self._queue), False

    def _take(self) -> list[tuple[Job, int]] | None:
        """Wait for texts and take the next batch; None once closing and the queue is empty."""
        with self._cond:
            while not self._queue and not self._closing:
                self._cond.wait()
            if not self._queue:
                return None
            deadline = self._queue[0][0].arrived + self.max_wait
            while self._queue and not self._closing:
                if self._batch_end()[1]:
                    break  # a full batch is waiting
                # Requests other than the waiting ones are being encoded right now, so their
                # clients will soon send more. (Not full means the queue is short: cheap to count.)
                waiting_jobs = len({id(job) for job, _ in self._queue})
                left = deadline - time.monotonic()
                if self._active <= waiting_jobs or left <= 0:
                    break
                self._cond.wait(left)
            n, _ = self._batch_end()
            return [self._queue.popleft() for _ in range(n)]

    def _embed(self, ids: list[np.ndarray], prompt: str) -> np.ndarray:
        """The raw pooled vectors [b, dim] of one batch of token ids, as `encode` computes them
        for a batch (padding, encoder, pooling without the prompt's tokens when the folder says
        include_prompt: false, the modules, then truncate_dim); a cross-encoder's logits."""
        if self.pairs:  # each item: [tokens, 2] of (id, type id)
            return self.model.logits_batch([(x[:, 0], x[:, 1]) for x in ids])  # [b, labels]
        prompt_length = 0 if self.include_prompt else self.model.prompt_length(prompt)
        return self.model._embed_batch(ids, prompt_length)[:, :self.dim]  # [b, dim]

    def _work(self) -> None:
        while (batch := self._take()) is not None:
            if not batch:
                continue  # the queue was emptied by a cancel while this worker waited
            ids = [job.ids[row] for job, row in batch]
            prompt = batch[0][0].prompt  # the same for the whole batch (see _batch_end)
            error = None
            try:
                # One batch per core: each worker's BLAS on one thread (see threads.py).
                with threads.single_threaded_blas():
                    vectors = self._embed(ids, prompt)  # [b, dim]
            except Exception as e:  # the jobs report it; the worker lives on
                error, vectors = e, None
            if self.on_batch is not None:
                self.on_batch(len(ids), len(ids) * max(map(len, ids)))
            finished = []
            with self._cond:
                for i, (job, row) in enumerate(batch):
                    if error is not None:
                        job.error = error
                    else:
                        job.vectors[row] = vectors[i]
                    job.remaining -= 1
                    if job.remaining == 0:
                        self._active -= 1
                        finished.append(job)
                self._cond.notify_all()
            for job in finished:
                if not job.cancelled:
                    job.on_done(job)
