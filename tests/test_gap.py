"""Global average pooling (the `gap` arch token): functional.gap_forward / gap_backward, the
GlobalAvgPool2D layer, the spec grammar and `nbnets shapes`.

Forward and backward against the float64 reference loops (tests/reference.py) and the backward
against central finite differences, on the CPU; the CUDA kernels against the CPU ones (marked
`cuda`: NUMBA_ENABLE_CUDASIM=1 pytest -q -m cuda tests/test_gap.py); their PTX is compiled by
tests/test_cuda_ptx.py with every registered kernel.
"""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from gradcheck import assert_close, numerical_grad
from reference import gap_backward_ref, gap_ref

from numbanets import functional as F
from numbanets import nn
from numbanets.device import cuda_status
from numbanets.nn import arch
from runner.cli import main

DTYPES = [np.float32, np.float64]
SHAPES = [(2, 3, 4, 5), (1, 1, 1, 1), (3, 2, 1, 7), (2, 4, 8, 8)]
CAM_NET = "conv4x3x3:p=same-relu-conv6x3x3:p=same-relu-gap-fc3"
_USABLE, _REASON = cuda_status()


def _tol(dtype):
    return dict(rtol=2e-6, atol=1e-7) if dtype == np.float32 else dict(rtol=1e-13, atol=1e-14)


# ------------------------------------------------------------------ CPU --


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_matches_the_reference(rng, shape, dtype):
    x = rng.standard_normal(shape).astype(dtype)
    y = F.gap_forward(x)
    assert y.dtype == dtype and y.shape == shape[:2]
    np.testing.assert_allclose(y, gap_ref(x), **_tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_backward_matches_the_reference(rng, shape, dtype):
    dy = rng.standard_normal(shape[:2]).astype(dtype)
    dx = F.gap_backward(dy, shape)
    assert dx.dtype == dtype and dx.shape == shape
    np.testing.assert_allclose(dx, gap_backward_ref(dy, shape), **_tol(dtype))


@pytest.mark.parametrize("shape", SHAPES)
def test_backward_finite_differences(rng, shape):
    x = rng.standard_normal(shape)
    dout = rng.standard_normal(shape[:2])
    numeric = numerical_grad(F.gap_forward, [x], 0, dout)
    assert_close(F.gap_backward(dout, x.shape), numeric, rtol=1e-6, atol=1e-8)


def test_float32_sums_in_float64():
    # a plane of 10,000 values that float32 accumulation would round: 1e4 * (1 + 2^-20)
    x = np.full((1, 1, 100, 100), 1 + 2.0 ** -20, dtype=np.float32)
    x[0, 0, 0, 0] = 2.0 ** 12
    want = np.float32((2.0 ** 12 + 9999 * (1 + 2.0 ** -20)) / 1e4)
    assert F.gap_forward(x)[0, 0] == want


def test_non_contiguous_input_is_copied(rng):
    x = rng.standard_normal((3, 4, 6, 5))[:, ::2, :, ::2]
    np.testing.assert_allclose(F.gap_forward(x), gap_ref(x), rtol=1e-13)


def test_empty_batch():
    assert F.gap_forward(np.zeros((0, 3, 2, 2), np.float32)).shape == (0, 3)
    assert F.gap_backward(np.zeros((0, 3), np.float32), (0, 3, 2, 2)).shape == (0, 3, 2, 2)


def test_bad_input_names_what_is_wrong():
    with pytest.raises(ValueError, match="x must be 4-D"):
        F.gap_forward(np.zeros((2, 3, 4)))
    with pytest.raises(TypeError, match="float32 or float64"):
        F.gap_forward(np.zeros((1, 1, 2, 2), np.int64))
    with pytest.raises(ValueError, match="H, W >= 1"):
        F.gap_forward(np.zeros((1, 1, 0, 2)))
    with pytest.raises(ValueError, match=r"x_shape must be \(N, C, H, W\)"):
        F.gap_backward(np.zeros((2, 3)), (2, 4, 5, 5))
    with pytest.raises(ValueError, match="dy must be 2-D"):
        F.gap_backward(np.zeros((2, 3, 1)), (2, 3, 5, 5))


# ------------------------------------------------------------------ the layer and the grammar --


def test_layer_forward_backward_and_shape(rng):
    layer = nn.GlobalAvgPool2D()
    x = rng.standard_normal((2, 3, 4, 4))
    y = layer.forward(x)
    np.testing.assert_allclose(y, gap_ref(x), rtol=1e-13)
    np.testing.assert_allclose(layer.backward(np.ones_like(y)), np.full(x.shape, 1 / 16))
    assert layer.output_shape((3, 4, 4)) == (3,) and layer.output_shape((5, 3, 4, 4)) == (5, 3)
    assert layer.num_parameters() == 0
    with pytest.raises(RuntimeError, match="needs a forward first"):
        layer.backward(np.ones_like(y))  # the first backward released what forward saved


def test_spec_token_parses_plans_and_builds():
    layers = arch.parse(CAM_NET)
    assert [layer.kind for layer in layers] == ["conv", "act", "conv", "act", "gap", "fc"]
    rows = arch.plan(layers, (1, 8, 8))
    assert rows[4].kind == "gap" and rows[4].out_shape == (6,) and rows[4].params == 0
    assert rows[4].multiply_adds == 6 * 8 * 8
    assert rows[5].weights == 6 * 3  # the fc reads the 6 means, not 6x8x8 values
    model = arch.build(layers, (1, 8, 8), np.random.default_rng(0), np.float64)
    assert isinstance(model[4], nn.GlobalAvgPool2D) and not any(isinstance(m, nn.Flatten) for m in model)
    x = np.random.default_rng(1).standard_normal((2, 1, 8, 8))
    assert model.forward(x).shape == (2, 3)


def test_whole_network_gradient_through_gap(rng):
    model = arch.build(arch.parse("conv2x3x3:p=same-tanh-gap-fc3"), (1, 4, 4), np.random.default_rng(3),
                       np.float64)
    x = rng.standard_normal((2, 1, 4, 4))
    dout = rng.standard_normal((2, 3))
    model.forward(x)
    dx = model.backward(dout)
    assert_close(dx, numerical_grad(model.forward, [x], 0, dout), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("spec, message", [
    ("fc10-gap", r"layer 2 \(gap\) on input 10: needs a \(C, H, W\) input, not a flat one"),
    ("conv4x3-gap:s=2-fc3", "only conv and pool layers take options"),
    ("conv4x3-gapp-fc3", "expected convFxKHxKW, poolK, gap,"),
])
def test_bad_gap_specs(spec, message):
    with pytest.raises(ValueError, match=message):
        arch.plan(arch.parse(spec), (1, 8, 8))


def test_shapes_command_counts_gap():
    result = CliRunner().invoke(main, ["shapes", "--arch", CAM_NET, "--input", "1x8x8", "--csv"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    gap = next(line for line in lines if ",gap," in line)
    assert gap.split(",")[3:9] == ["6", "0", "0", "0", "6", "384"]  # output, weights, biases, params, neurons, madds
    text = CliRunner().invoke(main, ["shapes", "--arch", CAM_NET, "--input", "1x8x8"]).output
    # neurons of conv, pool, gap and fc layers: conv 4x8x8 + conv 6x8x8 + gap 6 + fc 3
    assert f"{4 * 64 + 6 * 64 + 6 + 3:,} neurons" in text


def test_train_cnn_trains_a_gap_network(tmp_path):
    result = CliRunner().invoke(main, ["train-cnn", "--arch", "conv4x3x3:p=same-relu-gap-fc10", "--epochs", "1",
                                       "--no-plot", "--quiet", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "gap-fc10: 90 parameters" in result.output


# ------------------------------------------------------------------ CUDA (simulator or GPU) --


@pytest.mark.cuda
@pytest.mark.skipif(not _USABLE, reason=f"needs NUMBA_ENABLE_CUDASIM=1 or a GPU: {_REASON}")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (3, 13, 1, 3), (1, 1, 1, 1)])
def test_cuda_forward_backward_match_the_cpu(rng, shape, dtype):
    from numbanets.device import to_device

    x = rng.standard_normal(shape).astype(dtype)
    gy = F.gap_forward(to_device(x))
    assert F.array_device(gy) == "cuda"
    np.testing.assert_allclose(gy.copy_to_host(), F.gap_forward(x), **_tol(dtype))
    dy = rng.standard_normal(shape[:2]).astype(dtype)
    gdx = F.gap_backward(to_device(dy), shape)
    assert F.array_device(gdx) == "cuda"
    np.testing.assert_allclose(gdx.copy_to_host(), gap_backward_ref(dy, shape).astype(dtype), **_tol(dtype))


@pytest.mark.cuda
@pytest.mark.skipif(not _USABLE, reason=f"needs NUMBA_ENABLE_CUDASIM=1 or a GPU: {_REASON}")
def test_cuda_layer_in_a_network_matches_the_cpu(rng):
    spec = arch.parse("conv3x3x3:p=same-relu-gap-fc4")
    cpu = arch.build(spec, (2, 5, 5), np.random.default_rng(0), np.float64)
    gpu = arch.build(spec, (2, 5, 5), np.random.default_rng(0), np.float64).to("cuda")
    from numbanets.device import to_device

    x = rng.standard_normal((3, 2, 5, 5))
    dout = rng.standard_normal((3, 4))
    np.testing.assert_allclose(gpu.forward(to_device(x)).copy_to_host(), cpu.forward(x), rtol=1e-12)
    np.testing.assert_allclose(gpu.backward(to_device(dout)).copy_to_host(), cpu.backward(dout), rtol=1e-11,
                               atol=1e-13)
