"""`nbnets --version` and `nbnets info` through click's CliRunner."""

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
