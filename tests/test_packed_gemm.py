"""numbanets.kernels.cpu.packed_gemm and panel_gemm: products against a matrix packed once, against float64
products, in each mode; and the recurrent kernels in every mode against each other.

The modes: PANELS (numbanets' own panels and register tiles, any BLAS), MKL_PACKED (MKL's packed API: under
MKL it packs where worth_packing says so, asserted) and PLAIN. Under OpenBLAS (CI's second pass,
NUMBANETS_BLAS=openblas) MKL_PACKED is not offered and the "mkl" choice means PLAIN.
"""

from __future__ import annotations

import numpy as np
import pytest

from numbanets import functional as F
from numbanets.kernels.cpu import blas
from numbanets.kernels.cpu import packed_gemm as pg
from numbanets.kernels.cpu import panel_gemm


def _tol(dtype, k):
    # rounding of a k-term sum of products of N(0, 1) numbers grows with k: scale the absolute tolerance
    eps = np.finfo(dtype).eps
    return dict(rtol=100 * eps, atol=8 * eps * k)


@pytest.fixture
def choose():
    """Yields a function choose(choice, packing=True) setting RECURRENT_GEMM and PACKING_STATE for the rest of
    the test; both restored after."""
    before = pg.RECURRENT_GEMM[0], pg.PACKING_STATE[0]

    def set_choice(choice, packing=True):
        pg.RECURRENT_GEMM[0] = choice
        pg.PACKING_STATE[0] = packing
    yield set_choice
    pg.RECURRENT_GEMM[0], pg.PACKING_STATE[0] = before


MODE_OF_CHOICE = {"panels": pg.PANELS, "mkl": pg.MKL_PACKED if blas.NAME == "mkl" else pg.PLAIN, "blas": pg.PLAIN}


def test_mode_follows_the_choice_and_the_switch(choose):
    for choice, mode in MODE_OF_CHOICE.items():
        choose(choice)
        assert pg.packing() == mode == pg.mode()
    choose("mkl", packing=False)
    assert pg.packing() == pg.PLAIN
    choose("auto")
    assert pg.packing() == (pg.PANELS if pg._HAS_FMA else MODE_OF_CHOICE["mkl"])
    choose("fast")
    with pytest.raises(ValueError, match="RECURRENT_GEMM"):
        pg.mode()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("trans_b", [True, False])
@pytest.mark.parametrize("m, k, n", [(25, 128, 512), (16, 512, 128), (3, 7, 5), (1, 100, 100), (13, 9, 33),
                                     (6, 1, 16), (7, 40, 8)])
@pytest.mark.parametrize("choice", ["panels", "mkl", "blas"])
def test_gemm_packed_against_float64(rng, choose, choice, dtype, trans_b, m, k, n):
    # m over several 6-row tiles with a remainder; n a whole number of panels or not (16 float32 / 8 float64
    # columns each); k down to 1
    choose(choice)
    mode = pg.packing()
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(dtype)
    ref = a.astype(np.float64) @ (b.T if trans_b else b).astype(np.float64)
    packed = pg.pack_b(b, trans_b, m, mode)
    if mode == pg.PANELS:
        width = panel_gemm.PANEL_BYTES // np.dtype(dtype).itemsize
        assert packed.size == -(-n // width) * k * width
    else:
        assert (packed.size > 0) == (mode == pg.MKL_PACKED and pg.worth_packing(m, b.size, trans_b))
    out = np.full((m, n), np.nan, dtype=dtype)  # must not read what was there
    for _ in range(3):  # one packing serves every product
        pg.gemm_packed(a, b, trans_b, packed, out, mode)
        np.testing.assert_allclose(out, ref, **_tol(dtype, k))
        a = a[::-1].copy()
        ref = ref[::-1].copy()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_panels_on_rows_with_a_stride_and_nothing_outside_written(rng, dtype):
    # a and out are row slices of wider arrays (lda > k, ldc > n): the columns beside out stay as they were
    a = rng.standard_normal((14, 30)).astype(dtype)[::2, 3:23]      # (7, 20), lda 60
    b = rng.standard_normal((20, 37)).astype(dtype)
    wide = np.full((7, 45), 7.0, dtype=dtype)
    out = wide[:, 4:41]
    panel_gemm.gemm_panels(a, panel_gemm.pack_panels(b, False), out)
    np.testing.assert_allclose(out, a.astype(np.float64) @ b.astype(np.float64), **_tol(dtype, 20))
    assert (wide[:, :4] == 7.0).all() and (wide[:, 41:] == 7.0).all()


def test_panel_sums_run_in_order_with_one_rounding_per_term():
    # float32 with exact products and sums whose rounding depends on the order: a k sum taken 0..k-1, one fused
    # multiply-add per term, gives exactly sequential float32 rounding of each partial sum
    a = np.array([[1.0, 2.0 ** -24, 2.0 ** -24, -1.0]], dtype=np.float32)
    b = np.ones((4, 16), dtype=np.float32)
    out = np.empty((1, 16), dtype=np.float32)
    panel_gemm.gemm_panels(a, panel_gemm.pack_panels(b, False), out)
    seq = np.float32(0)
    for v in a[0]:
        seq = np.float32(seq + v)
    assert (out == seq).all() and seq == 0.0  # 1 + 2^-24 rounds back to 1 twice; in float64 it would be 2^-23


def test_gemm_panels_checks_shapes(rng):
    b = rng.standard_normal((8, 6)).astype(np.float32)
    packed = pg.pack_b(b, True, 4, pg.PANELS)
    with pytest.raises(ValueError, match="shapes do not match"):
        pg.gemm_packed(np.ones((4, 5), np.float32), b, True, packed, np.empty((4, 8), np.float32), pg.PANELS)


def test_worth_packing_thresholds():
    assert not pg.worth_packing(1, 10_000, True)  # min-char-rnn's batch of one
    assert pg.worth_packing(pg.PACK_MIN_ROWS, 16, True)
    assert pg.worth_packing(pg.PACK_MIN_ROWS_NO_TRANS, pg.PACK_MIN_WEIGHTS_NO_TRANS, False)
    assert not pg.worth_packing(pg.PACK_MIN_ROWS_NO_TRANS - 1, pg.PACK_MIN_WEIGHTS_NO_TRANS, False)
    assert not pg.worth_packing(pg.PACK_MIN_ROWS_NO_TRANS, pg.PACK_MIN_WEIGHTS_NO_TRANS - 1, False)


def test_mkl_packed_checks_shapes(rng):
    if blas.NAME != "mkl":
        pytest.skip(f"{blas.NAME} has no packed API: MKL_PACKED is not offered")
    b = rng.standard_normal((8, 6)).astype(np.float32)
    packed = pg.pack_b(b, True, 4, pg.MKL_PACKED)
    assert packed.size > 0
    with pytest.raises(ValueError, match="shapes do not match"):
        pg.gemm_packed(np.ones((4, 5), np.float32), b, True, packed, np.empty((4, 8), np.float32), pg.MKL_PACKED)


def test_panel_loops_split_rows_over_numba_threads_with_any_blas():
    # PANELS loops call no BLAS: their rows split over numba's threads even where the BLAS is outside numba's
    # pool (OpenBLAS), from PARALLEL_MIN_ELEMENTS up; the other modes follow blas.row_blocks
    import numba

    threads = numba.get_num_threads()
    numba.set_num_threads(min(2, threads))
    try:
        n, width = 32, 128
        assert pg.loop_row_blocks(n, width, pg.PANELS) == min(2, threads)
        assert pg.loop_row_blocks(n, width, pg.PLAIN) == blas.row_blocks(n, width)
        assert pg.loop_row_blocks(1, 8, pg.PANELS) == 1
    finally:
        numba.set_num_threads(threads)


def _lstm_args(rng, T, N, D, H):
    return (rng.standard_normal((T, N, D)), rng.standard_normal((N, H)), rng.standard_normal((N, H)),
            rng.standard_normal((4 * H, D)) * 0.3, rng.standard_normal((4 * H, H)) * 0.1,
            rng.standard_normal(4 * H) * 0.1)


def _rnn_args(rng, T, N, D, H):
    return (rng.standard_normal((T, N, D)), rng.standard_normal((N, H)), rng.standard_normal((H, D)) * 0.3,
            rng.standard_normal((H, H)) * 0.05, rng.standard_normal(H) * 0.1)


@pytest.mark.parametrize("cell", ["lstm", "rnn", "gru"])
def test_recurrent_kernels_agree_in_every_mode(rng, cell, choose):
    # H 128, 32 rows in 2 blocks of 16 (numba threads set to 2): the forward packs w_hh.T; the LSTM's backward
    # (4H x H = 65536 weights) packs w_hh too under MKL_PACKED, the RNN's (H x H) does not. float64: the
    # modes differ by rounding only.
    import numba

    T, N, D, H = 6, 32, 5, 128
    assert pg.worth_packing(N // 2, 4 * H, True)
    assert pg.worth_packing(N // 2, 4 * H * H, False) and not pg.worth_packing(N, H * H, False)
    args = {"lstm": _lstm_args, "rnn": _rnn_args, "gru": _gru_args}[cell](rng, T, N, D, H)
    dhs = rng.standard_normal((T, N, H))
    dc_T = rng.standard_normal((N, H))

    def run():
        if cell == "lstm":
            return _lstm_run(args, dhs, dc_T)
        return _rnn_run(args, dhs) if cell == "rnn" else _gru_run(args, dhs)
    threads = numba.get_num_threads()
    numba.set_num_threads(min(2, threads))  # the row blocks above, whatever NUMBA_NUM_THREADS says
    results = {}
    try:
        for choice in ("panels", "mkl", "blas"):
            choose(choice)
            results[choice] = run()
    finally:
        numba.set_num_threads(threads)
    for choice in ("mkl", "blas"):
        for (name, a), (_, b) in zip(results["panels"], results[choice]):
            np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-11, err_msg=f"{name}: panels against {choice}")


def _gru_args(rng, T, N, D, H):
    return (rng.standard_normal((T, N, D)), rng.standard_normal((N, H)), rng.standard_normal((3 * H, D)) * 0.3,
            rng.standard_normal((3 * H, H)) * 0.1, rng.standard_normal(3 * H) * 0.1,
            rng.standard_normal(3 * H) * 0.1)


def _gru_run(args, dhs):
    hs, _, cache = F.gru_forward(*args)
    grads = F.gru_backward(dhs, cache)
    return [("hs", hs)] + [(f"grad {k}", g) for k, g in enumerate(grads)]


def _lstm_run(args, dhs, dc_T):
    hs, _, cache = F.lstm_forward(*args)
    grads = F.lstm_backward(dhs, cache, dc_T)
    return [("hs", hs)] + [(f"grad {k}", g) for k, g in enumerate(grads)]


def _rnn_run(args, dhs):
    hs, cache = F.rnn_forward(*args)
    grads = F.rnn_backward(dhs, cache)
    return [("hs", hs)] + [(f"grad {k}", g) for k, g in enumerate(grads)]
