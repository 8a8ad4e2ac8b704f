"""Which device runs the kernels, and moving arrays between host and GPU.

    resolve("auto")  -> "cuda" when numba can use a GPU, else "cpu" (logged once, with the reason)
    resolve("cpu")   -> "cpu"
    resolve("cuda")  -> "cuda", or DeviceUnavailable saying why (never a silent fallback)

The op API itself has no device state: it runs where its arrays live.
"""

from __future__ import annotations

import functools
import logging

import numpy as np

log = logging.getLogger("numbanets")

DEVICES = ("auto", "cpu", "cuda")


class DeviceUnavailable(RuntimeError):
    """The GPU was asked for by name but cannot be used."""


@functools.lru_cache(maxsize=1)
def cuda_status() -> tuple[bool, str]:
    """(usable, reason): whether numba can run CUDA kernels here, and why (not)."""
    try:
        from numba import cuda
    except Exception as exc:  # numba without its CUDA target
        return False, f"numba's CUDA target cannot be imported ({exc.__class__.__name__}: {exc})"
    if getattr(cuda, "simulator", None) is not None and _simulator_enabled():
        return True, "the numba CUDA simulator is enabled (NUMBA_ENABLE_CUDASIM=1)"
    try:
        if not cuda.is_available():
            cuda.current_context()  # raises with the driver's reason
            return False, "numba.cuda.is_available() is False"
        gpus = cuda.gpus
        if len(gpus) == 0:
            return False, "the CUDA driver is present but reports no GPU"
        device = cuda.get_current_device()
        name = device.name.decode() if isinstance(device.name, bytes) else device.name
        return True, f"GPU found: {name} (compute capability {device.compute_capability[0]}.{device.compute_capability[1]})"
    except Exception as exc:
        reason = " ".join(str(exc).split()) or exc.__class__.__name__
        return False, f"no usable GPU: {reason}"


def _simulator_enabled() -> bool:
    from numba import config

    return bool(getattr(config, "ENABLE_CUDASIM", False))


@functools.lru_cache(maxsize=None)
def _log_fallback(reason: str) -> None:
    log.info("device auto resolves to cpu: %s", reason)


def resolve(device: str = "auto") -> str:
    """"cpu" or "cuda" for a requested device "auto", "cpu" or "cuda"."""
    if not isinstance(device, str) or device.lower() not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}; got {device!r}")
    device = device.lower()
    if device == "cpu":
        return "cpu"
    usable, reason = cuda_status()
    if device == "cuda":
        if not usable:
            raise DeviceUnavailable(f"--device cuda was asked for but {reason}")
        return "cuda"
    if usable:
        return "cuda"
    _log_fallback(reason)
    return "cpu"


def explain(device: str = "auto") -> str:
    """One line: what `device` resolves to here, and why."""
    usable, reason = cuda_status()
    if device == "cpu":
        return "cpu (asked for)"
    if usable:
        return f"cuda ({reason})"
    if device == "cuda":
        return f"unavailable ({reason})"
    return f"cpu ({reason})"


def is_device_array(a) -> bool:
    """True for a numba CUDA device array, the one test of "runs on the GPU" in numbanets.

    numba's DeviceNDArray and the CUDA simulator's FakeCUDAArray both set
    __cuda_ndarray__; the simulator's arrays have no __cuda_array_interface__ and
    its numba.cuda no is_cuda_array, so that attribute is asked first. With real
    numba-cuda, another object exporting __cuda_array_interface__ counts too, as
    numba.cuda.is_cuda_array decides; under the simulator it cannot run and does not.
    numba is imported only for such an object: numpy arrays never import it.
    """
    if isinstance(a, np.ndarray):
        return False
    if getattr(a, "__cuda_ndarray__", False):
        return True
    if not hasattr(a, "__cuda_array_interface__"):
        return False
    from numba import cuda

    is_cuda_array = getattr(cuda, "is_cuda_array", None)  # absent under the simulator
    return bool(is_cuda_array(a)) if is_cuda_array is not None else False


def to_device(a):
    """A numba CUDA device array holding `a` (device arrays pass through)."""
    if is_device_array(a):
        return a
    from numba import cuda

    return cuda.to_device(np.ascontiguousarray(a))


def to_host(a):
    """A numpy array holding `a` (numpy arrays pass through)."""
    if is_device_array(a):
        return a.copy_to_host()
    return np.asarray(a)


def array_module_name(a) -> str:
    """"cuda" for a device array, "cpu" for anything else."""
    return "cuda" if is_device_array(a) else "cpu"
