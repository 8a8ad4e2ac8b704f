"""GRU over a whole sequence, forward and backpropagation through time (CUDA).

Gate rows of w_ih (3H, D), w_hh (3H, H), b_ih, b_hh (3H,) are r, z, n (torch.nn.GRU):

    r = sigmoid(x W_ir^T + b_ir + h W_hr^T + b_hr)
    z = sigmoid(x W_iz^T + b_iz + h W_hz^T + b_hz)
    n = tanh(x W_in^T + b_in + r * (h W_hn^T + b_hn))
    h' = (1 - z) * n + z * h

The same signatures and results as numbanets.kernels.cpu.gru, on numba CUDA
device arrays (in and out). The host loop over time only launches kernels.

Forward: the input projection of every step is ONE gemm (T*N, D) @ (D, 3H)
into the gates array; per step one gemm h_{t-1} @ w_hh.T into a buffer and
ONE fused element-wise kernel (`gru_step`, one thread per (n, j)) that
finishes r, z, n in place and writes h_t and hn_t = h_{t-1} W_hn^T + b_hn.

Backward: per step (t = T-1 .. 0) one fused element-wise kernel
(`gru_grad_step`: the input-projection gradients gi_t, the recurrent-product
gradients gh_t, and dh_t * z_t, the direct path into h_{t-1}) and one gemm
(dh_next = gh_t @ w_hh); at t = 0 that gemm accumulates into the direct path
(beta = 1), which gives dh0. The weight gradients are whole-sequence gemms
after the loop (gi for w_ih, b_ih; gh for w_hh, b_hh). The first backward step
reads dh_T and writes the running buffer, so dh_T is never modified.
"""

from __future__ import annotations

import math

from numba import cuda

from numbanets.kernels.cuda import empty, grid_1d, zeros
from numbanets.kernels.cuda.gemm import gemm
from numbanets.kernels.cuda.registry import register
from numbanets.kernels.cuda.rnn import sum_rows

__all__ = ["gru_forward", "gru_backward"]


@register("gru_step",
          "{f}[:, ::1], {f}[:, ::1], {f}[::1], {f}[::1], {f}[:, ::1], {f}[:, ::1], {f}[:, ::1]")
def _gru_step(g, rec, b_ih, b_hh, h_prev, hn, h):
    # g (N, 3H) holds x_t @ w_ih.T, rec (N, 3H) = h_{t-1} @ w_hh.T, b_ih, b_hh (3H,), h_prev (N, H)
    #   -> g = r, z, n after their nonlinearity (in place), hn (N, H) = h_{t-1} W_hn^T + b_hn, h (N, H)
    hidden = h.shape[1]
    total = h.shape[0] * hidden
    one = h.dtype.type(1.0)
    zero = one - one
    start = cuda.grid(1)
    step = cuda.gridsize(1)
    for idx in range(start, total, step):
        n = idx // hidden
        j = idx - n * hidden
        jz = j + hidden
        jn = jz + hidden
        ar = g[n, j] + b_ih[j] + rec[n, j] + b_hh[j]
        az = g[n, jz] + b_ih[jz] + rec[n, jz] + b_hh[jz]
        # sigmoids in the two-branch form: exp never overflows
        if ar >= zero:
            r = one / (one + math.exp(-ar))
        else:
            e = math.exp(ar)
            r = e / (one + e)
        if az >= zero:
            z = one / (one + math.exp(-az))
        else:
            e = math.exp(az)
            z = e / (one + e)
        hnj = rec[n, jn] + b_hh[jn]
        nn = math.tanh(g[n, jn] + b_ih[jn] + r * hnj)
        g[n, j] = r
        g[n, jz] = z
        g[n, jn] = nn
        hn[n, j] = hnj
        h[n, j] = (one - z) * nn + z * h_prev[n, j]


@register("gru_grad_step",
          "{f}[:, ::1], {f}[:, ::1], {f}[:, ::1], {f}[:, ::1], {f}[:, ::1], {f}[:, ::1], {f}[:, ::1], "
          "{f}[:, ::1], {f}[:, ::1]")
def _gru_grad_step(gi, gh, dh_out, dh_rec, dz_in, dz_out, g, hn, h_prev):
    # gi, gh (N, 3H) out; dh_out = dL/dh_t from outside, dh_rec = gh_{t+1} @ w_hh (N, H);
    # dz_in (N, H) = dh_{t+1} * z_{t+1} -> dz_out (N, H) = dh_t * z_t (dz_out may be dz_in);
    # g (N, 3H) r, z, n; hn (N, H); h_prev = h_{t-1} (N, H)
    hidden = hn.shape[1]
    total = hn.shape[0] * hidden
    one = hn.dtype.type(1.0)
    start = cuda.grid(1)
    step = cuda.gridsize(1)
    for idx in range(start, total, step):
        n = idx // hidden
        j = idx - n * hidden
        jz = j + hidden
        jn = jz + hidden
        r = g[n, j]
        z = g[n, jz]
        nn = g[n, jn]
        dh = dh_out[n, j] + dh_rec[n, j] + dz_in[n, j]
        da_n = dh * (one - z) * (one - nn * nn)
        da_z = dh * (h_prev[n, j] - nn) * (z * (one - z))
        da_r = da_n * hn[n, j] * (r * (one - r))
        gi[n, j] = da_r
        gi[n, jz] = da_z
        gi[n, jn] = da_n
        gh[n, j] = da_r
        gh[n, jz] = da_z
        gh[n, jn] = da_n * r
        dz_out[n, j] = dh * z


def gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh):
    # x (T, N, D)  h0 (N, H)  w_ih (3H, D)  w_hh (3H, H)  b_ih, b_hh (3H,)
    #   -> hs (T, N, H), gates (T, N, 3H) r, z, n after their nonlinearity, hns (T, N, H)
    T, N, D = x.shape
    G = w_ih.shape[0]
    H = G // 3
    dtype = x.dtype
    gates = empty((T, N, G), dtype)
    gemm(x.reshape(T * N, D), w_ih, gates.reshape(T * N, G), trans_b=True)
    hs = empty((T, N, H), dtype)
    hns = empty((T, N, H), dtype)
    rec = empty((N, G), dtype)
    step = _gru_step[grid_1d(N * H)]  # launch configuration made once, outside the loop
    h_prev = h0
    for t in range(T):
        gemm(h_prev, w_hh, rec, trans_b=True)
        step(gates[t], rec, b_ih, b_hh, h_prev, hns[t], hs[t])
        h_prev = hs[t]
    return hs, gates, hns


def gru_backward(dhs, dh_T, x, h0, w_ih, w_hh, hs, gates, hns):
    # dhs (T, N, H)  dh_T (N, H)  x (T, N, D)  h0 (N, H)  w_ih (3H, D)  w_hh (3H, H)
    # hs (T, N, H)  gates (T, N, 3H)  hns (T, N, H)
    #   -> dx (T, N, D), dh0 (N, H), dw_ih (3H, D), dw_hh (3H, H), db_ih (3H,), db_hh (3H,)
    T, N, H = hs.shape
    D = x.shape[2]
    G = gates.shape[2]
    dtype = hs.dtype
    gi = empty((T, N, G), dtype)
    gh = empty((T, N, G), dtype)
    dh_next = zeros((N, H), dtype)  # gh_{t+1} @ w_hh
    dz = empty((N, H), dtype)       # dh_t * z_t; at the end dh0 (the first step reads dh_T)
    grad_step = _gru_grad_step[grid_1d(N * H)]
    dz_in = dh_T
    for t in range(T - 1, -1, -1):
        h_prev = h0 if t == 0 else hs[t - 1]
        grad_step(gi[t], gh[t], dhs[t], dh_next, dz_in, dz, gates[t], hns[t], h_prev)
        dz_in = dz
        if t > 0:
            gemm(gh[t], w_hh, dh_next)
        else:
            gemm(gh[0], w_hh, dz, beta=1.0)  # dh0 = dh_0 * z_0 + gh_0 @ w_hh
    gi2, gh2 = gi.reshape(T * N, G), gh.reshape(T * N, G)
    dx = empty((T, N, D), dtype)
    gemm(gi2, w_ih, dx.reshape(T * N, D))
    dw_ih = empty((G, D), dtype)
    gemm(gi2, x.reshape(T * N, D), dw_ih, trans_a=True)
    dw_hh = empty((G, H), dtype)
    gemm(gh[0], h0, dw_hh, trans_a=True)
    if T > 1:
        gemm(gh2[N:], hs.reshape(T * N, H)[: (T - 1) * N], dw_hh, trans_a=True, beta=1.0)
    return dx, dz, dw_ih, dw_hh, sum_rows(gi2), sum_rows(gh2)
