"""What `nbnets info` reports: versions, threads, BLAS and the device."""

from __future__ import annotations

import platform


def kernel_blas_description() -> str:
    """The BLAS the CPU kernels' GEMMs call (numbanets.kernels.cpu.blas), with its threads."""
    from numbanets.kernels.cpu import blas

    threads = blas.threads()
    how = "NUMBANETS_BLAS" if blas.CHOSEN else ("the mkl extra" if blas.NAME == "mkl" else "no MKL installed")
    return f"{blas.NAME} ({how}), {threads if threads is not None else '?'} threads"


def blas_description() -> str:
    """The BLAS numpy calls, with its threads."""
    try:
        from threadpoolctl import threadpool_info

        pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
        # numpy's own copy first (the kernels' BLAS, and SciPy's, are loaded too)
        for pool in sorted(pools, key=lambda p: "numpy" not in str(p.get("filepath", ""))):
                arch = pool.get("architecture") or ""
                return (f"{pool.get('internal_api')} {pool.get('version')} {arch}".strip()
                        + f", {pool.get('num_threads')} threads")
    except ImportError:
        pass
    import numpy as np

    try:
        config = np.show_config(mode="dicts")
        blas = config["Build Dependencies"]["blas"]
        return f"{blas.get('name')} {blas.get('version')}"
    except Exception:
        return "unknown"


def collect() -> dict[str, str]:
    """Ordered facts for `nbnets info`."""
    import numba
    import numpy as np

    import numbanets
    from numbanets import device

    return {
        "numbanets": numbanets.__version__,
        "numba": numba.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": f"{platform.system()} {platform.machine()}",
        "numba threads": f"{numba.get_num_threads()} (threading layer: {numba.config.THREADING_LAYER})",
        "BLAS (kernels)": kernel_blas_description(),
        "BLAS (numpy)": blas_description(),
        "CUDA available": "yes" if device.cuda_status()[0] else "no",
        "device auto": device.explain("auto"),
    }
