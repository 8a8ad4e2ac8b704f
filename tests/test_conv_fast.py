"""The alternative conv2d forward kernels: Winograd F(2x2, 3x3) and the direct convolution, and their choice.

Each kernel against the float64 reference loops (tests/reference.py, conv2d_ref on an explicitly padded
input, so that the padding after may differ from the padding before, as conv.py's arguments allow):
float64 to 1e-12 of the output's scale, float32 to the tolerance derived below; odd sizes that leave
partial 2x2 tiles, padding 0 / 1 / 2 and unequal, N = 1, C = 1, F = 1; the split over numba's threads
(the number of blocks asserted) against one block; the errors bad input gets.

float32 tolerance. Let S = max over the output of |b| + sum_{c,u,v} |w| |x| (the sum of the magnitudes of
an output's terms) and u = 2**-24 (float32's unit roundoff). Summed directly (im2col, the direct kernel)
the rounding error of an output is at most about K*u*S, K = C*KH*KW terms (a worst case; for random
signs it grows like sqrt(K)). Winograd adds the transforms' roundings: the input transform B^T d B sums
up to 4 inputs (2 roundings), the weight transform G g G^T is computed in float64 and rounded once
(coefficients 0.5, sums of up to 3 terms per dimension), the output transform A^T M A sums up to 9 values
(4 roundings), and the transformed values are larger than the terms of a direct sum: per dimension by up
to ||B^T|| ||G|| ||A^T|| = 2 * 1.5 * 3 = 9 (infinity norms), 81 in two, so its worst case is up to ~81
times the direct sum's. Measured (`python scripts/conv_kernels.py --errors`: 3x3 layers with C from 1 to
256, 10 random N(0, 1) draws each, inputs rounded to float32 first), max |y32 - y_ref| / (u * S) was
2.4 for Winograd, 2.9 for im2col and 3.1 for the direct kernel (register tiles, one fused multiply-add
per tap; 3.3 for an earlier direct kernel, and up to 3.0 for Winograd in other draws and with an earlier
order of its output transform's sums). F32_TOL_UNITS = 16 allows about 5x the
largest; a transform with one wrong coefficient errs by O(S), about 10**6 times more.
"""

import numba
import numpy as np
import pytest
from gradcheck import assert_close
from reference import conv2d_ref

from numbanets.kernels.cpu import blas, conv_choice, conv_direct, conv_winograd

U32 = 2.0 ** -24  # float32 unit roundoff
F32_TOL_UNITS = 16  # float32 tolerance in units of u * S (see the module docstring)
F64_TOL = 1e-12  # float64 tolerance relative to S

# x (N, C, H, W), F, pad (ph, pw), out (OH, OW) or None for "pad after = pad before"
WINOGRAD_CASES = [
    ((2, 3, 7, 6), 4, (1, 1), None),  # odd OH: partial tile row
    ((1, 1, 5, 5), 1, (0, 0), None),  # N = C = F = 1, OH = OW = 3: partial tiles both ways
    ((3, 2, 8, 9), 3, (2, 2), None),  # "full" padding, odd OW
    ((2, 5, 9, 11), 1, (0, 0), None),  # valid, odd both
    ((1, 4, 3, 3), 2, (2, 2), None),  # image smaller than the padded window
    ((2, 3, 4, 4), 5, (0, 0), None),  # one tile per sample
    ((3, 6, 13, 5), 7, (1, 1), None),
    ((2, 3, 6, 7), 4, (0, 2), None),  # unequal padding along H and W
    ((2, 3, 6, 7), 4, (1, 1), (5, 6)),  # padding after 0 (the output size given, as conv.py allows)
    ((2, 8, 16, 16), 8, (1, 1), None),  # a chunk of several samples' tiles
]
DIRECT_CASES = [  # x, (F, K), pad, out
    ((2, 3, 7, 6), (5, 3), (1, 1), None),  # rows of 6 pixels: one partial register tile per row
    ((1, 1, 5, 5), (1, 5), (2, 2), None),  # N = C = F = 1
    ((3, 2, 8, 9), (4, 3), (0, 0), None),
    ((2, 3, 9, 8), (8, 5), (2, 2), None),  # the bench's first layer, small; 8 filters: tiles of 6 and 2
    ((2, 4, 6, 6), (9, 1), (0, 0), None),  # 1x1
    ((2, 3, 6, 7), (6, 3), (2, 0), None),  # unequal padding
    ((2, 3, 8, 8), (7, 5), (2, 2), (7, 6)),  # padding after smaller than before
    ((1, 2, 3, 3), (3, 5), (2, 2), None),  # kernel larger than the image
    ((2, 3, 5, 32), (13, 5), (2, 2), None),  # rows of 32: two whole float32 tiles, four float64 ones
    ((1, 2, 4, 21), (6, 3), (1, 1), None),  # rows of 21: whole tiles, then a partial one
]
DTYPES = [np.float32, np.float64]


def _ids(cases):
    return [f"x{c[0]}-f{c[1]}-p{c[2]}-o{c[3]}".replace(" ", "") for c in cases]


def _geometry(x_shape, k, pad, out):
    h, w = x_shape[2], x_shape[3]
    if out is None:
        out = (h + 2 * pad[0] - k + 1, w + 2 * pad[1] - k + 1)
    return out


def _reference(x, w, b, pad, out):
    """conv2d_ref (float64) of x padded by pad before and whatever out implies after (cropped if negative),
    and S: the same with |x|, |w|, |b| (every output's sum of the magnitudes of its terms)."""
    kh, kw = w.shape[2], w.shape[3]
    after = (out[0] + kh - 1 - x.shape[2] - pad[0], out[1] + kw - 1 - x.shape[3] - pad[1])
    xp = np.pad(np.asarray(x, np.float64), ((0, 0), (0, 0), (pad[0], max(after[0], 0)), (pad[1], max(after[1], 0))))
    xp = xp[:, :, :pad[0] + x.shape[2] + after[0], :pad[1] + x.shape[3] + after[1]]
    ref = conv2d_ref(xp, w, b)
    scale = conv2d_ref(np.abs(xp), np.abs(np.asarray(w, np.float64)), np.abs(np.asarray(b, np.float64)))
    assert ref.shape[2:] == tuple(out)
    return ref, float(np.max(scale))


def _inputs(rng, x_shape, f, k, dtype):
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal((f, x_shape[1], k, k)).astype(dtype)
    b = rng.standard_normal(f).astype(dtype)
    return x, w, b


def _check(y, ref, scale, dtype, name):
    atol = F32_TOL_UNITS * U32 * scale if dtype == np.float32 else F64_TOL * scale
    assert y.dtype == dtype and y.shape == ref.shape, (y.dtype, y.shape, ref.shape)
    assert_close(y, ref, rtol=0.0, atol=atol, name=name)


# ------------------------------------------------------------------- winograd --


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", WINOGRAD_CASES, ids=_ids(WINOGRAD_CASES))
def test_winograd_matches_reference(rng, case, dtype):
    x_shape, f, pad, out = case
    out = _geometry(x_shape, 3, pad, out)
    x, w, b = _inputs(rng, x_shape, f, 3, dtype)
    ref, scale = _reference(x, w, b, pad, out)
    y = conv_winograd.conv2d_forward_winograd(x, w, b, 1, 1, pad[0], pad[1], out[0], out[1], 1)
    _check(y, ref, scale, dtype, "winograd y")


@pytest.mark.parametrize("tiles", [1, 7, 64, 10**6])
def test_winograd_chunks_of_any_size_agree(rng, monkeypatch, tiles):
    """TILES_PER_GEMM 1 (one tile row per chunk), 7 (chunks ending inside a sample), 64, 10**6 (every
    sample in one chunk): the same result, and the reference's."""
    x, w, b = _inputs(rng, (3, 4, 9, 7), 5, 3, np.float64)
    ref, scale = _reference(x, w, b, (1, 1), (9, 7))
    monkeypatch.setattr(conv_winograd, "TILES_PER_GEMM", tiles)
    y = conv_winograd.conv2d_forward_winograd(x, w, b, 1, 1, 1, 1, 9, 7, 1, blocks=1)
    _check(y, ref, scale, np.float64, f"winograd y, TILES_PER_GEMM {tiles}")


def _spy(monkeypatch, module, calls):
    """Record how module's forward pass runs: ("numba", blocks) for _forward_blocks (a prange over the
    blocks), ("python", blocks) for the Python thread pool (winograd), ("rows", lo, hi) for each call
    of the plain block function (_forward_rows / _forward_samples) from Python."""
    plain_name = "_forward_rows" if hasattr(module, "_forward_rows") else "_forward_samples"
    parallel, plain = module._forward_blocks, getattr(module, plain_name)

    def blocks_spy(*args):
        calls.append(("numba", args[8]))  # blocks is argument 8 of both modules' _forward_blocks
        return parallel(*args)

    def plain_spy(*args):
        calls.append(("rows", args[-3], args[-2]) if module is conv_winograd else ("rows", args[-2], args[-1]))
        return plain(*args)

    monkeypatch.setattr(module, "_forward_blocks", blocks_spy)
    monkeypatch.setattr(module, plain_name, plain_spy)
    if hasattr(module, "_run_python_blocks"):
        python = module._run_python_blocks

        def python_spy(block_args):
            calls.append(("python", len(block_args)))
            return python(block_args)

        monkeypatch.setattr(module, "_run_python_blocks", python_spy)


def _expected_calls(how, blocks, total):
    """The calls _spy records for `blocks` blocks of `total` rows (tile rows or samples) run `how`."""
    if blocks == 1:
        return [("rows", 0, total)]
    if how == "numba":
        return [("numba", blocks)]
    return [("python", blocks)] + [("rows", k * total // blocks, (k + 1) * total // blocks) for k in range(blocks)]


def _sorted_calls(calls):
    # the pool's blocks may start in any order: sort the ("rows", ...) entries that follow a ("python", k)
    out, i = [], 0
    while i < len(calls):
        out.append(calls[i])
        if calls[i][0] == "python":
            k = calls[i][1]
            out.extend(sorted(calls[i + 1:i + 1 + k]))
            i += k
        i += 1
    return out


@pytest.mark.parametrize("dtype", DTYPES)
def test_winograd_split_over_threads_agrees_with_one_thread(rng, monkeypatch, dtype):
    """With 2 numba threads the batch's 25 tile rows run as 2 blocks: on numba's pool with MKL (which shares
    it), on the Python thread pool with OpenBLAS; with 1 thread as one plain loop. Forced 2 and 3 blocks
    agree with one thread and with the reference."""
    x, w, b = _inputs(rng, (5, 4, 9, 8), 6, 3, dtype)
    ref, scale = _reference(x, w, b, (1, 1), (9, 8))
    total = 5 * 5
    calls = []
    _spy(monkeypatch, conv_winograd, calls)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        blocks, how, _ = conv_winograd.plan(x.shape, 9, 8)
        if numba.get_num_threads() == 2:
            assert (blocks, how) == ((2, "numba") if blas.pool_threads() > 1 else
                                     (2, "python") if blas.has_thread_control() else (1, "loop"))
        y_par = conv_winograd.conv2d_forward_winograd(x, w, b, 1, 1, 1, 1, 9, 8, 1)
        expected = _expected_calls(how, blocks, total)
        forced = {}
        for k in (2, 3):
            forced[k] = conv_winograd.conv2d_forward_winograd(x, w, b, 1, 1, 1, 1, 9, 8, 1, blocks=k)
            expected += _expected_calls("numba" if how == "loop" else how, k, total)
        numba.set_num_threads(1)
        assert conv_winograd.plan(x.shape, 9, 8)[:2] == (1, "loop")
        y_one = conv_winograd.conv2d_forward_winograd(x, w, b, 1, 1, 1, 1, 9, 8, 1)
        expected += _expected_calls("loop", 1, total)
    finally:
        numba.set_num_threads(before)
    assert _sorted_calls(calls) == expected
    rel = 1e-6 if dtype == np.float32 else 1e-13
    tol = {"rtol": rel, "atol": rel * scale}
    assert_close(y_par, y_one, **tol, name="y threads vs one")
    for k, y in forced.items():
        assert_close(y, y_one, **tol, name=f"y {k} blocks vs one")
    _check(y_par, ref, scale, dtype, "winograd y (threads)")


def test_winograd_refuses_what_it_does_not_compute(rng):
    x, w, b = _inputs(rng, (2, 4, 8, 8), 4, 3, np.float64)
    with pytest.raises(ValueError, match="3x3 kernel, stride 1 and groups 1"):
        conv_winograd.conv2d_forward_winograd(x, w, b, 2, 2, 1, 1, 4, 4, 1)
    with pytest.raises(ValueError, match="3x3 kernel, stride 1 and groups 1"):
        conv_winograd.conv2d_forward_winograd(x, w[:, :2], b, 1, 1, 1, 1, 8, 8, 2)
    x5, w5, b5 = _inputs(rng, (2, 4, 8, 8), 4, 5, np.float64)
    with pytest.raises(ValueError, match="3x3 kernel"):
        conv_winograd.conv2d_forward_winograd(x5, w5, b5, 1, 1, 2, 2, 8, 8, 1)
    with pytest.raises(ValueError, match="one dtype"):
        conv_winograd.conv2d_forward_winograd(x.astype(np.float32), w, b, 1, 1, 1, 1, 8, 8, 1)
    with pytest.raises(ValueError, match="C-contiguous"):
        conv_winograd.conv2d_forward_winograd(x[:, :, :, ::-1], w, b, 1, 1, 1, 1, 8, 8, 1)
    assert conv_winograd.supports((4, 4, 3, 3), 1, 1, 1) and not conv_winograd.supports((4, 4, 3, 1), 1, 1, 1)


# --------------------------------------------------------------------- direct --


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", DIRECT_CASES, ids=_ids(DIRECT_CASES))
def test_direct_matches_reference(rng, case, dtype):
    x_shape, (f, k), pad, out = case
    out = _geometry(x_shape, k, pad, out)
    x, w, b = _inputs(rng, x_shape, f, k, dtype)
    ref, scale = _reference(x, w, b, pad, out)
    y = conv_direct.conv2d_forward_direct(x, w, b, 1, 1, pad[0], pad[1], out[0], out[1], 1)
    _check(y, ref, scale, dtype, "direct y")


@pytest.mark.parametrize("dtype", DTYPES)
def test_direct_split_over_threads_agrees_with_one_thread(rng, monkeypatch, dtype):
    """min(numba threads, N) blocks of samples on numba's pool, whichever BLAS is loaded (no BLAS runs in
    the kernel); 1 with one thread; forced 2 and 3 blocks (N = 5: blocks of 1 and 2 samples) give the same
    numbers: each output is summed in the same order."""
    x, w, b = _inputs(rng, (5, 3, 9, 8), 6, 5, dtype)
    ref, scale = _reference(x, w, b, (2, 2), (9, 8))
    calls = []
    _spy(monkeypatch, conv_direct, calls)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        expected = min(numba.get_num_threads(), 5)
        assert conv_direct.plan(5) == expected
        y_par = conv_direct.conv2d_forward_direct(x, w, b, 1, 1, 2, 2, 9, 8, 1)
        numba.set_num_threads(1)
        assert conv_direct.plan(5) == 1
        y_one = conv_direct.conv2d_forward_direct(x, w, b, 1, 1, 2, 2, 9, 8, 1)
        forced = {k: conv_direct.conv2d_forward_direct(x, w, b, 1, 1, 2, 2, 9, 8, 1, blocks=k) for k in (2, 3)}
    finally:
        numba.set_num_threads(before)
    assert calls == (_expected_calls("numba", expected, 5) + _expected_calls("loop", 1, 5)
                     + _expected_calls("numba", 2, 5) + _expected_calls("numba", 3, 5)), calls
    np.testing.assert_array_equal(y_par, y_one)
    for y in forced.values():
        np.testing.assert_array_equal(y, y_one)
    _check(y_one, ref, scale, dtype, "direct y (threads)")


def test_flipped_weights_turn_the_direct_kernel_into_the_backward_for_dx(rng):
    # dx of a stride-1 layer = the direct convolution of dy with w flipped along KH, KW and transposed (F <-> C),
    # padded by KH-1-ph / KW-1-pw before: against the float64 reference's adjoint, <dy, conv(x)> = <dx, x>
    x, w, b = _inputs(rng, (2, 3, 5, 16), 7, 3, np.float64)
    dy = rng.standard_normal((2, 7, 5, 16))
    dx = conv_direct.conv2d_forward_direct(dy, conv_direct.flipped_weights(w), np.zeros(3), 1, 1, 1, 1, 5, 16, 1)
    wf = conv_direct.flipped_weights(w)
    assert wf.shape == (3, 7, 3, 3) and wf[1, 2, 0, 2] == w[2, 1, 2, 0]
    y, _ = _reference(x, w, np.zeros(7), (1, 1), (5, 16))
    assert abs(float(np.sum(dy * y)) - float(np.sum(dx * x))) < 1e-10 * float(np.sum(np.abs(dy * y)))


def test_direct_refuses_what_it_does_not_compute(rng):
    x, w, b = _inputs(rng, (2, 4, 8, 8), 4, 3, np.float64)
    with pytest.raises(ValueError, match="stride 1 and groups 1"):
        conv_direct.conv2d_forward_direct(x, w, b, 1, 2, 1, 1, 8, 4, 1)
    with pytest.raises(ValueError, match="stride 1 and groups 1"):
        conv_direct.conv2d_forward_direct(x, w[:, :2], b, 1, 1, 1, 1, 8, 8, 2)
    with pytest.raises(ValueError, match="one dtype"):
        conv_direct.conv2d_forward_direct(x, w, b.astype(np.float32), 1, 1, 1, 1, 8, 8, 1)
    with pytest.raises(ValueError, match="C-contiguous"):
        conv_direct.conv2d_forward_direct(x, np.asfortranarray(w), b, 1, 1, 1, 1, 8, 8, 1)


# --------------------------------------------------------------------- choice --


CHOICE_LAYERS = [  # x, w, stride, groups, (OH, OW)
    ((2, 3, 8, 8), (4, 3, 5, 5), 1, 1, (8, 8)),  # a first layer on 8x8: rows of 8, half a float32 tile
    ((2, 3, 32, 32), (4, 3, 5, 5), 1, 1, (32, 32)),  # the bench's first layer: rows of 32
    ((2, 32, 16, 16), (4, 32, 3, 3), 1, 1, (16, 16)),  # the bench's 3x3 layer
    ((2, 4, 9, 33), (4, 4, 3, 3), 2, 1, (5, 16)),  # stride 2
    ((2, 4, 9, 16), (4, 2, 3, 3), 1, 2, (9, 16)),  # groups 2
    ((2, 64, 8, 8), (3, 64, 3, 3), 1, 1, (8, 8)),  # C 64, 64 output pixels
    ((1, 128, 4, 4), (2, 128, 3, 3), 1, 1, (2, 2)),  # C 128, 4 output pixels
    ((1, 64, 16, 16), (2, 64, 3, 3), 1, 1, (16, 16)),  # C 64, 256 output pixels
]
CHOICES = {  # (WINOGRAD_MIN_CHANNELS, WINOGRAD_MAX_PIXELS, DIRECT_ROW_MULTIPLE): the names for CHOICE_LAYERS
    "measured": (None, ["im2col", "direct", "direct", "im2col", "im2col", "im2col", "im2col", "direct"]),
    "off": ((None, None, None), ["im2col"] * 8),
    "on": ((1, 10**6, 1), ["direct", "direct", "winograd", "im2col", "im2col", "winograd", "winograd",
                           "winograd"]),
    "mixed": ((64, 100, 8), ["direct", "direct", "direct", "im2col", "im2col", "winograd", "winograd",
                             "direct"]),
}


def _pads(x_shape, w_shape, out):
    # "same"-like padding before that gives `out` at stride 1 (the direct and Winograd kernels take any)
    return (max(0, (out[0] + w_shape[2] - 1 - x_shape[2]) // 2), max(0, (out[1] + w_shape[3] - 1 - x_shape[3]) // 2))


@pytest.mark.parametrize("setting", list(CHOICES))
def test_choice_names_a_kernel_that_computes_the_convolution(rng, monkeypatch, setting):
    """With the measured thresholds and with others: the names expected, a kernel only where it applies,
    and the kernel named computes the layer (against the reference)."""
    thresholds, expected = CHOICES[setting]
    if thresholds is not None:
        for name, value in zip(("WINOGRAD_MIN_CHANNELS", "WINOGRAD_MAX_PIXELS", "DIRECT_ROW_MULTIPLE"), thresholds):
            monkeypatch.setattr(conv_choice, name, value)
    kernels = {"winograd": conv_winograd.conv2d_forward_winograd, "direct": conv_direct.conv2d_forward_direct}
    names = []
    for x_shape, w_shape, stride, groups, out in CHOICE_LAYERS:
        name = conv_choice.choose_forward(x_shape, w_shape, stride, groups, *out)
        names.append(name)
        if name in kernels:
            x, w, b = _inputs(rng, x_shape, w_shape[0], w_shape[2], np.float64)
            pad = _pads(x_shape, w_shape, out)
            ref, scale = _reference(x, w, b, pad, out)
            _check(kernels[name](x, w, b, 1, 1, pad[0], pad[1], out[0], out[1], 1), ref, scale, np.float64, name)
    assert names == expected


def test_backward_data_goes_direct_where_the_input_rows_are_whole_tiles():
    assert conv_choice.choose_backward_data((2, 3, 8, 32), (4, 3, 3, 3), 1, 1) == "direct"
    assert conv_choice.choose_backward_data((2, 3, 8, 8), (4, 3, 3, 3), 1, 1) == "im2col"
    assert conv_choice.choose_backward_data((2, 3, 8, 32), (4, 3, 3, 3), (2, 1), 1) == "im2col"
    assert conv_choice.choose_backward_data((2, 4, 8, 32), (4, 2, 3, 3), 1, 2) == "im2col"


def test_conv2d_runs_the_chosen_kernels(rng, monkeypatch):
    # functional.conv2d / conv2d_backward reach conv_direct for rows of whole tiles (forward, and dx) and not
    # otherwise; every gradient equals the im2col path's (DIRECT_ROW_MULTIPLE None) to float64 rounding
    from numbanets import functional as F

    seen = []
    real = conv_direct.conv2d_forward_direct
    monkeypatch.setattr(conv_direct, "conv2d_forward_direct", lambda *a, **k: seen.append(a[0].shape) or real(*a, **k))
    x, w, b = _inputs(rng, (2, 3, 4, 16), 5, 3, np.float64)
    y = F.conv2d(x, w, b, padding=1)
    ref, scale = _reference(x, w, b, (1, 1), (4, 16))
    _check(y, ref, scale, np.float64, "conv2d y")
    dy = rng.standard_normal(y.shape)
    grads = F.conv2d_backward(dy, x, w, padding=1)
    assert seen == [x.shape, dy.shape]
    seen.clear()
    F.conv2d(x[:, :, :, :8].copy(), w, b, padding=1)
    assert seen == []
    monkeypatch.setattr(conv_choice, "DIRECT_ROW_MULTIPLE", None)
    im2col = F.conv2d_backward(dy, x, w, padding=1)
    assert seen == []
    for name, a, e in zip(("dx", "dw", "db"), grads, im2col):
        np.testing.assert_allclose(a, e, rtol=1e-12, atol=1e-12 * float(np.max(np.abs(e))), err_msg=name)


def test_choice_accepts_pairs_and_refuses_bad_shapes():
    assert conv_choice.choose_forward((2, 4, 8, 8), (4, 4, 3, 3), (1, 1), 1, 8, 8) == \
        conv_choice.choose_forward((2, 4, 8, 8), (4, 4, 3, 3), 1, 1, 8, 8)
    assert conv_choice.choose_forward((2, 4, 8, 32), (4, 4, 3, 3), (1, 2), 1, 8, 16) == "im2col"
    with pytest.raises(ValueError, match="x_shape"):
        conv_choice.choose_forward((2, 4, 8), (4, 4, 3, 3), 1, 1, 8, 8)
    with pytest.raises(ValueError, match="stride"):
        conv_choice.choose_forward((2, 4, 8, 8), (4, 4, 3, 3), (1, 1, 1), 1, 8, 8)
