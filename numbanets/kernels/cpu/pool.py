"""2-D max pooling on the CPU, forward and backward.

    y[n, c, i, j] = max over the window rows i*sh - ph .. +KH-1, cols j*sw - pw .. +KW-1 of x[n, c]

Padding counts as -inf (taps outside the image are skipped). indices hold the
flat position h*W + w of each maximum in its (unpadded) input plane, as
torch.nn.functional.max_pool2d(return_indices=True) returns them. Ties: the
first maximum in row-major window order wins (a later tap must be strictly
greater). NaN wins over any number (PyTorch's rule: val > best or isnan(val)).
max_pool1d runs here with H = KH = 1.

Backward routes every dy to its recorded position, dx[n, c].flat[idx] += dy,
accumulating where overlapping windows (stride < kernel) picked the same input.
Both passes are parallel over the (n, c) planes: every plane is owned by one
thread, so the += has no races. The classic 2x2 / stride 2 / no padding
forward has its own plane loop (four fixed taps, no window bounds and no
per-tap bounds tests; the same comparisons in the same order), several times
faster than the general loop (BENCHMARKS.md, "Measurements behind the CPU
kernels' design").

Global average pooling (the `gap` token, Lin et al. 2014's network-in-network
read-out, which CAM needs):

    y[n, c] = (1 / (H * W)) * sum over h, w of x[n, c, h, w]      (N, C, H, W) -> (N, C)
    dx[n, c, h, w] = dy[n, c] / (H * W)

The sum runs in float64 whatever the dtype (one rounding at the end for
float32), parallel over the (n, c) planes; the backward writes every plane
from its one dy value (no overlap, no races).
"""

import numpy as np
from numba import njit, prange

__all__ = ["max_pool2d_forward", "max_pool2d_backward", "global_avg_pool2d_forward", "global_avg_pool2d_backward"]


@njit(cache=True)
def _pool2x2_plane(xf, src, W, yf, idxf, dst, out_h, out_w):
    # one plane of max_pool2d_forward for 2x2 windows at stride 2 without padding (the same comparisons in
    # the same order as the general loop, so the same maxima, indices, ties and NaNs)
    for i in range(out_h):
        top = np.uint64(src + 2 * i * W)
        bottom = top + np.uint64(W)
        out = np.uint64(dst + i * out_w)
        for j in range(np.uint64(out_w)):
            best = xf[top + 2 * j]
            at = 0
            val = xf[top + 2 * j + 1]
            if val > best or val != val:
                best, at = val, 1
            val = xf[bottom + 2 * j]
            if val > best or val != val:
                best, at = val, W
            val = xf[bottom + 2 * j + 1]
            if val > best or val != val:
                best, at = val, W + 1
            yf[out + j] = best
            idxf[out + j] = 2 * i * W + 2 * np.int64(j) + at


@njit(cache=True, parallel=True)
def max_pool2d_forward(x, kh, kw, stride_h, stride_w, pad_h, pad_w, out_h, out_w):
    # x (N, C, H, W)  -> y (N, C, OH, OW), indices int64 (N, C, OH, OW) = h*W + w of each max
    N, C, H, W = x.shape
    y = np.empty((N, C, out_h, out_w), dtype=x.dtype)
    idx = np.empty((N, C, out_h, out_w), dtype=np.int64)
    xf = x.reshape(-1)
    yf = y.reshape(-1)
    idxf = idx.reshape(-1)
    pairs = kh == 2 and kw == 2 and stride_h == 2 and stride_w == 2 and pad_h == 0 and pad_w == 0
    for plane in prange(N * C):
        src = plane * H * W
        dst = plane * out_h * out_w
        if pairs:  # 2x2 windows, stride 2, no padding: four fixed taps, no window bounds
            _pool2x2_plane(xf, src, W, yf, idxf, dst, out_h, out_w)
            continue
        for i in range(out_h):
            h0 = i * stride_h - pad_h
            hlo = max(h0, 0)
            hhi = min(h0 + kh, H)
            for j in range(out_w):
                w0 = j * stride_w - pad_w
                wlo = max(w0, 0)
                whi = min(w0 + kw, W)
                best_at = hlo * W + wlo  # the first tap inside the image
                best = xf[np.uint64(src + best_at)]
                for h in range(hlo, hhi):
                    for v in range(wlo, whi):
                        val = xf[np.uint64(src + h * W + v)]
                        if val > best or val != val:  # PyTorch's rule: NaN wins
                            best = val
                            best_at = h * W + v
                yf[np.uint64(dst + i * out_w + j)] = best
                idxf[np.uint64(dst + i * out_w + j)] = best_at
    return y, idx


@njit(cache=True, parallel=True)
def _scatter_add(dyf, idxf, dxf, HW):
    # dyf, idxf (planes, OH*OW)  -> dxf (planes, H*W) +=; returns the number of indices outside 0..HW-1
    bad = np.zeros(dyf.shape[0], dtype=np.int64)
    for plane in prange(dyf.shape[0]):
        dst = dxf[plane]
        src = dyf[plane]
        at = idxf[plane]
        for o in range(src.shape[0]):
            k = at[o]
            if 0 <= k < HW:
                dst[k] += src[o]
            else:
                bad[plane] += 1
    return bad.sum()


def max_pool2d_backward(dy, indices, H, W):
    # dy (N, C, OH, OW)  indices int64 (N, C, OH, OW)  -> dx (N, C, H, W) in dy's dtype
    n, c, oh, ow = dy.shape
    dx = np.zeros((n, c, H, W), dtype=dy.dtype)
    bad = _scatter_add(dy.reshape(n * c, oh * ow), indices.reshape(n * c, oh * ow), dx.reshape(n * c, H * W), H * W)
    if bad:
        raise ValueError(f"indices must lie in 0..H*W-1 = {H * W - 1} (as max_pool2d returns them); {bad} do not")
    return dx


@njit(cache=True, parallel=True)
def global_avg_pool2d_forward(x):
    # x (N, C, H, W), H * W >= 1 -> y (N, C): the mean of every plane, summed in float64
    N, C, H, W = x.shape
    hw = H * W
    y = np.empty((N, C), dtype=x.dtype)
    xf = x.reshape(N * C, hw)
    yf = y.reshape(N * C)
    for plane in prange(N * C):
        total = 0.0
        row = xf[plane]
        for k in range(hw):
            total += np.float64(row[k])
        yf[plane] = total / hw
    return y


@njit(cache=True, parallel=True)
def _spread(dyf, dxf, hw):
    # dyf (planes,) -> dxf (planes, hw): every entry of a plane = its dy / hw
    for plane in prange(dxf.shape[0]):
        v = np.float64(dyf[plane]) / hw
        row = dxf[plane]
        for k in range(hw):
            row[k] = v


def global_avg_pool2d_backward(dy, H, W):
    # dy (N, C) -> dx (N, C, H, W) in dy's dtype, dx[n, c] = dy[n, c] / (H * W)
    n, c = dy.shape
    dx = np.empty((n, c, H, W), dtype=dy.dtype)
    if dx.size:
        _spread(dy.reshape(n * c), dx.reshape(n * c, H * W), H * W)
    return dx
