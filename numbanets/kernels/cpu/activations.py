"""Element-wise activations and the row-wise softmax (CPU, `numba.njit`).

The activation codes come from `numbanets.kernels.codes` (the one table,
shared with the op API and the CUDA kernels).

Derivatives are taken from the OUTPUT y of the activation:
identity 1, tanh 1 - y^2, sigmoid y (1 - y), relu (y > 0).

`apply(v, code)` and `derivative_from_output(y, code)` are scalar helpers
that other kernels call inside their own loops; they compute in float64 and
the caller stores the result in its array's dtype.
"""

import math

import numpy as np
from numba import njit

from numbanets.kernels.codes import ACTIVATION_CODES, IDENTITY, RELU, SIGMOID, TANH

__all__ = [
    "IDENTITY", "TANH", "SIGMOID", "RELU", "ACTIVATION_CODES",
    "sigmoid", "apply", "derivative_from_output",
    "activation_forward", "activation_backward", "softmax_forward",
]


# --------------------------------------------------------------------------- scalar helpers

@njit(cache=True)
def sigmoid(v):
    # scalar v -> float64 1 / (1 + e^-v); the two-branch form never overflows
    # (sigmoid(-1000) is exactly 0, sigmoid(1000) exactly 1).
    z = np.float64(v)
    if z >= 0.0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


@njit(cache=True)
def apply(v, code):
    # scalar v, activation code -> float64 act(v)
    z = np.float64(v)
    if code == TANH:
        return math.tanh(z)
    if code == SIGMOID:
        return sigmoid(z)
    if code == RELU:
        return z if z > 0.0 else 0.0
    return z


@njit(cache=True)
def derivative_from_output(y, code):
    # scalar y = act(v), activation code -> float64 act'(v) written in terms of y
    z = np.float64(y)
    if code == TANH:
        return 1.0 - z * z
    if code == SIGMOID:
        return z * (1.0 - z)
    if code == RELU:
        return 1.0 if z > 0.0 else 0.0
    return 1.0


# --------------------------------------------------------------------------- array kernels

@njit(cache=True)
def activation_forward(x, code):
    # x (any shape, C-contiguous), code -> y (x's shape and dtype) = act(x)
    y = np.empty_like(x)
    xf = x.ravel()
    yf = y.reshape(y.size)
    n = xf.size
    # one loop per code so the cheap ones (identity, relu) vectorise
    if code == TANH:
        for i in range(n):
            yf[i] = math.tanh(np.float64(xf[i]))
    elif code == SIGMOID:
        for i in range(n):
            yf[i] = sigmoid(xf[i])
    elif code == RELU:
        for i in range(n):
            v = xf[i]
            yf[i] = v if v > 0 else 0
    else:
        for i in range(n):
            yf[i] = xf[i]
    return y


@njit(cache=True)
def activation_backward(dy, y, code):
    # dy, y (same shape, C-contiguous), code -> dx (y's shape, dy's dtype) = dy * act'(from y)
    dx = np.empty_like(dy)
    dyf = dy.ravel()
    yf = y.ravel()
    dxf = dx.reshape(dx.size)
    n = dyf.size
    if code == TANH:
        for i in range(n):
            v = np.float64(yf[i])
            dxf[i] = np.float64(dyf[i]) * (1.0 - v * v)
    elif code == SIGMOID:
        for i in range(n):
            v = np.float64(yf[i])
            dxf[i] = np.float64(dyf[i]) * (v * (1.0 - v))
    elif code == RELU:
        for i in range(n):
            dxf[i] = dyf[i] if yf[i] > 0 else 0
    else:
        for i in range(n):
            dxf[i] = dyf[i]
    return dx


@njit(cache=True)
def softmax_forward(x):
    # x (N, K) -> y (N, K) = exp(x - rowmax) / sum exp(x - rowmax), float64 row sums
    n_rows, k_cols = x.shape
    y = np.empty_like(x)
    for n in range(n_rows):
        if k_cols == 0:
            continue
        m = np.float64(x[n, 0])
        for k in range(1, k_cols):
            v = np.float64(x[n, k])
            if v > m:
                m = v
        s = 0.0
        for k in range(k_cols):
            e = math.exp(np.float64(x[n, k]) - m)
            y[n, k] = e
            s += e
        inv = 1.0 / s
        for k in range(k_cols):
            y[n, k] = y[n, k] * inv
    return y
