"""Dense (fully connected) layer on the CPU: GEMMs through BLAS (numbanets.kernels.cpu.blas).

    y = x @ w.T + b        x (N, D), w (O, D) (PyTorch layout), b (O,)
"""

import numpy as np
from numba import njit

from numbanets.kernels.cpu.blas import gemm

__all__ = ["linear_forward", "linear_backward"]


@njit(cache=True)
def linear_forward(x, w, b):
    # x (N, D)  w (O, D)  b (O,)  -> y (N, O) = x @ w.T + b
    y = np.empty((x.shape[0], w.shape[0]), dtype=x.dtype)
    gemm(x, False, w, True, y)
    n_rows, n_out = y.shape
    for n in range(n_rows):
        for o in range(n_out):
            y[n, o] += b[o]
    return y


@njit(cache=True)
def linear_backward(dy, x, w):
    # dy (N, O)  x (N, D)  w (O, D)  -> dx (N, D) = dy @ w, dw (O, D) = dy.T @ x, db (O,) = sum_n dy
    dx = np.empty((dy.shape[0], w.shape[1]), dtype=dy.dtype)
    gemm(dy, False, w, False, dx)
    dw = np.empty((dy.shape[1], x.shape[1]), dtype=dy.dtype)
    gemm(dy, True, x, False, dw)
    n_rows, n_out = dy.shape
    acc = np.zeros(n_out, dtype=np.float64)
    for n in range(n_rows):
        for o in range(n_out):
            acc[o] += dy[n, o]
    db = np.empty(n_out, dtype=dy.dtype)
    for o in range(n_out):
        db[o] = acc[o]
    return dx, dw, db
