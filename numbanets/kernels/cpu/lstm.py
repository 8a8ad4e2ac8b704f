"""LSTM over a whole sequence, forward and backpropagation through time (CPU).

Gate rows of w_ih (4H, D), w_hh (4H, H), b (4H,) are i, f, g, o (torch.nn.LSTM):

    a_t = x_t @ w_ih.T + h_{t-1} @ w_hh.T + b
    i, f, o = sigmoid(a_i, a_f, a_o)    g = tanh(a_g)
    c_t = f * c_{t-1} + i * g           h_t = o * tanh(c_t)

Forward: the input projection of every step is ONE GEMM (T*N, D) @ (D, 4H),
written straight into the gates array; the time loop runs inside compiled
code with one product per step (h_{t-1} @ w_hh.T into a preallocated buffer)
and one fused pass that finishes all four gates in place (after their
nonlinearity), and writes c_t and h_t. w_hh.T is packed once per loop
(`packed_gemm`), so the T per-step products do not each repack the same
weights: into numbanets' own panels, multiplied by a register-blocked
kernel (`panel_gemm`), where the CPU has FMA; else with MKL's packed API
where `packed_gemm.worth_packing` says it pays. The backward packs w_hh the
same way.

Backward: the loop walks t = T-1 .. 0 with the running dh (from da_{t+1} @ w_hh,
one GEMM per step) and dc, and stores the pre-activation gradients
da_t (N, 4H); after the loop dx, dw_ih, dw_hh and db are whole-sequence GEMMs
(`rnn.sequence_param_grads`). tanh(c_t) is recomputed, not stored.

sigmoid and tanh are vmath's vectorisable versions (no libm calls), so each
step's element-wise pass runs as 8-lane (float32) / 4-lane (float64) SIMD.

Threads: the batch rows are independent sequences, so once a step has at
least blas.PARALLEL_MIN_ELEMENTS hidden units (N * H) the rows are split into one
block per numba thread and each thread runs the whole time loop (forward or
BPTT) for its block: its own per-step products (MKL runs single-threaded inside
the parallel region) and its rows' element-wise passes, with no
synchronisation between steps. That beats both one thread doing the passes
and a parallel region per step (per-step GEMM on the BLAS's threads, then the
rows split), which pays a fork and a join every step
(`packed_gemm.loop_row_blocks`, asked once per call, at run time, so one
on-disk cache serves both BLAS and any thread count). With numbanets' panels
the loop calls no BLAS, so the rows split with any BLAS; with a BLAS product
per step they split only where the BLAS's threads are numba's own OpenMP pool
(MKL on GNU OpenMP: `blas.row_blocks`), and with OpenBLAS, whose threads spin
after every call, one block runs with the BLAS's own threads. A row's numbers
do not depend on the blocks beyond rounding (a BLAS product over fewer rows
may take another kernel; the panels' sums do not depend on the rows).

The measurements behind these choices: BENCHMARKS.md, "Measurements behind the CPU kernels' design".
"""

import numpy as np
from numba import njit, prange

from numbanets.kernels.cpu.blas import gemm, set_local_threads
from numbanets.kernels.cpu.jit import JIT_OPTIONS
from numbanets.kernels.cpu.packed_gemm import gemm_packed, loop_row_blocks, pack_b, packing
from numbanets.kernels.cpu.rnn import sequence_param_grads
from numbanets.kernels.cpu.vmath import one_like, sigmoid, tanh

__all__ = ["lstm_forward", "lstm_backward", "lstm_forward_gates", "lstm_backward_gates"]


@njit(**JIT_OPTIONS)
def _lstm_step(g, r, b, c_prev, c, h):
    # one batch row: g (4H,) holds x_t @ w_ih.T, r (4H,) = h_{t-1} @ w_hh.T, b (4H,), c_prev (H,)
    #   -> g = gates after their nonlinearity (in place), c, h (H,)
    # LLVM vectorises this loop (8 float32 lanes) as written: over 1-D rows, with the
    # gate offsets written inline. The same loop over 2-D indices, or with the offsets
    # held in locals (jf = j + H), stays scalar (numba 0.68).
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


@njit(**JIT_OPTIONS)
def _forward_rows(gates, h0, c0, w_hh, b, hs, cs, lo, hi, pack):
    # the time loop for batch rows lo..hi-1 (gates, hs, cs written in place on those rows);
    # w_hh.T packed once for the loop when `pack`
    T, N, G = gates.shape
    rec = np.empty((hi - lo, G), dtype=gates.dtype)  # h_{t-1} @ w_hh.T of these rows
    packed = pack_b(w_hh, True, hi - lo, pack)
    for t in range(T):
        if t == 0:
            gemm_packed(h0[lo:hi], w_hh, True, packed, rec, pack)
            for n in range(lo, hi):
                _lstm_step(gates[0, n], rec[n - lo], b, c0[n], cs[0, n], hs[0, n])
        else:
            gemm_packed(hs[t - 1, lo:hi], w_hh, True, packed, rec, pack)
            for n in range(lo, hi):
                _lstm_step(gates[t, n], rec[n - lo], b, cs[t - 1, n], cs[t, n], hs[t, n])


@njit(parallel=True, **JIT_OPTIONS)
def _forward_row_blocks(gates, h0, c0, w_hh, b, hs, cs, blocks, pack):
    # _forward_rows for `blocks` contiguous blocks of the batch rows, one per thread
    N = gates.shape[1]
    for k in prange(blocks):
        previous = set_local_threads(1)  # one MKL thread per block, even where the caller chose more
        _forward_rows(gates, h0, c0, w_hh, b, hs, cs, k * N // blocks, (k + 1) * N // blocks, pack)
        set_local_threads(previous)


@njit(**JIT_OPTIONS)
def lstm_forward(x, h0, c0, w_ih, w_hh, b):
    # x (T, N, D)  h0, c0 (N, H)  w_ih (4H, D)  w_hh (4H, H)  b (4H,)
    #   -> hs (T, N, H), cs (T, N, H), gates (T, N, 4H) after their nonlinearity (i, f, g, o)
    T, N, D = x.shape
    G = w_ih.shape[0]
    # input projection of all steps: one GEMM, finished in place into the gates
    gates = np.empty((T, N, G), dtype=x.dtype)
    gemm(x.reshape(T * N, D), False, w_ih, True, gates.reshape(T * N, G))
    return lstm_forward_gates(gates, h0, c0, w_hh, b)


@njit(**JIT_OPTIONS)
def lstm_forward_gates(gates, h0, c0, w_hh, b):
    # gates (T, N, 4H) holding the input projections x_t @ w_ih.T (finished in place)
    # h0, c0 (N, H)  w_hh (4H, H)  b (4H,)
    #   -> hs (T, N, H), cs (T, N, H), gates (T, N, 4H) after their nonlinearity (i, f, g, o)
    # (the time loop of lstm_forward; also used with a row gather of w_ih for one-hot input)
    T, N, G = gates.shape
    H = G // 4
    hs = np.empty((T, N, H), dtype=gates.dtype)
    cs = np.empty((T, N, H), dtype=gates.dtype)
    pack = packing()
    blocks = loop_row_blocks(N, H, pack)
    if blocks > 1:
        _forward_row_blocks(gates, h0, c0, w_hh, b, hs, cs, blocks, pack)
    else:
        _forward_rows(gates, h0, c0, w_hh, b, hs, cs, 0, N, pack)
    return hs, cs, gates


@njit(**JIT_OPTIONS)
def _lstm_grad_step(da, dh_out, dh_rec, dc, g, c, c_prev):
    # one batch row: da (4H,) out; dh_out = dL/dh_t from outside, dh_rec = da_{t+1} @ w_hh (H,);
    # dc (H,) = dL/dc_t from step t+1 on entry, dL/dc_{t-1} on exit (in place);
    # g (4H,) gates after their nonlinearity; c, c_prev (H,)
    # (offsets inline, as in _lstm_step, so that LLVM vectorises the loop)
    H = c.shape[0]
    one = one_like(c)
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


@njit(**JIT_OPTIONS)
def _backward_rows(dhs, c0, w_hh, cs, gates, da, dh_next, dc, lo, hi, pack):
    # the BPTT loop for batch rows lo..hi-1: da written, dh_next and dc carried in place on those rows;
    # w_hh packed once for the loop when `pack`
    T = gates.shape[0]
    packed = pack_b(w_hh, False, hi - lo, pack)
    for t in range(T - 1, -1, -1):
        if t == 0:
            for n in range(lo, hi):
                _lstm_grad_step(da[0, n], dhs[0, n], dh_next[n], dc[n], gates[0, n], cs[0, n], c0[n])
        else:
            for n in range(lo, hi):
                _lstm_grad_step(da[t, n], dhs[t, n], dh_next[n], dc[n], gates[t, n], cs[t, n], cs[t - 1, n])
        gemm_packed(da[t, lo:hi], w_hh, False, packed, dh_next[lo:hi], pack)


@njit(parallel=True, **JIT_OPTIONS)
def _backward_row_blocks(dhs, c0, w_hh, cs, gates, da, dh_next, dc, blocks, pack):
    # _backward_rows for `blocks` contiguous blocks of the batch rows, one per thread
    N = gates.shape[1]
    for k in prange(blocks):
        previous = set_local_threads(1)
        _backward_rows(dhs, c0, w_hh, cs, gates, da, dh_next, dc, k * N // blocks, (k + 1) * N // blocks, pack)
        set_local_threads(previous)


@njit(**JIT_OPTIONS)
def lstm_backward(dhs, dc_T, x, h0, c0, w_ih, w_hh, hs, cs, gates):
    # dhs (T, N, H)  dc_T (N, H)  x (T, N, D)  h0, c0 (N, H)  w_ih (4H, D)  w_hh (4H, H)
    # hs, cs (T, N, H)  gates (T, N, 4H)
    #   -> dx (T, N, D), dh0 (N, H), dc0 (N, H), dw_ih (4H, D), dw_hh (4H, H), db (4H,)
    da, dh0, dc0 = lstm_backward_gates(dhs, dc_T, h0, c0, w_hh, hs, cs, gates)
    dx, dw_ih, dw_hh, db = sequence_param_grads(da, x, h0, hs, w_ih)
    return dx, dh0, dc0, dw_ih, dw_hh, db


@njit(**JIT_OPTIONS)
def lstm_backward_gates(dhs, dc_T, h0, c0, w_hh, hs, cs, gates):
    # dhs (T, N, H)  dc_T (N, H)  h0, c0 (N, H)  w_hh (4H, H)  hs, cs (T, N, H)  gates (T, N, 4H)
    #   -> da (T, N, 4H) pre-activation gradients, dh0 (N, H), dc0 (N, H)
    # (the BPTT loop of lstm_backward, before the whole-sequence parameter GEMMs)
    T, N, H = hs.shape
    G = gates.shape[2]
    da = np.empty((T, N, G), dtype=hs.dtype)
    dh_next = np.zeros((N, H), dtype=hs.dtype)  # da_{t+1} @ w_hh; becomes dh0
    dc = dc_T.copy()  # becomes dc0
    pack = packing()
    blocks = loop_row_blocks(N, H, pack)
    if blocks > 1:
        _backward_row_blocks(dhs, c0, w_hh, cs, gates, da, dh_next, dc, blocks, pack)
    else:
        _backward_rows(dhs, c0, w_hh, cs, gates, da, dh_next, dc, 0, N, pack)
    return da, dh_next, dc
