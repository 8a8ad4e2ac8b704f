"""Training on the device (numbanets.nn + numbanets.optim on CUDA device arrays) against the CPU.

Run under the CUDA simulator (set before numba is imported):

    NUMBA_ENABLE_CUDASIM=1 pytest -q -m cuda tests/test_cuda_training.py

A tiny LSTM CharLM and a tiny CNN (Conv2D -> ReLU -> MaxPool2D -> Flatten ->
Linear) are built twice from the same seed, one moved to the device; a few
training steps (zero_grad, forward, softmax cross-entropy, backward, global-norm
clipping, optimizer step) on the same batches give the same losses step for
step (float64, to 1e-10). Parameters, gradients and optimizer state stay device
arrays, and during a step nothing larger than a few logged scalars comes back
to the host. A state_dict taken on the device loads into a CPU model (and
back) and gives the same forward.
"""

import contextlib

import numpy as np
import pytest

from numbanets.device import cuda_status

_USABLE, _REASON = cuda_status()
pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not _USABLE, reason=f"no CUDA device or simulator: {_REASON}")]

if _USABLE:
    from numba import cuda

    from numbanets import checkpoint, nn, optim
    from numbanets.functional import array_device

F64 = np.float64
STEPS = 3
SCALAR_ELEMENTS = 3  # the largest host copy a step may make: the loss kernel's (loss, min target, max target)


@contextlib.contextmanager
def _host_copies():
    """Record the size of every device-to-host copy (copy_to_host / __array__) made inside the block."""
    cls = type(cuda.device_array(1, dtype=F64))
    sizes = []
    orig_copy, orig_array = cls.copy_to_host, getattr(cls, "__array__", None)

    def copy_to_host(self, *args, **kwargs):
        sizes.append(int(self.size))
        return orig_copy(self, *args, **kwargs)

    def as_array(self, *args, **kwargs):
        sizes.append(int(self.size))
        return orig_array(self, *args, **kwargs)

    cls.copy_to_host = copy_to_host
    if orig_array is not None:
        cls.__array__ = as_array
    try:
        yield sizes
    finally:
        cls.copy_to_host = orig_copy
        if orig_array is not None:
            cls.__array__ = orig_array


def _assert_on_device(model, opt):
    for name, p, g in model.named_parameters():
        assert array_device(p, name) == "cuda", f"parameter {name} left the device"
        assert array_device(g, name) == "cuda", f"gradient {name} left the device"
    for name, slots in opt.state.items():
        for slot, a in slots.items():
            assert array_device(a, f"{slot}.{name}") == "cuda", f"optimizer state {slot}.{name} is not on the device"
    assert model.device == "cuda"


def _train(model, opt, batches, step, max_norm):
    """STEPS training steps -> list of (loss, grad norm) floats, and the host copies each step made."""
    history, copies = [], []
    state = None
    for batch in batches:
        with _host_copies() as sizes:
            loss, norm, state = step(model, batch, state)
            norm = optim.clip_grad_norm(model.gradients(), max_norm)
            opt.step()
        history.append((loss, norm))
        copies.append(sizes)
    return history, copies


def _compare_runs(cpu, gpu, copies):
    for i, ((l_cpu, n_cpu), (l_gpu, n_gpu)) in enumerate(zip(cpu, gpu)):
        assert isinstance(l_gpu, float)
        assert abs(l_cpu - l_gpu) < 1e-10, f"step {i}: loss {l_gpu!r} on the device, {l_cpu!r} on the CPU"
        assert abs(n_cpu - n_gpu) < 1e-10 * max(1.0, n_cpu), f"step {i}: grad norm {n_gpu!r} vs {n_cpu!r}"
    for i, sizes in enumerate(copies):
        assert sizes, "no host copy recorded: the loss itself must come back (is the recording broken?)"
        big = [s for s in sizes if s > SCALAR_ELEMENTS]
        assert not big, f"step {i} copied arrays of {big} elements to the host (only scalars may come back)"


def _assert_same_params(model_a, model_b, tol=1e-10):
    a, b = model_a.state_dict(), model_b.state_dict()
    assert list(a) == list(b)
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=tol, atol=tol, err_msg=name)


# --------------------------------------------------------------------------- CharLM (LSTM)

V, HID, T, N = 5, 6, 3, 2


def _charlm(seed):
    return nn.CharLM(V, HID, 1, cell="lstm", rng=np.random.default_rng(seed), dtype=F64)


def _charlm_step(model, batch, state):
    inputs, targets = batch
    loss, state = model.loss_and_grad(inputs, targets, state)
    return loss, None, state


def test_charlm_lstm_trains_on_device_like_cpu():
    data = np.random.default_rng(1).integers(0, V, size=(STEPS, T + 1, N))
    batches = [(d[:-1], d[1:]) for d in data]

    cpu_model = _charlm(0)
    cpu_opt = optim.Adam(cpu_model, lr=0.05)
    cpu_hist, _ = _train(cpu_model, cpu_opt, batches, _charlm_step, max_norm=0.5)

    gpu_model = _charlm(0).to("cuda")
    gpu_opt = optim.Adam(gpu_model, lr=0.05)
    _assert_on_device(gpu_model, gpu_opt)
    gpu_hist, copies = _train(gpu_model, gpu_opt, batches, _charlm_step, max_norm=0.5)

    _compare_runs(cpu_hist, gpu_hist, copies)
    assert cpu_hist[-1][0] < cpu_hist[0][0]  # it learns something
    _assert_on_device(gpu_model, gpu_opt)
    _assert_same_params(cpu_model, gpu_model)
    # the optimizer's state (host copies) matches too
    s_cpu, s_gpu = cpu_opt.state_dict(), gpu_opt.state_dict()
    for key in s_cpu:
        assert isinstance(s_gpu[key], np.ndarray)
        np.testing.assert_allclose(s_gpu[key], s_cpu[key], rtol=1e-9, atol=1e-12, err_msg=key)


def test_charlm_state_dict_moves_between_devices(tmp_path):
    gpu_model = _charlm(3).to("cuda")
    idx = np.random.default_rng(4).integers(0, V, size=(T, N))
    logits_gpu, _ = gpu_model.forward(idx)

    # device -> checkpoint file (host arrays) -> CPU model
    state = gpu_model.state_dict()
    assert all(isinstance(a, np.ndarray) for a in state.values())
    path = checkpoint.save(tmp_path / "model", state, {"config": gpu_model.config()})
    arrays, meta = checkpoint.load(path)
    cpu_model = nn.CharLM(**{k: v for k, v in meta["config"].items()}, rng=np.random.default_rng(99))
    cpu_model.load_state_dict(arrays)
    assert cpu_model.device == "cpu"
    logits_cpu, _ = cpu_model.forward(idx)
    np.testing.assert_allclose(logits_cpu, logits_gpu.copy_to_host(), rtol=1e-12, atol=1e-13)

    # and back: a fresh device model loading the CPU model's state_dict
    other = _charlm(5).to("cuda")
    other.load_state_dict(cpu_model.state_dict())
    assert other.device == "cuda"
    logits_back, _ = other.forward(idx)
    np.testing.assert_allclose(logits_back.copy_to_host(), logits_cpu, rtol=1e-12, atol=1e-13)


# --------------------------------------------------------------------------- CNN

C, HW, MAPS, CLASSES, BATCH = 1, 5, 2, 3, 2   # 5x5 images: "same" conv, 2x2 pooling drops the odd row


def _cnn(seed):
    rng = np.random.default_rng(seed)
    return nn.Sequential(
        nn.Conv2D(C, MAPS, 3, padding=1, rng=rng, dtype=F64),
        nn.ReLU(),
        nn.MaxPool2D(2),
        nn.Flatten(),
        nn.Linear(MAPS * 2 * 2, CLASSES, rng=rng, dtype=F64),
    )


def _cnn_step(model, batch, state):
    from numbanets import functional as F
    from numbanets.device import to_device

    x, y = batch
    if model.device == "cuda":
        x, y = to_device(x), to_device(y)
    model.zero_grad()
    logits = model.forward(x)
    loss, dlogits = F.softmax_cross_entropy(logits, y)
    model.backward(dlogits)
    return loss, None, state


def test_cnn_trains_on_device_like_cpu():
    rng = np.random.default_rng(7)
    batches = [(rng.standard_normal((BATCH, C, HW, HW)), rng.integers(0, CLASSES, size=BATCH))
               for _ in range(STEPS)]

    cpu_model = _cnn(0)
    cpu_opt = optim.SGD(cpu_model, lr=0.1, momentum=0.9, weight_decay=1e-3)
    cpu_hist, _ = _train(cpu_model, cpu_opt, batches, _cnn_step, max_norm=1.0)

    gpu_model = _cnn(0).to("cuda")
    gpu_opt = optim.SGD(gpu_model, lr=0.1, momentum=0.9, weight_decay=1e-3)
    gpu_hist, copies = _train(gpu_model, gpu_opt, batches, _cnn_step, max_norm=1.0)

    _compare_runs(cpu_hist, gpu_hist, copies)
    _assert_on_device(gpu_model, gpu_opt)
    _assert_same_params(cpu_model, gpu_model)

    # a device state_dict loads into a CPU model and gives the same forward
    x = batches[0][0]
    cpu_copy = _cnn(11)
    cpu_copy.load_state_dict(gpu_model.state_dict())
    np.testing.assert_allclose(cpu_copy.forward(x), gpu_model.forward(cuda.to_device(x)).copy_to_host(),
                               rtol=1e-12, atol=1e-13)


def test_dropout_and_elementwise_twins_stay_on_device():
    """Dropout's mask multiply, gradient accumulation and zero_grad run as device kernels."""
    from numbanets.nn import arrays

    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 4))
    a, b = cuda.to_device(x), cuda.to_device(2 * x)
    with _host_copies() as sizes:
        arrays.add_(a, b)
        prod = arrays.mul(a, b)
        drop = nn.Dropout(0.5, rng=np.random.default_rng(0))
        y = drop.forward(a)
        dx = drop.backward(b)
    assert not sizes, f"device-to-host copies of {sizes} elements"
    np.testing.assert_allclose(a.copy_to_host(), 3 * x)
    np.testing.assert_allclose(prod.copy_to_host(), 6 * x * x)
    mask = np.random.default_rng(0).random((3, 4)) >= 0.5
    np.testing.assert_allclose(y.copy_to_host(), 3 * x * mask * 2.0)
    np.testing.assert_allclose(dx.copy_to_host(), 2 * x * mask * 2.0)
    arrays.fill_zero(a)
    assert not a.copy_to_host().any()
