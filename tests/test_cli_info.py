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
    for key in ("numbanets", "numba", "numpy", "python", "numba threads", "BLAS", "CUDA available", "device auto"):
        assert any(line.startswith(key) for line in result.output.splitlines()), key
