"""`nbnets`: the numbanets command line. One thin function per command.

Bad input becomes a one-line message and exit code 2 (click's usage errors),
never a traceback.
"""

from __future__ import annotations

import functools

import click

import numbanets


def user_errors(func):
    """Turn the library's ValueError/TypeError/DeviceUnavailable into one-line exit-2 errors."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from numbanets.device import DeviceUnavailable

        try:
            return func(*args, **kwargs)
        except (ValueError, TypeError, DeviceUnavailable, FileNotFoundError) as exc:
            raise click.UsageError(str(exc)) from None

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(numbanets.__version__, prog_name="nbnets", message="%(prog)s (numbanets) %(version)s")
def main():
    """numbanets: Numba kernels for convolution, pooling, RNNs and LSTMs, with
    their backward passes, and the experiments that measure them.

    Every command writes its results as CSV tables under results/ (change with
    --out) that `nbnets analyse` reads back.
    """


@main.command()
@user_errors
def info():
    """Versions, CPU threads, BLAS, and the device that --device auto picks (and why)."""
    from runner.info import collect

    facts = collect()
    width = max(map(len, facts))
    for key, value in facts.items():
        click.echo(f"{key:<{width}}  {value}")
