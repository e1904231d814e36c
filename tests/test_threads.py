"""threads.py: the BLAS it finds through ctypes is the one NumPy reports, and the thread
count it changes for an encode is restored afterwards, and its threads are started once per
process, not per call."""

import os

import numpy as np
import pytest

from minisbert import threads


def numpy_blas() -> dict:
    return np.show_config(mode="dicts")["Build Dependencies"]["blas"]


def test_describe_blas_names_numpys_openblas_and_its_kernels():
    blas = numpy_blas()
    text = threads.describe_blas()
    print(f"\nNumPy says: {blas['name']} {blas.get('version')}; minisbert says: {text}")
    if "openblas" not in blas["name"].lower():
        assert text.startswith("not OpenBLAS")
        return
    assert text.startswith(f"OpenBLAS {blas['version']} (")
    assert " kernels" in text
    forced = os.environ.get("OPENBLAS_CORETYPE")
    assert (f"chosen by OPENBLAS_CORETYPE={forced}" in text) == bool(forced)


def test_single_threaded_blas_is_restored_after_nested_use():
    api = threads._openblas_threads()
    if api is None:
        pytest.skip("NumPy's BLAS is not an OpenBLAS minisbert can find")
    get = api[0]
    before = get()
    with threads.single_threaded_blas():
        assert get() == 1
        with threads.single_threaded_blas():  # a second encode in another thread
            assert get() == 1
        assert get() == 1  # the outer block still runs
    assert get() == before
    assert threads.workers() == before


def test_run_batches_runs_every_batch_once_with_one_blas_thread_each():
    api = threads._openblas_threads()
    before = api[0]() if api else None
    several = threads.workers() > 1
    batches = [np.arange(0, 3), np.arange(3, 5), np.arange(5, 6)]
    seen, blas_threads, done = [], [], []

    def work(rows):
        seen.extend(rows.tolist())  # list.extend holds the GIL: safe from several threads
        if api:
            blas_threads.append(api[0]())

    threads.run_batches(work, iter(batches), done=done.append)
    print(f"\nworkers: {threads.workers()}, BLAS threads inside the batches: {blas_threads}")
    assert sorted(seen) == list(range(6))
    assert done == [3, 2, 1]  # in the batches' order, as they finish
    if api:
        # Several workers: each batch on a single-threaded BLAS; one: the BLAS keeps its threads.
        expected = [1] * 3 if several else [before] * 3
        assert blas_threads == expected
        assert api[0]() == before


def counting_pools(monkeypatch) -> list:
    """Every thread pool threads.py starts from now on, counted (its kept pools forgotten)."""
    started = []

    class CountedPool(threads.ThreadPoolExecutor):
        def __init__(self, *args, **kwargs):
            started.append(args)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(threads, "ThreadPoolExecutor", CountedPool)
    monkeypatch.setattr(threads, "_pools", {})
    return started


def test_run_batches_starts_one_pool_per_process_not_per_call(monkeypatch):
    pools = counting_pools(monkeypatch)
    batches = [np.arange(0, 3), np.arange(3, 5)]
    for _ in range(10):
        seen = []
        threads.run_batches(seen.extend, batches)
        assert sorted(seen) == list(range(5))
    print(f"\n10 calls, threads.workers() = {threads.workers()}: {len(pools)} pool(s) started")
    assert len(pools) == (1 if threads.workers() > 1 else 0)


def test_run_batches_inside_a_batch_runs_inline_instead_of_waiting_on_its_own_pool():
    # Every pool thread busy with an outer batch that waits on inner batches would wait forever.
    import threading
    seen = []

    def outer(rows):
        threads.run_batches(seen.extend, [rows[:1], rows[1:]])

    runner = threading.Thread(target=threads.run_batches,
                              args=(outer, [np.arange(0, 2), np.arange(2, 4), np.arange(4, 6)]),
                              daemon=True)
    runner.start()
    runner.join(30)
    assert not runner.is_alive(), "run_batches inside a batch waited on its own pool"
    assert sorted(seen) == list(range(6))


def test_an_error_in_one_batch_reaches_the_caller_and_the_blas_threads_come_back():
    api = threads._openblas_threads()
    before = api[0]() if api else None

    def work(rows):
        if rows[0] == 3:
            raise ValueError("batch 3 failed")

    with pytest.raises(ValueError, match="batch 3 failed"):
        threads.run_batches(work, [np.arange(0, 3), np.arange(3, 5), np.arange(5, 6)])
    if api:
        assert api[0]() == before


@pytest.mark.parametrize("n, length, sizes", [
    (100, 12, [25, 25, 25, 25]),  # not 32, 32, 32, 4: the fourth batch would run alone
    (70, 12, [18, 18, 17, 17]),
    (3, 12, [2, 1]),
    (1, 12, [1]),
    (64, 12, [32, 32]),  # already even: batch_size batches
    (9, 700, [2, 2, 2, 1, 1, 1]),  # the token cap (2048 // 700 = 2 texts) rules first
])
def test_length_batches_share_the_texts_equally_among_two_cores(n, length, sizes):
    """model.length_batches at batch_size 32, 2,048 tokens, 2 cores: the batches as equal as
    the caps allow, their count a multiple of the cores when there are texts enough."""
    from minisbert.model import length_batches
    assert [len(b) for b in length_batches([length] * n, 32, 2048, 2)] == sizes


@pytest.mark.parametrize("cores", [1, 2, 3])
def test_length_batches_keep_every_text_once_longest_first_within_the_caps(cores):
    from minisbert.model import length_batches
    lengths = [int(x) for x in np.random.default_rng(cores).integers(1, 900, 333)]
    batches = list(length_batches(lengths, 32, 2048, cores))
    order = np.concatenate(batches)
    assert sorted(order.tolist()) == list(range(len(lengths)))
    assert [lengths[i] for i in order] == sorted(lengths, reverse=True)
    assert all(len(b) <= 32 and max(lengths[i] for i in b) * len(b) <= 2048 for b in batches)
    assert len(batches) % cores == 0
