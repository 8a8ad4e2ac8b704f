"""Fused softmax + cross-entropy loss on the GPU (`numba.cuda.jit`).

    loss    = mean_n [ logsumexp(logits_n) - logits_n[t_n] ]      (float64 accumulation)
    dlogits = (softmax(logits) - onehot(t)) / N                   (logits' dtype)

Two launches, no host round trip but the loss itself:
1. one block of ROW_THREADS threads per row: block-wide max, then the sum of
   exp(z - max) in float64 (the log-sum-exp), writes the row's dlogits and its
   loss term into a float64 row buffer;
2. one block reduces the row terms (fixed order: deterministic) and the min and
   max of the targets into a 3-element result, which is the only thing copied
   to the host: (loss, then the target range check of functional.py's CPU path,
   done here without copying the targets).

A row whose target is outside 0..K-1 is not touched (no out-of-bounds read);
the host raises the same ValueError as the CPU path.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import cuda

from numbanets.kernels.cuda import REDUCE_THREADS, ROW_THREADS, block_max, block_min, block_sum, empty
from numbanets.kernels.cuda.registry import register

__all__ = ["softmax_cross_entropy"]

_SIGS = tuple(f"{{f}}[:, ::1], {t}[::1], {{f}}[:, ::1], float64[::1]" for t in ("int64", "int32"))
_REDUCE_SIGS = tuple(f"float64[::1], {t}[::1], float64[::1]" for t in ("int64", "int32"))


@register("softmax_xent_rows", _SIGS, threads=ROW_THREADS)
def _softmax_xent_rows(logits, targets, d, row_loss):
    # logits (N, K)  targets (N,)  -> d (N, K) = (softmax - onehot)/N, row_loss (N,) = lse - z_t
    buf = cuda.shared.array(ROW_THREADS, dtype=numba.float64)
    n = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    n_rows = logits.shape[0]
    k_cols = logits.shape[1]
    t = targets[n]
    if t < 0 or t >= k_cols:  # uniform over the block: no thread reaches a barrier alone
        if tid == 0:
            row_loss[n] = math.nan
        return
    m = -math.inf
    for k in range(tid, k_cols, ROW_THREADS):
        v = float(logits[n, k])
        if v > m:
            m = v
    m = block_max(buf, m)
    s = 0.0
    for k in range(tid, k_cols, ROW_THREADS):
        s += math.exp(float(logits[n, k]) - m)
    s = block_sum(buf, s)
    scale = (1.0 / n_rows) / s
    z_t = float(logits[n, t]) - m
    for k in range(tid, k_cols, ROW_THREADS):
        if k == t:
            # (p_t - 1) / N from the float64 terms, not from a rounded p_t
            d[n, k] = (math.exp(z_t) - s) * scale
        else:
            d[n, k] = math.exp(float(logits[n, k]) - m) * scale
    if tid == 0:
        row_loss[n] = math.log(s) - z_t


@register("softmax_xent_reduce", _REDUCE_SIGS, threads=REDUCE_THREADS)
def _softmax_xent_reduce(row_loss, targets, result):
    # row_loss (N,)  targets (N,)  -> result (3,) = (mean row loss, min target, max target); one block
    buf = cuda.shared.array(REDUCE_THREADS, dtype=numba.float64)
    tid = cuda.threadIdx.x
    n_rows = row_loss.shape[0]
    acc = 0.0
    lo = math.inf
    hi = -math.inf
    for i in range(tid, n_rows, REDUCE_THREADS):
        acc += row_loss[i]
        t = float(targets[i])
        if t < lo:
            lo = t
        if t > hi:
            hi = t
    acc = block_sum(buf, acc)
    lo = block_min(buf, lo)
    hi = block_max(buf, hi)
    if tid == 0:
        result[0] = acc / n_rows
        result[1] = lo
        result[2] = hi


def softmax_cross_entropy(logits, targets):
    # logits (N, K)  targets int64 (N,) in 0..K-1  -> (loss float, dlogits (N, K))
    n_rows, k_cols = logits.shape
    d = empty(logits.shape, logits.dtype)
    if n_rows == 0:
        return math.nan, d
    row_loss = empty(n_rows, np.float64)
    result = empty(3, np.float64)
    _softmax_xent_rows[n_rows, ROW_THREADS](logits, targets, d, row_loss)
    _softmax_xent_reduce[1, REDUCE_THREADS](row_loss, targets, result)
    loss, lo, hi = (float(v) for v in result.copy_to_host())
    if lo < 0 or hi >= k_cols:
        bad = int(lo) if lo < 0 else int(hi)
        raise ValueError(f"targets must lie in 0..{k_cols - 1} (K = {k_cols} classes), got {bad}")
    return loss, d
