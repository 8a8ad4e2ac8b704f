"""Which GEMM backend numbanets.kernels.cuda.gemm uses (cuBLAS through CuPy, or the tiled kernel), and why.

The rule (`choose_backend`) is pure and tested without a device. Under the CUDA
simulator cuBLAS cannot run, so there the chosen backend must be the tiled
kernel, with the reason, and the tiled path is compared with the CPU kernel
(kernels/cpu/blas.gemm, gemm_acc). The cuBLAS path itself runs in
scripts/gpu_check.py on a GPU (`--gemm cublas`).

    NUMBA_ENABLE_CUDASIM=1 pytest -q -m cuda tests/test_cuda_gemm_dispatch.py
"""

import numpy as np
import pytest

from numbanets.device import cuda_status
from numbanets.kernels.cuda import gemm as G

_USABLE, _REASON = cuda_status()


def test_choose_backend_rules():
    assert G.choose_backend("auto", True, "cuBLAS through CuPy 14")[0] == "cublas"
    name, why = G.choose_backend("auto", False, "CuPy is not installed")
    assert name == "tiled" and "CuPy is not installed" in why
    assert G.choose_backend("tiled", True, "cuBLAS through CuPy 14") == ("tiled", "NUMBANETS_GEMM=tiled")
    assert G.choose_backend("cublas", True, "ok")[0] == "cublas"
    with pytest.raises(ValueError, match="unusable: no GPU"):
        G.choose_backend("cublas", False, "no GPU")
    with pytest.raises(ValueError, match="auto, tiled or cublas"):
        G.choose_backend("fast", True, "ok")


def test_backend_from_environment(monkeypatch):
    saved = dict(G._state)
    try:
        G._state.clear()
        monkeypatch.setenv("NUMBANETS_GEMM", "tiled")
        assert G.gemm_backend() == ("tiled", "NUMBANETS_GEMM=tiled")
        G._state.clear()
        monkeypatch.setenv("NUMBANETS_GEMM", "bogus")
        with pytest.raises(ValueError):
            G.gemm_backend()
    finally:
        G._state.clear()
        G._state.update(saved)


def test_probe_explains_missing_cublas(monkeypatch):
    """Without a GPU (here: simulator or no CuPy) auto is the tiled kernel with the probe's reason."""
    mod, why = G._probe_cupy()
    if mod is not None:
        pytest.skip(f"cuBLAS is usable here: {why}")
    saved = dict(G._state)
    try:
        name, reason = G.set_gemm_backend("auto")
        assert name == "tiled" and why in reason
        with pytest.raises(ValueError, match="unusable"):
            G.set_gemm_backend("cublas")
    finally:
        G._state.clear()
        G._state.update(saved)


def test_info_reports_gemm_backend():
    from runner.info import collect

    facts = collect()
    assert facts["CUDA GEMM"].split(":")[0] in G.BACKENDS


@pytest.mark.cuda
@pytest.mark.skipif(not _USABLE, reason=f"no CUDA device or simulator: {_REASON}")
@pytest.mark.parametrize("trans_a,trans_b,acc", [(False, False, False), (True, False, True), (False, True, False)])
def test_tiled_gemm_matches_cpu_blas(rng, trans_a, trans_b, acc):
    from numba import cuda

    from numbanets.kernels.cpu import blas

    saved = dict(G._state)
    try:
        assert G.set_gemm_backend("tiled")[0] == "tiled"
        m, k, n = 5, 11, 9  # partial tiles in every dimension
        a = rng.standard_normal((k, m) if trans_a else (m, k))
        b = rng.standard_normal((n, k) if trans_b else (k, n))
        out0 = rng.standard_normal((m, n))
        want = out0.copy()
        (blas.gemm_acc if acc else blas.gemm)(a, trans_a, b, trans_b, want)
        out = cuda.to_device(out0)
        G.gemm(cuda.to_device(a), cuda.to_device(b), out, trans_a=trans_a, trans_b=trans_b, beta=1.0 if acc else 0.0)
        np.testing.assert_allclose(out.copy_to_host(), want, rtol=1e-12, atol=1e-12)
    finally:
        G._state.clear()
        G._state.update(saved)
