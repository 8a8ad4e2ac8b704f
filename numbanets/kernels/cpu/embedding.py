"""One-hot input to a recurrent layer, without the one-hot matrix (CPU).

A one-hot vector e_v times w_ih.T is row v of w_ih.T, so the input projection
of a whole window of character ids is a row gather instead of a GEMM over a
(T*N, D) matrix that is all zeros but one 1 per row: the same numbers (each
entry is 1 * w plus exact zeros), with no GEMM and no one-hot array. In the
backward pass dw_ih = da^T onehot is a scatter-add of the rows of da into the
columns of the ids, and no dx is computed (nothing flows into the ids).

    one_hot_projection(ids, w_ih)                 ids (T, N) int64 in 0..D-1, w_ih (G, D) -> (T, N, G)
    one_hot_param_grads(da, ids, d, h0, hs)       -> dw_ih (G, D), dw_hh (G, H), db (G,)
    one_hot_input_grads(da, ids, d)               -> dw_ih (G, D), db (G,)   (the GRU's input side)

dw_hh and db are computed as in rnn.sequence_param_grads (the RNN, G = H, and
the LSTM, G = 4H).
"""

import numpy as np
from numba import njit

from numbanets.kernels.cpu.blas import gemm, gemm_acc
from numbanets.kernels.cpu.jit import JIT_OPTIONS

__all__ = ["one_hot_projection", "one_hot_param_grads", "one_hot_input_grads"]


@njit(**JIT_OPTIONS)
def one_hot_projection(ids, w_ih):
    # ids (T, N) int64 in 0..D-1  w_ih (G, D)  -> out (T, N, G) = onehot(ids) @ w_ih.T, a row gather
    T, N = ids.shape
    G, D = w_ih.shape
    w_t = np.ascontiguousarray(w_ih.T)  # (D, G): row v is the projection of character v
    out = np.empty((T, N, G), dtype=w_ih.dtype)
    for t in range(T):
        for n in range(N):
            row = w_t[ids[t, n]]
            dst = out[t, n]
            for g in range(G):
                dst[g] = row[g]
    return out


@njit(**JIT_OPTIONS)
def one_hot_input_grads(da, ids, d):
    # da (T, N, G) gradients of the input projection  ids (T, N) int64 in 0..d-1
    #   -> dw_ih (G, d) = da^T onehot (scatter-add), db (G,) = sum of da's rows
    T, N, G = da.shape
    da2 = da.reshape(T * N, G)
    ids2 = ids.reshape(T * N)
    acc = np.zeros((d, G), dtype=da.dtype)  # dw_ih.T: contiguous rows to add into
    db = np.zeros(G, dtype=da.dtype)
    for m in range(T * N):
        dst = acc[ids2[m]]
        src = da2[m]
        for g in range(G):
            dst[g] += src[g]
            db[g] += src[g]
    return np.ascontiguousarray(acc.T), db


@njit(**JIT_OPTIONS)
def one_hot_param_grads(da, ids, d, h0, hs):
    # da (T, N, G) pre-activation gradients  ids (T, N) int64 in 0..d-1  h0 (N, H)  hs (T, N, H)
    #   -> dw_ih (G, d) = da^T onehot (scatter-add), dw_hh (G, H), db (G,)
    T, N, G = da.shape
    H = hs.shape[2]
    dw_ih, db = one_hot_input_grads(da, ids, d)
    # h_prev of step t is h0 for t = 0 and hs[t-1] after: two GEMMs, no copy
    dw_hh = np.empty((G, H), dtype=da.dtype)
    gemm(da[0], True, h0, False, dw_hh)
    if T > 1:
        gemm_acc(da.reshape(T * N, G)[N:], True, hs.reshape(T * N, H)[: (T - 1) * N], False, dw_hh)
    return dw_ih, dw_hh, db
