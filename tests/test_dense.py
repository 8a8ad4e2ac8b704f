"""Dense ops: linear, activations, softmax, fused softmax cross-entropy, gradient clipping
and the fused optimizer kernels.

Forward passes against the float64 references (float32 and float64), every backward
against central finite differences (float64), numerical stability, in-place semantics,
parity with torch where it is importable, and the errors bad input gets.
"""

import warnings

import numpy as np
import pytest

from gradcheck import assert_close, numerical_grad
from reference import (
    activation_ref,
    adagrad_ref,
    adam_ref,
    clip_grad_norm_ref,
    linear_ref,
    rmsprop_ref,
    sgd_ref,
    softmax_cross_entropy_ref,
    softmax_ref,
)

from numbanets import functional as F
from numbanets.kernels.cpu import activations as cpu_act
from numbanets.kernels.cpu import optim as cpu_optim

DTYPES = [np.float32, np.float64]
ACTS = ["identity", "tanh", "sigmoid", "relu"]
# forward tolerance per dtype (relative, with an absolute floor for values near 0)
TOL = {np.float32: dict(rtol=2e-6, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-14)}
GRAD_TOL = dict(rtol=1e-6, atol=1e-8)


def _randn(rng, shape, dtype=np.float64, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(dtype)


def _away_from_zero(rng, shape, margin=0.1):
    """Normal values pushed out of (-margin, margin): finite differences never cross the relu kink."""
    x = rng.standard_normal(shape)
    return np.where(x >= 0, x + margin, x - margin)


# ------------------------------------------------------------------ constants --


def test_activation_codes_are_the_contract():
    assert (cpu_act.IDENTITY, cpu_act.TANH, cpu_act.SIGMOID, cpu_act.RELU) == (0, 1, 2, 3)
    assert cpu_act.ACTIVATION_CODES == {"identity": 0, "tanh": 1, "sigmoid": 2, "relu": 3}
    assert cpu_act.ACTIVATION_CODES == F.ACTIVATION_CODES


@pytest.mark.parametrize("name", ACTS)
def test_scalar_helpers_match_reference(name):
    code = cpu_act.ACTIVATION_CODES[name]
    for v in (-1000.0, -3.5, -0.25, 0.0, 0.25, 3.5, 1000.0):
        y = cpu_act.apply(v, code)
        expected = float(activation_ref(np.array([v]), name)[0])
        assert y == pytest.approx(expected, rel=1e-15, abs=0.0)
        dy = cpu_act.derivative_from_output(y, code)
        expected_d = {"identity": 1.0, "tanh": 1.0 - y * y, "sigmoid": y * (1.0 - y), "relu": float(y > 0)}[name]
        assert dy == pytest.approx(expected_d, rel=1e-15, abs=0.0)


# --------------------------------------------------------------------- linear --


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, d, o", [(5, 7, 3), (1, 1, 1), (8, 16, 10)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_forward_matches_reference(rng, dtype, n, d, o, bias):
    x, w = _randn(rng, (n, d), dtype), _randn(rng, (o, d), dtype)
    b = _randn(rng, (o,), dtype) if bias else None
    y = F.linear(x, w, b)
    assert y.dtype == dtype and y.shape == (n, o)
    assert_close(y, linear_ref(x, w, b), **TOL[dtype], name="y")


def test_linear_forward_non_contiguous_input(rng):
    x = _randn(rng, (6, 10))[:, ::2]
    w = _randn(rng, (5, 4)).T  # (O, D) = (4, 5), Fortran-ordered
    b = _randn(rng, (4,))
    assert_close(F.linear(x, w, b), linear_ref(x, w, b), rtol=1e-12, atol=1e-14, name="y")


@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_backward_matches_closed_form(rng, dtype):
    x, w, dy = _randn(rng, (6, 5), dtype), _randn(rng, (4, 5), dtype), _randn(rng, (6, 4), dtype)
    dx, dw, db = F.linear_backward(dy, x, w)
    assert (dx.dtype, dw.dtype, db.dtype) == (dtype, dtype, dtype)
    assert (dx.shape, dw.shape, db.shape) == ((6, 5), (4, 5), (4,))
    x64, w64, dy64 = (a.astype(np.float64) for a in (x, w, dy))
    tol = TOL[dtype] if dtype == np.float64 else dict(rtol=1e-5, atol=1e-5)
    assert_close(dx, dy64 @ w64, **tol, name="dx")
    assert_close(dw, dy64.T @ x64, **tol, name="dw")
    assert_close(db, dy64.sum(axis=0), **tol, name="db")


def test_linear_backward_finite_differences(rng):
    x, w, b = _randn(rng, (4, 5)), _randn(rng, (3, 5)), _randn(rng, (3,))
    dout = _randn(rng, (4, 3))
    dx, dw, db = F.linear_backward(dout, x, w)
    args = (x, w, b)
    assert_close(dx, numerical_grad(F.linear, args, 0, dout), **GRAD_TOL, name="dx")
    assert_close(dw, numerical_grad(F.linear, args, 1, dout), **GRAD_TOL, name="dw")
    assert_close(db, numerical_grad(F.linear, args, 2, dout), **GRAD_TOL, name="db")


def test_linear_backward_returns_new_arrays(rng):
    x, w, dy = _randn(rng, (3, 4)), _randn(rng, (2, 4)), _randn(rng, (3, 2))
    for g in F.linear_backward(dy, x, w):
        assert not np.shares_memory(g, x) and not np.shares_memory(g, w) and not np.shares_memory(g, dy)


# ---------------------------------------------------------------- activations --


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ACTS)
@pytest.mark.parametrize("shape", [(7,), (3, 4), (2, 3, 4), (2, 1, 3, 2)])
def test_activation_forward_matches_reference(rng, dtype, name, shape):
    x = _randn(rng, shape, dtype, scale=3.0)
    y = F.activation(x, name)
    assert y.dtype == dtype and y.shape == shape
    assert_close(y, activation_ref(x, name), **TOL[dtype], name=f"{name}(x)")


@pytest.mark.parametrize("name", ACTS)
def test_activation_name_is_case_insensitive(rng, name):
    x = _randn(rng, (3, 3))
    np.testing.assert_array_equal(F.activation(x, name.upper()), F.activation(x, name))


@pytest.mark.parametrize("name", ACTS)
@pytest.mark.parametrize("shape", [(6,), (2, 3, 2)])
def test_activation_backward_finite_differences(rng, name, shape):
    x = _away_from_zero(rng, shape)
    dout = _randn(rng, shape)
    y = F.activation(x, name)
    dx = F.activation_backward(dout, y, name)
    assert dx.shape == shape and dx.dtype == np.float64
    num = numerical_grad(lambda a: F.activation(a, name), (x,), 0, dout)
    assert_close(dx, num, **GRAD_TOL, name=f"d{name}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ACTS)
def test_activation_backward_from_output(rng, dtype, name):
    """dx = dy * phi'(from y): tanh 1-y^2, sigmoid y(1-y), relu (y>0), identity 1."""
    y = F.activation(_randn(rng, (4, 5), dtype), name)
    dy = _randn(rng, (4, 5), dtype)
    y64, dy64 = y.astype(np.float64), dy.astype(np.float64)
    deriv = {"identity": np.ones_like(y64), "tanh": 1 - y64**2, "sigmoid": y64 * (1 - y64), "relu": (y64 > 0) * 1.0}
    dx = F.activation_backward(dy, y, name)
    assert dx.dtype == dtype
    assert_close(dx, dy64 * deriv[name], **TOL[dtype], name="dx")


def test_sigmoid_is_stable_for_huge_inputs():
    for dtype in DTYPES:
        x = np.array([-1000.0, -100.0, 0.0, 100.0, 1000.0, -1e30, 1e30], dtype=dtype)
        with warnings.catch_warnings(), np.errstate(all="raise"):
            warnings.simplefilter("error")
            y = F.activation(x, "sigmoid")
            dx = F.activation_backward(np.ones_like(x), y, "sigmoid")
        assert y[0] == 0.0 and y[4] == 1.0 and y[5] == 0.0 and y[6] == 1.0
        assert y[2] == 0.5
        assert np.all(np.isfinite(y)) and np.all(np.isfinite(dx))
        assert dx[0] == 0.0 and dx[4] == 0.0


def test_tanh_saturates_without_nan():
    x = np.array([-1e4, 1e4, -50.0, 50.0])
    y = F.activation(x, "tanh")
    np.testing.assert_array_equal(y, [-1.0, 1.0, -1.0, 1.0])


# -------------------------------------------------------------------- softmax --


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, k", [(5, 7), (1, 1), (3, 2)])
def test_softmax_matches_reference(rng, dtype, n, k):
    x = _randn(rng, (n, k), dtype, scale=4.0)
    y = F.softmax(x)
    assert y.dtype == dtype and y.shape == (n, k)
    assert_close(y, softmax_ref(x), **TOL[dtype], name="softmax")
    assert_close(y.astype(np.float64).sum(axis=1), np.ones(n), rtol=1e-6, name="row sums")


def test_softmax_huge_logits():
    x = np.array([[1e4, 0.0, -1e4], [-1e4, -1e4, -1e4]], dtype=np.float32)
    y = F.softmax(x)
    assert np.all(np.isfinite(y))
    assert_close(y, [[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3]], rtol=1e-6, name="softmax")


# --------------------------------------------------------- softmax cross-entropy --


def _onehot(targets, k):
    out = np.zeros((targets.shape[0], k))
    out[np.arange(targets.shape[0]), targets] = 1.0
    return out


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, k", [(6, 5), (1, 3), (4, 1)])
def test_softmax_cross_entropy_matches_reference(rng, dtype, n, k):
    logits = _randn(rng, (n, k), dtype, scale=3.0)
    targets = rng.integers(0, k, n)
    loss, dlogits = F.softmax_cross_entropy(logits, targets)
    assert isinstance(loss, float)
    assert dlogits.dtype == dtype and dlogits.shape == (n, k)
    # the loss accumulates in float64 whatever the logits' dtype
    assert loss == pytest.approx(softmax_cross_entropy_ref(logits, targets), rel=1e-12, abs=1e-14)
    expected = (softmax_ref(logits) - _onehot(targets, k)) / n
    assert_close(dlogits, expected, **TOL[dtype], name="dlogits")


@pytest.mark.parametrize("tdtype", [np.int64, np.int32, np.uint8])
def test_softmax_cross_entropy_accepts_integer_targets(rng, tdtype):
    logits = _randn(rng, (4, 3))
    targets = np.array([0, 2, 1, 2], dtype=tdtype)
    loss, _ = F.softmax_cross_entropy(logits, targets)
    assert loss == pytest.approx(softmax_cross_entropy_ref(logits, targets), rel=1e-12)


def test_softmax_cross_entropy_gradient_finite_differences(rng):
    logits = _randn(rng, (4, 5), scale=2.0)
    targets = rng.integers(0, 5, 4)
    _, dlogits = F.softmax_cross_entropy(logits, targets)
    num = numerical_grad(lambda z: F.softmax_cross_entropy(z, targets)[0], (logits,), 0, 1.0)
    assert_close(dlogits, num, **GRAD_TOL, name="dlogits")


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_cross_entropy_huge_logits(dtype):
    logits = np.array([[1e4, 0.0, -1e4], [-1e4, 1e4, 0.0], [-1e4, -1e4, -1e4]], dtype=dtype)
    targets = np.array([0, 0, 2])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss, dlogits = F.softmax_cross_entropy(logits, targets)
    # row 0: right and sure -> 0; row 1: wrong by 2e4 -> 2e4; row 2: uniform -> log 3
    expected = (0.0 + 2e4 + np.log(3.0)) / 3
    assert np.isfinite(loss) and np.all(np.isfinite(dlogits))
    assert loss == pytest.approx(expected, rel=1e-12)
    assert loss == pytest.approx(softmax_cross_entropy_ref(logits, targets), rel=1e-12)
    expected_d = np.array([[0.0, 0.0, 0.0], [-1.0, 1.0, 0.0], [1 / 3, 1 / 3, -2 / 3]]) / 3
    assert_close(dlogits, expected_d, **TOL[dtype], name="dlogits")
    loss_neg, _ = F.softmax_cross_entropy(-np.full((2, 4), 1e4, dtype=dtype), np.array([1, 3]))
    assert loss_neg == pytest.approx(np.log(4.0), rel=1e-12)


def test_softmax_cross_entropy_does_not_touch_its_input(rng):
    logits = _randn(rng, (3, 4), np.float32)
    keep = logits.copy()
    F.softmax_cross_entropy(logits, np.array([0, 1, 3]))
    np.testing.assert_array_equal(logits, keep)


# ------------------------------------------------------------------- clipping --


@pytest.mark.parametrize("dtype", DTYPES)
def test_clip_grad_norm_scales_in_place_when_above(rng, dtype):
    grads = [_randn(rng, (3, 4), dtype), _randn(rng, (5,), dtype), _randn(rng, (2, 2, 3), dtype)]
    ids = [id(g) for g in grads]
    norm_ref, clipped_ref = clip_grad_norm_ref(grads, 1.0)
    assert norm_ref > 1.0
    norm = F.clip_grad_norm(grads, 1.0)
    assert isinstance(norm, float)
    assert norm == pytest.approx(norm_ref, rel=1e-12)  # the norm BEFORE clipping
    assert [id(g) for g in grads] == ids
    for g, r in zip(grads, clipped_ref):
        assert g.dtype == dtype
        assert_close(g, r, **TOL[dtype], name="clipped grad")
    total = np.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2)) for g in grads))
    assert total == pytest.approx(1.0, rel=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_clip_grad_norm_leaves_arrays_untouched_when_below(rng, dtype):
    grads = {"w": _randn(rng, (3, 4), dtype, scale=0.01), "b": _randn(rng, (4,), dtype, scale=0.01)}
    keep = {k: v.copy() for k, v in grads.items()}
    norm_ref, _ = clip_grad_norm_ref(list(grads.values()), 10.0)
    norm = F.clip_grad_norm(grads, 10.0)
    assert norm == pytest.approx(norm_ref, rel=1e-12)
    for k in grads:
        np.testing.assert_array_equal(grads[k], keep[k])


def test_clip_grad_norm_at_exactly_max_norm_is_not_scaled():
    grads = [np.array([3.0, 4.0])]
    assert F.clip_grad_norm(grads, 5.0) == 5.0
    np.testing.assert_array_equal(grads[0], [3.0, 4.0])


def test_clip_grad_norm_float32_accumulates_in_float64():
    # 10^6 ones: a float32 running sum would stall at 2^24 long before; check the exact value
    g = np.full(10**6, 1.0, dtype=np.float32)
    assert F.clip_grad_norm([g], 1e9) == 1000.0


def test_clip_grad_norm_empty_and_bad_input():
    assert F.clip_grad_norm([], 1.0) == 0.0
    with pytest.raises(ValueError, match="max_norm"):
        F.clip_grad_norm([np.ones(3)], 0.0)
    with pytest.raises(ValueError, match="contiguous"):
        F.clip_grad_norm([np.ones((4, 4))[:, ::2]], 1.0)
    with pytest.raises(TypeError, match="float32 or float64"):
        F.clip_grad_norm([np.ones(3, dtype=np.int64)], 1.0)


# ------------------------------------------------------------ optimizer kernels --

# (kernel, reference, hyper-parameters after the state arrays, number of state arrays)
OPTIMIZERS = {
    "sgd": (cpu_optim.sgd_update_, sgd_ref, dict(lr=0.1, momentum=0.9, weight_decay=0.01), 1),
    "adagrad": (cpu_optim.adagrad_update_, adagrad_ref, dict(lr=0.1, eps=1e-10, weight_decay=0.01), 1),
    "rmsprop": (cpu_optim.rmsprop_update_, rmsprop_ref, dict(lr=0.01, alpha=0.99, eps=1e-8, weight_decay=0.01), 1),
    "adam": (cpu_optim.adam_update_, adam_ref, dict(lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01), 2),
}


def _opt_step(name, kernel, p, g, state, hp, step):
    if name == "adam":
        kernel(p, g, *state, hp["lr"], hp["beta1"], hp["beta2"], hp["eps"], step, hp["weight_decay"])
    else:
        kernel(p, g, *state, *hp.values())


def _ref_step(name, ref, p, g, state, hp, step):
    if name == "adam":
        out = ref(p, g, *state, hp["lr"], hp["beta1"], hp["beta2"], hp["eps"], step, hp["weight_decay"])
    else:
        out = ref(p, g, *state, *hp.values())
    return out[0], list(out[1:])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(OPTIMIZERS))
@pytest.mark.parametrize("shape", [(7,), (3, 4)])
def test_optimizer_kernel_matches_reference(rng, dtype, name, shape):
    kernel, ref, hp, n_state = OPTIMIZERS[name]
    p = _randn(rng, shape, dtype)
    state = [np.zeros(shape, dtype) for _ in range(n_state)]
    p_ref, state_ref = p.astype(np.float64), [s.astype(np.float64) for s in state]
    tol = TOL[dtype] if dtype == np.float64 else dict(rtol=1e-5, atol=1e-6)
    for step in range(1, 5):
        g = _randn(rng, shape, dtype)
        g_keep = g.copy()
        p_before = p
        _opt_step(name, kernel, p, g, state, hp, step)
        # the reference steps from the kernel's previous values so float32 rounding does not compound
        p_ref, state_ref = _ref_step(name, ref, p_ref, g, state_ref, hp, step)
        assert p is p_before and p.dtype == dtype and all(s.dtype == dtype for s in state)
        np.testing.assert_array_equal(g, g_keep)  # the gradient is read only
        assert_close(p, p_ref, **tol, name=f"{name} p (step {step})")
        for i, (s, s_ref) in enumerate(zip(state, state_ref)):
            assert_close(s, s_ref, **tol, name=f"{name} state {i} (step {step})")
        p_ref, state_ref = p.astype(np.float64), [s.astype(np.float64) for s in state]


def test_sgd_without_momentum_is_plain_gradient_descent(rng):
    p, g, v = _randn(rng, (5,)), _randn(rng, (5,)), np.zeros(5)
    expected = p - 0.5 * g
    cpu_optim.sgd_update_(p, g, v, 0.5, 0.0, 0.0)
    assert_close(p, expected, rtol=1e-15, name="p")


# --------------------------------------------------------------- torch parity --


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_matches_torch(rng, torch, dtype):
    logits = _randn(rng, (8, 6), dtype, scale=3.0)
    targets = rng.integers(0, 6, 8)
    loss, dlogits = F.softmax_cross_entropy(logits, targets)
    z = torch.tensor(logits, requires_grad=True)
    t_loss = torch.nn.functional.cross_entropy(z, torch.tensor(targets))
    t_loss.backward()
    tol = TOL[dtype] if dtype == np.float64 else dict(rtol=1e-5, atol=1e-7)
    assert loss == pytest.approx(float(t_loss.detach()), rel=tol["rtol"], abs=tol["atol"])
    assert_close(dlogits, z.grad.numpy(), **tol, name="dlogits vs torch")


def _torch_optimizer(torch, name, params, hp):
    o = torch.optim
    if name == "sgd":
        return o.SGD(params, lr=hp["lr"], momentum=hp["momentum"], weight_decay=hp["weight_decay"])
    if name == "adagrad":
        return o.Adagrad(params, lr=hp["lr"], eps=hp["eps"], weight_decay=hp["weight_decay"])
    if name == "rmsprop":
        return o.RMSprop(params, lr=hp["lr"], alpha=hp["alpha"], eps=hp["eps"], weight_decay=hp["weight_decay"])
    return o.Adam(params, lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"], weight_decay=hp["weight_decay"])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_optimizer_kernel_matches_torch(rng, torch, dtype, name):
    kernel, _, hp, n_state = OPTIMIZERS[name]
    p = _randn(rng, (4, 3), dtype)
    state = [np.zeros_like(p) for _ in range(n_state)]
    tp = torch.nn.Parameter(torch.tensor(p.copy()))
    opt = _torch_optimizer(torch, name, [tp], hp)
    for step in range(1, 6):
        g = _randn(rng, p.shape, dtype)
        _opt_step(name, kernel, p, g, state, hp, step)
        tp.grad = torch.tensor(g.copy())
        opt.step()
    tol = dict(rtol=1e-11, atol=1e-12) if dtype == np.float64 else dict(rtol=2e-5, atol=2e-6)
    assert_close(p, tp.detach().numpy(), **tol, name=f"{name} vs torch.optim")


# ------------------------------------------------------------------ bad input --


def test_cross_entropy_targets_out_of_range():
    logits = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match=r"targets must lie in 0\.\.3.*got 4"):
        F.softmax_cross_entropy(logits, np.array([0, 4, 1]))
    with pytest.raises(ValueError, match=r"targets must lie in 0\.\.3.*got -1"):
        F.softmax_cross_entropy(logits, np.array([0, -1, 1]))


def test_cross_entropy_targets_not_integer():
    with pytest.raises(TypeError, match="targets must be an integer array"):
        F.softmax_cross_entropy(np.zeros((3, 4), np.float32), np.array([0.0, 1.0, 2.0]))


def test_cross_entropy_targets_wrong_shape():
    with pytest.raises(ValueError, match=r"targets must have shape \(3,\)"):
        F.softmax_cross_entropy(np.zeros((3, 4), np.float32), np.array([0, 1]))


def test_cross_entropy_logits_not_2d():
    with pytest.raises(ValueError, match="logits must be 2-D"):
        F.softmax_cross_entropy(np.zeros(4, np.float32), np.array([0]))
    with pytest.raises(ValueError, match="x must be 2-D"):
        F.softmax(np.zeros((2, 3, 4), np.float32))


def test_linear_shape_mismatch():
    x, w = np.zeros((2, 5), np.float32), np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match=r"x has 5 features but w \(O, D\) expects D = 4"):
        F.linear(x, w)
    with pytest.raises(ValueError, match=r"b must have shape \(3,\)"):
        F.linear(np.zeros((2, 4), np.float32), w, np.zeros(4, np.float32))
    with pytest.raises(ValueError, match=r"dy must have shape \(2, 3\)"):
        F.linear_backward(np.zeros((2, 4), np.float32), np.zeros((2, 4), np.float32), w)
    with pytest.raises(ValueError, match="x must be 2-D"):
        F.linear(np.zeros(4, np.float32), w)


def test_integer_and_mixed_dtypes_rejected():
    with pytest.raises(TypeError, match="x must be float32 or float64, got int64"):
        F.linear(np.zeros((2, 4), np.int64), np.zeros((3, 4), np.float32))
    with pytest.raises(TypeError, match="one dtype"):
        F.linear(np.zeros((2, 4), np.float64), np.zeros((3, 4), np.float32))
    with pytest.raises(TypeError, match="x must be float32 or float64"):
        F.activation(np.zeros(3, np.int32), "tanh")
    with pytest.raises(TypeError, match="logits must be float32 or float64"):
        F.softmax_cross_entropy(np.zeros((2, 3), np.int64), np.array([0, 1]))
    with pytest.raises(TypeError, match="numpy array"):
        F.linear([[1.0, 2.0]], np.zeros((3, 2)))


def test_unknown_activation_named():
    with pytest.raises(ValueError, match="activation must be one of identity, tanh, sigmoid, relu; got 'gelu'"):
        F.activation(np.zeros(3), "gelu")
    with pytest.raises(ValueError, match=r"dy must have shape \(3,\)"):
        F.activation_backward(np.zeros(4), np.zeros(3), "tanh")
