"""2-D convolution (cross-correlation) on the GPU, forward and backward.

    y[n, f, i, j] = b[f] + sum_{c, u, v} w[f, c, u, v] * x[n, g*Cg + c, i*sh + u - ph, j*sw + v - pw]

x (N, C, H, W), w (F, C/groups, KH, KW), b (F,) -> y (N, F, OH, OW); taps outside
the image count as zero. pad_h / pad_w are the padding BEFORE (top / left); the
output size is given, so the padding after is implied. conv1d runs here with
H = KH = 1. Same signatures and results as numbanets.kernels.cpu.conv.

Method: the samples go in chunks of B (as many as keep the column buffer under
_COLS_BUDGET elements); per chunk, with P = OH*OW, R = C*KH*KW, Rg = R/groups:

    cols        = im2col(x[chunk])                 (R, B*P)    one launch, a thread per element
    yt_g        = w_g (F/g, Rg) @ cols_g (Rg, B*P)             one tiled GEMM per group
    y[chunk]    = yt (F, B, P) -> (B, F, P) + b               one launch (bias fused)
  backward:
    dyt         = dy[chunk] (B, F, P) -> (F, B*P)             one launch
    dw_g       += dyt_g @ cols_g.T                             GEMM, beta = 1 after the first chunk
    dcols_g     = w_g.T @ dyt_g                                GEMM
    dx[chunk]   = col2im(dcols)                                one launch, a thread per dx element
                  GATHERING the taps that read it (race-free, deterministic, no atomics)
    db          = sum of dy over n, i, j                       one block per f (linear.sum_rows_cols)

Group g's rows of cols / dcols, of w reshaped (F, Rg) and of yt / dyt are
contiguous row ranges, so every GEMM runs on C-contiguous views. Batching the
samples into one GEMM keeps the GPU busy where per-sample GEMMs (F x P) would not.
"""

from __future__ import annotations

from numba import cuda

from numbanets.kernels.cuda import empty, grid_1d, zeros
from numbanets.kernels.cuda.gemm import gemm
from numbanets.kernels.cuda.linear import sum_rows_cols
from numbanets.kernels.cuda.registry import register

__all__ = ["conv2d_forward", "conv2d_backward"]

_COLS_BUDGET = 1 << 24  # elements of one column buffer (64 MiB float32); tests lower it to force chunks


@register("conv_im2col", "{f}[:, :, :, ::1], int64, {f}[:, ::1], int64, int64, int64, int64, int64, int64, int64, int64")
def _im2col(x, n0, cols, kh, kw, sh, sw, ph, pw, oh, ow):
    # x (N, C, H, W), samples n0.. -> cols (C*KH*KW, B*OH*OW): cols[(c, u, v), (b, i, j)] = x[n0+b, c, i*sh+u-ph, j*sw+v-pw]
    h_in = x.shape[2]
    w_in = x.shape[3]
    n_p = oh * ow
    n_q = cols.shape[1]
    total = cols.shape[0] * n_q
    start = cuda.grid(1)
    step = cuda.gridsize(1)
    for t in range(start, total, step):
        r = t // n_q
        q = t - r * n_q
        bb = q // n_p
        p = q - bb * n_p
        i = p // ow
        j = p - i * ow
        v = r % kw
        cu = r // kw
        u = cu % kh
        c = cu // kh
        h = i * sh + u - ph
        w = j * sw + v - pw
        if 0 <= h < h_in and 0 <= w < w_in:
            cols[r, q] = x[n0 + bb, c, h, w]
        else:
            cols[r, q] = 0


@register("conv_cols_to_output", "{f}[:, ::1], {f}[::1], {f}[:, :, :, ::1], int64")
def _cols_to_output(yt, b, y, n0):
    # yt (F, B*P), b (F,) -> y[n0+bb, f, i, j] = yt[f, bb*P + i*OW + j] + b[f] for the chunk's B samples
    n_f = y.shape[1]
    ow = y.shape[3]
    n_p = y.shape[2] * ow
    total = yt.shape[1] * n_f  # B * F * P
    start = cuda.grid(1)
    step = cuda.gridsize(1)
    for t in range(start, total, step):
        p = t % n_p
        r = t // n_p
        f = r % n_f
        bb = r // n_f
        i = p // ow
        y[n0 + bb, f, i, p - i * ow] = yt[f, bb * n_p + p] + b[f]


@register("conv_output_to_cols", "{f}[:, :, :, ::1], int64, {f}[:, ::1]")
def _output_to_cols(dy, n0, dyt):
    # dy (N, F, OH, OW), samples n0.. -> dyt (F, B*P): dyt[f, bb*P + i*OW + j] = dy[n0+bb, f, i, j]
    ow = dy.shape[3]
    n_p = dy.shape[2] * ow
    n_q = dyt.shape[1]
    total = dyt.shape[0] * n_q
    start = cuda.grid(1)
    step = cuda.gridsize(1)
    for t in range(start, total, step):
        f = t // n_q
        q = t - f * n_q
        bb = q // n_p
        p = q - bb * n_p
        i = p // ow
        dyt[f, q] = dy[n0 + bb, f, i, p - i * ow]


@register("conv_col2im", "{f}[:, ::1], int64, {f}[:, :, :, ::1], int64, int64, int64, int64, int64, int64, int64, int64")
def _col2im(dcols, n0, dx, kh, kw, sh, sw, ph, pw, oh, ow):
    # dcols (C*KH*KW, B*OH*OW) -> dx[n0+b, c, h, w] = sum of the taps (u, v, i, j) with i*sh+u-ph = h, j*sw+v-pw = w
    n_c = dx.shape[1]
    h_in = dx.shape[2]
    w_in = dx.shape[3]
    n_p = oh * ow
    plane = h_in * w_in
    total = (dcols.shape[1] // n_p) * n_c * plane  # B * C * H * W
    start = cuda.grid(1)
    step = cuda.gridsize(1)
    for t in range(start, total, step):
        w = t % w_in
        r = t // w_in
        h = r % h_in
        r = r // h_in
        c = r % n_c
        bb = r // n_c
        acc = 0.0
        for u in range(kh):
            hh = h + ph - u
            if hh < 0:
                break
            if hh % sh != 0:
                continue
            i = hh // sh
            if i >= oh:
                continue
            for v in range(kw):
                ww = w + pw - v
                if ww < 0:
                    break
                if ww % sw != 0:
                    continue
                j = ww // sw
                if j >= ow:
                    continue
                acc += dcols[(c * kh + u) * kw + v, bb * n_p + i * ow + j]
        dx[n0 + bb, c, h, w] = acc


def _chunk(n, rows, n_p):
    """Samples per chunk: all of them, or as many as keep a (rows, B*P) buffer under _COLS_BUDGET."""
    return max(1, min(n, _COLS_BUDGET // max(1, rows * n_p)))


def _launch(kernel, n, *args):
    blocks, threads = grid_1d(n)
    kernel[blocks, threads](*args)


def _view(buf, rows, cols):
    """The leading rows*cols elements of a flat buffer as a C-contiguous (rows, cols) matrix."""
    return buf[: rows * cols].reshape(rows, cols)


def conv2d_forward(x, w, b, stride_h, stride_w, pad_h, pad_w, out_h, out_w, groups):
    # x (N, C, H, W)  w (F, C/g, KH, KW)  b (F,)  -> y (N, F, OH, OW)
    n, c, _, _ = x.shape
    f, cg, kh, kw = w.shape
    n_p = out_h * out_w
    y = empty((n, f, out_h, out_w), x.dtype)
    if n == 0 or f == 0 or n_p == 0:
        return y
    r, rg, fg = c * kh * kw, cg * kh * kw, f // groups
    w2 = w.reshape(f, rg)
    chunk = _chunk(n, max(r, f), n_p)
    cols_buf = empty(r * chunk * n_p, x.dtype)
    yt_buf = empty(f * chunk * n_p, x.dtype)
    for n0 in range(0, n, chunk):
        nb = min(chunk, n - n0)
        cols = _view(cols_buf, r, nb * n_p)
        yt = _view(yt_buf, f, nb * n_p)
        _launch(_im2col, r * nb * n_p, x, n0, cols, kh, kw, stride_h, stride_w, pad_h, pad_w, out_h, out_w)
        for g in range(groups):
            gemm(w2[g * fg:(g + 1) * fg], cols[g * rg:(g + 1) * rg], yt[g * fg:(g + 1) * fg])
        _launch(_cols_to_output, f * nb * n_p, yt, b, y, n0)
    return y


def conv2d_backward(dy, x, w, stride_h, stride_w, pad_h, pad_w, groups):
    # dy (N, F, OH, OW)  x (N, C, H, W)  w (F, C/g, KH, KW)  -> dx like x, dw like w, db (F,)
    n, c, h, wd = x.shape
    f, cg, kh, kw = w.shape
    out_h, out_w = dy.shape[2], dy.shape[3]
    n_p = out_h * out_w
    r, rg, fg = c * kh * kw, cg * kh * kw, f // groups
    db = sum_rows_cols(dy.reshape(n, f, n_p))
    if n == 0 or n_p == 0:
        return zeros(x.shape, x.dtype), zeros(w.shape, w.dtype), db
    dx = empty(x.shape, x.dtype)
    dw = empty(w.shape, w.dtype)
    w2 = w.reshape(f, rg)
    dw2 = dw.reshape(f, rg)
    chunk = _chunk(n, max(r, f), n_p)
    cols_buf = empty(r * chunk * n_p, x.dtype)
    dcols_buf = empty(r * chunk * n_p, x.dtype)
    dyt_buf = empty(f * chunk * n_p, x.dtype)
    for n0 in range(0, n, chunk):
        nb = min(chunk, n - n0)
        q = nb * n_p
        cols = _view(cols_buf, r, q)
        dcols = _view(dcols_buf, r, q)
        dyt = _view(dyt_buf, f, q)
        _launch(_im2col, r * q, x, n0, cols, kh, kw, stride_h, stride_w, pad_h, pad_w, out_h, out_w)
        _launch(_output_to_cols, f * q, dy, n0, dyt)
        beta = 0.0 if n0 == 0 else 1.0
        for g in range(groups):
            rows_f = slice(g * fg, (g + 1) * fg)
            rows_r = slice(g * rg, (g + 1) * rg)
            gemm(dyt[rows_f], cols[rows_r], dw2[rows_f], trans_b=True, beta=beta)
            gemm(w2[rows_f], dyt[rows_f], dcols[rows_r], trans_a=True)
        _launch(_col2im, nb * c * h * wd, dcols, n0, dx, kh, kw, stride_h, stride_w, pad_h, pad_w, out_h, out_w)
    return dx, dw, db

