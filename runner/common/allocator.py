"""glibc malloc's mmap and trim thresholds fixed for a whole process: the bench and the sweep's workers.

Training loops allocate and free the same large arrays every step. With glibc's
defaults (or Dask's MALLOC_TRIM_THRESHOLD_=65536 in its workers) the freed
memory goes back to the kernel and comes back as fresh pages, page-faulted and
zeroed on first touch, every step: a small train-charlm run takes 1.5x as long
(BENCHMARKS.md, nbnets sweep).
"""

from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (glibc's malloc.h)
MMAP_THRESHOLD = 32 << 20   # glibc's largest: blocks up to 32 MiB come from the heap
TRIM_THRESHOLD = 512 << 20  # free memory kept at the top of the heap before it is given back


def fix_allocator() -> str:
    """Fix glibc malloc's mmap threshold at 32 MiB and its trim threshold at 512 MiB for this process; returns
    what was done, for the run's notes.

    By default glibc serves blocks above 128 KiB with fresh mmap'ed pages (a page fault and zeroing per
    4 KiB on first touch) and gives heap memory back above a trim threshold, and it raises both thresholds
    when the program frees a large mmap'ed block: the first such free changes the speed of everything
    after it. numpy's frees raise them, torch's large frees do not, so an implementation's time (torch's
    most: every output tensor page-faulted in while the thresholds are low) depended on which cases had
    run before it. With the thresholds fixed, every case and every implementation runs under the same
    allocator, whatever ran first. The measurements are in BENCHMARKS.md (glibc malloc's moving
    thresholds); `nbnets sweep`'s workers fix them too (Dask starts workers with a 64 KiB trim threshold)."""
    if not sys.platform.startswith("linux"):
        return "allocator: not Linux, malloc left at its defaults"
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    except (OSError, AttributeError):
        ok = False
    if not ok:
        return "allocator: glibc's mallopt not available, malloc left at its defaults"
    return (f"allocator: glibc malloc's mmap threshold fixed at {MMAP_THRESHOLD >> 20} MiB and trim threshold at "
            f"{TRIM_THRESHOLD >> 20} MiB for the whole run (--allocator default leaves glibc's moving thresholds)")
