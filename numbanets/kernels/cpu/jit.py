"""The `numba.njit` options of the CPU kernels that run vectorised element-wise loops.

    @njit(**JIT_OPTIONS)

cache=True: compiled code is kept on disk, so a new process does not recompile.
error_model="numpy": a float division by zero gives inf/nan instead of raising
ZeroDivisionError; the check for that error is a branch that would keep LLVM
from vectorising the loops.
"""

JIT_OPTIONS = {"cache": True, "error_model": "numpy"}

__all__ = ["JIT_OPTIONS"]
