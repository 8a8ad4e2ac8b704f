"""Central finite differences and a readable closeness assertion for the backward tests.

numerical_grad(fn, args, wrt, dout) differentiates the scalar

    L = sum(fn(*args) * dout)

with respect to args[wrt], one element at a time:

    dL/da_k ~ (L(a + eps e_k) - L(a - eps e_k)) / (2 eps)

Compare it with the analytic backward called with the same dout. Use float64
inputs (eps = 1e-6 is meaningless in float32) and small shapes: the cost is
2 * size(args[wrt]) calls of fn.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["numerical_grad", "assert_close"]


def _contract(out, dout):
    """sum(out * dout), recursing into tuples; None entries of dout are skipped."""
    if dout is None:
        return 0.0
    if isinstance(dout, (tuple, list)):
        if not isinstance(out, (tuple, list)) or len(out) != len(dout):
            got = len(out) if isinstance(out, (tuple, list)) else type(out).__name__
            raise ValueError(f"dout is a tuple of {len(dout)} but fn returned {got}")
        return math.fsum(_contract(o, d) for o, d in zip(out, dout))
    prod = np.asarray(out, dtype=np.float64) * np.asarray(dout, dtype=np.float64)
    return math.fsum(prod.reshape(-1).tolist())


def numerical_grad(fn, args, wrt, dout, eps=1e-6):
    """dL/d args[wrt] by central differences, L = sum(fn(*args) * dout).

    fn may return a tuple; then dout is a tuple of the same length (None entries
    skipped; nested tuples are followed). args[wrt] is replaced by a float64,
    C-contiguous copy which is perturbed in place; the caller's array is never
    touched. Returns a float64 array of args[wrt]'s shape.
    """
    args = list(args)
    a = np.array(args[wrt], dtype=np.float64, order="C", copy=True)
    args[wrt] = a
    grad = np.zeros(a.shape, dtype=np.float64)
    flat_a, flat_g = a.reshape(-1), grad.reshape(-1)  # views (a is contiguous)
    for k in range(flat_a.size):
        orig = flat_a[k]
        flat_a[k] = orig + eps
        plus = _contract(fn(*args), dout)
        flat_a[k] = orig - eps
        minus = _contract(fn(*args), dout)
        flat_a[k] = orig
        flat_g[k] = (plus - minus) / (2.0 * eps)
    return grad


def assert_close(actual, expected, rtol=1e-7, atol=0.0, name="array"):
    """Assert |actual - expected| <= atol + rtol * |expected| element-wise (NaN never passes).

    On failure the AssertionError names the array, the number of bad elements,
    the max abs error and the index where it occurs, with both values there.
    """
    act = np.asarray(actual, dtype=np.float64)
    exp = np.asarray(expected, dtype=np.float64)
    if act.shape != exp.shape:
        raise AssertionError(f"{name}: shape {act.shape} != expected shape {exp.shape}")
    if act.size == 0:
        return
    with np.errstate(invalid="ignore"):
        err = np.abs(act - exp)
        bad = ~(err <= atol + rtol * np.abs(exp))  # NaN compares False -> bad
    if not bad.any():
        return
    err_for_max = np.where(np.isnan(err), np.inf, err)
    k = int(np.argmax(err_for_max))
    where = np.unravel_index(k, act.shape) if act.ndim else ()
    raise AssertionError(
        f"{name}: {int(bad.sum())} of {act.size} elements not close "
        f"(rtol={rtol:g}, atol={atol:g}); max abs error {float(err.reshape(-1)[k]):.3e} "
        f"at index {tuple(int(i) for i in where)}: actual {float(act.reshape(-1)[k])!r}, "
        f"expected {float(exp.reshape(-1)[k])!r}"
    )
