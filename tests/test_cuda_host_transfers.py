"""What comes back from the device to the host, call by call: nothing for an optimizer step, dropout or a
layer's forward and backward; one float64 per gradient array for clip_grad_norm; exactly one copy of each
array for state_dict (its documented purpose: host copies); nothing for load_state_dict.

    NUMBA_ENABLE_CUDASIM=1 pytest -q -m cuda tests/test_cuda_host_transfers.py

Under the simulator, tests/conftest.py's strict arrays record every device-to-host conversion (copy_to_host,
np.asarray / np.array) in the `host_conversions` fixture as (path, elements); each test reads the records of
one call. On a GPU nothing is recorded, so the tests there check the values only. Every test also checks
that the call did its work (against the CPU), so a call that did nothing could not pass as one that copied
nothing.
"""

import numpy as np
import pytest

from numbanets.device import cuda_status

_USABLE, _REASON = cuda_status()
pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not _USABLE, reason=f"no CUDA device or simulator: {_REASON}")]

if _USABLE:
    from numba import cuda

    from numbanets import nn, optim
    from numbanets.device import is_device_array
    from numbanets.nn.arrays import copy_from_host

F64 = np.float64
D, HID, OUT, BATCH = 5, 4, 3, 6


def _simulator() -> bool:
    from numba import config

    return bool(getattr(config, "ENABLE_CUDASIM", False))


class _Conversions:
    """The host conversions recorded from the moment this is made (under the simulator; none on a GPU)."""

    def __init__(self, record):
        self.record, self.start = record, len(record)

    def since(self):
        return list(self.record[self.start:])


def _model(seed, dropout=0.0):
    rng = np.random.default_rng(seed)
    layers = [nn.Linear(D, HID, rng=rng, dtype=F64), nn.Tanh()]
    if dropout:
        layers.append(nn.Dropout(dropout, rng=np.random.default_rng(seed + 100)))
    layers.append(nn.Linear(HID, OUT, rng=rng, dtype=F64))
    return nn.Sequential(*layers)


def _set_gradients(model, seed):
    rng = np.random.default_rng(seed)
    for _, _, g in model.named_parameters():
        copy_from_host(g, rng.standard_normal(tuple(g.shape)))


def _host(a):
    return a.copy_to_host() if is_device_array(a) else a


OPTIMIZER_OPTIONS = {"sgd": {"momentum": 0.9}, "adagrad": {}, "rmsprop": {}, "adam": {}}


def test_every_optimizer_is_covered():
    assert set(OPTIMIZER_OPTIONS) == set(optim.OPTIMIZERS)


@pytest.mark.parametrize("name", sorted(OPTIMIZER_OPTIONS))
def test_optimizer_step_copies_nothing_to_the_host(host_conversions, name):
    cpu, gpu = _model(0), _model(0).to("cuda")
    kw = dict(OPTIMIZER_OPTIONS[name], weight_decay=1e-2)
    cpu_opt = optim.make_optimizer(name, cpu, 0.05, **kw)
    gpu_opt = optim.make_optimizer(name, gpu, 0.05, **kw)
    before = cpu.state_dict()
    for step in range(3):  # from the second step on the state arrays (momentum, averages) take part
        _set_gradients(cpu, step)
        _set_gradients(gpu, step)
        cpu_opt.step()
        watch = _Conversions(host_conversions)
        gpu_opt.step()
        assert watch.since() == [], f"{name} step {step} brought arrays back to the host: {watch.since()}"
    for (key, a), (_, p, _) in zip(cpu.state_dict().items(), gpu.named_parameters()):
        assert not np.allclose(a, before[key]), f"{name} did not move {key}"
        np.testing.assert_allclose(_host(p), a, rtol=1e-12, atol=1e-14, err_msg=f"{name}: {key}")


def test_clip_grad_norm_brings_back_one_number_per_gradient(host_conversions):
    cpu, gpu = _model(1), _model(1).to("cuda")
    _set_gradients(cpu, 7)
    _set_gradients(gpu, 7)
    norm_cpu = optim.clip_grad_norm(cpu.gradients(), 0.5)
    watch = _Conversions(host_conversions)
    norm_gpu = optim.clip_grad_norm(gpu.gradients(), 0.5)
    if _simulator():
        assert [size for _, size in watch.since()] == [1] * len(gpu.gradients())
    assert norm_gpu == pytest.approx(norm_cpu, rel=1e-12) and norm_cpu > 0.5  # it clipped
    for g_cpu, g_gpu in zip(cpu.gradients(), gpu.gradients()):
        np.testing.assert_allclose(_host(g_gpu), g_cpu, rtol=1e-12, atol=1e-15)


def test_dropout_forward_and_backward_in_training_mode_copy_nothing(host_conversions):
    rng = np.random.default_rng(3)
    x, dy = rng.standard_normal((BATCH, HID)), rng.standard_normal((BATCH, HID))
    drop = nn.Dropout(0.5, rng=np.random.default_rng(0))
    assert drop.training
    x_dev, dy_dev = cuda.to_device(x), cuda.to_device(dy)
    watch = _Conversions(host_conversions)
    y = drop.forward(x_dev)
    dx = drop.backward(dy_dev)
    assert watch.since() == [], f"dropout brought arrays back to the host: {watch.since()}"
    mask = (np.random.default_rng(0).random((BATCH, HID)) >= 0.5) * 2.0
    assert 0 < mask.sum() < 2 * mask.size  # some kept, some dropped
    np.testing.assert_array_equal(y.copy_to_host(), x * mask)
    np.testing.assert_array_equal(dx.copy_to_host(), dy * mask)


def test_layers_forward_and_backward_with_dropout_copy_nothing(host_conversions):
    # a model with a dropout layer in training mode: forward, backward and zero_grad stay on the device
    cpu, gpu = _model(4, dropout=0.3), _model(4, dropout=0.3).to("cuda")
    rng = np.random.default_rng(5)
    x, dy = rng.standard_normal((BATCH, D)), rng.standard_normal((BATCH, OUT))
    x_dev, dy_dev = cuda.to_device(x), cuda.to_device(dy)
    cpu.zero_grad()
    y_cpu = cpu.forward(x)
    dx_cpu = cpu.backward(dy)
    watch = _Conversions(host_conversions)
    gpu.zero_grad()
    y_gpu = gpu.forward(x_dev)
    dx_gpu = gpu.backward(dy_dev)
    assert watch.since() == [], f"the layers brought arrays back to the host: {watch.since()}"
    np.testing.assert_allclose(y_gpu.copy_to_host(), y_cpu, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dx_gpu.copy_to_host(), dx_cpu, rtol=1e-12, atol=1e-14)
    for g_cpu, g_gpu in zip(cpu.gradients(), gpu.gradients()):
        np.testing.assert_allclose(g_gpu.copy_to_host(), g_cpu, rtol=1e-12, atol=1e-14)


def test_state_dict_copies_each_parameter_once_and_load_state_dict_copies_nothing(host_conversions):
    gpu = _model(6).to("cuda")
    sizes = [int(p.size) for _, p, _ in gpu.named_parameters()]
    watch = _Conversions(host_conversions)
    state = gpu.state_dict()
    if _simulator():
        assert [size for _, size in watch.since()] == sizes, "state_dict: one host copy per parameter, no more"
    assert all(isinstance(a, np.ndarray) for a in state.values())
    other = _model(7).to("cuda")
    watch = _Conversions(host_conversions)
    other.load_state_dict(state)
    assert watch.since() == [], f"load_state_dict brought arrays back to the host: {watch.since()}"
    for (key, a), (_, p, _) in zip(state.items(), other.named_parameters()):
        np.testing.assert_array_equal(_host(p), a, err_msg=key)


@pytest.mark.parametrize("name", sorted(OPTIMIZER_OPTIONS))
def test_optimizer_state_dict_copies_each_state_array_once_and_loads_without_copies(host_conversions, name):
    gpu = _model(8).to("cuda")
    opt = optim.make_optimizer(name, gpu, 0.05, **OPTIMIZER_OPTIONS[name])
    _set_gradients(gpu, 9)
    opt.step()
    sizes = [int(a.size) for slots in opt.state.values() for a in slots.values()]
    watch = _Conversions(host_conversions)
    state = opt.state_dict()
    if _simulator():
        assert [size for _, size in watch.since()] == sizes, "optimizer state_dict: one copy per state array"
    assert any(np.any(a != 0) for key, a in state.items() if key not in ("step", "lr"))  # the step left state
    fresh = optim.make_optimizer(name, gpu, 0.05, **OPTIMIZER_OPTIONS[name])
    watch = _Conversions(host_conversions)
    fresh.load_state_dict(state)
    assert watch.since() == [], f"optimizer load_state_dict brought arrays back: {watch.since()}"
    assert fresh.steps == 1
    for key, a in state.items():
        if key not in ("step", "lr"):
            slot, param = key.split(".", 1)
            np.testing.assert_array_equal(_host(fresh.state[param][slot]), a, err_msg=key)


def test_strict_arrays_record_one_element_reads_and_refuse_numpy_arithmetic(host_conversions):
    # what tests/conftest.py's strict arrays add to the simulator's: dev[i] is a one-element copy on a real
    # array (recorded), and a real array has no numpy arithmetic (refused); a kernel's own reads are not copies
    if not _simulator():
        pytest.skip("simulator only")
    from numbanets.nn import arrays

    d = cuda.to_device(np.arange(6, dtype=F64).reshape(2, 3))
    assert d[1, 2] == 5.0
    assert host_conversions == [("__getitem__", 1)]
    row = d[1]  # a view stays on the device
    assert is_device_array(row) and host_conversions == [("__getitem__", 1)]
    for op in (lambda a: a * 2, lambda a: a + 1, lambda a: a - 1, lambda a: a / 2, lambda a: a ** 2):
        with pytest.raises(TypeError, match="no __.*__ \\(simulator only\\)"):
            op(d)
    arrays.add_(d, cuda.to_device(np.ones((2, 3))))  # a kernel reading every element
    assert host_conversions == [("__getitem__", 1)]
    np.testing.assert_array_equal(d.copy_to_host(), np.arange(6).reshape(2, 3) + 1)
