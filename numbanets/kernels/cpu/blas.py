"""Matrix products of the CPU kernels, through CBLAS, called from compiled code.

    gemm(a, trans_a, b, trans_b, out)          (njit) out = op(a) @ op(b)
    gemm_acc(a, trans_a, b, trans_b, out)      (njit) out += op(a) @ op(b)
        op(x) = x.T if trans_x else x; a, b, out 2-D float32 or float64 of one dtype,
        rows contiguous and not overlapping; out must not overlap a or b
    NAME                                        "mkl" or "openblas": the BLAS in use
    CHOSEN                                      True when NUMBANETS_BLAS chose it
    threads() / set_threads(n)                  its thread count for calls from this thread (MKL) or all
                                                threads (OpenBLAS); None / no-op if it has no control
    restore_threads(set_threads(1))             undo a set_threads exactly (MKL: back to following the global)
    has_thread_control()                        whether the count can be set
    SHARES_NUMBA_THREADS                        True when the BLAS's threads are numba's OpenMP pool
    parallel_threads()                          (njit) numba's thread count when SHARES_NUMBA_THREADS, else 1
    int_callback(symbol)                        an intrinsic () -> int64 calling a registered C callback: how
                                                the kernels read Python-side settings at run time
    pool_threads()                              the same, for Python callers
    set_local_threads(n)                        (njit) MKL's count for this thread (0: follow the global one);
                                                returns the previous setting; a no-op returning 0 on OpenBLAS
    row_blocks(n_rows, width)                   (njit) blocks of independent rows to run side by side on numba's
                                                threads: 1 below PARALLEL_MIN_ELEMENTS (n_rows * width) or without
                                                SHARES_NUMBA_THREADS, else min(threads, n_rows);
                                                min(ROW_BLOCKS_STATE[0], n_rows) when that is positive
    ROW_BLOCKS_STATE                            [0]; ROW_BLOCKS_STATE[0] = k > 0 forces k row blocks (tests)
    leading_dimension(x)                        (njit) the row stride of a 2-D array in elements (CBLAS's ld);
                                                refuses rows that are not contiguous

Which BLAS: MKL (libmkl_rt, installed by the `mkl` extra on x86-64) when it
loads, else the OpenBLAS that SciPy ships (the BLAS numba's own np.dot calls).
NUMBANETS_BLAS=openblas or =mkl forces one. The reason is speed on the shapes
these kernels run: the per-time-step products of an RNN/LSTM ((N, H) @ (H, 4H)
with N = 50) and the per-sample im2col products of a convolution are small or
skinny, and on such shapes MKL's sgemm is clearly faster than OpenBLAS's
(`python scripts/gemm_shapes.py` measures both, shape by shape).

How: the chosen library's cblas_sgemm / cblas_dgemm are registered with LLVM
under the fixed names numbanets_cblas_sgemm / numbanets_cblas_dgemm when this
module is imported, and the compiled kernels call those names (a numba
intrinsic). The on-disk cache of the kernels therefore holds no addresses and
serves either library. MKL runs its threads on GNU OpenMP (the runtime numba
and torch use too), unless MKL_THREADING_LAYER says otherwise.

Kernels that run BLAS calls on numba threads (`prange`) ask parallel_threads()
how many to use: with MKL on GNU OpenMP and numba on its omp threading layer,
both take their threads from one pool (MKL runs single-threaded inside the
parallel region); with OpenBLAS (its own pthreads, which spin after a call)
the two pools would fight over the cores, which makes a per-time-step prange
many times slower, so the answer is 1. It is asked at run time from a function registered like the gemm symbols
(numba.get_num_threads() in compiled code would make the kernels uncacheable),
so the cache stays valid for either library and any thread count. Inside the
parallel region each thread sets its MKL count to 1 (set_local_threads) and
restores it after: a calling thread whose count was set explicitly (threadpoolctl,
`nbnets bench --threads`) would otherwise start nested MKL threads, which is slower.

ROW_BLOCKS_STATE[0] = k > 0 forces row_blocks to min(k, n_rows) whatever the BLAS,
the thread count and the size, and 0 (the default) gives the choice above back.
It exists so the tests can run the multi-block layout where it would not be
chosen (OpenBLAS, one numba thread, a small batch) and the single block where it
would: a layout the environment picks is otherwise compared with itself. It is
read at run time through a registered callback, like parallel_threads, so the
on-disk cache stays valid. Forced blocks with OpenBLAS call it from numba's
threads at once; that is correct (OpenBLAS is thread-safe) but slow while its
own threads spin, so set_threads(1) around such a run.

The measurements behind these choices: BENCHMARKS.md, "Measurements behind the CPU kernels' design".
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib
import os
import sys
from pathlib import Path

from llvmlite import binding as llvm
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from numbanets.kernels.settings import SettingError

__all__ = ["gemm", "gemm_acc", "NAME", "CHOSEN", "threads", "set_threads", "restore_threads",
           "has_thread_control", "SHARES_NUMBA_THREADS", "parallel_threads", "pool_threads", "set_local_threads",
           "row_blocks", "forced_row_blocks", "ROW_BLOCKS_STATE", "PARALLEL_MIN_ELEMENTS", "leading_dimension",
           "int_callback"]

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112
_SYMBOLS = {types.float32: "numbanets_cblas_sgemm", types.float64: "numbanets_cblas_dgemm"}
_PARALLEL_SYMBOL = "numbanets_parallel_threads"
_SET_LOCAL_SYMBOL = "numbanets_blas_set_local_threads"
_ROW_BLOCKS_SYMBOL = "numbanets_forced_row_blocks"
PARALLEL_MIN_ELEMENTS = 2048  # rows * width of one time step from which row blocks run on all threads


# --------------------------------------------------------------------------- loading

def _mkl():
    """(library, name) of MKL's runtime library, or None when it is not installed or does not load."""
    candidates = sorted(Path(sys.prefix, "lib").glob("libmkl_rt.so*"), reverse=True)
    found = ctypes.util.find_library("mkl_rt")
    if found:
        candidates.append(Path(found))
    for path in candidates:
        try:
            lib = ctypes.CDLL(str(path))
        except OSError:
            continue
        if not os.environ.get("MKL_THREADING_LAYER"):
            lib.MKL_Set_Threading_Layer.argtypes = [ctypes.c_int]
            lib.MKL_Set_Threading_Layer(3)  # MKL_THREADING_GNU: libgomp, not a second OpenMP runtime
        return lib
    return None


OPENBLAS_THREAD_TIMEOUT = "16"  # 2^16 cycles (tens of microseconds) of spinning after a call; OpenBLAS's own: 2^28
GOMP_SPINCOUNT = "10000"  # spins of numba's GNU OpenMP threads after a parallel region; libgomp's own: 300000


def _openblas():
    # With OpenBLAS the kernels run two thread pools, OpenBLAS's pthreads and numba's OpenMP threads (MKL
    # shares numba's), and each pool spins after its work before it sleeps, taking cores from the other:
    # - OpenBLAS's workers spin for 2^OPENBLAS_THREAD_TIMEOUT cycles after each call, by default 2^28, about
    #   100 ms: against the row blocks of a recurrent layer's time loop after its input projection;
    # - numba's OpenMP threads spin GOMP_SPINCOUNT times after a parallel region: against the OpenBLAS calls
    #   after it (an LSTM layer's whole-sequence gradient GEMMs after its BPTT loop).
    # What the two settings changed: BENCHMARKS.md, "Issue 19 on the AMD EPYC", the OpenBLAS path.
    # Both libraries read the variable when they load, so they are set here unless the user set them; they
    # have no effect if SciPy's OpenBLAS or libgomp was loaded before numbanets.
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", OPENBLAS_THREAD_TIMEOUT)
    os.environ.setdefault("GOMP_SPINCOUNT", GOMP_SPINCOUNT)
    from scipy.linalg import cython_blas  # its BLAS library is the one numba's np.dot uses

    return ctypes.CDLL(cython_blas.__file__)  # symbol lookup also searches its BLAS dependency


def _load():
    """(name, library, sgemm, dgemm, get_threads, set_threads) of the BLAS to use."""
    choice = os.environ.get("NUMBANETS_BLAS", "").strip().lower()
    if choice not in ("", "mkl", "openblas"):
        raise SettingError(f"NUMBANETS_BLAS must be mkl or openblas, got {choice!r}")
    lib = _mkl() if choice in ("", "mkl") else None
    if lib is not None:
        # the calling thread's count, as threadpoolctl sets it (a thread-local setting overrides the global one)
        get, set_ = lib.MKL_Get_Max_Threads, lib.MKL_Set_Num_Threads_Local
        return "mkl", lib, lib.cblas_sgemm, lib.cblas_dgemm, get, set_
    if choice == "mkl":
        raise ImportError("NUMBANETS_BLAS=mkl, but MKL's libmkl_rt did not load (pip install 'numbanets[mkl]')")
    lib = _openblas()
    get = set_ = None
    for get_name, set_name in (("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"),
                               ("openblas_get_num_threads", "openblas_set_num_threads")):
        if hasattr(lib, get_name) and hasattr(lib, set_name):
            get, set_ = getattr(lib, get_name), getattr(lib, set_name)
            break
    return "openblas", lib, lib.scipy_cblas_sgemm, lib.scipy_cblas_dgemm, get, set_


NAME, _LIB, _SGEMM, _DGEMM, _GET_THREADS, _SET_THREADS = _load()
CHOSEN = bool(os.environ.get("NUMBANETS_BLAS", "").strip())  # NUMBANETS_BLAS made the choice
for _symbol, _function in (("numbanets_cblas_sgemm", _SGEMM), ("numbanets_cblas_dgemm", _DGEMM)):
    llvm.add_symbol(_symbol, ctypes.cast(_function, ctypes.c_void_p).value)


def _shares_numba_threads() -> bool:
    """MKL on GNU OpenMP (Linux) while numba's threading layer will be its omp layer (GNU OpenMP too)."""
    if NAME != "mkl" or not sys.platform.startswith("linux"):
        return False
    if os.environ.get("MKL_THREADING_LAYER", "gnu").strip().lower() != "gnu":
        return False
    from numba import config

    layer = str(config.THREADING_LAYER).lower()
    if layer == "omp":
        return True
    if layer not in ("default", "threadsafe"):  # tbb, workqueue, or "safe" (tbb only)
        return False
    for name in config.THREADING_LAYER_PRIORITY:  # numba takes the first of these that loads
        if name == "omp":
            return True
        if name == "workqueue" and layer == "default":
            return False
        if name == "tbb":
            try:
                importlib.import_module("numba.np.ufunc.tbbpool")  # loads where a matching libtbb is found
            except ImportError:
                continue
            return False
    return False


SHARES_NUMBA_THREADS = _shares_numba_threads()
_SHARES_STATE = [SHARES_NUMBA_THREADS]  # read by pool_threads (a test flips it)


def pool_threads() -> int:
    """parallel_threads() for Python callers: numba's thread count for the calling thread when the BLAS
    shares numba's OpenMP pool (SHARES_NUMBA_THREADS, as the flag stands now), else 1."""
    import numba

    return numba.get_num_threads() if _SHARES_STATE[0] else 1


# a C-callable function, not a data symbol (a ctypes variable read as an external global crashed when the
# cached code was loaded; external calls go through the JIT's stubs). It calls into Python, so it takes the
# GIL: compiled code that holds the GIL on another thread while waiting for this one would deadlock (kernels
# called from the functional API hold it on the calling thread itself, which is fine)
_PARALLEL_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int32)(pool_threads)
llvm.add_symbol(_PARALLEL_SYMBOL, ctypes.cast(_PARALLEL_CALLBACK, ctypes.c_void_p).value)

ROW_BLOCKS_STATE = [0]  # ROW_BLOCKS_STATE[0] = k > 0 forces k row blocks (at most n_rows); 0: row_blocks chooses


def _forced_row_blocks() -> int:
    return max(0, min(int(ROW_BLOCKS_STATE[0]), 2147483647))


# a Python callback as _PARALLEL_CALLBACK (takes the GIL; called on the calling thread, before any parallel region)
_ROW_BLOCKS_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int32)(_forced_row_blocks)
llvm.add_symbol(_ROW_BLOCKS_SYMBOL, ctypes.cast(_ROW_BLOCKS_CALLBACK, ctypes.c_void_p).value)
if NAME == "mkl":
    _SET_LOCAL = _LIB.MKL_Set_Num_Threads_Local
else:  # never called: parallel_threads() is 1 without MKL
    _SET_LOCAL = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_int32)(lambda n: 0)
llvm.add_symbol(_SET_LOCAL_SYMBOL, ctypes.cast(_SET_LOCAL, ctypes.c_void_p).value)
if _GET_THREADS is not None:
    _GET_THREADS.restype, _GET_THREADS.argtypes = ctypes.c_int, []
    _SET_THREADS.argtypes = [ctypes.c_int]
    _SET_THREADS.restype = ctypes.c_int if NAME == "mkl" else None  # MKL returns the previous local count


def threads() -> int | None:
    """The BLAS's thread count for calls from this thread, or None when it offers no control."""
    return None if _GET_THREADS is None else int(_GET_THREADS())


def set_threads(n: int):
    """Set the BLAS's thread count (no-op when it offers no control). MKL: for calls from this thread
    (MKL_Set_Num_Threads_Local, as threadpoolctl does); OpenBLAS: for every thread.
    Returns what restore_threads needs to undo it."""
    if _SET_THREADS is None:
        return None
    if NAME == "mkl":
        return ("mkl", _SET_THREADS(int(n)))  # the previous local setting (0: follow the global one)
    previous = threads()
    _SET_THREADS(int(n))
    return ("openblas", previous)


def restore_threads(token) -> None:
    """Undo a set_threads call with the value it returned."""
    if token is not None:
        _SET_THREADS(int(token[1]))


def has_thread_control() -> bool:
    return _SET_THREADS is not None


def int_callback(symbol: str):
    """An intrinsic () -> int64 that calls the C function registered with LLVM as `symbol` (int32 (void)).

    The kernels ask Python-side settings this way at run time (a registered ctypes callback, about a
    microsecond, with the GIL): once per kernel call, on the calling thread, never per step; the cached
    machine code holds the symbol's name, not its address."""
    @intrinsic
    def call(typingctx):
        def codegen(context, builder, signature, args):
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(32), []), symbol)
            return builder.sext(builder.call(fn, []), ir.IntType(64))

        return types.int64(), codegen
    return call


# () -> int64: numba threads for BLAS work on them (1 when the BLAS is not in numba's pool)
parallel_threads = int_callback(_PARALLEL_SYMBOL)


@intrinsic
def set_local_threads(typingctx, n):
    # (n) -> int32 previous: MKL_Set_Num_Threads_Local(n) for the calling thread (C, no Python involved)
    if not isinstance(n, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(i32, [i32]), _SET_LOCAL_SYMBOL)
        value = builder.trunc(context.cast(builder, args[0], signature.args[0], types.int64), i32)
        return builder.call(fn, [value])

    return types.int32(n), codegen


_forced_blocks = int_callback(_ROW_BLOCKS_SYMBOL)  # () -> int64: ROW_BLOCKS_STATE[0] (0: not forced)


@njit(cache=True)
def forced_row_blocks():
    # () -> int64: the count ROW_BLOCKS_STATE forces now, 0 when it forces none
    return _forced_blocks()


@njit(cache=True)
def row_blocks(n_rows, width):
    # how many blocks of independent rows (a recurrent layer's batch rows) run side by side: 1, or one per thread
    # (or the count ROW_BLOCKS_STATE forces, at most one block per row)
    forced = _forced_blocks()
    if forced > 0:
        return max(1, min(forced, n_rows))
    if n_rows * width < PARALLEL_MIN_ELEMENTS:
        return 1
    return max(1, min(parallel_threads(), n_rows))


# --------------------------------------------------------------------------- the call

@intrinsic
def _cblas_gemm(typingctx, trans_a, trans_b, m, n, k, a, lda, b, ldb, beta, c, ldc):
    # cblas_?gemm(RowMajor, op_a, op_b, m, n, k, 1, a, lda, b, ldb, beta, c, ldc) on the arrays' data
    dtype = c.dtype
    if dtype not in _SYMBOLS or a.dtype != dtype or b.dtype != dtype:
        return None
    sig = types.void(trans_a, trans_b, m, n, k, a, lda, b, ldb, beta, c, ldc)

    def codegen(context, builder, signature, args):
        ta, tb, m_, n_, k_, a_, lda_, b_, ldb_, beta_, c_, ldc_ = args
        i32 = ir.IntType(32)
        fp = context.get_value_type(dtype)
        fnty = ir.FunctionType(ir.VoidType(), [i32] * 6 + [fp, fp.as_pointer(), i32, fp.as_pointer(), i32,
                                                             fp, fp.as_pointer(), i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, _SYMBOLS[dtype])

        def int32(value, ty):
            return builder.trunc(context.cast(builder, value, ty, types.int64), i32)

        def op(flag, ty):
            is_set = builder.icmp_signed("!=", context.cast(builder, flag, ty, types.int64),
                                         ir.Constant(ir.IntType(64), 0))
            return builder.select(is_set, ir.Constant(i32, _TRANS), ir.Constant(i32, _NO_TRANS))

        def data(value, ty):
            return context.make_array(ty)(context, builder, value).data

        sty = signature.args
        builder.call(fn, [ir.Constant(i32, _ROW_MAJOR), op(ta, sty[0]), op(tb, sty[1]),
                          int32(m_, sty[2]), int32(n_, sty[3]), int32(k_, sty[4]), ir.Constant(fp, 1.0),
                          data(a_, sty[5]), int32(lda_, sty[6]), data(b_, sty[7]), int32(ldb_, sty[8]),
                          context.cast(builder, beta_, sty[9], dtype), data(c_, sty[10]), int32(ldc_, sty[11])])
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True)
def leading_dimension(x):
    # distance in elements between rows of a 2-D array whose rows are contiguous
    rows, cols = x.shape
    item = x.itemsize
    if cols > 1 and x.strides[1] != item:
        raise ValueError("gemm needs arrays whose rows are contiguous")
    if rows <= 1:
        return max(cols, 1)
    ld = x.strides[0] // item
    if x.strides[0] % item != 0 or ld < cols:  # reversed, broadcast or overlapping rows: BLAS would refuse
        raise ValueError("gemm needs arrays whose rows are contiguous and do not overlap")
    if ld > 2147483647:
        raise ValueError("gemm: a leading dimension above 2**31 - 1 does not fit CBLAS's int")
    return ld


@njit(cache=True)
def _gemm(a, trans_a, b, trans_b, out, beta):
    # out (m, n) = op(a) (m, k) @ op(b) (k, n) + beta * out, beta 0.0 or 1.0
    m, n = out.shape
    k = a.shape[0] if trans_a else a.shape[1]
    m_a = a.shape[1] if trans_a else a.shape[0]
    k_b = b.shape[1] if trans_b else b.shape[0]
    n_b = b.shape[0] if trans_b else b.shape[1]
    if m_a != m or k_b != k or n_b != n:
        raise ValueError("gemm: shapes do not match: op(a) (m, k) @ op(b) (k, n) -> out (m, n)")
    if m > 2147483647 or n > 2147483647 or k > 2147483647:
        raise ValueError("gemm: a dimension above 2**31 - 1 does not fit CBLAS's int")
    if m == 0 or n == 0:
        return
    if k == 0:
        if beta == 0:
            out[:, :] = 0
        return
    ldc = leading_dimension(out)  # also checks that out's rows are contiguous
    _cblas_gemm(trans_a, trans_b, m, n, k, a, leading_dimension(a), b, leading_dimension(b), beta, out, ldc)


@njit(cache=True)
def gemm(a, trans_a, b, trans_b, out):
    # out (m, n) = op(a) (m, k) @ op(b) (k, n)
    _gemm(a, trans_a, b, trans_b, out, 0.0)


@njit(cache=True)
def gemm_acc(a, trans_a, b, trans_b, out):
    # out (m, n) += op(a) (m, k) @ op(b) (k, n)
    _gemm(a, trans_a, b, trans_b, out, 1.0)
