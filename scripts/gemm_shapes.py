"""The GEMMs of the bench cases: numbanets' BLAS, SciPy's OpenBLAS and torch's, shape by shape.

    python scripts/gemm_shapes.py [--threads 1 2] [--repeat 7]

numbanets' CPU kernels call numbanets.kernels.cpu.blas.gemm: MKL with the
`mkl` extra, else the OpenBLAS that SciPy ships (what numba's own np.dot
calls); torch's CPU wheels carry their own MKL. This times the same float32
product C = A @ B of each shape with all three, in one process, at each
thread count (gemm and np.dot inside one compiled loop, so no Python call per
product; torch.mm with out=), and prints GFLOP/s. The shapes are the ones
the char LM and conv cases of `nbnets bench` run (M x K @ K x N):

    step-fwd   (N, H) @ (H, 4H)      h_{t-1} @ w_hh.T, once per time step (LSTM forward)
    step-fwd^T (4H, H) @ (H, N)      the same product transposed: w_hh @ h_{t-1}.T (not used by the kernels;
                                     OpenBLAS is much faster in this orientation)
    step-bwd   (N, 4H) @ (4H, H)     da_t @ w_hh, once per time step (LSTM backward)
    seq-proj   (T*N, H) @ (H, 4H)    input projection of a whole window
    seq-grad   (4H, T*N) @ (T*N, H)  weight gradient over a whole window
    conv       (F, C*KH*KW) @ (C*KH*KW, OH*OW)  one sample's im2col GEMM

torch is needed here (it is the peer being compared); numbanets is not changed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from numba import njit  # noqa: E402

from numbanets.kernels.cpu import blas  # noqa: E402

# (name, M, K, N); T = N_batch = 50 as in the char LM bench cases
SHAPES = [(f"{name} H={h}", m, k, n) for h in (128, 512) for name, m, k, n in (
    ("step-fwd", 50, h, 4 * h),
    ("step-fwd^T", 4 * h, h, 50),
    ("step-bwd", 50, 4 * h, h),
    ("seq-proj", 2500, h, 4 * h),
    ("seq-grad", 4 * h, 2500, h),
)] + [("conv 64x32x16x16 3x3", 64, 288, 256), ("conv 64x3x32x32 5x5", 32, 75, 1024)]


@njit(cache=True)
def _openblas_products(a, b, out, repeat):
    for _ in range(repeat):
        np.dot(a, b, out)


@njit(cache=True)
def _numbanets_products(a, b, out, repeat):
    for _ in range(repeat):
        blas.gemm(a, False, b, False, out)


def _best_seconds(run, repeat: int, inner: int) -> float:
    run(1)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        run(inner)
        best = min(best, (time.perf_counter() - t0) / inner)
    return best


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts to measure (default 1 2)")
    p.add_argument("--repeat", type=int, default=7, help="timed batches per shape; the fastest counts (default 7)")
    args = p.parse_args(argv)
    import torch

    from runner.common.threads import Threads

    rng = np.random.default_rng(0)
    print(f"float32 GFLOP/s, best of {args.repeat}; numbanets: blas.gemm ({blas.NAME}), openblas: numba's np.dot "
          f"(SciPy's), torch {torch.__version__} (torch.mm)")
    print(f"{'shape':22}{'M x K @ K x N':>24}{'threads':>8}{'numbanets':>11}{'openblas':>10}{'torch':>8}"
          f"{'nb/torch':>10}")
    for threads in args.threads:
        with Threads(threads, torch):
            for name, m, k, n in SHAPES:
                a = rng.standard_normal((m, k), dtype=np.float32)
                b = rng.standard_normal((k, n), dtype=np.float32)
                out, out_ob = np.empty((m, n), dtype=np.float32), np.empty((m, n), dtype=np.float32)
                ta, tb, tout = torch.from_numpy(a), torch.from_numpy(b), torch.empty(m, n)
                flops = 2.0 * m * k * n
                inner = max(1, int(2e8 / flops))
                nb = _best_seconds(lambda r: _numbanets_products(a, b, out, r), args.repeat, inner)
                ob = _best_seconds(lambda r: _openblas_products(a, b, out_ob, r), args.repeat, inner)

                def torch_run(r):
                    for _ in range(r):
                        torch.mm(ta, tb, out=tout)

                th = _best_seconds(torch_run, args.repeat, inner)
                for got in (out, out_ob):
                    np.testing.assert_allclose(got, tout.numpy(), rtol=1e-3, atol=1e-3 * np.sqrt(k))
                print(f"{name:22}{f'{m} x {k} @ {k} x {n}':>24}{threads:>8}{flops / nb / 1e9:11.0f}"
                      f"{flops / ob / 1e9:10.0f}{flops / th / 1e9:8.0f}{th / nb:10.2f}")
    print("nb/torch: torch's time / numbanets' (above 1: numbanets' GEMM is faster)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
