"""Embedding a column of a Ray Data dataset on a cluster: optional extra `minisbert[ray]`.

    import ray
    from minisbert import distributed
    ray.init()                                            # or ray.init("ray://head:10001")
    ray.data.DataContext.get_current().execution_options.preserve_order = True
    ds = ray.data.read_json("s3://bucket/passages/")       # any source Ray Data reads
    ds = distributed.embed(ds, "/shared/models/all-MiniLM-L6-v2", column="text", workers=8)
    ds.write_parquet("s3://bucket/embeddings/")           # a column "embedding", 384 floats
    # or, gathered on this machine as a minisbert index:
    distributed.write_index(ds, "my-index", "/shared/models/all-MiniLM-L6-v2", column="text",
                            id_column="id")

`embed` adds to each row the embedding of its `column`, with `map_batches` and the `Embedder`
class: Ray starts `workers` actors (one CPU each, so one BLAS thread each, as in workers.py)
that load the model once, from a path every node can read (a shared file system, or the same
folder copied to each node). The weights are memory-mapped by each actor, never shipped
through Ray's object store; the actors of one node share one copy in the page cache.

Each actor encodes the batches Ray hands it, `batch_rows` rows at a time, as `minisbert
encode` encodes its chunks; with the same texts per batch the vectors are the same as a single
process makes (the test compares them).

Submitting to a running cluster: put this script on a machine that reaches the head node and
run it with `ray job submit --address http://HEAD:8265 --working-dir . -- python embed.py`
(the model path must be readable on every node; `pip install 'minisbert[ray]'` on each).

Left out: GPUs (minisbert is NumPy on CPUs), and resuming a Ray job (Ray Data retries failed
tasks itself; a killed driver starts over).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from .errors import MissingDependencyError
from .index import PARTIAL, IndexWriter, model_identity


def _ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise MissingDependencyError("embedding a Ray dataset needs Ray Data: "
                                     "pip install 'minisbert[ray]'") from None
    return ray


class Embedder:
    """A `map_batches` callable class: the model is loaded once per actor."""

    def __init__(self, model_path: str, column: str = "text", output_column: str = "embedding",
                 batch_size: int = 32):
        from .model import load
        self.model = load(model_path)  # weights memory-mapped from the shared path
        self.column, self.output_column, self.batch_size = column, output_column, batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = [str(t) for t in batch[self.column]]
        vectors = self.model.encode(texts, batch_size=self.batch_size, show_progress_bar=False)
        return {**batch, self.output_column: vectors}  # [rows, dim] float32


def embed(ds, model_path: str | os.PathLike, column: str = "text",
          output_column: str = "embedding", workers: int = 2, batch_rows: int = 1024,
          batch_size: int = 32, **ray_remote_args):
    """The dataset with a column `output_column` holding each row's embedding of `column`.
    The actors are spread over the nodes (scheduling_strategy="SPREAD"); other
    `ray_remote_args` go to map_batches as they are."""
    _ray()
    ray_remote_args.setdefault("scheduling_strategy", "SPREAD")
    return ds.map_batches(Embedder, batch_size=batch_rows, batch_format="numpy", num_cpus=1,
                          concurrency=workers, **ray_remote_args,
                          fn_constructor_kwargs={"model_path": str(model_path), "column": column,
                                                 "output_column": output_column,
                                                 "batch_size": batch_size})


def write_index(ds, folder: str | os.PathLike, model_path: str | os.PathLike,
                column: str = "text", output_column: str = "embedding",
                id_column: str | None = None, name: str | None = None) -> Path:
    """Gather an embedded dataset into a minisbert index at `folder`, a batch at a time
    (memory holds one batch), in the dataset's order (see preserve_order above)."""
    from .model import load
    model = load(model_path)  # only for its identity (dim, fingerprint): nothing is encoded
    identity = model_identity(model, model_path, name)
    partial = Path(str(folder) + PARTIAL)
    shutil.rmtree(partial, ignore_errors=True)  # a Ray job is not resumed: it starts over
    writer = IndexWriter(partial, identity, with_ids=id_column is not None)
    try:
        for batch in ds.iter_batches(batch_size=4096, batch_format="numpy"):
            ids = [_plain(i) for i in batch[id_column]] if id_column else None
            texts = [str(t).strip() for t in batch[column]]  # as `minisbert encode` keeps them
            writer.append(texts, np.stack(batch[output_column]), ids)
            writer.checkpoint({"rows": writer.count})
        return writer.finish(folder, {"input": "ray.data", "field": column,
                                      "id_field": id_column})
    finally:
        writer.close()


def _plain(value):
    """A NumPy scalar as the Python value JSON can write."""
    return value.item() if isinstance(value, np.generic) else value
