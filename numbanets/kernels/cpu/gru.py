"""GRU over a whole sequence, forward and backpropagation through time (CPU).

Gate rows of w_ih (3H, D), w_hh (3H, H), b_ih (3H,), b_hh (3H,) are r, z, n (torch.nn.GRU):

    r = sigmoid(x W_ir^T + b_ir + h W_hr^T + b_hr)
    z = sigmoid(x W_iz^T + b_iz + h W_hz^T + b_hz)
    n = tanh(x W_in^T + b_in + r * (h W_hn^T + b_hn))
    h' = (1 - z) * n + z * h

b_hn sits inside r * (...), so the two biases cannot be summed into one as the
LSTM's are: both are kept, and the step adds b_ih to the input projection and
b_hh to the recurrent one.

Forward: the input projection of every step is ONE GEMM (T*N, D) @ (D, 3H),
written into the gates array; the time loop runs inside compiled code with one
product per step (h_{t-1} @ w_hh.T, w_hh packed once per loop as the LSTM's) and
one fused pass that finishes r, z, n in place and writes h_t and
hn_t = h_{t-1} W_hn^T + b_hn (the backward needs it for dr).

Backward, per step t from T-1 down to 0, with dh = dL/dh_t:

    dn = dh (1 - z)          da_n = dn (1 - n^2)             (a_n: n's pre-activation)
    dz = dh (h_{t-1} - n)    da_z = dz z (1 - z)
    dr = da_n hn_t           da_r = dr r (1 - r)
    d(input projection)  gi = (da_r, da_z, da_n)
    d(recurrent product) gh = (da_r, da_z, da_n r)
    dh_{t-1} = dh z + gh @ w_hh                              (one GEMM per step)

and after the loop dx = gi @ w_ih, dw_ih = gi^T x, db_ih = sum gi,
dw_hh = gh^T h_prev, db_hh = sum gh as whole-sequence GEMMs.

Threads: as the LSTM (numbanets.kernels.cpu.lstm): the batch rows are split
into one block per numba thread once a step is large enough
(packed_gemm.loop_row_blocks), each thread running the whole time loop for its rows.
"""

import numpy as np
from numba import njit, prange

from numbanets.kernels.cpu.blas import gemm, gemm_acc, set_local_threads
from numbanets.kernels.cpu.jit import JIT_OPTIONS
from numbanets.kernels.cpu.packed_gemm import gemm_packed, loop_row_blocks, pack_b, packing
from numbanets.kernels.cpu.vmath import one_like, sigmoid, tanh

__all__ = ["gru_forward", "gru_backward", "gru_forward_gates", "gru_backward_gates", "gru_param_grads"]


@njit(**JIT_OPTIONS)
def _gru_step(g, r, b_ih, b_hh, h_prev, hn, h):
    # one batch row: g (3H,) holds x_t @ w_ih.T, r (3H,) = h_{t-1} @ w_hh.T, b_ih, b_hh (3H,), h_prev (H,)
    #   -> g = r, z, n after their nonlinearity (in place), hn (H,) = h_{t-1} W_hn^T + b_hn, h (H,)
    # (gate offsets inline, as in the LSTM's step, so that LLVM vectorises the loop)
    H = h.shape[0]
    one = one_like(h)
    for j in range(H):
        rr = sigmoid(g[j] + b_ih[j] + r[j] + b_hh[j])
        z = sigmoid(g[j + H] + b_ih[j + H] + r[j + H] + b_hh[j + H])
        hnj = r[j + 2 * H] + b_hh[j + 2 * H]
        n = tanh(g[j + 2 * H] + b_ih[j + 2 * H] + rr * hnj)
        g[j] = rr
        g[j + H] = z
        g[j + 2 * H] = n
        hn[j] = hnj
        h[j] = (one - z) * n + z * h_prev[j]


@njit(**JIT_OPTIONS)
def _forward_rows(gates, h0, w_hh, b_ih, b_hh, hs, hns, lo, hi, pack):
    # the time loop for batch rows lo..hi-1 (gates, hs, hns written in place on those rows)
    T, N, G = gates.shape
    rec = np.empty((hi - lo, G), dtype=gates.dtype)  # h_{t-1} @ w_hh.T of these rows
    packed = pack_b(w_hh, True, hi - lo, pack)
    for t in range(T):
        if t == 0:
            gemm_packed(h0[lo:hi], w_hh, True, packed, rec, pack)
            for n in range(lo, hi):
                _gru_step(gates[0, n], rec[n - lo], b_ih, b_hh, h0[n], hns[0, n], hs[0, n])
        else:
            gemm_packed(hs[t - 1, lo:hi], w_hh, True, packed, rec, pack)
            for n in range(lo, hi):
                _gru_step(gates[t, n], rec[n - lo], b_ih, b_hh, hs[t - 1, n], hns[t, n], hs[t, n])


@njit(parallel=True, **JIT_OPTIONS)
def _forward_row_blocks(gates, h0, w_hh, b_ih, b_hh, hs, hns, blocks, pack):
    # _forward_rows for `blocks` contiguous blocks of the batch rows, one per thread
    N = gates.shape[1]
    for k in prange(blocks):
        previous = set_local_threads(1)  # one MKL thread per block
        _forward_rows(gates, h0, w_hh, b_ih, b_hh, hs, hns, k * N // blocks, (k + 1) * N // blocks, pack)
        set_local_threads(previous)


@njit(**JIT_OPTIONS)
def gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh):
    # x (T, N, D)  h0 (N, H)  w_ih (3H, D)  w_hh (3H, H)  b_ih, b_hh (3H,)
    #   -> hs (T, N, H), gates (T, N, 3H) r, z, n after their nonlinearity, hns (T, N, H)
    T, N, D = x.shape
    G = w_ih.shape[0]
    gates = np.empty((T, N, G), dtype=x.dtype)
    gemm(x.reshape(T * N, D), False, w_ih, True, gates.reshape(T * N, G))
    return gru_forward_gates(gates, h0, w_hh, b_ih, b_hh)


@njit(**JIT_OPTIONS)
def gru_forward_gates(gates, h0, w_hh, b_ih, b_hh):
    # gates (T, N, 3H) holding the input projections x_t @ w_ih.T (finished in place)
    # h0 (N, H)  w_hh (3H, H)  b_ih, b_hh (3H,)
    #   -> hs (T, N, H), gates (T, N, 3H) r, z, n, hns (T, N, H) = h_{t-1} W_hn^T + b_hn
    # (the time loop of gru_forward; also used with a row gather of w_ih for one-hot input)
    T, N, G = gates.shape
    H = G // 3
    hs = np.empty((T, N, H), dtype=gates.dtype)
    hns = np.empty((T, N, H), dtype=gates.dtype)
    pack = packing()
    blocks = loop_row_blocks(N, H, pack)
    if blocks > 1:
        _forward_row_blocks(gates, h0, w_hh, b_ih, b_hh, hs, hns, blocks, pack)
    else:
        _forward_rows(gates, h0, w_hh, b_ih, b_hh, hs, hns, 0, N, pack)
    return hs, gates, hns


@njit(**JIT_OPTIONS)
def _gru_grad_step(gi, gh, dh_out, dh_rec, dh_z, g, hn, h_prev):
    # one batch row: gi, gh (3H,) out (input-projection and recurrent-product gradients);
    # dh_out = dL/dh_t from outside, dh_rec = gh_{t+1} @ w_hh, dh_z = dh_{t+1} * z_{t+1} on entry and
    # dh_t * z_t on exit (in place); g (3H,) r, z, n; hn (H,); h_prev (H,)
    H = hn.shape[0]
    one = one_like(hn)
    for j in range(H):
        r = g[j]
        z = g[j + H]
        n = g[j + 2 * H]
        dh = dh_out[j] + dh_rec[j] + dh_z[j]
        da_n = dh * (one - z) * (one - n * n)
        da_z = dh * (h_prev[j] - n) * (z * (one - z))
        da_r = da_n * hn[j] * (r * (one - r))
        gi[j] = da_r
        gi[j + H] = da_z
        gi[j + 2 * H] = da_n
        gh[j] = da_r
        gh[j + H] = da_z
        gh[j + 2 * H] = da_n * r
        dh_z[j] = dh * z


@njit(**JIT_OPTIONS)
def _backward_rows(dhs, h0, w_hh, hs, gates, hns, gi, gh, dh_next, dh_z, lo, hi, pack):
    # the BPTT loop for batch rows lo..hi-1: gi, gh written, dh_next and dh_z carried in place on those rows
    T = gates.shape[0]
    packed = pack_b(w_hh, False, hi - lo, pack)
    for t in range(T - 1, -1, -1):
        if t == 0:
            for n in range(lo, hi):
                _gru_grad_step(gi[0, n], gh[0, n], dhs[0, n], dh_next[n], dh_z[n], gates[0, n], hns[0, n], h0[n])
        else:
            for n in range(lo, hi):
                _gru_grad_step(gi[t, n], gh[t, n], dhs[t, n], dh_next[n], dh_z[n], gates[t, n], hns[t, n],
                               hs[t - 1, n])
        gemm_packed(gh[t, lo:hi], w_hh, False, packed, dh_next[lo:hi], pack)


@njit(parallel=True, **JIT_OPTIONS)
def _backward_row_blocks(dhs, h0, w_hh, hs, gates, hns, gi, gh, dh_next, dh_z, blocks, pack):
    # _backward_rows for `blocks` contiguous blocks of the batch rows, one per thread
    N = gates.shape[1]
    for k in prange(blocks):
        previous = set_local_threads(1)
        _backward_rows(dhs, h0, w_hh, hs, gates, hns, gi, gh, dh_next, dh_z,
                       k * N // blocks, (k + 1) * N // blocks, pack)
        set_local_threads(previous)


@njit(**JIT_OPTIONS)
def gru_backward_gates(dhs, dh_T, h0, w_hh, hs, gates, hns):
    # dhs (T, N, H)  dh_T (N, H) extra gradient into h_T  h0 (N, H)  w_hh (3H, H)  hs (T, N, H)
    # gates (T, N, 3H)  hns (T, N, H)
    #   -> gi (T, N, 3H) input-projection gradients, gh (T, N, 3H) recurrent-product gradients, dh0 (N, H)
    # (the BPTT loop of gru_backward, before the whole-sequence parameter GEMMs)
    T, N, H = hs.shape
    G = gates.shape[2]
    gi = np.empty((T, N, G), dtype=hs.dtype)
    gh = np.empty((T, N, G), dtype=hs.dtype)
    dh_next = np.zeros((N, H), dtype=hs.dtype)  # gh_{t+1} @ w_hh
    dh_z = dh_T.copy()  # dh_{t+1} * z_{t+1}; enters step T-1 as the extra gradient into h_T
    pack = packing()
    blocks = loop_row_blocks(N, H, pack)
    if blocks > 1:
        _backward_row_blocks(dhs, h0, w_hh, hs, gates, hns, gi, gh, dh_next, dh_z, blocks, pack)
    else:
        _backward_rows(dhs, h0, w_hh, hs, gates, hns, gi, gh, dh_next, dh_z, 0, N, pack)
    dh0 = dh_next + dh_z
    return gi, gh, dh0


@njit(**JIT_OPTIONS)
def _column_sums(a):
    # a (M, G) -> (G,) sum over the rows
    M, G = a.shape
    out = np.zeros(G, dtype=a.dtype)
    for m in range(M):
        row = a[m]
        for r in range(G):
            out[r] += row[r]
    return out


@njit(**JIT_OPTIONS)
def gru_param_grads(gh, h0, hs):
    # gh (T, N, 3H)  h0 (N, H)  hs (T, N, H)  -> dw_hh (3H, H) = gh^T h_prev, db_hh (3H,)
    # (h_prev of step t is h0 for t = 0 and hs[t-1] after: two GEMMs, no copy)
    T, N, G = gh.shape
    H = hs.shape[2]
    gh2 = gh.reshape(T * N, G)
    dw_hh = np.empty((G, H), dtype=gh.dtype)
    gemm(gh[0], True, h0, False, dw_hh)
    if T > 1:
        gemm_acc(gh2[N:], True, hs.reshape(T * N, H)[: (T - 1) * N], False, dw_hh)
    return dw_hh, _column_sums(gh2)


@njit(**JIT_OPTIONS)
def gru_backward(dhs, dh_T, x, h0, w_ih, w_hh, hs, gates, hns):
    # dhs (T, N, H)  dh_T (N, H)  x (T, N, D)  h0 (N, H)  w_ih (3H, D)  w_hh (3H, H)
    # hs (T, N, H)  gates (T, N, 3H)  hns (T, N, H)
    #   -> dx (T, N, D), dh0 (N, H), dw_ih (3H, D), dw_hh (3H, H), db_ih (3H,), db_hh (3H,)
    T, N, D = x.shape
    gi, gh, dh0 = gru_backward_gates(dhs, dh_T, h0, w_hh, hs, gates, hns)
    G = gi.shape[2]
    gi2 = gi.reshape(T * N, G)
    dx = np.empty((T, N, D), dtype=x.dtype)
    gemm(gi2, False, w_ih, False, dx.reshape(T * N, D))
    dw_ih = np.empty((G, D), dtype=x.dtype)
    gemm(gi2, True, x.reshape(T * N, D), False, dw_ih)
    dw_hh, db_hh = gru_param_grads(gh, h0, hs)
    return dx, dh0, dw_ih, dw_hh, _column_sums(gi2), db_hh
