"""The arithmetic of convolution and pooling: padding, output sizes, parameter counts.

One source of truth: `numbanets.functional` sizes every output with these
functions, the layers size themselves with them, and `nbnets shapes` prints them.

For one spatial dimension of size M, a window of size K, stride s and padding
p_before + p_after:

    out = floor((M + p_before + p_after - K) / s) + 1

Padding is an int (the same before and after), a pair of ints (one per spatial
dimension of a 2-D op), or one of the strings

    "valid"  no padding,
    "same"   out = ceil(M / s); total = max((out - 1) * s + K - M, 0), split as
             before = total // 2 and after = total - before (the odd one after),
    "full"   K - 1 on both sides: every placement with at least one pixel of overlap.
"""

from __future__ import annotations

import math

PADDING_MODES = ("valid", "same", "full")


def as_pair(value, name: str, dims: int = 2) -> tuple[int, ...]:
    """An int or a sequence of `dims` ints as a tuple of `dims` ints."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int or a tuple of {dims} ints, got {value!r}")
    if isinstance(value, int) or (hasattr(value, "__index__") and not hasattr(value, "__len__")):
        return (int(value),) * dims
    try:
        values = tuple(value)
    except TypeError:
        raise TypeError(f"{name} must be an int or a tuple of {dims} ints, got {value!r}") from None
    if len(values) != dims or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise TypeError(f"{name} must be an int or a tuple of {dims} ints, got {value!r}")
    return values


def resolve_padding_1d(padding, size: int, kernel: int, stride: int) -> tuple[int, int]:
    """(before, after) padding of one spatial dimension for an int or a mode string."""
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return 0, 0
        if mode == "full":
            return kernel - 1, kernel - 1
        if mode == "same":
            out = -(-size // stride)
            total = max((out - 1) * stride + kernel - size, 0)
            return total // 2, total - total // 2
        raise ValueError(
            f"padding must be an int, a pair of ints or one of {', '.join(map(repr, PADDING_MODES))}; "
            f"got {padding!r}"
        )
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    return int(padding), int(padding)


def resolve_padding(padding, sizes, kernels, strides) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Padding before and after for every spatial dimension.

    `padding` is an int, a tuple with one int per dimension, or a mode string.
    Returns (before, after), each a tuple with one int per dimension.
    """
    dims = len(sizes)
    if isinstance(padding, str):
        per_dim = (padding,) * dims
    else:
        per_dim = as_pair(padding, "padding", dims)
    pairs = [resolve_padding_1d(p, m, k, s) for p, m, k, s in zip(per_dim, sizes, kernels, strides)]
    return tuple(p[0] for p in pairs), tuple(p[1] for p in pairs)


def output_size(size: int, kernel: int, stride: int, before: int, after: int) -> int:
    """floor((M + p_before + p_after - K) / s) + 1; may be <= 0 when the window does not fit."""
    return (size + before + after - kernel) // stride + 1


def conv_output_shape(in_sizes, kernels, strides, padding):
    """Output sizes and (before, after) pads of a convolution or pooling window.

    Raises ValueError when the window is larger than the padded input.
    """
    before, after = resolve_padding(padding, in_sizes, kernels, strides)
    outs = []
    for m, k, s, pb, pa in zip(in_sizes, kernels, strides, before, after):
        if m + pb + pa < k:
            raise ValueError(
                f"kernel size {k} is larger than the padded input ({m} + {pb} + {pa} = {m + pb + pa})"
            )
        outs.append(output_size(m, k, s, pb, pa))
    return tuple(outs), before, after


def quoted_output_size(size: int, kernel: int, stride: int) -> float:
    """The rule of thumb `(M + P) / s - 1` quoted for full-padding examples (may disagree)."""
    return (size + kernel) / stride - 1


def conv_params(in_channels: int, maps: int, kernel: tuple[int, ...], groups: int = 1, bias: bool = True) -> int:
    """Weights (maps x in_channels/groups x prod(kernel)) plus one bias per map."""
    return maps * (in_channels // groups) * math.prod(kernel) + (maps if bias else 0)


def linear_params(inputs: int, outputs: int, bias: bool = True) -> int:
    return outputs * inputs + (outputs if bias else 0)


def conv_multiply_adds(in_channels: int, maps: int, kernel, out_sizes, groups: int = 1) -> int:
    """Multiply-adds of one image: every output neuron sums over its window."""
    return maps * math.prod(out_sizes) * (in_channels // groups) * math.prod(kernel)


def rnn_params(inputs: int, hidden: int) -> int:
    return hidden * inputs + hidden * hidden + hidden


def lstm_params(inputs: int, hidden: int) -> int:
    return 4 * rnn_params(inputs, hidden)
