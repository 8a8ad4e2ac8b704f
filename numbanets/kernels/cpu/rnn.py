"""Vanilla RNN over a whole sequence, forward and backpropagation through time (CPU).

    h_t = act(x_t @ w_ih.T + h_{t-1} @ w_hh.T + b),   act in identity, tanh, sigmoid, relu

Forward: the input projection of every step is ONE GEMM (T*N, D) @ (D, H),
written straight into hs; then the time loop runs inside compiled code with
one GEMM per step (h_{t-1} @ w_hh.T into a preallocated buffer) and one fused
pass that adds it and the bias and applies the activation in place.

Backward: the loop walks t = T-1 .. 0 and stores the pre-activation gradients
da_t = (dhs_t + da_{t+1} @ w_hh) * act'(h_t) (one GEMM per step); after the
loop the weight and input gradients are whole-sequence GEMMs over all T*N rows:
dw_ih = da^T x, dw_hh = da^T h_prev, dx = da w_ih, db = sum of da.

Arithmetic stays in the input dtype (float32 or float64); `_one` gives the
constant 1 in that dtype so float32 kernels do not widen to float64.
"""

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

from numbanets.kernels.cpu.activations import IDENTITY, RELU, SIGMOID, TANH
from numbanets.kernels.cpu.blas import gemm, gemm_acc

__all__ = ["rnn_forward", "rnn_backward", "rnn_forward_projected", "rnn_backward_preactivations",
           "sigmoid", "tanh"]

_ = IDENTITY  # the fall-through branch of every activation switch

# error_model="numpy": a float division by zero gives inf/nan instead of a Python
# ZeroDivisionError check, whose branch would keep LLVM from vectorising the loops.
_JIT = dict(cache=True, error_model="numpy")


# --------------------------------------------------------------------------- typed constants

def _one(a):
    """1 in a's dtype (an array or a scalar); used inside @njit code only."""
    raise NotImplementedError("_one is only callable from numba-compiled code")


@overload(_one)
def _one_impl(a):
    dt = getattr(a, "dtype", a)

    def impl(a):
        return dt(1)

    return impl


def _cast_like(x, v):
    """The Python float v as x's float type (x a scalar); used inside @njit code only."""
    raise NotImplementedError("_cast_like is only callable from numba-compiled code")


@overload(_cast_like)
def _cast_like_impl(x, v):
    dt = x

    def impl(x, v):
        return dt(v)

    return impl


# --------------------------------------------------------------------------- vectorisable sigmoid, tanh
#
# libm's tanhf/expf are scalar calls (tanhf ~30 ns here) that LLVM cannot
# vectorise without SVML, and they dominated the LSTM step. sigmoid and tanh
# below are built from one exp/expm1 written with plain arithmetic (Cody-Waite
# range reduction by ln 2, Taylor polynomial of expm1 on |r| <= ln2/2, scaling
# by 2^n through the float's exponent bits), which LLVM vectorises. Measured
# against mpmath over 1e-6 .. 800 (denormal results, +-inf included): max
# relative error 1.5 ulp (float32) and 2.1 ulp (float64); no overflow, NaN
# propagates.

@intrinsic
def _bits_to_float(typingctx, bits):
    # int32 -> float32 / int64 -> float64 with the same bits
    if bits == types.int32:
        ret, lty = types.float32, ir.FloatType()
    elif bits == types.int64:
        ret, lty = types.float64, ir.DoubleType()
    else:
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], lty)

    return ret(bits), codegen


def _expm1_reduced(y):
    """(n, p) with y = n ln2 + r, |r| <= ln2/2, p = expm1(r): exp(y) = 2^n (1 + p)."""
    raise NotImplementedError("only callable from numba-compiled code")


@overload(_expm1_reduced)
def _expm1_reduced_impl(y):
    if y == types.float32:
        f = np.float32
        log2e, half, one = f(1.4426950408889634), f(0.5), f(1.0)
        ln2_hi, ln2_lo = f(0.693359375), f(-2.12194440e-4)  # ln2_hi * n exact (cephes)
        c2, c3, c4, c5, c6, c7 = (f(1.0 / math.factorial(k)) for k in range(2, 8))

        def impl32(y):
            nf = np.floor(y * log2e + half)
            r = (y - nf * ln2_hi) - nf * ln2_lo
            p = r * (one + r * (c2 + r * (c3 + r * (c4 + r * (c5 + r * (c6 + r * c7))))))
            return nf, p

        return impl32
    if y == types.float64:
        log2e = 1.4426950408889634
        ln2_hi, ln2_lo = 6.93147180369123816490e-01, 1.90821492927058770002e-10  # fdlibm
        c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13 = (1.0 / math.factorial(k) for k in range(2, 14))

        def impl64(y):
            nf = np.floor(y * log2e + 0.5)
            r = (y - nf * ln2_hi) - nf * ln2_lo
            p = r * (1.0 + r * (c2 + r * (c3 + r * (c4 + r * (c5 + r * (c6 + r * (
                c7 + r * (c8 + r * (c9 + r * (c10 + r * (c11 + r * (c12 + r * c13))))))))))))
            return nf, p

        return impl64
    return None


def _pow2(nf):
    """2^n for an integral float n in the normal range."""
    raise NotImplementedError("only callable from numba-compiled code")


@overload(_pow2)
def _pow2_impl(nf):
    if nf == types.float32:
        def impl32(nf):
            return _bits_to_float(np.int32((np.int32(nf) + np.int32(127)) << np.int32(23)))

        return impl32
    if nf == types.float64:
        def impl64(nf):
            return _bits_to_float((np.int64(nf) + np.int64(1023)) << np.int64(52))

        return impl64
    return None


def _exp_floor(x):
    """The most negative argument worth computing: exp of it rounds to 0."""
    raise NotImplementedError("only callable from numba-compiled code")


@overload(_exp_floor)
def _exp_floor_impl(x):
    lim = -104.0 if x == types.float32 else -746.0
    dt = x

    def impl(x):
        return dt(lim)

    return impl


@njit(**_JIT)
def sigmoid(x):
    # scalar x (float32/float64) -> 1 / (1 + e^-x) in x's type, from e = e^-|x| (never overflows)
    one = _one(x)
    y = -abs(x)
    lim = _exp_floor(x)
    if y < lim:
        y = lim
    nf, p = _expm1_reduced(y)
    # 2^n = 2^(n+64) * 2^-64: 2^(n+64) is a normal float for every n >= lim / ln2, and a
    # denormal e^-|x| is rounded once, by the exact-power-of-two last product
    e = ((one + p) * _pow2(nf + _cast_like(x, 64.0))) * _cast_like(x, 2.0 ** -64)
    s = one / (one + e)
    return s if x >= 0 else e * s


@njit(**_JIT)
def tanh(x):
    # scalar x (float32/float64) -> tanh(x) in x's type, = -m / (2 + m) with m = expm1(-2|x|)
    one = _one(x)
    two = one + one
    a = abs(x)
    lim = _cast_like(x, 20.0)  # tanh(20) rounds to 1 in float64 already
    if a > lim:
        a = lim
    nf, p = _expm1_reduced(-two * a)
    s = _pow2(nf)
    m = s * p + (s - one)
    t = -m / (two + m)
    return t if x >= 0 else -t


# --------------------------------------------------------------------------- RNN

@njit(**_JIT)
def _rnn_step(ht, rec, b, act):
    # ht (N, H) holds x_t @ w_ih.T; rec (N, H) = h_{t-1} @ w_hh.T; b (H,)
    #   -> ht = act(ht + rec + b), in place
    # (loops over 1-D rows: LLVM vectorises them; the same loops over 2-D indices it does not)
    n_rows, hidden = ht.shape
    zero = _one(ht) - _one(ht)
    for n in range(n_rows):
        h = ht[n]
        r = rec[n]
        if act == TANH:
            for j in range(hidden):
                h[j] = tanh(h[j] + r[j] + b[j])
        elif act == SIGMOID:
            for j in range(hidden):
                h[j] = sigmoid(h[j] + r[j] + b[j])
        elif act == RELU:
            for j in range(hidden):
                v = h[j] + r[j] + b[j]
                h[j] = v if v > zero else zero
        else:
            for j in range(hidden):
                h[j] = h[j] + r[j] + b[j]


@njit(**_JIT)
def rnn_forward(x, h0, w_ih, w_hh, b, act):
    # x (T, N, D)  h0 (N, H)  w_ih (H, D)  w_hh (H, H)  b (H,)  act code  -> hs (T, N, H)
    T, N, D = x.shape
    H = w_hh.shape[0]
    # input projection of all steps: one GEMM, written into hs and finished in place
    hs = np.empty((T, N, H), dtype=x.dtype)
    gemm(x.reshape(T * N, D), False, w_ih, True, hs.reshape(T * N, H))
    return rnn_forward_projected(hs, h0, w_hh, b, act)


@njit(**_JIT)
def rnn_forward_projected(hs, h0, w_hh, b, act):
    # hs (T, N, H) holding the input projections x_t @ w_ih.T (finished in place)
    # h0 (N, H)  w_hh (H, H)  b (H,)  act code  -> hs (T, N, H)
    # (the time loop of rnn_forward; also used with a row gather of w_ih for one-hot input)
    T, N, H = hs.shape
    rec = np.empty((N, H), dtype=hs.dtype)
    for t in range(T):
        if t == 0:
            gemm(h0, False, w_hh, True, rec)
        else:
            gemm(hs[t - 1], False, w_hh, True, rec)
        _rnn_step(hs[t], rec, b, act)
    return hs


@njit(**_JIT)
def _rnn_grad_step(da_t, dh_t, dh_next, y, act):
    # dh_t, dh_next, y = h_t (N, H) -> da_t (N, H) = (dh_t + dh_next) * act'(from y)
    n_rows, hidden = y.shape
    one = _one(y)
    zero = one - one
    for n in range(n_rows):
        da = da_t[n]
        d1 = dh_t[n]
        d2 = dh_next[n]
        yr = y[n]
        if act == TANH:
            for j in range(hidden):
                da[j] = (d1[j] + d2[j]) * (one - yr[j] * yr[j])
        elif act == SIGMOID:
            for j in range(hidden):
                da[j] = (d1[j] + d2[j]) * (yr[j] * (one - yr[j]))
        elif act == RELU:
            for j in range(hidden):
                da[j] = (d1[j] + d2[j]) if yr[j] > zero else zero
        else:
            for j in range(hidden):
                da[j] = d1[j] + d2[j]


@njit(**_JIT)
def sequence_param_grads(da, x, h0, hs, w_ih):
    # da (T, N, G) pre-activation gradients  x (T, N, D)  h0 (N, H)  hs (T, N, H)  w_ih (G, D)
    #   -> dx (T, N, D), dw_ih (G, D), dw_hh (G, H), db (G,)   as whole-sequence GEMMs
    # (shared by the RNN, G = H, and the LSTM, G = 4H)
    T, N, G = da.shape
    D = x.shape[2]
    H = hs.shape[2]
    da2 = da.reshape(T * N, G)
    dx = np.empty((T, N, D), dtype=da.dtype)
    gemm(da2, False, w_ih, False, dx.reshape(T * N, D))
    dw_ih = np.empty((G, D), dtype=da.dtype)
    gemm(da2, True, x.reshape(T * N, D), False, dw_ih)
    # h_prev of step t is h0 for t = 0 and hs[t-1] after: two GEMMs, no copy
    dw_hh = np.empty((G, H), dtype=da.dtype)
    gemm(da[0], True, h0, False, dw_hh)
    if T > 1:
        gemm_acc(da2[N:], True, hs.reshape(T * N, H)[: (T - 1) * N], False, dw_hh)
    db = np.zeros(G, dtype=da.dtype)
    for m in range(T * N):
        row = da2[m]
        for r in range(G):
            db[r] += row[r]
    return dx, dw_ih, dw_hh, db


@njit(**_JIT)
def rnn_backward(dhs, x, h0, w_ih, w_hh, hs, act):
    # dhs (T, N, H)  x (T, N, D)  h0 (N, H)  w_ih (H, D)  w_hh (H, H)  hs (T, N, H)  act code
    #   -> dx (T, N, D), dh0 (N, H), dw_ih (H, D), dw_hh (H, H), db (H,)
    da, dh0 = rnn_backward_preactivations(dhs, w_hh, hs, act)
    dx, dw_ih, dw_hh, db = sequence_param_grads(da, x, h0, hs, w_ih)
    return dx, dh0, dw_ih, dw_hh, db


@njit(**_JIT)
def rnn_backward_preactivations(dhs, w_hh, hs, act):
    # dhs (T, N, H)  w_hh (H, H)  hs (T, N, H)  act code
    #   -> da (T, N, H) pre-activation gradients, dh0 (N, H)
    # (the BPTT loop of rnn_backward, before the whole-sequence parameter GEMMs)
    T, N, H = hs.shape
    da = np.empty((T, N, H), dtype=hs.dtype)
    dh_next = np.zeros((N, H), dtype=hs.dtype)  # da_{t+1} @ w_hh; becomes dh0
    for t in range(T - 1, -1, -1):
        _rnn_grad_step(da[t], dhs[t], dh_next, hs[t], act)
        gemm(da[t], False, w_hh, False, dh_next)
    return da, dh_next
