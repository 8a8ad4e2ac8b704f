"""The `nbnets` click group; the commands register on it from the other modules of runner.cli."""

from __future__ import annotations

import click

import numbanets
from runner.common.console import Commands


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(numbanets.__version__, prog_name="nbnets", message="%(prog)s (numbanets) %(version)s")
def main():
    """numbanets: Numba kernels for convolution, pooling, RNNs and LSTMs, with
    their backward passes, and the experiments that measure them.

    Every command writes its results as CSV tables under results/ (change with
    --out) that `nbnets analyse` reads back.
    """
