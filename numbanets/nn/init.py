"""Initialisers: numpy arrays drawn from a np.random.Generator, in the requested dtype.

Convolution and linear layers (PyTorch's default, kaiming-uniform with a = sqrt(5)):
    w, b ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)),  fan_in = C/groups * KH * KW  or  D

Recurrent layers, `recurrent(init, ...)`, s = init_scale:
    "uniform"     w_ih, w_hh, b ~ U(-s, s); s defaults to 1/sqrt(H) (torch), char-rnn uses 0.08
    "normal"      w_ih, w_hh ~ N(0, s^2), s defaults to 1/sqrt(H); b = 0
    "orthogonal"  every gate block of w_ih and w_hh orthogonal (QR of a Gaussian) times s
                  (default 1); b = 0
    "identity"    w_hh = s * I in every gate block (IRNN, Le et al. 2015; s defaults to 1),
                  w_ih ~ U(-1/sqrt(H), 1/sqrt(H)), b = 0
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["RECURRENT_INITS", "uniform", "normal", "orthogonal", "identity", "fan_in_uniform", "recurrent"]

RECURRENT_INITS = ("uniform", "normal", "orthogonal", "identity")


def uniform(rng, shape, scale, dtype=np.float32) -> np.ndarray:
    """U(-scale, scale)."""
    return rng.uniform(-scale, scale, size=shape).astype(dtype)


def normal(rng, shape, std, dtype=np.float32) -> np.ndarray:
    """N(0, std^2)."""
    return (std * rng.standard_normal(size=shape)).astype(dtype)


def orthogonal(rng, shape, gain=1.0, dtype=np.float32) -> np.ndarray:
    """A (rows, cols) matrix with orthonormal rows or columns (whichever are fewer), times gain.

    QR of a Gaussian matrix with the signs of R's diagonal folded into Q, so the
    result is uniformly distributed (Saxe et al. 2014; torch.nn.init.orthogonal_).
    """
    rows, cols = shape
    a = rng.standard_normal(size=(max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q = q * np.sign(np.diag(r))
    if rows < cols:
        q = q.T
    return (gain * q).astype(dtype)


def identity(shape, scale=1.0, dtype=np.float32) -> np.ndarray:
    """scale * I for a square shape; for (gates*H, H) one scaled identity per gate block."""
    rows, cols = shape
    if rows % cols:
        raise ValueError(f"identity init needs a (k*H, H) shape, got {shape}")
    return (scale * np.tile(np.eye(cols), (rows // cols, 1))).astype(dtype)


def fan_in_uniform(rng, shape, fan_in, dtype=np.float32) -> np.ndarray:
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): torch's default for conv and linear weights and biases."""
    return uniform(rng, shape, 1.0 / math.sqrt(fan_in), dtype)


def _blocks(fn, gates, shape):
    """Apply fn((rows/gates, cols)) to each gate block and stack the results."""
    rows, cols = shape
    return np.concatenate([fn((rows // gates, cols)) for _ in range(gates)], axis=0)


def recurrent(init, rng, input_size, hidden_size, gates=1, init_scale=None, dtype=np.float32):
    """(w_ih (gates*H, D), w_hh (gates*H, H), b (gates*H,)) for one recurrent layer."""
    h, d, gh = hidden_size, input_size, gates * hidden_size
    if init not in RECURRENT_INITS:
        raise ValueError(f"init must be one of {', '.join(RECURRENT_INITS)}; got {init!r}")
    if init_scale is not None and not init_scale > 0:
        raise ValueError(f"init_scale must be > 0, got {init_scale!r}")
    default = 1.0 / math.sqrt(h)
    if init == "uniform":
        s = default if init_scale is None else init_scale
        return uniform(rng, (gh, d), s, dtype), uniform(rng, (gh, h), s, dtype), uniform(rng, (gh,), s, dtype)
    b = np.zeros(gh, dtype=dtype)
    if init == "normal":
        s = default if init_scale is None else init_scale
        return normal(rng, (gh, d), s, dtype), normal(rng, (gh, h), s, dtype), b
    s = 1.0 if init_scale is None else init_scale
    if init == "orthogonal":
        w_ih = _blocks(lambda shp: orthogonal(rng, shp, s, dtype), gates, (gh, d))
        w_hh = _blocks(lambda shp: orthogonal(rng, shp, s, dtype), gates, (gh, h))
        return w_ih, w_hh, b
    return uniform(rng, (gh, d), default, dtype), identity((gh, h), s, dtype), b
