"""Versions, the BLAS in use and the machine: recorded in every config.json, printed by `nbnets info`; the
machine (CPU vendor, model, flags, the BLAS's code path, the load) in every bench row and header."""

from __future__ import annotations

import ctypes
import math
import os
import platform
from pathlib import Path

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


# --------------------------------------------------------------------------- the machine (nbnets bench)

FLAGS = ("avx2", "fma", "avx512f")  # the instruction sets the BLAS's and numba's code paths turn on


def cpu_description(cpuinfo: str | None = None) -> dict[str, str]:
    """{"cpu_vendor", "cpu_model", "cpu_flags"} from /proc/cpuinfo (or the text given): the vendor id, the
    model name and which of FLAGS the CPU reports, space-separated; platform's answer where there is no
    /proc/cpuinfo."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            if fields:
                break  # the first processor's block is enough
            continue
        fields.setdefault(key.strip(), value.strip())
    flags = set(fields.get("flags", fields.get("Features", "")).split())
    return {"cpu_vendor": fields.get("vendor_id", "") or platform.processor() or "unknown",
            "cpu_model": fields.get("model name", "") or platform.machine() or "unknown",
            "cpu_flags": " ".join(f for f in FLAGS if f in flags)}


class _MKLVersion(ctypes.Structure):  # mkl_service.h's MKLVersion
    _fields_ = [("MajorVersion", ctypes.c_int), ("MinorVersion", ctypes.c_int), ("UpdateVersion", ctypes.c_int),
                ("PatchVersion", ctypes.c_int), ("ProductStatus", ctypes.c_char_p), ("Build", ctypes.c_char_p),
                ("Processor", ctypes.c_char_p), ("Platform", ctypes.c_char_p)]


def _mkl_library():
    """The libmkl_rt already loaded (threadpoolctl's path), or None."""
    try:
        from threadpoolctl import threadpool_info  # optional: scikit-learn brings it
    except ImportError:
        return None
    for pool in threadpool_info():
        if pool.get("internal_api") == "mkl" and pool.get("filepath"):
            return ctypes.CDLL(pool["filepath"])  # already loaded: the same handle
    return None


def mkl_code_path() -> str:
    """MKL's version and the code branch it dispatched to, as MKL_Get_Version's Processor field names it
    (the text MKL_VERBOSE prints, e.g. "Intel(R) Advanced Vector Extensions 2 (Intel(R) AVX2) enabled
    processors"; "Intel(R) Architecture processors" is its generic branch); "" when MKL is not loaded."""
    lib = _mkl_library()
    if lib is None:
        return ""
    v = _MKLVersion()
    lib.MKL_Get_Version(ctypes.byref(v))
    processor = (v.Processor or b"").decode(errors="replace")
    return f"MKL {v.MajorVersion}.{v.UpdateVersion} {(v.ProductStatus or b'').decode()}: {processor}"


def openblas_code_path() -> str:
    """The core type SciPy's OpenBLAS (the kernels' OpenBLAS) chose at load, e.g. "Haswell" or "Zen"."""
    # SciPy's BLAS library is the one the kernels and numba's np.dot call
    from scipy.linalg import cython_blas

    lib = ctypes.CDLL(cython_blas.__file__)
    for name in ("scipy_openblas_get_config", "openblas_get_config"):
        if hasattr(lib, name):
            get_config = getattr(lib, name)
            get_config.restype = ctypes.c_char_p
            config = get_config().decode(errors="replace")
            core = getattr(lib, name.replace("config", "corename"), None)
            if core is not None:
                core.restype = ctypes.c_char_p
                config += f", core {core().decode(errors='replace')}"
            return config
    return "OpenBLAS (core type not reported)"


def machine() -> dict[str, str]:
    """The machine a benchmark ran on: cpu_vendor, cpu_model, cpu_flags (of FLAGS), cpu_count, blas (the
    kernels' BLAS and its code path), recurrent_gemm (how the recurrent kernels' per-step products run),
    numpy_blas (numpy's, which the sgemm ceiling runs on)."""
    path = mkl_code_path() if blas.NAME == "mkl" else openblas_code_path()
    return {**cpu_description(), "cpu_count": str(os.cpu_count()), "blas": f"{blas.NAME}: {path}",
            "recurrent_gemm": recurrent_gemm_description(), "numpy_blas": blas_description()}


def recurrent_gemm_description() -> str:
    """How the RNN/LSTM/GRU time loops multiply by w_hh now, and the choice behind it, e.g.
    "panels (NUMBANETS_RECURRENT_GEMM=auto)"."""
    from numbanets.kernels.cpu import packed_gemm

    return f"{packed_gemm.MODE_NAMES[packed_gemm.mode()]} (NUMBANETS_RECURRENT_GEMM={packed_gemm.RECURRENT_GEMM[0]})"


def load_average() -> float:
    """The 1-minute load average (NaN where the OS gives none)."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan
