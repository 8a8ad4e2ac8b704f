"""The fresh process that measures the peak memory of `nbnets bench`'s training cases (peak_rss_mb).

runner.bench.measure.peak_memory starts one per implementation:

    python -c "import sys; from runner.bench.memory_child import main; main(sys.argv[1])" SPEC

SPEC is a JSON object {"cases": [names], "impl": "numbanets"|"numpy"|"torch", "tiny": bool,
"threads": int}; the process prints one JSON line {"case", "peak_mb", "method"} per case.
Per case: the tiny model of the same kind runs twice first (kernels compiled or loaded, thread
pools up), then the RSS high-water mark is reset (/proc/self/clear_refs) and VmRSS read as the
baseline, the full model is built and runs MEMORY_STEPS steps; peak_mb is VmHWM minus that
baseline (model, optimizer state, activations, temporaries; not the interpreter, libraries or
compiled code). Where /proc cannot reset the mark, ru_maxrss stands in ("method").

It lives apart from runner.bench.measure because it builds cases (runner.bench.cases), which
measure never imports.
"""

from __future__ import annotations

import ctypes
import gc
import json
import resource  # Unix only, as is this measurement; imported in the child process alone

import numpy as np

from runner.bench.case import Ctx
from runner.bench.cases import train_cases
from runner.common.threads import Threads

MEMORY_STEPS = 3


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"no {field} in /proc/self/status")


def _reset_peak() -> tuple[int, str]:
    """(baseline KiB, method): reset VmHWM to the current RSS and return that RSS (else ru_maxrss so far).

    Free heap memory goes back to the OS first (glibc malloc_trim), so that a later allocation cannot
    reuse memory the baseline already counts.
    """
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _status_kib("VmRSS"), "VmHWM"
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "ru_maxrss"


def _peak(method: str) -> int:
    return _status_kib("VmHWM") if method == "VmHWM" else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main(arg: str) -> None:
    """For each training case of one impl, print a JSON line with the peak memory (MB above the
    baseline) of MEMORY_STEPS steps, after a tiny model of the same kind has run."""
    spec = json.loads(arg)
    torch = None
    if spec["impl"] == "torch":
        import torch  # optional peer: only its own child process imports it
    warm = {c.name: c for c in train_cases(True)}
    real = {c.name: c for c in train_cases(spec["tiny"])}
    with Threads(spec["threads"], torch):
        ctx = Ctx("cpu", torch)
        for name in spec["cases"]:
            rng = np.random.default_rng(0)
            runner = warm[name].impls[spec["impl"]](warm[name].make(rng), ctx)
            runner.run()
            runner.run()
            del runner
            inputs = real[name].make(rng)
            gc.collect()
            base, method = _reset_peak()
            runner = real[name].impls[spec["impl"]](inputs, ctx)
            for _ in range(MEMORY_STEPS):
                runner.run()
            peak = _peak(method)
            del runner, inputs
            gc.collect()
            print(json.dumps({"case": name, "peak_mb": max(peak - base, 0) / 1024.0, "method": method}), flush=True)
