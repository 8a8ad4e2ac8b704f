"""The CNN spec parser, its per-layer arithmetic, and `nbnets shapes`."""

import io

import pandas as pd
import pytest
from click.testing import CliRunner

from numbanets.nn import arch
from runner.cli import main


def _plan(name):
    spec, shape = arch.BUILTIN[name]
    return arch.plan(arch.parse(spec), shape)


def test_lecture_numbers():
    (conv,) = _plan("lecture")
    assert conv.out_shape == (20, 204, 204)
    assert conv.weights == 1500 and conv.biases == 0
    assert conv.neurons == 832_320


def test_alexnet_numbers():
    rows = _plan("alexnet")
    assert sum(r.params for r in rows) == 60_965_224
    convs = [r for r in rows if r.kind == "conv"]
    assert [r.out_shape for r in convs] == [(96, 55, 55), (256, 27, 27), (384, 13, 13), (384, 13, 13), (256, 13, 13)]
    assert [r.params for r in convs] == [34_944, 307_456, 885_120, 663_936, 442_624]
    pools = [r.out_shape for r in rows if r.kind == "pool"]
    assert pools == [(96, 27, 27), (256, 13, 13), (256, 6, 6)]
    assert [r.params for r in rows if r.kind == "fc"] == [37_752_832, 16_781_312, 4_097_000]


def test_quoted_formula_disagreement_is_noted():
    (row,) = arch.plan(arch.parse("conv2x5x5:p=full:s=2"), (3, 200, 200))
    assert row.out_shape == (2, 102, 102)
    assert any("disagrees" in n for n in row.notes)
    (row,) = arch.plan(arch.parse("conv2x5x5:p=full"), (3, 200, 200))
    assert row.notes == []


@pytest.mark.parametrize(
    "spec, token",
    [("conv8x3x3:q=1-relu", "conv8x3x3:q=1"), ("relu-fc0", "fc0"), ("pool2:g=2", "pool2:g=2"),
     ("conv8x3x3-blah-fc10", "blah"), ("convx3", "convx3"), ("relu:s=2", "relu:s=2")],
)
def test_bad_token_is_named(spec, token):
    with pytest.raises(arch.ArchError, match=f"'{token}'"):
        arch.parse(spec)


def test_empty_output_names_layer_and_sizes():
    with pytest.raises(ValueError, match=r"layer 2 \(conv8x5x5\) on input 4x4x4: output would be empty"):
        arch.plan(arch.parse("conv4x1x1-conv8x5x5"), (1, 4, 4))


def test_cli_shapes_csv_and_pooling():
    result = CliRunner().invoke(main, ["shapes", "--arch", "alexnet", "--csv"])
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(io.StringIO(result.output))
    assert frame["params"].sum() == 60_965_224
    result = CliRunner().invoke(main, ["shapes", "--pooling"])
    assert "832,320" in result.output and "1,500" in result.output
    assert "stride 1: 3 outputs" in result.output and "stride 2: 2 outputs" in result.output
    assert "5x5, window 3x3, stride 1: 3x3" in result.output


def test_cli_shapes_bad_arch_is_one_line_exit_2():
    result = CliRunner().invoke(main, ["shapes", "--arch", "conv8x3x3:z=1"])
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0
    assert "conv8x3x3:z=1" in result.output
