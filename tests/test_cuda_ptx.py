"""Every CUDA kernel compiled to real PTX, without a GPU (numba.cuda.compile_ptx).

The CUDA simulator runs kernels as plain Python and accepts code the real
compiler rejects (untyped branches, unsupported numpy calls, shared arrays with
non-constant shapes or dtypes...). Here every kernel in the registry
(numbanets.kernels.cuda.registry, which CPU-free import of every module of
numbanets/kernels/cuda fills) is compiled for every recorded signature for
compute capabilities 8.0 and 9.0, and the PTX must name its target. A second
test makes sure no cuda.jit dispatcher in those modules bypasses the registry
(so none can be missing here).

Not marked `cuda`: runs in the default suite wherever numba-cuda's compiler is
installed (the cu13 extra brings NVVM), skipped with the reason otherwise (a failure under
CI=true or NUMBANETS_REQUIRE=ptx, see conftest.py), and
skipped under NUMBA_ENABLE_CUDASIM (the simulator has no compiler).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

import pytest
from conftest import skip_or_fail
from numba import config

CCS = [(8, 0), (9, 0)]

if getattr(config, "ENABLE_CUDASIM", False):
    pytest.skip("PTX needs the real CUDA compiler; NUMBA_ENABLE_CUDASIM is on", allow_module_level=True)

try:
    import numba_cuda  # noqa: F401  the cuda extra (numba-cuda); numba's own old CUDA target compiles differently
except ImportError:
    skip_or_fail("ptx", "PTX tests need the cuda extra: pip install -e '.[cuda]'", allow_module_level=True)

try:
    from numba import cuda
    from numba.cuda.dispatcher import CUDADispatcher
except Exception as exc:  # pragma: no cover - numba without its CUDA target
    skip_or_fail("ptx", f"numba's CUDA target cannot be imported: {exc}", allow_module_level=True)

import numbanets.kernels.cuda as cuda_package  # noqa: E402
from numbanets.kernels.cuda.registry import KERNELS, registered  # noqa: E402

MODULES = [
    importlib.import_module(f"{cuda_package.__name__}.{info.name}")
    for info in pkgutil.iter_modules(cuda_package.__path__)
]
MODULES.insert(0, cuda_package)

CASES = [(k.name, sig) for k in registered() for sig in k.sigs]

# compile_ptx accepts these of the options a kernel may be registered with
_PTX_OPTIONS = set(inspect.signature(cuda.compile_ptx).parameters) - {"pyfunc", "sig", "device", "cc"}


@pytest.fixture(scope="module")
def compiler():
    """cuda.compile_ptx if it works here (a trivial kernel compiles), else skip with the reason."""

    def _probe(a):
        a[0] = 1.0

    try:
        ptx, _ = cuda.compile_ptx(_probe, "void(float32[::1])", cc=CCS[0])
    except Exception as exc:
        # a broken NVVM would otherwise turn every compile test into a skip: under CI it fails (conftest)
        skip_or_fail("ptx", f"numba-cuda cannot compile PTX here ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})")
    assert ".target sm_80" in ptx
    return cuda.compile_ptx


def test_registry_is_populated():
    names = set(KERNELS)
    for expected in ("gemm_float32", "gemm_float64", "conv_im2col", "conv_col2im", "max_pool2d_forward_kernel",
                     "gap_forward_kernel", "gap_backward_kernel",
                     "gru_step", "gru_grad_step",
                     "softmax_xent_rows", "sum_squares_partial", "adam_update_1d", "fill_1d"):
        assert expected in names
    for k in registered():
        if not k.device:
            assert all(s.startswith("void(") for s in k.sigs), k.name
        floats = [s for s in k.sigs if "float32" in s or "float64" in s]
        assert floats, f"{k.name} records no float signature"


@pytest.mark.parametrize("name,sig", CASES, ids=[f"{n}:{s}" for n, s in CASES])
def test_kernel_compiles_to_ptx(compiler, name, sig):
    kernel = KERNELS[name]
    options = {k: v for k, v in kernel.options if k in _PTX_OPTIONS}
    for cc in CCS:
        ptx, _ = compiler(kernel.py_func, sig, cc=cc, device=kernel.device, **options)
        target = f".target sm_{cc[0]}{cc[1]}"
        assert target in ptx, f"{name} {sig}: no '{target}' in the PTX"
        if not kernel.device:
            assert ".entry" in ptx, f"{name} {sig}: no kernel entry point"


def _dispatchers(module):
    """(qualified name, dispatcher) of every CUDA dispatcher a module holds, also inside dicts, lists, tuples."""
    found = []
    for attr, value in vars(module).items():
        values = [(attr, value)]
        if isinstance(value, dict):
            values += [(f"{attr}[{k!r}]", v) for k, v in value.items()]
        elif isinstance(value, (list, tuple)):
            values += [(f"{attr}[{i}]", v) for i, v in enumerate(value)]
        found += [(f"{module.__name__}.{n}", v) for n, v in values if isinstance(v, CUDADispatcher)]
    return found


def test_every_dispatcher_is_registered():
    registered_ids = {id(k.dispatcher) for k in registered()}
    found = [item for m in MODULES for item in _dispatchers(m)]
    assert found, "no CUDA dispatchers found: the scan is broken"
    missing = sorted(name for name, d in found if id(d) not in registered_ids)
    assert not missing, f"cuda.jit kernels outside the registry (not PTX-tested): {missing}"


_BARE_JIT = re.compile(r"^\s*@\s*(?:numba\.)?cuda\.jit\b|(?<![\w`])(?:numba\.)?cuda\.jit\s*\(|from\s+numba\.cuda\s+import\s+[^\n]*\bjit\b", re.M)


def test_no_bare_cuda_jit_in_the_sources():
    """Kernels built in factories or closures are not module attributes: the source must not cuda.jit at all."""
    offenders = []
    for m in MODULES:
        if m.__name__.endswith(".registry"):
            continue
        source = inspect.getsource(m)
        offenders += [f"{m.__name__}: {hit.group(0).strip()}" for hit in _BARE_JIT.finditer(source)]
    assert not offenders, f"use registry.register instead of cuda.jit: {offenders}"
