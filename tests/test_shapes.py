"""numbanets.shapes: padding modes, output sizes and parameter counts."""

import pytest

from numbanets import shapes


@pytest.mark.parametrize(
    "padding, size, kernel, stride, expected",
    [
        ("valid", 5, 3, 1, (0, 0)),
        ("full", 5, 3, 1, (2, 2)),
        ("full", 200, 5, 1, (4, 4)),
        ("same", 5, 3, 1, (1, 1)),
        ("same", 5, 3, 2, (1, 1)),
        ("same", 4, 3, 2, (0, 1)),
        ("same", 6, 4, 1, (1, 2)),
        ("same", 7, 1, 3, (0, 0)),
        (2, 5, 3, 1, (2, 2)),
    ],
)
def test_resolve_padding_1d(padding, size, kernel, stride, expected):
    assert shapes.resolve_padding_1d(padding, size, kernel, stride) == expected


@pytest.mark.parametrize("size, stride", [(s, st) for s in range(1, 12) for st in (1, 2, 3)])
def test_same_padding_gives_ceil(size, stride):
    for kernel in (1, 2, 3, 5):
        before, after = shapes.resolve_padding_1d("same", size, kernel, stride)
        out = shapes.output_size(size, kernel, stride, before, after)
        assert out == -(-size // stride)
        assert 0 <= after - before <= 1


def test_output_size_matches_formula():
    # floor((M + 2p - P) / s) + 1
    assert shapes.output_size(227, 11, 4, 0, 0) == 55
    assert shapes.output_size(200, 5, 1, 4, 4) == 204
    assert shapes.output_size(5, 3, 1, 0, 0) == 3
    assert shapes.output_size(5, 3, 2, 0, 0) == 2


def test_conv_output_shape_rejects_kernel_larger_than_padded_input():
    with pytest.raises(ValueError, match="larger than the padded input"):
        shapes.conv_output_shape((4, 4), (5, 5), (1, 1), 0)
    assert shapes.conv_output_shape((4, 4), (5, 5), (1, 1), 1)[0] == (2, 2)


def test_bad_padding_and_pairs():
    with pytest.raises(ValueError, match="'valid', 'same', 'full'"):
        shapes.resolve_padding("middle", (5, 5), (3, 3), (1, 1))
    with pytest.raises(ValueError, match=">= 0"):
        shapes.resolve_padding(-1, (5, 5), (3, 3), (1, 1))
    with pytest.raises(TypeError, match="tuple of 2 ints"):
        shapes.as_pair((1, 2, 3), "stride")
    assert shapes.resolve_padding((1, 2), (5, 5), (3, 3), (1, 1)) == ((1, 2), (1, 2))


def test_parameter_counts():
    assert shapes.conv_params(3, 20, (5, 5), bias=False) == 1500
    assert shapes.conv_params(48, 256, (5, 5), groups=2) == 256 * 24 * 25 + 256
    assert shapes.linear_params(9216, 4096) == 9216 * 4096 + 4096
    assert shapes.lstm_params(10, 8) == 4 * (8 * 10 + 8 * 8 + 8)
