"""nbnets grad-decay, memory and sweep: the experiments that measure a claim, one run or a grid of them."""

from __future__ import annotations

import click

from runner.cli.floats import FINITE, FiniteFloatRange
from runner.cli.group import main
from runner.common.console import AliasedOption, manual, user_errors


def _grad_decay_cells(ctx, param, value):
    from numbanets.gradstats import CELLS  # start-up time: numbanets.gradstats loads numba

    cells = tuple(dict.fromkeys(c.strip().lower() for c in value.split(",") if c.strip()))
    bad = [c for c in cells if c not in CELLS]
    if bad or not cells:
        raise click.BadParameter(f"unknown cell {bad[0] if bad else value!r}; choose from {', '.join(CELLS)}")
    return cells


@main.command("grad-decay", epilog=manual("grad-decay"))
@click.option("--steps", type=click.IntRange(min=1), default=7, show_default=True, help="Time steps T to unroll.")
@click.option("--cells", default="rnn-tanh,rnn-sigmoid,rnn-relu,lstm", show_default=True, callback=_grad_decay_cells,
              help="Comma-separated cells: rnn-tanh, rnn-sigmoid, rnn-relu, rnn-identity (linear), lstm, gru.")
@click.option("--hidden", type=click.IntRange(min=1), default=32, show_default=True, help="Hidden units H.")
@click.option("--input-size", type=click.IntRange(min=1), default=None,
              help="Input size D (default 16; with --input corpus the vocabulary size).")
@click.option("--batch-size", "--batch", "batch", cls=AliasedOption, hidden_aliases=("--batch",),
              type=click.IntRange(min=1), default=4, show_default=True,
              help="Sequences N per draw; per-step values are means over them.")
@click.option("--init", type=click.Choice(("normal", "uniform", "orthogonal", "identity", "zero")), default="normal",
              show_default=True, help="Recurrent weights, times --scale: normal N(0, g^2/H), uniform (same variance), "
                                      "orthogonal g*Q, identity g*I, zero (no recurrence; --scale ignored).")
@click.option("--scale", type=FiniteFloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="Gain g > 0 of the recurrent weights.")
@click.option("--forget-bias", type=FINITE, default=1.0, show_default=True, help="LSTM forget-gate bias.")
@click.option("--bias", type=FINITE, default=0.0, show_default=True, help="Bias of every RNN unit (e.g. -c/2 "
                                                                         "for the sigmoid fixed point); the GRU's "
                                                                         "update-gate bias.")
@click.option("--h0", type=FINITE, default=0.0, show_default=True, help="Initial hidden state of every unit "
                                                                        "(the LSTM's c0 is 0).")
@click.option("--input", "input_kind", type=click.Choice(("random", "zero", "corpus")), default=None,
              help="Inputs x_t: N(0, 1), zeros, or one-hot windows of the char-LM corpus "
                   "[default: random; corpus with --train-steps].")
@click.option("--seeds", type=click.IntRange(min=1), default=1, show_default=True,
              help="Independent draws of weights and inputs (seeds S..S+K-1), each its own rows.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="S, the first draw's seed.")
@click.option("--train-steps", type=click.IntRange(min=0), default=0, show_default=True,
              help="Train a char LM with these cells for S steps, recording at steps 0, R, 2R, ... (column phase).")
@click.option("--record-every", type=click.IntRange(min=1), default=None,
              help="R for --train-steps (default: S/4, at least 1).")
@click.option("--device", type=click.Choice(("auto", "cpu", "cuda")), default="auto", show_default=True,
              help="Where --train-steps trains; the statistics run on the host in float64.")
@click.option("--out", default="results", show_default=True, type=click.Path(file_okay=False),
              help="Results folder; the run goes to OUT/grad-decay/<timestamp>-<id>/.")
@click.option("--plot/--no-plot", default=True, show_default=True,
              help="Write grad_decay.png (needs the plot extra: pip install -e '.[plot]').")
@user_errors
def grad_decay(**params):
    """Vanishing and exploding gradients, measured per time step.

    Unrolls each cell for T steps and writes per cell and step t: ||dL/dh_t||,
    ||dh_T/dh_t||, the sensitivity to the first input, activation saturation and
    (LSTM) gates, plus a summary with rho(W_hh), lambda1 * gamma (Pascanu et al.
    2013) and the fitted decay per step.
    """
    from runner.graddecay import command, options as graddecay_options  # start-up time

    command.run(graddecay_options.from_params(params), echo=click.echo)


@main.command(epilog=manual("sweep"))
@click.argument("experiment", metavar="[COMMAND]", required=False)
@click.option("--grid", "grids", metavar="KEY=V1,V2,...", multiple=True,
              help="Values of one option of COMMAND (repeatable; the runs are the product of the grids).")
@click.option("--set", "sets", metavar="KEY=V", multiple=True, help="An option of COMMAND fixed for every run.")
@click.option("--seeds", default=None, metavar="A-B|A,B,...",
              help="Run every grid point once per seed (COMMAND's --seed) [default: 0].")
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="A running Dask scheduler, e.g. tcp://10.0.0.5:8786 (default: a local cluster on 127.0.0.1).")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Worker processes of the local cluster [default: the cores / --threads-per-worker].")
@click.option("--threads-per-worker", type=click.IntRange(min=1), default=None,
              help="numba and BLAS threads of every run; each worker runs one run at a time [default: 1 on the "
                   "local cluster; on a --scheduler cluster, each machine's cores / the Dask threads of its "
                   "workers].")
@click.option("--retries", type=click.IntRange(min=0), default=2, show_default=True,
              help="How often a run whose worker died (killed, out of memory) is given to another worker; "
                   "train-charlm and train-cnn runs resume from their last checkpoint.")
@click.option("--checkpoint-every", type=FiniteFloatRange(min=0), default=30.0, show_default=True,
              metavar="SECONDS", help="Send a run's checkpoint to the scheduler at most this often (0: every "
                                      "checkpoint); a run whose worker dies resumes from the last one sent.")
@click.option("--connect-timeout", type=FiniteFloatRange(min=0, min_open=True), default=10.0, show_default=True,
              help="Seconds to wait for --scheduler before giving up.")
@click.option("--out", default="results", show_default=True, type=click.Path(file_okay=False),
              help="Results folder; the sweep goes to OUT/sweep/<timestamp>-<id>/.")
@click.option("--resume", type=click.Path(file_okay=False), default=None, metavar="SWEEP_DIR",
              help="Run what a sweep folder still misses, with its stored command, grid and seeds.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.pass_context
@user_errors
def sweep(ctx, experiment, grids, sets, seeds, scheduler, workers, threads_per_worker, retries, checkpoint_every,
          connect_timeout, out, resume, quiet):
    """Run a grid of runs of train-charlm, train-cnn or grad-decay on Dask distributed.

    \b
      nbnets sweep grad-decay --grid cells=rnn-tanh,lstm --grid scale=0.5,1,2 --seeds 0-9
      nbnets sweep train-cnn --grid arch=digits,conv16x3x3:p=same-relu-pool2-fc10 --seeds 0-4 --set epochs=6
      nbnets sweep train-charlm --grid hidden=64,128 --set steps=300 --scheduler tcp://10.0.0.5:8786
      nbnets sweep --resume results/sweep/<id>/

    KEYs are COMMAND's option names (hidden, batch-size, lr, ...); every value
    is checked by COMMAND's own option before anything runs. Each run executes
    in a worker process through the same code as COMMAND alone and is sent back
    to OUT/sweep/<timestamp>-<id>/runs/<run>/; sweep.csv has one row per run
    with its grid values, seed, status and headline numbers (`nbnets analyse
    SWEEP_DIR` gives mean and 95 % interval over seeds). Exit code 1 when a run
    failed, 130 after Ctrl-C (finished runs kept; --resume continues).
    """
    from runner.sweep import command as sweep_command  # start-up time
    from runner.common.cluster import Where  # start-up time

    request = sweep_command.Request(
        experiment=experiment, grids=grids, sets=sets, seeds=seeds, out=out, resume=resume, quiet=quiet,
        where=Where(scheduler=scheduler, workers=workers, threads=threads_per_worker,
                    connect_timeout=connect_timeout, retries=retries, checkpoint_every=checkpoint_every))
    result = sweep_command.run(main.commands, request, echo=click.echo)
    if result.interrupted:
        ctx.exit(130)
    if result.failed:
        ctx.exit(1)


@main.command(epilog=manual("memory"))
@click.option("--task", type=click.Choice(("recall", "adding")), default="recall", show_default=True,
              help="recall: a context symbol, DISTANCE fillers, a query whose answer is the context's; adding: "
                   "the sum of two marked values among DISTANCE steps (Hochreiter & Schmidhuber 1997).")
@click.option("--cells", default="rnn-tanh,rnn-relu,lstm", show_default=True,
              help="Comma-separated cells: rnn-tanh, rnn-sigmoid, rnn-relu (identity init, IRNN), rnn-identity, "
                   "lstm, gru.")
@click.option("--distances", default="5,10,20,40,80", show_default=True,
              help="Comma-separated distances (steps between the context and the query; the adding length).")
@click.option("--seeds", default="0-2", show_default=True, metavar="A-B|A,B,...", help="Seeds of every point.")
@click.option("--hidden", type=click.IntRange(min=1), default=64, show_default=True, help="Hidden units H.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True,
              help="Sequences per training step.")
@click.option("--lr", type=FiniteFloatRange(min=0, min_open=True), default=3e-3, show_default=True,
              help="Adam's learning rate.")
@click.option("--clip", type=FiniteFloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="Clip the global gradient norm to this.")
@click.option("--max-steps", type=click.IntRange(min=1), default=3000, show_default=True,
              help="Training steps before a run counts as unsolved.")
@click.option("--eval-every", type=click.IntRange(min=1), default=100, show_default=True,
              help="Evaluate on the held-out sequences every this many steps.")
@click.option("--solved", type=FINITE, default=0.99, show_default=True,
              help="recall: the test accuracy that counts as solved, in (0, 1] (adding: MSE <= 0.01).")
@click.option("--test-size", type=click.IntRange(min=1), default=512, show_default=True,
              help="Held-out sequences per run.")
@click.option("--symbols", type=int, default=8, show_default=True, help="recall: K contexts (chance 1/K).")
@click.option("--fillers", type=click.IntRange(min=1), default=10, show_default=True,
              help="recall: filler symbols between the context and the query.")
@click.option("--forget", is_flag=True,
              help="recall: half the sequences hold an end of line and a new context; the answer follows it.")
@click.option("--forget-bias", type=FINITE, default=1.0, show_default=True, help="The LSTM's forget-gate bias.")
@click.option("--search", is_flag=True,
              help="Find each cell's largest distance: double from --min-distance while a majority of the seeds "
                   "solve it, then bisect to --resolution (--distances is then ignored).")
@click.option("--min-distance", type=click.IntRange(min=1), default=2, show_default=True,
              help="--search: the first distance tried.")
@click.option("--max-distance", type=click.IntRange(min=1), default=1024, show_default=True,
              help="--search: never beyond this distance.")
@click.option("--resolution", type=click.IntRange(min=1), default=2, show_default=True,
              help="--search stops when the last success and the first failure are this close.")
@click.option("--show", type=click.IntRange(min=0), default=0, show_default=True,
              help="Print this many generated sequences in words first.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Local Dask worker processes [default: the cores / --threads-per-worker]; 1: every run in "
                   "this process, no Dask.")
@click.option("--threads-per-worker", type=click.IntRange(min=1), default=None,
              help="numba and BLAS threads of every run [default: 1].")
@click.option("--scheduler", default=None, metavar="ADDRESS", help="A running Dask scheduler (as nbnets sweep).")
@click.option("--connect-timeout", type=FiniteFloatRange(min=0, min_open=True), default=10.0, show_default=True,
              help="Seconds to wait for --scheduler.")
@click.option("--out", default="results", show_default=True, type=click.Path(file_okay=False),
              help="Results folder; the run goes to OUT/memory/<timestamp>-<id>/.")
@click.option("--plot/--no-plot", default=True, show_default=True,
              help="Write memory.png (needs the plot extra: pip install -e '.[plot]').")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@user_errors
def memory(workers, threads_per_worker, scheduler, connect_timeout, **options):
    """How far back can each cell remember? Train RNNs and LSTMs on recall or
    adding sequences at growing distances and report which distances each learns.

    Each (cell, distance, seed) is one training run, on the Dask engine of
    `nbnets sweep` (a local cluster by default). Writes memory.csv (every
    evaluation), summary.csv (one row per run), max_distance.csv (--search)
    and memory.png to OUT/memory/<timestamp>-<id>/, and prints cell x distance:
    solved seeds / seeds (median steps to solve).
    """
    from runner.common.cluster import Where  # start-up time
    from runner.memory import command, options as memory_options  # start-up time

    where = Where(scheduler=scheduler, workers=workers, threads=threads_per_worker, connect_timeout=connect_timeout,
                  retries=2)
    command.run(memory_options.Options(**options), where, echo=click.echo)
