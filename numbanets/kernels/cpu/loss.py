"""Fused softmax + cross-entropy loss on the CPU (`numba.njit`).

    loss    = mean_n [ logsumexp(logits_n) - logits_n[t_n] ]      (float64 accumulation)
    dlogits = (softmax(logits) - onehot(t)) / N                   (logits' dtype)

The log-sum-exp subtracts each row's maximum first, so logits of 1e4 (or
-1e4) give a finite loss. The exponentials are float64 and vmath's
exp_nonpositive (2 ulp), written to a row buffer so that the loop vectorises;
the sum over the row is a separate plain loop: a float reduction inside the
exp loop would keep it scalar, and so would libm's exp, a scalar call
(BENCHMARKS.md, "Measurements behind the CPU kernels' design").
"""

import math

import numpy as np
from numba import njit

from numbanets.kernels.cpu.jit import JIT_OPTIONS
from numbanets.kernels.cpu.vmath import exp_nonpositive

__all__ = ["softmax_cross_entropy"]


@njit(**JIT_OPTIONS)
def softmax_cross_entropy(logits, targets):
    # logits (N, K)  targets int64 (N,) in 0..K-1  -> (loss float, dlogits (N, K))
    n_rows, k_cols = logits.shape
    d = np.empty_like(logits)
    if n_rows == 0:
        return math.nan, d
    e = np.empty(k_cols, dtype=np.float64)  # e^(logit - max) of one row
    inv_n = 1.0 / n_rows
    total = 0.0
    for n in range(n_rows):
        row = logits[n]
        m = np.float64(row[0])
        for k in range(1, k_cols):
            v = np.float64(row[k])
            if v > m:
                m = v
        for k in range(k_cols):
            e[k] = exp_nonpositive(np.float64(row[k]) - m)
        s = 0.0
        for k in range(k_cols):
            s += e[k]
        t = targets[n]
        total += math.log(s) - (np.float64(row[t]) - m)
        scale = inv_n / s
        d_row = d[n]
        for k in range(k_cols):
            d_row[k] = e[k] * scale
        # (p_t - 1) / N from the float64 terms, not from the rounded d[n, t]
        d_row[t] = (e[t] - s) * scale
    return total * inv_n, d
