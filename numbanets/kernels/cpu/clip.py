"""Pieces of global-norm gradient clipping (Pascanu et al. 2013) on the CPU.

numbanets.functional.clip_grad_norm sums `sum_squares` over all gradient
arrays, takes the square root and, when it exceeds max_norm, calls `scale_`
on every array.
"""

import numpy as np
from numba import njit

__all__ = ["sum_squares", "scale_"]


@njit(cache=True)
def sum_squares(a):
    # a (any shape) -> float: sum of a^2, accumulated in float64
    af = a.ravel()
    acc = 0.0
    for i in range(af.size):
        v = np.float64(af[i])
        acc += v * v
    return acc


@njit(cache=True)
def scale_(a, s):
    # a (any shape, C-contiguous), s scalar -> None; a *= s in place
    af = a.reshape(a.size)  # a view; raises instead of silently copying a non-contiguous a
    for i in range(af.size):
        af[i] = af[i] * s
