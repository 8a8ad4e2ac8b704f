"""The element-wise array chores of device training (CUDA twins of numbanets.nn.arrays).

    fill_zero(a)                  a[...] = 0 in place
    add_(a, b)                    a += b in place (gradient accumulation)
    mul(a, b)                     a * b, a new device array (dropout masks)
    zeros(shape, dtype)           zeros on the device (numbanets.kernels.cuda.zeros)
    one_hot(ids, depth, dtype)    ids int64 (...,) device array -> (..., depth) one-hot device array

numbanets.nn.arrays calls these for numba CUDA device arrays, so a training step
on the GPU keeps parameters, gradients, optimizer state and activations on the
device. One grid-stride 1-D kernel launch each; arrays C-contiguous, float32
or float64 (a and b of one dtype).
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from numbanets.kernels.cuda import contiguous, empty, fill_, flat, grid_1d, zeros
from numbanets.kernels.cuda.registry import register

__all__ = ["fill_zero", "add_", "mul", "zeros", "one_hot"]


@register("add_1d", "{f}[::1], {f}[::1]")
def _add_1d(a, b):
    # a, b (n,) -> a += b in place
    start = cuda.grid(1)
    step = cuda.gridsize(1)
    for i in range(start, a.shape[0], step):
        a[i] += b[i]


@register("mul_1d", "{f}[::1], {f}[::1], {f}[::1]")
def _mul_1d(a, b, out):
    # a, b (n,) -> out (n,) = a * b
    start = cuda.grid(1)
    step = cuda.gridsize(1)
    for i in range(start, out.shape[0], step):
        out[i] = a[i] * b[i]


@register("one_hot_rows", "int64[::1], {f}[:, ::1]")
def _one_hot_rows(ids, out):
    # ids (M,) in 0..K-1 -> out (M, K): out[m, k] = 1 if ids[m] == k else 0 (every element written)
    depth = out.shape[1]
    total = out.shape[0] * depth
    one = out.dtype.type(1.0)
    zero = one - one
    start = cuda.grid(1)
    step = cuda.gridsize(1)
    for idx in range(start, total, step):
        m = idx // depth
        k = idx - m * depth
        out[m, k] = one if ids[m] == k else zero


def _check_pair(a, b, what):
    if tuple(a.shape) != tuple(b.shape) or np.dtype(a.dtype) != np.dtype(b.dtype):
        raise ValueError(f"{what} needs arrays of one shape and dtype, got {a.dtype} {tuple(a.shape)} "
                         f"and {b.dtype} {tuple(b.shape)}")


def fill_zero(a):
    """a[...] = 0 in place (a C-contiguous device array); returns a."""
    fill_(a, 0)
    return a


def add_(a, b):
    """a += b in place on the device (a C-contiguous; b copied to contiguous if needed); returns a."""
    _check_pair(a, b, "add_")
    if a.size:
        fa = flat(a)
        blocks, threads = grid_1d(fa.shape[0])
        _add_1d[blocks, threads](fa, flat(contiguous(b)))
    return a


def mul(a, b):
    """a * b element-wise as a new C-contiguous device array."""
    _check_pair(a, b, "mul")
    out = empty(a.shape, a.dtype)
    if a.size:
        fo = flat(out)
        blocks, threads = grid_1d(fo.shape[0])
        _mul_1d[blocks, threads](flat(contiguous(a)), flat(contiguous(b)), fo)
    return out


def one_hot(ids, depth, dtype):
    """ids: int64 device array of any shape, values in 0..depth-1 -> one-hot device array (*ids.shape, depth)."""
    shape = tuple(ids.shape)
    size = int(np.prod(shape, dtype=np.int64))
    out = empty((size, int(depth)), dtype)
    if size and depth:
        blocks, threads = grid_1d(size * int(depth))
        _one_hot_rows[blocks, threads](flat(contiguous(ids)), out)
    return out.reshape(shape + (int(depth),))


_ = zeros  # re-exported: numbanets.nn.arrays looks every twin up here
