"""How `nbnets bench` measures: agreement, timing, the sgemm ceiling, the allocator, fresh processes.

agreement(case)   one run of every implementation on the same inputs, outputs compared with
                  numbanets' element by element: max |peer - nb| / (|nb| + ABS_FLOOR * max |nb|) per
                  output (for a training step's updated weights, nb is numbanets' update); check()
                  raises PeerMismatch above TOL.
time_block()      back-to-back timed runs (perf_counter on the CPU, CUDA events on a GPU), GC off; one
                  block of runner.bench.intervals' alternating rounds.
settle()          wait until the process's threads are idle: the previous implementation's BLAS
                  threads may still spin (OpenBLAS's do for about 100 ms after a call).
row()             one bench.csv row from a list of timings: median, min, max, GFLOP/s, fraction of peak.
sgemm()           the ceiling: numpy `@` on n x n float32 (torch.matmul on CUDA), its fastest run.
fix_allocator()   (runner.common.allocator) glibc malloc's thresholds fixed for the run.
peak_memory()     peak memory of training cases, one fresh process per implementation running
                  runner.bench.memory_child (see runner.bench.command).
first_step_ms()   wall time from a new process to the end of its first training step.

The thread counts are runner.common.threads.Threads'. This module runs cases
(runner.bench.case types) and never builds them: runner.bench.cases is imported
only by the command and by the memory child.
"""

from __future__ import annotations

import gc
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from runner.bench.case import Ctx, Runner

# The agreement test per element: |peer - nb| <= TOL * (|nb| + ABS_FLOOR * max |nb|), nb numbanets' output
# (or update). Relative to each element, so a small element cannot hide under the largest one, down to a floor
# for the elements float32 rounding leaves with no relative accuracy (sums that cancel). The worst measured on
# the AMD EPYC, every case at full and --tiny size, seeds 0-1, numpy and torch peers, MKL and OpenBLAS, was
# 1.5e-4 (conv2d-bwd x 64x3x32x32, torch, db); TOL leaves a margin of 3 over it. A 1 % error is caught in any
# element above 5e-4 of its output's largest (the former max |peer - nb| / max |nb| <= 1e-3: above 1e-1).
TOL = 5e-4
ABS_FLOOR = 1e-2
GRAD_FLOOR = 1e-3   # parameters whose gradient is below this fraction of its array's largest are not compared
ROOT = Path(__file__).resolve().parents[2]  # the repository: the fresh processes import runner from here


class PeerMismatch(RuntimeError):
    """A peer's outputs differ from numbanets' on the same inputs."""


# --------------------------------------------------------------------------- agreement

def _error(key, want, have, ref, initial) -> float:
    """max |have - want| / (|want| + ABS_FLOOR * max |want|) over one output's elements (inf when the
    shapes or any integer differ; a scalar: |have - want| / |want|)."""
    if isinstance(want, float):
        return abs(float(have) - want) / max(abs(want), 1e-30)
    want, have = np.asarray(want), np.asarray(have)
    if want.shape != have.shape:
        return math.inf
    if np.issubdtype(want.dtype, np.integer):
        return math.inf if np.any(want != have) else 0.0  # indices must match exactly
    w, diff = want.astype(np.float64), np.abs(want.astype(np.float64) - have.astype(np.float64))
    size, keep = np.abs(w), None  # what each element's error is relative to; the elements compared
    if key.startswith("param.") and initial is not None:
        # compare the update (the step from the common initial weights), not the weights, and skip the
        # elements whose gradient is rounding noise: a first RMSprop/Adagrad/Adam step moves every
        # weight by about lr * sign(gradient), whatever the gradient's size
        name = key[len("param."):]
        size = np.abs(w - np.asarray(initial[name], dtype=np.float64))
        g = np.abs(np.asarray(ref[f"grad.{name}"], dtype=np.float64))
        keep = g >= GRAD_FLOOR * g.max() if g.size and g.max() > 0 else None
    scale = float(np.max(size)) if size.size else 0.0  # the largest element (update), skipped ones included
    if keep is not None:
        diff, size = diff[keep], size[keep]
    if not diff.size:
        return 0.0
    if not scale > 0:  # numbanets' output (or update) is all zeros: the peer's must be too
        return float(np.max(diff))
    return float(np.max(diff / (size + ABS_FLOOR * scale)))


def compare(ref: dict, got: dict, initial: dict | None = None) -> tuple[float, str]:
    """(largest error, the output it is in) of a peer's outputs `got` against numbanets' `ref`."""
    worst, where = 0.0, ""
    for key, want in ref.items():
        err = _error(key, want, got[key], ref, initial) if key in got else math.inf
        if not err <= worst:  # NaN counts as worst
            worst, where = err, key
    return worst, where


def agreement(case, impls=("numpy", "torch"), ctx=None, seed: int = 0, inputs=None) -> dict:
    """{impl: (error, output)}: one run of every impl on the same inputs, compared with numbanets.

    Also returns each impl's runner under "runners" (after its first run: compiled, warmed up).
    """
    ctx = ctx or Ctx()
    inputs = case.make(np.random.default_rng(seed)) if inputs is None else inputs
    runners = {impl: case.impls[impl](inputs, ctx) for impl in ("numbanets", *impls)}
    outs = {impl: r.outputs(r.run()) for impl, r in runners.items()}
    initial = inputs.get("state")
    result = {impl: compare(outs["numbanets"], outs[impl], initial) for impl in impls}
    result["runners"] = runners
    return result


def check(case, errors: dict, tol: float = TOL) -> None:
    """PeerMismatch naming the first peer whose error exceeds tol."""
    for impl, (err, key) in errors.items():
        if impl != "runners" and not err <= tol:
            raise PeerMismatch(f"{case.name} ({case.shape}): {impl} disagrees with numbanets in {key!r}: "
                               f"max elementwise relative error {err:.3g} > {tol:g} (floor {ABS_FLOOR:g} of "
                               f"the output's largest); not timed")


# --------------------------------------------------------------------------- timing

def _clock(runner):
    """A function running runner.run() once and returning its time in ms."""
    if runner.timer == "numba-cuda":
        from numba import cuda  # numba's CUDA target: optional (may not import), needed only on a GPU
        make_event, sync = cuda.event, cuda.synchronize
    elif runner.timer == "torch-cuda":
        import torch  # optional peer: only its own runners carry this timer
        make_event, sync = (lambda: torch.cuda.Event(enable_timing=True)), torch.cuda.synchronize
    else:
        def once():
            t0 = time.perf_counter()
            runner.run()
            return (time.perf_counter() - t0) * 1e3
        return once
    sync()

    def once_cuda():
        start, end = make_event(), make_event()
        t0 = time.perf_counter()
        start.record()
        runner.run()
        end.record()
        end.synchronize()
        ms = start.elapsed_time(end)
        return ms if ms >= 0 else (time.perf_counter() - t0) * 1e3  # the CUDA simulator records no time
    return once_cuda


SETTLE_WINDOW = 0.01  # settle() samples the process's CPU time over windows of this many seconds ...
SETTLE_IDLE = 0.1     # ... until one used less than this fraction of one core ...
SETTLE_MAX = 1.0      # ... or this many seconds have passed


def settle(max_seconds: float = SETTLE_MAX) -> float:
    """Sleep until the process's threads are idle; returns the seconds waited.

    Libraries keep their worker threads spinning after a parallel call so that the next one starts
    at once: OpenBLAS's (the numpy peer's BLAS, through numba's np.dot) for about 100 ms on this
    project's machines, MKL's and torch's OpenMP threads for under 10 ms. Between alternating blocks
    such a spin takes a core from the implementation that runs next, on a 2-core machine half of it;
    the bench waits it out so that each block starts on an idle process, as a program running one
    library alone does. time.process_time() counts the CPU time of all the process's threads."""
    start = time.perf_counter()
    while True:
        cpu, wall = time.process_time(), time.perf_counter()
        time.sleep(SETTLE_WINDOW)
        now = time.perf_counter()
        if time.process_time() - cpu < SETTLE_IDLE * (now - wall) or now - start > max_seconds:
            return now - start


def time_block(runner, runs: int, max_seconds: float, min_runs: int = 3, gc_off: bool = True) -> list[float]:
    """Up to `runs` timed calls (ms), stopping after max_seconds once min_runs are done; GC collected, then
    off meanwhile (gc_off False: the caller has turned it off for many blocks)."""
    once = _clock(runner)
    if gc_off:
        gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        times, t_end = [], time.perf_counter() + max_seconds
        while len(times) < runs:
            times.append(once())
            if len(times) >= min(min_runs, runs) and time.perf_counter() > t_end:
                break
        return times
    finally:
        if enabled:
            gc.enable()


def row(case, shape, impl, device, threads, times, flops, peak, rss=math.nan) -> dict:
    """A bench.csv row (runner.bench.command.COLUMNS, and "runs") of `times` (ms) of one implementation.

    gflops = flops at the median time; fraction_of_peak = that / `peak` (GFLOP/s; None or 0: NaN).
    The speedup columns and their intervals start as NaN (wide as None): the command fills them in for
    numbanets' row once every implementation is timed; the load and machine columns too.
    """
    med = statistics.median(times) if times else math.nan
    gflops = flops / (med * 1e-3) / 1e9 if flops and med > 0 else math.nan
    return dict(case=case, shape=shape, impl=impl, device=device, threads=threads, median_ms=med,
                min_ms=min(times, default=math.nan), max_ms=max(times, default=math.nan), gflops=gflops,
                fraction_of_peak=gflops / peak if peak and peak > 0 else math.nan, peak_rss_mb=rss,
                speedup_vs_torch=math.nan, speedup_ci_low=math.nan, speedup_ci_high=math.nan,
                speedup_vs_numpy=math.nan, numpy_ci_low=math.nan, numpy_ci_high=math.nan, wide=None,
                blocks=math.nan, block_runs=math.nan, added_blocks=math.nan, load_before=math.nan,
                load_after=math.nan, runs=len(times))


def sgemm(n: int, repeat: int, max_seconds: float, ctx) -> tuple[dict, float]:
    """(row, ceiling GFLOP/s at the fastest run): numpy `@` (CPU) or torch.matmul (CUDA) on n x n float32."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, n, n), dtype=np.float32)
    if ctx.device == "cuda":
        torch = ctx.torch
        a, b = torch.from_numpy(a).cuda(), torch.from_numpy(b).cuda()
        runner, impl = Runner(lambda: a @ b, None, "torch-cuda", "cuda"), "torch"
    else:
        runner, impl = Runner(lambda: a @ b, None), "numpy"
    for _ in range(2):
        runner.run()
    times = time_block(runner, max(repeat, 3), max_seconds)
    flops = 2.0 * n ** 3
    ceiling = flops / (min(times) * 1e-3) / 1e9
    shape = f"{n}x{n} @ {n}x{n} float32"
    return row(f"sgemm-{n}", shape, impl, ctx.device, None, times, flops, ceiling), ceiling


# --------------------------------------------------------------------------- fresh processes

def _child_env(threads: int, **extra) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    for var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    env.update(extra)
    return env


def peak_memory(jobs: list[tuple[str, str]], tiny: bool, threads: int) -> tuple[dict, list[str]]:
    """({(case, impl): MB or NaN}, [notes on failures]): one fresh process per impl (glibc's mmap threshold
    fixed at 128 KiB, so freed large blocks leave the RSS), os.cpu_count() processes at a time.

    Each process runs runner.bench.memory_child.main(spec), spec a JSON object {"cases": [names], "impl",
    "tiny", "threads"}, and prints one JSON line {"case", "peak_mb", "method"} per case it measured.
    """
    code = "import sys; from runner.bench.memory_child import main; main(sys.argv[1])"
    by_impl: dict[str, list[str]] = {}
    for case, impl in jobs:
        by_impl.setdefault(impl, []).append(case)

    def one(impl):
        spec = json.dumps({"cases": by_impl[impl], "impl": impl, "tiny": tiny, "threads": threads})
        env = _child_env(threads, MALLOC_MMAP_THRESHOLD_="131072")
        proc = subprocess.run([sys.executable, "-c", code, spec], capture_output=True, text=True, env=env, cwd=ROOT)
        got = {}
        for line in proc.stdout.splitlines():
            try:
                d = json.loads(line)
                got[(d["case"], impl)] = d["peak_mb"]
            except (ValueError, KeyError, TypeError):
                continue
        note = ""
        if proc.returncode != 0 or len(got) < len(by_impl[impl]):
            note = f"peak memory of {impl}: " + ((proc.stderr.strip().splitlines() or ["no output"])[-1])
        return got, note

    with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
        results = list(pool.map(one, by_impl))
    peaks = {job: math.nan for job in jobs}
    for got, _ in results:
        peaks.update(got)
    return peaks, [note for _, note in results if note]


FIRST_STEP_CODE = """
import json, sys
cfg = json.loads(sys.argv[1])
import numpy as np
from numbanets.functional import clip_grad_norm
from numbanets.nn.models import CharLM
from numbanets.optim import make_optimizer
rng = np.random.default_rng(0)
model = CharLM(cfg["vocab"], cfg["hidden"], cfg["layers"], cell=cfg["cell"], rng=rng, init_scale=0.08)
if cfg["device"] == "cuda":
    model.to("cuda")
opt = make_optimizer("rmsprop", model, lr=2e-3, alpha=0.95)
ids = rng.integers(0, cfg["vocab"], size=(cfg["seq"] + 1, cfg["batch"]))
loss, _ = model.loss_and_grad(ids[:-1], ids[1:])
clip_grad_norm(model.gradients(), 5.0)
opt.step()
print("STEP_DONE", loss, flush=True)
"""


def first_step_ms(cfg: dict, cache_dir: str, threads: int) -> float:
    """ms from starting `python -c FIRST_STEP_CODE` to the line it prints after its first step."""
    env = _child_env(threads, NUMBA_CACHE_DIR=cache_dir)
    with tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", FIRST_STEP_CODE, json.dumps(cfg)], stdout=subprocess.PIPE,
                                stderr=err, text=True, env=env, cwd=ROOT)
        ms = math.nan
        for line in proc.stdout:
            if line.startswith("STEP_DONE"):
                ms = (time.perf_counter() - t0) * 1e3
                break
        proc.communicate()
        if proc.returncode != 0 or math.isnan(ms):
            err.seek(0)
            tail = (err.read().strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"the first-step process failed (exit {proc.returncode}): {tail}")
    return ms
