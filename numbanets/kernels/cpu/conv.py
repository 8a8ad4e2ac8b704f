"""2-D convolution (cross-correlation) on the CPU, forward and backward.

    y[n, f, i, j] = b[f] + sum_{c, u, v} w[f, c, u, v] * x[n, g*Cg + c, i*sh + u - ph, j*sw + v - pw]

x (N, C, H, W), w (F, C/groups, KH, KW), b (F,) -> y (N, F, OH, OW); taps that
fall outside the image count as zero. pad_h / pad_w are the padding BEFORE
(top / left); the output size is given, so the padding after is implied (it is
one larger for an odd "same" total). conv1d runs here with H = KH = 1.

Method, per sample n and group g (all matrices C-contiguous, no transposed copies):

    cols        = im2col(x[n])                       (C/g*KH*KW, OH*OW)
    y[n, g]     = w_g @ cols_g + b                   w_g (F/g, C/g*KH*KW); GEMM written straight into y[n]
    dw_g.T     += cols_g @ dy[n, g].T                (this orientation is ~1.4x faster in OpenBLAS; beta = 1)
    dcols_g     = w_g.T @ dy[n, g]                   (C/g*KH*KW, OH*OW)
    dx[n]      += col2im(dcols)                      (+= over overlapping taps)
    db          = sum of dy over n, i, j             (float64 accumulation)

One sample's column buffer stays in cache, and y[n] / dy[n] already are the
(F, OH*OW) matrices the GEMMs need. For stride 1 with OW == W (every "same"
convolution) im2col / col2im move a tap's whole plane as one contiguous run and
then fix the few taps that wrap around a row edge. Inner loops index with
uint64 so that numba drops its negative-index test and LLVM vectorises them.

Threads: the samples are split into one contiguous block per thread, and each
block runs `_forward_samples` / `_backward_samples` (njit, nogil) with its own
column buffers, its own dw / db partial sums and its own dx planes, so there are
no races; the partial sums are added at the end. Block 0 runs on the calling
thread, the others on a small Python thread pool (the GIL is released inside).
The thread count is numba.get_num_threads(). Plain threads instead of `prange`:
the same speed, no spinning OpenMP workers competing with BLAS for the cores,
and about half the compile time (a prange wrapper re-optimises everything it
inlines). The per-sample GEMMs are small, so BLAS is set to ONE thread while
the blocks run and restored afterwards: BLAS threads inside worker threads
(nested parallelism) spin against each other and were up to 50x slower on a
2-core machine. With one thread or one sample the samples run in a plain loop
and BLAS keeps its own threads; when the BLAS (numbanets.kernels.cpu.blas)
exposes no thread control, the plain loop is used as well.
"""

import threading
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
from numba import njit

from numbanets.kernels.cpu import blas
from numbanets.kernels.cpu.blas import gemm, gemm_acc

__all__ = ["conv2d_forward", "conv2d_backward"]


# --------------------------------------------------------------------------- threads

_POOL = None  # ThreadPoolExecutor for blocks 1.., grown on demand
_POOL_SIZE = 0
_POOL_LOCK = threading.Lock()


def _sample_threads(n_samples: int) -> int:
    """Threads to split the samples over; 1 means a plain loop with multi-threaded BLAS."""
    if not blas.has_thread_control():
        return 1
    return max(1, min(numba.get_num_threads(), n_samples))


def _on_one_blas_thread(fn, args):
    blas.set_threads(1)  # MKL's setting is per calling thread: each pool thread sets its own
    return fn(*args)


def _run_blocks(blocks):
    """Run fn(*args) for every (fn, args) in blocks: the first here, the rest on the pool.

    BLAS runs on one thread meanwhile; its old thread count is restored after.
    """
    global _POOL, _POOL_SIZE
    with _POOL_LOCK:
        if _POOL_SIZE < len(blocks) - 1:
            if _POOL is not None:
                _POOL.shutdown(wait=False)
            _POOL = ThreadPoolExecutor(max_workers=len(blocks) - 1, thread_name_prefix="numbanets-conv")
            _POOL_SIZE = len(blocks) - 1
        pool = _POOL
    old = blas.set_threads(1)
    try:
        futures = [pool.submit(_on_one_blas_thread, fn, args) for fn, args in blocks[1:]]
        try:
            fn, args = blocks[0]
            fn(*args)
        finally:
            for future in futures:
                future.result()
    finally:
        blas.restore_threads(old)


# --------------------------------------------------------------------------- im2col / col2im

@njit(cache=True)
def _tap_range(k, pad, stride, size, out):
    # outputs o in [lo, hi) whose tap o*stride + k - pad lies inside [0, size)
    lo = 0
    if pad > k:
        lo = (pad - k + stride - 1) // stride
    last = size - 1 + pad - k
    hi = last // stride + 1 if last >= 0 else 0
    hi = min(hi, out)
    lo = min(lo, out)
    return lo, max(lo, hi)


@njit(cache=True)
def _zero_wrapped(cols, row, OW, ilo, ihi, jlo, jhi):
    # zero cols[row + i*OW + j] for i in [ilo, ihi) and j outside [jlo, jhi)
    for j in range(jlo):
        for t in range(row + ilo * OW + j, row + ihi * OW, OW):
            cols[np.uint64(t)] = 0
    for j in range(jhi, OW):
        for t in range(row + ilo * OW + j, row + ihi * OW, OW):
            cols[np.uint64(t)] = 0


@njit(cache=True)
def _im2col(xf, base, C, H, W, KH, KW, sh, sw, ph, pw, OH, OW, cols):
    # one sample: xf flat input, channel c's plane at base + c*H*W  -> cols flat (C*KH*KW, OH*OW)
    # Indices are cast to uint64 (all are >= 0): no negative-index wraparound test, so loops vectorise.
    P = OH * OW
    contiguous = sh == 1 and sw == 1 and OW == W
    for c in range(C):
        plane = base + c * H * W
        for u in range(KH):
            ilo, ihi = _tap_range(u, ph, sh, H, OH)
            for v in range(KW):
                row = ((c * KH + u) * KW + v) * P
                jlo, jhi = _tap_range(v, pw, sw, W, OW)
                off = v - pw
                for t in range(row, row + ilo * OW):
                    cols[np.uint64(t)] = 0
                for t in range(row + ihi * OW, row + P):
                    cols[np.uint64(t)] = 0
                if ihi == ilo:
                    continue
                if contiguous:
                    # cols[row + t] = x[shift + t] for t = i*W + j: one run, then zero the wrapped taps
                    shift = plane + (u - ph) * W + off
                    for t in range(ilo * OW + jlo, (ihi - 1) * OW + jhi):
                        cols[np.uint64(row + t)] = xf[np.uint64(t + shift)]
                    _zero_wrapped(cols, row, OW, ilo, ihi, jlo, jhi)
                else:
                    _zero_wrapped(cols, row, OW, ilo, ihi, jlo, jhi)
                    for i in range(ilo, ihi):
                        o = row + i * OW
                        s = plane + (i * sh + u - ph) * W + off
                        for j in range(jlo, jhi):
                            cols[np.uint64(o + j)] = xf[np.uint64(s + j * sw)]


@njit(cache=True)
def _col2im(cols, C, H, W, KH, KW, sh, sw, ph, pw, OH, OW, dxf, base):
    # one sample: dxf[base + ...] += col2im(cols)   (cols is scratch: its wrapped taps get zeroed)
    P = OH * OW
    contiguous = sh == 1 and sw == 1 and OW == W
    for c in range(C):
        plane = base + c * H * W
        for u in range(KH):
            ilo, ihi = _tap_range(u, ph, sh, H, OH)
            if ihi == ilo:
                continue
            for v in range(KW):
                row = ((c * KH + u) * KW + v) * P
                jlo, jhi = _tap_range(v, pw, sw, W, OW)
                if jhi == jlo:
                    continue
                off = v - pw
                if contiguous:
                    # zero the taps that wrap into the neighbouring image row, then add one run
                    _zero_wrapped(cols, row, OW, ilo, ihi, jlo, jhi)
                    shift = plane + (u - ph) * W + off
                    for t in range(ilo * OW + jlo, (ihi - 1) * OW + jhi):
                        dxf[np.uint64(t + shift)] += cols[np.uint64(row + t)]
                else:
                    for i in range(ilo, ihi):
                        o = row + i * OW
                        s = plane + (i * sh + u - ph) * W + off
                        for j in range(jlo, jhi):
                            dxf[np.uint64(s + j * sw)] += cols[np.uint64(o + j)]


@njit(cache=True)
def _row_sum(a, start, n):
    # float64 sum of a[start:start+n] with 8 independent partial sums (vectorisable, deterministic)
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
    end8 = start + (n // 8) * 8
    for t in range(start, end8, 8):
        s0 += a[np.uint64(t)]
        s1 += a[np.uint64(t + 1)]
        s2 += a[np.uint64(t + 2)]
        s3 += a[np.uint64(t + 3)]
        s4 += a[np.uint64(t + 4)]
        s5 += a[np.uint64(t + 5)]
        s6 += a[np.uint64(t + 6)]
        s7 += a[np.uint64(t + 7)]
    for t in range(end8, start + n):
        s0 += a[np.uint64(t)]
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))


@njit(cache=True)
def _add_bias(yf, start, b, P):
    # yf[start + f*P + p] += b[f]
    for f in range(b.shape[0]):
        bf = b[f]
        o = start + f * P
        for p in range(P):
            yf[np.uint64(o + p)] += bf


# --------------------------------------------------------------------------- forward

@njit(cache=True, nogil=True)
def _forward_samples(x, w, b, sh, sw, ph, pw, OH, OW, groups, y, n_lo, n_hi):
    # x (N, C, H, W)  w (F, C/g, KH, KW)  b (F,)  -> y[n_lo:n_hi] (N, F, OH, OW)
    N, C, H, W = x.shape
    F, Cg, KH, KW = w.shape
    Fg = F // groups
    Kg = Cg * KH * KW
    P = OH * OW
    wm = w.reshape(groups, Fg, Kg)
    xf = x.reshape(-1)
    y3 = y.reshape(N, F, P)
    yf = y.reshape(-1)
    cols = np.empty(C * KH * KW * P, dtype=x.dtype)
    cols3 = cols.reshape(groups, Kg, P)
    for n in range(n_lo, n_hi):
        _im2col(xf, n * C * H * W, C, H, W, KH, KW, sh, sw, ph, pw, OH, OW, cols)
        yn = y3[n].reshape(groups, Fg, P)
        for g in range(groups):
            gemm(wm[g], False, cols3[g], False, yn[g])
        _add_bias(yf, n * F * P, b, P)


def conv2d_forward(x, w, b, stride_h, stride_w, pad_h, pad_w, out_h, out_w, groups):
    # x (N, C, H, W)  w (F, C/g, KH, KW)  b (F,)  -> y (N, F, OH, OW)
    n = x.shape[0]
    y = np.empty((n, w.shape[0], out_h, out_w), dtype=x.dtype)
    args = (x, w, b, stride_h, stride_w, pad_h, pad_w, out_h, out_w, groups, y)
    threads = _sample_threads(n)
    if threads > 1:
        _run_blocks([(_forward_samples, args + (t * n // threads, (t + 1) * n // threads)) for t in range(threads)])
    else:
        _forward_samples(*args, 0, n)
    return y


# --------------------------------------------------------------------------- backward

@njit(cache=True, nogil=True)
def _backward_samples(dy, x, w, sh, sw, ph, pw, groups, dx, dwt_part, db_part, n_lo, n_hi):
    # dy (N, F, OH, OW)  x (N, C, H, W)  w (F, C/g, KH, KW), samples n_lo .. n_hi-1
    #   -> dx[n] += ..., dwt_part (g, C/g*KH*KW, F/g) += dw_g.T, db_part (F,) float64 +=
    N, C, H, W = x.shape
    F, Cg, KH, KW = w.shape
    OH, OW = dy.shape[2], dy.shape[3]
    Fg = F // groups
    Kg = Cg * KH * KW
    P = OH * OW
    wm = w.reshape(groups, Fg, Kg)
    xf = x.reshape(-1)
    dxf = dx.reshape(-1)
    dyf = dy.reshape(-1)
    dy3 = dy.reshape(N, F, P)
    cols = np.empty(C * KH * KW * P, dtype=x.dtype)
    dcols = np.empty(C * KH * KW * P, dtype=x.dtype)
    cols3 = cols.reshape(groups, Kg, P)
    dcols3 = dcols.reshape(groups, Kg, P)
    for n in range(n_lo, n_hi):
        _im2col(xf, n * C * H * W, C, H, W, KH, KW, sh, sw, ph, pw, OH, OW, cols)
        dyn = dy3[n].reshape(groups, Fg, P)
        for g in range(groups):
            gemm_acc(cols3[g], False, dyn[g], True, dwt_part[g])  # dw_g.T: faster in BLAS than dy_g @ cols_g.T
            gemm(wm[g], True, dyn[g], False, dcols3[g])
        _col2im(dcols, C, H, W, KH, KW, sh, sw, ph, pw, OH, OW, dxf, n * C * H * W)
        for f in range(F):
            db_part[f] += _row_sum(dyf, (n * F + f) * P, P)


@njit(cache=True)
def _dw_from_parts(dwt_parts, w):
    # dwt_parts (T, g, C/g*KH*KW, F/g) partial sums of dw.T -> dw like w
    T, G, Kg, Fg = dwt_parts.shape
    dw = np.empty((G * Fg, Kg), dtype=w.dtype)
    for g in range(G):
        for k in range(Kg):
            for f in range(Fg):
                acc = dwt_parts[0, g, k, f]
                for t in range(1, T):
                    acc += dwt_parts[t, g, k, f]
                dw[g * Fg + f, k] = acc
    return dw.reshape(w.shape)


@njit(cache=True)
def _db_from_parts(db_parts, w):
    # db_parts (T, F) float64 -> db (F,) in w's dtype
    T, F = db_parts.shape
    db = np.empty(F, dtype=w.dtype)
    for f in range(F):
        acc = 0.0
        for t in range(T):
            acc += db_parts[t, f]
        db[f] = acc
    return db


def conv2d_backward(dy, x, w, stride_h, stride_w, pad_h, pad_w, groups):
    # dy (N, F, OH, OW)  x (N, C, H, W)  w (F, C/g, KH, KW)  -> dx (N, C, H, W), dw like w, db (F,)
    n = x.shape[0]
    f, cg, kh, kw = w.shape
    threads = _sample_threads(n)
    dx = np.zeros_like(x)
    dwt_parts = np.zeros((threads, groups, cg * kh * kw, f // groups), dtype=x.dtype)
    db_parts = np.zeros((threads, f), dtype=np.float64)
    args = (dy, x, w, stride_h, stride_w, pad_h, pad_w, groups, dx)
    if threads > 1:
        _run_blocks([(_backward_samples, args + (dwt_parts[t], db_parts[t], t * n // threads, (t + 1) * n // threads))
                     for t in range(threads)])
    else:
        _backward_samples(*args, dwt_parts[0], db_parts[0], 0, n)
    return dx, _dw_from_parts(dwt_parts, w), _db_from_parts(db_parts, w)
