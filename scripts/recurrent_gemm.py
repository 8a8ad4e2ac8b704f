"""Time the recurrent per-step product every way numbanets can run it, shape by shape, on this machine.

    python scripts/recurrent_gemm.py                 # products on one thread, then the LSTM/GRU time loops
    python scripts/recurrent_gemm.py --rounds 31     # more rounds: a tighter median

Part 1, one thread: out (M, n) = a (M, k) @ op(w), the products of an RNN/LSTM/GRU time loop, with M the
rows of one row block (25 or 50) and H 128 or 512 (forward: h_{t-1} @ w_hh.T, k = H, n = 4H; backward:
da_t @ w_hh, k = 4H, n = H), each way:

    blas         the kernels' BLAS (MKL with the mkl extra, else OpenBLAS): plain gemm, repacking w every call
    mkl-packed   MKL's packed API, w packed once (only where MKL is the kernels' BLAS)
    openblas     SciPy's OpenBLAS, through numba's np.dot (the BLAS a user without the mkl extra gets)
    panels       numbanets' panels and register tiles (numbanets.kernels.cpu.panel_gemm), w packed once

Each round times one block of every way in turn (A B C D A B C D ...), so a change of machine load hits
them alike; the table gives each way's median GFLOP/s over the rounds and its ratio to the kernels' BLAS.

Part 2, all threads: the whole time loops (LSTM and GRU, T 50, N 50, forward and BPTT, without the
whole-sequence GEMMs before and after them) in each mode of numbanets.kernels.cpu.packed_gemm
(RECURRENT_GEMM "panels", "mkl", "blas"), alternating in the same way: median ms per loop.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numba  # noqa: E402
from numba import njit  # noqa: E402

from numbanets.kernels.cpu import blas, gru, lstm  # noqa: E402
from numbanets.kernels.cpu import packed_gemm as pg  # noqa: E402
from numbanets.kernels.cpu.blas import gemm  # noqa: E402
from runner.common.system import machine  # noqa: E402

BLOCK_SECONDS = 0.05


@njit(cache=True)
def _numba_dot(a, b_t, out):
    # SciPy's OpenBLAS (numba's np.dot) on out = a @ b_t, b_t a transposed view or not
    out[:] = np.dot(a, b_t)


def _block(fn, seconds=BLOCK_SECONDS):
    """Median seconds of back-to-back calls of fn for about `seconds`."""
    times, end = [], time.perf_counter() + seconds
    while len(times) < 3 or time.perf_counter() < end:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _alternate(ways: dict, rounds: int) -> dict:
    """{name: [median seconds of each round]} with the ways taking turns in every round."""
    for fn in ways.values():
        fn()
    out = {name: [] for name in ways}
    for _ in range(rounds):
        for name, fn in ways.items():
            out[name].append(_block(fn))
    return out


def products(rounds: int) -> None:
    from threadpoolctl import threadpool_limits

    print("part 1: one product per call, one thread, float32; median GFLOP/s over rounds (x: against blas)")
    print(f"{'product':<34} {'blas':>8} {'mkl-packed':>11} {'openblas':>9} {'panels':>8}")
    rng = np.random.default_rng(0)
    for h in (128, 512):
        for m in (25, 50):
            for direction in ("fwd", "bwd"):
                k, n = (h, 4 * h) if direction == "fwd" else (4 * h, h)
                a = rng.standard_normal((m, k)).astype(np.float32)
                w = rng.standard_normal((4 * h, h)).astype(np.float32)  # w_hh (4H, H)
                trans = direction == "fwd"  # op(w) = w.T forward, w backward
                op_w = w.T if trans else w
                out = np.empty((m, n), np.float32)
                ways = {"blas": lambda: gemm(a, False, w, trans, out)}
                if blas.NAME == "mkl":
                    mkl = pg.pack_b(w, trans, m, pg.MKL_PACKED)
                    if mkl.size:
                        ways["mkl-packed"] = lambda: pg.gemm_packed(a, w, trans, mkl, out, pg.MKL_PACKED)
                ways["openblas"] = lambda: _numba_dot(a, op_w, out)
                panels = pg.pack_b(w, trans, m, pg.PANELS)
                ways["panels"] = lambda: pg.gemm_packed(a, w, trans, panels, out, pg.PANELS)
                with threadpool_limits(1):
                    before = numba.get_num_threads()
                    numba.set_num_threads(1)
                    try:
                        medians = {name: statistics.median(v) for name, v in _alternate(ways, rounds).items()}
                    finally:
                        numba.set_num_threads(before)
                flops = 2.0 * m * k * n
                base = medians["blas"]
                cells = []
                for name in ("blas", "mkl-packed", "openblas", "panels"):
                    if name not in medians:
                        cells.append("-")
                    else:
                        g = flops / medians[name] / 1e9
                        cells.append(f"{g:.0f}" + ("" if name == "blas" else f" x{base / medians[name]:.2f}"))
                label = f"{direction} H {h} {m} x {k} @ {k} x {n}"
                print(f"{label:<34} {cells[0]:>8} {cells[1]:>11} {cells[2]:>9} {cells[3]:>8}")


def loops(rounds: int) -> None:
    print("\npart 2: whole time loops, T 50, N 50, float32, all threads; median ms per loop over rounds")
    rng = np.random.default_rng(1)
    t_len, n = 50, 50
    choices = ("panels", "mkl", "blas")
    print(f"{'loop':<24} " + " ".join(f"{c:>8}" for c in choices) + "   panels against the others")
    before = pg.RECURRENT_GEMM[0]
    try:
        for h in (128, 512):
            f = np.float32
            h0, c0 = np.zeros((n, h), f), np.zeros((n, h), f)
            w4 = (rng.standard_normal((4 * h, h)) * 0.1).astype(f)
            w3 = (rng.standard_normal((3 * h, h)) * 0.1).astype(f)
            b4, b3 = np.zeros(4 * h, f), np.zeros(3 * h, f)
            g4 = rng.standard_normal((t_len, n, 4 * h)).astype(f)
            g3 = rng.standard_normal((t_len, n, 3 * h)).astype(f)
            dhs = rng.standard_normal((t_len, n, h)).astype(f)
            hs, cs, gates = lstm.lstm_forward_gates(g4.copy(), h0, c0, w4, b4)
            cases = {
                f"lstm fwd H {h}": lambda: lstm.lstm_forward_gates(g4.copy(), h0, c0, w4, b4),
                f"lstm bwd H {h}": lambda: lstm.lstm_backward_gates(dhs, c0, h0, c0, w4, hs, cs, gates),
                f"gru fwd H {h}": lambda: gru.gru_forward_gates(g3.copy(), h0, w3, b3, b3),
            }
            for name, fn in cases.items():
                ways = {}
                for c in choices:
                    def run(c=c, fn=fn):
                        pg.RECURRENT_GEMM[0] = c
                        fn()
                    ways[c] = run
                med = {c: statistics.median(v) * 1e3 for c, v in _alternate(ways, rounds).items()}
                ratios = "  ".join(f"x{med[c] / med['panels']:.2f} vs {c}" for c in choices[1:])
                print(f"{name:<24} " + " ".join(f"{med[c]:8.2f}" for c in choices) + f"   {ratios}")
    finally:
        pg.RECURRENT_GEMM[0] = before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15, help="alternating rounds per row (default 15)")
    parser.add_argument("--part", choices=("all", "products", "loops"), default="all")
    args = parser.parse_args()
    m = machine()
    print(f"machine: {m['cpu_vendor']} {m['cpu_model']}, {m['cpu_count']} cores, flags {m['cpu_flags']}; "
          f"kernels' BLAS {m['blas']}")
    if args.part in ("all", "products"):
        products(args.rounds)
    if args.part in ("all", "loops"):
        loops(args.rounds)


if __name__ == "__main__":
    main()
