"""GRU over a whole sequence (numbanets.functional.gru_forward / gru_backward).

Forward against the float64 naive reference (tests/reference.py, from torch's
equations), every backward output against central finite differences through
the whole unroll (with and without a gradient into the last state), integer ids
against one-hot input, the exact theory line of `nbnets grad-decay` (w_hh = 0,
zero input: dh_0 = sigmoid(b_z)^T dh_T), parity with torch.nn.GRU (forward and
autograd gradients) when torch is installed, and the input validation.
"""

import numpy as np
import pytest

from gradcheck import assert_close, numerical_grad
from numbanets import functional as F
from reference import gru_ref

GRAD_NAMES = ("dx", "dh0", "dw_ih", "dw_hh", "db_ih", "db_hh")
SHAPES = [(5, 3, 4, 7), (6, 1, 3, 5), (1, 4, 5, 3), (1, 1, 2, 3)]  # (T, N, D, H)


def _inputs(rng, T, N, D, H, dtype=np.float64):
    """x, h0, w_ih, w_hh, b_ih, b_hh (gate rows r, z, n) with weights ~ 1 / sqrt(fan-in)."""
    x = rng.standard_normal((T, N, D))
    h0 = rng.standard_normal((N, H)) * 0.5
    w_ih = rng.standard_normal((3 * H, D)) / np.sqrt(D)
    w_hh = rng.standard_normal((3 * H, H)) / np.sqrt(H)
    b_ih = rng.standard_normal(3 * H) * 0.5
    b_hh = rng.standard_normal(3 * H) * 0.5
    return tuple(a.astype(dtype) for a in (x, h0, w_ih, w_hh, b_ih, b_hh))


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


# --------------------------------------------------------------------------- forward

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_matches_reference(rng, shape, dtype):
    T, N, D, H = shape
    args = _inputs(rng, *shape, dtype=dtype)
    hs, h_T, cache = F.gru_forward(*args)
    assert hs.dtype == dtype and hs.shape == (T, N, H)
    expected = gru_ref(*args)
    tol = 1e-13 if dtype == np.float64 else 3e-6
    assert_close(hs, expected, rtol=tol, atol=tol, name="hs")
    assert_close(h_T, expected[-1], rtol=tol, atol=tol, name="h_T")


def test_cache_holds_the_gates_and_the_recurrent_n_term(rng):
    T, N, D, H = 4, 2, 3, 5
    x, h0, w_ih, w_hh, b_ih, b_hh = _inputs(rng, T, N, D, H)
    hs, _, cache = F.gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh)
    h_prev = np.concatenate([h0[None], hs[:-1]])
    gi = np.einsum("tnd,gd->tng", x, w_ih) + b_ih
    gh = np.einsum("tnh,gh->tng", h_prev, w_hh) + b_hh
    r = _sigmoid(gi[..., :H] + gh[..., :H])
    z = _sigmoid(gi[..., H:2 * H] + gh[..., H:2 * H])
    n = np.tanh(gi[..., 2 * H:] + r * gh[..., 2 * H:])
    assert_close(cache.gates, np.concatenate([r, z, n], axis=-1), rtol=1e-13, atol=1e-14, name="gates")
    assert_close(cache.hns, gh[..., 2 * H:], rtol=1e-13, atol=1e-14, name="hns")


def test_extreme_preactivations_saturate_without_nan(rng):
    x, h0, w_ih, w_hh, b_ih, b_hh = _inputs(rng, 3, 2, 3, 4, dtype=np.float32)
    hs, h_T, cache = F.gru_forward(x * 300, h0, w_ih, w_hh, b_ih, b_hh)
    assert_close(hs, gru_ref(x * 300, h0, w_ih, w_hh, b_ih, b_hh), rtol=1e-5, atol=1e-6, name="hs")
    grads = F.gru_backward(np.ones_like(hs), cache, dh_T=np.ones_like(h_T))
    expected = F.gru_backward(*_float64_backward_args(x * 300, h0, w_ih, w_hh, b_ih, b_hh, hs))
    for name, g, e in zip(GRAD_NAMES, grads, expected):
        assert np.isfinite(g).all(), name
        # saturated, yet float64's numbers up to float32's saturation (a sigmoid that rounds to 1 in float32)
        assert_close(g, e, rtol=1e-3, atol=1e-3 * max(1.0, float(np.abs(e).max())), name=name)


def _float64_backward_args(x, h0, w_ih, w_hh, b_ih, b_hh, hs):
    hs64, h_T64, cache64 = F.gru_forward(*(a.astype(np.float64) for a in (x, h0, w_ih, w_hh, b_ih, b_hh)))
    return np.ones_like(hs64), cache64, np.ones_like(h_T64)


# --------------------------------------------------------------------------- backward

def _gru_outputs(*args):
    hs, h_T, _ = F.gru_forward(*args)
    return hs, h_T


@pytest.mark.parametrize("with_dh_T", [False, True], ids=["dh_T=0", "dh_T!=0"])
@pytest.mark.parametrize("shape", [(4, 2, 3, 3), (1, 1, 2, 3), (7, 3, 2, 4)], ids=["T4", "T1N1", "T7"])
def test_backward_matches_finite_differences(rng, shape, with_dh_T):
    T, N, D, H = shape
    args = list(_inputs(rng, T, N, D, H))
    hs, _, cache = F.gru_forward(*args)
    dhs = rng.standard_normal(hs.shape)
    dh_T = rng.standard_normal((N, H)) if with_dh_T else None
    grads = F.gru_backward(dhs, cache, dh_T=dh_T)
    for k, name in enumerate(GRAD_NAMES):
        numeric = numerical_grad(_gru_outputs, args, k, (dhs, dh_T))
        assert_close(grads[k], numeric, rtol=1e-6, atol=1e-8, name=name)


def test_ids_input_equals_one_hot_input(rng):
    T, N, V, H = 5, 3, 6, 4
    _, h0, w_ih, w_hh, b_ih, b_hh = _inputs(rng, T, N, V, H)
    ids = rng.integers(0, V, size=(T, N))
    one_hot = np.eye(V)[ids]
    hs_ids, _, cache_ids = F.gru_forward(ids, h0, w_ih, w_hh, b_ih, b_hh)
    hs_dense, _, cache_dense = F.gru_forward(one_hot, h0, w_ih, w_hh, b_ih, b_hh)
    assert_close(hs_ids, hs_dense, rtol=1e-14, atol=1e-15, name="hs")
    dhs = rng.standard_normal(hs_ids.shape)
    got = F.gru_backward(dhs, cache_ids)
    expected = F.gru_backward(dhs, cache_dense)
    assert got[0] is None  # nothing flows into the ids
    for name, g, e in zip(GRAD_NAMES[1:], got[1:], expected[1:]):
        assert_close(g, e, rtol=1e-12, atol=1e-14, name=name)


def test_backward_float32_matches_float64(rng):
    args = _inputs(rng, 6, 3, 5, 7)
    dhs = rng.standard_normal((6, 3, 7))
    dh_T = rng.standard_normal((3, 7))
    _, _, cache64 = F.gru_forward(*args)
    expected = F.gru_backward(dhs, cache64, dh_T)
    _, _, cache32 = F.gru_forward(*(a.astype(np.float32) for a in args))
    got = F.gru_backward(dhs.astype(np.float32), cache32, dh_T.astype(np.float32))
    for name, g, e in zip(GRAD_NAMES, got, expected):
        assert g.dtype == np.float32
        assert_close(g, e, rtol=1e-4, atol=1e-5, name=name)


@pytest.mark.parametrize("gemm", ["panels", "mkl", "blas"])
@pytest.mark.parametrize("blocks", [2, 3])
def test_row_blocks_match_row_by_row_runs_and_one_block(rng, row_blocks_override, recurrent_gemm, blocks, gemm):
    # the batch rows run in `blocks` blocks (blas.row_blocks), each through the whole time loop; every row is
    # an independent sequence, so each row alone (N = 1) and the whole batch in one block give the same
    # numbers. The layout is forced (blas.ROW_BLOCKS_STATE): left to the environment, OpenBLAS or one numba
    # thread could run one block and the test would compare the single-block path with itself. Each way of the
    # per-step products (panels, MKL's packed API, the BLAS's gemm from numba's threads) runs the blocks.
    import numba

    from numbanets.kernels.cpu.blas import PARALLEL_MIN_ELEMENTS
    from numbanets.kernels.cpu.packed_gemm import loop_row_blocks

    H = 32
    N = max(4, -(-PARALLEL_MIN_ELEMENTS // H))  # 64 rows: 3 blocks are uneven (21, 21, 22)
    args = _inputs(rng, 4, N, 5, H)
    x, h0, w_ih, w_hh, b_ih, b_hh = args
    dhs = rng.standard_normal((4, N, H))
    dh_T = rng.standard_normal((N, H))
    mode = recurrent_gemm(gemm)
    row_blocks_override.set(blocks)
    assert loop_row_blocks(N, H, mode) == blocks  # the count the kernels ask for
    row_blocks_override.clear_reads()
    hs, _, cache = F.gru_forward(*args)
    assert row_blocks_override.reads >= 1, "the forward did not ask for the forced layout (a stale kernel cache?)"
    row_blocks_override.clear_reads()
    grads = F.gru_backward(dhs, cache, dh_T)
    assert row_blocks_override.reads >= 1, "the backward did not ask for the forced layout"
    for n in range(N):
        hs_n, _, cache_n = F.gru_forward(x[:, n:n + 1], h0[n:n + 1], w_ih, w_hh, b_ih, b_hh)
        assert_close(hs[:, n:n + 1], hs_n, rtol=1e-12, atol=1e-13, name=f"hs row {n} ({blocks} blocks)")
        g_n = F.gru_backward(dhs[:, n:n + 1], cache_n, dh_T[n:n + 1])
        assert_close(grads[0][:, n:n + 1], g_n[0], rtol=1e-12, atol=1e-13, name=f"dx row {n}")
        assert_close(grads[1][n:n + 1], g_n[1], rtol=1e-12, atol=1e-13, name=f"dh0 row {n}")
    row_blocks_override.set(1)
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)  # (panels split a large batch over numba's threads even where the BLAS is outside)
        assert loop_row_blocks(N, H, mode) == 1
        hs_1, _, cache_1 = F.gru_forward(*args)
        grads_1 = F.gru_backward(dhs, cache_1, dh_T)
    finally:
        numba.set_num_threads(threads)
    # (a block of rows may take another BLAS kernel than the whole batch: equal to rounding, not bit for bit)
    assert_close(hs, hs_1, rtol=1e-12, atol=1e-13, name="hs, one block")
    for g, g1, name in zip(grads, grads_1, GRAD_NAMES):
        assert_close(g, g1, rtol=1e-12, atol=1e-12, name=f"{name}, one block")


# --------------------------------------------------------------------------- theory

@pytest.mark.parametrize("T", [1, 5, 20])
def test_update_gate_law(rng, T):
    # w_hh = 0, zero input: z = sigmoid(b_iz + b_hz) is the same at every step and n does not depend on h,
    # so dh_{t-1} = z * dh_t exactly and dh_0 = sigmoid(b_z)^T dh_T (b_z = b_iz + b_hz)
    N, D, H = 2, 3, 4
    _, h0, w_ih, _, b_ih, b_hh = _inputs(rng, T, N, D, H)
    x = np.zeros((T, N, D))
    w_hh = np.zeros((3 * H, H))
    hs, h_T, cache = F.gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh)
    dh_T = rng.standard_normal((N, H))
    _, dh0, *_ = F.gru_backward(np.zeros_like(hs), cache, dh_T=dh_T)
    z = _sigmoid(b_ih[H:2 * H] + b_hh[H:2 * H])
    assert_close(dh0, dh_T * z ** T, rtol=1e-13, atol=1e-300, name="dh0")


# --------------------------------------------------------------------------- torch parity

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_torch_gru(rng, torch, dtype):
    T, N, D, H = 6, 3, 5, 4
    x, h0, w_ih, w_hh, b_ih, b_hh = _inputs(rng, T, N, D, H, dtype=dtype)
    dhs = rng.standard_normal((T, N, H)).astype(dtype)
    dh_T = rng.standard_normal((N, H)).astype(dtype)

    tdtype = torch.float64 if dtype == np.float64 else torch.float32
    model = torch.nn.GRU(D, H).to(tdtype)
    with torch.no_grad():
        for name, a in (("weight_ih_l0", w_ih), ("weight_hh_l0", w_hh), ("bias_ih_l0", b_ih), ("bias_hh_l0", b_hh)):
            getattr(model, name).copy_(torch.from_numpy(a))
    xt = torch.from_numpy(x.copy()).requires_grad_()
    h0t = torch.from_numpy(h0.copy()[None]).requires_grad_()
    yt, h_n = model(xt, h0t)
    torch.autograd.backward([yt, h_n], [torch.from_numpy(dhs), torch.from_numpy(dh_T[None])])

    hs, h_T, cache = F.gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh)
    grads = F.gru_backward(dhs, cache, dh_T=dh_T)
    tol = 1e-12 if dtype == np.float64 else 2e-5
    assert_close(hs, yt.detach().numpy(), rtol=tol, atol=tol, name="hs")
    assert_close(h_T, h_n.detach().numpy()[0], rtol=tol, atol=tol, name="h_T")
    theirs = (xt.grad, h0t.grad[0], model.weight_ih_l0.grad, model.weight_hh_l0.grad, model.bias_ih_l0.grad,
              model.bias_hh_l0.grad)
    for name, ours, t in zip(GRAD_NAMES, grads, theirs):
        assert_close(ours, t.numpy(), rtol=tol, atol=tol, name=name)


# --------------------------------------------------------------------------- validation

def test_bad_inputs_raise_clear_errors(rng):
    x, h0, w_ih, w_hh, b_ih, b_hh = _inputs(rng, 3, 2, 4, 5, dtype=np.float32)
    with pytest.raises(ValueError, match="w_ih"):
        F.gru_forward(x[:, :, :3], h0, w_ih, w_hh, b_ih, b_hh)
    with pytest.raises(ValueError, match="w_ih must have 3\\*H rows"):
        F.gru_forward(x, h0, w_ih[:-1], w_hh, b_ih, b_hh)
    with pytest.raises(ValueError, match="h0"):
        F.gru_forward(x, h0[:, :4], w_ih, w_hh, b_ih, b_hh)
    with pytest.raises(ValueError, match="b_ih"):
        F.gru_forward(x, h0, w_ih, w_hh, b_ih[:5], b_hh)
    with pytest.raises(ValueError, match="b_hh"):
        F.gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh[:5])
    with pytest.raises(TypeError, match="dtype"):
        F.gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh.astype(np.float64))
    with pytest.raises(ValueError, match="ids must lie in"):
        F.gru_forward(np.full((3, 2), 4), h0, w_ih, w_hh, b_ih, b_hh)
    hs, _, cache = F.gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh)
    with pytest.raises(ValueError, match="dhs"):
        F.gru_backward(np.zeros((3, 2, 4), np.float32), cache)
    with pytest.raises(ValueError, match="dh_T"):
        F.gru_backward(np.zeros_like(hs), cache, dh_T=np.zeros((2, 4), np.float32))
    with pytest.raises(TypeError, match="cache"):
        F.gru_backward(np.zeros_like(hs), ("lstm",))
