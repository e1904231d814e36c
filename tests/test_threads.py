"""threads.py: the BLAS it finds through ctypes is the one NumPy reports, and the thread
count it changes for an encode is restored afterwards."""

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
