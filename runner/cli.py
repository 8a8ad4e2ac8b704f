"""`nbnets`: the numbanets command line. One thin function per command.

Bad input becomes a one-line message and exit code 2 (InputError, or click's
own usage errors for malformed options), never a traceback.
"""

from __future__ import annotations

import functools

import click

import numbanets


class InputError(click.ClickException):
    """Bad input: printed as one line `Error: ...`, exit code 2, no traceback."""

    exit_code = 2


def user_errors(func):
    """Turn the library's ValueError/TypeError/DeviceUnavailable into one-line exit-2 errors."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from numbanets.device import DeviceUnavailable

        try:
            return func(*args, **kwargs)
        except (ValueError, TypeError, DeviceUnavailable, FileNotFoundError) as exc:
            raise InputError(str(exc)) from None

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


@main.command()
@click.option("--arch", "arch_spec", default="lecture", show_default=True,
              help="A built-in network (lecture, alexnet, digits) or a spec such as "
                   "conv8x3x3:p=same-relu-pool2-fc10 (see `nbnets train-cnn --help` for the grammar).")
@click.option("--input", "input_size", default=None,
              help="Input size CxHxW, e.g. 3x32x32 (default: the built-in arch's own input).")
@click.option("--csv", "as_csv", is_flag=True, help="Print the table as CSV instead of aligned text.")
@click.option("--pooling", is_flag=True, help="Also print the classic pooling size examples.")
@user_errors
def shapes(arch_spec, input_size, as_csv, pooling):
    """Per-layer output size, parameters, neurons and multiply-adds of a CNN.

    Every number comes from numbanets.shapes, the arithmetic the kernels use:
    out = floor((M + p_before + p_after - K) / s) + 1 per spatial dimension.
    """
    from runner import shapes_cmd

    spec, shape, label = shapes_cmd.resolve_arch(arch_spec, input_size)
    frame = shapes_cmd.table(spec, shape)
    if as_csv:
        click.echo(frame.to_csv(index=False), nl=False)
    else:
        click.echo(shapes_cmd.render(frame, label, shape))
    if pooling:
        click.echo(shapes_cmd.pooling_examples())
