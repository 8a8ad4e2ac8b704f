"""CUDA kernels (`numba.cuda.jit`), one module per op family, the same names and
signatures as `numbanets.kernels.cpu`; they take and return numba CUDA device arrays.

This module holds the array helpers `numbanets.functional` needs besides the
kernels (zeros, contiguous, reshape: all on the device, no host round trip;
is_device_array is `numbanets.device.is_device_array`, re-exported)
and the launch-configuration helpers every kernel module uses:

    grid_1d(n)         (blocks, threads) for a 1-D grid-stride loop over n items
    grid_2d(rows, cols, tile)  (blocks, threads) of tile x tile blocks covering a matrix

Every kernel is declared through `registry.register` (never a bare `cuda.jit`)
so that tests/test_cuda_ptx.py compiles all of them to PTX.

Under the CUDA simulator (NUMBA_ENABLE_CUDASIM=1, one Python thread per CUDA
thread, about a millisecond each) the blocks are smaller: 1-D launches use 32
threads and at most 2 blocks, reductions 16 threads, row kernels 8 threads per
row and the GEMM 8 x 8 tiles, so the tests stay fast and still run several
blocks, partial tiles and every grid-stride loop. tests/test_cuda_ptx.py
compiles the real configuration.
"""

from __future__ import annotations

import math

import numpy as np
from numba import config, cuda

from numbanets.device import is_device_array  # noqa: F401  (the one predicate, re-exported)
from numbanets.kernels.cuda.registry import register

NAME = "cuda"

SIMULATOR = bool(getattr(config, "ENABLE_CUDASIM", False))
THREADS = 32 if SIMULATOR else 256          # threads per block of 1-D kernels
MAX_BLOCKS = 2 if SIMULATOR else 4096       # cap of 1-D grid-stride grids (H100: 132 SMs x 8 blocks x 4 waves)
REDUCE_THREADS = 16 if SIMULATOR else 256   # threads of a block-wide reduction (a power of two)
ROW_THREADS = 8 if SIMULATOR else 64        # threads per row of the row-wise kernels (softmax, loss; a power of two)

__all__ = [
    "NAME", "SIMULATOR", "THREADS", "MAX_BLOCKS", "REDUCE_THREADS", "ROW_THREADS",
    "block_sum", "block_max", "block_min", "grid_1d", "grid_2d", "empty", "flat", "fill_", "zeros",
    "contiguous", "reshape", "is_device_array",
]


# --------------------------------------------------------------------------- launch configuration

def grid_1d(n: int, threads: int = THREADS) -> tuple[int, int]:
    """(blocks, threads) for a grid-stride loop over n items (at least one block)."""
    return max(1, min(math.ceil(n / threads), MAX_BLOCKS)), threads


def grid_2d(rows: int, cols: int, tile: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """((blocks_x, blocks_y), (tile, tile)): x runs along columns, y along rows."""
    return (max(1, math.ceil(cols / tile)), max(1, math.ceil(rows / tile))), (tile, tile)


# --------------------------------------------------------------------------- block reductions (device functions)
# Called by EVERY thread of a block (they synchronise); buf is a float64 shared array of
# blockDim.x entries, blockDim.x a power of two. Each returns the block-wide result to all threads.

@register("block_sum", "float64(float64[::1], float64)", device=True)
def block_sum(buf, v):
    # buf float64 (blockDim.x,) shared, v this thread's value -> the block's sum, in every thread
    tid = cuda.threadIdx.x
    buf[tid] = v
    cuda.syncthreads()
    s = cuda.blockDim.x // 2
    while s > 0:
        if tid < s:
            buf[tid] += buf[tid + s]
        cuda.syncthreads()
        s //= 2
    r = buf[0]
    cuda.syncthreads()  # buf may be reused right after
    return r


@register("block_max", "float64(float64[::1], float64)", device=True)
def block_max(buf, v):
    # buf float64 (blockDim.x,) shared, v this thread's value -> the block's maximum, in every thread
    tid = cuda.threadIdx.x
    buf[tid] = v
    cuda.syncthreads()
    s = cuda.blockDim.x // 2
    while s > 0:
        if tid < s:
            o = buf[tid + s]
            if o > buf[tid]:
                buf[tid] = o
        cuda.syncthreads()
        s //= 2
    r = buf[0]
    cuda.syncthreads()
    return r


@register("block_min", "float64(float64[::1], float64)", device=True)
def block_min(buf, v):
    # buf float64 (blockDim.x,) shared, v this thread's value -> the block's minimum, in every thread
    tid = cuda.threadIdx.x
    buf[tid] = v
    cuda.syncthreads()
    s = cuda.blockDim.x // 2
    while s > 0:
        if tid < s:
            o = buf[tid + s]
            if o < buf[tid]:
                buf[tid] = o
        cuda.syncthreads()
        s //= 2
    r = buf[0]
    cuda.syncthreads()
    return r


# --------------------------------------------------------------------------- kernels

@register("fill_1d", ("{f}[::1], float64", "int64[::1], int64"))
def _fill_1d(a, value):
    # a (n,) -> a[:] = value
    start = cuda.grid(1)
    step = cuda.gridsize(1)
    for i in range(start, a.shape[0], step):
        a[i] = value


_COPY_SIGS = {
    ndim: tuple(
        f"{t}[{', '.join([':'] * ndim)}], {t}[::1]" for t in ("{f}", "int64")
    )
    for ndim in (1, 2, 3, 4)
}


@register("copy_strided_1d", _COPY_SIGS[1])
def _copy_strided_1d(src, dst):
    # src (A,) any strides -> dst (A,) C-contiguous
    start = cuda.grid(1)
    step = cuda.gridsize(1)
    for i in range(start, dst.shape[0], step):
        dst[i] = src[i]


@register("copy_strided_2d", _COPY_SIGS[2])
def _copy_strided_2d(src, dst):
    # src (A, B) any strides -> dst flat (A*B,) in C order
    b = src.shape[1]
    start = cuda.grid(1)
    step = cuda.gridsize(1)
    for t in range(start, dst.shape[0], step):
        dst[t] = src[t // b, t % b]


@register("copy_strided_3d", _COPY_SIGS[3])
def _copy_strided_3d(src, dst):
    # src (A, B, C) any strides -> dst flat (A*B*C,) in C order
    b = src.shape[1]
    c = src.shape[2]
    start = cuda.grid(1)
    step = cuda.gridsize(1)
    for t in range(start, dst.shape[0], step):
        k = t % c
        r = t // c
        dst[t] = src[r // b, r % b, k]


@register("copy_strided_4d", _COPY_SIGS[4])
def _copy_strided_4d(src, dst):
    # src (A, B, C, D) any strides -> dst flat (A*B*C*D,) in C order
    b = src.shape[1]
    c = src.shape[2]
    d = src.shape[3]
    start = cuda.grid(1)
    step = cuda.gridsize(1)
    for t in range(start, dst.shape[0], step):
        l = t % d
        r = t // d
        k = r % c
        r = r // c
        dst[t] = src[r // b, r % b, k, l]


_COPY_KERNELS = {1: _copy_strided_1d, 2: _copy_strided_2d, 3: _copy_strided_3d, 4: _copy_strided_4d}


# --------------------------------------------------------------------------- array helpers

def _shape(shape) -> tuple[int, ...]:
    if isinstance(shape, (int, np.integer)):
        return (int(shape),)
    return tuple(int(s) for s in shape)


def empty(shape, dtype):
    """An uninitialised C-contiguous device array."""
    return cuda.device_array(_shape(shape), dtype=np.dtype(dtype))


def flat(a):
    """A 1-D view of a C-contiguous device array."""
    return a.reshape(a.size) if a.ndim != 1 else a


def fill_(a, value) -> None:
    """a[...] = value on the device (a C-contiguous, float32/float64/int64)."""
    if a.size == 0:
        return
    f = flat(a)
    blocks, threads = grid_1d(f.shape[0])
    if np.dtype(a.dtype).kind == "i":
        _fill_1d[blocks, threads](f, int(value))
    else:
        _fill_1d[blocks, threads](f, float(value))


def zeros(shape, dtype):
    """A device array of zeros, filled by a kernel (no host copy)."""
    a = empty(shape, dtype)
    fill_(a, 0)
    return a


def _is_c_contiguous(a) -> bool:
    return bool(a.is_c_contiguous())


def contiguous(a):
    """A C-contiguous device array with the same values: `a` itself, or a copy made by a kernel."""
    if _is_c_contiguous(a):
        return a
    if a.ndim not in _COPY_KERNELS:
        raise ValueError(f"contiguous() supports device arrays of 1 to 4 dimensions, got {a.ndim}")
    out = empty(a.shape, a.dtype)
    if a.size:
        f = flat(out)
        blocks, threads = grid_1d(f.shape[0])
        _COPY_KERNELS[a.ndim][blocks, threads](a, f)
    return out


def reshape(a, shape):
    """A view of `a` with a new shape (a device copy first when `a` is not C-contiguous)."""
    return contiguous(a).reshape(_shape(shape))
