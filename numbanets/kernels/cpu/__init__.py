"""CPU kernels (`numba.njit`), one module per op family.

The array helpers below are what `numbanets.functional` needs besides the
kernels; `numbanets.kernels.cuda` provides the same names for device arrays.
"""

import numpy as np

NAME = "cpu"


def zeros(shape, dtype):
    return np.zeros(shape, dtype=dtype)


def contiguous(a):
    """A C-contiguous array with the same values (a copy only when needed)."""
    if isinstance(a, np.ndarray) and a.flags.c_contiguous:
        return a  # the common case, without np.require's requirement parsing (a few microseconds a call)
    return np.require(a, requirements="C")


def reshape(a, shape):
    return a.reshape(shape)
