"""Persistent LSTM (Diamos et al., ICML 2016): all time steps in ONE kernel launch, w_hh kept on chip.

Same definition, signatures and results as numbanets.kernels.cuda.lstm (gates
i, f, g, o). At small batch a per-step launch loop spends most of its time
launching tiny GEMMs; here the recurrent weights are read from global memory
once per sequence and every step runs inside one cooperative launch, the grid
synchronised between steps with cooperative groups (the intrinsics behind
cuda.cg.this_grid().sync(), see below; they make numba launch the kernel
cooperatively).

Partition: hidden unit j belongs to block j // units (units = ceil(H / blocks)).
    forward   the block holds the 4 rows w_hh[q*H + j, :] (q = i, f, g, o) of its
              units in shared memory: per step it computes the 4 gates of its
              (n, j) from h_{t-1} (global, written by all blocks before the sync).
    backward  the block holds the 4H entries of the COLUMNS w_hh[:, j] of its units:
              dh_t[n, j] = dhs_t[n, j] + sum_r da_{t+1}[n, r] w_hh[r, j] needs
              column j, and the step then writes da_t[n, 4 gates of j] and dc.
One thread owns (n, j) for the whole sequence (a block-stride loop over its
N * units pairs), so dc stays in that thread's own slot of a global array.
Shared memory per block: 4 * units * H * itemsize bytes (dynamic).

Fits (`plan`) when that is at most the per-block shared-memory limit with at
most one block per SM (so every block is resident: a cooperative launch's
condition), and N <= MAX_BATCH (beyond it the per-step products are real
GEMMs and the launch loop in lstm.py is the better path). Under the simulator
grid sync only supports one block, so the plan there is one block.

The input projection (one gemm) before and the weight gradients (whole-sequence
gemms, rnn.sequence_param_grads) after are the same as in lstm.py.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import cuda

from numbanets.kernels.cuda import SIMULATOR, empty
from numbanets.kernels.cuda.gemm import gemm
from numbanets.kernels.cuda.registry import register
from numbanets.kernels.cuda.rnn import sequence_param_grads

if SIMULATOR:
    from numba.cuda.simulator.kernelapi import FakeCUDACg as _FakeCg

    _this_grid = _FakeCg().this_grid  # the simulator's grid group: a block-wide barrier

    def _grid_group_sync(group):
        group.sync()
else:
    # cuda.cg.this_grid() and .sync() are @overloads whose implementations numba-cuda
    # compiles through get_current_device(), so compile_ptx fails without a GPU; the
    # intrinsics they wrap compile for any target and mark the launch cooperative.
    from numba.cuda.cg import _grid_group_sync, _this_grid

__all__ = [
    "MAX_BATCH",
    "SMEM_PER_BLOCK",
    "THREADS_P",
    "device_plan",
    "lstm_backward",
    "lstm_forward",
    "max_hidden",
    "plan",
]

MAX_BATCH = 64                        # largest N the persistent kernel takes
SMEM_PER_BLOCK = 48 * 1024            # dynamic shared memory a block gets without an opt-in attribute
THREADS_P = 32 if SIMULATOR else 256  # threads per block


def plan(hidden: int, batch: int, itemsize: int, sms: int, smem_per_block: int = SMEM_PER_BLOCK):
    """(blocks, units, shared bytes) for the persistent LSTM, or (None, reason) when it does not fit.

    blocks <= sms (one resident block per SM), units = ceil(hidden / blocks)
    hidden units per block, 4 * units * hidden * itemsize bytes of shared memory.
    """
    if hidden < 1 or batch < 1 or sms < 1:
        raise ValueError(f"plan needs positive sizes, got H={hidden}, N={batch}, SMs={sms}")
    if batch > MAX_BATCH:
        return None, f"batch {batch} > {MAX_BATCH}: per-step GEMMs"
    units = -(-hidden // min(sms, hidden))
    blocks = -(-hidden // units)
    smem = 4 * units * hidden * itemsize
    if smem > smem_per_block:
        return None, f"w_hh slice {smem} B > {smem_per_block} B shared per block on {sms} SMs"
    return (blocks, units, smem), f"{blocks} blocks x {units} units, {smem} B shared"


def max_hidden(itemsize: int, sms: int, smem_per_block: int = SMEM_PER_BLOCK) -> int:
    """Largest H the persistent kernel takes: 4 * ceil(H / sms) * H * itemsize <= smem_per_block."""
    h = 1
    while plan(h + 1, 1, itemsize, sms, smem_per_block)[0] is not None:
        h += 1
    return h


def _device_limits() -> tuple[int, int]:
    """(SM count, usable dynamic shared memory per block) of the current device."""
    if SIMULATOR:
        return 1, SMEM_PER_BLOCK  # the simulator's grid sync is a block sync: one block only
    dev = cuda.get_current_device()
    return int(dev.MULTIPROCESSOR_COUNT), min(SMEM_PER_BLOCK, int(dev.MAX_SHARED_MEMORY_PER_BLOCK))


def device_plan(hidden: int, batch: int, dtype):
    """plan() for the current device (SM count and per-block shared memory from its properties)."""
    sms, smem = _device_limits()
    return plan(hidden, batch, np.dtype(dtype).itemsize, sms, smem)


def _make_kernels(dtype_name: str):
    nbtype = getattr(numba, dtype_name)
    f = dtype_name
    fwd_sig = (f"{f}[:, :, ::1], {f}[::1], {f}[:, ::1], {f}[:, ::1], {f}[:, ::1], {f}[:, :, ::1], "
               f"{f}[:, :, ::1], int64")
    bwd_sig = (f"{f}[:, :, ::1], {f}[:, ::1], {f}[:, :, ::1], {f}[:, :, ::1], {f}[:, ::1], {f}[:, ::1], "
               f"{f}[:, :, ::1], {f}[:, ::1], {f}[:, ::1], int64")

    @register(f"lstm_persistent_forward_{f}", fwd_sig, threads=THREADS_P, dynamic_shared=SMEM_PER_BLOCK)
    def _forward(gates, b, h0, c0, w_hh, hs, cs, units):
        # gates (T, N, 4H) in: x_t @ w_ih.T, out: gates after their nonlinearity; b (4H,)
        # h0, c0 (N, H)  w_hh (4H, H) -> hs, cs (T, N, H); block owns hidden units [j0, j0 + units)
        sw = cuda.shared.array(0, nbtype)  # sw[(q * units + u) * H + k] = w_hh[q * H + j0 + u, k]
        T = gates.shape[0]
        N = gates.shape[1]
        H = hs.shape[2]
        j0 = cuda.blockIdx.x * units
        nu = min(units, H - j0)
        tid = cuda.threadIdx.x
        nt = cuda.blockDim.x
        one = nbtype(1.0)
        zero = nbtype(0.0)
        for idx in range(tid, 4 * nu * H, nt):
            r = idx // H
            k = idx - r * H
            q = r // nu
            u = r - q * nu
            sw[(q * units + u) * H + k] = w_hh[q * H + j0 + u, k]
        cuda.syncthreads()
        grid = _this_grid()
        for t in range(T):
            hp = h0 if t == 0 else hs[t - 1]
            cp = c0 if t == 0 else cs[t - 1]
            for idx in range(tid, N * nu, nt):
                n = idx // nu
                u = idx - n * nu
                j = j0 + u
                ai = gates[t, n, j] + b[j]
                af = gates[t, n, j + H] + b[j + H]
                ag = gates[t, n, j + 2 * H] + b[j + 2 * H]
                ao = gates[t, n, j + 3 * H] + b[j + 3 * H]
                bi = u * H
                bf = (units + u) * H
                bg = (2 * units + u) * H
                bo = (3 * units + u) * H
                for k in range(H):
                    hk = hp[n, k]
                    ai += hk * sw[bi + k]
                    af += hk * sw[bf + k]
                    ag += hk * sw[bg + k]
                    ao += hk * sw[bo + k]
                # sigmoids in the two-branch form: exp never overflows
                if ai >= zero:
                    i = one / (one + math.exp(-ai))
                else:
                    e = math.exp(ai)
                    i = e / (one + e)
                if af >= zero:
                    fg = one / (one + math.exp(-af))
                else:
                    e = math.exp(af)
                    fg = e / (one + e)
                if ao >= zero:
                    o = one / (one + math.exp(-ao))
                else:
                    e = math.exp(ao)
                    o = e / (one + e)
                gg = math.tanh(ag)
                cj = fg * cp[n, j] + i * gg
                gates[t, n, j] = i
                gates[t, n, j + H] = fg
                gates[t, n, j + 2 * H] = gg
                gates[t, n, j + 3 * H] = o
                cs[t, n, j] = cj
                hs[t, n, j] = o * math.tanh(cj)
            _grid_group_sync(grid)  # h_t of every block is written before any block reads it

    @register(f"lstm_persistent_backward_{f}", bwd_sig, threads=THREADS_P, dynamic_shared=SMEM_PER_BLOCK)
    def _backward(dhs, dc_T, gates, cs, c0, w_hh, da, dh0, dc, units):
        # dhs (T, N, H)  dc_T (N, H)  gates (T, N, 4H) after nonlinearity  cs (T, N, H)  c0 (N, H)
        # w_hh (4H, H) -> da (T, N, 4H), dh0 = da_0 @ w_hh (N, H), dc = dL/dc_0 (N, H)
        sw = cuda.shared.array(0, nbtype)  # sw[r * units + u] = w_hh[r, j0 + u]
        T = gates.shape[0]
        N = gates.shape[1]
        G = gates.shape[2]
        H = cs.shape[2]
        j0 = cuda.blockIdx.x * units
        nu = min(units, H - j0)
        tid = cuda.threadIdx.x
        nt = cuda.blockDim.x
        one = nbtype(1.0)
        for idx in range(tid, G * nu, nt):
            r = idx // nu
            u = idx - r * nu
            sw[r * units + u] = w_hh[r, j0 + u]
        cuda.syncthreads()
        grid = _this_grid()
        for t in range(T - 1, -1, -1):
            dc_in = dc_T if t == T - 1 else dc
            cp = c0 if t == 0 else cs[t - 1]
            for idx in range(tid, N * nu, nt):
                n = idx // nu
                u = idx - n * nu
                j = j0 + u
                dh = dhs[t, n, j]
                if t < T - 1:
                    for r in range(G):
                        dh += da[t + 1, n, r] * sw[r * units + u]
                i = gates[t, n, j]
                fg = gates[t, n, j + H]
                gg = gates[t, n, j + 2 * H]
                o = gates[t, n, j + 3 * H]
                tc = math.tanh(cs[t, n, j])
                dcj = dc_in[n, j] + dh * o * (one - tc * tc)
                da[t, n, j] = dcj * gg * (i * (one - i))
                da[t, n, j + H] = dcj * cp[n, j] * (fg * (one - fg))
                da[t, n, j + 2 * H] = dcj * i * (one - gg * gg)
                da[t, n, j + 3 * H] = dh * tc * (o * (one - o))
                dc[n, j] = dcj * fg
            _grid_group_sync(grid)  # da_t of every block is written before any block reads it
        for idx in range(tid, N * nu, nt):
            n = idx // nu
            u = idx - n * nu
            acc = nbtype(0.0)
            for r in range(G):
                acc += da[0, n, r] * sw[r * units + u]
            dh0[n, j0 + u] = acc

    return _forward, _backward


_KERNELS = {np.dtype(np.float32): _make_kernels("float32"), np.dtype(np.float64): _make_kernels("float64")}


def _plan_or_raise(steps, hidden, batch, dtype):
    if steps < 1:
        raise ValueError("the persistent LSTM needs at least one time step")
    p, why = device_plan(hidden, batch, dtype)
    if p is None:
        raise ValueError(f"the persistent LSTM does not fit: {why}")
    return p


def lstm_forward(x, h0, c0, w_ih, w_hh, b):
    # x (T, N, D)  h0, c0 (N, H)  w_ih (4H, D)  w_hh (4H, H)  b (4H,)
    #   -> hs (T, N, H), cs (T, N, H), gates (T, N, 4H) after their nonlinearity (i, f, g, o)
    T, N, D = x.shape
    G = w_ih.shape[0]
    H = G // 4
    dtype = np.dtype(x.dtype)
    blocks, units, smem = _plan_or_raise(T, H, N, dtype)
    gates = empty((T, N, G), dtype)
    gemm(x.reshape(T * N, D), w_ih, gates.reshape(T * N, G), trans_b=True)
    hs = empty((T, N, H), dtype)
    cs = empty((T, N, H), dtype)
    _KERNELS[dtype][0][blocks, THREADS_P, 0, smem](gates, b, h0, c0, w_hh, hs, cs, units)
    return hs, cs, gates


def lstm_backward(dhs, dc_T, x, h0, c0, w_ih, w_hh, hs, cs, gates):
    # dhs (T, N, H)  dc_T (N, H)  x (T, N, D)  h0, c0 (N, H)  w_ih (4H, D)  w_hh (4H, H)
    # hs, cs (T, N, H)  gates (T, N, 4H)
    #   -> dx (T, N, D), dh0 (N, H), dc0 (N, H), dw_ih (4H, D), dw_hh (4H, H), db (4H,)
    T, N, H = hs.shape
    G = gates.shape[2]
    dtype = np.dtype(hs.dtype)
    blocks, units, smem = _plan_or_raise(T, H, N, dtype)
    da = empty((T, N, G), dtype)
    dh0 = empty((N, H), dtype)
    dc = empty((N, H), dtype)
    _KERNELS[dtype][1][blocks, THREADS_P, 0, smem](dhs, dc_T, gates, cs, c0, w_hh, da, dh0, dc, units)
    dx, dw_ih, dw_hh, db = sequence_param_grads(da, x, h0, hs, w_ih)
    return dx, dh0, dc, dw_ih, dw_hh, db
