"""Convolution: conv2d and conv1d through numbanets.functional.

Forward against the float64 reference loops (float32 and float64, odd sizes,
strides 1-3, every padding mode, groups, batch 1, tall-thin and H = 1 shapes);
every backward (dx, dw, db) against central finite differences of
L = sum(y * dout); the threaded and the single-thread kernel paths against each
other; parity with torch.nn.functional where torch is importable; the errors
bad input gets.
"""

import numba
import numpy as np
import pytest

from gradcheck import assert_close, numerical_grad
from reference import conv1d_ref, conv2d_ref

from numbanets import functional as F
from numbanets.kernels.cpu import blas, conv

DTYPES = [np.float32, np.float64]
GRAD_TOL = dict(rtol=1e-6, atol=1e-8)

# x (N, C, H, W), (F, KH, KW), stride, padding, groups
CONV2D_CASES = [
    ((2, 3, 7, 6), (4, 3, 3), 1, 1, 1),
    ((1, 2, 5, 8), (3, 2, 3), (2, 1), (1, 0), 1),  # batch 1, stride and padding pairs
    ((2, 4, 9, 7), (4, 3, 2), 3, "same", 2),  # groups 2, "same" at stride 3
    ((3, 3, 6, 5), (2, 4, 4), 2, "same", 1),  # even kernel: "same" pads one more after
    ((3, 2, 5, 5), (3, 3, 3), 1, "valid", 1),
    ((2, 2, 4, 5), (2, 3, 2), 2, "full", 2),
    ((2, 3, 8, 8), (4, 5, 5), 1, 2, 1),  # stride 1 "same": the contiguous im2col path
    ((2, 3, 11, 3), (5, 5, 3), 1, 2, 1),  # tall and thin
    ((2, 1, 1, 9), (2, 1, 3), 1, "same", 1),  # H = KH = 1, as conv1d runs
    ((2, 6, 5, 5), (6, 1, 1), 1, 0, 3),  # 1x1 kernel, groups 3
    ((2, 2, 7, 6), (3, 3, 3), 3, 1, 1),  # stride 3
    ((2, 4, 5, 6), (6, 3, 3), 1, 1, 2),  # groups 2 at stride 1 (the forward's row shifts per group)
    # rows of whole register tiles (conv_choice.DIRECT_ROW_MULTIPLE = 16): conv_direct's kernels
    ((2, 3, 4, 16), (7, 3, 3), 1, 1, 1),  # forward and dx direct (7 filters: a 6-row tile and a 1-row tile)
    ((1, 2, 3, 32), (3, 5, 5), 1, 2, 1),  # 5x5 "same": both direct, two tiles per row
    ((2, 2, 4, 18), (3, 3, 3), 1, "valid", 1),  # output rows of 16: forward direct, dx (rows of 18) by im2col
    ((2, 2, 3, 16), (2, 3, 3), 1, "full", 1),  # input rows of 16: dx direct, forward (rows of 18) by im2col
    ((1, 2, 3, 16), (2, 2, 3), 1, (0, 1), 1),  # no padding above and below, one column each side
]
CASE_IDS = [f"x{c[0]}-k{c[1]}-s{c[2]}-p{c[3]}-g{c[4]}".replace(" ", "") for c in CONV2D_CASES]

# x (N, C, L), (F, K), stride, padding, groups
CONV1D_CASES = [
    ((2, 3, 9), (4, 3), 1, 1, 1),
    ((1, 2, 8), (3, 4), 2, "same", 1),
    ((2, 4, 7), (4, 3), 3, "full", 2),
    ((3, 2, 6), (2, 5), 1, "valid", 2),
]


def _randn(rng, shape, dtype=np.float64):
    return rng.standard_normal(shape).astype(dtype)


def _conv2d_inputs(rng, case, dtype=np.float64):
    xs, (f, kh, kw), stride, padding, groups = case
    x = _randn(rng, xs, dtype)
    w = _randn(rng, (f, xs[1] // groups, kh, kw), dtype)
    b = _randn(rng, (f,), dtype)
    return x, w, b, dict(stride=stride, padding=padding, groups=groups)


def _tol(dtype, expected):
    """rtol per dtype, and an absolute floor scaled to the result (sums of many terms cancel)."""
    scale = max(1.0, float(np.max(np.abs(expected)))) if np.size(expected) else 1.0
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    return dict(rtol=rtol, atol=rtol * scale)


# ------------------------------------------------------------------- conv2d --


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONV2D_CASES, ids=CASE_IDS)
def test_conv2d_forward_matches_reference(rng, case, dtype):
    x, w, b, kw = _conv2d_inputs(rng, case, dtype)
    y = F.conv2d(x, w, b, **kw)
    ref = conv2d_ref(x, w, b, **kw)
    assert y.dtype == dtype and y.shape == ref.shape
    assert_close(y, ref, **_tol(dtype, ref), name="y")


@pytest.mark.parametrize("case", CONV2D_CASES, ids=CASE_IDS)
def test_conv2d_backward_finite_differences(rng, case):
    x, w, b, kw = _conv2d_inputs(rng, case)
    dout = _randn(rng, F.conv2d(x, w, b, **kw).shape)
    dx, dw, db = F.conv2d_backward(dout, x, w, **kw)
    assert (dx.shape, dw.shape, db.shape) == (x.shape, w.shape, b.shape)

    def fn(x_, w_, b_):
        return F.conv2d(x_, w_, b_, **kw)

    for i, (grad, name) in enumerate(((dx, "dx"), (dw, "dw"), (db, "db"))):
        assert_close(grad, numerical_grad(fn, (x, w, b), i, dout), **GRAD_TOL, name=name)


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv2d_backward_float32_matches_float64(rng, dtype):
    x, w, b, kw = _conv2d_inputs(rng, ((3, 4, 6, 7), (4, 3, 3), 1, "same", 2), dtype)
    dout = _randn(rng, (3, 4, 6, 7), dtype)
    grads = F.conv2d_backward(dout, x, w, **kw)
    grads64 = F.conv2d_backward(*(a.astype(np.float64) for a in (dout, x, w)), **kw)
    for g, g64, name in zip(grads, grads64, ("dx", "dw", "db")):
        assert g.dtype == dtype
        assert_close(g, g64, **_tol(dtype, g64), name=name)


def test_conv2d_without_bias_and_non_contiguous_input(rng):
    x = _randn(rng, (2, 3, 9, 12))[:, :, ::2, 1::2]  # (2, 3, 5, 6), strided view
    w = _randn(rng, (3, 4, 3, 3)).transpose(1, 0, 2, 3)  # (4, 3, 3, 3), not C-contiguous
    y = F.conv2d(x, w, padding=1)
    ref = conv2d_ref(x, w, None, padding=1)
    assert_close(y, ref, **_tol(np.float64, ref), name="y")
    dout = _randn(rng, y.shape)[..., ::-1]  # negative strides
    dx, dw, db = F.conv2d_backward(dout, x, w, padding=1)
    dx_c, dw_c, db_c = F.conv2d_backward(np.ascontiguousarray(dout), np.ascontiguousarray(x), np.ascontiguousarray(w),
                                         padding=1)
    np.testing.assert_array_equal(dx, dx_c)
    np.testing.assert_array_equal(dw, dw_c)
    np.testing.assert_array_equal(db, db_c)


def test_conv2d_backward_returns_new_arrays(rng):
    x, w, b, kw = _conv2d_inputs(rng, CONV2D_CASES[0])
    dout = _randn(rng, F.conv2d(x, w, b, **kw).shape)
    for g in F.conv2d_backward(dout, x, w, **kw):
        assert not any(np.shares_memory(g, a) for a in (x, w, dout))


@pytest.mark.parametrize("dtype", DTYPES)
def test_threaded_and_single_thread_paths_agree(rng, dtype):
    """N = 5 samples: split over the threads (BLAS on one thread) or one plain loop."""
    x, w, b, kw = _conv2d_inputs(rng, ((5, 4, 6, 5), (6, 3, 3), 1, 1, 2), dtype)
    dout = _randn(rng, (5, 6, 6, 5), dtype)
    before = numba.get_num_threads()
    blas_before = blas.threads()
    try:
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        y_par, grads_par = F.conv2d(x, w, b, **kw), F.conv2d_backward(dout, x, w, **kw)
        numba.set_num_threads(1)
        y_one, grads_one = F.conv2d(x, w, b, **kw), F.conv2d_backward(dout, x, w, **kw)
    finally:
        numba.set_num_threads(before)
    if blas_before is not None:
        assert blas.threads() == blas_before, "the BLAS thread count must be restored"
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-13, atol=1e-13)
    assert_close(y_par, y_one, **tol, name="y")
    for g_par, g_one, name in zip(grads_par, grads_one, ("dx", "dw", "db")):
        assert_close(g_par, g_one, **tol, name=name)


@pytest.mark.parametrize("how", ["numba", "python"])
@pytest.mark.parametrize("columns", [1, 64, 256])
def test_sample_blocks_and_shared_gemms_agree_with_one_plain_loop(rng, monkeypatch, how, columns):
    """Blocks on numba's pool or on Python threads, and 1, 2 or all of a block's samples per GEMM
    (COLUMNS_PER_GEMM 1, 64, 256 with 30 output pixels: chunks end inside and at the ends of the blocks),
    against one plain loop of one sample per GEMM; then against the float64 reference."""
    x, w, b, kw = _conv2d_inputs(rng, ((7, 4, 6, 5), (6, 3, 3), 1, 1, 1))
    dout = _randn(rng, (7, 6, 6, 5))
    monkeypatch.setattr(conv, "COLUMNS_PER_GEMM", 1)
    monkeypatch.setattr(conv, "_sample_threads", lambda n: (1, "loop"))
    y_one, grads_one = F.conv2d(x, w, b, **kw), F.conv2d_backward(dout, x, w, **kw)
    monkeypatch.setattr(conv, "COLUMNS_PER_GEMM", columns)
    monkeypatch.setattr(conv, "_sample_threads", lambda n: (2, how))
    y, grads = F.conv2d(x, w, b, **kw), F.conv2d_backward(dout, x, w, **kw)
    assert_close(y, y_one, rtol=1e-13, atol=1e-13, name="y")
    for g, g_one, name in zip(grads, grads_one, ("dx", "dw", "db")):
        assert_close(g, g_one, rtol=1e-13, atol=1e-13, name=name)
    ref = conv2d_ref(x, w, b, **kw)
    assert_close(y, ref, **_tol(np.float64, ref), name="y vs reference")


@pytest.mark.parametrize("case", CONV2D_CASES, ids=CASE_IDS)
def test_one_sample_per_gemm_row_shifted_taps_and_shared_gemms_match(rng, monkeypatch, case):
    """The forward pass three ways: one sample per GEMM with the row-shifted taps (im2col over the kernel's
    columns only, one GEMM per kernel row; stride 1 along the rows), one sample per GEMM of the full im2col,
    and every sample in one GEMM (one block, so that a batch of 2 is not two blocks of one); each against the
    float64 reference. The backward pass, one sample per GEMM against all in one (the finite-difference test
    checks the default path)."""
    x, w, b, kw = _conv2d_inputs(rng, case)
    y_ref = conv2d_ref(x, w, b, **kw)
    dout = _randn(rng, y_ref.shape)
    monkeypatch.setattr(conv, "_sample_threads", lambda n: (1, "loop"))
    grads = {}
    for columns, min_k in ((1, 1), (1, 10**9), (10**6, 1)):
        monkeypatch.setattr(conv, "COLUMNS_PER_GEMM", columns)
        monkeypatch.setattr(conv, "ROW_SHIFT_MIN_K", min_k)  # 1: these small kernels take the row shifts too
        assert_close(F.conv2d(x, w, b, **kw), y_ref, **_tol(np.float64, y_ref), name=f"y ({columns}, {min_k})")
        grads[columns] = F.conv2d_backward(dout, x, w, **kw)
    for g_one, g_shared, name in zip(grads[1], grads[10**6], ("dx", "dw", "db")):
        assert_close(g_one, g_shared, **_tol(np.float64, g_shared), name=name)


# ------------------------------------------------------------------- conv1d --


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONV1D_CASES)
def test_conv1d_forward_matches_reference(rng, case, dtype):
    xs, (f, k), stride, padding, groups = case
    x, w, b = _randn(rng, xs, dtype), _randn(rng, (f, xs[1] // groups, k), dtype), _randn(rng, (f,), dtype)
    y = F.conv1d(x, w, b, stride=stride, padding=padding, groups=groups)
    ref = conv1d_ref(x, w, b, stride=stride, padding=padding, groups=groups)
    assert y.dtype == dtype and y.shape == ref.shape
    assert_close(y, ref, **_tol(dtype, ref), name="y")


@pytest.mark.parametrize("case", CONV1D_CASES)
def test_conv1d_backward_finite_differences(rng, case):
    xs, (f, k), stride, padding, groups = case
    x, w, b = _randn(rng, xs), _randn(rng, (f, xs[1] // groups, k)), _randn(rng, (f,))
    kw = dict(stride=stride, padding=padding, groups=groups)
    dout = _randn(rng, F.conv1d(x, w, b, **kw).shape)
    dx, dw, db = F.conv1d_backward(dout, x, w, **kw)
    assert (dx.shape, dw.shape, db.shape) == (x.shape, w.shape, b.shape)

    def fn(x_, w_, b_):
        return F.conv1d(x_, w_, b_, **kw)

    for i, (grad, name) in enumerate(((dx, "dx"), (dw, "dw"), (db, "db"))):
        assert_close(grad, numerical_grad(fn, (x, w, b), i, dout), **GRAD_TOL, name=name)


# -------------------------------------------------------------------- torch --


def _torch_conv(torch, x, w, b, stride, pad_before, pad_after, groups):
    """torch's conv on an explicitly padded input (covers the asymmetric "same" padding), with gradients."""
    nd = x.ndim - 2
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    pads = []
    for before, after in reversed(list(zip(pad_before, pad_after))):
        pads += [before, after]
    conv = torch.nn.functional.conv2d if nd == 2 else torch.nn.functional.conv1d
    y = conv(torch.nn.functional.pad(xt, pads), wt, bt, stride=stride, groups=groups)
    return xt, wt, bt, y


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", [CONV2D_CASES[0], CONV2D_CASES[2], CONV2D_CASES[3], CONV2D_CASES[7]],
                         ids=[CASE_IDS[i] for i in (0, 2, 3, 7)])
def test_conv2d_matches_torch(rng, torch, case, dtype):
    from numbanets import shapes

    x, w, b, kw = _conv2d_inputs(rng, case, dtype)
    strides = shapes.as_pair(kw["stride"], "stride")
    pad = kw["padding"]
    before, after = shapes.resolve_padding(pad, x.shape[2:], w.shape[2:], strides)
    xt, wt, bt, yt = _torch_conv(torch, x, w, b, strides, before, after, kw["groups"])
    y = F.conv2d(x, w, b, **kw)
    assert_close(y, yt.detach().numpy(), **_tol(dtype, y), name="y")
    dout = _randn(rng, y.shape, dtype)
    yt.backward(torch.tensor(dout))
    for g, gt, name in zip(F.conv2d_backward(dout, x, w, **kw), (xt.grad, wt.grad, bt.grad), ("dx", "dw", "db")):
        assert_close(g, gt.numpy(), **_tol(dtype, gt.numpy()), name=name)


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv1d_matches_torch(rng, torch, dtype):
    x, w, b = _randn(rng, (3, 4, 11), dtype), _randn(rng, (6, 2, 4), dtype), _randn(rng, (6,), dtype)
    kw = dict(stride=2, padding="same", groups=2)
    # "same" with K = 4 at stride 2: out 6, total padding 3, the odd one after
    xt, wt, bt, yt = _torch_conv(torch, x, w, b, (2,), (1,), (2,), 2)
    y = F.conv1d(x, w, b, **kw)
    assert_close(y, yt.detach().numpy(), **_tol(dtype, y), name="y")
    dout = _randn(rng, y.shape, dtype)
    yt.backward(torch.tensor(dout))
    for g, gt, name in zip(F.conv1d_backward(dout, x, w, **kw), (xt.grad, wt.grad, bt.grad), ("dx", "dw", "db")):
        assert_close(g, gt.numpy(), **_tol(dtype, gt.numpy()), name=name)


# ------------------------------------------------------------------- errors --


def test_conv_errors_name_the_problem(rng):
    x, w = _randn(rng, (2, 3, 4, 4)), _randn(rng, (2, 3, 3, 3))
    with pytest.raises(ValueError, match=r"kernel size 5 is larger than the padded input \(4 \+ 0 \+ 0 = 4\)"):
        F.conv2d(x, _randn(rng, (2, 3, 5, 5)))
    with pytest.raises(ValueError, match="stride must be >= 1"):
        F.conv2d(x, w, stride=0)
    with pytest.raises(ValueError, match="stride must be >= 1"):
        F.conv2d(x, w, stride=(1, 0))
    with pytest.raises(ValueError, match=r"padding must be an int, a pair of ints or one of 'valid', 'same', 'full'"):
        F.conv2d(x, w, padding="half")
    with pytest.raises(ValueError, match="padding must be >= 0"):
        F.conv2d(x, w, padding=-1)
    with pytest.raises(ValueError, match=r"w must have C/groups = 3/1 = 3 input channels \(w.shape\[1\]\), got 2"):
        F.conv2d(x, _randn(rng, (2, 2, 3, 3)))
    with pytest.raises(ValueError, match="input channels C=3 must be divisible by groups=2"):
        F.conv2d(x, _randn(rng, (2, 1, 3, 3)), groups=2)
    with pytest.raises(ValueError, match="feature maps F=3 must be divisible by groups=2"):
        F.conv2d(_randn(rng, (2, 4, 4, 4)), _randn(rng, (3, 2, 3, 3)), groups=2)
    with pytest.raises(ValueError, match=r"b must have shape \(2,\)"):
        F.conv2d(x, w, _randn(rng, (3,)))
    with pytest.raises(ValueError, match="x must be 4-D"):
        F.conv2d(x[0], w)
    with pytest.raises(TypeError, match="x must be float32 or float64, got int64"):
        F.conv2d(x.astype(np.int64), w)
    with pytest.raises(TypeError, match="one dtype"):
        F.conv2d(x.astype(np.float32), w)
    with pytest.raises(ValueError, match=r"dy must have shape \(2, 2, 2, 2\)"):
        F.conv2d_backward(_randn(rng, (2, 2, 3, 3)), x, w)
    with pytest.raises(ValueError, match=r"kernel size 4 is larger than the padded input"):
        F.conv1d(_randn(rng, (1, 1, 3)), _randn(rng, (1, 1, 4)))
    with pytest.raises(ValueError, match="stride must be >= 1"):
        F.conv1d(_randn(rng, (1, 1, 3)), _randn(rng, (1, 1, 2)), stride=0)
