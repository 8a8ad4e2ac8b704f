"""Vanilla RNN over a whole sequence, forward and backpropagation through time (CUDA).

    h_t = act(x_t @ w_ih.T + h_{t-1} @ w_hh.T + b),   act in identity, tanh, sigmoid, relu

The same signatures and results as numbanets.kernels.cpu.rnn, on numba CUDA
device arrays (in and out). The host loop over time only launches kernels; no
array leaves the device.

Forward: the input projection of every step is ONE gemm (T*N, D) @ (D, H),
written straight into hs; then per step one gemm h_{t-1} @ w_hh.T into a
buffer and one fused element-wise kernel (`rnn_step`) that adds it and the
bias and applies the activation in place.

Backward: per step (t = T-1 .. 0) one fused element-wise kernel
(`rnn_grad_step`: da_t = (dhs_t + dh_next) * act'(h_t)) and one gemm
(dh_next = da_t @ w_hh); after the loop the weight and input gradients are
whole-sequence gemms over all T*N rows (`sequence_param_grads`, shared with
the LSTM): dx = da w_ih, dw_ih = da^T x, dw_hh = da^T h_prev (two gemms, the
second accumulating with beta = 1), db = column sums of da (`sum_rows`).

Element-wise kernels are 1-D grid-stride loops over N*H; arithmetic stays in
the arrays' dtype (`a.dtype.type(1.0)` gives a typed 1, so float32 kernels do
not widen to float64).
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import cuda

from numbanets.kernels.codes import IDENTITY, RELU, SIGMOID, TANH
from numbanets.kernels.cuda import SIMULATOR, empty, grid_1d, zeros
from numbanets.kernels.cuda.gemm import gemm
from numbanets.kernels.cuda.registry import register

__all__ = ["rnn_forward", "rnn_backward", "sequence_param_grads", "sum_rows"]

_ = IDENTITY  # the fall-through branch of every activation switch


# --------------------------------------------------------------------------- element-wise kernels

@register("rnn_step", "{f}[:, ::1], {f}[:, ::1], {f}[::1], int64")
def _rnn_step(ht, rec, b, act):
    # ht (N, H) holds x_t @ w_ih.T; rec (N, H) = h_{t-1} @ w_hh.T; b (H,); act code
    #   -> ht = act(ht + rec + b), in place
    hidden = ht.shape[1]
    total = ht.shape[0] * hidden
    one = ht.dtype.type(1.0)
    zero = one - one
    start = cuda.grid(1)
    step = cuda.gridsize(1)
    for idx in range(start, total, step):
        n = idx // hidden
        j = idx - n * hidden
        v = ht[n, j] + rec[n, j] + b[j]
        if act == TANH:
            v = math.tanh(v)
        elif act == SIGMOID:
            # two-branch form: exp never overflows
            if v >= zero:
                v = one / (one + math.exp(-v))
            else:
                e = math.exp(v)
                v = e / (one + e)
        elif act == RELU:
            if not v > zero:
                v = zero
        ht[n, j] = v


@register("rnn_grad_step", "{f}[:, ::1], {f}[:, ::1], {f}[:, ::1], {f}[:, ::1], int64")
def _rnn_grad_step(da, dh, dh_next, y, act):
    # dh = dL/dh_t from outside, dh_next = da_{t+1} @ w_hh, y = h_t (N, H); act code
    #   -> da (N, H) = (dh + dh_next) * act'(from y)
    hidden = y.shape[1]
    total = y.shape[0] * hidden
    one = y.dtype.type(1.0)
    zero = one - one
    start = cuda.grid(1)
    step = cuda.gridsize(1)
    for idx in range(start, total, step):
        n = idx // hidden
        j = idx - n * hidden
        d = dh[n, j] + dh_next[n, j]
        yv = y[n, j]
        if act == TANH:
            d = d * (one - yv * yv)
        elif act == SIGMOID:
            d = d * (yv * (one - yv))
        elif act == RELU:
            if not yv > zero:
                d = zero
        da[n, j] = d


# --------------------------------------------------------------------------- column sums (bias gradients)

_SUM_COLS = 32                        # columns per block (one warp along a row: coalesced)
_SUM_ROWS = 2 if SIMULATOR else 8     # row groups per block, reduced through shared memory


def _make_sum_rows(dtype_name: str):
    nbtype = getattr(numba, dtype_name)

    @register(f"sum_rows_{dtype_name}", f"{dtype_name}[:, ::1], {dtype_name}[::1]", threads=_SUM_COLS * _SUM_ROWS)
    def _sum_rows(a, out):
        # a (M, G) -> out (G,) = sum of a over its rows
        part = cuda.shared.array((_SUM_ROWS, _SUM_COLS), nbtype)
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        j = cuda.blockIdx.x * _SUM_COLS + tx
        rows = a.shape[0]
        acc = nbtype(0.0)
        if j < a.shape[1]:
            for m in range(ty, rows, _SUM_ROWS):
                acc += a[m, j]
        part[ty, tx] = acc
        cuda.syncthreads()
        if ty == 0 and j < a.shape[1]:
            s = part[0, tx]
            for r in range(1, _SUM_ROWS):
                s += part[r, tx]
            out[j] = s

    return _sum_rows


_SUM_ROWS_KERNELS = {np.dtype(np.float32): _make_sum_rows("float32"), np.dtype(np.float64): _make_sum_rows("float64")}


def sum_rows(a, out=None):
    """out (G,) = a (M, G) summed over its rows, on the device (one launch); returns out."""
    m, g = a.shape
    if out is None:
        out = empty(g, a.dtype)
    if g == 0:
        return out
    blocks = math.ceil(g / _SUM_COLS)
    _SUM_ROWS_KERNELS[np.dtype(a.dtype)][blocks, (_SUM_COLS, _SUM_ROWS)](a, out)
    return out


# --------------------------------------------------------------------------- whole-sequence gradients

def sequence_param_grads(da, x, h0, hs, w_ih):
    # da (T, N, G) pre-activation gradients  x (T, N, D)  h0 (N, H)  hs (T, N, H)  w_ih (G, D)
    #   -> dx (T, N, D), dw_ih (G, D), dw_hh (G, H), db (G,)   as whole-sequence gemms
    # (shared by the RNN, G = H, and the LSTM, G = 4H)
    T, N, G = da.shape
    D = x.shape[2]
    H = hs.shape[2]
    dtype = da.dtype
    da2 = da.reshape(T * N, G)
    dx = empty((T, N, D), dtype)
    gemm(da2, w_ih, dx.reshape(T * N, D))
    dw_ih = empty((G, D), dtype)
    gemm(da2, x.reshape(T * N, D), dw_ih, trans_a=True)
    # h_prev of step t is h0 for t = 0 and hs[t-1] after: two gemms, the second accumulates
    dw_hh = empty((G, H), dtype)
    gemm(da[0], h0, dw_hh, trans_a=True)
    if T > 1:
        gemm(da2[N:], hs.reshape(T * N, H)[: (T - 1) * N], dw_hh, trans_a=True, beta=1.0)
    db = sum_rows(da2)
    return dx, dw_ih, dw_hh, db


# --------------------------------------------------------------------------- RNN

def rnn_forward(x, h0, w_ih, w_hh, b, act):
    # x (T, N, D)  h0 (N, H)  w_ih (H, D)  w_hh (H, H)  b (H,)  act code  -> hs (T, N, H)
    T, N, D = x.shape
    H = w_hh.shape[0]
    act = int(act)
    hs = empty((T, N, H), x.dtype)
    # input projection of all steps: one gemm, written into hs and finished in place
    gemm(x.reshape(T * N, D), w_ih, hs.reshape(T * N, H), trans_b=True)
    rec = empty((N, H), x.dtype)
    step = _rnn_step[grid_1d(N * H)]  # launch configuration made once, outside the loop
    h_prev = h0
    for t in range(T):
        ht = hs[t]
        gemm(h_prev, w_hh, rec, trans_b=True)
        step(ht, rec, b, act)
        h_prev = ht
    return hs


def rnn_backward(dhs, x, h0, w_ih, w_hh, hs, act):
    # dhs (T, N, H)  x (T, N, D)  h0 (N, H)  w_ih (H, D)  w_hh (H, H)  hs (T, N, H)  act code
    #   -> dx (T, N, D), dh0 (N, H), dw_ih (H, D), dw_hh (H, H), db (H,)
    T, N, H = hs.shape
    act = int(act)
    da = empty((T, N, H), hs.dtype)
    dh_next = zeros((N, H), hs.dtype)  # da_{t+1} @ w_hh; becomes dh0
    grad_step = _rnn_grad_step[grid_1d(N * H)]
    for t in range(T - 1, -1, -1):
        da_t = da[t]
        grad_step(da_t, dhs[t], dh_next, hs[t], act)
        gemm(da_t, w_hh, dh_next)
    dx, dw_ih, dw_hh, db = sequence_param_grads(da, x, h0, hs, w_ih)
    return dx, dh_next, dw_ih, dw_hh, db
