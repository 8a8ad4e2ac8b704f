"""Blocks of compiled, BLAS-calling work side by side on a small Python thread pool (CPU kernels).

    run_blocks(blocks)     run fn(*args) for every (fn, args) in blocks: the first on the calling thread, the
                           rest on the pool, the BLAS on one thread meanwhile; returns when all are done

For a BLAS whose threads are not numba's OpenMP pool (OpenBLAS), the convolution kernels split their
samples (conv.py) or tile rows (conv_winograd.py) into blocks that run here: the compiled block functions
are `nogil`, so the pool threads run them at once. The BLAS is set to ONE thread while they run and
restored afterwards: BLAS threads inside worker threads (nested parallelism) spin against each other and
ran many times slower (BENCHMARKS.md, "Measurements behind the CPU kernels' design", conv.py). With MKL
on numba's pool the kernels use `prange` instead and never come here.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from numbanets.kernels.cpu import blas

__all__ = ["run_blocks"]

_POOL = None  # ThreadPoolExecutor for blocks 1.., grown on demand
_POOL_SIZE = 0
_POOL_LOCK = threading.Lock()


def _on_one_blas_thread(fn, args):
    blas.set_threads(1)  # MKL's setting is per calling thread: each pool thread sets its own
    return fn(*args)


def run_blocks(blocks):
    """Run fn(*args) for every (fn, args) in blocks: the first here, the rest on the pool.

    BLAS runs on one thread meanwhile; its old thread count is restored after.
    """
    global _POOL, _POOL_SIZE
    with _POOL_LOCK:
        if _POOL_SIZE < len(blocks) - 1:
            if _POOL is not None:
                _POOL.shutdown(wait=False)
            _POOL = ThreadPoolExecutor(max_workers=len(blocks) - 1, thread_name_prefix="numbanets-blocks")
            _POOL_SIZE = len(blocks) - 1
        pool = _POOL
    old = blas.set_threads(1)
    try:
        futures = [pool.submit(_on_one_blas_thread, fn, args) for fn, args in blocks[1:]]
        try:
            fn, args = blocks[0]
            fn(*args)
        finally:
            for future in futures:
                future.result()
    finally:
        blas.restore_threads(old)
