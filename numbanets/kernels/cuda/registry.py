"""The one place CUDA kernels are declared: `register(name, sigs)` instead of a bare `cuda.jit`.

    from numbanets.kernels.cuda.registry import register

    @register("axpy", "{f}[::1], {f}[::1], float64")
    def _axpy(x, y, alpha):
        ...

`register` returns the (lazily compiled) `numba.cuda.jit` dispatcher, so the
kernel is launched as usual (`_axpy[blocks, threads](x, y, 0.5)`), and records
the Python function with the signatures it is launched with. tests/test_cuda_ptx.py
compiles EVERY registered kernel for every recorded signature with
`numba.cuda.compile_ptx` for compute capabilities 8.0 and 9.0, without a GPU:
the CUDA simulator runs plain Python and accepts code the real compiler rejects.

Signatures
    sigs is one string or a sequence of strings. A kernel's string is its argument
    list, e.g. "{f}[:, ::1], {f}[::1], int64, float64" (it is wrapped in "void(...)";
    a full "void(...)" string is taken as it is). Every "{f}" is expanded twice, to
    float32 and to float64, so one string records both dtypes; strings without "{f}"
    are recorded once. Device functions (device=True) need the full signature with
    the return type, e.g. "float64(float64, int64)".
    Write the types the launch really passes: C-contiguous device arrays are
    `float32[:, ::1]`, Python ints are int64, Python floats are float64, bools are
    boolean.

Device functions (register(..., device=True)) are always compiled with
inline="always": numba-cuda compiles a called, non-inlined device function
through `get_current_device()`, so `compile_ptx` of any kernel calling one fails
without a GPU (CudaSupportError). Inlined at numba-IR level they compile with the
kernel for the requested compute capability. Do not call plain `numba.njit` or
`register_jitable` functions from kernels for the same reason.

A kernel whose shared-memory dtype must follow its input dtype is registered
once per dtype from a factory (see gemm.py: "gemm_float32", "gemm_float64").

Launch configuration
    threads= is the number of threads per block the kernel is launched with (the
    product of the block's dimensions), dynamic_shared= the bytes of dynamic shared
    memory it is launched with (0: only static cuda.shared.array). A kernel launched
    through grid_1d's default block leaves threads=None, read as the package's
    THREADS. tests/test_cuda_sass.py assembles every kernel with ptxas and checks
    registers x threads and static + dynamic shared memory against the limits;
    scripts/gpu_resources.py prints the occupancy they give. Record the real launch:
    a block size that lives in a constant is passed as that constant.
"""

from __future__ import annotations

import dataclasses

from numba import cuda

__all__ = ["Kernel", "KERNELS", "register", "expand_signatures", "registered", "FLOATS"]

FLOATS = ("float32", "float64")


@dataclasses.dataclass(frozen=True)
class Kernel:
    """One registered kernel: its name, Python function, signatures and dispatcher."""

    name: str
    py_func: object
    sigs: tuple[str, ...]
    dispatcher: object
    device: bool = False
    options: tuple = ()
    threads: int | None = None  # threads per block at launch; None: the package's 1-D THREADS
    dynamic_shared: int = 0     # bytes of dynamic shared memory per block at launch


KERNELS: dict[str, Kernel] = {}


def expand_signatures(sigs, device: bool = False) -> tuple[str, ...]:
    """Full signature strings: "{f}" expanded to float32 and float64, kernels wrapped in void(...)."""
    if isinstance(sigs, str):
        sigs = (sigs,)
    out: list[str] = []
    for sig in sigs:
        if not isinstance(sig, str):
            raise TypeError(f"a kernel signature must be a string, got {sig!r}")
        variants = [sig.replace("{f}", f) for f in FLOATS] if "{f}" in sig else [sig]
        for s in variants:
            s = s.strip()
            if not device and not s.replace(" ", "").startswith("void("):
                s = f"void({s})"
            if s not in out:
                out.append(s)
    if not out:
        raise ValueError("register needs at least one signature")
    return tuple(out)


def register(name: str, sigs, device: bool = False, threads: int | None = None, dynamic_shared: int = 0,
             **options):
    """Decorator: `cuda.jit` the function (lazily, no GPU needed) and record it under `name`.

    threads and dynamic_shared record the launch configuration (module docstring);
    options go to cuda.jit (e.g. fastmath=False) and to compile_ptx in the PTX test.
    """
    full = expand_signatures(sigs, device)
    if threads is not None and not (isinstance(threads, int) and 1 <= threads <= 1024):
        raise ValueError(f"threads per block must be an int in 1..1024, got {threads!r}")
    if not (isinstance(dynamic_shared, int) and dynamic_shared >= 0):
        raise ValueError(f"dynamic_shared must be a byte count >= 0, got {dynamic_shared!r}")
    if device:
        options["inline"] = "always"  # see the module docstring: PTX without a GPU

    def decorate(fn):
        if name in KERNELS:
            raise ValueError(f"a CUDA kernel named {name!r} is registered already")
        dispatcher = cuda.jit(device=device, **options)(fn)
        KERNELS[name] = Kernel(name, fn, full, dispatcher, device, tuple(sorted(options.items())), threads,
                               dynamic_shared)
        return dispatcher

    return decorate


def registered() -> list[Kernel]:
    """Every registered kernel (import the kernel modules first), in registration order."""
    return list(KERNELS.values())
