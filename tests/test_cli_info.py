"""`nbnets --version` and `nbnets info` through click's CliRunner."""

import pytest
from click.testing import CliRunner

import numbanets
from runner.cli import main


def test_version():
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert numbanets.__version__ in result.output


def test_info_lists_versions_threads_blas_device():
    result = CliRunner().invoke(main, ["info"])
    assert result.exit_code == 0, result.output
    for key in ("numbanets", "numba", "numpy", "python", "numba threads", "BLAS (kernels)", "BLAS (numpy)",
                "CUDA available", "device auto"):
        assert any(line.startswith(key) for line in result.output.splitlines()), key


def test_info_names_the_recurrent_gemm_and_its_choice():
    from numbanets.kernels.cpu import packed_gemm

    before = packed_gemm.RECURRENT_GEMM[0]
    try:
        packed_gemm.RECURRENT_GEMM[0] = "blas"
        result = CliRunner().invoke(main, ["info"])
        assert "recurrent GEMM  plain (NUMBANETS_RECURRENT_GEMM=blas)" in result.output
        packed_gemm.RECURRENT_GEMM[0] = "panels"
        result = CliRunner().invoke(main, ["info"])
        assert "recurrent GEMM  panels (NUMBANETS_RECURRENT_GEMM=panels)" in result.output
    finally:
        packed_gemm.RECURRENT_GEMM[0] = before


def test_usage_errors_are_one_line_with_exit_code_2(tmp_path):
    cases = [
        (["train-charlm", "--hidden", "-3", "--out", str(tmp_path)], "Invalid value for '--hidden'", "train-charlm"),
        (["train-cnn", "--bogus"], "No such option '--bogus'", "train-cnn"),
        (["analyse"], "Missing argument", "analyse"),
        (["train-charlmx"], "No such command 'train-charlmx'", ""),
    ]
    for args, message, command in cases:
        result = CliRunner().invoke(main, args, prog_name="nbnets")
        assert result.exit_code == 2, (args, result.output)
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], (args, result.output)
        assert lines[0].endswith(f"(see '{' '.join(['nbnets', command]).strip()} --help')"), lines[0]
    assert list(tmp_path.iterdir()) == []  # nothing written for a rejected option


@pytest.mark.parametrize("variable, value, command", [("NUMBANETS_BLAS", "bogus", ["train-cnn", "--epochs", "1"]),
                                                      ("NUMBANETS_RECURRENT_GEMM", "fast", ["info"])])
def test_a_bad_kernel_setting_is_a_one_line_error(tmp_path, variable, value, command):
    # read when the kernels that use it load (the recurrent one by info and the recurrent kernels, not by
    # train-cnn), in a fresh process: one line naming the variable and its choices, exit code 2, no
    # traceback, nothing written
    import os
    import subprocess
    import sys

    env = {**os.environ, variable: value}
    out = ["--out", str(tmp_path / "out")] if command[0] != "info" else []
    proc = subprocess.run([sys.executable, "-c", "from runner.cli import main; main()", *command, *out], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: {variable} must be") and repr(value) in lines[0], lines
    assert not (tmp_path / "out").exists()
