"""What a run will allocate, against the memory the machine has free: refuse before allocating.

A run whose options ask for more memory than the machine has used to end in
numpy's `_ArrayMemoryError: Unable to allocate 74.5 GiB ...`, a traceback, after
the run folder was made. Each command now estimates the bytes of its big arrays
from its options alone (its own `footprint.py`: weights, gradients, optimizer
state, the activations of a step, float64 Jacobians, checkpoint buffers) and
calls `check` before it allocates them or creates its run folder:

    Error: --hidden 100000 needs about 75 GiB; 23 GiB available

The available memory is MemAvailable of /proc/meminfo (Linux: free memory plus
what the kernel can reclaim, without swapping); elsewhere it is unknown and
nothing is checked. The estimates are of the arrays, not of Python's or the
libraries' overhead, so a run just under the limit can still fail: the
MemoryError it then raises is one line as well (console.user_errors).
"""

from __future__ import annotations

from pathlib import Path

MEMINFO = Path("/proc/meminfo")
KIB, MIB, GIB = 2 ** 10, 2 ** 20, 2 ** 30


def available_bytes() -> int | None:
    """MemAvailable in bytes, or None where /proc/meminfo does not say (not Linux, or unreadable)."""
    try:
        text = MEMINFO.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name == "MemAvailable":
            number, _, unit = value.strip().partition(" ")
            try:
                return int(number) * (1024 if unit.strip().lower() == "kb" else 1)
            except ValueError:
                return None
    return None


def size(n: float) -> str:
    """Bytes for people: '75 GiB', '1.5 GiB', '512 MiB', '24 KiB' (whole numbers from 10 up, commas from 1,000)."""
    value, unit = (n / GIB, "GiB") if n >= GIB else (n / MIB, "MiB") if n >= MIB else (n / KIB, "KiB")
    return f"{value:,.0f} {unit}" if value >= 10 or value == int(value) else f"{value:.1f} {unit}"


def check(needed: float, what: str) -> None:
    """ValueError `{what} needs about N GiB; M GiB available` when `needed` bytes exceed the
    available memory; nothing where that is unknown."""
    free = available_bytes()
    if free is not None and needed > free:
        raise ValueError(f"{what} needs about {size(needed)}; {size(free)} available")


def optimizer_slots(optimizer: str) -> int:
    """Arrays of optimizer state per parameter array (numbanets.optim: adam 2, sgd, rmsprop and adagrad 1)."""
    return 2 if optimizer == "adam" else 1


def training_bytes(parameters: int, itemsize: int, optimizer: str) -> int:
    """Weights, gradients and optimizer state of `parameters` numbers, and the checkpoint's buffers:
    np.savez of weights and state into memory, then its bytes copied once more."""
    slots = optimizer_slots(optimizer)
    return parameters * itemsize * ((2 + slots) + 2 * (1 + slots))
