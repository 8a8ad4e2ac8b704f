"""Direct 2-D convolution on the CPU, stride 1: register tiles over the padded input, no im2col, no BLAS.

    y[n, f, i, j] = b[f] + sum_{c, u, v} w[f, c, u, v] * x[n, c, i + u - ph, j + v - pw]

x (N, C, H, W), w (F, C, KH, KW), b (F,) -> y (N, F, OH, OW); stride 1, groups 1, any kernel size and
padding (ph / pw before; the padding after is implied by OH / OW, as in conv.py; taps outside the image
count as zero). conv2d_backward also runs its dx through here: for stride 1, dx is this convolution of
dy with the flipped, transposed weights (`flipped_weights`).

    supports(w_shape, stride_h, stride_w, groups)   whether this kernel computes the layer
    plan(n_samples, threads=None)                    blocks of samples side by side on numba's threads
    conv2d_forward_direct(x, w, b, stride_h, stride_w, pad_h, pad_w, out_h, out_w, groups, blocks=None)
    flipped_weights(w)                               w (F, C, KH, KW) -> (C, F, KH, KW), both axes reversed

Method, per sample n: the sample is copied once into a zero-padded plane xp (C, OH + KH - 1, OW + KW - 1),
and each output row i is cut into panels of L = 64 bytes of pixels (16 float32, 8 float64). For stride 1,
output pixels j0 .. j0+L-1 of row i read, for tap (c, u, v), the L CONTIGUOUS input values
xp[c, i + u, j0 + v : j0 + v + L]. So the convolution is a GEMM, out (F, L) = w (F, C*KH*KW) @ B, whose B
rows are those input runs, read where they lie: `panel_gemm.tile_gathered` runs it with an offset table
(one entry per tap: c*plane + u*Wp + v) in 6-filter x L-pixel register tiles, the taps innermost, one
fused multiply-add per tap and lane. The sums run over the taps in order c, u, v, as im2col's GEMM runs
its k; bias is added after.

A row whose width is not a multiple of L ends in a partial panel: its tile goes to a scratch tile (its
reads run past the row into the next one, or into L spare elements at the end of xp) and only the
row's pixels are copied out. Such layers (the 8x8 and 4x4 maps of the digits network) waste much of
every tile, and conv_choice leaves them to im2col.

Threads: the samples are split into one contiguous block per numba thread (prange), each with its own
padded plane. No BLAS runs here, so the split does not depend on which BLAS is loaded.

Why a kernel of its own: im2col builds a (C*KH*KW, OH*OW) column matrix per sample, which for a first
layer (3 channels, 5x5) costs about as much as the thin GEMM that follows; here the input is read in
place. The measurements (`python scripts/conv_kernels.py`) and the choice: conv_choice, BENCHMARKS.md.
"""

import numba
import numpy as np
from numba import njit, prange

from numbanets.kernels.cpu.jit import JIT_OPTIONS
from numbanets.kernels.cpu.panel_gemm import TILE_ROWS, panel_width, tile_gathered

__all__ = ["conv2d_forward_direct", "flipped_weights", "plan", "supports"]


def supports(w_shape, stride_h: int, stride_w: int, groups: int) -> bool:
    """Whether this kernel computes the convolution: stride 1, groups 1 (any kernel size and padding)."""
    return stride_h == 1 and stride_w == 1 and groups == 1


def plan(n_samples: int, threads: int | None = None) -> int:
    """Blocks of samples run side by side: min(numba's threads, N) (1: a plain loop)."""
    threads = numba.get_num_threads() if threads is None else threads
    return max(1, min(threads, n_samples))


@njit(cache=True)
def flipped_weights(w):
    # w (F, C, KH, KW) -> (C, F, KH, KW) with wf[c, f, u, v] = w[f, c, KH-1-u, KW-1-v], contiguous
    F, C, KH, KW = w.shape
    wf = np.empty((C, F, KH, KW), dtype=w.dtype)
    for f in range(F):
        for c in range(C):
            for u in range(KH):
                for v in range(KW):
                    wf[c, f, u, v] = w[f, c, KH - 1 - u, KW - 1 - v]
    return wf


@njit(nogil=True, **JIT_OPTIONS)
def _forward_samples(x, wm, b, KH, KW, ph, pw, y, n_lo, n_hi):
    # x (N, C, H, W)  wm (F, C*KH*KW) contiguous  b (F,)  -> y[n_lo:n_hi] (N, F, OH, OW)
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    F, K = wm.shape
    OH, OW = y.shape[2], y.shape[3]
    L = panel_width(x)
    Hp, Wp = OH + KH - 1, OW + KW - 1
    plane = Hp * Wp
    xp = np.zeros(C * plane + L, dtype=x.dtype)  # + L: a partial panel's reads past the last row
    offsets = np.empty(K, dtype=np.int64)        # tap (c, u, v) -> where its input run starts, from xp[i*Wp + j0]
    for c in range(C):
        for u in range(KH):
            for v in range(KW):
                offsets[(c * KH + u) * KW + v] = c * plane + u * Wp + v
    scratch = np.empty(TILE_ROWS * L, dtype=x.dtype)
    r0, r1 = max(0, ph), min(Hp, ph + H)  # rows and columns of xp that hold the image
    q0, q1 = max(0, pw), min(Wp, pw + W)
    P = OH * OW
    full = OW // L
    rest = OW - full * L
    for n in range(n_lo, n_hi):
        for c in range(C):
            for r in range(r0, r1):
                dst = xp[c * plane + r * Wp + q0:c * plane + r * Wp + q1]
                src = x[n, c, r - ph, q0 - pw:q1 - pw]
                for q in range(q1 - q0):
                    dst[q] = src[q]
        yn = y[n].reshape(F * P)
        for i in range(OH):
            for f0 in range(0, F, TILE_ROWS):
                rows = min(TILE_ROWS, F - f0)
                for jp in range(full):
                    tile_gathered(wm, f0 * K, K, xp, i * Wp + jp * L, offsets, K, yn, f0 * P + i * OW + jp * L,
                                  P, rows)
                if rest:
                    tile_gathered(wm, f0 * K, K, xp, i * Wp + full * L, offsets, K, scratch, 0, L, rows)
                    for r in range(rows):
                        for j in range(rest):
                            yn[(f0 + r) * P + i * OW + full * L + j] = scratch[r * L + j]
        for f in range(F):
            row = yn[f * P:(f + 1) * P]
            bf = b[f]
            for p in range(P):
                row[p] += bf


@njit(parallel=True, **JIT_OPTIONS)
def _forward_blocks(x, wm, b, KH, KW, ph, pw, y, blocks):
    # _forward_samples for `blocks` contiguous blocks of the samples, one per numba thread
    n = x.shape[0]
    for k in prange(blocks):
        _forward_samples(x, wm, b, KH, KW, ph, pw, y, k * n // blocks, (k + 1) * n // blocks)


def conv2d_forward_direct(x, w, b, stride_h, stride_w, pad_h, pad_w, out_h, out_w, groups, blocks=None):
    # x (N, C, H, W)  w (F, C, KH, KW)  b (F,)  -> y (N, F, OH, OW)
    # the arguments of conv.conv2d_forward; blocks (tests) overrides plan()'s split over the threads
    if not supports(w.shape, stride_h, stride_w, groups):
        raise ValueError("conv2d_forward_direct: stride 1 and groups 1 only")
    if x.dtype != w.dtype or b.dtype != w.dtype or not (x.flags.c_contiguous and w.flags.c_contiguous):
        raise ValueError("conv2d_forward_direct: x, w, b of one dtype, x and w C-contiguous")
    n = x.shape[0]
    f, c, kh, kw = w.shape
    y = np.empty((n, f, out_h, out_w), dtype=x.dtype)
    wm = w.reshape(f, c * kh * kw)
    blocks = plan(n) if blocks is None else max(1, min(int(blocks), n))
    if blocks > 1:
        _forward_blocks(x, wm, b, kh, kw, pad_h, pad_w, y, blocks)
    else:
        _forward_samples(x, wm, b, kh, kw, pad_h, pad_w, y, 0, n)
    return y
