"""Which kernel runs a conv2d layer's forward pass, and its backward's dx, on the CPU.

    choose_forward(x_shape, w_shape, stride, groups, out_w) -> "direct" | "winograd" | "im2col"
    choose_backward_data(x_shape, w_shape, stride, groups)  -> "direct" | "im2col"

    "direct"    conv_direct: stride 1, groups 1, and an output row a whole number of DIRECT_ROW_MULTIPLE
                pixels (its register tiles are 16 float32 / 8 float64 pixels of one row; a row of 8 or 4
                pixels would waste half or more of every tile). For the backward, the "output" is dx,
                as wide as the input.
    "winograd"  conv_winograd: 3x3, stride 1, groups 1, at least WINOGRAD_MIN_CHANNELS input channels and
                at most WINOGRAD_MAX_PIXELS output pixels (its 16 GEMMs per chunk are only C deep: with few
                channels the BLAS runs them too far below its speed to pay for the transforms); it is
                asked first
    "im2col"    conv.py: everything else (any stride, groups, kernel, width)

A threshold of None switches its kernel off. Both are measured, not derived: `python
scripts/conv_kernels.py` times the kernels side by side, interleaved in one process, on the bench's
conv2d shapes and others; BENCHMARKS.md has the runs. On the project's 2-core AMD EPYC the direct kernel
beat im2col on every layer whose rows are whole tiles and lost on the 8x8 and 4x4 maps; Winograd was
not clearly ahead on any layer, so it is off (its thresholds, when set, send 3x3 layers with many
channels and small outputs to it).
"""

from __future__ import annotations

__all__ = ["DIRECT_ROW_MULTIPLE", "WINOGRAD_MAX_PIXELS", "WINOGRAD_MIN_CHANNELS", "choose_backward_data",
           "choose_forward"]

DIRECT_ROW_MULTIPLE: int | None = 16  # output rows a multiple of this many pixels go to conv_direct
# scripts/conv_kernels.py, AMD EPYC, MKL: Winograd 1.22-1.29x im2col at C 64 and 128 with 8x8 outputs on
# one thread on a busy machine, but 1.04x (1 thread) and 0.96x (2 threads) at C 64, 8x8, on a quiet one;
# 0.79-0.95x with 16x16 outputs (C 32, 64), 0.58-0.71x at C 16: off until it is clearly ahead somewhere
WINOGRAD_MIN_CHANNELS: int | None = None
WINOGRAD_MAX_PIXELS: int | None = 64


def _pair(value, name):
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair, got {value!r}")
        return int(value[0]), int(value[1])
    return int(value), int(value)


def _direct(stride, groups, row) -> bool:
    sh, sw = _pair(stride, "stride")
    return (DIRECT_ROW_MULTIPLE is not None and sh == 1 and sw == 1 and groups == 1 and row > 0
            and row % DIRECT_ROW_MULTIPLE == 0)


def choose_forward(x_shape, w_shape, stride, groups, out_h, out_w) -> str:
    """The forward kernel for a layer: x (N, C, H, W), w (F, C/groups, KH, KW), stride an int or an
    (h, w) pair, groups, out_h x out_w the output size. The thresholds are read at call time."""
    if len(x_shape) != 4 or len(w_shape) != 4:
        raise ValueError(f"x_shape (N, C, H, W) and w_shape (F, C/g, KH, KW) expected, got {x_shape}, {w_shape}")
    sh, sw = _pair(stride, "stride")
    if ((int(w_shape[2]), int(w_shape[3])) == (3, 3) and sh == sw == 1 and groups == 1
            and WINOGRAD_MIN_CHANNELS is not None and int(x_shape[1]) >= WINOGRAD_MIN_CHANNELS
            and WINOGRAD_MAX_PIXELS is not None and int(out_h) * int(out_w) <= WINOGRAD_MAX_PIXELS):
        return "winograd"
    if _direct(stride, groups, int(out_w)):
        return "direct"
    return "im2col"


def choose_backward_data(x_shape, w_shape, stride, groups) -> str:
    """The kernel for the backward's dx: "direct" (dx = conv_direct of dy with the flipped, transposed
    weights, as wide as x) or "im2col" (conv.py's dcols GEMM and col2im)."""
    if len(x_shape) != 4 or len(w_shape) != 4:
        raise ValueError(f"x_shape (N, C, H, W) and w_shape (F, C/g, KH, KW) expected, got {x_shape}, {w_shape}")
    return "direct" if _direct(stride, groups, int(x_shape[3])) else "im2col"
