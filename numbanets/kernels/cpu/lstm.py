"""LSTM over a whole sequence, forward and backpropagation through time (CPU).

Gate rows of w_ih (4H, D), w_hh (4H, H), b (4H,) are i, f, g, o (torch.nn.LSTM):

    a_t = x_t @ w_ih.T + h_{t-1} @ w_hh.T + b
    i, f, o = sigmoid(a_i, a_f, a_o)    g = tanh(a_g)
    c_t = f * c_{t-1} + i * g           h_t = o * tanh(c_t)

Forward: the input projection of every step is ONE GEMM (T*N, D) @ (D, 4H),
written straight into the gates array; the time loop runs inside compiled
code with one GEMM per step (h_{t-1} @ w_hh.T into a preallocated buffer) and
one fused pass that finishes all four gates in place (after their
nonlinearity), and writes c_t and h_t.

Backward: the loop walks t = T-1 .. 0 with the running dh (from da_{t+1} @ w_hh,
one GEMM per step) and dc, and stores the pre-activation gradients
da_t (N, 4H); after the loop dx, dw_ih, dw_hh and db are whole-sequence GEMMs
(`rnn.sequence_param_grads`). tanh(c_t) is recomputed, not stored.

sigmoid and tanh are vmath's vectorisable versions (no libm calls), so each
step's element-wise pass runs as 8-lane (float32) / 4-lane (float64) SIMD.

Threads: each step's element-wise pass is split over the batch rows on numba's
threads (`prange`) once a step has at least PARALLEL_MIN_ELEMENTS hidden
units (N * H) and the BLAS's threads are numba's own OpenMP pool (MKL on GNU
OpenMP: `blas.shares_numba_threads()`, asked once per call, at run time, so
one on-disk cache serves both BLAS); otherwise one thread does it, as the
cost of starting the threads would exceed the work, or (OpenBLAS) its
spinning threads and numba's would fight over the cores. Every element is
computed as on one thread: the results do not depend on the thread count.
"""

import numpy as np
from numba import njit, prange

from numbanets.kernels.cpu.blas import gemm, shares_numba_threads
from numbanets.kernels.cpu.rnn import sequence_param_grads
from numbanets.kernels.cpu.vmath import _JIT, _one, sigmoid, tanh

__all__ = ["lstm_forward", "lstm_backward", "lstm_forward_gates", "lstm_backward_gates", "PARALLEL_MIN_ELEMENTS"]

PARALLEL_MIN_ELEMENTS = 2048  # N * H of one step from which its element-wise pass runs on all threads


@njit(**_JIT)
def _lstm_step(g, r, b, c_prev, c, h):
    # one batch row: g (4H,) holds x_t @ w_ih.T, r (4H,) = h_{t-1} @ w_hh.T, b (4H,), c_prev (H,)
    #   -> g = gates after their nonlinearity (in place), c, h (H,)
    # LLVM vectorises this loop (8 float32 lanes) as written: over 1-D rows, with the
    # gate offsets written inline. The same loop over 2-D indices, or with the offsets
    # held in locals (jf = j + H), stays scalar and runs 6x slower (numba 0.68).
    H = c.shape[0]
    for j in range(H):
        i = sigmoid(g[j] + r[j] + b[j])
        f = sigmoid(g[j + H] + r[j + H] + b[j + H])
        gg = tanh(g[j + 2 * H] + r[j + 2 * H] + b[j + 2 * H])
        o = sigmoid(g[j + 3 * H] + r[j + 3 * H] + b[j + 3 * H])
        cj = f * c_prev[j] + i * gg
        g[j] = i
        g[j + H] = f
        g[j + 2 * H] = gg
        g[j + 3 * H] = o
        c[j] = cj
        h[j] = o * tanh(cj)


@njit(parallel=True, **_JIT)
def _lstm_rows_parallel(g, r, b, c_prev, c, h):
    # g, r (N, 4H)  b (4H,)  c_prev, c, h (N, H): _lstm_step for every row, rows split over the threads
    for n in prange(g.shape[0]):
        _lstm_step(g[n], r[n], b, c_prev[n], c[n], h[n])


@njit(**_JIT)
def _lstm_rows(g, r, b, c_prev, c, h, parallel):
    # g, r (N, 4H)  b (4H,)  c_prev, c, h (N, H): one time step's element-wise pass
    if parallel:
        _lstm_rows_parallel(g, r, b, c_prev, c, h)
    else:
        for n in range(g.shape[0]):
            _lstm_step(g[n], r[n], b, c_prev[n], c[n], h[n])


@njit(**_JIT)
def lstm_forward(x, h0, c0, w_ih, w_hh, b):
    # x (T, N, D)  h0, c0 (N, H)  w_ih (4H, D)  w_hh (4H, H)  b (4H,)
    #   -> hs (T, N, H), cs (T, N, H), gates (T, N, 4H) after their nonlinearity (i, f, g, o)
    T, N, D = x.shape
    G = w_ih.shape[0]
    # input projection of all steps: one GEMM, finished in place into the gates
    gates = np.empty((T, N, G), dtype=x.dtype)
    gemm(x.reshape(T * N, D), False, w_ih, True, gates.reshape(T * N, G))
    return lstm_forward_gates(gates, h0, c0, w_hh, b)


@njit(**_JIT)
def lstm_forward_gates(gates, h0, c0, w_hh, b):
    # gates (T, N, 4H) holding the input projections x_t @ w_ih.T (finished in place)
    # h0, c0 (N, H)  w_hh (4H, H)  b (4H,)
    #   -> hs (T, N, H), cs (T, N, H), gates (T, N, 4H) after their nonlinearity (i, f, g, o)
    # (the time loop of lstm_forward; also used with a row gather of w_ih for one-hot input)
    T, N, G = gates.shape
    H = G // 4
    hs = np.empty((T, N, H), dtype=gates.dtype)
    cs = np.empty((T, N, H), dtype=gates.dtype)
    rec = np.empty((N, G), dtype=gates.dtype)
    parallel = N * H >= PARALLEL_MIN_ELEMENTS and shares_numba_threads()
    for t in range(T):
        if t == 0:
            gemm(h0, False, w_hh, True, rec)
            _lstm_rows(gates[0], rec, b, c0, cs[0], hs[0], parallel)
        else:
            gemm(hs[t - 1], False, w_hh, True, rec)
            _lstm_rows(gates[t], rec, b, cs[t - 1], cs[t], hs[t], parallel)
    return hs, cs, gates


@njit(**_JIT)
def _lstm_grad_step(da, dh_out, dh_rec, dc, g, c, c_prev):
    # one batch row: da (4H,) out; dh_out = dL/dh_t from outside, dh_rec = da_{t+1} @ w_hh (H,);
    # dc (H,) = dL/dc_t from step t+1 on entry, dL/dc_{t-1} on exit (in place);
    # g (4H,) gates after their nonlinearity; c, c_prev (H,)
    # (offsets inline, as in _lstm_step, so that LLVM vectorises the loop)
    H = c.shape[0]
    one = _one(c)
    for j in range(H):
        i = g[j]
        f = g[j + H]
        gg = g[j + 2 * H]
        o = g[j + 3 * H]
        tc = tanh(c[j])
        dh = dh_out[j] + dh_rec[j]
        dcj = dc[j] + dh * o * (one - tc * tc)
        da[j] = dcj * gg * (i * (one - i))
        da[j + H] = dcj * c_prev[j] * (f * (one - f))
        da[j + 2 * H] = dcj * i * (one - gg * gg)
        da[j + 3 * H] = dh * tc * (o * (one - o))
        dc[j] = dcj * f


@njit(parallel=True, **_JIT)
def _lstm_grad_rows_parallel(da, dh_out, dh_rec, dc, g, c, c_prev):
    # da, g (N, 4H)  dh_out, dh_rec, dc, c, c_prev (N, H): _lstm_grad_step for every row, split over the threads
    for n in prange(da.shape[0]):
        _lstm_grad_step(da[n], dh_out[n], dh_rec[n], dc[n], g[n], c[n], c_prev[n])


@njit(**_JIT)
def _lstm_grad_rows(da, dh_out, dh_rec, dc, g, c, c_prev, parallel):
    # da, g (N, 4H)  dh_out, dh_rec, dc, c, c_prev (N, H): one time step's element-wise backward pass
    if parallel:
        _lstm_grad_rows_parallel(da, dh_out, dh_rec, dc, g, c, c_prev)
    else:
        for n in range(da.shape[0]):
            _lstm_grad_step(da[n], dh_out[n], dh_rec[n], dc[n], g[n], c[n], c_prev[n])


@njit(**_JIT)
def lstm_backward(dhs, dc_T, x, h0, c0, w_ih, w_hh, hs, cs, gates):
    # dhs (T, N, H)  dc_T (N, H)  x (T, N, D)  h0, c0 (N, H)  w_ih (4H, D)  w_hh (4H, H)
    # hs, cs (T, N, H)  gates (T, N, 4H)
    #   -> dx (T, N, D), dh0 (N, H), dc0 (N, H), dw_ih (4H, D), dw_hh (4H, H), db (4H,)
    da, dh0, dc0 = lstm_backward_gates(dhs, dc_T, h0, c0, w_hh, hs, cs, gates)
    dx, dw_ih, dw_hh, db = sequence_param_grads(da, x, h0, hs, w_ih)
    return dx, dh0, dc0, dw_ih, dw_hh, db


@njit(**_JIT)
def lstm_backward_gates(dhs, dc_T, h0, c0, w_hh, hs, cs, gates):
    # dhs (T, N, H)  dc_T (N, H)  h0, c0 (N, H)  w_hh (4H, H)  hs, cs (T, N, H)  gates (T, N, 4H)
    #   -> da (T, N, 4H) pre-activation gradients, dh0 (N, H), dc0 (N, H)
    # (the BPTT loop of lstm_backward, before the whole-sequence parameter GEMMs)
    T, N, H = hs.shape
    G = gates.shape[2]
    da = np.empty((T, N, G), dtype=hs.dtype)
    dh_next = np.zeros((N, H), dtype=hs.dtype)  # da_{t+1} @ w_hh; becomes dh0
    dc = dc_T.copy()  # becomes dc0
    parallel = N * H >= PARALLEL_MIN_ELEMENTS and shares_numba_threads()
    for t in range(T - 1, -1, -1):
        if t == 0:
            _lstm_grad_rows(da[0], dhs[0], dh_next, dc, gates[0], cs[0], c0, parallel)
        else:
            _lstm_grad_rows(da[t], dhs[t], dh_next, dc, gates[t], cs[t], cs[t - 1], parallel)
        gemm(da[t], False, w_hh, False, dh_next)
    return da, dh_next, dc
