"""Shared pytest fixtures: a per-test seeded random generator, an optional torch, and the CI switch.

The CI switch: under `CI=true` (or an explicit `NUMBANETS_REQUIRE=torch,ptx`, a comma list that
overrides CI's default), a missing optional peer is a failure, not a skip, so a CI run cannot stay
green while the parity or PTX tests quietly vanish. Locally a missing peer still skips with its reason.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zlib

import numpy as np
import pytest

PEERS = ("torch", "ptx")


def required_peers(environ=None) -> set:
    """The optional peers whose absence fails the run: NUMBANETS_REQUIRE, else all of PEERS when CI=true."""
    environ = os.environ if environ is None else environ
    explicit = environ.get("NUMBANETS_REQUIRE")
    if explicit is not None:
        names = {s.strip() for s in explicit.split(",") if s.strip()}
        unknown = names - set(PEERS)
        if unknown:
            raise ValueError(f"NUMBANETS_REQUIRE: unknown peer(s) {sorted(unknown)}, expected some of {PEERS}")
        return names
    if environ.get("CI", "").strip().lower() in ("true", "1", "yes"):
        return set(PEERS)
    return set()


def skip_or_fail(peer: str, reason: str, allow_module_level: bool = False):
    """Skip with the reason, or fail with it when the peer is required (CI)."""
    if peer in required_peers():
        pytest.fail(f"{reason} [required here: CI=true or NUMBANETS_REQUIRE names {peer!r}]", pytrace=False)
    pytest.skip(reason, allow_module_level=allow_module_level)


@pytest.fixture
def rng(request):
    """np.random.default_rng seeded from the test's node id: fixed per test, independent across tests."""
    seed = zlib.crc32(request.node.nodeid.encode("utf-8"))
    return np.random.default_rng(seed)


@pytest.fixture(scope="session")
def torch():
    """The torch module; skips when torch is not importable (an optional peer), fails instead under CI."""
    try:
        import torch as _torch
    except (ImportError, OSError) as exc:
        skip_or_fail("torch", f"torch not installed ({type(exc).__name__}: {exc})")
    return _torch


# --------------------------------------------------------------------------- forced row blocks

class _RowBlocksOverride:
    """blas.ROW_BLOCKS_STATE for one test: set(k) forces k row blocks on the recurrent kernels (0: the
    kernels choose); `reads` counts the kernels' (and row_blocks') reads of it since the last set/clear."""

    def __init__(self):
        self.reads = 0
        outer = self

        class CountingState(list):
            def __getitem__(self, index):
                outer.reads += 1
                return list.__getitem__(self, index)

        self.state = CountingState([0])

    def set(self, blocks: int) -> None:
        self.state[0] = int(blocks)
        self.reads = 0

    def clear_reads(self) -> None:
        self.reads = 0


@pytest.fixture
def row_blocks_override(monkeypatch):
    """Force the recurrent kernels' row-block layout for this test (blas.ROW_BLOCKS_STATE), whatever the
    BLAS and thread count would choose; restored after the test. Its `reads` show that a kernel asked."""
    from numbanets.kernels.cpu import blas

    override = _RowBlocksOverride()
    monkeypatch.setattr(blas, "ROW_BLOCKS_STATE", override.state)
    # OpenBLAS: its own threads off while numba's threads call it at once (speed only; MKL's blocks set their own)
    token = blas.set_threads(1) if blas.NAME == "openblas" else None
    try:
        yield override
    finally:
        blas.restore_threads(token)


@pytest.fixture
def recurrent_gemm():
    """choose(name) sets packed_gemm.RECURRENT_GEMM[0] ("panels", "mkl" or "blas": how the recurrent kernels'
    per-step products run) for the rest of the test and returns the mode it gives; restored after."""
    from numbanets.kernels.cpu import packed_gemm

    before = packed_gemm.RECURRENT_GEMM[0]

    def choose(name):
        packed_gemm.RECURRENT_GEMM[0] = name
        return packed_gemm.mode()

    try:
        yield choose
    finally:
        packed_gemm.RECURRENT_GEMM[0] = before


# --------------------------------------------------------------------------- strict simulator arrays

def _simulator() -> bool:
    from numba import config

    return bool(getattr(config, "ENABLE_CUDASIM", False))


@pytest.fixture(scope="session")
def _real_device_array_attributes():
    """Public attribute names of a real numba DeviceNDArray (read in a subprocess without the simulator)."""
    code = ("import json\n"
            "from numba.cuda.cudadrv.devicearray import DeviceNDArray\n"
            "print(json.dumps(sorted(n for n in dir(DeviceNDArray) if not n.startswith('_'))))\n")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                         check=True)
    # (ndim ... stream are set in DeviceNDArrayBase.__init__, so dir() of the class lacks them)
    names = set(json.loads(out.stdout.strip().splitlines()[-1]))
    return names | {"ndim", "shape", "strides", "dtype", "size", "alloc_size", "gpu_data", "stream"}


@pytest.fixture
def host_conversions():
    """(path, size) of every device-to-host conversion in a `cuda` test under the simulator:
    copy_to_host and numpy's conversions (np.asarray / np.array, through __array__)."""
    return []


@pytest.fixture(autouse=True)
def strict_simulator_arrays(request, monkeypatch):
    """In every `cuda` test under the simulator, device arrays behave like a real DeviceNDArray.

    The simulator's arrays wrap numpy arrays and hand out every numpy attribute (dev.sum(),
    dev.astype(), np.asarray(dev) through __array_interface__), so host code that only works in the
    simulator, or that quietly brings a whole array back, would pass. Here they refuse the public
    attributes a real DeviceNDArray lacks and the numpy arithmetic it lacks (dev * 2), and every host
    conversion goes through copy_to_host, __array__ or a one-element dev[i] (as on a real array) and is
    recorded in the `host_conversions` fixture.
    """
    if request.node.get_closest_marker("cuda") is None or not _simulator():
        yield
        return
    real = request.getfixturevalue("_real_device_array_attributes")
    record = request.getfixturevalue("host_conversions")
    from numba.cuda.simulator.cudadrv.devicearray import (
        FakeCUDAArray,
        FakeWithinKernelCUDAArray,
    )

    original_getattr, original_copy = FakeCUDAArray.__getattr__, FakeCUDAArray.copy_to_host

    def strict_getattr(self, name):
        if name in ("__array_interface__", "__array_struct__"):  # numpy then takes __array__ (recorded)
            raise AttributeError(name)
        if not name.startswith("_") and name not in real:
            raise AttributeError(f"a real numba DeviceNDArray has no attribute {name!r} (simulator only)")
        return original_getattr(self, name)

    def copy_to_host(self, *args, **kwargs):
        record.append(("copy_to_host", int(self._ary.size)))
        return original_copy(self, *args, **kwargs)

    def as_array(self, dtype=None, copy=None):
        record.append(("__array__", int(self._ary.size)))
        out = np.array(self._ary, copy=True)
        return out if dtype is None else out.astype(dtype, copy=False)

    original_getitem = FakeCUDAArray.__getitem__

    def getitem(self, index):
        got = original_getitem(self, index)
        if not isinstance(got, FakeCUDAArray):  # one element: a real array copies it to the host
            record.append(("__getitem__", 1))
        return got

    def in_kernel_getitem(self, index):  # an element read inside a (simulated) kernel: not a host conversion
        return self._FakeWithinKernelCUDAArray__wrap_if_fake(original_getitem(self._item, index))

    def no_arithmetic(name):
        def refuse(self, other):
            raise TypeError(f"a real numba DeviceNDArray has no {name} (simulator only): use a kernel")
        return refuse

    monkeypatch.setattr(FakeCUDAArray, "__getattr__", strict_getattr)
    monkeypatch.setattr(FakeCUDAArray, "copy_to_host", copy_to_host)
    monkeypatch.setattr(FakeCUDAArray, "__array__", as_array, raising=False)
    monkeypatch.setattr(FakeCUDAArray, "__getitem__", getitem)
    monkeypatch.setattr(FakeWithinKernelCUDAArray, "__getitem__", in_kernel_getitem)
    for name in ("__add__", "__sub__", "__mul__", "__truediv__", "__floordiv__", "__mod__", "__pow__"):
        if name in vars(FakeCUDAArray):  # numpy-backed arithmetic that a real DeviceNDArray lacks
            monkeypatch.setattr(FakeCUDAArray, name, no_arithmetic(name))
    yield
