"""Recurrent time loops and training steps with MKL's packed weights on and off, in one process.

    python scripts/packed_ab.py [--rounds 4] [--cases lstm-128 lstm-512 rnn-128 rnn-512 rnn-mini
                                                     charlm-char-rnn charlm-large]

The recurrent kernels multiply the state by w_hh once per time step; with MKL
they pack w_hh once per sequence (numbanets.kernels.cpu.packed_gemm) instead
of letting every gemm call repack it. This times the same work with
packed_gemm.PACKING_STATE[0] off and on, alternating within each round (the
machine's speed drifts by tens of percent within minutes, so only alternation
in one process compares fairly), and prints the medians and their ratio:

    lstm-H / rnn-H   the forward time loop (lstm_forward_gates / rnn_forward_projected) and the BPTT loop
                     (lstm_backward_gates / rnn_backward_preactivations) of one layer, T 50, N 50
    rnn-mini         the same at min-char-rnn's size (T 25, N 1, H 100): one row, where nothing is packed
    charlm-*         a whole training step of the bench case (forward, backward, clipping, update)

The allocator is fixed as `nbnets bench` fixes it. Needs MKL (the `mkl` extra).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runner.common.allocator import fix_allocator  # noqa: E402

CASES = ["lstm-128", "lstm-512", "rnn-128", "rnn-512", "rnn-mini", "charlm-char-rnn", "charlm-large"]


def _median_ms(fn, runs: int) -> float:
    fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def _loops(name: str) -> tuple[dict, int]:
    """{"fwd": fn, "bwd": fn} of one recurrent layer's time loops, and runs per median."""
    from numbanets.kernels.cpu import lstm, rnn

    cell, size = name.split("-")
    t_len, n, h = (25, 1, 100) if size == "mini" else (50, 50, int(size))
    rng = np.random.default_rng(0)
    g = 4 * h if cell == "lstm" else h
    pre = rng.standard_normal((t_len, n, g), dtype=np.float32)
    w_hh = (rng.standard_normal((g, h)) * 0.05).astype(np.float32)
    b = np.zeros(g, np.float32)
    h0 = np.zeros((n, h), np.float32)
    dhs = rng.standard_normal((t_len, n, h), dtype=np.float32)
    runs = max(5, int(2e8 / (t_len * n * g * h)))
    if cell == "lstm":
        c0, dc_t = np.zeros((n, h), np.float32), np.zeros((n, h), np.float32)
        hs, cs, gates = lstm.lstm_forward_gates(pre.copy(), h0, c0, w_hh, b)
        return {"fwd": lambda: lstm.lstm_forward_gates(pre.copy(), h0, c0, w_hh, b),
                "bwd": lambda: lstm.lstm_backward_gates(dhs, dc_t, h0, c0, w_hh, hs, cs, gates)}, runs
    hs = rnn.rnn_forward_projected(pre.copy(), h0, w_hh, b, 0)
    return {"fwd": lambda: rnn.rnn_forward_projected(pre.copy(), h0, w_hh, b, 0),
            "bwd": lambda: rnn.rnn_backward_preactivations(dhs, w_hh, hs, 0)}, runs


def _training_step(name: str) -> tuple[dict, int]:
    from runner.bench.case import Ctx
    from runner.bench.cases import build_cases

    case = next(c for c in build_cases() if c.name == name)
    runner = case.impls["numbanets"](case.make(np.random.default_rng(0)), Ctx("cpu", None))
    return {"step": runner.run}, (20 if name == "charlm-char-rnn" else 5)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds per case (default 4)")
    parser.add_argument("--cases", nargs="+", default=CASES, choices=CASES, metavar="CASE",
                        help=f"cases to time (default all: {' '.join(CASES)})")
    args = parser.parse_args(argv)
    print(fix_allocator())

    from numbanets.kernels.cpu import blas
    from numbanets.kernels.cpu import packed_gemm

    if not (blas.NAME == "mkl" and packed_gemm.packing()):
        print(f"the BLAS is {blas.NAME}: no packed API, nothing to compare", file=sys.stderr)
        return 2
    print(f"BLAS {blas.NAME}, {blas.pool_threads()} threads; median ms, plain / packed (ratio)")
    for name in args.cases:
        parts, runs = _training_step(name) if name.startswith("charlm") else _loops(name)
        for k in range(args.rounds):
            cells = []
            for part, fn in parts.items():
                packed_gemm.PACKING_STATE[0] = False
                plain = _median_ms(fn, runs)
                packed_gemm.PACKING_STATE[0] = True
                packed = _median_ms(fn, runs)
                cells.append(f"{part} {plain:8.3f} / {packed:8.3f} (x{plain / packed:.2f})")
            print(f"{name:<16} round {k + 1}  " + "   ".join(cells), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
