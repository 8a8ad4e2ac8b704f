"""What sample's and shapes' manuals and --help promise, through the command line (issue 24, item 9).

- sample --device cuda without a usable GPU is one line, exit 2, and no text; --device auto falls back
  to the CPU and gives the very text of --device cpu;
- shapes --input: replaces a built-in network's own input (every size, count and the lecture's
  comparison follow it), gives a custom spec its input, takes a flat size D for a network of fc layers,
  and a malformed or missing --input is one line, exit 2.
"""

from __future__ import annotations

import io

import pandas as pd
import pytest
from click.testing import CliRunner

from numbanets.device import cuda_status
from runner.cli import main

TEXT = "def f(x):\n    return x + 1\n\n" * 120


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _one_line_exit_2(result) -> str:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert "Traceback" not in result.output
    return lines[0]


# --------------------------------------------------------------------------- sample --device cuda

@pytest.fixture(scope="module")
def charlm_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sample")
    corpus = tmp / "code.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    result = invoke("train-charlm", "--corpus", corpus, "--hidden", 8, "--layers", 1, "--seq-len", 8,
                    "--batch-size", 2, "--steps", 3, "--sample-length", 0, "--quiet", "--device", "cpu",
                    "--out", tmp / "out")
    assert result.exit_code == 0, result.output
    (run,) = (tmp / "out" / "train-charlm").iterdir()
    return run


@pytest.mark.skipif(cuda_status()[0], reason="a GPU (or the CUDA simulator) is usable here")
def test_sample_device_cuda_without_a_gpu_is_one_line_exit_2(charlm_run):
    args = ["sample", charlm_run, "--prime", "def ", "--length", 30, "--seed", 4]
    cpu = invoke(*args, "--device", "cpu")
    assert cpu.exit_code == 0, cpu.output
    assert cpu.output.startswith("def ") and len(cpu.output) == 4 + 30 + 1
    assert invoke(*args, "--device", "auto").output == cpu.output  # auto: the CPU here, the same text
    before = sorted(p.name for p in charlm_run.iterdir())
    line = _one_line_exit_2(invoke(*args, "--device", "cuda"))
    assert line == f"Error: --device cuda was asked for but {cuda_status()[1]}", line
    assert sorted(p.name for p in charlm_run.iterdir()) == before


# --------------------------------------------------------------------------- shapes --input

def _csv(*args) -> pd.DataFrame:
    result = invoke("shapes", *args, "--csv")
    assert result.exit_code == 0, result.output
    return pd.read_csv(io.StringIO(result.output), dtype={"output": str})


def test_shapes_input_replaces_a_builtin_networks_own_input():
    own = _csv("--arch", "lecture")
    assert own.output.tolist() == ["20x204x204"]  # 3x200x200, p=full: 200 + 4 - 5 + 1 + 4
    small = _csv("--arch", "lecture", "--input", "3x32x32")
    assert small.output.tolist() == ["20x36x36"]
    row = small.iloc[0]
    assert (row.weights, row.biases, row.params) == (1500, 0, 1500)  # shared weights: the input does not matter
    assert row.neurons == 20 * 36 * 36 and row.multiply_adds == 20 * 36 * 36 * 3 * 5 * 5
    text = invoke("shapes", "--arch", "lecture", "--input", "3x32x32").output
    assert text.splitlines()[0] == "arch: lecture   input: 3x32x32"
    assert f"total: 1,500 parameters, {20 * 36 * 36:,} neurons, {20 * 36 * 36 * 75:,} multiply-adds" in text
    assert f"fully connected instead: 1,024 neurons on the 3x32x32 image need {1024 * 3 * 32 * 32:,} weights" in text

    digits = _csv("--arch", "digits", "--input", "1x16x16")
    assert digits.output.tolist() == ["32x16x16", "32x16x16", "32x8x8", "64x8x8", "64x8x8", "64x4x4", "10"]
    assert digits.params.tolist() == [320, 0, 0, 18496, 0, 0, 64 * 4 * 4 * 10 + 10]
    assert _csv("--arch", "digits").params.iloc[-1] == 64 * 2 * 2 * 10 + 10  # its own 1x8x8


def test_shapes_input_of_a_custom_spec_and_a_flat_size():
    frame = _csv("--arch", "conv6x3x3:s=2-relu-fc4", "--input", "2x9x9")
    assert frame.output.tolist() == ["6x4x4", "6x4x4", "4"]
    assert frame.params.tolist() == [6 * 2 * 9 + 6, 0, 6 * 16 * 4 + 4]
    flat = _csv("--arch", "fc10-relu-fc3", "--input", "20")
    assert flat.output.tolist() == ["10", "10", "3"]
    assert flat.params.tolist() == [20 * 10 + 10, 0, 10 * 3 + 3]
    assert flat.multiply_adds.tolist()[0] == 200


@pytest.mark.parametrize("args, needle", [
    (["--arch", "conv4x3x3-fc2"], "--input is needed for a custom --arch, e.g. --input 3x32x32"),
    (["--arch", "lecture", "--input", "3x32"], "--input must be CxHxW (e.g. 3x32x32) or a flat size D, got '3x32'"),
    (["--arch", "lecture", "--input", "3x0x32"], "got '3x0x32'"),
    (["--arch", "lecture", "--input", "3x32x32x1"], "got '3x32x32x1'"),
    (["--arch", "lecture", "--input", "axbxc"], "got 'axbxc'"),
    (["--arch", "conv4x5x5-fc2", "--input", "1x3x3"], "output would be empty"),
])
def test_shapes_bad_or_missing_input_is_one_line_exit_2(args, needle):
    line = _one_line_exit_2(invoke("shapes", *args))
    assert needle in line, line
