"""2-D max pooling on the GPU, forward (with argmax indices) and backward.

    y[n, c, i, j] = max over the window taps (i*sh + u - ph, j*sw + v - pw), u < KH, v < KW
    indices[n, c, i, j] = h*W + w of that maximum in the (unpadded) input plane, int64

Same signatures and results as numbanets.kernels.cpu.pool (and torch's
max_pool2d(return_indices=True)): padding counts as -inf (padded taps are
skipped), ties go to the first tap in row-major window order (a later tap must
be strictly greater), NaN wins over any number (the last NaN of a window, as in
PyTorch). max_pool1d runs here with H = KH = 1.

forward   one thread per output element (1-D grid-stride loop).
backward  dx = 0, then one thread per dy element atomically adds dy into
          dx[n, c, indices]: windows may overlap (stride < kernel) and the
          backward pass is not given the window geometry a race-free gather
          would need. Atomic float32 / float64 adds need compute capability 6.0+.
          Indices outside 0..H*W-1 are skipped (never an out-of-bounds write);
          unlike the CPU kernel this raises no ValueError, which would cost a
          device-to-host copy and a synchronisation on every backward pass.

Global average pooling, y[n, c] = mean over the (n, c) plane of x, (N, C, H, W) -> (N, C):

forward   one thread per plane (grid-stride loop) sums its H*W values in float64
          and divides once (the CPU kernel's order, so the same float32 result up to
          the sum's rounding). The planes it averages are small (the last conv maps
          of a CAM network: 4x4 to 14x14), so a block reduction per plane would idle.
backward  one thread per dx element: dx[n, c, h, w] = dy[n, c] / (H*W), no atomics.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from numbanets.kernels.cuda import empty, flat, grid_1d, zeros
from numbanets.kernels.cuda.registry import register

__all__ = ["max_pool2d_forward", "max_pool2d_backward", "global_avg_pool2d_forward", "global_avg_pool2d_backward"]


@register(
    "max_pool2d_forward_kernel",
    "{f}[:, :, :, ::1], int64, int64, int64, int64, int64, int64, {f}[:, :, :, ::1], int64[:, :, :, ::1]",
)
def _max_pool2d_forward(x, kh, kw, sh, sw, ph, pw, y, indices):
    # x (N, C, H, W) -> y, indices (N, C, OH, OW)
    n_c = x.shape[1]
    h_in = x.shape[2]
    w_in = x.shape[3]
    oh = y.shape[2]
    ow = y.shape[3]
    total = y.shape[0] * n_c * oh * ow
    start = cuda.grid(1)
    step = cuda.gridsize(1)
    for t in range(start, total, step):
        j = t % ow
        r = t // ow
        i = r % oh
        r = r // oh
        c = r % n_c
        n = r // n_c
        best = -math.inf
        best_idx = -1
        h0 = i * sh - ph
        w0 = j * sw - pw
        for u in range(kh):
            h = h0 + u
            if h < 0 or h >= h_in:
                continue
            for v in range(kw):
                w = w0 + v
                if w < 0 or w >= w_in:
                    continue
                val = float(x[n, c, h, w])
                if best_idx < 0 or val > best or val != val:  # PyTorch's rule: NaN wins (the last one)
                    best = val
                    best_idx = h * w_in + w
        y[n, c, i, j] = best
        indices[n, c, i, j] = best_idx


@register("max_pool2d_backward_kernel", "{f}[::1], int64[::1], int64, int64, {f}[::1]")
def _max_pool2d_backward(dy, indices, plane_out, plane_in, dx):
    # dy, indices flat (N*C*OH*OW,) -> dx flat (N*C*H*W,) += dy at each recorded maximum
    start = cuda.grid(1)
    step = cuda.gridsize(1)
    for t in range(start, dy.shape[0], step):
        k = indices[t]
        if 0 <= k < plane_in:
            cuda.atomic.add(dx, (t // plane_out) * plane_in + k, dy[t])


def max_pool2d_forward(x, kh, kw, stride_h, stride_w, pad_h, pad_w, out_h, out_w):
    # x (N, C, H, W) -> (y (N, C, OH, OW), indices int64 (N, C, OH, OW))
    n, c = x.shape[0], x.shape[1]
    y = empty((n, c, out_h, out_w), x.dtype)
    indices = empty((n, c, out_h, out_w), np.int64)
    total = n * c * out_h * out_w
    if total:
        blocks, threads = grid_1d(total)
        _max_pool2d_forward[blocks, threads](x, kh, kw, stride_h, stride_w, pad_h, pad_w, y, indices)
    return y, indices


def max_pool2d_backward(dy, indices, H, W):
    # dy, indices (N, C, OH, OW) -> dx (N, C, H, W) in dy's dtype
    n, c = dy.shape[0], dy.shape[1]
    dx = zeros((n, c, H, W), dy.dtype)
    if dy.size and dx.size:
        dyf = flat(dy)
        blocks, threads = grid_1d(dyf.shape[0])
        _max_pool2d_backward[blocks, threads](dyf, flat(indices), dy.shape[2] * dy.shape[3], H * W, flat(dx))
    return dx


@register("gap_forward_kernel", "{f}[::1], int64, {f}[::1]")
def _gap_forward(x, plane, y):
    # x flat (N*C*H*W,), plane = H*W -> y flat (N*C,): the mean of every plane
    start = cuda.grid(1)
    step = cuda.gridsize(1)
    for t in range(start, y.shape[0], step):
        total = 0.0
        base = t * plane
        for k in range(plane):
            total += float(x[base + k])
        y[t] = total / plane


@register("gap_backward_kernel", "{f}[::1], int64, {f}[::1]")
def _gap_backward(dy, plane, dx):
    # dy flat (N*C,), plane = H*W -> dx flat (N*C*H*W,) = dy of its plane / plane
    start = cuda.grid(1)
    step = cuda.gridsize(1)
    for t in range(start, dx.shape[0], step):
        dx[t] = float(dy[t // plane]) / plane


def global_avg_pool2d_forward(x):
    # x (N, C, H, W), H * W >= 1 -> y (N, C)
    n, c, h, w = x.shape
    y = empty((n, c), x.dtype)
    if y.size:
        blocks, threads = grid_1d(n * c)
        _gap_forward[blocks, threads](flat(x), h * w, flat(y))
    return y


def global_avg_pool2d_backward(dy, H, W):
    # dy (N, C) -> dx (N, C, H, W) in dy's dtype
    n, c = dy.shape
    dx = empty((n, c, H, W), dy.dtype)
    if dx.size:
        f = flat(dx)
        blocks, threads = grid_1d(f.shape[0])
        _gap_backward[blocks, threads](flat(dy), H * W, f)
    return dx
