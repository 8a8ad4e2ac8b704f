"""The persistent LSTM (numbanets.kernels.cuda.lstm_persistent) against the CPU LSTM, and its size bound.

Kernel tests run under the CUDA simulator (set before numba is imported):

    NUMBA_ENABLE_CUDASIM=1 pytest -q -m cuda tests/test_cuda_persistent.py

The simulator's grid sync spans one block only, so there the kernel runs as one
block holding all of w_hh; the multi-block partition runs in scripts/gpu_check.py
on a GPU. The plan/bound tests need no device and run in the default suite.
"""

import numpy as np
import pytest

from numbanets.device import cuda_status
from numbanets.kernels.cuda import lstm_persistent as lp

_USABLE, _REASON = cuda_status()
_needs_cuda = pytest.mark.skipif(not _USABLE, reason=f"no CUDA device or simulator: {_REASON}")

LSTM_GRADS = ("dx", "dh0", "dc0", "dw_ih", "dw_hh", "db")
H200_SMS = 132


def test_plan_partitions_hidden_units_over_sms():
    (blocks, units, smem), _ = lp.plan(512, 50, 4, H200_SMS)
    assert units == 4 and blocks == 128 and blocks <= H200_SMS
    assert smem == 4 * 4 * 512 * 4
    (blocks, units, smem), _ = lp.plan(7, 2, 8, 1)
    assert (blocks, units, smem) == (1, 7, 4 * 7 * 7 * 8)
    (blocks, units, _), _ = lp.plan(10, 1, 4, 4)  # ceil(10 / 4) = 3 units: 4 blocks, the last one has 1
    assert (blocks, units) == (4, 3)


def test_plan_refuses_large_batch_and_large_hidden():
    fits, why = lp.plan(128, lp.MAX_BATCH + 1, 4, H200_SMS)
    assert fits is None and "batch" in why
    fits, why = lp.plan(1024, 1, 4, H200_SMS)
    assert fits is None and "shared" in why
    with pytest.raises(ValueError):
        lp.plan(0, 1, 4, H200_SMS)


def test_max_hidden_bound_on_h200():
    """H200 (132 SMs, 48 KiB per block): float32 bound covers H = 512, float64 is smaller."""
    h32 = lp.max_hidden(4, H200_SMS)
    h64 = lp.max_hidden(8, H200_SMS)
    assert 512 <= h32 < 1024 and h64 < h32
    assert lp.plan(h32, 1, 4, H200_SMS)[0] is not None
    assert lp.plan(h32 + 1, 1, 4, H200_SMS)[0] is None


def _inputs(rng, dtype, T, N, D, H):
    x = rng.standard_normal((T, N, D))
    h0 = rng.standard_normal((N, H)) * 0.5
    c0 = rng.standard_normal((N, H))
    w_ih = rng.standard_normal((4 * H, D)) / np.sqrt(D)
    w_hh = rng.standard_normal((4 * H, H)) / np.sqrt(H)
    b = rng.standard_normal(4 * H) * 0.5
    return tuple(a.astype(dtype) for a in (x, h0, c0, w_ih, w_hh, b))


@pytest.mark.cuda
@_needs_cuda
@pytest.mark.parametrize("T,N,D,H", [(3, 2, 3, 5), (4, 2, 2, 8)], ids=["T3H5", "T4H8"])
@pytest.mark.parametrize("dtype", [np.float64])
def test_persistent_matches_cpu(rng, dtype, T, N, D, H):
    from numba import cuda

    from numbanets.kernels.cpu import lstm as cpu_lstm

    x, h0, c0, w_ih, w_hh, b = _inputs(rng, dtype, T, N, D, H)
    dhs = rng.standard_normal((T, N, H)).astype(dtype)
    dc_T = rng.standard_normal((N, H)).astype(dtype)
    fwd_cpu = cpu_lstm.lstm_forward(x, h0, c0, w_ih, w_hh, b)
    grads_cpu = cpu_lstm.lstm_backward(dhs, dc_T, x, h0, c0, w_ih, w_hh, *fwd_cpu)

    inputs = tuple(cuda.to_device(a) for a in (x, h0, c0, w_ih, w_hh, b))
    fwd = lp.lstm_forward(*inputs)
    for name, got, want in zip(("hs", "cs", "gates"), fwd, fwd_cpu):
        np.testing.assert_allclose(got.copy_to_host(), want, rtol=1e-12, atol=1e-13, err_msg=name)
    d_dc_T = cuda.to_device(dc_T)
    grads = lp.lstm_backward(cuda.to_device(dhs), d_dc_T, *inputs[:5], *fwd)
    for name, got, want in zip(LSTM_GRADS, grads, grads_cpu):
        np.testing.assert_allclose(got.copy_to_host(), want, rtol=1e-12, atol=1e-13, err_msg=name)
    np.testing.assert_array_equal(d_dc_T.copy_to_host(), dc_T, err_msg="lstm_backward modified dc_T")


@pytest.mark.cuda
@_needs_cuda
def test_functional_lstm_uses_persistent_when_asked(rng, monkeypatch):
    """functional.lstm_forward/backward on device arrays go through the path lstm_path chooses."""
    from numba import cuda

    from numbanets import functional as F
    from numbanets.kernels.cpu import lstm as cpu_lstm
    from numbanets.kernels.cuda import lstm as gpu_lstm

    calls = []
    for name in ("lstm_forward", "lstm_backward"):
        real = getattr(lp, name)
        monkeypatch.setattr(lp, name, lambda *a, _real=real, _n=name: calls.append(_n) or _real(*a))
    T, N, D, H = 3, 2, 2, 4
    x, h0, c0, w_ih, w_hh, b = _inputs(rng, np.float64, T, N, D, H)
    dhs = rng.standard_normal((T, N, H))
    gpu_lstm.set_lstm_path("persistent")
    try:
        assert gpu_lstm.lstm_path(T, N, H, np.float64)[0] == "persistent"
        hs, _, cache = F.lstm_forward(*(cuda.to_device(a) for a in (x, h0, c0, w_ih, w_hh, b)))
        grads = F.lstm_backward(cuda.to_device(dhs), cache)
    finally:
        gpu_lstm.set_lstm_path("auto")
    assert calls == ["lstm_forward", "lstm_backward"]
    fwd_cpu = cpu_lstm.lstm_forward(x, h0, c0, w_ih, w_hh, b)
    np.testing.assert_allclose(hs.copy_to_host(), fwd_cpu[0], rtol=1e-12, atol=1e-13)
    grads_cpu = cpu_lstm.lstm_backward(dhs, np.zeros((N, H)), x, h0, c0, w_ih, w_hh, *fwd_cpu)
    for name, got, want in zip(LSTM_GRADS, grads, grads_cpu):
        np.testing.assert_allclose(got.copy_to_host(), want, rtol=1e-12, atol=1e-13, err_msg=name)


def test_lstm_path_rules(monkeypatch):
    from numbanets.kernels.cuda import lstm as gpu_lstm

    monkeypatch.setattr(lp, "_device_limits", lambda: (H200_SMS, lp.SMEM_PER_BLOCK))
    monkeypatch.setattr(gpu_lstm, "SIMULATOR", False)
    try:
        assert gpu_lstm.lstm_path(50, 50, 128, np.float32)[0] == "persistent"
        assert gpu_lstm.lstm_path(50, 1, 512, np.float32)[0] == "persistent"
        path, why = gpu_lstm.lstm_path(50, 50, 1024, np.float32)
        assert path == "loop" and "shared" in why
        assert gpu_lstm.lstm_path(50, 128, 128, np.float32)[0] == "loop"
        assert gpu_lstm.lstm_path(0, 1, 128, np.float32)[0] == "loop"
        gpu_lstm.set_lstm_path("loop")
        assert gpu_lstm.lstm_path(50, 1, 128, np.float32)[0] == "loop"
        gpu_lstm.set_lstm_path("persistent")
        with pytest.raises(ValueError, match="does not fit"):
            gpu_lstm.lstm_path(50, 1, 1024, np.float32)
        with pytest.raises(ValueError):
            gpu_lstm.set_lstm_path("fast")
    finally:
        gpu_lstm.set_lstm_path("auto")
    monkeypatch.setattr(gpu_lstm, "SIMULATOR", True)
    assert gpu_lstm.lstm_path(50, 1, 128, np.float32)[0] == "loop"
