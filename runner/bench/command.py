"""`nbnets bench`: numbanets against plain numpy and PyTorch, in the same process and run.

    nbnets bench [--suite kernels|train|all] [--device cpu|cuda|auto] [--repeat N] [--max-seconds S]
                 [--cap-seconds S] [--case NAME] [--threads N] [--allocator fixed|default] [--tiny]
                 [--no-torch] [--out DIR]

writes OUT/bench/<timestamp>-<id>/bench.csv (COLUMNS; rewritten after every case,
so an interrupted run keeps what it measured) and config.json, and prints a
table. The cases are in runner.bench.cases, the numpy peers in
runner.bench.peers, the torch peers in runner.bench.torch_peer, the measuring in
runner.bench.measure, the rounds and intervals in runner.bench.intervals (peak
memory: runner.bench.memory_child). Per case:

1. Every implementation runs once on the same float32 inputs and its outputs
   are compared with numbanets' (PeerMismatch, exit 1, when a peer is off by
   more than 1e-3 relative): a speedup is never over a wrong result. This run
   also compiles, so compile time is excluded; --warmup more runs follow, and
   one timed run of each sizes the blocks (about intervals.BLOCK_MS each).
2. The implementations alternate in rounds of short blocks (numbanets, torch,
   numpy, numbanets, ...; a block of several runs starts with an untimed one),
   up to --repeat rounds and about --max-seconds per implementation (at least
   intervals.MIN_RATIOS rounds). speedup_vs_torch / speedup_vs_numpy (numbanets
   rows) = the median over rounds of peer's block median / numbanets' block
   median (above 1: numbanets is faster), with a seeded bootstrap 95 % interval
   (speedup_ci_low/high, numpy_ci_low/high). While the headline interval (torch's,
   else numpy's) reaches more than 10 % either side, rounds are added until the
   case has been timed --cap-seconds; `wide` flags it if it still does.
   A row holds the median, min and max in ms over all its runs, GFLOP/s at the
   median and its fraction of the ceiling: the sgemm rate of the machine (numpy
   `@` on 2048 x 2048 float32, its fastest run; on CUDA torch.matmul when torch
   has CUDA), measured first, row "sgemm-2048"; the load average before and
   after the case; the machine (runner.common.system.machine(): CPU vendor,
   model, the flags avx2/fma/avx512f, the kernels' BLAS and its code path).

numba, torch and the BLAS (threadpoolctl) all use --threads threads
(runner.common.threads.Threads).

The allocator: before anything runs, glibc malloc's mmap threshold is fixed at
32 MiB and its trim threshold at 512 MiB (runner.common.allocator), so large
temporaries are reused instead of being mapped, page-faulted and returned on
every call, for every implementation alike, and no case speeds up or slows
down the cases after it through glibc's moving thresholds (with them, torch's
char-rnn step was slower in `--suite train` alone than after the kernel cases;
see BENCHMARKS.md). `--allocator default` keeps glibc's behaviour.

peak_rss_mb (training cases, CPU only): each (case, implementation) runs in a
fresh process that first runs a tiny model of the same kind (kernels loaded,
thread pools up), then resets the RSS high-water mark (/proc/self/clear_refs)
and reads VmRSS as its baseline, builds the full model and runs 3 steps: the
value is VmHWM minus that baseline (model, optimizer state, activations,
temporaries; not the interpreter, libraries or compiled code). glibc's mmap
threshold is fixed at 128 KiB there so freed large blocks leave the RSS.
Kernel cases and CUDA runs leave it empty: in one process RSS has one
high-water mark for the whole run.

first-step-cold / first-step-warm (numbanets): wall time from starting a new
Python process (import numbanets, build the char-rnn LSTM, one training step)
to the end of that step, with NUMBA_CACHE_DIR a new empty folder (cold: all
compiles) and then the same folder again (warm: loaded from the disk cache).
"""

from __future__ import annotations

import gc
import math
import os
import shutil
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numba
import pandas as pd

from numbanets.device import resolve
from runner.bench import cases, intervals, measure, torch_peer
from runner.bench.case import Ctx
from runner.common.allocator import fix_allocator
from runner.common.runs import new_run_dir, write_config, write_csv, write_json
from runner.common.system import FLAGS, kernel_blas_description, load_average, machine
from runner.common.threads import Threads

COMMAND = "bench"
MACHINE_COLUMNS = ["cpu_vendor", "cpu_model", "cpu_flags", "blas", "recurrent_gemm"]  # runner.common.system.machine()'s, every row
COLUMNS = ["case", "shape", "impl", "device", "threads", "median_ms", "min_ms", "max_ms", "gflops",
           "fraction_of_peak", "peak_rss_mb", "speedup_vs_torch", "speedup_ci_low", "speedup_ci_high",
           "speedup_vs_numpy", "numpy_ci_low", "numpy_ci_high", "wide", "blocks", "block_runs", "added_blocks",
           "load_before", "load_after", *MACHINE_COLUMNS]
SUITES = ("kernels", "train", "all")
DEVICES = ("auto", "cpu", "cuda")
FIRST_STEP = ("first-step-cold", "first-step-warm")
SGEMM_N, TINY_SGEMM_N = 2048, 256
CAP_SECONDS = 30.0  # --cap-seconds' default (0 with --tiny)
DEFAULTS = {"suite": "all", "device": "cpu", "repeat": 20, "warmup": 2, "max_seconds": 3.0, "cap_seconds": None,
            "threads": None,
            "cases": (), "tiny": False, "no_torch": False, "out": "results", "allocator": "fixed"}
ALLOCATORS = ("fixed", "default")


def case_names() -> list[str]:
    """Every case name --case accepts, in the order the bench runs them (sgemm always runs)."""
    return list(dict.fromkeys(c.name for c in cases.build_cases(tiny=True))) + list(FIRST_STEP)


def validate(opts: dict) -> dict:
    o = {**DEFAULTS, **{k: v for k, v in opts.items() if k in DEFAULTS}}
    if o["suite"] not in SUITES:
        raise ValueError(f"--suite must be one of {', '.join(SUITES)}, got {o['suite']!r}")
    if o["device"] not in DEVICES:
        raise ValueError(f"--device must be one of {', '.join(DEVICES)}, got {o['device']!r}")
    for name, low in (("repeat", 1), ("warmup", 0)):
        if not isinstance(o[name], int) or o[name] < low:
            raise ValueError(f"--{name} must be an integer >= {low}, got {o[name]!r}")
    if not (isinstance(o["max_seconds"], (int, float)) and o["max_seconds"] > 0):
        raise ValueError(f"--max-seconds must be > 0, got {o['max_seconds']!r}")
    if o["cap_seconds"] is None:
        o["cap_seconds"] = 0.0 if o["tiny"] else CAP_SECONDS
    if not (isinstance(o["cap_seconds"], (int, float)) and 0 <= o["cap_seconds"] < math.inf):
        raise ValueError(f"--cap-seconds must be >= 0, got {o['cap_seconds']!r}")
    if o["allocator"] not in ALLOCATORS:
        raise ValueError(f"--allocator must be one of {', '.join(ALLOCATORS)}, got {o['allocator']!r}")
    if o["threads"] is not None and (not isinstance(o["threads"], int) or o["threads"] < 1):
        raise ValueError(f"--threads must be an integer >= 1, got {o['threads']!r}")
    wanted = [w.strip() for item in (o["cases"] or ()) for w in str(item).split(",") if w.strip()]
    names = case_names()
    for w in wanted:
        if not any(n == w or n.startswith(w + "-") for n in names):
            raise ValueError(f"--case {w!r} is not a case; choose from {', '.join(names)} "
                             f"(or a prefix such as conv2d, charlm, first-step)")
    o["cases"] = tuple(wanted)
    return o


def _selected(name: str, suite: str, o: dict) -> bool:
    """In --suite, and named by --case when that is given (a name or the prefix of a family)."""
    in_suite = o["suite"] in ("all", suite)
    return in_suite and (not o["cases"] or any(name == w or name.startswith(w + "-") for w in o["cases"]))


# --------------------------------------------------------------------------- one case

def bench_case(case, ctx, o: dict, threads: int, ceilings: dict) -> tuple[list[dict], dict]:
    """(rows, {peer: (error, output)}): check the peers against numbanets, then time them in alternating
    blocks (runner.bench.intervals): speedup_vs_<peer> is the median of the per-block ratios, with its
    bootstrap interval, re-measured up to --cap-seconds while the headline interval is wider than 10 %."""
    peers = ("numpy",) + (("torch",) if ctx.torch is not None else ())
    errors = measure.agreement(case, peers, ctx)
    runners = errors.pop("runners")
    measure.check(case, errors)
    order = ("numbanets",) + tuple(p for p in ("torch", "numpy") if p in runners)
    call_ms = 0.0
    for impl in order:  # warm-up runs, the last one timed: it sizes the blocks
        for _ in range(o["warmup"]):
            runners[impl].run()
        call_ms = max(call_ms, measure.time_block(runners[impl], 1, 0.0, 1)[0])
    per_block = intervals.block_runs(call_ms)

    def run_block(impl):
        if runners[impl].device == "cpu":
            measure.settle()  # the previous implementation's threads may still spin
        if per_block > 1:
            runners[impl].run()  # untimed lead-in: caches and the thread pool warm
        return measure.time_block(runners[impl], per_block, math.inf, per_block, gc_off=False)

    load_before = load_average()
    gc.collect()
    gc.disable()  # for all the blocks (time_block leaves it off)
    try:
        m = intervals.measure(run_block, order, o["repeat"], o["max_seconds"] * len(order), o["cap_seconds"])
    finally:
        gc.enable()
    load_after = load_average()
    rows = [measure.row(case.name, case.shape, impl, runners[impl].device, threads, m.times(impl), case.flops,
                        ceilings.get(runners[impl].device)) for impl in runners]
    nb = next(r for r in rows if r["impl"] == "numbanets")
    for peer, iv in m.intervals.items():
        nb[f"speedup_vs_{peer}"] = iv.median
        low, high = ("speedup_ci_low", "speedup_ci_high") if peer == "torch" else ("numpy_ci_low", "numpy_ci_high")
        nb[low], nb[high] = iv.low, iv.high
    nb["wide"] = m.wide
    for r in rows:
        r.update(load_before=load_before, load_after=load_after, blocks=len(m.blocks["numbanets"]),
                 block_runs=per_block, added_blocks=m.added_rounds)
    return rows, errors


def _progress(k: int, total: int, case, rows: list[dict], errors: dict) -> str:
    parts = [f"{r['impl']} {r['median_ms']:.3f} ms" for r in rows]
    nb = next(r for r in rows if r["impl"] == "numbanets")
    if not math.isnan(nb["speedup_vs_torch"]):
        parts.append(f"x{nb['speedup_vs_torch']:.2f} vs torch{_interval(nb['speedup_ci_low'], nb['speedup_ci_high'])}")
    known = not math.isnan(nb["speedup_ci_low"]) or not math.isnan(nb["numpy_ci_low"])
    parts.append(f"{nb['blocks']} blocks of {nb['block_runs']}"
                 + ((" WIDE" if known else " (no interval)") if nb["wide"] else ""))
    worst = max((e for e, _ in errors.values()), default=0.0)
    return f"[{k:>2}/{total}] {case.name:<15} {case.shape:<46} " + "  ".join(parts) + f"  (agree {worst:.0e})"


# --------------------------------------------------------------------------- the command

def _first_step_rows(o, device, threads, echo) -> list[dict]:
    """The first-step-cold and first-step-warm rows: the char-rnn model's first step in new processes."""
    charlm = cases.CHARLM["charlm-char-rnn"]
    cfg = {**charlm, **(cases.TINY_CHARLM["charlm-char-rnn"] if o["tiny"] else {}), "device": device}
    cfg.pop("optimizer")
    shape = (f"LSTM {cfg['layers']}x{cfg['hidden']} batch {cfg['batch']} seq {cfg['seq']} vocab {cfg['vocab']}: "
             "new process to first step")
    rows = []
    cache = tempfile.mkdtemp(prefix="nbnets-bench-cache-")
    try:
        for name in FIRST_STEP:
            runs = 1 if name.endswith("cold") else max(1, min(3, o["repeat"]))
            times = [measure.first_step_ms(cfg, cache, threads) for _ in range(runs)]  # cold: the first fills it
            rows.append(measure.row(name, shape, "numbanets", device, threads, times, 0.0, None))
            echo(f"{name:<15} {statistics.median(times) / 1e3:.2f} s "
                 f"({'empty' if name.endswith('cold') else 'filled'} NUMBA_CACHE_DIR)")
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return rows


@dataclass
class Result:
    run_dir: Path
    frame: object        # pandas DataFrame of bench.csv
    interrupted: bool    # Ctrl-C: the rows measured so far are written


def run(opts: dict, echo=None) -> Result:
    """Run the bench with `opts` (DEFAULTS' keys)."""
    echo = echo or (lambda s: print(s, flush=True))
    o = validate(opts)
    device = resolve(o["device"])
    torch, torch_note = torch_peer.load(o["no_torch"], device)
    ctx = Ctx(device, torch)
    threads = o["threads"] or numba.get_num_threads()
    selected = [c for c in cases.build_cases(o["tiny"]) if _selected(c.name, c.suite, o)]
    first_step = any(_selected(n, "train", o) for n in FIRST_STEP)
    if not selected and not first_step:
        raise ValueError(f"no case of --suite {o['suite']} matches --case {','.join(o['cases'])}")
    t_start = time.perf_counter()
    rows, agree, notes, interrupted = [], {}, [], False
    allocator = (fix_allocator() if o["allocator"] == "fixed"
                 else "allocator: glibc's defaults (moving thresholds)")
    notes.append(allocator)
    load = load_average()
    host = machine()
    if load > 0.5 * (os.cpu_count() or 1):  # before the bench itself runs: other work shares the cores
        notes.append(f"the machine was busy when the bench started (load average {load:.1f} on {os.cpu_count()} "
                     "cores): the timings are noisy, compare ratios of runs made alone")

    def save():
        frame = pd.DataFrame(rows, columns=[c for c in COLUMNS if c not in MACHINE_COLUMNS])
        for column in MACHINE_COLUMNS:
            frame[column] = host[column]
        write_csv(run_dir / "bench.csv", frame[COLUMNS], float_format="%.6g")
        return frame

    with Threads(threads, torch) as th:
        run_dir = new_run_dir(o["out"], COMMAND)
        config = write_config(run_dir, COMMAND, o, device=device, threads=threads, blas=th.blas, torch=torch_note,
                              cpu_count=os.cpu_count(), load_average_at_start=load, tolerance=measure.TOL, tolerance_floor=measure.ABS_FLOOR,
                              allocator=allocator, machine=host, interval={
                                  "level": intervals.LEVEL, "wide": intervals.WIDE, "min_ratios": intervals.MIN_RATIOS,
                                  "bootstrap": intervals.BOOTSTRAP, "seed": intervals.SEED,
                                  "block_ms": intervals.BLOCK_MS, "max_block_runs": intervals.MAX_BLOCK_RUNS})
        echo(f"bench   {len(selected)} cases{' + first step' if first_step else ''} on {device}, {threads} threads; "
             f"torch: {torch_note}; numbanets' kernels on {kernel_blas_description()}; BLAS libraries: {th.blas}")
        echo(f"machine {host['cpu_vendor']} {host['cpu_model']}, {host['cpu_count']} cores, flags "
             f"{host['cpu_flags'] or 'none of ' + '/'.join(FLAGS)}; load average {load:.2f}")
        echo(f"blas    kernels: {host['blas']}; numpy: {host['numpy_blas']}")
        echo(f"method  alternating blocks, median of per-block ratios, bootstrap {intervals.LEVEL:.0%} interval; "
             f"re-measured up to {o['cap_seconds']:g} s while wider than +-{intervals.WIDE:.0%}")
        echo(f"run     {run_dir}")
        for note in notes:
            echo(f"note    {note}")
        n = TINY_SGEMM_N if o["tiny"] else SGEMM_N
        ceilings = {}
        for where in ("cpu",) + (("cuda",) if device == "cuda" and torch is not None else ()):
            row, ceilings[where] = measure.sgemm(n, o["repeat"], o["max_seconds"], Ctx(where, torch))
            row["threads"] = threads
            rows.append(row)
            echo(f"ceiling sgemm {n} on {where}: {ceilings[where]:.1f} GFLOP/s (fastest of {row['runs']} runs)")
        save()
        try:
            for k, case in enumerate(selected, 1):
                case_rows, errors = bench_case(case, ctx, o, threads, ceilings)
                rows += case_rows
                agree[f"{case.name} {case.shape}"] = {impl: [e, key] for impl, (e, key) in errors.items()}
                echo(_progress(k, len(selected), case, case_rows, errors))
                save()
            train = [c for c in selected if c.train]
            jobs = list(dict.fromkeys((c.name, r["impl"]) for c in train for r in rows if r["case"] == c.name))
            jobs = jobs if device == "cpu" else []
            # fresh processes: one after the other (their times are measured), except with --tiny
            with ThreadPoolExecutor(max_workers=2 if o["tiny"] else 1) as pool:
                if jobs:
                    echo(f"memory  peak RSS of {len(jobs)} (case, impl) pairs, in a fresh process per impl")
                    memory = pool.submit(measure.peak_memory, jobs, o["tiny"], threads)
                first = pool.submit(_first_step_rows, o, device, threads, echo) if first_step else None
                if jobs:
                    peaks, failed = memory.result()
                    notes += failed
                    for r in rows:
                        r["peak_rss_mb"] = peaks.get((r["case"], r["impl"]), r["peak_rss_mb"])
                    save()
                if first is not None:
                    rows += first.result()
        except KeyboardInterrupt:
            interrupted = True
            notes.append("interrupted (Ctrl-C): the table holds what was measured before")
    frame = save()
    seconds = time.perf_counter() - t_start
    load_end = load_average()
    flagged = frame[frame["wide"].astype("object").eq(True)] if len(frame) else frame
    unknown = flagged["speedup_ci_low"].isna() & flagged["numpy_ci_low"].isna()
    wide, short = (list(dict.fromkeys(flagged.loc[m, "case"])) for m in (~unknown, unknown))
    if wide:
        notes.append(f"intervals still wider than +-{intervals.WIDE:.0%} after --cap-seconds (marked ~): "
                     f"{', '.join(wide)}")
    if short:
        notes.append(f"no interval (fewer than {intervals.MIN_RATIOS} blocks; marked n/a~): {', '.join(short)}")
    config.update(load_average_at_end=load_end, ceiling_gflops=ceilings, agreement=agree, notes=notes,
                  interrupted=interrupted,
                  seconds=round(seconds, 1),
                  runs=[{k: r[k] for k in ("case", "shape", "impl", "runs")} for r in rows])
    write_json(run_dir / "config.json", config)
    echo("")
    echo(render(frame))
    echo(f"load average {load:.2f} at the start, {load_end:.2f} at the end")
    for note in notes:
        echo(f"note: {note}")
    echo(f"wrote {run_dir / 'bench.csv'} ({len(frame)} rows, {seconds:.0f} s)")
    return Result(run_dir, frame[COLUMNS], interrupted)


def _interval(low, high) -> str:
    return "" if low is None or math.isnan(low) else f" [{low:.2f}, {high:.2f}]"


SHOWN = ["case", "shape", "impl", "device", "threads", "median_ms", "min_ms", "max_ms", "gflops", "fraction_of_peak",
         "peak_rss_mb", "speedup_vs_torch", "ci95", "speedup_vs_numpy", "blocks"]


def render(frame) -> str:
    """The bench table as aligned text: names left, numbers right, empty where NaN; ci95 is the torch
    interval (the numpy one without torch), marked ~ when wide."""
    formats = {"threads": ".0f", "median_ms": ".3f", "min_ms": ".3f", "max_ms": ".3f", "gflops": ".1f",
               "fraction_of_peak": ".2f", "peak_rss_mb": ".1f", "speedup_vs_torch": ".2f", "speedup_vs_numpy": ".2f",
               "blocks": ".0f", "ci95": ""}
    heads = {"fraction_of_peak": "of_peak", "peak_rss_mb": "rss_mb", "speedup_vs_torch": "vs_torch",
             "speedup_vs_numpy": "vs_numpy"}

    def number(v):
        return v is not None and not (isinstance(v, float) and math.isnan(v))

    def cell(col, row):
        if col == "ci95":
            torch = number(row["speedup_ci_low"])
            low, high = (row["speedup_ci_low"], row["speedup_ci_high"]) if torch else (row["numpy_ci_low"],
                                                                                        row["numpy_ci_high"])
            mark = "~" if row["wide"] is True or str(row["wide"]) == "True" else ""
            return (f"{low:.2f}-{high:.2f}" if number(low) else ("n/a" if mark else "")) + mark
        v = row[col]
        if col not in formats:
            return str(v)
        return format(v, formats[col]) if number(v) else ""

    table = [[heads.get(c, c) for c in SHOWN]]
    table += [[cell(c, row) for c in SHOWN] for row in frame.to_dict("records")]
    widths = [max(len(r[i]) for r in table) for i in range(len(SHOWN))]
    return "\n".join("  ".join(v.ljust(w) if c not in formats else v.rjust(w)
                               for c, v, w in zip(SHOWN, r, widths)).rstrip() for r in table)
