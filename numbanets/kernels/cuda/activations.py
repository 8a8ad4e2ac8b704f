"""Element-wise activations and the row-wise softmax on the GPU (`numba.cuda.jit`).

Same functions and results as numbanets.kernels.cpu.activations, with the same
codes IDENTITY, TANH, SIGMOID, RELU (numbanets.kernels.codes). Element-wise kernels run
a 1-D grid-stride loop over the raveled arrays and compute in float64; the
softmax runs one block of ROW_THREADS threads per row (block-wide max, then the
sum of exponentials, both in float64).
"""

from __future__ import annotations

import math

import numba

from numba import cuda

from numbanets.kernels.codes import IDENTITY, RELU, SIGMOID, TANH  # noqa: F401  (the one table)
from numbanets.kernels.cuda import ROW_THREADS, block_max, block_sum, empty, flat, grid_1d
from numbanets.kernels.cuda.registry import register

__all__ = ["activation_forward", "activation_backward", "softmax_forward", "sigmoid", "apply", "derivative_from_output"]


# --------------------------------------------------------------------------- scalar device functions

@register("sigmoid", "float64(float64)", device=True)
def sigmoid(z):
    # float64 z -> 1 / (1 + e^-z); the two-branch form never overflows
    if z >= 0.0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


@register("apply", "float64(float64, int64)", device=True)
def apply(z, code):
    # float64 z, activation code -> float64 act(z)
    if code == TANH:
        return math.tanh(z)
    if code == SIGMOID:
        return sigmoid(z)
    if code == RELU:
        return z if z > 0.0 else 0.0
    return z


@register("derivative_from_output", "float64(float64, int64)", device=True)
def derivative_from_output(y, code):
    # float64 y = act(z), activation code -> float64 act'(z) written in terms of y
    if code == TANH:
        return 1.0 - y * y
    if code == SIGMOID:
        return y * (1.0 - y)
    if code == RELU:
        return 1.0 if y > 0.0 else 0.0
    return 1.0


# --------------------------------------------------------------------------- kernels

@register("activation_forward_1d", "{f}[::1], {f}[::1], int64")
def _activation_forward_1d(x, y, code):
    # x (n,)  code  -> y (n,) = act(x)
    start = cuda.grid(1)
    step = cuda.gridsize(1)
    for i in range(start, x.shape[0], step):
        y[i] = apply(float(x[i]), code)


@register("activation_backward_1d", "{f}[::1], {f}[::1], {f}[::1], int64")
def _activation_backward_1d(dy, y, dx, code):
    # dy (n,)  y (n,) = act(x)  code  -> dx (n,) = dy * act'(from y)
    start = cuda.grid(1)
    step = cuda.gridsize(1)
    for i in range(start, dy.shape[0], step):
        dx[i] = float(dy[i]) * derivative_from_output(float(y[i]), code)


@register("softmax_rows", "{f}[:, ::1], {f}[:, ::1]", threads=ROW_THREADS)
def _softmax_rows(x, y):
    # x (N, K) -> y (N, K) = exp(x - rowmax) / sum exp(x - rowmax); block n handles row n
    buf = cuda.shared.array(ROW_THREADS, dtype=numba.float64)
    n = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    k_cols = x.shape[1]
    m = -math.inf
    for k in range(tid, k_cols, ROW_THREADS):
        v = float(x[n, k])
        if v > m:
            m = v
    m = block_max(buf, m)
    s = 0.0
    for k in range(tid, k_cols, ROW_THREADS):
        s += math.exp(float(x[n, k]) - m)
    s = block_sum(buf, s)
    inv = 1.0 / s
    for k in range(tid, k_cols, ROW_THREADS):
        y[n, k] = math.exp(float(x[n, k]) - m) * inv


# --------------------------------------------------------------------------- host functions

def activation_forward(x, code):
    # x (any shape, C-contiguous), code -> y (x's shape and dtype) = act(x)
    y = empty(x.shape, x.dtype)
    if x.size:
        xf = flat(x)
        blocks, threads = grid_1d(xf.shape[0])
        _activation_forward_1d[blocks, threads](xf, flat(y), int(code))
    return y


def activation_backward(dy, y, code):
    # dy, y (same shape, C-contiguous), code -> dx (y's shape, dy's dtype) = dy * act'(from y)
    dx = empty(dy.shape, dy.dtype)
    if dy.size:
        dyf = flat(dy)
        blocks, threads = grid_1d(dyf.shape[0])
        _activation_backward_1d[blocks, threads](dyf, flat(y), flat(dx), int(code))
    return dx


def softmax_forward(x):
    # x (N, K) -> y (N, K), row-wise, max-subtracted
    y = empty(x.shape, x.dtype)
    if x.shape[0] and x.shape[1]:
        _softmax_rows[x.shape[0], ROW_THREADS](x, y)
    return y
