"""numbanets.device without a GPU: auto falls back to the CPU, cuda says why."""

import numpy as np
import pytest

from numbanets import device


def _gpu_usable():
    return device.cuda_status()[0]


def test_cpu_is_cpu():
    assert device.resolve("cpu") == "cpu"


@pytest.mark.skipif(_gpu_usable(), reason="a GPU (or the simulator) is usable here")
def test_auto_without_gpu_is_cpu_and_cuda_explains():
    assert device.resolve("auto") == "cpu"
    with pytest.raises(device.DeviceUnavailable, match="--device cuda was asked for but"):
        device.resolve("cuda")
    assert device.explain("auto").startswith("cpu (")


def test_unknown_device():
    with pytest.raises(ValueError, match="auto, cpu, cuda"):
        device.resolve("tpu")


def test_host_arrays_pass_through_to_host():
    a = np.arange(3.0)
    assert device.to_host(a) is a
    assert device.array_module_name(a) == "cpu"
