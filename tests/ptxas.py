"""Assemble the registered CUDA kernels with ptxas: registers, spills, shared memory, occupancy.

numba.cuda.compile_ptx gives PTX, an intermediate language; register allocation,
spills and shared-memory use only show when `ptxas` assembles it for a real
architecture (SASS). This helper is used by tests/test_cuda_sass.py and
scripts/gpu_resources.py (which writes the table of docs/gpu.md). It lives with
the tests, not in numbanets: the library never needs ptxas at run time (numba-cuda
links its PTX through the driver), so only the checks depend on it.

ptxas comes from the `nvidia-cuda-nvcc` wheel of the cuda extra (the CUDA 13
series, as numba-cuda's NVVM: an older system ptxas rejects the newer PTX
version); cuda.pathfinder finds it (wheels first), NUMBANETS_PTXAS overrides.

Occupancy (theoretical, as NVIDIA's occupancy calculator): blocks per SM =
min(the SM's block limit, threads limit / warps per block, register limit,
shared-memory limit), where a warp's registers are allocated in units of 256
(registers per thread x 32, rounded up) and a block's shared memory is its
static + dynamic bytes plus the 1 KiB the runtime reserves per block, rounded
up to 128 bytes; occupancy = resident warps / the SM's maximum warps.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
import math
import os
import pkgutil
import re
import subprocess
import tempfile
from pathlib import Path

# per-SM and per-block limits (CUDA C Programming Guide, compute capabilities table)
ARCHS = {
    "sm_80": {"cc": (8, 0), "regs_per_sm": 65536, "threads_per_sm": 2048, "blocks_per_sm": 32,
              "smem_per_sm": 164 * 1024, "regs_per_thread": 255},
    "sm_90": {"cc": (9, 0), "regs_per_sm": 65536, "threads_per_sm": 2048, "blocks_per_sm": 32,
              "smem_per_sm": 228 * 1024, "regs_per_thread": 255},
}
MAX_THREADS_PER_BLOCK = 1024
SMEM_PER_BLOCK = 48 * 1024   # static + dynamic without cudaFuncSetAttribute opt-in (numba does not opt in)
REG_UNIT = 256               # register allocation unit per warp
SMEM_UNIT = 128              # shared memory allocation unit
SMEM_RESERVED = 1024         # shared memory the runtime reserves per block (sm_80 and later)


@dataclasses.dataclass(frozen=True)
class Resources:
    """What ptxas -v reports for one kernel entry point."""

    registers: int
    spill_stores: int
    spill_loads: int
    stack: int
    smem: int  # static shared memory, bytes

    @property
    def spills(self) -> int:
        return self.spill_stores + self.spill_loads


def find_ptxas() -> str | None:
    """The ptxas of the CUDA 13 wheel (NUMBANETS_PTXAS overrides), or None."""
    override = os.environ.get("NUMBANETS_PTXAS")
    if override:
        return override
    try:
        from cuda.pathfinder import find_nvidia_binary_utility
    except ImportError:
        return None
    return find_nvidia_binary_utility("ptxas")


def ptxas_version(ptxas: str) -> str:
    """e.g. 'release 13.5, V13.5.37' (from ptxas --version)."""
    out = subprocess.run([ptxas, "--version"], capture_output=True, text=True, check=True).stdout
    m = re.search(r"release [\d.]+, V[\d.]+", out)
    return m.group(0) if m else out.strip().splitlines()[-1]


_PROPS = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED = re.compile(r"Used (\d+) registers(?:.*?, (\d+) bytes smem)?")


def parse_ptxas(text: str) -> Resources:
    """Resources of the one entry function in `ptxas -v` output (spills summed over all functions)."""
    entries = re.split(r"ptxas info\s*: Compiling entry function", text)[1:]
    if len(entries) != 1:
        raise ValueError(f"expected one entry function in the ptxas output, found {len(entries)}:\n{text}")
    props = [tuple(map(int, m.groups())) for m in _PROPS.finditer(text)]
    used = _USED.search(entries[0])
    if used is None or not props:
        raise ValueError(f"no register/spill figures in the ptxas output:\n{text}")
    return Resources(registers=int(used.group(1)), spill_stores=sum(p[1] for p in props),
                     spill_loads=sum(p[2] for p in props), stack=max(p[0] for p in props),
                     smem=int(used.group(2) or 0))


def assemble(ptxas: str, ptx: str, arch: str) -> Resources:
    """ptxas -v -arch=<arch> on the PTX text; CalledProcessError (with ptxas's message) if it fails.

    PTX calling external functions (cooperative groups' cudaCG* from cudadevrt, which
    numba links at load time) is assembled relocatable (-c), as numba does.
    """
    relocatable = ["-c"] if ".extern .func" in ptx else []
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "kernel.ptx"
        src.write_text(ptx)
        res = subprocess.run([ptxas, "-v", f"-arch={arch}", *relocatable, "-o", str(Path(tmp) / "kernel.cubin"),
                              str(src)], check=False, capture_output=True, text=True)
    if res.returncode != 0:
        raise subprocess.CalledProcessError(res.returncode, res.args, res.stdout, res.stderr)
    return parse_ptxas(res.stdout + res.stderr)


def occupancy(arch: str, registers: int, threads: int, smem: int) -> tuple[int, float]:
    """(resident blocks per SM, theoretical occupancy in 0..1) of a block of `threads` threads."""
    lim = ARCHS[arch]
    warps = math.ceil(threads / 32)
    by_threads = lim["threads_per_sm"] // (warps * 32)
    regs_per_warp = math.ceil(max(registers, 1) * 32 / REG_UNIT) * REG_UNIT
    by_regs = (lim["regs_per_sm"] // regs_per_warp) // warps
    block_smem = math.ceil((smem + SMEM_RESERVED) / SMEM_UNIT) * SMEM_UNIT
    by_smem = lim["smem_per_sm"] // block_smem
    blocks = max(0, min(lim["blocks_per_sm"], by_threads, by_regs, by_smem))
    return blocks, blocks * warps * 32 / lim["threads_per_sm"]


def limit_violations(arch: str, res: Resources, threads: int, dynamic_shared: int) -> list[str]:
    """Why a kernel with these resources cannot launch (or spills) at its block size; [] when it fits."""
    lim = ARCHS[arch]
    out = []
    if res.spills:
        out.append(f"spills {res.spill_stores} bytes stores, {res.spill_loads} bytes loads")
    if threads > MAX_THREADS_PER_BLOCK:
        out.append(f"{threads} threads per block > {MAX_THREADS_PER_BLOCK}")
    if res.registers > lim["regs_per_thread"]:
        out.append(f"{res.registers} registers per thread > {lim['regs_per_thread']}")
    regs_per_warp = math.ceil(max(res.registers, 1) * 32 / REG_UNIT) * REG_UNIT
    if regs_per_warp * math.ceil(threads / 32) > lim["regs_per_sm"]:
        out.append(f"{res.registers} registers x {threads} threads > {lim['regs_per_sm']} registers per SM")
    if res.smem + dynamic_shared > SMEM_PER_BLOCK:
        out.append(f"shared memory {res.smem} static + {dynamic_shared} dynamic > {SMEM_PER_BLOCK} bytes per block")
    if not out and occupancy(arch, res.registers, threads, res.smem + dynamic_shared)[0] < 1:
        out.append("no block fits on an SM")
    return out


# --------------------------------------------------------------------------- the registry

def kernels():
    """Every registered non-device kernel (all modules of numbanets.kernels.cuda imported first).

    Device functions are not entry points: they are inlined (registry.py) and
    assembled as part of the kernels that call them.
    """
    import numbanets.kernels.cuda as package
    from numbanets.kernels.cuda.registry import registered

    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{info.name}")
    # the registry holds them in import order, which depends on what ran before (other tests import
    # some modules first): by module name, then in definition order, the table is the same in every run
    return sorted((k for k in registered() if not k.device), key=lambda k: k.py_func.__module__)


def threads_of(kernel) -> int:
    """Threads per block the kernel is launched with (registry: threads=None means the package's THREADS)."""
    from numbanets.kernels.cuda import THREADS

    return kernel.threads if kernel.threads is not None else THREADS


def short_signature(sig: str) -> str:
    """'void(float32[:, ::1], int64)' -> 'f32[:,::1], i64'."""
    s = sig[5:-1] if sig.startswith("void(") else sig
    for long, short in (("float32", "f32"), ("float64", "f64"), ("int64", "i64"), ("boolean", "bool")):
        s = s.replace(long, short)
    return re.sub(r"\[([^\]]*)\]", lambda m: "[" + m.group(1).replace(" ", "") + "]", s)


@functools.cache
def kernel_resources(ptxas: str, name: str, sig: str, arch: str) -> Resources:
    """Compile one registered kernel to PTX for `arch` and assemble it (cached for the process)."""
    from numba import cuda

    from numbanets.kernels.cuda.registry import KERNELS

    kernel = KERNELS[name]
    allowed = set(inspect.signature(cuda.compile_ptx).parameters) - {"pyfunc", "sig", "device", "cc"}
    options = {k: v for k, v in kernel.options if k in allowed}
    ptx, _ = cuda.compile_ptx(kernel.py_func, sig, cc=ARCHS[arch]["cc"], **options)
    return assemble(ptxas, ptx, arch)
