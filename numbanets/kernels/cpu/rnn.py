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

Arithmetic stays in the input dtype (float32 or float64); `one_like` gives the
constant 1 in that dtype so float32 kernels do not widen to float64. sigmoid and
tanh are vmath's vectorisable versions (no libm calls).

Threads and the per-step product: as the LSTM (lstm.py). The batch rows are
independent sequences; from blas.PARALLEL_MIN_ELEMENTS (N * H) on they run in
one block per numba thread, each block through the whole time loop
(`packed_gemm.loop_row_blocks`). The per-step products use w_hh packed once
per loop (`packed_gemm`: numbanets' panels where the CPU has FMA, else MKL's
packed API where `worth_packing` says it pays, else the plain gemm).
"""

import numpy as np
from numba import njit, prange

from numbanets.kernels.codes import IDENTITY, RELU, SIGMOID, TANH
from numbanets.kernels.cpu.blas import gemm, gemm_acc, set_local_threads
from numbanets.kernels.cpu.jit import JIT_OPTIONS
from numbanets.kernels.cpu.packed_gemm import gemm_packed, loop_row_blocks, pack_b, packing
from numbanets.kernels.cpu.vmath import one_like, sigmoid, tanh

__all__ = ["rnn_forward", "rnn_backward", "rnn_forward_projected", "rnn_backward_preactivations"]

_ = IDENTITY  # the fall-through branch of every activation switch


# --------------------------------------------------------------------------- RNN

@njit(**JIT_OPTIONS)
def _rnn_step(ht, rec, b, act):
    # ht (N, H) holds x_t @ w_ih.T; rec (N, H) = h_{t-1} @ w_hh.T; b (H,)
    #   -> ht = act(ht + rec + b), in place
    # (loops over 1-D rows: LLVM vectorises them; the same loops over 2-D indices it does not)
    n_rows, hidden = ht.shape
    zero = one_like(ht) - one_like(ht)
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


@njit(**JIT_OPTIONS)
def rnn_forward(x, h0, w_ih, w_hh, b, act):
    # x (T, N, D)  h0 (N, H)  w_ih (H, D)  w_hh (H, H)  b (H,)  act code  -> hs (T, N, H)
    T, N, D = x.shape
    H = w_hh.shape[0]
    # input projection of all steps: one GEMM, written into hs and finished in place
    hs = np.empty((T, N, H), dtype=x.dtype)
    gemm(x.reshape(T * N, D), False, w_ih, True, hs.reshape(T * N, H))
    return rnn_forward_projected(hs, h0, w_hh, b, act)


@njit(**JIT_OPTIONS)
def rnn_forward_projected(hs, h0, w_hh, b, act):
    # hs (T, N, H) holding the input projections x_t @ w_ih.T (finished in place)
    # h0 (N, H)  w_hh (H, H)  b (H,)  act code  -> hs (T, N, H)
    # (the time loop of rnn_forward; also used with a row gather of w_ih for one-hot input)
    T, N, H = hs.shape
    pack = packing()
    blocks = loop_row_blocks(N, H, pack)
    if blocks > 1:
        _forward_row_blocks(hs, h0, w_hh, b, act, blocks, pack)
    else:
        _forward_rows(hs, h0, w_hh, b, act, 0, N, pack)
    return hs


@njit(**JIT_OPTIONS)
def _forward_rows(hs, h0, w_hh, b, act, lo, hi, pack):
    # the time loop for batch rows lo..hi-1 of hs (finished in place); w_hh.T packed once when `pack`
    T, N, H = hs.shape
    rec = np.empty((hi - lo, H), dtype=hs.dtype)  # h_{t-1} @ w_hh.T of these rows
    packed = pack_b(w_hh, True, hi - lo, pack)
    for t in range(T):
        if t == 0:
            gemm_packed(h0[lo:hi], w_hh, True, packed, rec, pack)
        else:
            gemm_packed(hs[t - 1, lo:hi], w_hh, True, packed, rec, pack)
        _rnn_step(hs[t, lo:hi], rec, b, act)


@njit(parallel=True, **JIT_OPTIONS)
def _forward_row_blocks(hs, h0, w_hh, b, act, blocks, pack):
    # _forward_rows for `blocks` contiguous blocks of the batch rows, one per thread, MKL single-threaded
    N = hs.shape[1]
    for k in prange(blocks):
        previous = set_local_threads(1)
        _forward_rows(hs, h0, w_hh, b, act, k * N // blocks, (k + 1) * N // blocks, pack)
        set_local_threads(previous)


@njit(**JIT_OPTIONS)
def _rnn_grad_step(da_t, dh_t, dh_next, y, act):
    # dh_t, dh_next, y = h_t (N, H) -> da_t (N, H) = (dh_t + dh_next) * act'(from y)
    n_rows, hidden = y.shape
    one = one_like(y)
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


@njit(**JIT_OPTIONS)
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


@njit(**JIT_OPTIONS)
def rnn_backward(dhs, x, h0, w_ih, w_hh, hs, act):
    # dhs (T, N, H)  x (T, N, D)  h0 (N, H)  w_ih (H, D)  w_hh (H, H)  hs (T, N, H)  act code
    #   -> dx (T, N, D), dh0 (N, H), dw_ih (H, D), dw_hh (H, H), db (H,)
    da, dh0 = rnn_backward_preactivations(dhs, w_hh, hs, act)
    dx, dw_ih, dw_hh, db = sequence_param_grads(da, x, h0, hs, w_ih)
    return dx, dh0, dw_ih, dw_hh, db


@njit(**JIT_OPTIONS)
def rnn_backward_preactivations(dhs, w_hh, hs, act):
    # dhs (T, N, H)  w_hh (H, H)  hs (T, N, H)  act code
    #   -> da (T, N, H) pre-activation gradients, dh0 (N, H)
    # (the BPTT loop of rnn_backward, before the whole-sequence parameter GEMMs)
    T, N, H = hs.shape
    da = np.empty((T, N, H), dtype=hs.dtype)
    dh_next = np.zeros((N, H), dtype=hs.dtype)  # da_{t+1} @ w_hh; becomes dh0
    pack = packing()
    blocks = loop_row_blocks(N, H, pack)
    if blocks > 1:
        _backward_row_blocks(dhs, w_hh, hs, act, da, dh_next, blocks, pack)
    else:
        _backward_rows(dhs, w_hh, hs, act, da, dh_next, 0, N, pack)
    return da, dh_next


@njit(**JIT_OPTIONS)
def _backward_rows(dhs, w_hh, hs, act, da, dh_next, lo, hi, pack):
    # the BPTT loop for batch rows lo..hi-1: da written, dh_next carried in place on those rows;
    # w_hh packed once when `pack`
    packed = pack_b(w_hh, False, hi - lo, pack)
    for t in range(hs.shape[0] - 1, -1, -1):
        _rnn_grad_step(da[t, lo:hi], dhs[t, lo:hi], dh_next[lo:hi], hs[t, lo:hi], act)
        gemm_packed(da[t, lo:hi], w_hh, False, packed, dh_next[lo:hi], pack)


@njit(parallel=True, **JIT_OPTIONS)
def _backward_row_blocks(dhs, w_hh, hs, act, da, dh_next, blocks, pack):
    # _backward_rows for `blocks` contiguous blocks of the batch rows, one per thread, MKL single-threaded
    N = hs.shape[1]
    for k in prange(blocks):
        previous = set_local_threads(1)
        _backward_rows(dhs, w_hh, hs, act, da, dh_next, k * N // blocks, (k + 1) * N // blocks, pack)
        set_local_threads(previous)
