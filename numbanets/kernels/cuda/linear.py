"""Dense (fully connected) layer on the GPU: GEMMs through kernels/cuda/gemm.py.

    y = x @ w.T + b        x (N, D), w (O, D) (PyTorch layout), b (O,)

Also home of `sum_rows_cols`, the bias-gradient reduction conv.py shares:
a (A, F, P) -> out (F,) = sum over a and p, one block per f, float64 accumulation.
"""

from __future__ import annotations

import numba
from numba import cuda

from numbanets.kernels.cuda import REDUCE_THREADS, block_sum, empty, flat, grid_1d
from numbanets.kernels.cuda.gemm import gemm
from numbanets.kernels.cuda.registry import register

__all__ = ["linear_forward", "linear_backward", "sum_rows_cols"]


@register("add_row_bias", "{f}[::1], {f}[::1]")
def _add_row_bias(y, b):
    # y flat (N*O,)  b (O,) -> y[n, o] += b[o]
    n_out = b.shape[0]
    start = cuda.grid(1)
    step = cuda.gridsize(1)
    for t in range(start, y.shape[0], step):
        y[t] = y[t] + b[t % n_out]


@register("sum_rows_cols_kernel", "{f}[:, :, ::1], {f}[::1]", threads=REDUCE_THREADS)
def _sum_rows_cols(a, out):
    # a (A, F, P) -> out (F,) = sum_{i, p} a[i, f, p]; block f, float64 accumulation
    buf = cuda.shared.array(REDUCE_THREADS, dtype=numba.float64)
    f = cuda.blockIdx.x
    n_a = a.shape[0]
    n_p = a.shape[2]
    acc = 0.0
    for t in range(cuda.threadIdx.x, n_a * n_p, REDUCE_THREADS):
        acc += a[t // n_p, f, t % n_p]
    acc = block_sum(buf, acc)
    if cuda.threadIdx.x == 0:
        out[f] = acc


def sum_rows_cols(a):
    # a (A, F, P) C-contiguous -> (F,) in a's dtype: sum over the first and last axes
    out = empty(a.shape[1], a.dtype)
    if a.shape[1]:
        _sum_rows_cols[a.shape[1], REDUCE_THREADS](a, out)
    return out


def linear_forward(x, w, b):
    # x (N, D)  w (O, D)  b (O,)  -> y (N, O) = x @ w.T + b
    y = empty((x.shape[0], w.shape[0]), x.dtype)
    gemm(x, w, y, trans_b=True)
    if y.size:
        yf = flat(y)
        blocks, threads = grid_1d(yf.shape[0])
        _add_row_bias[blocks, threads](yf, b)
    return y


def linear_backward(dy, x, w):
    # dy (N, O)  x (N, D)  w (O, D)  -> dx (N, D) = dy @ w, dw (O, D) = dy.T @ x, db (O,) = sum_n dy
    dx = empty(x.shape, x.dtype)
    dw = empty(w.shape, w.dtype)
    gemm(dy, w, dx)
    gemm(dy, x, dw, trans_a=True)
    db = sum_rows_cols(dy.reshape(dy.shape[0], dy.shape[1], 1))
    return dx, dw, db
