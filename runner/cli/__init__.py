"""`nbnets`: the numbanets command line. One thin function per command.

Bad input becomes a one-line message and exit code 2 (InputError, or click's
own usage errors for malformed options, shortened to one line), never a traceback.

Every command imports its package inside its function: `nbnets --help` and a
command's `--help` then load click alone, not numba and the kernels (seconds).
That is the one reason for function-level imports in runner.cli. Each command's
--help ends with the path of its manual (docs/commands/<command>.md).

    group.py        the `nbnets` group
    tools.py        info, shapes, bench, analyse, heatmap
    training.py     train-cnn, export-json, train-charlm, sample
    experiments.py  grad-decay, memory, sweep
    floats.py       float option types that refuse inf and nan
"""

from runner.cli import experiments, tools, training  # noqa: F401 - each registers its commands on main
from runner.cli.group import main

__all__ = ["main"]
