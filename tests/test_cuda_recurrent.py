"""CUDA RNN, LSTM and GRU kernels (numbanets.kernels.cuda.rnn / .lstm / .gru) against the CPU kernels.

Run under the CUDA simulator (set before numba is imported):

    NUMBA_ENABLE_CUDASIM=1 pytest -q -m cuda tests/test_cuda_recurrent.py

Shapes are tiny and deliberately not multiples of the gemm tile (16) or of the
1-D block size, so partial tiles, several blocks and the grid-stride loops run:
the simulator runs one Python thread per CUDA thread. Every output of forward
and backward (all four activations of the RNN) is compared with the CPU kernel
on the same inputs, in float32 and float64. The real compiler is covered by
tests/test_cuda_ptx.py.
"""

import numpy as np
import pytest

from numbanets.device import cuda_status

_USABLE, _REASON = cuda_status()
pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not _USABLE, reason=f"no CUDA device or simulator: {_REASON}")]

if _USABLE:
    from numba import cuda

    from numbanets.kernels.cpu import gru as cpu_gru
    from numbanets.kernels.cpu import lstm as cpu_lstm
    from numbanets.kernels.cpu import rnn as cpu_rnn
    from numbanets.kernels.cpu.activations import ACTIVATION_CODES
    from numbanets.kernels.cuda import gru as gpu_gru
    from numbanets.kernels.cuda import lstm as gpu_lstm
    from numbanets.kernels.cuda import rnn as gpu_rnn

T, N, D, H = 3, 2, 5, 7          # not multiples of the gemm tile (16) or the 1-D block
DTYPES = [np.float32, np.float64]
RNN_GRADS = ("dx", "dh0", "dw_ih", "dw_hh", "db")
LSTM_GRADS = ("dx", "dh0", "dc0", "dw_ih", "dw_hh", "db")
GRU_GRADS = ("dx", "dh0", "dw_ih", "dw_hh", "db_ih", "db_hh")


def _tol(dtype):
    return dict(rtol=2e-5, atol=2e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)


def _dev(*arrays):
    return tuple(cuda.to_device(np.ascontiguousarray(a)) for a in arrays)


def _host(a):
    assert not isinstance(a, np.ndarray), "the CUDA kernel returned a host array"
    return a.copy_to_host()


def _check(got, want, dtype, name):
    got = _host(got)
    assert got.dtype == want.dtype and got.shape == want.shape, name
    np.testing.assert_allclose(got, want, err_msg=name, **_tol(dtype))


def _rnn_inputs(rng, dtype, gates):
    g = gates * H
    x = rng.standard_normal((T, N, D))
    h0 = rng.standard_normal((N, H)) * 0.5
    w_ih = rng.standard_normal((g, D)) / np.sqrt(D)
    w_hh = rng.standard_normal((g, H)) / np.sqrt(H)
    b = rng.standard_normal(g) * 0.5
    return tuple(a.astype(dtype) for a in (x, h0, w_ih, w_hh, b))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ["identity", "tanh", "sigmoid", "relu"])
def test_rnn_forward_backward_match_cpu(rng, activation, dtype):
    act = ACTIVATION_CODES[activation]
    x, h0, w_ih, w_hh, b = _rnn_inputs(rng, dtype, 1)
    dhs = rng.standard_normal((T, N, H)).astype(dtype)
    hs_cpu = cpu_rnn.rnn_forward(x, h0, w_ih, w_hh, b, act)
    grads_cpu = cpu_rnn.rnn_backward(dhs, x, h0, w_ih, w_hh, hs_cpu, act)

    dx_, dh0_, dw_ih_, dw_hh_, db_ = _dev(x, h0, w_ih, w_hh, b)
    hs = gpu_rnn.rnn_forward(dx_, dh0_, dw_ih_, dw_hh_, db_, act)
    _check(hs, hs_cpu, dtype, "hs")
    # backward from the CPU forward's hs, so the gradients are compared on identical inputs
    grads = gpu_rnn.rnn_backward(*_dev(dhs), dx_, dh0_, dw_ih_, dw_hh_, *_dev(hs_cpu), act)
    assert len(grads) == len(RNN_GRADS)
    for name, got, want in zip(RNN_GRADS, grads, grads_cpu):
        _check(got, want, dtype, name)


@pytest.mark.parametrize("dtype", DTYPES)
def test_lstm_forward_backward_match_cpu(rng, dtype):
    x, h0, w_ih, w_hh, b = _rnn_inputs(rng, dtype, 4)
    c0 = rng.standard_normal((N, H)).astype(dtype)
    dhs = rng.standard_normal((T, N, H)).astype(dtype)
    dc_T = rng.standard_normal((N, H)).astype(dtype)
    hs_cpu, cs_cpu, gates_cpu = cpu_lstm.lstm_forward(x, h0, c0, w_ih, w_hh, b)
    grads_cpu = cpu_lstm.lstm_backward(dhs, dc_T, x, h0, c0, w_ih, w_hh, hs_cpu, cs_cpu, gates_cpu)

    inputs = _dev(x, h0, c0, w_ih, w_hh, b)
    hs, cs, gates = gpu_lstm.lstm_forward(*inputs)
    for name, got, want in (("hs", hs, hs_cpu), ("cs", cs, cs_cpu), ("gates", gates, gates_cpu)):
        _check(got, want, dtype, name)
    d_dc_T = cuda.to_device(dc_T)
    grads = gpu_lstm.lstm_backward(*_dev(dhs), d_dc_T, *inputs[:5], *_dev(hs_cpu, cs_cpu, gates_cpu))
    assert len(grads) == len(LSTM_GRADS)
    for name, got, want in zip(LSTM_GRADS, grads, grads_cpu):
        _check(got, want, dtype, name)
    np.testing.assert_array_equal(d_dc_T.copy_to_host(), dc_T, err_msg="lstm_backward modified dc_T")


def test_lstm_single_step_zero_dc(rng):
    """T = 1 (no w_hh accumulation gemm) and a zero dc_T, float64."""
    x, h0, w_ih, w_hh, b = (a[:1] if a.ndim == 3 else a for a in _rnn_inputs(rng, np.float64, 4))
    c0 = rng.standard_normal((N, H))
    dhs = rng.standard_normal((1, N, H))
    dc_T = np.zeros((N, H))
    fwd_cpu = cpu_lstm.lstm_forward(x, h0, c0, w_ih, w_hh, b)
    grads_cpu = cpu_lstm.lstm_backward(dhs, dc_T, x, h0, c0, w_ih, w_hh, *fwd_cpu)
    inputs = _dev(x, h0, c0, w_ih, w_hh, b)
    fwd = gpu_lstm.lstm_forward(*inputs)
    for got, want in zip(fwd, fwd_cpu):
        _check(got, want, np.float64, "forward")
    grads = gpu_lstm.lstm_backward(*_dev(dhs, dc_T), *inputs[:5], *fwd)
    for name, got, want in zip(LSTM_GRADS, grads, grads_cpu):
        _check(got, want, np.float64, name)


def test_sum_rows_matches_numpy(rng):
    """The bias-gradient reduction over more rows than one block's row groups and > 32 columns."""
    a = rng.standard_normal((37, 45))
    out = gpu_rnn.sum_rows(cuda.to_device(a))
    np.testing.assert_allclose(out.copy_to_host(), a.sum(axis=0), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("steps", [T, 1], ids=["T3", "T1"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_gru_forward_backward_match_cpu(rng, dtype, steps):
    x, h0, w_ih, w_hh, b_ih = _rnn_inputs(rng, dtype, 3)
    x = x[:steps]
    b_hh = (rng.standard_normal(3 * H) * 0.5).astype(dtype)
    dhs = rng.standard_normal((steps, N, H)).astype(dtype)
    dh_T = rng.standard_normal((N, H)).astype(dtype)
    hs_cpu, gates_cpu, hns_cpu = cpu_gru.gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh)
    grads_cpu = cpu_gru.gru_backward(dhs, dh_T, x, h0, w_ih, w_hh, hs_cpu, gates_cpu, hns_cpu)

    inputs = _dev(x, h0, w_ih, w_hh, b_ih, b_hh)
    hs, gates, hns = gpu_gru.gru_forward(*inputs)
    for name, got, want in (("hs", hs, hs_cpu), ("gates", gates, gates_cpu), ("hns", hns, hns_cpu)):
        _check(got, want, dtype, name)
    d_dh_T = cuda.to_device(dh_T)
    grads = gpu_gru.gru_backward(*_dev(dhs), d_dh_T, *inputs[:4], *_dev(hs_cpu, gates_cpu, hns_cpu))
    assert len(grads) == len(GRU_GRADS)
    for name, got, want in zip(GRU_GRADS, grads, grads_cpu):
        _check(got, want, dtype, name)
    np.testing.assert_array_equal(d_dh_T.copy_to_host(), dh_T, err_msg="gru_backward modified dh_T")


def test_gru_through_functional_and_nn_on_device_matches_cpu(rng):
    """The dispatch path: F.gru_forward / gru_backward on device arrays (dh_T None and given) and a 2-layer
    nn.GRU moved to the device give device arrays equal to the CPU's; ids with device weights are refused."""
    from numbanets import functional as F
    from numbanets import nn

    x, h0, w_ih, w_hh, b_ih = _rnn_inputs(rng, np.float64, 3)
    b_hh = rng.standard_normal(3 * H) * 0.5
    dhs = rng.standard_normal((T, N, H))
    dh_T = rng.standard_normal((N, H))
    host = (x, h0, w_ih, w_hh, b_ih, b_hh)
    hs_cpu, h_T_cpu, cache_cpu = F.gru_forward(*host)
    hs, h_T, cache = F.gru_forward(*_dev(*host))
    _check(hs, hs_cpu, np.float64, "hs")
    _check(h_T, h_T_cpu, np.float64, "h_T")
    for extra in (None, dh_T):
        want = F.gru_backward(dhs, cache_cpu, dh_T=extra)
        got = F.gru_backward(cuda.to_device(dhs), cache, dh_T=None if extra is None else cuda.to_device(extra))
        for name, g, w in zip(GRU_GRADS, got, want):
            _check(g, w, np.float64, f"{name} (dh_T {'None' if extra is None else 'given'})")
    with pytest.raises(TypeError, match="CPU only"):
        F.gru_forward(np.zeros((T, N), np.int64), *_dev(h0, w_ih, w_hh, b_ih, b_hh))

    cpu_model = nn.GRU(D, H, layers=2, rng=np.random.default_rng(7), dtype=np.float64)
    gpu_model = nn.GRU(D, H, layers=2, rng=np.random.default_rng(7), dtype=np.float64).to("cuda")
    state = [rng.standard_normal((N, H)) * 0.5 for _ in range(2)]
    out_cpu, state_cpu = cpu_model.forward(x, state)
    out, new_state = gpu_model.forward(cuda.to_device(x), [cuda.to_device(s) for s in state])
    _check(out, out_cpu, np.float64, "nn.GRU hs")
    for k in range(2):
        _check(new_state[k], state_cpu[k], np.float64, f"nn.GRU state l{k}")
    _check(gpu_model.backward(cuda.to_device(dhs)), cpu_model.backward(dhs), np.float64, "nn.GRU dx")
    cpu_grads = {name: g for name, _, g in cpu_model.named_parameters()}
    for name, _, g in gpu_model.named_parameters():
        _check(g, cpu_grads[name], np.float64, f"nn.GRU {name}")
