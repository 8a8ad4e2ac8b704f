"""LSTM over a whole sequence (numbanets.functional.lstm_forward / lstm_backward).

Forward against the float64 naive reference, every backward output against
central finite differences through the whole unroll (with and without a
gradient into the last cell state), the exact forget-gate law of the design
(w_hh = 0, zero input: dc_0 = sigmoid(b_f)^T dc_T), parity with torch.nn.LSTM
when torch is installed, and the input validation.
"""

import numpy as np
import pytest

from gradcheck import assert_close, numerical_grad
from numbanets import functional as F
from reference import lstm_ref

GRAD_NAMES = ("dx", "dh0", "dc0", "dw_ih", "dw_hh", "db")
SHAPES = [(5, 3, 4, 7), (6, 1, 3, 5), (1, 4, 5, 3), (1, 1, 2, 3)]  # (T, N, D, H)


def _inputs(rng, T, N, D, H, dtype=np.float64):
    """x, h0, c0, w_ih, w_hh, b (gate rows i, f, g, o) with weights ~ 1 / sqrt(fan-in)."""
    x = rng.standard_normal((T, N, D))
    h0 = rng.standard_normal((N, H)) * 0.5
    c0 = rng.standard_normal((N, H))
    w_ih = rng.standard_normal((4 * H, D)) / np.sqrt(D)
    w_hh = rng.standard_normal((4 * H, H)) / np.sqrt(H)
    b = rng.standard_normal(4 * H) * 0.5
    return tuple(a.astype(dtype) for a in (x, h0, c0, w_ih, w_hh, b))


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


# --------------------------------------------------------------------------- forward

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_matches_reference(rng, shape, dtype):
    T, N, D, H = shape
    args = _inputs(rng, *shape, dtype=dtype)
    hs, (h_T, c_T), cache = F.lstm_forward(*args)
    assert hs.dtype == dtype and hs.shape == (T, N, H)
    hs_ref, cs_ref = lstm_ref(*args)
    tol = 1e-13 if dtype == np.float64 else 3e-6
    assert_close(hs, hs_ref, rtol=tol, atol=tol, name="hs")
    assert_close(h_T, hs_ref[-1], rtol=tol, atol=tol, name="h_T")
    assert_close(c_T, cs_ref[-1], rtol=tol, atol=tol, name="c_T")


def test_gates_are_stored_after_their_nonlinearity(rng):
    T, N, D, H = 4, 2, 3, 5
    x, h0, c0, w_ih, w_hh, b = _inputs(rng, T, N, D, H)
    hs, _, cache = F.lstm_forward(x, h0, c0, w_ih, w_hh, b)
    cs, gates = cache[7], cache[8]
    assert gates.shape == (T, N, 4 * H)
    h_prev = np.concatenate([h0[None], hs[:-1]])
    c_prev = np.concatenate([c0[None], cs[:-1]])
    a = np.einsum("tnd,gd->tng", x, w_ih) + np.einsum("tnh,gh->tng", h_prev, w_hh) + b
    i, f, g, o = (a[..., q * H:(q + 1) * H] for q in range(4))
    expected = np.concatenate([_sigmoid(i), _sigmoid(f), np.tanh(g), _sigmoid(o)], axis=-1)
    assert_close(gates, expected, rtol=1e-13, atol=1e-14, name="gates")
    gi, gf, gg, go = (gates[..., q * H:(q + 1) * H] for q in range(4))
    assert_close(cs, gf * c_prev + gi * gg, rtol=1e-14, atol=1e-15, name="c_t")
    assert_close(hs, go * np.tanh(cs), rtol=1e-14, atol=1e-15, name="h_t")


def test_extreme_preactivations_saturate_without_nan(rng):
    # |a| up to ~1e3: the sigmoid/tanh kernels must not overflow (exact 0 / 1 / -1)
    x, h0, c0, w_ih, w_hh, b = _inputs(rng, 3, 2, 3, 4, dtype=np.float32)
    hs, (h_T, c_T), cache = F.lstm_forward(x * 300, h0, c0, w_ih, w_hh, b)
    hs_ref, cs_ref = lstm_ref(x * 300, h0, c0, w_ih, w_hh, b)
    assert np.isfinite(hs).all() and np.isfinite(c_T).all()
    assert_close(hs, hs_ref, rtol=1e-5, atol=1e-6, name="hs")
    grads = F.lstm_backward(np.ones_like(hs), cache, dc_T=np.ones_like(c_T))
    assert all(np.isfinite(g).all() for g in grads)
    # and right, not only finite: against the float64 backward of the same (float32) values. Measured
    # worst error over seeds 0-4: 6e-6 of the largest element (dw_ih, x * 300 rounds in float32);
    # the bound is 1e-4 of it, while a saturated gate's derivative taken wrongly (0 vs 1) is O(1)
    a64 = [a.astype(np.float64) for a in (x * 300, h0, c0, w_ih, w_hh, b)]
    hs64, (_, c64), cache64 = F.lstm_forward(*a64)
    grads64 = F.lstm_backward(np.ones_like(hs64), cache64, dc_T=np.ones_like(c64))
    for name, g, e in zip(GRAD_NAMES, grads, grads64):
        assert_close(g, e, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(e).max())), name=f"{name} (saturated)")


# --------------------------------------------------------------------------- backward

def _lstm_outputs(*args):
    hs, (_, c_T), _ = F.lstm_forward(*args)
    return hs, c_T


@pytest.mark.parametrize("with_dc_T", [False, True], ids=["dc_T=0", "dc_T!=0"])
@pytest.mark.parametrize("shape", [(4, 2, 3, 3), (1, 1, 2, 3)], ids=["T4", "T1N1"])
def test_backward_matches_finite_differences(rng, shape, with_dc_T):
    T, N, D, H = shape
    args = list(_inputs(rng, T, N, D, H))
    hs, _, cache = F.lstm_forward(*args)
    dhs = rng.standard_normal(hs.shape)
    dc_T = rng.standard_normal((N, H)) if with_dc_T else None
    grads = F.lstm_backward(dhs, cache, dc_T=dc_T)
    for k, name in enumerate(GRAD_NAMES):
        numeric = numerical_grad(_lstm_outputs, args, k, (dhs, dc_T))
        assert_close(grads[k], numeric, rtol=1e-6, atol=1e-8, name=name)


def test_backward_float32_matches_float64(rng):
    args = _inputs(rng, 6, 3, 5, 7)
    dhs = rng.standard_normal((6, 3, 7))
    dc_T = rng.standard_normal((3, 7))
    _, _, cache64 = F.lstm_forward(*args)
    expected = F.lstm_backward(dhs, cache64, dc_T)
    _, _, cache32 = F.lstm_forward(*(a.astype(np.float32) for a in args))
    got = F.lstm_backward(dhs.astype(np.float32), cache32, dc_T.astype(np.float32))
    for name, g, e in zip(GRAD_NAMES, got, expected):
        assert g.dtype == np.float32
        assert_close(g, e, rtol=1e-4, atol=1e-5, name=name)


def test_outputs_are_new_arrays(rng):
    args = _inputs(rng, 3, 2, 3, 4, dtype=np.float32)
    hs, _, cache = F.lstm_forward(*args)
    dhs = np.ones_like(hs)
    dc_T = np.ones_like(args[2])
    grads = F.lstm_backward(dhs, cache, dc_T)
    for name, g, like in zip(GRAD_NAMES, grads, args):
        assert g.shape == like.shape and g.dtype == np.float32, name
        assert not any(np.shares_memory(g, a) for a in (*args, *cache[1:], dhs, dc_T)), name
    np.testing.assert_array_equal(dc_T, 1.0)  # the caller's dc_T is not modified


# --------------------------------------------------------------------------- theory

@pytest.mark.parametrize("gemm", ["panels", "mkl", "blas"])
@pytest.mark.parametrize("blocks", [2, 3])
def test_row_blocks_match_row_by_row_runs_and_one_block(rng, row_blocks_override, recurrent_gemm, blocks, gemm):
    # the batch rows run in `blocks` blocks (blas.row_blocks), each through the whole time loop. Every batch
    # row is an independent sequence, so each row alone and the whole batch in one block must give the same
    # numbers. The layout is forced (blas.ROW_BLOCKS_STATE): left to the environment, OpenBLAS or one numba
    # thread could run one block and the test would compare the single-block path with itself. 3 blocks of
    # 32 rows are uneven (10, 11, 11) and more than this machine's threads. Each way of the per-step products
    # (numbanets' panels, MKL's packed API, the BLAS's gemm called from numba's threads; "mkl" is the plain
    # gemm where MKL is not the BLAS) runs the blocks.
    import numba

    from numbanets.kernels.cpu import blas
    from numbanets.kernels.cpu.blas import PARALLEL_MIN_ELEMENTS
    from numbanets.kernels.cpu.packed_gemm import loop_row_blocks

    T, D, H = 4, 3, 64
    N = PARALLEL_MIN_ELEMENTS // H
    args = _inputs(rng, T, N, D, H)
    dhs = rng.standard_normal((T, N, H))
    dc_T = rng.standard_normal((N, H))
    mode = recurrent_gemm(gemm)
    row_blocks_override.set(blocks)
    assert loop_row_blocks(N, H, mode) == blocks  # the count the kernels ask for
    token = blas.set_threads(2)  # a count the caller chose: the blocks run MKL on one thread, then restore it
    try:
        row_blocks_override.clear_reads()
        hs, _, cache = F.lstm_forward(*args)
        assert row_blocks_override.reads >= 1, "the forward did not ask for the forced layout (a stale kernel cache?)"
        row_blocks_override.clear_reads()
        grads = F.lstm_backward(dhs, cache, dc_T)
        assert row_blocks_override.reads >= 1, "the backward did not ask for the forced layout"
        if blas.NAME == "mkl":
            assert blas.threads() == 2
    finally:
        blas.restore_threads(token)
    x, h0, c0, w_ih, w_hh, b = args
    for n in range(N):
        row_args = (x[:, n:n + 1].copy(), h0[n:n + 1].copy(), c0[n:n + 1].copy(), w_ih, w_hh, b)
        hs_n, _, cache_n = F.lstm_forward(*row_args)
        assert_close(hs[:, n:n + 1], hs_n, rtol=1e-12, atol=1e-12, name=f"hs row {n}")
        dx_n, dh0_n, dc0_n, *_ = F.lstm_backward(dhs[:, n:n + 1].copy(), cache_n, dc_T[n:n + 1].copy())
        assert_close(grads[0][:, n:n + 1], dx_n, rtol=1e-12, atol=1e-12, name=f"dx row {n}")
        assert_close(grads[1][n:n + 1], dh0_n, rtol=1e-12, atol=1e-12, name=f"dh0 row {n}")
        assert_close(grads[2][n:n + 1], dc0_n, rtol=1e-12, atol=1e-12, name=f"dc0 row {n}")
    row_blocks_override.set(1)
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)  # (panels split a large batch over numba's threads even where the BLAS is outside)
        assert loop_row_blocks(N, H, mode) == 1
        hs_1, _, cache_1 = F.lstm_forward(*args)
        grads_1 = F.lstm_backward(dhs, cache_1, dc_T)
    finally:
        numba.set_num_threads(threads)
    # (a block of rows may take another BLAS kernel than the whole batch: equal to rounding, not bit for bit)
    assert_close(hs, hs_1, rtol=1e-12, atol=1e-12, name="hs, one block")
    for g, g1, name in zip(grads, grads_1, GRAD_NAMES):
        assert_close(g, g1, rtol=1e-12, atol=1e-12, name=f"{name}, one block")


@pytest.mark.parametrize("T", [1, 5, 20])
def test_forget_gate_law(rng, T):
    # w_hh = 0 and zero input: every gate is constant, f = sigmoid(b_f); with the gradient
    # only into c_T, dL/dc_t = sigmoid(b_f)^(T - t) dc_T and nothing reaches h0
    N, D, H = 2, 3, 4
    x = np.zeros((T, N, D))
    h0 = rng.standard_normal((N, H))
    c0 = rng.standard_normal((N, H))
    w_ih = rng.standard_normal((4 * H, D))
    w_hh = np.zeros((4 * H, H))
    b = rng.standard_normal(4 * H)
    dc_T = rng.standard_normal((N, H))
    hs, _, cache = F.lstm_forward(x, h0, c0, w_ih, w_hh, b)
    dx, dh0, dc0, dw_ih, dw_hh, db = F.lstm_backward(np.zeros_like(hs), cache, dc_T=dc_T)
    f = _sigmoid(b[H:2 * H])
    assert_close(dc0, f ** T * dc_T, rtol=1e-12, atol=0.0, name="dc0")
    np.testing.assert_array_equal(dh0, 0.0)


# --------------------------------------------------------------------------- torch parity

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_torch_lstm(rng, torch, dtype):
    T, N, D, H = 6, 3, 5, 4
    x, h0, c0, w_ih, w_hh, b = _inputs(rng, T, N, D, H, dtype=dtype)
    dhs = rng.standard_normal((T, N, H)).astype(dtype)
    dc_T = rng.standard_normal((N, H)).astype(dtype)

    tdtype = torch.float64 if dtype == np.float64 else torch.float32
    model = torch.nn.LSTM(D, H).to(tdtype)
    with torch.no_grad():
        model.weight_ih_l0.copy_(torch.from_numpy(w_ih))
        model.weight_hh_l0.copy_(torch.from_numpy(w_hh))
        model.bias_ih_l0.copy_(torch.from_numpy(b))
        model.bias_hh_l0.zero_()
    xt = torch.from_numpy(x.copy()).requires_grad_()
    h0t = torch.from_numpy(h0.copy()[None]).requires_grad_()
    c0t = torch.from_numpy(c0.copy()[None]).requires_grad_()
    yt, (h_n, c_n) = model(xt, (h0t, c0t))
    torch.autograd.backward([yt, c_n], [torch.from_numpy(dhs), torch.from_numpy(dc_T[None])])

    hs, (h_T, c_T), cache = F.lstm_forward(x, h0, c0, w_ih, w_hh, b)
    grads = F.lstm_backward(dhs, cache, dc_T=dc_T)
    tol = 1e-12 if dtype == np.float64 else 2e-5
    assert_close(hs, yt.detach().numpy(), rtol=tol, atol=tol, name="hs")
    assert_close(c_T, c_n.detach().numpy()[0], rtol=tol, atol=tol, name="c_T")
    theirs = (
        xt.grad, h0t.grad[0], c0t.grad[0],
        model.weight_ih_l0.grad, model.weight_hh_l0.grad, model.bias_ih_l0.grad,
    )
    for name, ours, t in zip(GRAD_NAMES, grads, theirs):
        assert_close(ours, t.numpy(), rtol=tol, atol=tol, name=name)
    assert_close(grads[5], model.bias_hh_l0.grad.numpy(), rtol=tol, atol=tol, name="db vs bias_hh")


# --------------------------------------------------------------------------- validation

def test_bad_inputs_raise_clear_errors(rng):
    x, h0, c0, w_ih, w_hh, b = _inputs(rng, 3, 2, 4, 5, dtype=np.float32)
    with pytest.raises(ValueError, match="w_ih"):
        F.lstm_forward(x[:, :, :3], h0, c0, w_ih, w_hh, b)  # D = 3 but w_ih expects 4
    with pytest.raises(ValueError, match="w_ih"):
        F.lstm_forward(x, h0, c0, w_ih[:-1], w_hh, b)  # 4H - 1 rows
    with pytest.raises(ValueError, match="h0"):
        F.lstm_forward(x, h0[:, :4], c0, w_ih, w_hh, b)
    with pytest.raises(ValueError, match="c0"):
        F.lstm_forward(x, h0, c0[:1], w_ih, w_hh, b)
    with pytest.raises(ValueError, match="w_hh"):
        F.lstm_forward(x, h0, c0, w_ih, w_hh[:, :4], b)
    with pytest.raises(ValueError, match="b"):
        F.lstm_forward(x, h0, c0, w_ih, w_hh, b[:5])
    with pytest.raises(TypeError, match="float32 or float64"):
        F.lstm_forward(x, h0, c0.astype(np.int32), w_ih, w_hh, b)
    with pytest.raises(TypeError, match="dtype"):
        F.lstm_forward(x, h0, c0, w_ih.astype(np.float64), w_hh, b)

    hs, _, cache = F.lstm_forward(x, h0, c0, w_ih, w_hh, b)
    with pytest.raises(ValueError, match="dhs"):
        F.lstm_backward(np.zeros((3, 2, 4), np.float32), cache)
    with pytest.raises(ValueError, match="dc_T"):
        F.lstm_backward(np.zeros_like(hs), cache, dc_T=np.zeros((2, 4), np.float32))
    with pytest.raises(TypeError, match="dtype"):
        F.lstm_backward(np.zeros_like(hs), cache, dc_T=np.zeros((2, 5), np.float64))
    with pytest.raises(TypeError, match="cache"):
        F.lstm_backward(np.zeros_like(hs), ("rnn",))
