"""vmath: the vectorisable sigmoid, tanh and exp of the CPU kernels' element-wise loops.

Each against long-double numpy (80-bit on x86) over many magnitudes, the
infinities and NaN.
"""

import numpy as np
from numba import njit

from numbanets.kernels.cpu.vmath import exp_nonpositive, sigmoid, tanh


def _ulp(got, ref, dtype):
    finfo = np.finfo(dtype)
    return np.abs(got.astype(np.longdouble) - ref) / (np.maximum(np.abs(ref), finfo.tiny) * finfo.eps)


def test_vectorised_sigmoid_and_tanh_are_accurate_to_a_few_ulp(rng):
    # the kernels' own exp-based sigmoid/tanh (no libm calls, so the step loops vectorise)
    @njit
    def apply(xs, sig, th):
        for k in range(xs.size):
            sig[k] = sigmoid(xs[k])
            th[k] = tanh(xs[k])

    xs = np.concatenate([
        rng.standard_normal(2000) * s for s in (1e-7, 1e-3, 0.3, 1.0, 4.0, 20.0, 300.0)
    ] + [np.array([0.0, -0.0, 1e-300, -1e-30, 19.5, -21.0, 88.0, -88.0, -103.0, -745.0, 800.0, -800.0])])
    # float64 reference: long double (80-bit x87 on x86, ~1e-19); where long double is
    # plain float64 the reference's own rounding shows, hence 4 ulp there
    for dtype, max_ulp in ((np.float32, 2.0), (np.float64, 4.0)):
        x = xs.astype(dtype)
        sig, th = np.empty_like(x), np.empty_like(x)
        apply(x, sig, th)
        xl = x.astype(np.longdouble)  # the float32/float64 inputs, exactly
        for name, got, ref in (("sigmoid", sig, 1 / (1 + np.exp(-xl))), ("tanh", th, np.tanh(xl))):
            ulp = _ulp(got, ref, dtype)
            k = int(np.argmax(ulp))
            assert ulp[k] <= max_ulp, f"{name} {dtype.__name__}: {float(ulp[k]):.2f} ulp at x = {x[k]!r}"
    for special, s_exp, t_exp in ((np.inf, 1.0, 1.0), (-np.inf, 0.0, -1.0)):
        for dtype in (np.float32, np.float64):
            x = np.array([special], dtype)
            sig, th = np.empty_like(x), np.empty_like(x)
            apply(x, sig, th)
            assert sig[0] == s_exp and th[0] == t_exp
    x = np.array([np.nan])
    sig, th = np.empty_like(x), np.empty_like(x)
    apply(x, sig, th)
    assert np.isnan(sig[0]) and np.isnan(th[0])


def test_exp_nonpositive_is_accurate_to_a_few_ulp(rng):
    @njit
    def apply(ys, out):
        for k in range(ys.size):
            out[k] = exp_nonpositive(ys[k])

    ys = -np.abs(np.concatenate([rng.standard_normal(2000) * s for s in (1e-7, 1e-3, 0.3, 1.0, 4.0, 30.0, 300.0)]
                                + [np.array([0.0, 1e-300, 87.0, 103.0, 103.9, 708.0, 744.0, 745.1, 800.0])]))
    for dtype, max_ulp in ((np.float32, 2.0), (np.float64, 4.0)):
        y = ys.astype(dtype)
        got = np.empty_like(y)
        apply(y, got)
        ref = np.exp(y.astype(np.longdouble))
        # denormal results carry an absolute error of half their spacing; compare those absolutely
        normal = ref >= np.finfo(dtype).tiny
        ulp = _ulp(got[normal], ref[normal], dtype)
        k = int(np.argmax(ulp))
        assert ulp[k] <= max_ulp, f"exp {dtype.__name__}: {float(ulp[k]):.2f} ulp at y = {y[normal][k]!r}"
        spacing = np.finfo(dtype).smallest_subnormal
        assert np.all(np.abs(got[~normal].astype(np.longdouble) - ref[~normal]) <= spacing)
    for dtype in (np.float32, np.float64):
        y = np.array([-np.inf, np.nan, 0.0], dtype)
        got = np.empty_like(y)
        apply(y, got)
        assert got[0] == 0.0 and np.isnan(got[1]) and got[2] == 1.0
