"""Versions and the BLAS in use: recorded in every config.json, printed by `nbnets info`, noted by the bench."""

from __future__ import annotations

import platform

import numba
import numpy as np

import numbanets
from numbanets.kernels.cpu import blas


def versions() -> dict[str, str]:
    """The versions a run's numbers depend on, and the threads and BLAS they ran with."""
    import pandas as pd  # only config.json needs it; `nbnets info` stays lighter

    return {
        "numbanets": numbanets.__version__,
        "numba": numba.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "python": platform.python_version(),
        "numba_threads": str(numba.get_num_threads()),
        "kernel_blas": blas.NAME,  # the CPU kernels' GEMMs: mkl or openblas (NUMBANETS_BLAS, the mkl extra)
    }


def kernel_blas_description() -> str:
    """The BLAS the CPU kernels' GEMMs call (numbanets.kernels.cpu.blas), with its threads."""
    threads = blas.threads()
    how = "NUMBANETS_BLAS" if blas.CHOSEN else ("the mkl extra" if blas.NAME == "mkl" else "no MKL installed")
    return f"{blas.NAME} ({how}), {threads if threads is not None else '?'} threads"


def blas_description() -> str:
    """The BLAS numpy calls, with its threads."""
    try:
        from threadpoolctl import threadpool_info  # optional: scikit-learn brings it

        pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
        # numpy's own copy first (the kernels' BLAS, and SciPy's, are loaded too)
        for pool in sorted(pools, key=lambda p: "numpy" not in str(p.get("filepath", ""))):
            arch = pool.get("architecture") or ""
            return (f"{pool.get('internal_api')} {pool.get('version')} {arch}".strip()
                    + f", {pool.get('num_threads')} threads")
    except ImportError:
        pass
    try:
        config = np.show_config(mode="dicts")
        info = config["Build Dependencies"]["blas"]
        return f"{info.get('name')} {info.get('version')}"
    except Exception:  # noqa: BLE001 - numpy's build description varies between versions
        return "unknown"
