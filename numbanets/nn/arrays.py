"""The few array chores of the layers that are not ops: zero, accumulate, multiply, copy.

Each helper works on numpy arrays and on numba CUDA device arrays. For a device
array it calls the function of the same name in `numbanets.kernels.cuda.elementwise` when
that package provides one (the CUDA twin), and otherwise falls back to a
correct but slow host round trip, so a model on the GPU works before the
twins exist:

    fill_zero(a)        a[...] = 0 in place
    add_(a, b)          a += b in place (gradient accumulation)
    mul(a, b)           a * b, a new array (dropout masks)
    zeros_like(a)       zeros of a's shape and dtype on a's device
    zeros(shape, dtype, like)  zeros on the device of the array `like`
    copy_from_host(a, h) a[...] = h in place (load_state_dict)
    host_copy(a)        a numpy copy that shares no memory with a
"""

from __future__ import annotations

import importlib

import numpy as np

from numbanets.device import is_device_array, to_device

__all__ = ["fill_zero", "add_", "mul", "zeros_like", "zeros", "copy_from_host", "host_copy", "device_of"]


def device_of(a) -> str:
    """"cpu" for a numpy array, "cuda" for a numba CUDA device array (also the simulator's)."""
    if isinstance(a, np.ndarray):
        return "cpu"
    if is_device_array(a):
        return "cuda"
    raise TypeError(f"expected a numpy array or a numba CUDA device array, got {type(a).__name__}")


def _cuda_twin(name: str):
    """numbanets.kernels.cuda.elementwise.<name> when the CUDA package defines it, else None."""
    try:
        package = importlib.import_module("numbanets.kernels.cuda.elementwise")
    except ImportError:
        return None
    return getattr(package, name, None)


def fill_zero(a):
    """Set every element of `a` to 0 in place; returns a."""
    if isinstance(a, np.ndarray):
        a.fill(0)
        return a
    twin = _cuda_twin("fill_zero")
    if twin is not None:
        twin(a)
    else:
        a.copy_to_device(np.zeros(a.shape, dtype=a.dtype))
    return a


def add_(a, b):
    """a += b in place (same shape, dtype and device); returns a."""
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        a += b
        return a
    twin = _cuda_twin("add_")
    if twin is not None:
        twin(a, b)
    else:
        a.copy_to_device(a.copy_to_host() + b.copy_to_host())
    return a


def mul(a, b):
    """a * b element-wise as a new array on a's device."""
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return a * b
    twin = _cuda_twin("mul")
    if twin is not None:
        return twin(a, b)
    return to_device(a.copy_to_host() * b.copy_to_host())


def zeros_like(a):
    """Zeros of a's shape and dtype, on a's device."""
    if isinstance(a, np.ndarray):
        return np.zeros(a.shape, dtype=a.dtype)
    twin = _cuda_twin("zeros")
    if twin is not None:
        return twin(a.shape, a.dtype)
    return to_device(np.zeros(a.shape, dtype=a.dtype))


def zeros(shape, dtype, like):
    """Zeros of `shape` and `dtype` on the device of the array `like`."""
    if isinstance(like, np.ndarray):
        return np.zeros(shape, dtype=dtype)
    twin = _cuda_twin("zeros")
    if twin is not None:
        return twin(shape, dtype)
    return to_device(np.zeros(shape, dtype=dtype))


def copy_from_host(a, host):
    """a[...] = host in place (host a numpy array of a's shape); returns a."""
    host = np.require(host, dtype=a.dtype, requirements="C")  # keeps 0-d arrays 0-d
    if isinstance(a, np.ndarray):
        a[...] = host
    else:
        a.copy_to_device(host)
    return a


def host_copy(a) -> np.ndarray:
    """A numpy array with a's values that shares no memory with a."""
    if isinstance(a, np.ndarray):
        return a.copy()
    return a.copy_to_host()
