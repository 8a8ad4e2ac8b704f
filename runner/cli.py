"""`nbnets`: the numbanets command line. One thin function per command.

Bad input becomes a one-line message and exit code 2 (InputError, or click's
own usage errors for malformed options, shortened to one line), never a traceback.

Every command imports its package inside its function: `nbnets --help` and a
command's `--help` then load click alone, not numba and the kernels (seconds).
That is the one reason for function-level imports here. Each command's --help
ends with the path of its manual (docs/commands/<command>.md).
"""

from __future__ import annotations

import click

import numbanets
from runner.common.console import AliasedOption, Commands, given_options, manual, user_errors


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(numbanets.__version__, prog_name="nbnets", message="%(prog)s (numbanets) %(version)s")
def main():
    """numbanets: Numba kernels for convolution, pooling, RNNs and LSTMs, with
    their backward passes, and the experiments that measure them.

    Every command writes its results as CSV tables under results/ (change with
    --out) that `nbnets analyse` reads back.
    """


@main.command(epilog=manual("info"))
@user_errors
def info():
    """Versions, CPU threads, BLAS, and the device that --device auto picks (and why)."""
    from runner.info import collect  # start-up time (see the module docstring)

    facts = collect()
    width = max(map(len, facts))
    for key, value in facts.items():
        click.echo(f"{key:<{width}}  {value}")


@main.command(epilog=manual("shapes"))
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
    from runner import shapes as shapes_cmd  # start-up time

    spec, shape, label = shapes_cmd.resolve_arch(arch_spec, input_size)
    frame = shapes_cmd.table(spec, shape)
    if as_csv:
        click.echo(frame.to_csv(index=False), nl=False)
    else:
        click.echo(shapes_cmd.render(frame, label, shape))
    if pooling:
        click.echo(shapes_cmd.pooling_examples())


# runner.cnn.options' defaults, kept here so --help needs no import (tests/test_cli_cnn.py checks they agree)
_CNN_DEFAULT_EPOCHS = 12
_CNN_DEFAULT_BATCH = 32


@main.command("train-cnn", epilog=manual("train-cnn"))
@click.option("--arch", default="digits", show_default=True,
              help="The network: a spec (grammar above) or a built-in name (digits, lecture, alexnet).")
@click.option("--data", type=click.Path(dir_okay=False), default=None,
              help="An .npz with arrays x (N, C, H, W) or (N, H, W) and integer labels y (N,), optionally "
                   "x_test/y_test (default: scikit-learn's 8x8 handwritten digits, no download).")
@click.option("--test-fraction", type=click.FloatRange(min=0, max=1, min_open=True, max_open=True), default=0.2,
              show_default=True, help="Held-out test share of a stratified split (split seed 0, fixed).")
@click.option("--epochs", type=click.IntRange(min=0), default=_CNN_DEFAULT_EPOCHS, show_default=True,
              help="Passes over the training set (0: evaluate only). With --resume: continue up to this epoch.")
@click.option("--batch-size", type=click.IntRange(min=1), default=_CNN_DEFAULT_BATCH, show_default=True,
              help="Images per step.")
@click.option("--optimizer", type=click.Choice(("adam", "sgd", "rmsprop", "adagrad")), default="adam",
              show_default=True, help="Update rule.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Learning rate [default: adam 2e-3, sgd 0.05, rmsprop 1e-3, adagrad 0.02].")
@click.option("--momentum", type=click.FloatRange(min=0, max=1, max_open=True), default=0.9, show_default=True,
              help="Momentum of --optimizer sgd.")
@click.option("--weight-decay", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="L2 penalty added to every gradient (weight_decay * w).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the initial weights, the batch order and the dropout masks.")
@click.option("--device", type=click.Choice(("auto", "cpu", "cuda")), default="auto", show_default=True,
              help="Where to train (auto: the GPU when numba can use one).")
@click.option("--out", default="results", show_default=True, type=click.Path(file_okay=False),
              help="Results folder; the run goes to OUT/train-cnn/<timestamp>-<id>/.")
@click.option("--resume", type=click.Path(), default=None,
              help="Continue the run in RUN_DIR from its checkpoint, in that folder, up to --epochs.")
@click.option("--init-from", type=click.Path(dir_okay=False), default=None,
              help="Start from the weights (and arch) of a JSON snapshot written by `nbnets export-json`.")
@click.option("--plot/--no-plot", default=True, show_default=True,
              help="Write filters.png and activations.png (needs the plot extra: pip install -e '.[plot]').")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.pass_context
@user_errors
def train_cnn(ctx, resume, **options):
    """Train a small CNN on real images and report its test accuracy.

    Writes config.json, metrics.csv (one row per epoch), confusion.csv,
    checkpoint.npz/.json and, with matplotlib, filters.png and activations.png
    to OUT/train-cnn/<timestamp>-<id>/. Ctrl-C finishes the epoch, saves and
    exits (code 130); --resume RUN_DIR continues exactly.

    \b
    --arch grammar: layers joined by "-", e.g.
      conv8x3x3:p=same-relu-pool2-conv16x3x3:p=same-relu-pool2-fc10
    \b
      convFxKHxKW  F feature maps of KH x KW (convFxK: square); options
                   after ":" (repeatable): s=STRIDE, p=PAD, g=GROUPS, nobias
                   PAD: an int, valid (0), same (out = ceil(in/s)) or
                   full (K-1 on both sides)
      poolK, poolKHxKW   max pooling; s=STRIDE (default K), p=INT
      relu, tanh, sigmoid
      fcN          fully connected, N units (flattens its input)
      dropoutP     inverted dropout with drop probability P (default 0.5)
    \b
    The last layer must be fcK with K >= the number of classes; the loss is
    softmax cross-entropy. Built-in: digits = conv32x3x3:p=same-relu-pool2-
    conv64x3x3:p=same-relu-pool2-fc10. See sizes with `nbnets shapes`.
    """
    from runner.cnn import train as cnn_train  # start-up time

    result = cnn_train.train(options, given=given_options(ctx, options), resume=resume, echo=click.echo)
    if result.interrupted:
        ctx.exit(130)


@main.command("export-json", epilog=manual("export-json"))
@click.argument("source", type=click.Path())
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None,
              help="Where to write the JSON [default: model.json in the run folder].")
@user_errors
def export_json(source, output):
    """Write a train-cnn network as readable JSON (like ConvNetJS's toJSON).

    SOURCE is a train-cnn run folder (its checkpoint.npz) or a checkpoint file.
    The file lists every layer with its hyper-parameters and weights (float32
    written to round-trip bit for bit); `nbnets train-cnn --init-from FILE`
    loads it.
    """
    from runner.cnn import export_json as snapshot  # start-up time

    path, facts = snapshot.export_run(source, output)
    click.echo(f"wrote {path}: {facts['arch']} after epoch {facts['epoch']}, {facts['parameters']:,} parameters")


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
              help="Comma-separated cells: rnn-tanh, rnn-sigmoid, rnn-relu, rnn-identity (linear), lstm.")
@click.option("--hidden", type=click.IntRange(min=1), default=32, show_default=True, help="Hidden units H.")
@click.option("--input-size", type=click.IntRange(min=1), default=None,
              help="Input size D (default 16; with --input corpus the vocabulary size).")
@click.option("--batch-size", "--batch", "batch", cls=AliasedOption, hidden_aliases=("--batch",),
              type=click.IntRange(min=1), default=4, show_default=True,
              help="Sequences N per draw; per-step values are means over them.")
@click.option("--init", type=click.Choice(("normal", "uniform", "orthogonal", "identity", "zero")), default="normal",
              show_default=True, help="Recurrent weights, times --scale: normal N(0, g^2/H), uniform (same variance), "
                                      "orthogonal g*Q, identity g*I, zero (no recurrence; --scale ignored).")
@click.option("--scale", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="Gain g > 0 of the recurrent weights.")
@click.option("--forget-bias", type=float, default=1.0, show_default=True, help="LSTM forget-gate bias.")
@click.option("--bias", type=float, default=0.0, show_default=True, help="Bias of every RNN unit (e.g. -c/2 "
                                                                        "for the sigmoid fixed point).")
@click.option("--h0", type=float, default=0.0, show_default=True, help="Initial hidden state of every unit "
                                                                       "(the LSTM's c0 is 0).")
@click.option("--input", "input_kind", type=click.Choice(("random", "zero", "corpus")), default=None,
              help="Inputs x_t: N(0, 1), zeros, or one-hot windows of the char-LM corpus "
                   "[default: random; corpus with --train-steps].")
@click.option("--seeds", type=click.IntRange(min=1), default=1, show_default=True,
              help="Independent draws of weights and inputs (seeds 0..K-1), each its own rows.")
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
def grad_decay(steps, cells, hidden, input_size, batch, init, scale, forget_bias, bias, h0, input_kind, seeds,
               train_steps, record_every, device, out, plot):
    """Vanishing and exploding gradients, measured per time step.

    Unrolls each cell for T steps and writes per cell and step t: ||dL/dh_t||,
    ||dh_T/dh_t||, the sensitivity to the first input, activation saturation and
    (LSTM) gates, plus a summary with rho(W_hh), lambda1 * gamma (Pascanu et al.
    2013) and the fitted decay per step.
    """
    from runner.graddecay import command, options as graddecay_options  # start-up time

    options = graddecay_options.Options(
        steps=steps, cells=cells, hidden=hidden, input_size=input_size, batch=batch, init=init, scale=scale,
        forget_bias=forget_bias, bias=bias, h0=h0, input=input_kind, seeds=seeds, train_steps=train_steps,
        record_every=record_every, device=device, out=out, plot=plot,
    )
    command.run(options, echo=click.echo)


_CHARLM_DEFAULT_STEPS = 3000  # runner.charlm.options.DEFAULT_STEPS (kept here so --help needs no numba import)


@main.command("train-charlm", epilog=manual("train-charlm"))
@click.option("--corpus", type=click.Path(dir_okay=False), default=None,
              help="UTF-8 text file to learn (default: the built-in corpus, the source of a fixed list of "
                   "Python standard-library modules; no download).")
@click.option("--encoding", default="utf-8", show_default=True, help="Text encoding of --corpus.")
@click.option("--cell", type=click.Choice(("lstm", "rnn")), default="lstm", show_default=True,
              help="Recurrent cell of every layer.")
@click.option("--activation", type=click.Choice(("tanh", "sigmoid", "relu")), default="tanh", show_default=True,
              help="Nonlinearity of the rnn cell (ignored by lstm).")
@click.option("--hidden", type=click.IntRange(min=1), default=128, show_default=True, help="Hidden units per layer.")
@click.option("--layers", type=click.IntRange(min=1), default=2, show_default=True, help="Stacked recurrent layers.")
@click.option("--seq-len", type=click.IntRange(min=1), default=50, show_default=True,
              help="Characters per window of truncated backpropagation through time.")
@click.option("--batch-size", type=click.IntRange(min=1), default=50, show_default=True,
              help="Parallel streams of text per step.")
@click.option("--optimizer", type=click.Choice(("rmsprop", "adagrad", "adam", "sgd")), default="rmsprop",
              show_default=True, help="Update rule (rmsprop: decay 0.95, eps 1e-8, as char-rnn).")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=2e-3, show_default=True,
              help="Learning rate.")
@click.option("--lr-decay", type=click.FloatRange(min=0, max=1, min_open=True), default=0.97, show_default=True,
              help="Multiply the learning rate by this after every epoch (1 = constant).")
@click.option("--clip", type=click.FloatRange(min=0), default=5.0, show_default=True,
              help="Clip the global gradient norm to this (0 = off).")
@click.option("--forget-bias", type=float, default=1.0, show_default=True, help="Initial LSTM forget-gate bias.")
@click.option("--init", type=click.Choice(("uniform", "normal", "orthogonal", "identity")), default="uniform",
              show_default=True, help="Recurrent weights: uniform(-s, s) (s = 0.08, as char-rnn), normal N(0, s^2) "
                                      "(s = 1/sqrt(H)), orthogonal gate blocks, or identity w_hh (IRNN).")
@click.option("--init-scale", type=click.FloatRange(min=0, min_open=True), default=None,
              help="The s of --init (default: 0.08 for uniform, the initialiser's own otherwise).")
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help=f"Training steps (windows); default {_CHARLM_DEFAULT_STEPS}, about 3 minutes on a 2-core CPU. "
                   "With --resume: continue up to this step.")
@click.option("--epochs", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Train this many passes over the text instead of --steps.")
@click.option("--max-time", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop (with a checkpoint) after this many seconds.")
@click.option("--val-frac", type=click.FloatRange(min=0, max=1, min_open=True, max_open=True), default=0.05,
              show_default=True, help="Fraction of the text, at its end, held out for validation.")
@click.option("--eval-every", type=click.IntRange(min=1), default=100, show_default=True,
              help="Validation loss and checkpoint every this many steps.")
@click.option("--sample-every", type=click.IntRange(min=1), default=500, show_default=True,
              help="Write a sample to samples.txt every this many steps.")
@click.option("--sample-length", type=click.IntRange(min=0), default=300, show_default=True,
              help="Characters per sample (0 = no samples).")
@click.option("--temperature", type=click.FloatRange(min=0), default=0.8, show_default=True,
              help="Sampling temperature of the samples (0 = argmax).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the initial weights and samples.")
@click.option("--device", type=click.Choice(("auto", "cpu", "cuda")), default="auto", show_default=True,
              help="Where to train (auto: the GPU when numba can use one).")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="CPU threads for BLAS and numba (default: all; on a busy machine 1 can be faster).")
@click.option("--out", default="results", show_default=True, type=click.Path(file_okay=False),
              help="Results folder; the run goes to OUT/train-charlm/<timestamp>-<id>/.")
@click.option("--resume", "resume", type=click.Path(), default=None,
              help="Continue the run in RUN_DIR from its checkpoint, in that folder, up to --steps.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.pass_context
@user_errors
def train_charlm(ctx, resume, **options):
    """Train a character-level language model (char-rnn style).

    One-hot characters, a stack of RNN or LSTM layers, a linear read-out and
    softmax cross-entropy, trained by truncated backpropagation through time
    with the hidden state carried across windows. Writes config.json,
    metrics.csv, samples.txt, checkpoint.npz/.json and best.npz to
    OUT/train-charlm/<timestamp>-<id>/. Ctrl-C saves a checkpoint and exits
    (code 130); --resume RUN_DIR continues it exactly.
    """
    from runner.charlm import train as charlm_train  # start-up time

    result = charlm_train.train(options, given=given_options(ctx, options), resume=resume, echo=click.echo)
    if result.interrupted:
        ctx.exit(130)


@main.command(epilog=manual("sample"))
@click.argument("source", type=click.Path())
@click.option("--prime", default=None, help="Text to start from; every character must be in the model's vocabulary "
                                            "(default: a newline).")
@click.option("--length", type=click.IntRange(min=0), default=500, show_default=True,
              help="Characters to generate after the prime.")
@click.option("--temperature", type=click.FloatRange(min=0), default=0.8, show_default=True,
              help="Divide the logits by this before the softmax (0 = always the most likely character).")
@click.option("--top-k", type=click.IntRange(min=0), default=0, show_default=True,
              help="Draw only among the K most likely characters (0 = all).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the draws: the same seed, the same text.")
@click.option("--device", type=click.Choice(("auto", "cpu", "cuda")), default="auto", show_default=True,
              help="Where to run the model (a checkpoint from either device runs on both).")
@user_errors
def sample(source, prime, length, temperature, top_k, seed, device):
    """Generate text from a train-charlm run folder or checkpoint file.

    SOURCE is a run folder (its best.npz, else checkpoint.npz) or a .npz file.
    """
    from runner.charlm import sample as sampling  # start-up time

    click.echo(sampling.run(source, prime=prime, length=length, temperature=temperature, top_k=top_k,
                              seed=seed, device=device))


# --- nbnets bench (runner/bench/) ---
# runner.bench.command.case_names(), kept here so --help needs no numba import (tests/test_bench.py checks they agree)
_BENCH_CASES = ("conv2d-fwd, conv2d-bwd, max_pool2d-fwd, max_pool2d-bwd, lstm-fwd-bwd, rnn-fwd-bwd, charlm-mini, "
                "charlm-char-rnn, charlm-large, cnn-digits, first-step-cold, first-step-warm")


@main.command(epilog=manual("bench"))
@click.option("--suite", type=click.Choice(("kernels", "train", "all")), default="all", show_default=True,
              help="kernels: conv2d, max_pool2d, LSTM and RNN forward+backward; train: whole training steps "
                   "of the char LMs and the digits CNN, their peak memory, and the time to the first step.")
@click.option("--device", type=click.Choice(("auto", "cpu", "cuda")), default="cpu", show_default=True,
              help="Where numbanets and torch run (cuda: against PyTorch CUDA, timed with CUDA events; the "
                   "numpy peer stays on the CPU). auto: the GPU when numba can use one.")
@click.option("--repeat", type=click.IntRange(min=1), default=20, show_default=True,
              help="Timed runs per implementation and case (fewer when --max-seconds runs out, at least 3).")
@click.option("--max-seconds", type=click.FloatRange(min=0, min_open=True), default=3.0, show_default=True,
              help="About how long to time one implementation of one case.")
@click.option("--warmup", type=click.IntRange(min=0), default=2, show_default=True,
              help="Untimed runs after the first (compiling, checked) run.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Threads of numba, torch and the BLAS, the same for all (default: numba's default, all cores).")
@click.option("--case", "cases", multiple=True,
              help=f"Run only these cases (repeatable or comma-separated; a prefix such as conv2d, charlm or "
                   f"first-step selects a family): {_BENCH_CASES}. The sgemm ceiling always runs.")
@click.option("--allocator", type=click.Choice(("fixed", "default")), default="fixed", show_default=True,
              help="fixed: glibc malloc keeps freed blocks up to 32 MiB for reuse (mmap threshold 32 MiB, trim "
                   "threshold 512 MiB) for the whole run, so no case changes the speed of the cases after it; "
                   "default: glibc's own moving thresholds.")
@click.option("--tiny", is_flag=True, help="Toy shapes: a smoke test of the bench itself (timings mean little).")
@click.option("--no-torch", is_flag=True, help="Do not run the PyTorch peer even when torch is installed.")
@click.option("--out", default="results", show_default=True, type=click.Path(file_okay=False),
              help="Results folder; the run goes to OUT/bench/<timestamp>-<id>/.")
@user_errors
def bench(**options):
    """Time numbanets against plain numpy and PyTorch, in the same process.

    Before timing, every peer runs on the same inputs and must give numbanets'
    numbers (else exit 1). Compile time is excluded; rows give the median, min
    and max in ms, GFLOP/s and the fraction of the machine's measured sgemm
    rate, peak memory of the training steps (each in a fresh process; empty
    for kernel cases), and speedup_vs_torch / speedup_vs_numpy (peer's median /
    numbanets'). Writes bench.csv and config.json to OUT/bench/<timestamp>-<id>/
    and prints the table. The full CPU run takes a few minutes; Ctrl-C stops
    it with the rows measured so far written (exit code 130).
    """
    from runner.bench import command as bench_command  # start-up time
    from runner.bench.measure import PeerMismatch  # start-up time

    try:
        result = bench_command.run(options, echo=click.echo)
    except PeerMismatch as exc:
        raise click.ClickException(str(exc)) from None
    if result.interrupted:
        click.get_current_context().exit(130)


# --- nbnets analyse (runner/analyse/) ---
@main.command(epilog=manual("analyse"))
@click.argument("paths", metavar="PATH...", nargs=-1, required=True, type=click.Path())
@click.option("--format", "fmt", type=click.Choice(("table", "markdown", "csv")), default="table",
              show_default=True, help="Aligned text, markdown tables, or one CSV whose first column `section` "
                                      "names the kind (pd.read_csv reads it back).")
@click.option("--plot", "plot_dir", metavar="DIR", type=click.Path(file_okay=False), default=None,
              help="Also write figures (PNG) to this folder: loss curves against steps and seconds, the "
                   "grad-decay figures, a bench speedup chart (needs the plot extra: pip install -e '.[plot]').")
@click.option("--group-by", "group_by", metavar="COLUMN", default=None,
              help="Aggregate the rows per value of this column (a summary column or any option, e.g. hidden "
                   "or cell): count, and mean/min/max of every metric.")
@user_errors
def analyse(paths, fmt, plot_dir, group_by):
    """Summarise and compare runs: PATH is a run folder, a folder of runs at any depth
    (e.g. results/) or a CSV written by train-charlm, train-cnn, grad-decay or bench.

    Prints one table per kind of run. train-charlm / train-cnn: one row per run with the
    final and best validation/test loss (and accuracy) and where the best was, the final
    train loss, the median throughput, the run time, and a column per option that
    differs between the runs. grad-decay: per cell rho(W_hh), lambda1, gamma,
    lambda1 * gamma, the effective rate and the fitted decay. bench: the numbanets rows
    with their speedups over torch and numpy, several runs side by side.
    """
    from runner.analyse import summary  # start-up time

    text, written = summary.analyse(paths, fmt=fmt, plot_dir=plot_dir, group_by=group_by,
                               note=lambda message: click.echo(message, err=True))
    click.echo(text, nl=False)
    for path in written:
        click.echo(f"wrote {path}", err=fmt == "csv")
