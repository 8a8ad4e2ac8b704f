"""train-charlm's dropout on the device: the same masks (drawn on the host from the same generator) give the
same losses and weights as on the CPU.

    NUMBA_ENABLE_CUDASIM=1 pytest -q -m cuda tests/test_cuda_charlm_dropout.py
"""

import numpy as np
import pytest

from numbanets.device import cuda_status

_USABLE, _REASON = cuda_status()
pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not _USABLE, reason=f"no CUDA device or simulator: {_REASON}")]

if _USABLE:
    from numbanets import nn, optim

V, HID, T, N, STEPS = 5, 6, 3, 2, 3


def _model(cell, seed=0):
    return nn.CharLM(V, HID, 2, cell=cell, rng=np.random.default_rng(seed), dtype=np.float64,
                     dropout=0.4, dropout_rng=np.random.default_rng(seed + 1))


def _train(model, batches):
    opt = optim.Adam(model, lr=0.05)
    losses, state = [], None
    for inputs, targets in batches:
        loss, state = model.loss_and_grad(inputs, targets, state)
        opt.step()
        losses.append(loss)
    return losses


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_dropout_trains_on_device_like_cpu(cell):
    data = np.random.default_rng(2).integers(0, V, size=(STEPS, T + 1, N))
    batches = [(d[:-1], d[1:]) for d in data]
    cpu, gpu = _model(cell), _model(cell).to("cuda")
    cpu_losses, gpu_losses = _train(cpu, batches), _train(gpu, batches)
    np.testing.assert_allclose(gpu_losses, cpu_losses, rtol=1e-10)
    for (name, a), b in zip(cpu.state_dict().items(), gpu.state_dict().values()):
        np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-12, err_msg=name)
    # the masks were in play: the same model without them trains to other losses
    plain = nn.CharLM(V, HID, 2, cell=cell, rng=np.random.default_rng(0), dtype=np.float64)
    assert not np.allclose(_train(plain, batches), cpu_losses)
    # evaluation on the device runs without masks, as on the CPU
    x, y = batches[0]
    assert gpu.eval().loss(x, y)[0] == pytest.approx(cpu.eval().loss(x, y)[0], rel=1e-10)
