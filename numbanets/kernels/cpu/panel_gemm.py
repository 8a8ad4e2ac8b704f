"""Register-blocked GEMM against a matrix packed once into column panels: the recurrent products, BLAS-free.

    PANEL_BYTES                                 64: one panel row is 64 bytes (16 float32, 8 float64 columns)
    panel_width(like)                           (njit) columns per panel for like's dtype
    pack_panels(b, trans_b)                     (njit) op(b) (k, n) -> panels (ceil(n / W) * k * W,): panel p
                                                holds columns p*W .. p*W+W-1 of op(b), row after row, the
                                                last one padded with zeros
    gemm_panels(a, panels, out)                 (njit) out (m, n) = a (m, k) @ op(b) (k, n)
    TILE_ROWS                                   6: rows of a per register tile
    tile_gathered(a, a_off, lda, src, s_off, row_offsets, k, c, c_off, ldc, rows)
                                                (njit) one register tile whose B rows are read from src at
                                                row_offsets (a direct convolution's taps, conv_direct)

An RNN, LSTM or GRU step multiplies its (N, H) state by the same w_hh T times,
with N a batch of a few dozen rows: h_{t-1} @ w_hh.T forward, da_t @ w_hh
backward. A BLAS sgemm call on such a small, skinny product spends much of its
time outside its inner kernel (packing its operands, choosing a code path for
the CPU it recognises), and how much depends on the vendor.

Here op(b) is packed once per time loop into panels of W columns (one cache
line per panel row), and each step runs one microkernel call per (6 rows, 1
panel) tile: the 6 x W output tile stays in six vector registers (<W x
float> values, which LLVM splits into two 256-bit registers each on AVX2 and
keeps as one 512-bit register on AVX-512) while the k loop, innermost, loads
one panel row and six elements of a, broadcasts each and issues six fused
multiply-adds. The tile is written once at the end. The microkernel is
written directly in LLVM IR (a numba intrinsic: `llvm.fma` on vector
values), because numba's loops over arrays keep such accumulators in memory.
Rows past the last one (a remainder tile of 1-5 rows) repeat the last row's
loads and are not stored; columns past n (the last panel's padding) go to a
scratch tile first. The k sums run in order 0..k-1, one fused multiply-add
each: no reassociation.

The panels are numbanets' own, so the same code runs with MKL or OpenBLAS
and needs neither's packed API. `packed_gemm` chooses this path where the
CPU has FMA (`scripts/recurrent_gemm.py` times it against MKL's plain and
packed products and OpenBLAS, shape by shape; BENCHMARKS.md has its runs).
"""

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from numbanets.kernels.cpu.jit import JIT_OPTIONS

__all__ = ["PANEL_BYTES", "TILE_ROWS", "panel_width", "pack_panels", "gemm_panels", "tile_gathered"]

PANEL_BYTES = 64
TILE_ROWS = 6
_LANES = {types.float32: PANEL_BYTES // 4, types.float64: PANEL_BYTES // 8}


@njit(**JIT_OPTIONS)
def panel_width(like):
    # columns of one panel for like's dtype (an array)
    return PANEL_BYTES // like.itemsize


def _i64(context, builder, value, ty):
    return context.cast(builder, value, ty, types.int64)


def _tile_codegen(dtype, gathered):
    # the codegen of _tile (gathered False: B row kk at src[s_off + kk*W]) and of tile_gathered (True: at
    # src[s_off + row_offsets[kk]]); args (a, a_off, lda, src, s_off, [row_offsets,] k, c, c_off, ldc, rows)
    lanes = _LANES[dtype]

    def codegen(context, builder, signature, args):
        sty = signature.args
        if not gathered:
            args, sty = args[:5] + (None,) + args[5:], sty[:5] + (None,) + sty[5:]
        fp = context.get_value_type(dtype)
        vec = ir.VectorType(fp, lanes)
        i32, i64 = ir.IntType(32), ir.IntType(64)
        pa, pp, pc = (context.make_array(sty[j])(context, builder, args[j]).data for j in (0, 3, 7))
        a_off_, lda_, p_off_, k_, c_off_, ldc_, rows_ = (_i64(context, builder, args[j], sty[j])
                                                         for j in (1, 2, 4, 6, 8, 9, 10))
        if gathered:
            offsets = context.make_array(sty[5])(context, builder, args[5]).data
            offset_ty = sty[5].dtype
        suffix = f"v{lanes}f{32 if dtype == types.float32 else 64}"
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vec, [vec] * 3), f"llvm.fma.{suffix}")
        zero = ir.Constant(vec, [0.0] * lanes)
        splat_mask = ir.Constant(ir.VectorType(i32, lanes), [0] * lanes)
        last = builder.sub(rows_, ir.Constant(i64, 1))
        row_ptrs = []  # rows past the last repeat its loads (their sums are never stored)
        for r in range(TILE_ROWS):
            rr = builder.select(builder.icmp_signed("<", ir.Constant(i64, r), rows_), ir.Constant(i64, r), last)
            row_ptrs.append(builder.gep(pa, [builder.add(a_off_, builder.mul(rr, lda_))]))
        entry = builder.block
        loop = builder.append_basic_block("tile.k")
        done = builder.append_basic_block("tile.done")
        builder.cbranch(builder.icmp_signed(">", k_, ir.Constant(i64, 0)), loop, done)

        builder.position_at_end(loop)
        kk = builder.phi(i64)
        kk.add_incoming(ir.Constant(i64, 0), entry)
        sums = []
        for _ in range(TILE_ROWS):
            s = builder.phi(vec)
            s.add_incoming(zero, entry)
            sums.append(s)
        if gathered:
            step = context.cast(builder, builder.load(builder.gep(offsets, [kk])), offset_ty, types.int64)
        else:
            step = builder.mul(kk, ir.Constant(i64, lanes))
        row = builder.gep(pp, [builder.add(p_off_, step)])
        b_row = builder.load(builder.bitcast(row, vec.as_pointer()), align=4)
        new = []
        for r in range(TILE_ROWS):
            a_rk = builder.load(builder.gep(row_ptrs[r], [kk]))
            one = builder.insert_element(ir.Constant(vec, ir.Undefined), a_rk, ir.Constant(i32, 0))
            broadcast = builder.shuffle_vector(one, ir.Constant(vec, ir.Undefined), splat_mask)
            new.append(builder.call(fma, [broadcast, b_row, sums[r]]))
        kk_next = builder.add(kk, ir.Constant(i64, 1))
        body_end = builder.block
        kk.add_incoming(kk_next, body_end)
        for s, v in zip(sums, new):
            s.add_incoming(v, body_end)
        builder.cbranch(builder.icmp_signed("<", kk_next, k_), loop, done)

        builder.position_at_end(done)
        totals = []
        for r in range(TILE_ROWS):  # the phis first: they must open the block
            total = builder.phi(vec)
            total.add_incoming(zero, entry)
            total.add_incoming(new[r], body_end)
            totals.append(total)
        for r in range(TILE_ROWS):
            with builder.if_then(builder.icmp_signed("<", ir.Constant(i64, r), rows_)):
                dest = builder.gep(pc, [builder.add(c_off_, builder.mul(ir.Constant(i64, r), ldc_))])
                builder.store(totals[r], builder.bitcast(dest, vec.as_pointer()), align=4)
        return context.get_dummy_value()

    return codegen


@intrinsic
def _tile(typingctx, a, a_off, lda, panels, p_off, k, c, c_off, ldc, rows):
    # c[c_off + r*ldc + j] = sum_kk a[a_off + r*lda + kk] * panels[p_off + kk*W + j] for r < rows (1..TILE_ROWS),
    # j < W; a, panels, c arrays of one dtype, each addressed from its first element (its data pointer), all
    # offsets in elements
    dtype = c.dtype
    if dtype not in _LANES or a.dtype != dtype or panels.dtype != dtype:
        return None
    return types.void(a, a_off, lda, panels, p_off, k, c, c_off, ldc, rows), _tile_codegen(dtype, False)


@intrinsic
def tile_gathered(typingctx, a, a_off, lda, src, s_off, row_offsets, k, c, c_off, ldc, rows):
    # (njit only) c[c_off + r*ldc + j] = sum_kk a[a_off + r*lda + kk] * src[s_off + row_offsets[kk] + j] for
    # r < rows (1..TILE_ROWS), j < W: the tile of _tile with its B rows read from anywhere in src (W elements
    # each, which must all lie inside src), e.g. the input rows of a direct convolution's taps; row_offsets an
    # integer array of at least k entries
    dtype = c.dtype
    if (dtype not in _LANES or a.dtype != dtype or src.dtype != dtype
            or not isinstance(row_offsets, types.Array) or not isinstance(row_offsets.dtype, types.Integer)):
        return None
    sig = types.void(a, a_off, lda, src, s_off, row_offsets, k, c, c_off, ldc, rows)
    return sig, _tile_codegen(dtype, True)


@njit(**JIT_OPTIONS)
def pack_panels(b, trans_b):
    # b (k, n), or (n, k) with trans_b  ->  op(b) as panels (P * k * W,), P = ceil(n / W), zero-padded
    k, n = (b.shape[1], b.shape[0]) if trans_b else (b.shape[0], b.shape[1])
    W = panel_width(b)
    P = (n + W - 1) // W
    panels = np.zeros(P * k * W, dtype=b.dtype)
    for p in range(P):
        width = min(W, n - p * W)
        for kk in range(k):
            base = (p * k + kk) * W
            for j in range(width):
                panels[base + j] = b[p * W + j, kk] if trans_b else b[kk, p * W + j]
    return panels


@njit(**JIT_OPTIONS)
def gemm_panels(a, panels, out):
    # a (m, k), rows contiguous  panels from pack_panels (k, n)  ->  out (m, n), rows contiguous
    m, k = a.shape
    n = out.shape[1]
    W = panel_width(a)
    P = (n + W - 1) // W
    if out.shape[0] != m or panels.size != P * k * W:
        raise ValueError("gemm_panels: shapes do not match: a (m, k) @ panels (k, n) -> out (m, n)")
    if m == 0 or n == 0:
        return
    if a.strides[1] != a.itemsize or out.strides[1] != out.itemsize:
        raise ValueError("gemm_panels: the rows of a and out must be contiguous")
    lda = a.strides[0] // a.itemsize
    ldc = out.strides[0] // out.itemsize
    full = n // W
    scratch = np.empty(TILE_ROWS * W, dtype=a.dtype)
    # panel after panel, each through all the row tiles while it is in cache: op(b) is read from memory once
    # per product (a, m x k, is re-read from cache for every panel)
    for p in range(full):
        for i0 in range(0, m, TILE_ROWS):
            _tile(a, i0 * lda, lda, panels, p * k * W, k, out, i0 * ldc + p * W, ldc, min(TILE_ROWS, m - i0))
    if full < P:  # the padded last panel: through the scratch tile
        for i0 in range(0, m, TILE_ROWS):
            rows = min(TILE_ROWS, m - i0)
            _tile(a, i0 * lda, lda, panels, full * k * W, k, scratch, 0, W, rows)
            for r in range(rows):
                for j in range(n - full * W):
                    out[i0 + r, full * W + j] = scratch[r * W + j]
