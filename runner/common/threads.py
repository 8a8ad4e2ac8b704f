"""numba's, the BLAS's (and optionally torch's) thread counts, set for the length of a block.

The CPU kernels run numba's parallel loops and call a BLAS (MKL or OpenBLAS)
from inside them; both pools must be limited together, or a "1 thread" run
still starts the other library's threads. threadpoolctl limits only libraries
already loaded, so the kernels' BLAS and SciPy's are loaded first.
"""

from __future__ import annotations

import numba


class Threads:
    """numba, torch and the BLAS (threadpoolctl, when installed) all set to `n` threads inside the block.

    n None leaves everything as it is. numba cannot run more threads than its
    pool (NUMBA_NUM_THREADS): with `clamp` the count is cut to the pool, else
    that is a ValueError naming the variable to set.
    """

    def __init__(self, n: int | None, torch=None, clamp: bool = False):
        self.n, self.torch = n, torch
        self._numba = numba.get_num_threads()
        self._limits = None
        self.blas = "not limited (threadpoolctl not installed)"
        pool = numba.config.NUMBA_NUM_THREADS
        if n is not None and n > pool and not clamp:
            raise ValueError(f"--threads {n} is more than numba's thread pool "
                             f"(NUMBA_NUM_THREADS={pool}); set NUMBA_NUM_THREADS={n}")
        self.numba_threads = None if n is None else min(n, pool)

    def __enter__(self):
        if self.n is None:
            return self
        numba.set_num_threads(self.numba_threads)
        if self.torch is not None:
            self._torch = self.torch.get_num_threads()
            self.torch.set_num_threads(self.n)
        try:
            from threadpoolctl import threadpool_info, threadpool_limits  # optional (scikit-learn brings it)

            # threadpoolctl limits loaded libraries only: load numbanets' BLAS (MKL or SciPy's OpenBLAS) and
            # the OpenBLAS behind numba's np.dot first
            import scipy.linalg.cython_blas  # noqa: F401

            import numbanets.kernels.cpu.blas  # noqa: F401

            self._limits = threadpool_limits(limits=self.n, user_api="blas")
            self.blas = "; ".join(f"{p.get('internal_api')} {p.get('version')} ({p.get('num_threads')} threads)"
                                  for p in threadpool_info() if p.get("user_api") == "blas")
        except ImportError:
            pass
        return self

    def __exit__(self, *exc):
        if self.n is None:
            return False
        numba.set_num_threads(self._numba)
        if self.torch is not None:
            self.torch.set_num_threads(self._torch)
        if self._limits is not None:
            self._limits.restore_original_limits()
        return False
