"""Every CUDA kernel assembled by ptxas for sm_80 and sm_90: it assembles, spills nothing, and fits its launch.

tests/test_cuda_ptx.py proves the kernels compile to PTX; PTX is an intermediate
language and says nothing of registers, spills or shared memory. Here every
registered kernel (not device functions: those are inlined into the kernels),
every recorded signature, is compiled with numba.cuda.compile_ptx for each
architecture and assembled with `ptxas -v` (tests/ptxas.py), and

- ptxas accepts it,
- it spills 0 bytes,
- its block fits: threads per block (registry threads=, default THREADS) <= 1024,
  registers x threads within the SM's 65536 registers (allocated per warp in
  units of 256), static + dynamic shared memory <= 48 KiB per block.

docs/gpu.md's resource table (written by scripts/gpu_resources.py) must list
every kernel and signature, and, when it was made with this ptxas, equal what
the script would write now.

Not marked `cuda`: runs in the default suite (CI installs the cuda extra, which
brings ptxas); skipped with the reason where ptxas or numba-cuda's compiler is
absent, and under NUMBA_ENABLE_CUDASIM (no compiler). Each kernel is compiled
and assembled once per session (tests/ptxas.py caches).
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest
from numba import config

if getattr(config, "ENABLE_CUDASIM", False):
    pytest.skip("SASS needs the real CUDA compiler; NUMBA_ENABLE_CUDASIM is on", allow_module_level=True)
try:
    import numba_cuda  # noqa: F401  the cuda extra
    from numba import cuda
except ImportError:
    pytest.skip("SASS tests need the cuda extra: pip install -e '.[cuda]'", allow_module_level=True)

import ptxas as px  # tests/ptxas.py

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import gpu_resources  # scripts/gpu_resources.py (the docs table)

KERNELS = px.kernels()
CASES = [(k.name, sig) for k in KERNELS for sig in k.sigs]
ARCHS = list(px.ARCHS)


@pytest.fixture(scope="module")
def ptxas():
    """The ptxas path, or skip with the reason (a trivial kernel must compile and assemble)."""
    path = px.find_ptxas()
    if not path:
        pytest.skip("no ptxas: pip install nvidia-cuda-nvcc (the cuda extra) or set NUMBANETS_PTXAS")

    def _probe(a):
        a[0] = 1.0

    try:
        ptx, _ = cuda.compile_ptx(_probe, "void(float32[::1])", cc=(8, 0))
    except Exception as exc:  # noqa: BLE001  any compiler failure is the reason to skip
        pytest.skip(f"numba-cuda cannot compile PTX here ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})")
    res = px.assemble(path, ptx, "sm_80")
    assert res.registers >= 1 and res.spills == 0
    return path


def test_parse_ptxas_output():
    text = (
        "ptxas info    : 8 bytes gmem\n"
        "ptxas info    : Compiling entry function '_Z1k' for 'sm_90'\n"
        "ptxas info    : Function properties for _Z1k\n"
        "    16 bytes stack frame, 8 bytes spill stores, 4 bytes spill loads\n"
        "ptxas info    : Used 38 registers, used 1 barriers, 2176 bytes smem\n"
    )
    res = px.parse_ptxas(text)
    assert (res.registers, res.spill_stores, res.spill_loads, res.stack, res.smem) == (38, 8, 4, 16, 2176)
    no_smem = text.replace(", used 1 barriers, 2176 bytes smem", ", used 0 barriers")
    assert px.parse_ptxas(no_smem).smem == 0
    with pytest.raises(ValueError):
        px.parse_ptxas("ptxas info    : 8 bytes gmem\n")


def test_occupancy_by_hand():
    # 256 threads = 8 warps. 32 registers: 1024 per warp, 64 warps fit by registers -> 8 blocks,
    # threads allow 2048/256 = 8 blocks: 64 of 64 warps.
    assert px.occupancy("sm_90", 32, 256, 0) == (8, 1.0)
    # 38 registers: 38*32 = 1216 -> 1280 per warp; 65536 // 1280 = 51 warps -> 6 blocks of 8 warps = 48/64.
    assert px.occupancy("sm_90", 38, 256, 2176) == (6, 0.75)
    # 64 threads (2 warps), 40 KiB static shared: (40960 + 1024) -> 41984 bytes; 228 KiB // that = 5 blocks.
    assert px.occupancy("sm_90", 16, 64, 40 * 1024) == (5, 10 / 64)
    # the block limit: 32 threads, few registers -> 32 blocks of 1 warp = 32/64
    assert px.occupancy("sm_90", 8, 32, 0) == (32, 0.5)


def test_limit_violations():
    fits = px.Resources(registers=64, spill_stores=0, spill_loads=0, stack=0, smem=1024)
    assert px.limit_violations("sm_90", fits, 1024, 0) == []
    many = dataclasses.replace(fits, registers=65)   # 65 regs -> 2304 per warp x 32 warps > 65536
    assert any("registers" in v for v in px.limit_violations("sm_90", many, 1024, 0))
    assert any("spills" in v for v in px.limit_violations("sm_90", dataclasses.replace(fits, spill_stores=4), 256, 0))
    assert any("shared" in v for v in px.limit_violations("sm_80", fits, 256, 48 * 1024))


def test_every_kernel_has_a_launch_configuration():
    assert len(KERNELS) > 20, "the registry scan is broken"
    for k in KERNELS:
        threads = px.threads_of(k)
        assert 1 <= threads <= px.MAX_THREADS_PER_BLOCK, k.name
        assert k.dynamic_shared >= 0, k.name


@pytest.mark.parametrize("name,sig", CASES, ids=[f"{n}:{px.short_signature(s)}" for n, s in CASES])
def test_kernel_assembles_and_fits(ptxas, name, sig):
    kernel = next(k for k in KERNELS if k.name == name)
    threads = px.threads_of(kernel)
    for arch in ARCHS:
        res = px.kernel_resources(ptxas, name, sig, arch)
        problems = px.limit_violations(arch, res, threads, kernel.dynamic_shared)
        assert not problems, f"{name} {sig} on {arch} at {threads} threads/block: {'; '.join(problems)}"


def test_docs_resource_table(ptxas):
    """docs/gpu.md lists every kernel and signature; equal to the script's table when made by this ptxas."""
    docs = (ROOT / "docs" / "gpu.md").read_text()
    section = gpu_resources.current_section(docs)
    assert section is not None, f"docs/gpu.md has no {gpu_resources.BEGIN} ... {gpu_resources.END} section"
    missing = [f"{n} {px.short_signature(s)}" for n, s in CASES
               if f"| `{n}` | `{px.short_signature(s)}` |" not in section]
    assert not missing, f"kernels missing from docs/gpu.md (run python scripts/gpu_resources.py): {missing}"
    version = px.ptxas_version(ptxas)
    if version not in section:
        pytest.skip(f"docs/gpu.md's table was made by another ptxas than this one ({version}); names checked")
    assert section.strip() == gpu_resources.render(ptxas).strip(), "stale table: run python scripts/gpu_resources.py"
