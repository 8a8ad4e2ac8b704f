"""`nbnets info`: versions, threads, BLAS and the device `--device auto` picks."""

from __future__ import annotations

import platform

import numba
import numpy as np

import numbanets
from numbanets import device
from runner.common.system import blas_description, kernel_blas_description, recurrent_gemm_description


def collect() -> dict[str, str]:
    """Ordered facts for `nbnets info`."""
    return {
        "numbanets": numbanets.__version__,
        "numba": numba.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": f"{platform.system()} {platform.machine()}",
        "numba threads": f"{numba.get_num_threads()} (threading layer: {numba.config.THREADING_LAYER})",
        "BLAS (kernels)": kernel_blas_description(),
        "recurrent GEMM": recurrent_gemm_description(),
        "BLAS (numpy)": blas_description(),
        "CUDA available": "yes" if device.cuda_status()[0] else "no",
        "device auto": device.explain("auto"),
        "CUDA GEMM": _cuda_gemm(),
    }


def _cuda_gemm() -> str:
    """The GEMM backend CUDA ops use (cuBLAS or the tiled kernel) and why; numba-cuda missing says so."""
    try:
        from numbanets.kernels.cuda.gemm import gemm_backend
    except ImportError as exc:
        return f"unavailable ({exc})"
    try:
        name, reason = gemm_backend()
    except ValueError as exc:  # a bad NUMBANETS_GEMM
        return f"error: {exc}"
    return f"{name}: {reason}"
