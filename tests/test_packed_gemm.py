"""numbanets.kernels.cpu.packed_gemm: products against a matrix packed once, against float64 products,
and the recurrent kernels with packing on and off.

Under MKL the packed path runs (asserted: pack_b returns a buffer); under OpenBLAS (CI's second pass,
NUMBANETS_BLAS=openblas) pack_b returns nothing and gemm_packed is the plain gemm.
"""

from __future__ import annotations

import numpy as np
import pytest

from numbanets import functional as F
from numbanets.kernels.cpu import blas
from numbanets.kernels.cpu import packed_gemm as pg

def _tol(dtype, k):
    # rounding of a k-term sum of products of N(0, 1) numbers grows with k: scale the absolute tolerance
    eps = np.finfo(dtype).eps
    return dict(rtol=100 * eps, atol=8 * eps * k)


@pytest.fixture
def packing_off():
    """Yields a function that turns packing off for the rest of the test; restored after."""
    before = pg.PACKING_STATE[0]

    def off():
        pg.PACKING_STATE[0] = False
    yield off
    pg.PACKING_STATE[0] = before


def test_packing_follows_the_blas_and_the_switch(packing_off):
    assert pg.packing() == (blas.NAME == "mkl")
    packing_off()
    assert not pg.packing()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("trans_b", [True, False])
@pytest.mark.parametrize("m, k, n", [(25, 128, 512), (16, 512, 128), (3, 7, 5), (1, 100, 100)])
def test_gemm_packed_against_float64(rng, dtype, trans_b, m, k, n):
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(dtype)
    ref = a.astype(np.float64) @ (b.T if trans_b else b).astype(np.float64)
    packed = pg.pack_b(b, trans_b, m, pg.packing())
    expect_packed = blas.NAME == "mkl" and pg.worth_packing(m, b.size, trans_b)
    assert (packed.size > 0) == expect_packed
    out = np.full((m, n), np.nan, dtype=dtype)  # must not read what was there
    for _ in range(3):  # one packing serves every product
        pg.gemm_packed(a, b, trans_b, packed, out)
        np.testing.assert_allclose(out, ref, **_tol(dtype, k))
        a = a[::-1].copy()
        ref = ref[::-1].copy()


def test_worth_packing_thresholds():
    assert not pg.worth_packing(1, 10_000, True)  # min-char-rnn's batch of one
    assert pg.worth_packing(pg.PACK_MIN_ROWS, 16, True)
    assert pg.worth_packing(pg.PACK_MIN_ROWS_NO_TRANS, pg.PACK_MIN_WEIGHTS_NO_TRANS, False)
    assert not pg.worth_packing(pg.PACK_MIN_ROWS_NO_TRANS - 1, pg.PACK_MIN_WEIGHTS_NO_TRANS, False)
    assert not pg.worth_packing(pg.PACK_MIN_ROWS_NO_TRANS, pg.PACK_MIN_WEIGHTS_NO_TRANS - 1, False)


def test_gemm_packed_checks_shapes(rng):
    b = rng.standard_normal((8, 6)).astype(np.float32)
    packed = pg.pack_b(b, True, 4, pg.packing())
    if packed.size == 0:
        pytest.skip(f"{blas.NAME} has no packed API: gemm_packed is the plain gemm")
    with pytest.raises(ValueError, match="shapes do not match"):
        pg.gemm_packed(np.ones((4, 5), np.float32), b, True, packed, np.empty((4, 8), np.float32))


def _lstm_args(rng, T, N, D, H):
    return (rng.standard_normal((T, N, D)), rng.standard_normal((N, H)), rng.standard_normal((N, H)),
            rng.standard_normal((4 * H, D)) * 0.3, rng.standard_normal((4 * H, H)) * 0.1,
            rng.standard_normal(4 * H) * 0.1)


def _rnn_args(rng, T, N, D, H):
    return (rng.standard_normal((T, N, D)), rng.standard_normal((N, H)), rng.standard_normal((H, D)) * 0.3,
            rng.standard_normal((H, H)) * 0.05, rng.standard_normal(H) * 0.1)


@pytest.mark.parametrize("cell", ["lstm", "rnn"])
def test_recurrent_kernels_agree_with_packing_on_and_off(rng, cell, packing_off):
    # H 128, 32 rows in at most 2 blocks (16 or 32 rows each): the forward packs w_hh.T; the LSTM's backward
    # (4H x H = 65536 weights) packs w_hh too, the RNN's (H x H) does not. float64: equal to rounding.
    import numba

    T, N, D, H = 6, 32, 5, 128
    assert pg.worth_packing(N // 2, 4 * H, True)
    assert pg.worth_packing(N // 2, 4 * H * H, False) and not pg.worth_packing(N, H * H, False)
    args = _lstm_args(rng, T, N, D, H) if cell == "lstm" else _rnn_args(rng, T, N, D, H)
    dhs = rng.standard_normal((T, N, H))
    dc_T = rng.standard_normal((N, H))

    def run():
        return _lstm_run(args, dhs, dc_T) if cell == "lstm" else _rnn_run(args, dhs)
    threads = numba.get_num_threads()
    numba.set_num_threads(min(2, threads))  # the row blocks above, whatever NUMBA_NUM_THREADS says
    try:
        on = run()
        packing_off()
        off = run()
    finally:
        numba.set_num_threads(threads)
    for (name, a), (_, b) in zip(on, off):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-11, err_msg=name)


def _lstm_run(args, dhs, dc_T):
    hs, _, cache = F.lstm_forward(*args)
    grads = F.lstm_backward(dhs, cache, dc_T)
    return [("hs", hs)] + [(f"grad {k}", g) for k, g in enumerate(grads)]


def _rnn_run(args, dhs):
    hs, cache = F.rnn_forward(*args)
    grads = F.rnn_backward(dhs, cache)
    return [("hs", hs)] + [(f"grad {k}", g) for k, g in enumerate(grads)]
