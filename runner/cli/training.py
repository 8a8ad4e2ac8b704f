"""nbnets train-cnn, export-json, train-charlm and sample: training runs and what reads their checkpoints."""

from __future__ import annotations

import click

from runner.cli.floats import FINITE, FiniteFloatRange
from runner.cli.group import main
from runner.common.console import given_options, manual, user_errors

# runner.cnn.options' defaults, kept here so --help needs no import (tests/test_cli_cnn.py checks they agree)
_CNN_DEFAULT_EPOCHS = 12
_CNN_DEFAULT_BATCH = 32


@main.command("train-cnn", epilog=manual("train-cnn"))
@click.option("--arch", default="digits", show_default=True,
              help="The network: a spec (grammar above) or a built-in name (digits, lecture, alexnet).")
@click.option("--data", type=click.Path(dir_okay=False), default=None,
              help="An .npz with arrays x (N, C, H, W) or (N, H, W) and integer labels y (N,), optionally "
                   "x_test/y_test (default: scikit-learn's 8x8 handwritten digits, no download).")
@click.option("--test-fraction", type=FiniteFloatRange(min=0, max=1, min_open=True, max_open=True), default=0.2,
              show_default=True, help="Held-out test share of a stratified split (split seed 0, fixed).")
@click.option("--epochs", type=click.IntRange(min=0), default=_CNN_DEFAULT_EPOCHS, show_default=True,
              help="Passes over the training set (0: evaluate only). With --resume: continue up to this epoch.")
@click.option("--batch-size", type=click.IntRange(min=1), default=_CNN_DEFAULT_BATCH, show_default=True,
              help="Images per step.")
@click.option("--optimizer", type=click.Choice(("adam", "sgd", "rmsprop", "adagrad")), default="adam",
              show_default=True, help="Update rule.")
@click.option("--lr", type=FiniteFloatRange(min=0, min_open=True), default=None,
              help="Learning rate [default: adam 2e-3, sgd 0.05, rmsprop 1e-3, adagrad 0.02].")
@click.option("--momentum", type=FiniteFloatRange(min=0, max=1, max_open=True), default=0.9, show_default=True,
              help="Momentum of --optimizer sgd.")
@click.option("--weight-decay", type=FiniteFloatRange(min=0), default=0.0, show_default=True,
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
      gap          global average pooling: each map to its mean (CxHxW -> C)
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
              help="Where to write the JSON [default: model.json (model.convnetjs.json) in the run folder].")
@click.option("--format", "fmt", type=click.Choice(("numbanets", "convnetjs")), default="numbanets",
              show_default=True, help="numbanets: PyTorch layouts; convnetjs: what ConvNetJS's Net.fromJSON loads.")
@user_errors
def export_json(source, output, fmt):
    """Write a train-cnn network as readable JSON (like ConvNetJS's toJSON).

    SOURCE is a train-cnn run folder (its checkpoint.npz) or a checkpoint file.
    The file lists every layer with its hyper-parameters and weights (float32
    written to round-trip bit for bit); `nbnets train-cnn --init-from FILE`
    loads it. --format convnetjs writes ConvNetJS 0.3.0's own layout (Vol
    objects, HWC order) and refuses layers ConvNetJS lacks (exit 2).
    """
    from runner.cnn import export_json as snapshot  # start-up time

    path, facts = snapshot.export_run(source, output, fmt)
    click.echo(f"wrote {path}: {facts['arch']} after epoch {facts['epoch']}, {facts['parameters']:,} parameters")


_CHARLM_DEFAULT_STEPS = 3000  # runner.charlm.options.DEFAULT_STEPS (kept here so --help needs no numba import)


@main.command("train-charlm", epilog=manual("train-charlm"))
@click.option("--corpus", type=click.Path(dir_okay=False), default=None,
              help="UTF-8 text file to learn (default: the built-in corpus, the source of a fixed list of "
                   "Python standard-library modules; no download).")
@click.option("--encoding", default="utf-8", show_default=True, help="Text encoding of --corpus.")
@click.option("--cell", type=click.Choice(("lstm", "gru", "rnn")), default="lstm", show_default=True,
              help="Recurrent cell of every layer (gru: torch.nn.GRU's cell, gates r, z, n).")
@click.option("--activation", type=click.Choice(("tanh", "sigmoid", "relu")), default="tanh", show_default=True,
              help="Nonlinearity of the rnn cell (ignored by lstm and gru).")
@click.option("--hidden", type=click.IntRange(min=1), default=128, show_default=True, help="Hidden units per layer.")
@click.option("--layers", type=click.IntRange(min=1), default=2, show_default=True, help="Stacked recurrent layers.")
@click.option("--seq-len", type=click.IntRange(min=1), default=50, show_default=True,
              help="Characters per window of truncated backpropagation through time.")
@click.option("--batch-size", type=click.IntRange(min=1), default=50, show_default=True,
              help="Parallel streams of text per step.")
@click.option("--optimizer", type=click.Choice(("rmsprop", "adagrad", "adam", "sgd")), default="rmsprop",
              show_default=True, help="Update rule (rmsprop: decay 0.95, eps 1e-8, as char-rnn).")
@click.option("--lr", type=FiniteFloatRange(min=0, min_open=True), default=2e-3, show_default=True,
              help="Learning rate.")
@click.option("--lr-decay", type=FiniteFloatRange(min=0, max=1, min_open=True), default=0.97, show_default=True,
              help="Multiply the learning rate by this after every epoch (1 = constant).")
@click.option("--clip", type=FiniteFloatRange(min=0), default=5.0, show_default=True,
              help="Clip the global gradient norm to this (0 = off).")
@click.option("--forget-bias", type=FINITE, default=1.0, show_default=True, help="Initial LSTM forget-gate bias.")
@click.option("--dropout", type=FiniteFloatRange(min=0, max=1, max_open=True), default=0.0, show_default=True,
              help="Inverted dropout on every layer's output, into the next layer and the read-out "
                   "(char-rnn's -dropout; never on the recurrent connections; off when evaluating and sampling).")
@click.option("--init", type=click.Choice(("uniform", "normal", "orthogonal", "identity")), default="uniform",
              show_default=True, help="Recurrent weights: uniform(-s, s) (s = 0.08, as char-rnn), normal N(0, s^2) "
                                      "(s = 1/sqrt(H)), orthogonal gate blocks, or identity w_hh (IRNN).")
@click.option("--init-scale", type=FiniteFloatRange(min=0, min_open=True), default=None,
              help="The s of --init (default: 0.08 for uniform, the initialiser's own otherwise).")
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help=f"Training steps (windows); default {_CHARLM_DEFAULT_STEPS}, about 3 minutes on a 2-core CPU. "
                   "With --resume: continue up to this step.")
@click.option("--epochs", type=FiniteFloatRange(min=0, min_open=True), default=None,
              help="Train this many passes over the text instead of --steps.")
@click.option("--max-time", type=FiniteFloatRange(min=0, min_open=True), default=None,
              help="Stop (with a checkpoint) after this many seconds.")
@click.option("--val-frac", type=FiniteFloatRange(min=0, max=1, min_open=True, max_open=True), default=0.05,
              show_default=True, help="Fraction of the text, at its end, held out for validation.")
@click.option("--eval-every", type=click.IntRange(min=1), default=100, show_default=True,
              help="Validation loss and checkpoint every this many steps.")
@click.option("--sample-every", type=click.IntRange(min=1), default=500, show_default=True,
              help="Write a sample to samples.txt every this many steps.")
@click.option("--sample-length", type=click.IntRange(min=0), default=300, show_default=True,
              help="Characters per sample (0 = no samples).")
@click.option("--temperature", type=FiniteFloatRange(min=0), default=0.8, show_default=True,
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

    One-hot characters, a stack of RNN, LSTM or GRU layers, a linear read-out and
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
@click.option("--temperature", type=FiniteFloatRange(min=0), default=0.8, show_default=True,
              help="Divide the logits by this before the softmax (0 = always the most likely character).")
@click.option("--top-k", type=click.IntRange(min=0), default=0, show_default=True,
              help="Draw only among the K most likely characters (0 = all).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the draws: the same seed, the same text.")
@click.option("--device", type=click.Choice(("auto", "cpu", "cuda")), default="auto", show_default=True,
              help="Where to run the model (a checkpoint from either device runs on both).")
@click.option("--beam", type=click.IntRange(min=1), default=None,
              help="Beam search with K beams instead of sampling: the most probable continuation "
                   "(--beam 1 is --temperature 0).")
@click.option("--n-best", type=click.IntRange(min=1), default=1, show_default=True,
              help="With --beam: print the N best continuations, each with its log-probability.")
@click.option("--length-penalty", type=FiniteFloatRange(min=0), default=0.0, show_default=True,
              help="With --beam: rank by log p / ((5 + n) / 6) ** A (GNMT); matters with --stop.")
@click.option("--stop", default="",
              help="With --beam: a continuation ends at any of these characters (e.g. $'\n': the best line).")
@click.pass_context
@user_errors
def sample(ctx, source, prime, length, temperature, top_k, seed, device, beam, n_best, length_penalty, stop):
    """Generate text from a train-charlm run folder or checkpoint file.

    SOURCE is a run folder (its best.npz, else checkpoint.npz) or a .npz file.
    """
    from runner.charlm import sample as sampling  # start-up time

    if beam is not None:
        for name, value in (("temperature", temperature), ("top_k", top_k), ("seed", seed)):
            if ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE and value:
                raise ValueError(f"--beam searches for the most probable text: "
                                 f"--{name.replace('_', '-')} does not apply")
        temperature = 0.0
    click.echo(sampling.run(source, prime=prime, length=length, temperature=temperature, top_k=top_k,
                              seed=seed, device=device, beam=beam, n_best=n_best, length_penalty=length_penalty,
                              stop=stop))
