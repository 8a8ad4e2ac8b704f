"""Vanilla RNN over a whole sequence (numbanets.functional.rnn_forward / rnn_backward).

Forward against the float64 naive reference, every backward output against
central finite differences through the whole unroll, the exact gradient-decay
laws of the design (tanh with W_hh = 0.5 I, ReLU with W_hh = I), parity with
torch.nn.RNN when torch is installed, and the input validation.
"""

import numpy as np
import pytest

from gradcheck import assert_close, numerical_grad
from numbanets import functional as F
from reference import rnn_ref

ACTIVATIONS = ("identity", "tanh", "sigmoid", "relu")
GRAD_NAMES = ("dx", "dh0", "dw_ih", "dw_hh", "db")
# odd sizes, a single sequence (N = 1), a single step (T = 1), both at once
SHAPES = [(5, 3, 4, 7), (6, 1, 3, 5), (1, 4, 5, 3), (1, 1, 2, 3)]  # (T, N, D, H)


def _inputs(rng, T, N, D, H, dtype=np.float64, scale=1.0):
    """x, h0, w_ih, w_hh, b with weights ~ scale / sqrt(fan-in), so no activation saturates or explodes."""
    x = rng.standard_normal((T, N, D))
    h0 = rng.standard_normal((N, H)) * 0.5
    w_ih = rng.standard_normal((H, D)) * scale / np.sqrt(D)
    w_hh = rng.standard_normal((H, H)) * scale / np.sqrt(H)
    b = rng.standard_normal(H) * 0.1
    return tuple(a.astype(dtype) for a in (x, h0, w_ih, w_hh, b))


# --------------------------------------------------------------------------- forward

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_matches_reference(rng, shape, activation, dtype):
    args = _inputs(rng, *shape, dtype=dtype)
    hs, cache = F.rnn_forward(*args, activation=activation)
    assert hs.dtype == dtype and hs.shape == (shape[0], shape[1], shape[3])
    expected = rnn_ref(*args, activation=activation)
    tol = 1e-13 if dtype == np.float64 else 3e-6
    assert_close(hs, expected, rtol=tol, atol=tol, name=f"hs ({activation})")


def test_forward_default_is_tanh_and_accepts_noncontiguous(rng):
    x, h0, w_ih, w_hh, b = _inputs(rng, 4, 3, 5, 6)
    expected = rnn_ref(x, h0, w_ih, w_hh, b, "tanh")
    # every input a strided view: functional copies them
    x_nc = np.asfortranarray(x)
    w_ih_nc = np.ascontiguousarray(w_ih.T).T
    b_nc = np.repeat(b, 2)[::2]
    hs, _ = F.rnn_forward(x_nc, h0, w_ih_nc, w_hh, b_nc)
    assert_close(hs, expected, rtol=1e-13, atol=1e-13, name="hs")


@pytest.mark.parametrize("gemm", ["panels", "mkl", "blas"])
@pytest.mark.parametrize("blocks", [2, 3])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_row_blocks_match_row_by_row_runs_and_one_block(rng, row_blocks_override, recurrent_gemm, activation,
                                                        blocks, gemm):
    # the batch rows run in `blocks` blocks, each through the whole time loop; every row is an independent
    # sequence, so each row alone and the whole batch in one block give the same numbers. The layout is
    # forced (blas.ROW_BLOCKS_STATE): left to the environment, OpenBLAS or one numba thread could run one
    # block and the test would compare the single-block path with itself. 3 blocks of 32 rows are uneven
    # (10, 11, 11) and more than this machine's threads. Each way of the per-step products (numbanets'
    # panels, MKL's packed API, the BLAS's gemm called from numba's threads; "mkl" is the plain gemm where
    # MKL is not the BLAS) runs the blocks.
    import numba

    from numbanets.kernels.cpu.blas import PARALLEL_MIN_ELEMENTS
    from numbanets.kernels.cpu.packed_gemm import loop_row_blocks

    T, D, H = 4, 3, 64
    N = PARALLEL_MIN_ELEMENTS // H
    args = _inputs(rng, T, N, D, H)
    dhs = rng.standard_normal((T, N, H))
    mode = recurrent_gemm(gemm)
    row_blocks_override.set(blocks)
    assert loop_row_blocks(N, H, mode) == blocks  # the count the kernels ask for
    row_blocks_override.clear_reads()
    hs, cache = F.rnn_forward(*args, activation=activation)
    assert row_blocks_override.reads >= 1, "the forward did not ask for the forced layout (a stale kernel cache?)"
    row_blocks_override.clear_reads()
    grads = F.rnn_backward(dhs, cache)
    assert row_blocks_override.reads >= 1, "the backward did not ask for the forced layout"
    x, h0, w_ih, w_hh, b = args
    for n in range(N):
        hs_n, cache_n = F.rnn_forward(x[:, n:n + 1].copy(), h0[n:n + 1].copy(), w_ih, w_hh, b, activation=activation)
        assert_close(hs[:, n:n + 1], hs_n, rtol=1e-12, atol=1e-12, name=f"hs row {n}")
        dx_n, dh0_n, *_ = F.rnn_backward(dhs[:, n:n + 1].copy(), cache_n)
        assert_close(grads[0][:, n:n + 1], dx_n, rtol=1e-12, atol=1e-12, name=f"dx row {n}")
        assert_close(grads[1][n:n + 1], dh0_n, rtol=1e-12, atol=1e-12, name=f"dh0 row {n}")
    row_blocks_override.set(1)
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)  # (panels split a large batch over numba's threads even where the BLAS is outside)
        assert loop_row_blocks(N, H, mode) == 1
        hs_1, cache_1 = F.rnn_forward(*args, activation=activation)
        grads_1 = F.rnn_backward(dhs, cache_1)
    finally:
        numba.set_num_threads(threads)
    # (a block of rows may take another BLAS kernel than the whole batch: equal to rounding, not bit for bit)
    assert_close(hs, hs_1, rtol=1e-12, atol=1e-12, name="hs, one block")
    for g, g1, name in zip(grads, grads_1, GRAD_NAMES):
        assert_close(g, g1, rtol=1e-12, atol=1e-12, name=f"{name}, one block")


def test_outputs_are_new_arrays(rng):
    args = _inputs(rng, 3, 2, 3, 4, dtype=np.float32)
    hs, cache = F.rnn_forward(*args, activation="tanh")
    dhs = rng.standard_normal(hs.shape).astype(np.float32)
    grads = F.rnn_backward(dhs, cache)
    for name, g, like in zip(GRAD_NAMES, grads, (args[0], args[1], args[2], args[3], args[4])):
        assert g.dtype == np.float32, name
        assert g.shape == like.shape, name
        assert not any(np.shares_memory(g, a) for a in (*args, hs, dhs)), name


def test_empty_batch_and_zero_features(rng):
    for T, N, D, H in ((3, 0, 2, 4), (3, 2, 0, 4)):
        x, h0, w_ih, w_hh, b = _inputs(rng, T, N, max(D, 1), H)
        x, w_ih = x[:, :, :D].copy(), w_ih[:, :D].copy()
        hs, cache = F.rnn_forward(x, h0, w_ih, w_hh, b)
        assert_close(hs, rnn_ref(x, h0, w_ih, w_hh, b), rtol=1e-13, atol=1e-13, name="hs")
        dx, dh0, dw_ih, dw_hh, db = F.rnn_backward(np.ones_like(hs), cache)
        assert dx.shape == x.shape and dw_ih.shape == w_ih.shape
        if N == 0:
            for g in (dw_ih, dw_hh, db):
                np.testing.assert_array_equal(g, 0.0)


# --------------------------------------------------------------------------- backward

@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_backward_matches_finite_differences(rng, activation):
    T, N, D, H = 4, 2, 3, 5
    args = list(_inputs(rng, T, N, D, H))
    hs, cache = F.rnn_forward(*args, activation=activation)
    dhs = rng.standard_normal(hs.shape)
    grads = F.rnn_backward(dhs, cache)

    def forward(*a):
        return F.rnn_forward(*a, activation=activation)[0]

    for k, name in enumerate(GRAD_NAMES):
        numeric = numerical_grad(forward, args, k, dhs)
        assert_close(grads[k], numeric, rtol=1e-6, atol=1e-8, name=f"{name} ({activation})")


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_backward_single_step_single_sequence(rng, activation):
    # T = 1, N = 1: the loop runs once, dw_hh comes from h0 alone
    args = list(_inputs(rng, 1, 1, 3, 4))
    hs, cache = F.rnn_forward(*args, activation=activation)
    dhs = rng.standard_normal(hs.shape)
    grads = F.rnn_backward(dhs, cache)

    def forward(*a):
        return F.rnn_forward(*a, activation=activation)[0]

    for k, name in enumerate(GRAD_NAMES):
        numeric = numerical_grad(forward, args, k, dhs)
        assert_close(grads[k], numeric, rtol=1e-6, atol=1e-8, name=f"{name} ({activation})")


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_backward_float32_matches_float64(rng, activation):
    args = _inputs(rng, 6, 3, 5, 7)
    dhs = rng.standard_normal((6, 3, 7))
    _, cache64 = F.rnn_forward(*args, activation=activation)
    expected = F.rnn_backward(dhs, cache64)
    _, cache32 = F.rnn_forward(*(a.astype(np.float32) for a in args), activation=activation)
    got = F.rnn_backward(dhs.astype(np.float32), cache32)
    for name, g, e in zip(GRAD_NAMES, got, expected):
        assert g.dtype == np.float32
        assert_close(g, e, rtol=1e-4, atol=1e-5, name=f"{name} ({activation})")


# --------------------------------------------------------------------------- theory

def _grad_wrt_states(x, h0, w_ih, w_hh, b, activation, g_last):
    """dL/dh_k for k = 0..T (h_0 = h0) with L = <h_T, g_last>, as an array (T + 1, N, H).

    dL/dh_k is the dh0 of the sub-sequence x[k:] started from h_k, with the
    gradient only at its last step; dL/dh_T is g_last itself.
    """
    T = x.shape[0]
    hs, _ = F.rnn_forward(x, h0, w_ih, w_hh, b, activation)
    states = [h0] + [hs[t] for t in range(T)]
    out = np.empty((T + 1,) + h0.shape)
    out[T] = g_last
    for k in range(T):
        sub_hs, cache = F.rnn_forward(x[k:], states[k], w_ih, w_hh, b, activation)
        dhs = np.zeros_like(sub_hs)
        dhs[-1] = g_last
        out[k] = F.rnn_backward(dhs, cache)[1]
    return out


def test_tanh_gradient_decays_as_half_to_the_distance(rng):
    # W_hh = 0.5 I, zero input and state: h_t = 0, tanh'(0) = 1, so dL/dh_t = 0.5^(T-t) dL/dh_T
    T, N, D, H = 12, 2, 3, 4
    x = np.zeros((T, N, D))
    h0 = np.zeros((N, H))
    w_ih = np.zeros((H, D))
    w_hh = 0.5 * np.eye(H)
    b = np.zeros(H)
    g = rng.standard_normal((N, H))
    grads = _grad_wrt_states(x, h0, w_ih, w_hh, b, "tanh", g)
    last = np.linalg.norm(grads[T])
    for t in range(T + 1):
        assert abs(np.linalg.norm(grads[t]) - 0.5 ** (T - t) * last) <= 1e-12 * 0.5 ** (T - t) * last, t


def test_relu_gradient_norm_stays_one_with_identity_recurrence(rng):
    # W_hh = I, h0 > 0, zero input: h_t = h0 > 0 for every t, relu' = 1, so dL/dh_t = dL/dh_T exactly
    T, N, D, H = 15, 3, 2, 5
    x = np.zeros((T, N, D))
    h0 = rng.uniform(0.5, 2.0, (N, H))
    w_ih = rng.standard_normal((H, D))
    w_hh = np.eye(H)
    b = np.zeros(H)
    g = rng.standard_normal((N, H))
    grads = _grad_wrt_states(x, h0, w_ih, w_hh, b, "relu", g)
    last = np.linalg.norm(grads[T])
    for t in range(T + 1):
        assert np.linalg.norm(grads[t]) / last == pytest.approx(1.0, abs=1e-15), t
        np.testing.assert_array_equal(grads[t], g)


# --------------------------------------------------------------------------- torch parity

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_matches_torch_rnn(rng, torch, activation, dtype):
    T, N, D, H = 7, 3, 5, 6
    x, h0, w_ih, w_hh, b = _inputs(rng, T, N, D, H, dtype=dtype)
    dhs = rng.standard_normal((T, N, H)).astype(dtype)

    tdtype = torch.float64 if dtype == np.float64 else torch.float32
    model = torch.nn.RNN(D, H, nonlinearity=activation).to(tdtype)
    with torch.no_grad():
        model.weight_ih_l0.copy_(torch.from_numpy(w_ih))
        model.weight_hh_l0.copy_(torch.from_numpy(w_hh))
        model.bias_ih_l0.copy_(torch.from_numpy(b))
        model.bias_hh_l0.zero_()
    xt = torch.from_numpy(x.copy()).requires_grad_()
    h0t = torch.from_numpy(h0.copy()[None]).requires_grad_()
    yt, _ = model(xt, h0t)
    yt.backward(torch.from_numpy(dhs))

    hs, cache = F.rnn_forward(x, h0, w_ih, w_hh, b, activation)
    dx, dh0, dw_ih, dw_hh, db = F.rnn_backward(dhs, cache)
    tol = 1e-12 if dtype == np.float64 else 2e-5
    assert_close(hs, yt.detach().numpy(), rtol=tol, atol=tol, name="hs")
    for name, ours, theirs in (
        ("dx", dx, xt.grad),
        ("dh0", dh0, h0t.grad[0]),
        ("dw_ih", dw_ih, model.weight_ih_l0.grad),
        ("dw_hh", dw_hh, model.weight_hh_l0.grad),
        ("db", db, model.bias_ih_l0.grad),
    ):
        assert_close(ours, theirs.numpy(), rtol=tol, atol=tol, name=name)


# --------------------------------------------------------------------------- validation

def test_bad_inputs_raise_clear_errors(rng):
    x, h0, w_ih, w_hh, b = _inputs(rng, 3, 2, 4, 5, dtype=np.float32)
    with pytest.raises(ValueError, match="w_ih"):
        F.rnn_forward(x[:, :, :3], h0, w_ih, w_hh, b)  # D = 3 but w_ih expects 4
    with pytest.raises(ValueError, match="h0"):
        F.rnn_forward(x, h0[:, :4], w_ih, w_hh, b)
    with pytest.raises(ValueError, match="h0"):
        F.rnn_forward(x, h0[:1], w_ih, w_hh, b)  # batch mismatch
    with pytest.raises(ValueError, match="w_hh"):
        F.rnn_forward(x, h0, w_ih, w_hh[:, :4], b)
    with pytest.raises(ValueError, match="b"):
        F.rnn_forward(x, h0, w_ih, w_hh, b[:4])
    with pytest.raises(ValueError, match="activation"):
        F.rnn_forward(x, h0, w_ih, w_hh, b, activation="softplus")
    with pytest.raises(TypeError, match="float32 or float64"):
        F.rnn_forward(x.astype(np.int64), h0, w_ih, w_hh, b)
    with pytest.raises(TypeError, match="dtype"):
        F.rnn_forward(x.astype(np.float64), h0, w_ih, w_hh, b)  # mixed float32 / float64
    with pytest.raises(ValueError, match="x"):
        F.rnn_forward(x[0], h0, w_ih, w_hh, b)  # 2-D x

    hs, cache = F.rnn_forward(x, h0, w_ih, w_hh, b)
    with pytest.raises(ValueError, match="dhs"):
        F.rnn_backward(np.zeros((3, 2, 4), np.float32), cache)
    with pytest.raises(TypeError, match="dhs"):
        F.rnn_backward(np.zeros(hs.shape, np.int32), cache)
    with pytest.raises(TypeError, match="cache"):
        F.rnn_backward(np.zeros_like(hs), ("lstm",))
