"""2-D convolution (cross-correlation) on the CPU, forward and backward.

    y[n, f, i, j] = b[f] + sum_{c, u, v} w[f, c, u, v] * x[n, g*Cg + c, i*sh + u - ph, j*sw + v - pw]

x (N, C, H, W), w (F, C/groups, KH, KW), b (F,) -> y (N, F, OH, OW); taps that
fall outside the image count as zero. pad_h / pad_w are the padding BEFORE
(top / left); the output size is given, so the padding after is implied (it is
one larger for an odd "same" total). conv1d runs here with H = KH = 1.

Which kernel: `conv_choice` sends stride-1 layers whose output rows are whole register tiles to
`conv_direct` (register tiles read straight from the padded input), and with them the backward's dx
(the direct convolution of dy with the flipped, transposed weights: dw and db stay here, and the
dcols GEMM and col2im below are skipped); 3x3 layers with many channels and small outputs to
`conv_winograd` (forward only). Everything else runs here, by im2col.

Method, per sample n and group g (all matrices C-contiguous, no transposed copies):

    cols        = im2col(x[n])                       (C/g*KH*KW, OH*OW)
    y[n, g]     = w_g @ cols_g + b                   w_g (F/g, C/g*KH*KW); GEMM written straight into y[n]
    dw_g.T     += cols_g @ dy[n, g].T                (beta = 1; faster in the BLAS than dy_g @ cols_g.T)
    dcols_g     = w_g.T @ dy[n, g]                   (C/g*KH*KW, OH*OW), written over cols_g (one buffer)
    dx[n]      += col2im(dcols)                      (+= over overlapping taps)
    db          = sum of dy over n, i, j             (float64 accumulation)

One sample's column buffer stays in cache, and y[n] / dy[n] already are the
(F, OH*OW) matrices the GEMMs need.

Small outputs (OH*OW at most COLUMNS_PER_GEMM / 2) put S = COLUMNS_PER_GEMM //
(OH*OW) samples' columns side by side, cols (C/g*KH*KW, S*OH*OW), so that one
GEMM covers S samples; y / dy are then copied out of / into that (F, S*OH*OW)
layout. A product over a few dozen columns is too small for the BLAS to run
at speed; much wider ones fall out of cache again, hence the cap.

Forward with one sample per GEMM and stride 1 along the rows: im2col builds
only the columns of one kernel row, B (C/g*KW, (OH + KH - 1)*OW). The rows of
tap row u are B shifted by u output rows, a strided view, so y[n, g] = sum over
u of wu[u, g] @ B_g[:, u*OW : u*OW + OH*OW] (KH GEMMs with beta = 1, weights
regrouped per kernel row), and im2col moves KH times less data. It pays only
when each of the KH GEMMs is deep enough, so it runs from ROW_SHIFT_MIN_K GEMM
rows (C/g*KW) up; with few channels the KH thin GEMMs cost more than the
copying they save. The backward keeps the full im2col: the same trick there
(dcols accumulated into overlapping views) gained nothing.

For stride 1 with OW == W (every "same" convolution) im2col / col2im move a
tap's whole plane as one contiguous run and then fix the few taps that wrap
around a row edge. Inner loops index with uint64 so that numba drops its
negative-index test and LLVM vectorises them.

Threads: the samples are split into one contiguous block per thread, and each
block runs `_forward_samples` / `_backward_samples` (njit, nogil) with its own
column buffers, its own dw / db partial sums and its own dx planes, so there are
no races; the partial sums are added at the end. The per-sample GEMMs are
small, so each block runs its BLAS calls on one thread. Where the blocks run:

- MKL on GNU OpenMP (blas.pool_threads() > 1): a `prange` over the blocks on
  numba's own OpenMP pool, each block setting MKL's count for its thread to 1
  (blas.set_local_threads) and restoring it. Pooling, activations and the
  recurrent kernels use the same pool, so no thread spins against another; a
  Python worker thread would compete with OpenMP workers still spinning after
  the previous parallel region, which slows a whole training step of small
  layers.
- Otherwise, with a BLAS whose threads can be set (OpenBLAS): block 0 on the
  calling thread, the others on a small Python thread pool (`blocks.run_blocks`;
  the GIL is released inside), with the BLAS set to ONE thread while they run and
  restored afterwards: BLAS threads inside worker threads (nested parallelism)
  spin against each other and run many times slower.
- With one thread or one sample, or a BLAS without thread control, the samples
  run in a plain loop and the BLAS keeps its own threads.

The measurements behind these choices: BENCHMARKS.md, "Measurements behind the CPU kernels' design".
"""

import numba
import numpy as np
from numba import njit, prange

from numbanets.kernels.cpu import blas, conv_choice, conv_direct, conv_winograd
from numbanets.kernels.cpu.blas import gemm, gemm_acc, set_local_threads
from numbanets.kernels.cpu.blocks import run_blocks

__all__ = ["conv2d_forward", "conv2d_backward"]


# --------------------------------------------------------------------------- threads

ROW_SHIFT_MIN_K = 32  # forward: row-shifted taps from this many GEMM rows (C/g*KW) up (read at call time)
COLUMNS_PER_GEMM = 256  # small outputs: samples side by side up to this many GEMM columns (read at call time)

def _sample_threads(n_samples: int) -> tuple[int, str]:
    """(blocks, how): blocks of samples side by side, "numba" (prange on numba's pool, which the BLAS shares),
    "python" (blocks.run_blocks' thread pool) or "loop" (one block, the BLAS with its own threads)."""
    shared = min(blas.pool_threads(), n_samples)
    if shared > 1:
        return shared, "numba"
    if not blas.has_thread_control():
        return 1, "loop"
    threads = max(1, min(numba.get_num_threads(), n_samples))
    return threads, ("python" if threads > 1 else "loop")


def samples_per_gemm(out_pixels: int, block: int) -> int:
    """Samples whose im2col columns share one GEMM: enough for about COLUMNS_PER_GEMM columns, at most the
    samples of one thread's block; 1 (each sample's GEMM writes straight into y[n]) for larger images."""
    return max(1, min(COLUMNS_PER_GEMM // max(out_pixels, 1), block))


def row_shifted_taps(w_shape, stride_h: int, groups: int, per_gemm: int) -> bool:
    """Whether the forward pass with one sample per GEMM runs the kernel rows as shifted views of a
    columns-only im2col (_forward_shifted): stride 1 along the rows, more than one kernel row, and at least
    ROW_SHIFT_MIN_K = C/g*KW rows per GEMM."""
    f, cg, kh, kw = w_shape
    return per_gemm == 1 and stride_h == 1 and kh > 1 and cg * kw >= ROW_SHIFT_MIN_K


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
def _im2col(xf, base, C, H, W, KH, KW, sh, sw, ph, pw, OH, OW, cols, ld, col0):
    # one sample: xf flat input, channel c's plane at base + c*H*W  -> columns col0 .. col0 + OH*OW - 1
    # of cols, flat (C*KH*KW, ld)
    # Indices are cast to uint64 (all are >= 0): no negative-index wraparound test, so loops vectorise.
    P = OH * OW
    contiguous = sh == 1 and sw == 1 and OW == W
    for c in range(C):
        plane = base + c * H * W
        for u in range(KH):
            ilo, ihi = _tap_range(u, ph, sh, H, OH)
            for v in range(KW):
                row = ((c * KH + u) * KW + v) * ld + col0
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
def _im2col_samples(xf, n0, count, C, H, W, KH, KW, sh, sw, ph, pw, OH, OW, cols, ld):
    # samples n0 .. n0+count-1 side by side: sample s's columns at s*OH*OW .. of cols, flat (C*KH*KW, ld)
    for s in range(count):
        _im2col(xf, (n0 + s) * C * H * W, C, H, W, KH, KW, sh, sw, ph, pw, OH, OW, cols, ld, s * OH * OW)


@njit(cache=True)
def _col2im(cols, ld, col0, C, H, W, KH, KW, sh, sw, ph, pw, OH, OW, dxf, base):
    # one sample: dxf[base + ...] += col2im(columns col0 .. col0 + OH*OW - 1 of cols, flat (C*KH*KW, ld))
    # (cols is scratch: its wrapped taps get zeroed)
    contiguous = sh == 1 and sw == 1 and OW == W
    for c in range(C):
        plane = base + c * H * W
        for u in range(KH):
            ilo, ihi = _tap_range(u, ph, sh, H, OH)
            if ihi == ilo:
                continue
            for v in range(KW):
                row = ((c * KH + u) * KW + v) * ld + col0
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

@njit(cache=True)
def _gemm_groups(wm, cols3, out3):
    # out3[g] (F/g, m) = wm[g] (F/g, K/g) @ cols3[g] (K/g, m) for every group g
    for g in range(wm.shape[0]):
        gemm(wm[g], False, cols3[g], False, out3[g])


@njit(cache=True)
def _unpack_samples(out, n0, count, P, b, yf):
    # out (F, >= count*P): column block s is sample n0 + s  ->  yf[((n0 + s)*F + f)*P + p] = out[f, s*P + p] + b[f]
    F = out.shape[0]
    for s in range(count):
        for f in range(F):
            src = out[f, s * P:(s + 1) * P]
            o = np.uint64(((n0 + s) * F + f) * P)
            bf = b[f]
            for p in range(np.uint64(P)):
                yf[o + p] = src[p] + bf


@njit(cache=True)
def _tap_row_weights(w, groups):
    # w (F, C/g, KH, KW) -> wu (KH, g, F/g, C/g*KW): wu[u, g, f, c*KW + v] = w[g*F/g + f, c, u, v]
    F, Cg, KH, KW = w.shape
    Fg = F // groups
    wu = np.empty((KH, groups, Fg, Cg * KW), dtype=w.dtype)
    for u in range(KH):
        for g in range(groups):
            for f in range(Fg):
                for c in range(Cg):
                    for v in range(KW):
                        wu[u, g, f, c * KW + v] = w[g * Fg + f, c, u, v]
    return wu


@njit(cache=True)
def _forward_shifted(x, w, b, sw, ph, pw, OH, OW, groups, y, n_lo, n_hi):
    # stride 1 along the rows: B = im2col over the kernel's columns only, for OH + KH - 1 output rows,
    # B (C*KW, (OH + KH - 1)*OW); tap row u's columns are B shifted by u output rows, so
    #   y[n, g] = sum_u wu[u, g] @ B_g[:, u*OW : u*OW + OH*OW]     (a strided view: no copy)
    N, C, H, W = x.shape
    F, Cg, KH, KW = w.shape
    Fg = F // groups
    P = OH * OW
    E = (OH + KH - 1) * OW
    wu = _tap_row_weights(w, groups)
    xf = x.reshape(-1)
    yf = y.reshape(-1)
    y3 = y.reshape(N, F, P)
    B = np.empty(C * KW * E, dtype=x.dtype)
    B3 = B.reshape(groups, Cg * KW, E)
    for n in range(n_lo, n_hi):
        _im2col(xf, n * C * H * W, C, H, W, 1, KW, 1, sw, ph, pw, OH + KH - 1, OW, B, E, 0)
        yn = y3[n].reshape(groups, Fg, P)
        for g in range(groups):
            gemm(wu[0, g], False, B3[g][:, 0:P], False, yn[g])
            for u in range(1, KH):
                gemm_acc(wu[u, g], False, B3[g][:, u * OW:u * OW + P], False, yn[g])
        _add_bias(yf, n * F * P, b, P)


@njit(cache=True, nogil=True)
def _forward_samples(x, w, b, sh, sw, ph, pw, OH, OW, groups, y, n_lo, n_hi, per_gemm, shifted):
    # x (N, C, H, W)  w (F, C/g, KH, KW)  b (F,)  -> y[n_lo:n_hi] (N, F, OH, OW)
    # per_gemm samples share each GEMM (their columns side by side); with 1 the GEMM writes into y[n]
    N, C, H, W = x.shape
    F, Cg, KH, KW = w.shape
    if shifted:
        _forward_shifted(x, w, b, sw, ph, pw, OH, OW, groups, y, n_lo, n_hi)
        return
    Fg = F // groups
    Kg = Cg * KH * KW
    P = OH * OW
    ld = per_gemm * P
    wm = w.reshape(groups, Fg, Kg)
    xf = x.reshape(-1)
    y3 = y.reshape(N, F, P)
    yf = y.reshape(-1)
    cols = np.empty(C * KH * KW * ld, dtype=x.dtype)
    cols3 = cols.reshape(groups, Kg, ld)
    out = np.empty((F, ld if per_gemm > 1 else 0), dtype=x.dtype)
    for n0 in range(n_lo, n_hi, per_gemm):
        count = min(per_gemm, n_hi - n0)
        _im2col_samples(xf, n0, count, C, H, W, KH, KW, sh, sw, ph, pw, OH, OW, cols, ld)
        if per_gemm == 1:
            _gemm_groups(wm, cols3, y3[n0].reshape(groups, Fg, P))
            _add_bias(yf, n0 * F * P, b, P)
        else:
            _gemm_groups(wm, cols3[:, :, :count * P], out.reshape(groups, Fg, ld)[:, :, :count * P])
            _unpack_samples(out, n0, count, P, b, yf)


@njit(cache=True, parallel=True)
def _forward_blocks(x, w, b, sh, sw, ph, pw, OH, OW, groups, y, blocks, per_gemm, shifted):
    # _forward_samples for `blocks` contiguous blocks of the samples, one per numba thread
    n = x.shape[0]
    for k in prange(blocks):
        previous = set_local_threads(1)  # one MKL thread per block, even where the caller chose more
        _forward_samples(x, w, b, sh, sw, ph, pw, OH, OW, groups, y, k * n // blocks, (k + 1) * n // blocks,
                         per_gemm, shifted)
        set_local_threads(previous)


def conv2d_forward(x, w, b, stride_h, stride_w, pad_h, pad_w, out_h, out_w, groups):
    # x (N, C, H, W)  w (F, C/g, KH, KW)  b (F,)  -> y (N, F, OH, OW)
    # (conv_choice may send the layer to conv_direct's or conv_winograd's kernel; this module is im2col)
    kernel = conv_choice.choose_forward(x.shape, w.shape, (stride_h, stride_w), groups, out_h, out_w)
    if kernel != "im2col":
        other = conv_direct.conv2d_forward_direct if kernel == "direct" else conv_winograd.conv2d_forward_winograd
        return other(x, w, b, stride_h, stride_w, pad_h, pad_w, out_h, out_w, groups)
    n = x.shape[0]
    y = np.empty((n, w.shape[0], out_h, out_w), dtype=x.dtype)
    args = (x, w, b, stride_h, stride_w, pad_h, pad_w, out_h, out_w, groups, y)
    blocks, how = _sample_threads(n)
    per_gemm = samples_per_gemm(out_h * out_w, -(-n // blocks))
    shifted = row_shifted_taps(w.shape, stride_h, groups, per_gemm)
    if how == "numba":
        _forward_blocks(*args, blocks, per_gemm, shifted)
    elif how == "python":
        run_blocks([(_forward_samples, args + (t * n // blocks, (t + 1) * n // blocks, per_gemm, shifted))
                     for t in range(blocks)])
    else:
        _forward_samples(*args, 0, n, per_gemm, shifted)
    return y


# --------------------------------------------------------------------------- backward

@njit(cache=True)
def _grads_groups(cols3, dy3, wm, dwt_part, with_dcols):
    # per group g: dwt_part[g] += cols3[g] @ dy3[g].T  (dw_g.T: faster in BLAS than dy_g @ cols_g.T)
    #              cols3[g]     = wm[g].T @ dy3[g]     (dcols, over the columns it no longer needs), if with_dcols
    for g in range(wm.shape[0]):
        gemm_acc(cols3[g], False, dy3[g], True, dwt_part[g])
        if with_dcols:
            gemm(wm[g], True, dy3[g], False, cols3[g])


@njit(cache=True)
def _pack_samples(dyf, n0, count, P, out):
    # out[f, s*P + p] = dyf[((n0 + s)*F + f)*P + p]: samples n0 .. n0+count-1 side by side
    F = out.shape[0]
    for s in range(count):
        for f in range(F):
            dst = out[f, s * P:(s + 1) * P]
            o = np.uint64(((n0 + s) * F + f) * P)
            for p in range(np.uint64(P)):
                dst[p] = dyf[o + p]


@njit(cache=True, nogil=True)
def _backward_samples(dy, x, w, sh, sw, ph, pw, groups, dx, dwt_part, db_part, n_lo, n_hi, per_gemm, with_dx):
    # dy (N, F, OH, OW)  x (N, C, H, W)  w (F, C/g, KH, KW), samples n_lo .. n_hi-1
    #   -> dx[n] += ... (only if with_dx), dwt_part (g, C/g*KH*KW, F/g) += dw_g.T, db_part (F,) float64 +=
    # per_gemm samples share each GEMM (as in _forward_samples)
    N, C, H, W = x.shape
    F, Cg, KH, KW = w.shape
    OH, OW = dy.shape[2], dy.shape[3]
    Fg = F // groups
    Kg = Cg * KH * KW
    P = OH * OW
    ld = per_gemm * P
    wm = w.reshape(groups, Fg, Kg)
    xf = x.reshape(-1)
    dxf = dx.reshape(-1)
    dyf = dy.reshape(-1)
    dy3 = dy.reshape(N, F, P)
    cols = np.empty(C * KH * KW * ld, dtype=x.dtype)  # im2col of x, then (in place) dcols
    cols3 = cols.reshape(groups, Kg, ld)
    dys = np.empty((F, ld if per_gemm > 1 else 0), dtype=x.dtype)
    for n0 in range(n_lo, n_hi, per_gemm):
        count = min(per_gemm, n_hi - n0)
        _im2col_samples(xf, n0, count, C, H, W, KH, KW, sh, sw, ph, pw, OH, OW, cols, ld)
        if per_gemm == 1:
            _grads_groups(cols3, dy3[n0].reshape(groups, Fg, P), wm, dwt_part, with_dx)
        else:
            m = count * P
            _pack_samples(dyf, n0, count, P, dys)
            _grads_groups(cols3[:, :, :m], dys.reshape(groups, Fg, ld)[:, :, :m], wm, dwt_part, with_dx)
        for s in range(count):
            if with_dx:
                _col2im(cols, ld, s * P, C, H, W, KH, KW, sh, sw, ph, pw, OH, OW, dxf, (n0 + s) * C * H * W)
            for f in range(F):
                db_part[f] += _row_sum(dyf, ((n0 + s) * F + f) * P, P)


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


@njit(cache=True, parallel=True)
def _backward_blocks(dy, x, w, sh, sw, ph, pw, groups, dx, dwt_parts, db_parts, per_gemm, with_dx):
    # _backward_samples for one contiguous block of the samples per numba thread, each into its own parts
    n = x.shape[0]
    blocks = dwt_parts.shape[0]
    for k in prange(blocks):
        previous = set_local_threads(1)
        _backward_samples(dy, x, w, sh, sw, ph, pw, groups, dx, dwt_parts[k], db_parts[k], k * n // blocks,
                          (k + 1) * n // blocks, per_gemm, with_dx)
        set_local_threads(previous)


def conv2d_backward(dy, x, w, stride_h, stride_w, pad_h, pad_w, groups):
    # dy (N, F, OH, OW)  x (N, C, H, W)  w (F, C/g, KH, KW)  -> dx (N, C, H, W), dw like w, db (F,)
    n, c, h, wd = x.shape
    f, cg, kh, kw = w.shape
    blocks, how = _sample_threads(n)
    per_gemm = samples_per_gemm(dy.shape[2] * dy.shape[3], -(-n // blocks))
    # dx of a stride-1 layer is the direct convolution of dy with the flipped, transposed weights
    # (conv_direct), where conv_choice picks the direct kernel for that convolution
    dx_direct = conv_choice.choose_backward_data(x.shape, w.shape, (stride_h, stride_w), groups) == "direct"
    dx = np.empty_like(x) if dx_direct else np.zeros_like(x)
    dwt_parts = np.zeros((blocks, groups, cg * kh * kw, f // groups), dtype=x.dtype)
    db_parts = np.zeros((blocks, f), dtype=np.float64)
    args = (dy, x, w, stride_h, stride_w, pad_h, pad_w, groups, dx)
    with_dx = not dx_direct
    if how == "numba":
        _backward_blocks(*args, dwt_parts, db_parts, per_gemm, with_dx)
    elif how == "python":
        run_blocks([(_backward_samples, args + (dwt_parts[t], db_parts[t], t * n // blocks, (t + 1) * n // blocks,
                                                per_gemm, with_dx))
                     for t in range(blocks)])
    else:
        _backward_samples(*args, dwt_parts[0], db_parts[0], 0, n, per_gemm, with_dx)
    if dx_direct:
        dx = conv_direct.conv2d_forward_direct(dy, conv_direct.flipped_weights(w), np.zeros(c, dtype=x.dtype), 1, 1,
                                               kh - 1 - pad_h, kw - 1 - pad_w, h, wd, 1)
    return dx, _dw_from_parts(dwt_parts, w), _db_from_parts(db_parts, w)
