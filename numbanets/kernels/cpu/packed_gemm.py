"""GEMMs against one matrix packed once and reused: the recurrent products of a time loop.

    packing()                                   (njit) the mode of this call's loops, asked once per kernel
                                                call on the calling thread: PANELS (numbanets' own panels
                                                and register-blocked kernel, `panel_gemm`), MKL_PACKED
                                                (MKL's packed API) or PLAIN (the BLAS's gemm every step)
    pack_b(b, trans_b, m, mode)                 (njit) op(b) (k, n) packed for products with m-row left
                                                operands, for the calling thread; an empty array when
                                                mode is PLAIN or MKL_PACKED not worth_packing(m, b.size, trans_b)
    gemm_packed(a, b, trans_b, packed, out, mode)
                                                (njit) out (m, n) = a (m, k) @ op(b) (k, n), through `packed`
    loop_row_blocks(n_rows, width, mode)        (njit) blas.row_blocks, except that PANELS loops call no
                                                BLAS, so their rows split over numba's threads with any BLAS

An RNN or LSTM step multiplies its (N, H) state by the same weights T times:
h_{t-1} @ w_hh.T forward, da_t @ w_hh backward. A plain gemm call repacks the
weights into the BLAS's internal layout on every call. Two ways pack them once
per loop:

- PANELS (the default where the CPU has FMA): `panel_gemm`'s column panels and
  6-row register tiles, numbanets' own code, the same with MKL and OpenBLAS;
  the panels are read-only, and each row block packs its own copy so that it
  stays in its core's cache. It was faster than MKL's plain and packed
  products and OpenBLAS on every recurrent shape measured
  (`scripts/recurrent_gemm.py`; BENCHMARKS.md).
- MKL_PACKED: MKL's packed API (cblas_?gemm_pack / cblas_?gemm_compute) where
  worth_packing says so. MKL chooses its threading from both operands' sizes
  when it packs, so a packed matrix serves products with the m (rows of a) and
  thread count it was packed for: each row block packs its own copy after
  setting its thread count, and uses it for exactly its rows.

Either may round differently from the plain gemm (another order of the k sums).

RECURRENT_GEMM[0] chooses: "auto" (PANELS where the CPU has FMA, else
MKL_PACKED where MKL's API exists and PACKING_STATE[0] is on, else PLAIN),
"panels", "mkl" (MKL_PACKED or PLAIN as before panels existed) or "blas"
(PLAIN). The environment variable NUMBANETS_RECURRENT_GEMM sets it at import;
tests and `scripts/recurrent_gemm.py` flip it. Like the gemm symbols, the mode
is asked through a function registered with LLVM under a fixed name, so the
on-disk cache serves every choice.
"""

import ctypes
import os
import sys

import numpy as np
from llvmlite import binding as llvm
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from numbanets.kernels.cpu import blas
from numbanets.kernels.cpu.blas import (PARALLEL_MIN_ELEMENTS, forced_row_blocks, gemm, int_callback,
                                        leading_dimension, row_blocks)
from numbanets.kernels.cpu.panel_gemm import gemm_panels, pack_panels
from numbanets.kernels.settings import SettingError

__all__ = ["packing", "pack_b", "gemm_packed", "worth_packing", "loop_row_blocks", "PACKING_STATE",
           "RECURRENT_GEMM", "PLAIN", "MKL_PACKED", "PANELS", "MODE_NAMES", "mode"]

PLAIN, MKL_PACKED, PANELS = 0, 1, 2
MODE_NAMES = {PLAIN: "plain", MKL_PACKED: "mkl-packed", PANELS: "panels"}
CHOICES = ("auto", "panels", "mkl", "blas")

_ROW_MAJOR, _NO_TRANS, _TRANS, _B_MATRIX, _PACKED = 101, 111, 112, 162, 151
_PREFIX = {types.float32: "numbanets_cblas_s", types.float64: "numbanets_cblas_d"}
_ON_SYMBOL = "numbanets_blas_packing"
_THREADS_SYMBOL = "numbanets_numba_threads"

PACK_MIN_ROWS = 2  # op(b) = b.T (the forward's h @ w_hh.T): pack from 2 rows of a
PACK_MIN_ROWS_NO_TRANS = 16  # op(b) = b (the backward's da @ w_hh): from 16 rows ...
PACK_MIN_WEIGHTS_NO_TRANS = 65536  # ... and this many elements of b
PACKING_STATE = [True]  # PACKING_STATE[0] = False turns MKL's packing off (it is on only where the API exists)
RECURRENT_GEMM = [os.environ.get("NUMBANETS_RECURRENT_GEMM", "auto").strip().lower() or "auto"]
if RECURRENT_GEMM[0] not in CHOICES:
    raise SettingError(f"NUMBANETS_RECURRENT_GEMM must be one of {', '.join(CHOICES)}, got {RECURRENT_GEMM[0]!r}")
_HAS_FMA = bool(llvm.get_host_cpu_features().get("fma", False))


def _never_called(name):
    def fail(*args):
        sys.stderr.write(f"numbanets: {name} called without MKL's packed API (a bug: packing() said MKL_PACKED)\n")
        os.abort()
    return fail


def mode() -> int:
    """The mode packing() returns now (PLAIN, MKL_PACKED or PANELS), for Python callers."""
    choice = RECURRENT_GEMM[0]
    if choice not in CHOICES:
        raise ValueError(f"RECURRENT_GEMM must be one of {CHOICES}, got {choice!r}")
    if choice == "panels" or (choice == "auto" and _HAS_FMA):
        return PANELS
    if choice != "blas" and PACKING_STATE[0] and _HAS_API:
        return MKL_PACKED
    return PLAIN


def _numba_threads() -> int:
    import numba
    return numba.get_num_threads()


# Python callbacks (take the GIL): called on the calling thread before any parallel region, as parallel_threads
_ON_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int32)(mode)
llvm.add_symbol(_ON_SYMBOL, ctypes.cast(_ON_CALLBACK, ctypes.c_void_p).value)
_THREADS_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int32)(_numba_threads)
llvm.add_symbol(_THREADS_SYMBOL, ctypes.cast(_THREADS_CALLBACK, ctypes.c_void_p).value)
_KEEP = [_ON_CALLBACK, _THREADS_CALLBACK]
_HAS_API = True  # all six MKL functions found
for _letter in "sd":
    for _what, _proto in (("gemm_pack_get_size", ctypes.CFUNCTYPE(ctypes.c_size_t, *[ctypes.c_int32] * 4)),
                          ("gemm_pack", ctypes.CFUNCTYPE(None)), ("gemm_compute", ctypes.CFUNCTYPE(None))):
        _name = f"cblas_{_letter}{_what}"
        _fn = getattr(blas._LIB, _name, None) if blas.NAME == "mkl" else None
        if _fn is None:  # OpenBLAS: never reached (mode() is never MKL_PACKED), but the symbol must resolve
            _HAS_API = False
            _fn = _proto(_never_called(_name))
            _KEEP.append(_fn)
        llvm.add_symbol(f"numbanets_{_name}", ctypes.cast(_fn, ctypes.c_void_p).value)


_mode = int_callback(_ON_SYMBOL)
_numba_thread_count = int_callback(_THREADS_SYMBOL)


@njit(cache=True)
def packing():
    # () -> int64: PLAIN, MKL_PACKED or PANELS (mode()), asked once per kernel call
    return _mode()


@njit(cache=True)
def loop_row_blocks(n_rows, width, mode):
    # blas.row_blocks(n_rows, width); a PANELS loop calls no BLAS, so where the BLAS is outside numba's pool
    # (row_blocks says 1 from PARALLEL_MIN_ELEMENTS up) its rows still split into one block per numba thread,
    # unless blas.ROW_BLOCKS_STATE forces a count
    blocks = row_blocks(n_rows, width)
    if mode == PANELS and blocks == 1 and forced_row_blocks() == 0 and n_rows * width >= PARALLEL_MIN_ELEMENTS:
        blocks = max(1, min(_numba_thread_count(), n_rows))
    return blocks


def _i32(context, builder, value, ty):
    return builder.trunc(context.cast(builder, value, ty, types.int64), ir.IntType(32))


def _data(context, builder, value, ty):
    return context.make_array(ty)(context, builder, value).data


@intrinsic
def _pack_bytes(typingctx, like, m, n, k):
    # cblas_?gemm_pack_get_size(CblasBMatrix, m, n, k) for like's dtype -> int64 bytes
    if like.dtype not in _PREFIX:
        return None

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(64), [i32] * 4),
                                            _PREFIX[like.dtype] + "gemm_pack_get_size")
        sty = signature.args
        return builder.call(fn, [ir.Constant(i32, _B_MATRIX)] + [_i32(context, builder, args[j], sty[j])
                                                                  for j in (1, 2, 3)])

    return types.int64(like, m, n, k), codegen


@intrinsic
def _pack(typingctx, trans, m, n, k, src, ld, dest):
    # cblas_?gemm_pack(RowMajor, CblasBMatrix, op, m, n, k, 1, src, ld, dest)
    dtype = src.dtype
    if dtype not in _PREFIX or dest.dtype != dtype:
        return None

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        fp = context.get_value_type(dtype)
        fnty = ir.FunctionType(ir.VoidType(), [i32] * 6 + [fp, fp.as_pointer(), i32, fp.as_pointer()])
        fn = cgutils.get_or_insert_function(builder.module, fnty, _PREFIX[dtype] + "gemm_pack")
        sty = signature.args
        flag = context.cast(builder, args[0], sty[0], types.int64)
        op = builder.select(builder.icmp_signed("!=", flag, ir.Constant(ir.IntType(64), 0)),
                            ir.Constant(i32, _TRANS), ir.Constant(i32, _NO_TRANS))
        builder.call(fn, [ir.Constant(i32, _ROW_MAJOR), ir.Constant(i32, _B_MATRIX), op]
                     + [_i32(context, builder, args[j], sty[j]) for j in (1, 2, 3)]
                     + [ir.Constant(fp, 1.0), _data(context, builder, args[4], sty[4]),
                        _i32(context, builder, args[5], sty[5]), _data(context, builder, args[6], sty[6])])
        return context.get_dummy_value()

    return types.void(trans, m, n, k, src, ld, dest), codegen


@intrinsic
def _compute(typingctx, m, n, k, a, lda, packed, c, ldc):
    # cblas_?gemm_compute(RowMajor, NoTrans, Packed, m, n, k, a, lda, packed, n, 0, c, ldc)
    dtype = c.dtype
    if dtype not in _PREFIX or a.dtype != dtype or packed.dtype != dtype:
        return None

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        fp = context.get_value_type(dtype)
        fnty = ir.FunctionType(ir.VoidType(), [i32] * 6 + [fp.as_pointer(), i32, fp.as_pointer(), i32, fp,
                                                             fp.as_pointer(), i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, _PREFIX[dtype] + "gemm_compute")
        sty = signature.args
        m_, n_, k_, lda_, ldc_ = (_i32(context, builder, args[j], sty[j]) for j in (0, 1, 2, 4, 7))
        builder.call(fn, [ir.Constant(i32, _ROW_MAJOR), ir.Constant(i32, _NO_TRANS), ir.Constant(i32, _PACKED),
                          m_, n_, k_, _data(context, builder, args[3], sty[3]), lda_,
                          _data(context, builder, args[5], sty[5]), n_, ir.Constant(fp, 0.0),
                          _data(context, builder, args[6], sty[6]), ldc_])
        return context.get_dummy_value()

    return types.void(m, n, k, a, lda, packed, c, ldc), codegen


@njit(cache=True)
def worth_packing(m, b_size, trans_b):
    # whether packing b once beats the plain gemm's own packing over a time loop (measured: BENCHMARKS.md);
    # one row (min-char-rnn's batch of 1) runs faster without: MKL's plain path for it packs nothing
    if trans_b:
        return m >= PACK_MIN_ROWS
    return m >= PACK_MIN_ROWS_NO_TRANS and b_size >= PACK_MIN_WEIGHTS_NO_TRANS


@njit(cache=True)
def pack_b(b, trans_b, m, mode):
    # b (k, n), or (n, k) with trans_b  ->  op(b) packed for products with m-row left operands (1-D, b's dtype):
    # panels for PANELS; for MKL_PACKED MKL's layout, or empty when not worth_packing (then gemm_packed runs
    # the plain gemm); empty for PLAIN. `mode` must come from packing() (MKL_PACKED without the API reaches the
    # abort stubs). Pack on the thread, and with the BLAS thread count, of the products that use it.
    if mode == PANELS:
        return pack_panels(b, trans_b)
    if mode != MKL_PACKED or m == 0 or b.size == 0 or not worth_packing(m, b.size, trans_b):
        return b.reshape(-1)[:0].copy()
    k, n = (b.shape[1], b.shape[0]) if trans_b else (b.shape[0], b.shape[1])
    size = _pack_bytes(b, m, n, k)
    packed = np.empty(size // b.itemsize + 1, dtype=b.dtype)
    _pack(trans_b, m, n, k, b, leading_dimension(b), packed)
    return packed


@njit(cache=True)
def gemm_packed(a, b, trans_b, packed, out, mode):
    # out (m, n) = a (m, k) @ op(b) (k, n); `packed` from pack_b(b, trans_b, m, mode) for these m rows
    if mode == PANELS:
        gemm_panels(a, packed, out)
        return
    if packed.size == 0:
        gemm(a, False, b, trans_b, out)
        return
    m, n = out.shape
    k = b.shape[1] if trans_b else b.shape[0]
    if a.shape[0] != m or a.shape[1] != k:
        raise ValueError("gemm_packed: shapes do not match: a (m, k) @ op(b) (k, n) -> out (m, n)")
    _compute(m, n, k, a, leading_dimension(a), packed, out, leading_dimension(out))
