"""3x3 stride-1 2-D convolution by Winograd's minimal filtering F(2x2, 3x3) on the CPU, forward.

    y[n, f, i, j] = b[f] + sum_{c, u, v} w[f, c, u, v] * x[n, c, i + u - ph, j + v - pw]

x (N, C, H, W), w (F, C, 3, 3), b (F,) -> y (N, F, OH, OW); stride 1, groups 1, any padding (ph / pw
before, the padding after implied by OH / OW, as in conv.py); taps outside the image count as zero.

Method (Lavin & Gray 2016, "Fast algorithms for convolutional neural networks"). The output is cut into
2x2 tiles, TH = ceil(OH / 2) by TW = ceil(OW / 2) of them per sample; output tile (ti, tj) needs the 4x4
input tile d at rows 2*ti - ph .. +3 and columns 2*tj - pw .. +3 (overlapping by 2). With

    B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]      input transform  V = B^T d B
    G   = [[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]]              weight transform U = G g G^T
    A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]                                    output transform Y = A^T M A

one output tile is Y = A^T [sum_c U[f, c] * V[c]] A (element-wise products of 4x4 matrices): 16
multiplications per tile, channel and filter instead of 36. The sum over c of position p = 4*r + q of
the 4x4 matrices is a matrix product, so per chunk of tile rows (L = TW + 1 tiles per row, see below):

    U        (16, F, C)          G g G^T for every (f, c), computed in float64 and rounded once, per call
    R        (4, 2, C, rows, L)  the 4 input rows of every tile row, zero padded, even / odd columns apart
    E        (4, 2, C, rows, L)  B^T d: rows d0 - d2, d1 + d2, d2 - d1, d1 - d3 of R (whole planes)
    V        (16, C, rows*L)     (B^T d) B: columns e0 - e2, e1 + e2, e2 - e1, e1 - e3 of E (whole planes)
    M[p]     (F, rows*L)         = U[p] @ V[p]          16 GEMMs through blas.gemm
    T        (8, F, rows*L)      A^T M: rows M0 + M1 + M2 and M1 - M2 - M3 (whole planes, in V's buffer)
    Y        (4, F, rows*L)      (A^T M) A, the same along the columns, in M's first 4 planes
    y        rows 2ti, 2ti + 1   = Y + b[f], interleaved, cropped where OH or OW is odd

Why so many whole-plane passes rather than one loop over the tiles: a loop that reads 16 arrays and
writes 4 does not vectorise (LLVM will not emit the run-time overlap checks for that many arrays) and a
slice per tile or row (an array struct with an atomic reference count) costs more than the arithmetic.
Each pass reads one or three planes and writes one, over a whole chunk, and vectorises. The input rows
are stored with their even and odd columns apart, so that tile t's 4 columns are even[t], odd[t],
even[t + 1], odd[t + 1]: unit-stride loads. A row of V / M holds L = TW + 1 tiles, the last a junk
column (it reads into the next row and is never written out): then tile s = row*L + t of the chunk reads
columns 2s .. 2s+3 of the chunk's rows laid end to end, and one loop covers the whole plane. It costs
1/L more GEMM columns.

A chunk is a run of whole tile rows, counted over the batch (global tile row n*TH + ti), so that the
tiles of several samples sit side by side when the images are small and a large image is split into
several chunks: about TILES_PER_GEMM tiles (GEMM columns) each, which keeps the buffers near cache size.

Rounding: the transforms only add, subtract and halve, with up to 3 terms per dimension in B^T, G and
A^T, and the transformed values are larger than the terms of a direct sum, so the float32 result carries
somewhat more rounding than im2col's; tests/test_conv_fast.py derives the bound, measures the error and
states the tolerance.

Threads, as in conv.py: the batch's global tile rows are split into one contiguous block per thread,
each with its own buffers; blocks write disjoint output rows, so there are no races. With MKL sharing
numba's OpenMP pool (blas.pool_threads() > 1) the blocks run in a prange, MKL set to one thread for each
(blas.set_local_threads); with OpenBLAS on a small Python thread pool (the GIL is released inside), the
BLAS set to one thread while they run: left to its own threads, OpenBLAS ran the 16 small GEMMs per
chunk up to 10x slower on a loaded machine (scripts/conv_kernels.py). With one thread, or a BLAS
without thread control, one plain loop.

Only the forward pass: the backward's dx (a 3x3 correlation of the padded dy with the flipped,
transposed weights) could reuse it, but on the project's 2-core AMD machine this kernel beat im2col
only on small outputs with many channels (conv_choice.py), not on the bench's 3x3 layer, so that was
not done.
"""


import numba
import numpy as np
from numba import njit, prange

from numbanets.kernels.cpu import blas
from numbanets.kernels.cpu.blas import gemm, set_local_threads
from numbanets.kernels.cpu.blocks import run_blocks

__all__ = ["TILES_PER_GEMM", "conv2d_forward_winograd", "plan", "supports"]

TILES_PER_GEMM = 128  # GEMM columns (tiles) per chunk, whole tile rows (read at call time)


def supports(w_shape, stride_h: int, stride_w: int, groups: int) -> bool:
    """Whether this kernel computes the convolution: a 3x3 kernel, stride 1, groups 1."""
    return tuple(w_shape[2:]) == (3, 3) and stride_h == 1 and stride_w == 1 and groups == 1


def plan(x_shape, out_h: int, out_w: int) -> tuple[int, str, int]:
    """(blocks, how, tile rows per chunk) the forward pass uses. The batch's global tile rows are split into
    `blocks` contiguous blocks that run side by side: "numba" (prange on numba's pool, which MKL shares:
    blas.pool_threads() > 1), "python" (a BLAS whose threads can be set, OpenBLAS: a small Python thread
    pool with the BLAS on one thread, as conv.py does) or "loop" (one block, the BLAS with its own
    threads). Each chunk holds whole tile rows, about TILES_PER_GEMM GEMM columns."""
    tile_rows = x_shape[0] * ((out_h + 1) // 2)
    per_chunk = max(1, TILES_PER_GEMM // max((out_w + 1) // 2, 1))
    shared = min(blas.pool_threads(), tile_rows)
    if shared > 1:
        return shared, "numba", per_chunk
    if not blas.has_thread_control():
        return 1, "loop", per_chunk
    threads = max(1, min(numba.get_num_threads(), tile_rows))
    return threads, ("python" if threads > 1 else "loop"), per_chunk


def _run_python_blocks(block_args):
    """_forward_rows(*args) for every args on blocks.run_blocks' thread pool, the BLAS on one thread meanwhile."""
    run_blocks([(_forward_rows, args) for args in block_args])


# --------------------------------------------------------------------------- transforms

@njit(cache=True)
def _transform_weights(w):
    # w (F, C, 3, 3) -> U (16, F, C): U[4*r + q, f, c] = (G g G^T)[r, q] of g = w[f, c], in float64
    F, C = w.shape[0], w.shape[1]
    U = np.empty((16, F, C), dtype=w.dtype)
    t = np.empty((4, 3), dtype=np.float64)
    for f in range(F):
        for c in range(C):
            for k in range(3):  # t = G g (4 x 3), column k
                g0 = np.float64(w[f, c, 0, k])
                g1 = np.float64(w[f, c, 1, k])
                g2 = np.float64(w[f, c, 2, k])
                t[0, k] = g0
                t[1, k] = 0.5 * (g0 + g1 + g2)
                t[2, k] = 0.5 * (g0 - g1 + g2)
                t[3, k] = g2
            for r in range(4):  # (G g) G^T, row r
                a0, a1, a2 = t[r, 0], t[r, 1], t[r, 2]
                U[4 * r, f, c] = a0
                U[4 * r + 1, f, c] = 0.5 * (a0 + a1 + a2)
                U[4 * r + 2, f, c] = 0.5 * (a0 - a1 + a2)
                U[4 * r + 3, f, c] = a2
    return U


@njit(cache=True)
def _gather_rows(xf, C, H, W, ph, pw, TH, g0, g1, L, Rf):
    # the 4 input rows of every tile row g0 .. g1-1, zero padded and split into even and odd columns:
    # Rf flat R (4, 2, C, g1 - g0, L), R[r, e, c, g - g0, t] = x[n, c, 2ti - ph + r, 2t + e - pw] (zero
    # outside the image), g = n*TH + ti. Tile t's 4 input columns are then even[t], odd[t], even[t + 1],
    # odd[t + 1]: unit-stride loads in the transforms (stride-2 ones did not vectorise as well)
    nr = g1 - g0
    plane = C * nr * L
    lo_e = (pw + 1) // 2  # even padded column 2t holds x column 2t - pw for t in [lo_e, hi_e)
    hi_e = max(lo_e, min(L, (W - 1 + pw) // 2 + 1))
    lo_o = pw // 2  # odd padded column 2t + 1 holds x column 2t + 1 - pw for t in [lo_o, hi_o)
    hi_o = max(lo_o, min(L, (W - 2 + pw) // 2 + 1))
    lo_e, lo_o = min(lo_e, L), min(lo_o, L)
    for r in range(4):
        for c in range(C):
            for gi in range(nr):
                g = g0 + gi
                n = g // TH
                h = 2 * (g - n * TH) - ph + r
                oe = np.uint64(2 * r * plane + (c * nr + gi) * L)
                oo = oe + np.uint64(plane)
                if h < 0 or h >= H:
                    for t in range(np.uint64(L)):
                        Rf[oe + t] = 0
                        Rf[oo + t] = 0
                    continue
                row = ((n * C + c) * H + h) * W - pw
                for t in range(np.uint64(lo_e)):
                    Rf[oe + t] = 0
                for t in range(lo_e, hi_e):
                    Rf[oe + np.uint64(t)] = xf[np.uint64(row + 2 * t)]
                for t in range(np.uint64(hi_e), np.uint64(L)):
                    Rf[oe + t] = 0
                for t in range(np.uint64(lo_o)):
                    Rf[oo + t] = 0
                for t in range(lo_o, hi_o):
                    Rf[oo + np.uint64(t)] = xf[np.uint64(row + 2 * t + 1)]
                for t in range(np.uint64(hi_o), np.uint64(L)):
                    Rf[oo + t] = 0


@njit(cache=True, error_model="numpy")
def _input_columns(ev, od, q, out):
    # column q of (B^T d) B for every tile s, from one row k of B^T d split into its even columns ev and
    # odd columns od (tile s = row*L + t: its 4 columns are ev[s], od[s], ev[s + 1], od[s + 1]; L = TW + 1
    # tiles per row, the last a junk column that reads into the next row): out[s] = ev[s] - ev[s+1] |
    # od[s] + ev[s+1] | ev[s+1] - od[s] | od[s] - od[s+1] for q = 0 | 1 | 2 | 3. Two arrays in, one out,
    # unit stride: LLVM vectorises these loops.
    n = out.shape[0]
    if q == 0:
        for s in range(n):
            out[s] = ev[s] - ev[s + 1]
    elif q == 1:
        for s in range(n):
            out[s] = od[s] + ev[s + 1]
    elif q == 2:
        for s in range(n):
            out[s] = ev[s + 1] - od[s]
    else:
        for s in range(n):
            out[s] = od[s] - od[s + 1]


@njit(cache=True, error_model="numpy")
def _add(a, b, out):
    # out = a + b (whole planes; vectorises)
    for i in range(out.shape[0]):
        out[i] = a[i] + b[i]


@njit(cache=True, error_model="numpy")
def _sub(a, b, out):
    # out = a - b (whole planes; vectorises)
    for i in range(out.shape[0]):
        out[i] = a[i] - b[i]


@njit(cache=True, error_model="numpy")
def _transform_inputs(Rf, Ef, C, nr, L, Vf):
    # Rf flat R (4, 2, C, nr, L) -> Ef flat E (4, 2, C, nr, L) (+ 1 spare) = B^T d, rows k:
    # d0 - d2, d1 + d2, d2 - d1, d1 - d3 (even and odd columns alike)  -> Vf flat V (16, C, nr*L):
    # (B^T d) B, position 4k + q
    pv = C * nr * L
    pr = 2 * pv
    r0, r1, r2, r3 = Rf[:pr], Rf[pr:2 * pr], Rf[2 * pr:3 * pr], Rf[3 * pr:4 * pr]
    _sub(r0, r2, Ef[:pr])
    _add(r1, r2, Ef[pr:2 * pr])
    _sub(r2, r1, Ef[2 * pr:3 * pr])
    _sub(r1, r3, Ef[3 * pr:4 * pr])
    for k in range(4):
        ev = Ef[k * pr:k * pr + pv + 1]  # [s + 1] of the last (junk) tile reads one past the plane
        od = Ef[k * pr + pv:k * pr + pr + 1]
        for q in range(4):
            p = 4 * k + q
            _input_columns(ev, od, q, Vf[p * pv:(p + 1) * pv])


@njit(cache=True, error_model="numpy")
def _sum3(a, b, c, out):
    # out = a + b + c (whole planes; vectorises)
    for i in range(out.shape[0]):
        out[i] = a[i] + b[i] + c[i]


@njit(cache=True, error_model="numpy")
def _diff3(a, b, c, out):
    # out = a - b - c (whole planes; vectorises)
    for i in range(out.shape[0]):
        out[i] = a[i] - b[i] - c[i]


@njit(cache=True, error_model="numpy")
def _transform_outputs(Mf, Tf, F, nr, L):
    # Mf flat M (16, F, nr*L) -> the four outputs of every tile, (A^T M A)[r, s] in Mf's planes 2r + s:
    # Tf (8, F, nr*L) scratch: planes q = A^T row 0 (M(0, q) + M(1, q) + M(2, q)), 4 + q = row 1
    # (M(1, q) - M(2, q) - M(3, q)); then A along the columns, (1, 1, 1, 0) and (0, 1, -1, -1)
    P = F * nr * L
    for q in range(4):
        _sum3(Mf[q * P:(q + 1) * P], Mf[(4 + q) * P:(5 + q) * P], Mf[(8 + q) * P:(9 + q) * P],
              Tf[q * P:(q + 1) * P])
        _diff3(Mf[(4 + q) * P:(5 + q) * P], Mf[(8 + q) * P:(9 + q) * P], Mf[(12 + q) * P:(13 + q) * P],
               Tf[(4 + q) * P:(5 + q) * P])
    for r in range(2):
        t0 = Tf[4 * r * P:(4 * r + 1) * P]
        t1 = Tf[(4 * r + 1) * P:(4 * r + 2) * P]
        t2 = Tf[(4 * r + 2) * P:(4 * r + 3) * P]
        t3 = Tf[(4 * r + 3) * P:(4 * r + 4) * P]
        _sum3(t0, t1, t2, Mf[2 * r * P:(2 * r + 1) * P])
        _diff3(t1, t2, t3, Mf[(2 * r + 1) * P:(2 * r + 2) * P])


@njit(cache=True, error_model="numpy")
def _scatter_outputs(Mf, b, F, nr, L, TH, g0, yf, OH, OW):
    # the tile outputs in Mf's planes 2r + s (F, nr*L) -> yf flat y (N, F, OH, OW), rows 2ti + r, columns
    # 2t + s, plus b[f]; cropped where OH or OW is odd (two arrays, Mf and yf: the loop vectorises)
    P = F * nr * L
    half = OW // 2
    for gi in range(nr):
        g = g0 + gi
        n = g // TH
        i0 = 2 * (g - n * TH)
        for f in range(F):
            bf = b[f]
            src = np.uint64(f * nr * L + gi * L)
            for r in range(min(2, OH - i0)):
                se = src + np.uint64(2 * r * P)
                so = se + np.uint64(P)
                dst = np.uint64(((n * F + f) * OH + i0 + r) * OW)
                for t in range(np.uint64(half)):
                    yf[dst + 2 * t] = Mf[se + t] + bf
                    yf[dst + 2 * t + 1] = Mf[so + t] + bf
                if OW > 2 * half:
                    yf[dst + np.uint64(OW - 1)] = Mf[se + np.uint64(half)] + bf


# --------------------------------------------------------------------------- forward

@njit(cache=True, nogil=True)
def _forward_rows(x, U, b, ph, pw, TH, TW, y, g_lo, g_hi, rows_per_chunk):
    # x (N, C, H, W)  U (16, F, C)  b (F,)  -> y (N, F, OH, OW) for global tile rows g_lo .. g_hi-1
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    F = U.shape[1]
    OH, OW = y.shape[2], y.shape[3]
    L = TW + 1  # tiles per row in V / M: one junk column, so that a tile's input columns are 2s .. 2s+3
    most = rows_per_chunk * L
    Rbuf = np.empty(4 * C * most * 2, dtype=x.dtype)
    Ebuf = np.zeros(4 * C * most * 2 + 1, dtype=x.dtype)
    # V, and after the GEMMs the output transform's T in the same buffer: one buffer less to keep in cache
    Vbuf = np.empty(max(16 * C, 8 * F) * most, dtype=x.dtype)
    Mbuf = np.empty(16 * F * most, dtype=x.dtype)
    xf = x.reshape(-1)
    yf = y.reshape(-1)
    for g0 in range(g_lo, g_hi, rows_per_chunk):
        g1 = min(g0 + rows_per_chunk, g_hi)
        nr = g1 - g0
        cols = nr * L
        _gather_rows(xf, C, H, W, ph, pw, TH, g0, g1, L, Rbuf)
        _transform_inputs(Rbuf, Ebuf, C, nr, L, Vbuf)
        V = Vbuf[:16 * C * cols].reshape(16, C, cols)
        M = Mbuf[:16 * F * cols].reshape(16, F, cols)
        for p in range(16):
            gemm(U[p], False, V[p], False, M[p])
        _transform_outputs(Mbuf, Vbuf, F, nr, L)
        _scatter_outputs(Mbuf, b, F, nr, L, TH, g0, yf, OH, OW)


@njit(cache=True, parallel=True)
def _forward_blocks(x, U, b, ph, pw, TH, TW, y, blocks, rows_per_chunk):
    # _forward_rows for `blocks` contiguous blocks of the global tile rows, one per numba thread
    total = x.shape[0] * TH
    for k in prange(blocks):
        previous = set_local_threads(1)  # one MKL thread per block
        _forward_rows(x, U, b, ph, pw, TH, TW, y, k * total // blocks, (k + 1) * total // blocks, rows_per_chunk)
        set_local_threads(previous)


def conv2d_forward_winograd(x, w, b, stride_h, stride_w, pad_h, pad_w, out_h, out_w, groups, blocks=None):
    # x (N, C, H, W)  w (F, C, 3, 3)  b (F,)  -> y (N, F, OH, OW)
    # the arguments of conv.conv2d_forward; blocks (tests) overrides plan()'s number of blocks, run the
    # way plan() says (on numba's pool where it says "loop")
    if not supports(w.shape, stride_h, stride_w, groups):
        raise ValueError(f"Winograd F(2x2, 3x3) needs a 3x3 kernel, stride 1 and groups 1; got kernel "
                         f"{tuple(w.shape[2:])}, stride ({stride_h}, {stride_w}), groups {groups}")
    if x.shape[1] != w.shape[1] or x.dtype != w.dtype or b.dtype != x.dtype or b.shape != (w.shape[0],):
        raise ValueError(f"x (N, C, H, W), w (F, C, 3, 3), b (F,) of one dtype expected; got x {x.shape} "
                         f"{x.dtype}, w {w.shape} {w.dtype}, b {b.shape} {b.dtype}")
    if not (x.flags.c_contiguous and w.flags.c_contiguous and b.flags.c_contiguous):
        raise ValueError("x, w and b must be C-contiguous (numbanets.functional makes them so)")
    planned, how, rows_per_chunk = plan(x.shape, out_h, out_w)
    if blocks is None:
        blocks = planned
    elif how == "loop" and blocks > 1:
        how = "numba"  # a forced split runs on numba's pool where there is no other way
    y = np.empty((x.shape[0], w.shape[0], out_h, out_w), dtype=x.dtype)
    if y.size == 0:
        return y
    th, tw = (out_h + 1) // 2, (out_w + 1) // 2
    total = x.shape[0] * th
    U = _transform_weights(w)
    args = (x, U, b, pad_h, pad_w, th, tw, y)
    if blocks > 1 and how == "python":
        _run_python_blocks([args + (k * total // blocks, (k + 1) * total // blocks, rows_per_chunk)
                            for k in range(blocks)])
    elif blocks > 1:
        _forward_blocks(*args, blocks, rows_per_chunk)
    else:
        _forward_rows(*args, 0, total, rows_per_chunk)
    return y
