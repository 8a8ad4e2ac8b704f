"""LSTM over a whole sequence, forward and backpropagation through time (CUDA).

Gate rows of w_ih (4H, D), w_hh (4H, H), b (4H,) are i, f, g, o (torch.nn.LSTM):

    a_t = x_t @ w_ih.T + h_{t-1} @ w_hh.T + b
    i, f, o = sigmoid(a_i, a_f, a_o)    g = tanh(a_g)
    c_t = f * c_{t-1} + i * g           h_t = o * tanh(c_t)

The same signatures and results as numbanets.kernels.cpu.lstm, on numba CUDA
device arrays (in and out). The host loop over time only launches kernels.

Forward: the input projection of every step is ONE gemm (T*N, D) @ (D, 4H),
written straight into the gates array; per step one gemm h_{t-1} @ w_hh.T
into a buffer and ONE fused element-wise kernel (`lstm_step`, one thread per
(n, j)) that finishes all four gates in place (after their nonlinearity) and
writes c_t and h_t.

Backward: per step (t = T-1 .. 0) one fused element-wise kernel
(`lstm_grad_step`: the four pre-activation gradients da_t and the running
dc, from dhs_t + dh_next) and one gemm (dh_next = da_t @ w_hh); after the
loop dx, dw_ih, dw_hh and db are whole-sequence gemms (rnn.sequence_param_grads).
tanh(c_t) is recomputed, not stored. The first backward step reads dc_T and
writes dc, so dc_T is never modified and needs no copy.

Path: lstm_forward/lstm_backward hand small problems to the persistent kernel
(lstm_persistent.py: one launch per sequence, w_hh on chip) and keep the launch
loop above otherwise. `lstm_path` decides: NUMBANETS_LSTM or set_lstm_path
auto|loop|persistent; auto takes the persistent kernel on a GPU when
lstm_persistent.device_plan fits (batch and w_hh slice per SM), and the loop under
the simulator (its grid sync covers one block only; tests ask for the kernel).
"""

from __future__ import annotations

import math
import os

from numba import cuda

from numbanets.kernels.cuda import SIMULATOR, empty, grid_1d, lstm_persistent, zeros
from numbanets.kernels.cuda.gemm import gemm
from numbanets.kernels.cuda.registry import register
from numbanets.kernels.cuda.rnn import sequence_param_grads

__all__ = ["PATHS", "lstm_backward", "lstm_forward", "lstm_path", "set_lstm_path"]

PATHS = ("auto", "loop", "persistent")
_path = {"request": os.environ.get("NUMBANETS_LSTM", "auto").strip().lower() or "auto"}


def set_lstm_path(request: str = "auto") -> None:
    """auto | loop | persistent for every later lstm_forward/lstm_backward (ValueError otherwise)."""
    if request not in PATHS:
        raise ValueError(f"the LSTM path must be one of {', '.join(PATHS)}, got {request!r}")
    _path["request"] = request


def lstm_path(steps: int, batch: int, hidden: int, dtype) -> tuple[str, str]:
    """("persistent" | "loop", reason) for a sequence of this size on the current device."""
    request = _path["request"]
    if request not in PATHS:
        raise ValueError(f"NUMBANETS_LSTM must be one of {', '.join(PATHS)}, got {request!r}")
    if request == "loop":
        return "loop", "asked for the launch loop"
    if steps < 1:
        return "loop", "empty sequence"
    if request == "auto" and SIMULATOR:
        return "loop", "simulator: grid sync spans one block, the persistent kernel runs only when asked"
    fits, why = lstm_persistent.device_plan(hidden, batch, dtype)
    if fits is None:
        if request == "persistent":
            raise ValueError(f"the persistent LSTM was asked for but does not fit: {why}")
        return "loop", why
    return "persistent", why


@register("lstm_step", "{f}[:, ::1], {f}[:, ::1], {f}[::1], {f}[:, ::1], {f}[:, ::1], {f}[:, ::1]")
def _lstm_step(g, rec, b, c_prev, c, h):
    # g (N, 4H) holds x_t @ w_ih.T, rec (N, 4H) = h_{t-1} @ w_hh.T, b (4H,), c_prev (N, H)
    #   -> g = gates after their nonlinearity (in place), c, h (N, H)
    hidden = c.shape[1]
    total = c.shape[0] * hidden
    one = c.dtype.type(1.0)
    zero = one - one
    start = cuda.grid(1)
    step = cuda.gridsize(1)
    for idx in range(start, total, step):
        n = idx // hidden
        j = idx - n * hidden
        jf = j + hidden
        jg = jf + hidden
        jo = jg + hidden
        ai = g[n, j] + rec[n, j] + b[j]
        af = g[n, jf] + rec[n, jf] + b[jf]
        ag = g[n, jg] + rec[n, jg] + b[jg]
        ao = g[n, jo] + rec[n, jo] + b[jo]
        # sigmoids in the two-branch form: exp never overflows
        if ai >= zero:
            i = one / (one + math.exp(-ai))
        else:
            e = math.exp(ai)
            i = e / (one + e)
        if af >= zero:
            f = one / (one + math.exp(-af))
        else:
            e = math.exp(af)
            f = e / (one + e)
        if ao >= zero:
            o = one / (one + math.exp(-ao))
        else:
            e = math.exp(ao)
            o = e / (one + e)
        gg = math.tanh(ag)
        cj = f * c_prev[n, j] + i * gg
        g[n, j] = i
        g[n, jf] = f
        g[n, jg] = gg
        g[n, jo] = o
        c[n, j] = cj
        h[n, j] = o * math.tanh(cj)


@register("lstm_grad_step",
          "{f}[:, ::1], {f}[:, ::1], {f}[:, ::1], {f}[:, ::1], {f}[:, ::1], {f}[:, ::1], {f}[:, ::1], {f}[:, ::1]")
def _lstm_grad_step(da, dh_out, dh_rec, dc_in, dc_out, g, c, c_prev):
    # da (N, 4H) out; dh_out = dL/dh_t from outside, dh_rec = da_{t+1} @ w_hh (N, H);
    # dc_in (N, H) = dL/dc_t from step t+1 -> dc_out (N, H) = dL/dc_{t-1} (dc_out may be dc_in);
    # g (N, 4H) gates after their nonlinearity; c = c_t, c_prev = c_{t-1} (N, H)
    hidden = c.shape[1]
    total = c.shape[0] * hidden
    one = c.dtype.type(1.0)
    start = cuda.grid(1)
    step = cuda.gridsize(1)
    for idx in range(start, total, step):
        n = idx // hidden
        j = idx - n * hidden
        jf = j + hidden
        jg = jf + hidden
        jo = jg + hidden
        i = g[n, j]
        f = g[n, jf]
        gg = g[n, jg]
        o = g[n, jo]
        tc = math.tanh(c[n, j])
        dh = dh_out[n, j] + dh_rec[n, j]
        dcj = dc_in[n, j] + dh * o * (one - tc * tc)
        da[n, j] = dcj * gg * (i * (one - i))
        da[n, jf] = dcj * c_prev[n, j] * (f * (one - f))
        da[n, jg] = dcj * i * (one - gg * gg)
        da[n, jo] = dh * tc * (o * (one - o))
        dc_out[n, j] = dcj * f


def lstm_forward(x, h0, c0, w_ih, w_hh, b):
    # x (T, N, D)  h0, c0 (N, H)  w_ih (4H, D)  w_hh (4H, H)  b (4H,)
    #   -> hs (T, N, H), cs (T, N, H), gates (T, N, 4H) after their nonlinearity (i, f, g, o)
    T, N, D = x.shape
    G = w_ih.shape[0]
    H = G // 4
    dtype = x.dtype
    if lstm_path(T, N, H, dtype)[0] == "persistent":
        return lstm_persistent.lstm_forward(x, h0, c0, w_ih, w_hh, b)
    # input projection of all steps: one gemm, finished in place into the gates
    gates = empty((T, N, G), dtype)
    gemm(x.reshape(T * N, D), w_ih, gates.reshape(T * N, G), trans_b=True)
    hs = empty((T, N, H), dtype)
    cs = empty((T, N, H), dtype)
    rec = empty((N, G), dtype)
    step = _lstm_step[grid_1d(N * H)]  # launch configuration made once, outside the loop
    h_prev, c_prev = h0, c0
    for t in range(T):
        ht, ct = hs[t], cs[t]
        gemm(h_prev, w_hh, rec, trans_b=True)
        step(gates[t], rec, b, c_prev, ct, ht)
        h_prev, c_prev = ht, ct
    return hs, cs, gates


def lstm_backward(dhs, dc_T, x, h0, c0, w_ih, w_hh, hs, cs, gates):
    # dhs (T, N, H)  dc_T (N, H)  x (T, N, D)  h0, c0 (N, H)  w_ih (4H, D)  w_hh (4H, H)
    # hs, cs (T, N, H)  gates (T, N, 4H)
    #   -> dx (T, N, D), dh0 (N, H), dc0 (N, H), dw_ih (4H, D), dw_hh (4H, H), db (4H,)
    T, N, H = hs.shape
    G = gates.shape[2]
    dtype = hs.dtype
    if lstm_path(T, N, H, dtype)[0] == "persistent":
        return lstm_persistent.lstm_backward(dhs, dc_T, x, h0, c0, w_ih, w_hh, hs, cs, gates)
    da = empty((T, N, G), dtype)
    dh_next = zeros((N, H), dtype)  # da_{t+1} @ w_hh; becomes dh0
    dc = empty((N, H), dtype)       # dL/dc, becomes dc0 (the first step reads dc_T)
    grad_step = _lstm_grad_step[grid_1d(N * H)]
    dc_in = dc_T
    for t in range(T - 1, -1, -1):
        da_t = da[t]
        c_prev = c0 if t == 0 else cs[t - 1]
        grad_step(da_t, dhs[t], dh_next, dc_in, dc, gates[t], cs[t], c_prev)
        dc_in = dc
        gemm(da_t, w_hh, dh_next)
    dx, dw_ih, dw_hh, db = sequence_param_grads(da, x, h0, hs, w_ih)
    return dx, dh_next, dc, dw_ih, dw_hh, db
