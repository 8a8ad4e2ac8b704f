"""nbnets info, shapes, bench, analyse and heatmap: the commands that describe, time and read back."""

from __future__ import annotations

import click

from runner.cli.floats import FiniteFloatRange
from runner.cli.group import main
from runner.common.console import given_options, manual, user_errors


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


# --- nbnets bench (runner/bench/) ---
# runner.bench.command.case_names(), kept here so --help needs no numba import (tests/test_bench.py checks they agree)
_BENCH_CASES = ("conv2d-fwd, conv2d-bwd, max_pool2d-fwd, max_pool2d-bwd, lstm-fwd-bwd, gru-fwd-bwd, rnn-fwd-bwd, "
                "charlm-mini, charlm-char-rnn, charlm-large, charlm-gru, cnn-digits, first-step-cold, first-step-warm")


@main.command(epilog=manual("bench"))
@click.option("--suite", type=click.Choice(("kernels", "train", "all")), default="all", show_default=True,
              help="kernels: conv2d, max_pool2d, LSTM, GRU and RNN forward+backward; train: whole training steps "
                   "of the char LMs and the digits CNN, their peak memory, and the time to the first step.")
@click.option("--device", type=click.Choice(("auto", "cpu", "cuda")), default="cpu", show_default=True,
              help="Where numbanets and torch run (cuda: against PyTorch CUDA, timed with CUDA events; the "
                   "numpy peer stays on the CPU). auto: the GPU when numba can use one.")
@click.option("--repeat", type=click.IntRange(min=1), default=20, show_default=True,
              help="Rounds per case: each times a short block of every implementation in turn, and gives one "
                   "ratio per peer (fewer when --max-seconds runs out, but at least 5).")
@click.option("--max-seconds", type=FiniteFloatRange(min=0, min_open=True), default=3.0, show_default=True,
              help="About how long to time one implementation of one case in the first pass.")
@click.option("--cap-seconds", type=FiniteFloatRange(min=0), default=None,
              help="Re-measure a case whose 95% interval of the speed-up is wider than +-10% until it narrows "
                   "or the case has been timed this long in all; 0: never (default: 30, 0 with --tiny).")
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
    for kernel cases), and speedup_vs_torch / speedup_vs_numpy: the
    implementations alternate in short blocks, and the speed-up is the median of
    the per-block ratios (peer / numbanets) with a bootstrap 95% interval, a case
    still wider than +-10% flagged. The CPU, its flags, the BLAS's code path and
    the load go into every row. Writes bench.csv and config.json to
    OUT/bench/<timestamp>-<id>/ and prints the table. The full CPU run takes a few minutes; Ctrl-C stops
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
@click.option("--metric", default=None, metavar="METRIC",
              help="Sweep folders, with --plot: the metric of the sweep figure (default: final_val_loss for "
                   "train-charlm, final_test_acc for train-cnn, decay_factor for grad-decay).")
@click.option("--x", "x", default=None, metavar="KEY",
              help="Sweep folders, with --plot: the grid key on the figure's x axis (default: the first).")
@click.option("--hue", default=None, metavar="KEY",
              help="Sweep folders, with --plot: one line per value of this grid key (default: the second).")
@user_errors
def analyse(paths, fmt, plot_dir, group_by, metric, x, hue):
    """Summarise and compare runs: PATH is a run folder, a folder of runs at any depth
    (e.g. results/) or a CSV written by train-charlm, train-cnn, grad-decay or bench.

    Prints one table per kind of run. train-charlm / train-cnn: one row per run with the
    final and best validation/test loss (and accuracy) and where the best was, the final
    train loss, the median throughput, the run time, and a column per option that
    differs between the runs. grad-decay: per cell rho(W_hh), lambda1, gamma,
    lambda1 * gamma, the effective rate and the fitted decay. bench: the numbanets rows
    with their speedups over torch and numpy, several runs side by side.

    A sweep folder (nbnets sweep) is one table: a row per grid point, the runs done and
    failed there, and each metric's mean, standard deviation and 95 % interval over the
    seeds; --plot draws --metric against the grid key --x, one line per --hue.
    """
    from runner.analyse import summary  # start-up time

    text, written = summary.analyse(paths, fmt=fmt, plot_dir=plot_dir, group_by=group_by,
                                    note=lambda message: click.echo(message, err=True), metric=metric, x=x, hue=hue)
    click.echo(text, nl=False)
    for path in written:
        click.echo(f"wrote {path}", err=fmt == "csv")


# --- nbnets heatmap (runner/heatmap/) ---
@main.command(epilog=manual("heatmap"))
@click.argument("source", type=click.Path())
@click.option("--method", "methods", default="all", show_default=True, metavar="LIST",
              help="Comma list of cam (networks ending in gap-fcK), gradcam, occlusion; all: every one that "
                   "applies.")
@click.option("--images", type=click.IntRange(min=1), default=8, show_default=True,
              help="How many test images: the first N of the test split (of --class K if given).")
@click.option("--index", default=None, metavar="LIST", help="Test-set indices instead, e.g. 3,17,42.")
@click.option("--class", "image_class", type=click.IntRange(min=0), default=None,
              help="Only test images whose true class is K.")
@click.option("--target", type=click.IntRange(min=0), default=None,
              help="Explain this class in every image [default: each image's predicted class].")
@click.option("--layer", type=click.IntRange(min=1), default=None,
              help="Grad-CAM's conv layer, numbered as `nbnets shapes` numbers them [default: the last conv].")
@click.option("--patch", type=click.IntRange(min=1), default=None,
              help="Occlusion square side in pixels [default: a quarter of the image side, 2 on 8x8].")
@click.option("--stride", type=click.IntRange(min=1), default=None,
              help="Occlusion step in pixels [default: half the patch].")
@click.option("--sanity", is_flag=True,
              help="Also run the sanity checks (model randomisation, Grad-CAM/occlusion agreement, CAM = "
                   "Grad-CAM) and write sanity.csv.")
@click.option("--sanity-images", type=click.IntRange(min=1), default=50, show_default=True,
              help="How many test images the sanity checks average over: the first N of the test split (of "
                   "--class), whatever --index draws.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the re-initialised weights of --sanity's model randomisation.")
@click.option("--data", type=click.Path(dir_okay=False), default=None,
              help="The data file, when the run's has moved or a snapshot's run folder is gone.")
@click.option("--device", type=click.Choice(("auto", "cpu", "cuda")), default="auto", show_default=True,
              help="Where the network runs (auto: the GPU when numba can use one).")
@click.option("--out", default="results", show_default=True, type=click.Path(file_okay=False),
              help="Results folder; the run goes to OUT/heatmap/<timestamp>-<id>/.")
@click.option("--plot/--no-plot", default=True, show_default=True,
              help="Draw heatmaps.png (needs the plot extra: pip install -e '.[plot]').")
@click.pass_context
@user_errors
def heatmap(ctx, source, **options):
    """Where a trained CNN looks: CAM, Grad-CAM and occlusion maps of test images.

    SOURCE is a train-cnn run folder, its checkpoint.npz, or a JSON snapshot
    (nbnets export-json). For each image the maps show the evidence for its
    predicted class (or --target): cam weights the maps a gap layer averages
    by the fc weights of the class; gradcam weights a conv layer's maps by the
    mean gradient of the class score; occlusion is the drop of the class
    probability when a square is replaced by the mean training image. Writes
    config.json, heatmaps.npz, heatmaps.png and, with --sanity, sanity.csv to
    OUT/heatmap/<timestamp>-<id>/.
    """
    from runner.heatmap import command as heatmap_command  # start-up time

    heatmap_command.run({"source": source, **options}, given=given_options(ctx, options), echo=click.echo)
