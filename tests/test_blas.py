"""numbanets.kernels.cpu.blas: the GEMM every CPU kernel calls, against float64 products.

The suite runs on the BLAS that loaded (MKL with the `mkl` extra, else SciPy's
OpenBLAS); the subprocess tests check the choice itself, and CI runs the kernel
tests a second time with NUMBANETS_BLAS=openblas.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from numba import njit

from numbanets.kernels.cpu import blas

DTYPES = [np.float32, np.float64]
TOL = {np.float32: dict(rtol=2e-5, atol=2e-5), np.float64: dict(rtol=1e-12, atol=1e-12)}


def _op(a, trans):
    return (a.T if trans else a).astype(np.float64)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("shape", [(7, 5, 3), (1, 9, 4), (6, 1, 1), (50, 64, 33)])
def test_gemm_and_gemm_acc_against_float64(rng, dtype, trans_a, trans_b, shape):
    m, k, n = shape
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(dtype)
    ref = _op(a, trans_a) @ _op(b, trans_b)
    out = np.full((m, n), np.nan, dtype=dtype)  # gemm must not read what was there
    blas.gemm(a, trans_a, b, trans_b, out)
    np.testing.assert_allclose(out, ref, **TOL[dtype])
    start = rng.standard_normal((m, n)).astype(dtype)
    acc = start.copy()
    blas.gemm_acc(a, trans_a, b, trans_b, acc)
    np.testing.assert_allclose(acc, start + ref, **TOL[dtype])


@njit
def _rows_of(x, w, out, lo, hi):
    blas.gemm(x[lo:hi], False, w, True, out)


def test_row_slices_and_empty_products(rng):
    x = rng.standard_normal((10, 6)).astype(np.float32)
    w = rng.standard_normal((4, 6)).astype(np.float32)
    out = np.empty((5, 4), dtype=np.float32)
    _rows_of(x, w, out, 2, 7)  # a slice of whole rows: its leading dimension is the parent's
    np.testing.assert_allclose(out, x[2:7].astype(np.float64) @ w.T, rtol=2e-5, atol=2e-5)
    zero_k = np.full((3, 2), 7.0)
    blas.gemm(np.empty((3, 0)), False, np.empty((0, 2)), False, zero_k)
    np.testing.assert_array_equal(zero_k, 0.0)  # a sum over nothing
    acc = np.full((3, 2), 7.0)
    blas.gemm_acc(np.empty((3, 0)), False, np.empty((0, 2)), False, acc)
    np.testing.assert_array_equal(acc, 7.0)
    blas.gemm(np.empty((0, 4)), False, np.empty((4, 2)), False, np.empty((0, 2)))  # nothing to do


def test_shape_mismatch_and_strided_rows_are_errors(rng):
    a, b = np.ones((3, 4)), np.ones((5, 2))
    with pytest.raises(ValueError, match="shapes do not match"):
        blas.gemm(a, False, b, False, np.empty((3, 2)))
    with pytest.raises(ValueError, match="rows are contiguous"):
        blas.gemm(np.ones((3, 8))[:, ::2], False, np.ones((4, 2)), False, np.empty((3, 2)))


def test_thread_count_round_trip():
    if not blas.has_thread_control():
        pytest.skip(f"{blas.NAME} offers no thread control here")
    before = blas.threads()
    try:
        blas.set_threads(1)
        assert blas.threads() == 1
    finally:
        blas.set_threads(before)
    assert blas.threads() == before


def _in_fresh_process(env_blas: str) -> subprocess.CompletedProcess:
    code = "from numbanets.kernels.cpu import blas; import numpy as np\n" \
           "a = np.arange(6.0).reshape(2, 3); out = np.empty((2, 2))\n" \
           "blas.gemm(a, False, a, True, out); print(blas.NAME, out.sum())\n"
    env = {**os.environ, "NUMBANETS_BLAS": env_blas}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)


def test_numbanets_blas_chooses_the_library():
    run = _in_fresh_process("openblas")
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["openblas", "83.0"]  # [[5, 14], [14, 50]]
    bad = _in_fresh_process("atlas")
    assert bad.returncode != 0 and "NUMBANETS_BLAS must be mkl or openblas, got 'atlas'" in bad.stderr


def test_mkl_is_used_when_installed():
    try:
        from importlib.metadata import PackageNotFoundError, version

        version("mkl")
    except PackageNotFoundError:
        pytest.skip("the mkl extra is not installed")
    run = _in_fresh_process("")
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["mkl", "83.0"]


def test_reversed_broadcast_and_overlapping_rows_are_errors():
    a = np.arange(12.0).reshape(4, 3)
    for bad in (a[::-1], np.broadcast_to(a[0], (4, 3)), np.lib.stride_tricks.sliding_window_view(np.arange(6.0), 3)):
        with pytest.raises(ValueError, match="rows are contiguous"):
            blas.gemm(bad, False, np.ones((3, 2)), False, np.empty((bad.shape[0], 2)))


def test_restore_threads_undoes_set_threads():
    if not blas.has_thread_control():
        pytest.skip(f"{blas.NAME} offers no thread control here")
    before = blas.threads()
    token = blas.set_threads(1)
    assert blas.threads() == 1
    blas.restore_threads(token)
    assert blas.threads() == before


def test_parallel_threads_only_with_mkl_on_gnu_openmp_and_is_read_at_run_time():
    # the LSTM's row blocks depend on it: with OpenBLAS they would fight its spinning threads
    import numba

    @njit(cache=False)
    def read():
        return blas.parallel_threads()

    shares = blas.SHARES_NUMBA_THREADS
    if blas.NAME != "mkl":
        assert not shares
    elif sys.platform.startswith("linux") and not any(
            os.environ.get(v) for v in ("MKL_THREADING_LAYER", "NUMBA_THREADING_LAYER")):
        numba.njit(parallel=True)(lambda a: a + 1)(np.zeros(4))  # start numba's threads
        assert shares == (numba.threading_layer() == "omp")
    threads = numba.get_num_threads()
    assert read() == (threads if shares else 1)
    # asked at run time, not a constant compiled in: the thread count and the flag can change
    try:
        numba.set_num_threads(1)
        assert read() == 1
    finally:
        numba.set_num_threads(threads)
    try:
        blas._SHARES_STATE[0] = not shares
        assert read() == (1 if shares else threads)
    finally:
        blas._SHARES_STATE[0] = shares
    assert read() == (threads if shares else 1)


def test_row_blocks_default_and_forced_layout(row_blocks_override):
    # the default: one block below PARALLEL_MIN_ELEMENTS or outside numba's pool, else one per thread (at
    # most one per row); ROW_BLOCKS_STATE[0] = k > 0 forces min(k, rows) at any size, read at run time
    import numba

    big, small = blas.PARALLEL_MIN_ELEMENTS // 64, 2
    threads = numba.get_num_threads()
    assert blas.row_blocks(big, 64) == (min(threads, big) if blas.SHARES_NUMBA_THREADS else 1)
    assert blas.row_blocks(small, 4) == 1
    for forced in (1, 3, 7):
        row_blocks_override.set(forced)
        assert blas.row_blocks(big, 64) == min(forced, big)
        assert blas.row_blocks(small, 4) == min(forced, small)
        assert blas.row_blocks(0, 4) == 1
        assert row_blocks_override.reads == 3
    row_blocks_override.set(0)
    assert blas.row_blocks(big, 64) == (min(threads, big) if blas.SHARES_NUMBA_THREADS else 1)


def test_panel_loops_honour_a_forced_row_block_count(row_blocks_override):
    # packed_gemm.loop_row_blocks widens one block to one per numba thread for PANELS loops (they call no BLAS),
    # but a count ROW_BLOCKS_STATE forces is kept, 1 included
    import numba

    from numbanets.kernels.cpu import packed_gemm as pg

    big = blas.PARALLEL_MIN_ELEMENTS // 64
    threads = numba.get_num_threads()
    assert pg.loop_row_blocks(big, 64, pg.PANELS) == min(threads, big)
    for forced in (1, 2):
        row_blocks_override.set(forced)
        assert pg.loop_row_blocks(big, 64, pg.PANELS) == forced
        assert blas.forced_row_blocks() == forced
    row_blocks_override.set(0)
    assert blas.forced_row_blocks() == 0


def test_openblas_threads_stop_spinning_soon_after_a_call():
    # with OpenBLAS, numbanets sets OPENBLAS_THREAD_TIMEOUT (unless the user did) before the library loads:
    # its workers then sleep tens of microseconds after a call instead of spinning about 100 ms, which
    # took a core from the next parallel region on a 2-core machine. Measured as the process's CPU time
    # in the 100 ms after a threaded gemm: under a tenth of a core on average.
    import os
    import time

    if blas.NAME != "openblas":
        pytest.skip(f"{blas.NAME} is the kernels' BLAS: OpenBLAS's spinning does not apply")
    assert "OPENBLAS_THREAD_TIMEOUT" in os.environ
    a = np.ones((600, 600), np.float32)
    out = np.empty_like(a)
    token = blas.set_threads(2)
    try:
        for _ in range(3):
            blas.gemm(a, False, a, False, out)
        cpu, wall = time.process_time(), time.perf_counter()
        time.sleep(0.1)
        busy = (time.process_time() - cpu) / (time.perf_counter() - wall)
    finally:
        blas.restore_threads(token)
    assert busy < 0.1, f"OpenBLAS's threads kept {busy:.2f} of a core busy after the call"
