"""parallel.py: the BLAS it finds through ctypes is the one NumPy reports, and the thread
count it changes for an encode is restored afterwards."""

import os

import numpy as np
import pytest

from minisbert import parallel


def numpy_blas() -> dict:
    return np.show_config(mode="dicts")["Build Dependencies"]["blas"]


def test_describe_blas_names_numpys_openblas_and_its_kernels():
    blas = numpy_blas()
    text = parallel.describe_blas()
    print(f"\nNumPy says: {blas['name']} {blas.get('version')}; minisbert says: {text}")
    if "openblas" not in blas["name"].lower():
        assert text.startswith("not OpenBLAS")
        return
    assert text.startswith(f"OpenBLAS {blas['version']} (")
    assert " kernels" in text
    forced = os.environ.get("OPENBLAS_CORETYPE")
    assert (f"chosen by OPENBLAS_CORETYPE={forced}" in text) == bool(forced)


def test_single_threaded_blas_is_restored_after_nested_use():
    api = parallel._openblas_threads()
    if api is None:
        pytest.skip("NumPy's BLAS is not an OpenBLAS minisbert can find")
    get = api[0]
    before = get()
    with parallel.single_threaded_blas():
        assert get() == 1
        with parallel.single_threaded_blas():  # a second encode in another thread
            assert get() == 1
        assert get() == 1  # the outer block still runs
    assert get() == before
    assert parallel.workers() == before
