"""Max pooling: max_pool2d and max_pool1d through numbanets.functional.

Forward values and indices against the float64 reference loops on inputs with
distinct values (a random permutation), with overlapping windows (stride <
kernel), padding (counts as -inf) and every padding mode; backward against
central finite differences (distinct values 1 apart, so the +-eps steps never
change which input wins) and against the accumulation rule where windows
overlap; ties and NaN; parity with torch.nn.functional.max_pool2d / max_pool1d
(return_indices=True); the errors bad input gets.
"""

import numpy as np
import pytest

from gradcheck import assert_close, numerical_grad
from reference import max_pool1d_ref, max_pool2d_ref

from numbanets import functional as F

DTYPES = [np.float32, np.float64]
GRAD_TOL = dict(rtol=1e-6, atol=1e-8)

# x (N, C, H, W), kernel_size, stride, padding
POOL2D_CASES = [
    ((2, 3, 6, 6), 2, None, 0),  # the classic 2x2 / 2
    ((1, 2, 7, 5), 3, 2, 1),  # overlapping windows with padding, odd sizes, batch 1
    ((2, 2, 5, 7), (2, 3), (1, 2), (1, 1)),  # pairs, stride < kernel
    ((2, 1, 9, 4), 3, 1, "same"),  # every input is in up to 9 windows
    ((1, 3, 5, 5), 2, 3, "valid"),  # stride > kernel: some inputs in no window
    ((2, 2, 4, 6), (3, 2), 2, (0, 1)),
    ((1, 2, 1, 8), (1, 3), (1, 2), (0, 1)),  # H = 1, as max_pool1d runs
]
CASE_IDS = [f"x{c[0]}-k{c[1]}-s{c[2]}-p{c[3]}".replace(" ", "") for c in POOL2D_CASES]

# x (N, C, L), kernel_size, stride, padding
POOL1D_CASES = [((2, 3, 9), 2, None, 0), ((1, 2, 10), 3, 2, 1), ((2, 1, 7), 4, 1, "same"), ((1, 2, 6), 3, 3, "valid")]


def _distinct(rng, shape, dtype=np.float64):
    """Distinct values 1 apart, in random positions (no ties, finite differences safe)."""
    return (rng.permutation(int(np.prod(shape))).reshape(shape) - np.prod(shape) / 2).astype(dtype)


# ------------------------------------------------------------------ forward --


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", POOL2D_CASES, ids=CASE_IDS)
def test_max_pool2d_matches_reference(rng, case, dtype):
    shape, kernel, stride, padding = case
    x = _distinct(rng, shape, dtype)
    y, idx = F.max_pool2d(x, kernel, stride, padding)
    y_ref, idx_ref = max_pool2d_ref(x, kernel, stride, padding)
    assert y.dtype == dtype and idx.dtype == np.int64 and y.shape == y_ref.shape == idx.shape
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(idx, idx_ref)
    np.testing.assert_array_equal(np.take_along_axis(x.reshape(*shape[:2], -1), idx.reshape(*shape[:2], -1), 2),
                                  y.reshape(*shape[:2], -1))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", POOL1D_CASES)
def test_max_pool1d_matches_reference(rng, case, dtype):
    shape, kernel, stride, padding = case
    x = _distinct(rng, shape, dtype)
    y, idx = F.max_pool1d(x, kernel, stride, padding)
    y_ref, idx_ref = max_pool1d_ref(x, kernel, stride, padding)
    assert y.dtype == dtype and idx.dtype == np.int64
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(idx, idx_ref)


def test_ties_pick_the_first_in_row_major_order():
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 1, 2] = x[0, 0, 2, 1] = 5.0  # both in the window of output (0, 0) below
    y, idx = F.max_pool2d(x, 3, 1)
    assert y[0, 0, 0, 0] == 5.0 and idx[0, 0, 0, 0] == 1 * 4 + 2
    _, idx = F.max_pool2d(np.full((1, 1, 3, 3), -2.0), 3)  # all equal: the first tap
    assert idx[0, 0, 0, 0] == 0
    _, idx = F.max_pool2d(np.full((1, 1, 3, 3), -np.inf), 3, padding=1)  # -inf everywhere: a real tap
    assert np.all((idx >= 0) & (idx < 9))


def test_nan_propagates():
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    x[0, 0, 0, 1] = np.nan
    y, idx = F.max_pool2d(x, 2)
    assert np.isnan(y[0, 0, 0, 0]) and idx[0, 0, 0, 0] == 1
    assert y[0, 0, 1, 1] == 15.0


@pytest.mark.parametrize("dtype", DTYPES)
def test_2x2_stride_2_windows_with_ties_and_odd_sizes(rng, dtype):
    # the 2x2 / stride 2 / no padding fast path: many ties, an odd H and W (last row / column unused)
    x = rng.integers(-1, 2, size=(2, 3, 7, 9)).astype(dtype)
    y, idx = F.max_pool2d(x, 2)
    y_ref, idx_ref = max_pool2d_ref(x, 2)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(idx, idx_ref)


@pytest.mark.parametrize("tap", [0, 1, 4, 5])
def test_nan_in_any_tap_of_a_2x2_window_wins(tap):
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    x.reshape(-1)[tap] = np.nan
    y, idx = F.max_pool2d(x, 2)
    assert np.isnan(y[0, 0, 0, 0]) and idx[0, 0, 0, 0] == tap
    x.reshape(-1)[5] = np.nan  # two NaNs: the later tap, as the general loop and PyTorch's rule give
    _, idx = F.max_pool2d(x, 2)
    assert idx[0, 0, 0, 0] == 5


# ----------------------------------------------------------------- backward --


@pytest.mark.parametrize("case", POOL2D_CASES, ids=CASE_IDS)
def test_max_pool2d_backward_finite_differences(rng, case):
    shape, kernel, stride, padding = case
    x = _distinct(rng, shape)
    y, idx = F.max_pool2d(x, kernel, stride, padding)
    dout = rng.standard_normal(y.shape)
    dx = F.max_pool2d_backward(dout, idx, x.shape)
    assert dx.shape == x.shape and dx.dtype == np.float64
    num = numerical_grad(lambda a: F.max_pool2d(a, kernel, stride, padding)[0], (x,), 0, dout)
    assert_close(dx, num, **GRAD_TOL, name="dx")


@pytest.mark.parametrize("case", POOL1D_CASES)
def test_max_pool1d_backward_finite_differences(rng, case):
    shape, kernel, stride, padding = case
    x = _distinct(rng, shape)
    y, idx = F.max_pool1d(x, kernel, stride, padding)
    dout = rng.standard_normal(y.shape)
    dx = F.max_pool1d_backward(dout, idx, x.shape)
    assert dx.shape == x.shape
    num = numerical_grad(lambda a: F.max_pool1d(a, kernel, stride, padding)[0], (x,), 0, dout)
    assert_close(dx, num, **GRAD_TOL, name="dx")


@pytest.mark.parametrize("dtype", DTYPES)
def test_overlapping_windows_accumulate(dtype):
    """The global maximum wins every 3x3 window it is in (stride 1): its gradient is their sum."""
    x = np.arange(25, dtype=dtype).reshape(1, 1, 5, 5)
    x[0, 0, 2, 2] = 100.0
    y, idx = F.max_pool2d(x, 3, 1)
    assert np.all(idx == 12)
    dout = np.arange(1, 10, dtype=dtype).reshape(1, 1, 3, 3)
    dx = F.max_pool2d_backward(dout, idx, x.shape)
    assert dx.dtype == dtype and dx[0, 0, 2, 2] == 45.0 and np.count_nonzero(dx) == 1


def test_backward_returns_a_new_array(rng):
    x = _distinct(rng, (1, 2, 4, 4))
    y, idx = F.max_pool2d(x, 2)
    dx = F.max_pool2d_backward(y, idx, x.shape)
    assert not np.shares_memory(dx, x) and not np.shares_memory(dx, y)


# -------------------------------------------------------------------- torch --


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", [POOL2D_CASES[i] for i in (0, 1, 2, 5)], ids=[CASE_IDS[i] for i in (0, 1, 2, 5)])
def test_max_pool2d_matches_torch(rng, torch, case, dtype):
    shape, kernel, stride, padding = case
    x = _distinct(rng, shape, dtype)
    xt = torch.tensor(x, requires_grad=True)
    yt, it = torch.nn.functional.max_pool2d(xt, kernel, stride, padding, return_indices=True)
    y, idx = F.max_pool2d(x, kernel, stride, padding)
    np.testing.assert_array_equal(y, yt.detach().numpy())
    np.testing.assert_array_equal(idx, it.numpy())
    dout = rng.standard_normal(y.shape).astype(dtype)
    yt.backward(torch.tensor(dout))
    np.testing.assert_array_equal(F.max_pool2d_backward(dout, idx, x.shape), xt.grad.numpy())


def test_max_pool1d_matches_torch(rng, torch):
    x = _distinct(rng, (2, 3, 11), np.float32)
    xt = torch.tensor(x, requires_grad=True)
    yt, it = torch.nn.functional.max_pool1d(xt, 3, 2, 1, return_indices=True)
    y, idx = F.max_pool1d(x, 3, 2, 1)
    np.testing.assert_array_equal(y, yt.detach().numpy())
    np.testing.assert_array_equal(idx, it.numpy())
    dout = rng.standard_normal(y.shape).astype(np.float32)
    yt.backward(torch.tensor(dout))
    np.testing.assert_array_equal(F.max_pool1d_backward(dout, idx, x.shape), xt.grad.numpy())


# ------------------------------------------------------------------- errors --


def test_pool_errors_name_the_problem(rng):
    x = _distinct(rng, (1, 2, 4, 4))
    with pytest.raises(ValueError, match=r"kernel size 5 is larger than the padded input \(4 \+ 0 \+ 0 = 4\)"):
        F.max_pool2d(x, 5)
    with pytest.raises(ValueError, match="stride must be >= 1"):
        F.max_pool2d(x, 2, 0)
    with pytest.raises(ValueError, match="kernel_size must be >= 1"):
        F.max_pool2d(x, 0)
    with pytest.raises(ValueError, match="pooling padding must be at most kernel_size - 1 = 1, got 2"):
        F.max_pool2d(x, 2, 1, 2)
    with pytest.raises(ValueError, match=r"padding must be an int, a pair of ints or one of"):
        F.max_pool2d(x, 2, padding="half")
    with pytest.raises(TypeError, match="x must be float32 or float64, got int64"):
        F.max_pool2d(x.astype(np.int64), 2)
    with pytest.raises(ValueError, match="x must be 4-D"):
        F.max_pool2d(x[0], 2)
    y, idx = F.max_pool2d(x, 2)
    with pytest.raises(TypeError, match="indices must be int64"):
        F.max_pool2d_backward(y, idx.astype(np.int32), x.shape)
    with pytest.raises(ValueError, match="indices must have dy's shape"):
        F.max_pool2d_backward(y, idx[..., :1], x.shape)
    with pytest.raises(ValueError, match=r"indices must lie in 0..H\*W-1 = 3"):
        F.max_pool2d_backward(y, idx, (1, 2, 2, 2))  # x_shape too small for these indices
    with pytest.raises(ValueError, match="kernel size 4 is larger than the padded input"):
        F.max_pool1d(_distinct(rng, (1, 1, 3)), 4)
