"""Conv2d forward kernels side by side: im2col, Winograd F(2x2, 3x3), direct, and torch, in one process.

    python scripts/conv_kernels.py [--rounds 15] [--runs 3] [--threads 2 1] [--shapes all|NAME ...]

Times, on each shape, the forward kernels that apply to it:

    im2col     numbanets.kernels.cpu.conv.conv2d_forward with conv_choice's thresholds off (im2col only)
    winograd   numbanets.kernels.cpu.conv_winograd.conv2d_forward_winograd (3x3, stride 1, groups 1)
    direct     numbanets.kernels.cpu.conv_direct.conv2d_forward_direct (stride 1, groups 1)
    torch      torch.nn.functional.conv2d (oneDNN; an optional peer, skipped when torch is missing)

float32, stride 1, groups 1, "same" padding, on the bench's two conv2d-fwd shapes and a few others. Each
round runs every implementation once as a block (the order rotates per round): wait until the process's
threads are idle (runner.bench.measure.settle: the previous library's threads may still spin), one
untimed call, then --runs timed calls; the block's time is their median. Printed per implementation:
the median over rounds of the block times in ms, their range (min-max), and the median over rounds of
the per-round ratio im2col / implementation (above 1 = faster than im2col). The machine's speed drifts
within minutes, so only this interleaving compares fairly. Under --threads 1 numba, the BLAS (calling
thread) and torch all run one thread; under 2, two. --clock thread (only with --threads 1) times the
calling thread's CPU time instead of the wall clock: on a machine shared with other work it leaves out
the time the thread waits for a core, which the wall clock counts.

This is the script behind the thresholds in numbanets/kernels/cpu/conv_choice.py.

    python scripts/conv_kernels.py --errors

measures instead the float32 rounding error that tests/test_conv_fast.py's tolerance is set from:
max |y32 - y_ref| / (u * S) over random N(0, 1) inputs (rounded to float32 first), 3x3 layers with C
from 1 to 256 and --draws draws each, where y_ref is tests/reference.py's float64 conv2d_ref, u = 2**-24
and S = max over the output of |b| + sum |w| |x| (the sum of the magnitudes of an output's terms).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runner.bench.measure import settle
from runner.common.allocator import fix_allocator

# name: (x shape N, C, H, W), (F, K), padding
SHAPES = {
    "bench-5x5": ((64, 3, 32, 32), (32, 5), 2),  # the bench's conv2d-fwd first shape
    "bench-3x3": ((64, 32, 16, 16), (64, 3), 1),  # the bench's second
    "c16-28-3x3": ((32, 16, 28, 28), (32, 3), 1),
    "c1-28-5x5": ((64, 1, 28, 28), (8, 5), 2),
    "c3-32-3x3": ((64, 3, 32, 32), (16, 3), 1),
    "c64-16-3x3": ((32, 64, 16, 16), (64, 3), 1),
    "c64-8-3x3": ((64, 64, 8, 8), (64, 3), 1),
    "c128-8-3x3": ((32, 128, 8, 8), (128, 3), 1),
}


def _implementations(x, w, b, pad, torch):
    from numbanets.kernels.cpu import conv, conv_direct, conv_winograd

    h, wd = x.shape[2], x.shape[3]
    impls = {"im2col": lambda: conv.conv2d_forward(x, w, b, 1, 1, pad, pad, h, wd, 1)}
    if conv_winograd.supports(w.shape, 1, 1, 1):
        impls["winograd"] = lambda: conv_winograd.conv2d_forward_winograd(x, w, b, 1, 1, pad, pad, h, wd, 1)
    if conv_direct.supports(w.shape, 1, 1, 1):
        impls["direct"] = lambda: conv_direct.conv2d_forward_direct(x, w, b, 1, 1, pad, pad, h, wd, 1)
    if torch is not None:
        xt, wt, bt = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b)
        impls["torch"] = lambda: torch.nn.functional.conv2d(xt, wt, bt, padding=pad)
    return impls


def _check(impls, x, w, b, pad):
    """Every implementation's output against im2col's (float32 tolerance; the tests check against float64)."""
    ref = np.asarray(impls["im2col"]())
    for name, fn in impls.items():
        y = np.asarray(fn())
        err = float(np.max(np.abs(y - ref))) / max(1.0, float(np.max(np.abs(ref))))
        if err > 1e-4:
            raise AssertionError(f"{name} differs from im2col by {err:.2e} (relative to max |y|)")


def _measure(impls, rounds: int, runs: int, clock) -> dict:
    names = list(impls)
    blocks = {name: [] for name in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            settle()
            fn = impls[name]
            fn()
            times = []
            for _ in range(runs):
                t0 = clock()
                fn()
                times.append((clock() - t0) * 1e3)
            blocks[name].append(statistics.median(times))
    return blocks


def _errors(draws: int) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from reference import conv2d_ref

    from numbanets.kernels.cpu import conv, conv_direct, conv_winograd

    kernels = {"im2col": conv.conv2d_forward, "winograd": conv_winograd.conv2d_forward_winograd,
               "direct": conv_direct.conv2d_forward_direct}
    rng = np.random.default_rng(1)
    worst = dict.fromkeys(kernels, 0.0)
    print("max |y32 - y_ref| / (u * S), cumulative over the layers so far")
    for n, c, h, w, f, pad in [(4, 1, 9, 9, 3, 1), (4, 3, 11, 10, 5, 0), (4, 8, 9, 7, 6, 2), (2, 16, 10, 10, 8, 1),
                               (2, 32, 8, 8, 16, 1), (2, 64, 6, 6, 8, 1), (1, 128, 6, 5, 4, 1), (1, 256, 4, 4, 4, 1)]:
        for _ in range(draws):
            x, wt, b = rng.standard_normal((n, c, h, w)), rng.standard_normal((f, c, 3, 3)), rng.standard_normal(f)
            x, wt, b = (a.astype(np.float32) for a in (x, wt, b))
            ref = conv2d_ref(x, wt, b, padding=pad)
            scale = float(np.max(conv2d_ref(np.abs(x), np.abs(wt), np.abs(b), padding=pad)))
            oh, ow = ref.shape[2:]
            for name, kernel in kernels.items():
                y = kernel(x, wt, b, 1, 1, pad, pad, oh, ow, 1)
                worst[name] = max(worst[name], float(np.max(np.abs(y - ref))) / (2.0 ** -24 * scale))
        print(f"C {c:3d}  " + "  ".join(f"{k} {v:4.1f}" for k, v in worst.items()))


def main(argv=None) -> int:
    # conv.conv2d_forward sends layers to the other kernels where conv_choice says so: off, it is im2col only
    from numbanets.kernels.cpu import conv_choice

    conv_choice.DIRECT_ROW_MULTIPLE = None
    conv_choice.WINOGRAD_MIN_CHANNELS = None
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=15, help="rounds of one block per implementation")
    parser.add_argument("--runs", type=int, default=3, help="timed calls per block")
    parser.add_argument("--threads", type=int, nargs="+", default=[2, 1], help="thread counts to run under")
    parser.add_argument("--shapes", nargs="+", default=["all"], help=f"names among {list(SHAPES)}, or all")
    parser.add_argument("--clock", choices=["wall", "thread"], default="wall",
                        help="wall clock, or the calling thread's CPU time (--threads 1 only)")
    parser.add_argument("--errors", action="store_true", help="measure the float32 rounding error instead")
    parser.add_argument("--draws", type=int, default=10, help="--errors: random draws per layer")
    args = parser.parse_args(argv)
    if args.errors:
        _errors(args.draws)
        return 0
    shapes = list(SHAPES) if args.shapes == ["all"] else args.shapes
    unknown = [s for s in shapes if s not in SHAPES]
    if unknown:
        parser.error(f"unknown shape(s) {unknown}; expected some of {list(SHAPES)}")
    if args.clock == "thread" and args.threads != [1]:
        parser.error("--clock thread times one thread: use it with --threads 1")
    clock = time.thread_time if args.clock == "thread" else time.perf_counter

    import numba

    from numbanets.kernels.cpu import blas

    try:
        import torch
    except (ImportError, OSError):
        torch = None
    print(fix_allocator())
    print(f"BLAS {blas.NAME}, numba {numba.__version__}, torch {torch.__version__ if torch else 'missing'}, "
          f"float32, rounds {args.rounds} x runs {args.runs}, {args.clock} clock; ms: median over rounds [min-max]; "
          f"x im2col: median of per-round im2col / it")
    rng = np.random.default_rng(0)
    for threads in args.threads:
        numba.set_num_threads(threads)
        token = blas.set_threads(threads)
        if torch is not None:
            torch.set_num_threads(threads)
        print(f"\n== {threads} thread(s)")
        for shape in shapes:
            xs, (f, k), pad = SHAPES[shape]
            x = rng.standard_normal(xs, dtype=np.float32)
            w = (rng.standard_normal((f, xs[1], k, k)) / np.sqrt(xs[1] * k * k)).astype(np.float32)
            b = rng.standard_normal(f).astype(np.float32)
            impls = _implementations(x, w, b, pad, torch)
            _check(impls, x, w, b, pad)
            blocks = _measure(impls, args.rounds, args.runs, clock)
            print(f"{shape:11s} x {'x'.join(map(str, xs))} w {f}x{xs[1]}x{k}x{k} pad {pad}")
            base = blocks["im2col"]
            for name, times in blocks.items():
                ratio = statistics.median(a / t for a, t in zip(base, times))
                print(f"    {name:9s} {statistics.median(times):8.3f} ms [{min(times):7.3f}-{max(times):7.3f}]"
                      f"  x im2col {ratio:5.2f}")
        blas.restore_threads(token)
    return 0


if __name__ == "__main__":
    sys.exit(main())
