"""CUDA kernels (numbanets.kernels.cuda) through numbanets.functional against the CPU kernels.

Run under the CUDA simulator (the variable must be set before numba is imported):

    NUMBA_ENABLE_CUDASIM=1 pytest -q -m cuda tests/test_cuda_ops.py

Every op runs twice on the same values: with numpy arrays (the CPU kernels) and
with device arrays from numbanets.device.to_device (the CUDA kernels, which must
return device arrays); forward and backward outputs must agree, in float32 and
float64. Shapes are tiny (the simulator runs one Python thread per CUDA thread)
and deliberately not multiples of the GEMM tile (16) or of the simulator's 1-D
block (32 threads, at most 2 blocks), so partial tiles, several blocks and the
grid-stride loops all run.

The simulator is more lenient than a GPU: its device arrays wrap numpy arrays
and hand out every numpy attribute. An autouse fixture makes them refuse the
attributes a real numba DeviceNDArray does not have (e.g. .astype, .min), so
host code that would only work in the simulator fails here. The real compiler
is covered by tests/test_cuda_ptx.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from numbanets.device import cuda_status

# No module-level skip: the module imports without a GPU, so `-m "not cuda"` deselects it by its marker
# (no skip in CI's summary); run with `-m cuda` but without the simulator or a GPU, each test skips.
_USABLE, _REASON = cuda_status()

from numba import config  # noqa: E402

from numbanets import functional as F  # noqa: E402
from numbanets.device import to_device  # noqa: E402
from numbanets.kernels import cpu as cpu_kernels  # noqa: E402
from numbanets.kernels import cuda as gpu_kernels  # noqa: E402
from numbanets.kernels.cpu import optim as cpu_optim  # noqa: E402
from numbanets.kernels.cuda import gemm as gpu_gemm  # noqa: E402
from numbanets.kernels.cuda import optim as gpu_optim  # noqa: E402

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not _USABLE, reason=f"needs NUMBA_ENABLE_CUDASIM=1 or a GPU: {_REASON}")]

DTYPES = [np.float32, np.float64]
SIMULATOR = bool(getattr(config, "ENABLE_CUDASIM", False))


# --------------------------------------------------------------------------- helpers

def _tol(dtype):
    return dict(rtol=3e-5, atol=3e-6) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-12)


def _randn(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


def _host(a):
    assert not isinstance(a, np.ndarray), "the CUDA path returned a host array"
    assert F.array_device(a) == "cuda"
    return a.copy_to_host()


def _check(got, want, dtype, name="array"):
    got = _host(got)
    assert got.shape == want.shape, f"{name}: shape {got.shape} != {want.shape}"
    assert got.dtype == want.dtype, f"{name}: dtype {got.dtype} != {want.dtype}"
    np.testing.assert_allclose(got, want, err_msg=name, **_tol(dtype))


def _check_all(got, want, dtype, names):
    assert len(got) == len(want) == len(names)
    for g, w, n in zip(got, want, names):
        _check(g, w, dtype, n)


# --------------------------------------------------------------------------- simulator strictness

# The strict simulator arrays (no numpy-only attributes, every host conversion recorded) are an autouse
# fixture of tests/conftest.py for every `cuda` test: strict_simulator_arrays, host_conversions.


def test_strict_simulator_arrays_refuse_numpy_only_attributes():
    if not SIMULATOR:
        pytest.skip("simulator only")
    d = to_device(np.zeros(3, np.int32))
    with pytest.raises(AttributeError, match="astype"):
        d.astype(np.int64)
    assert d.size == 3 and d.ndim == 1 and d.is_c_contiguous()


def test_strict_simulator_arrays_record_every_host_conversion(host_conversions):
    if not SIMULATOR:
        pytest.skip("simulator only")
    d = to_device(np.arange(5, dtype=np.float64))
    with pytest.raises(AttributeError, match="sum"):
        d.sum()
    np.testing.assert_array_equal(np.asarray(d), np.arange(5))
    d.copy_to_host()
    assert host_conversions == [("__array__", 5), ("copy_to_host", 5)]


# --------------------------------------------------------------------------- array helpers

def test_device_module_recognises_device_arrays(rng):
    from numbanets import device

    a = rng.standard_normal((3, 4)).astype(np.float32)
    d = device.to_device(a)
    assert device.is_device_array(d) and not device.is_device_array(a)
    assert device.to_device(d) is d, "to_device copied an array already on the device"
    assert device.array_module_name(d) == "cuda" and device.array_module_name(a) == "cpu"
    back = device.to_host(d)
    assert isinstance(back, np.ndarray) and np.array_equal(back, a)


@pytest.mark.parametrize("dtype", DTYPES + [np.int64])
def test_zeros_contiguous_reshape(rng, dtype):
    z = gpu_kernels.zeros((3, 5), dtype)
    assert gpu_kernels.is_device_array(z) and not gpu_kernels.is_device_array(np.zeros(3))
    assert np.array_equal(_host(z), np.zeros((3, 5), dtype))
    a = (rng.standard_normal((4, 3, 5)) * 10).astype(dtype)
    for view in (lambda d: d.T, lambda d: d[:, ::2], lambda d: d[1:, :, 1:4]):
        src = view(to_device(a))
        want = np.ascontiguousarray(view(a))
        got = gpu_kernels.contiguous(src)
        assert got.is_c_contiguous()
        assert np.array_equal(_host(got), want)
    r = gpu_kernels.reshape(to_device(a).T, (5, 12))
    assert np.array_equal(_host(r), np.ascontiguousarray(a.T).reshape(5, 12))
    d = to_device(a)
    assert gpu_kernels.contiguous(d) is d


def test_non_contiguous_device_input_is_copied(rng):
    x = _randn(rng, (5, 7), np.float64)
    w = _randn(rng, (3, 7), np.float64)
    xd = to_device(np.ascontiguousarray(x.T)).T  # (5, 7), not C-contiguous
    assert not xd.is_c_contiguous()
    _check(F.linear(xd, to_device(w)), F.linear(x, w), np.float64)


# --------------------------------------------------------------------------- gemm

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
def test_gemm_transposes(rng, dtype, trans_a, trans_b):
    m, k, n = 5, 23, 7  # K spans two tiles, the second partial
    a = _randn(rng, (m, k), dtype)
    b = _randn(rng, (k, n), dtype)
    a_in = np.ascontiguousarray(a.T) if trans_a else a
    b_in = np.ascontiguousarray(b.T) if trans_b else b
    out = to_device(np.full((m, n), np.nan, dtype))  # beta = 0: out is write-only
    res = gpu_gemm.gemm(to_device(a_in), to_device(b_in), out, trans_a=trans_a, trans_b=trans_b)
    assert res is out
    _check(out, a @ b, dtype, "gemm")
    c0 = _randn(rng, (m, n), dtype)
    out = to_device(c0)
    gpu_gemm.gemm(to_device(a_in), to_device(b_in), out, trans_a=trans_a, trans_b=trans_b, beta=0.5)
    _check(out, (a @ b + 0.5 * c0).astype(dtype), dtype, "gemm beta")


def test_gemm_several_tiles_and_shape_errors(rng):
    m, n = gpu_gemm.TILE + 2, gpu_gemm.TILE + 1  # 2 x 2 blocks, the last ones partial
    a = _randn(rng, (m, 19), np.float32)
    b = _randn(rng, (n, 19), np.float32)
    out = gpu_kernels.empty((m, n), np.float32)
    gpu_gemm.gemm(to_device(a), to_device(b), out, trans_b=True)
    _check(out, a @ b.T, np.float32, "gemm 2x2 tiles")
    with pytest.raises(ValueError, match="gemm shapes"):
        gpu_gemm.gemm(to_device(a), to_device(b), out)
    with pytest.raises(TypeError, match="dtype"):
        gpu_gemm.gemm(to_device(a), to_device(b.astype(np.float64)), out, trans_b=True)


# --------------------------------------------------------------------------- dense

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
def test_linear_forward_backward(rng, dtype, bias):
    x, w = _randn(rng, (5, 23), dtype), _randn(rng, (7, 23), dtype)
    b = _randn(rng, (7,), dtype) if bias else None
    dy = _randn(rng, (5, 7), dtype)
    got = F.linear(to_device(x), to_device(w), None if b is None else to_device(b))
    _check(got, F.linear(x, w, b), dtype, "y")
    got = F.linear_backward(to_device(dy), to_device(x), to_device(w))
    _check_all(got, F.linear_backward(dy, x, w), dtype, ("dx", "dw", "db"))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["identity", "tanh", "sigmoid", "relu"])
def test_activation_forward_backward(rng, dtype, name):
    x = (_randn(rng, (3, 5, 7), dtype) * 3).astype(dtype)  # 105 elements: 2 blocks and the grid-stride loop
    y = F.activation(x, name)
    _check(F.activation(to_device(x), name), y, dtype, "y")
    dy = _randn(rng, x.shape, dtype)
    _check(F.activation_backward(to_device(dy), to_device(y), name), F.activation_backward(dy, y, name), dtype, "dx")


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax(rng, dtype):
    x = _randn(rng, (5, 71), dtype)  # K > ROW_THREADS: each thread loops over several columns
    x[2] *= 1e4  # max-subtracted: finite
    _check(F.softmax(to_device(x)), F.softmax(x), dtype, "softmax")
    one = _randn(rng, (3, 1), dtype)
    _check(F.softmax(to_device(one)), F.softmax(one), dtype, "softmax K=1")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tdtype", [np.int64, np.int32])
def test_softmax_cross_entropy(rng, dtype, tdtype):
    logits = (_randn(rng, (17, 11), dtype) * 3).astype(dtype)  # N > the reduction block, K > the row block
    logits[4] *= 1e4
    targets = rng.integers(0, 11, size=17).astype(tdtype)
    loss, d = F.softmax_cross_entropy(to_device(logits), to_device(targets))
    want_loss, want_d = F.softmax_cross_entropy(logits, targets)
    assert isinstance(loss, float)
    np.testing.assert_allclose(loss, want_loss, rtol=1e-6 if dtype == np.float32 else 1e-12)
    _check(d, want_d, dtype, "dlogits")


@pytest.mark.parametrize("bad", [-1, 11])
def test_softmax_cross_entropy_bad_target(rng, bad):
    logits = _randn(rng, (6, 11), np.float32)
    targets = np.arange(6, dtype=np.int64)
    targets[3] = bad
    with pytest.raises(ValueError, match=rf"targets must lie in 0\.\.10 .*got {bad}"):
        F.softmax_cross_entropy(to_device(logits), to_device(targets))
    with pytest.raises(ValueError, match=rf"targets must lie in 0\.\.10 .*got {bad}"):
        F.softmax_cross_entropy(logits, targets)


# --------------------------------------------------------------------------- clipping and optimizers

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("max_norm", [1.0, 1e3])
def test_clip_grad_norm(rng, dtype, max_norm):
    grads = [_randn(rng, s, dtype) for s in ((3, 5, 7), (71,), (2, 3))]
    dev = [to_device(g) for g in grads]
    cpu = [g.copy() for g in grads]
    total = F.clip_grad_norm(dev, max_norm)
    want = F.clip_grad_norm(cpu, max_norm)
    assert isinstance(total, float)
    np.testing.assert_allclose(total, want, rtol=1e-12)
    for i, (g, w) in enumerate(zip(dev, cpu)):
        _check(g, w, dtype, f"grads[{i}]")
    if max_norm < want:
        assert not np.allclose(cpu[0], grads[0])  # it did clip


def test_sum_squares_many_blocks(rng):
    a = _randn(rng, (5, 29), np.float32)  # 145 elements: the grid-stride loop runs in every block
    from numbanets.kernels.cuda import clip as gpu_clip
    got = gpu_clip.sum_squares(to_device(a))
    assert isinstance(got, float)
    np.testing.assert_allclose(got, float(np.sum(a.astype(np.float64) ** 2)), rtol=1e-12)
    assert gpu_clip.sum_squares(gpu_kernels.empty((0,), np.float32)) == 0.0


_UPDATES = {
    "sgd": ("sgd_update_", 1, dict(lr=0.1, momentum=0.9, weight_decay=0.01)),
    "adagrad": ("adagrad_update_", 1, dict(lr=0.1, eps=1e-8, weight_decay=0.01)),
    "rmsprop": ("rmsprop_update_", 1, dict(lr=0.01, alpha=0.99, eps=1e-8, weight_decay=0.01)),
    "adam": ("adam_update_", 2, dict(lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01)),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("which", list(_UPDATES))
def test_optimizer_updates(rng, dtype, which):
    name, n_state, scalars = _UPDATES[which]
    shape = (5, 23)
    p = _randn(rng, shape, dtype)
    state = [np.abs(_randn(rng, shape, dtype)) for _ in range(n_state)]
    cpu_arrays = [p.copy()] + [s.copy() for s in state]
    gpu_arrays = [to_device(a) for a in cpu_arrays]
    for step in (1, 2, 3):
        g = _randn(rng, shape, dtype)
        extra = dict(scalars, step=step) if which == "adam" else scalars
        getattr(cpu_optim, name)(cpu_arrays[0], g, *cpu_arrays[1:], **extra)
        assert getattr(gpu_optim, name)(gpu_arrays[0], to_device(g), *gpu_arrays[1:], **extra) is None
    for i, (got, want) in enumerate(zip(gpu_arrays, cpu_arrays)):
        _check(got, want, dtype, f"{which} array {i}")


# --------------------------------------------------------------------------- convolution

_CONV2D = [
    # x shape, w shape, stride, padding, groups, bias
    ((2, 4, 4, 5), (4, 2, 3, 2), 2, "same", 2, True),   # asymmetric "same": H (0, 1), W (0, 1)
    ((1, 3, 5, 6), (3, 3, 2, 3), (1, 2), (1, 0), 1, False),
    ((1, 2, 3, 4), (2, 1, 3, 2), 1, "full", 2, True),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", range(len(_CONV2D)))
def test_conv2d_forward_backward(rng, dtype, case):
    xs, ws, stride, padding, groups, bias = _CONV2D[case]
    x, w = _randn(rng, xs, dtype), _randn(rng, ws, dtype)
    b = _randn(rng, (ws[0],), dtype) if bias else None
    kw = dict(stride=stride, padding=padding, groups=groups)
    y = F.conv2d(x, w, b, **kw)
    _check(F.conv2d(to_device(x), to_device(w), None if b is None else to_device(b), **kw), y, dtype, "y")
    dy = _randn(rng, y.shape, dtype)
    got = F.conv2d_backward(to_device(dy), to_device(x), to_device(w), **kw)
    _check_all(got, F.conv2d_backward(dy, x, w, **kw), dtype, ("dx", "dw", "db"))


def test_conv2d_in_sample_chunks(rng, monkeypatch):
    """A column buffer smaller than the batch: samples go in chunks, dw accumulates over them."""
    from numbanets.kernels.cuda import conv as gpu_conv

    monkeypatch.setattr(gpu_conv, "_COLS_BUDGET", 9 * 2 * 10)  # (C*KH*KW = 9) x (2 samples * 10 outputs)
    assert gpu_conv._chunk(3, 9, 10) == 2  # chunks of samples [0, 2) and [2, 3)
    x, w, b = _randn(rng, (3, 1, 4, 5), np.float64), _randn(rng, (2, 1, 3, 3), np.float64), _randn(rng, (2,), np.float64)
    y = F.conv2d(x, w, b, padding=(0, 1))
    _check(F.conv2d(to_device(x), to_device(w), to_device(b), padding=(0, 1)), y, np.float64, "y")
    dy = _randn(rng, y.shape, np.float64)
    got = F.conv2d_backward(to_device(dy), to_device(x), to_device(w), padding=(0, 1))
    _check_all(got, F.conv2d_backward(dy, x, w, padding=(0, 1)), np.float64, ("dx", "dw", "db"))


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv1d_forward_backward(rng, dtype):
    x, w, b = _randn(rng, (2, 4, 11), dtype), _randn(rng, (6, 2, 4), dtype), _randn(rng, (6,), dtype)
    kw = dict(stride=2, padding="same", groups=2)  # L 11, K 4, s 2: out 6, pad (1, 2)
    y = F.conv1d(x, w, b, **kw)
    _check(F.conv1d(to_device(x), to_device(w), to_device(b), **kw), y, dtype, "y")
    dy = _randn(rng, y.shape, dtype)
    got = F.conv1d_backward(to_device(dy), to_device(x), to_device(w), **kw)
    _check_all(got, F.conv1d_backward(dy, x, w, **kw), dtype, ("dx", "dw", "db"))


# --------------------------------------------------------------------------- pooling

def _distinct(rng, shape, dtype):
    return (rng.permutation(int(np.prod(shape))).reshape(shape) * 0.25 - 3).astype(dtype)


_POOL2D = [
    # kernel, stride, padding: overlapping windows with padding; default stride; "same" asymmetric
    ((3, 3), 2, 1),
    (2, None, 0),
    ((2, 3), (1, 2), "same"),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", range(len(_POOL2D)))
def test_max_pool2d_forward_backward(rng, dtype, case):
    kernel, stride, padding = _POOL2D[case]
    x = _distinct(rng, (1, 2, 5, 6), dtype)
    y, idx = F.max_pool2d(x, kernel, stride, padding)
    gy, gidx = F.max_pool2d(to_device(x), kernel, stride, padding)
    _check(gy, y, dtype, "y")
    got_idx = _host(gidx)
    assert got_idx.dtype == np.int64
    np.testing.assert_array_equal(got_idx, idx)
    dy = _randn(rng, y.shape, dtype)
    _check(F.max_pool2d_backward(to_device(dy), gidx, x.shape), F.max_pool2d_backward(dy, idx, x.shape), dtype, "dx")


def test_max_pool2d_ties_go_to_the_first_tap():
    x = np.zeros((1, 1, 4, 4), np.float32)
    y, idx = F.max_pool2d(to_device(x), 2, 1)
    np.testing.assert_array_equal(_host(idx), F.max_pool2d(x, 2, 1)[1])
    dy = np.ones((1, 1, 3, 3), np.float32)
    _check(F.max_pool2d_backward(to_device(dy), idx, x.shape), F.max_pool2d_backward(dy, F.max_pool2d(x, 2, 1)[1], x.shape), np.float32, "dx")


def test_max_pool2d_nan_wins_like_the_cpu():
    x = np.arange(24, dtype=np.float64).reshape(1, 1, 4, 6)
    x[0, 0, 1, 1] = x[0, 0, 0, 4] = x[0, 0, 1, 5] = np.nan
    y, idx = F.max_pool2d(x, 2)
    gy, gidx = F.max_pool2d(to_device(x), 2)
    np.testing.assert_array_equal(_host(gy), y)  # NaN == NaN here
    np.testing.assert_array_equal(_host(gidx), idx)


@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool1d_forward_backward(rng, dtype):
    x = _distinct(rng, (2, 3, 11), dtype)
    y, idx = F.max_pool1d(x, 3, 2, 1)
    gy, gidx = F.max_pool1d(to_device(x), 3, 2, 1)
    _check(gy, y, dtype, "y")
    np.testing.assert_array_equal(_host(gidx), idx)
    dy = _randn(rng, y.shape, dtype)
    _check(F.max_pool1d_backward(to_device(dy), gidx, x.shape), F.max_pool1d_backward(dy, idx, x.shape), dtype, "dx")


# --------------------------------------------------------------------------- mixed devices

def test_mixed_host_and_device_arrays_raise_naming_where_each_lives(rng):
    x, w = _randn(rng, (3, 4), np.float32), _randn(rng, (2, 4), np.float32)
    with pytest.raises(TypeError, match=r"x on cpu, w on cuda"):
        F.linear(x, to_device(w))
    with pytest.raises(TypeError, match=r"dy on cuda, x on cpu, w on cpu"):
        F.linear_backward(to_device(np.zeros((3, 2), np.float32)), x, w)
    xi = _randn(rng, (1, 2, 5, 5), np.float32)
    with pytest.raises(TypeError, match=r"x on cuda, w on cpu, b on cuda"):
        F.conv2d(to_device(xi), np.zeros((3, 2, 3, 3), np.float32), to_device(np.zeros(3, np.float32)))
    with pytest.raises(TypeError, match=r"logits on cpu, targets on cuda"):
        F.softmax_cross_entropy(np.zeros((2, 3), np.float32), to_device(np.zeros(2, np.int64)))
    with pytest.raises(TypeError, match=r"dy on cpu, indices on cuda"):
        F.max_pool2d_backward(np.zeros((1, 2, 2, 2), np.float32), to_device(np.zeros((1, 2, 2, 2), np.int64)), (1, 2, 4, 4))
    with pytest.raises(TypeError, match=r"grads\[0\] on cuda, grads\[1\] on cpu"):
        F.clip_grad_norm([to_device(np.ones(3, np.float32)), np.ones(3, np.float32)], 1.0)


def test_cuda_kernels_mirror_the_cpu_signatures():
    import importlib
    import inspect

    for family in ("conv", "pool", "linear", "activations", "loss", "clip", "optim"):
        cpu_mod = importlib.import_module(f"numbanets.kernels.cpu.{family}")
        gpu_mod = importlib.import_module(f"numbanets.kernels.cuda.{family}")
        for name in cpu_mod.__all__:
            obj = getattr(cpu_mod, name)
            if not callable(obj) or name in ("sigmoid", "apply", "derivative_from_output"):
                continue
            cpu_params = list(inspect.signature(getattr(obj, "py_func", obj)).parameters)
            gpu_params = list(inspect.signature(getattr(gpu_mod, name)).parameters)
            assert gpu_params == cpu_params, f"{family}.{name}"
    assert cpu_kernels.NAME == "cpu" and gpu_kernels.NAME == "cuda"
