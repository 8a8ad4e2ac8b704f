"""Pieces of global-norm gradient clipping (Pascanu et al. 2013) on the GPU.

    sum_squares(a) -> float     grid-wide reduction in float64, two launches:
        1. every block runs a grid-stride loop over a, reduces its threads'
           partial sums in shared memory and writes one partial per block;
        2. one block adds the partials (fixed order: deterministic).
        Only the final float64 comes to the host.
    scale_(a, s)                a *= s in place, 1-D grid-stride loop.

numbanets.functional.clip_grad_norm sums `sum_squares` over the gradient
arrays, takes the square root and, when it exceeds max_norm, calls `scale_`.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import cuda

from numbanets.kernels.cuda import REDUCE_THREADS, block_sum, contiguous, empty, flat, grid_1d
from numbanets.kernels.cuda.registry import register

__all__ = ["sum_squares", "scale_"]


@register("sum_squares_partial", "{f}[::1], float64[::1]", threads=REDUCE_THREADS)
def _sum_squares_partial(a, partial):
    # a (n,) -> partial (blocks,): partial[b] = sum of a[i]^2 over block b's grid-stride share
    buf = cuda.shared.array(REDUCE_THREADS, dtype=numba.float64)
    start = cuda.grid(1)
    step = cuda.gridsize(1)
    acc = 0.0
    for i in range(start, a.shape[0], step):
        v = float(a[i])
        acc += v * v
    acc = block_sum(buf, acc)
    if cuda.threadIdx.x == 0:
        partial[cuda.blockIdx.x] = acc


@register("sum_1d_into", "float64[::1], float64[::1]", threads=REDUCE_THREADS)
def _sum_1d_into(partial, result):
    # partial (m,) -> result (1,) = sum(partial); one block
    buf = cuda.shared.array(REDUCE_THREADS, dtype=numba.float64)
    acc = 0.0
    for i in range(cuda.threadIdx.x, partial.shape[0], REDUCE_THREADS):
        acc += partial[i]
    acc = block_sum(buf, acc)
    if cuda.threadIdx.x == 0:
        result[0] = acc


@register("scale_1d", "{f}[::1], float64")
def _scale_1d(a, s):
    # a (n,), s -> a *= s in place
    start = cuda.grid(1)
    step = cuda.gridsize(1)
    for i in range(start, a.shape[0], step):
        a[i] = a[i] * s


def sum_squares(a):
    # a (any shape) -> float: sum of a^2, accumulated in float64
    if a.size == 0:
        return 0.0
    af = flat(contiguous(a))
    blocks, _ = grid_1d(af.shape[0], REDUCE_THREADS)
    partial = empty(blocks, np.float64)
    result = empty(1, np.float64)
    _sum_squares_partial[blocks, REDUCE_THREADS](af, partial)
    _sum_1d_into[1, REDUCE_THREADS](partial, result)
    return float(result.copy_to_host()[0])


def scale_(a, s):
    # a (any shape, C-contiguous), s scalar -> None; a *= s in place
    if a.size == 0:
        return
    af = flat(a)
    blocks, threads = grid_1d(af.shape[0])
    _scale_1d[blocks, threads](af, float(s))

