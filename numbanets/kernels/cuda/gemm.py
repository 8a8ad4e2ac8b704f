"""The GEMM every CUDA op family uses: a shared-memory tiled kernel (numba-cuda's fast_matmul).

    gemm(a, b, out, trans_a=False, trans_b=False, beta=0.0)
        out (M, N) = op(a) @ op(b) + beta * out       op(a) (M, K), op(b) (K, N)
        op(a) = a.T when trans_a (a is then (K, M)); op(b) = b.T when trans_b (b is (N, K)).

a, b and out are 2-D C-contiguous device arrays of one dtype (float32 or float64;
views such as hs[t] of a C-contiguous 3-D array qualify). One launch: a 2-D grid
of TILE x TILE thread blocks (TILE = 16; 8 under the simulator), one output element per thread, the K dimension
walked in TILE-wide steps through two shared-memory tiles. Tiles are
bounds-checked (zeros outside the matrices), so no size needs to be a multiple
of TILE. Transposed operands are loaded so that consecutive threads read
consecutive addresses (coalesced) and stored transposed into the tile; the tile
rows are padded to TILE + 1 so those stores hit distinct shared-memory banks.
With beta == 0, out is write-only (it may hold garbage or NaN before the call).
The accumulator has the arrays' dtype, as in cuBLAS.

The shared arrays' dtype must be a compile-time constant, so the kernel is
built by a factory once per dtype: registered as "gemm_float32" and "gemm_float64".

Backends. `gemm` runs on one of two backends, chosen once per process by
`gemm_backend()` (shown by `nbnets info`):

    "cublas"  CuPy's cuBLAS binding (cupy.cublas.gemm), when CuPy imports and a
              real GPU is present. The numba device arrays are wrapped with
              cupy.asarray through the CUDA array interface (no copy); both
              libraries launch on the legacy default stream, so the order with
              the numba kernels is kept.
    "tiled"   the kernel above: under the simulator, without CuPy, or when
              NUMBANETS_GEMM=tiled. It is also the reference in the tests.

NUMBANETS_GEMM=auto|tiled|cublas (default auto) forces a choice; "cublas"
without a usable CuPy is an error (no silent fallback). `set_gemm_backend`
switches at run time (scripts/gpu_check.py --gemm).
"""

from __future__ import annotations

import os

import numba
import numpy as np
from numba import cuda

from numbanets.kernels.cuda import SIMULATOR, grid_2d
from numbanets.kernels.cuda.registry import register

__all__ = ["BACKENDS", "TILE", "choose_backend", "gemm", "gemm_backend", "set_gemm_backend"]

TILE = 8 if SIMULATOR else 16  # 8 x 8 under the simulator: a quarter of the Python threads per block
_TILE_PAD = TILE + 1  # shared tile row length: TILE + 1 avoids bank conflicts of transposed stores
_MAX_GRID_Y = 65535  # CUDA's limit on gridDim.y (rows of tiles); gridDim.x (columns) allows 2**31 - 1


def _make_gemm_kernel(dtype_name: str):
    nbtype = getattr(numba, dtype_name)
    sig = f"{dtype_name}[:, ::1], {dtype_name}[:, ::1], {dtype_name}[:, ::1], boolean, boolean, float64"

    @register(f"gemm_{dtype_name}", sig, threads=TILE * TILE)
    def _gemm_tiled(a, b, out, trans_a, trans_b, beta):
        # a (M, K) or (K, M) if trans_a  b (K, N) or (N, K) if trans_b  -> out (M, N) = op(a) @ op(b) + beta*out
        sa = cuda.shared.array((TILE, _TILE_PAD), nbtype)  # sa[i, k] = op(a)[row0 + i, k0 + k]
        sb = cuda.shared.array((TILE, _TILE_PAD), nbtype)  # sb[k, j] = op(b)[k0 + k, col0 + j]
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        row0 = cuda.blockIdx.y * TILE
        col0 = cuda.blockIdx.x * TILE
        row = row0 + ty
        col = col0 + tx
        m = out.shape[0]
        n = out.shape[1]
        if trans_a:
            kdim = a.shape[0]
        else:
            kdim = a.shape[1]
        zero = nbtype(0.0)
        acc = nbtype(0.0)
        for k0 in range(0, kdim, TILE):
            if trans_a:
                # op(a)[i, k] = a[k, i]: thread (ty, tx) reads a[k0 + ty, row0 + tx] (along a's row)
                i = row0 + tx
                k = k0 + ty
                if i < m and k < kdim:
                    sa[tx, ty] = a[k, i]
                else:
                    sa[tx, ty] = zero
            else:
                k = k0 + tx
                if row < m and k < kdim:
                    sa[ty, tx] = a[row, k]
                else:
                    sa[ty, tx] = zero
            if trans_b:
                # op(b)[k, j] = b[j, k]: thread (ty, tx) reads b[col0 + ty, k0 + tx] (along b's row)
                j = col0 + ty
                k = k0 + tx
                if j < n and k < kdim:
                    sb[tx, ty] = b[j, k]
                else:
                    sb[tx, ty] = zero
            else:
                k = k0 + ty
                if k < kdim and col < n:
                    sb[ty, tx] = b[k, col]
                else:
                    sb[ty, tx] = zero
            cuda.syncthreads()  # the tiles are complete
            for kk in range(TILE):
                acc += sa[ty, kk] * sb[kk, tx]
            cuda.syncthreads()  # everyone is done with the tiles before they are overwritten
        if row < m and col < n:
            if beta != 0.0:
                out[row, col] = acc + nbtype(beta) * out[row, col]
            else:
                out[row, col] = acc

    return _gemm_tiled


_GEMM_KERNELS = {np.dtype(np.float32): _make_gemm_kernel("float32"), np.dtype(np.float64): _make_gemm_kernel("float64")}


BACKENDS = ("tiled", "cublas")
_ENV = "NUMBANETS_GEMM"
_state: dict = {}  # "name", "reason", "cupy": the chosen backend, probed once


def _probe_cupy():
    """(cupy module or None, why): CuPy usable for cuBLAS on a real GPU?"""
    if SIMULATOR:
        return None, "the CUDA simulator runs no cuBLAS"
    try:
        import cupy
    except ImportError:
        return None, "CuPy is not installed (pip install 'numbanets[gpu]')"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # noqa: BLE001 - CUDARuntimeError, or a driver/runtime mismatch
        return None, f"CuPy {cupy.__version__} sees no GPU ({type(exc).__name__}: {exc})"
    if count < 1:
        return None, f"CuPy {cupy.__version__} sees no GPU"
    return cupy, f"cuBLAS through CuPy {cupy.__version__}"


def choose_backend(request: str, cupy_ok: bool, cupy_why: str) -> tuple[str, str]:
    """(backend, reason) for a request auto|tiled|cublas and the CuPy probe's result.

    Pure (no imports, no device): the dispatch rule itself, tested without a GPU.
    """
    if request not in ("auto",) + BACKENDS:
        raise ValueError(f"{_ENV} must be auto, tiled or cublas, got {request!r}")
    if request == "tiled":
        return "tiled", f"{_ENV}=tiled"
    if cupy_ok:
        return "cublas", cupy_why
    if request == "cublas":
        raise ValueError(f"{_ENV}=cublas but cuBLAS is unusable: {cupy_why}")
    return "tiled", f"hand-tiled fallback: {cupy_why}"


def set_gemm_backend(request: str = "auto") -> tuple[str, str]:
    """Choose the backend (auto|tiled|cublas) for every later gemm call; returns (backend, reason)."""
    mod, why = _probe_cupy() if request != "tiled" else (None, "")
    name, reason = choose_backend(request, mod is not None, why)
    _state.update(name=name, reason=reason, cupy=mod if name == "cublas" else None)
    return name, reason


def gemm_backend() -> tuple[str, str]:
    """(backend, reason) in use: chosen on first use from NUMBANETS_GEMM (default auto)."""
    if "name" not in _state:
        set_gemm_backend(os.environ.get(_ENV, "auto").strip().lower() or "auto")
    return _state["name"], _state["reason"]


def _cublas_gemm(cupy, a, b, out, trans_a, trans_b, beta):
    # zero-copy views through __cuda_array_interface__; cupy.cublas.gemm: out = op(a) op(b) + beta out
    ca, cb, cout = cupy.asarray(a), cupy.asarray(b), cupy.asarray(out)
    cupy.cublas.gemm("T" if trans_a else "N", "T" if trans_b else "N", ca, cb, out=cout, alpha=1.0,
                     beta=float(beta))


def gemm(a, b, out, trans_a=False, trans_b=False, beta=0.0):
    """out = op(a) @ op(b) + beta * out on the device, in place; returns out.

    a, b, out: 2-D C-contiguous device arrays of one float dtype; op(a) is a.T when
    trans_a, op(b) is b.T when trans_b. Shapes are checked (ValueError).
    """
    m, k = (a.shape[1], a.shape[0]) if trans_a else (a.shape[0], a.shape[1])
    kb, n = (b.shape[1], b.shape[0]) if trans_b else (b.shape[0], b.shape[1])
    if k != kb or tuple(out.shape) != (m, n):
        raise ValueError(
            f"gemm shapes do not match: op(a) ({m}, {k}) @ op(b) ({kb}, {n}) -> out {tuple(out.shape)}"
        )
    dtype = np.dtype(out.dtype)
    if np.dtype(a.dtype) != dtype or np.dtype(b.dtype) != dtype or dtype not in _GEMM_KERNELS:
        raise TypeError(f"gemm needs one float dtype (float32 or float64), got {a.dtype}, {b.dtype}, {out.dtype}")
    if m == 0 or n == 0:
        return out
    if gemm_backend()[0] == "cublas":
        _cublas_gemm(_state["cupy"], a, b, out, trans_a, trans_b, beta)
        return out
    blocks, threads = grid_2d(m, n, TILE)
    if blocks[1] > _MAX_GRID_Y:
        raise ValueError(f"gemm supports at most {_MAX_GRID_Y * TILE} rows of op(a) (grid y limit), got {m}")
    _GEMM_KERNELS[dtype][blocks, threads](a, b, out, bool(trans_a), bool(trans_b), float(beta))
    return out
