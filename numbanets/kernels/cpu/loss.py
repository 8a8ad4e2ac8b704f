"""Fused softmax + cross-entropy loss on the CPU (`numba.njit`).

    loss    = mean_n [ logsumexp(logits_n) - logits_n[t_n] ]      (float64 accumulation)
    dlogits = (softmax(logits) - onehot(t)) / N                   (logits' dtype)

The log-sum-exp subtracts each row's maximum first, so logits of 1e4 (or
-1e4) give a finite loss.
"""

import math

import numpy as np
from numba import njit

__all__ = ["softmax_cross_entropy"]


@njit(cache=True)
def softmax_cross_entropy(logits, targets):
    # logits (N, K)  targets int64 (N,) in 0..K-1  -> (loss float, dlogits (N, K))
    n_rows, k_cols = logits.shape
    d = np.empty_like(logits)
    if n_rows == 0:
        return math.nan, d
    inv_n = 1.0 / n_rows
    total = 0.0
    for n in range(n_rows):
        m = np.float64(logits[n, 0])
        for k in range(1, k_cols):
            v = np.float64(logits[n, k])
            if v > m:
                m = v
        s = 0.0
        for k in range(k_cols):
            e = math.exp(np.float64(logits[n, k]) - m)
            d[n, k] = e
            s += e
        t = targets[n]
        z_t = np.float64(logits[n, t]) - m
        total += math.log(s) - z_t
        scale = inv_n / s
        for k in range(k_cols):
            d[n, k] = d[n, k] * scale
        # (p_t - 1) / N from the float64 terms, not from the rounded d[n, t]
        d[n, t] = (math.exp(z_t) - s) * scale
    return total * inv_n, d
