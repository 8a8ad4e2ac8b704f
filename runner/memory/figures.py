"""memory.png: what each cell remembers against distance, and the gradient that reaches the context step.

Left: the final test accuracy (recall) or test MSE (adding) against the distance
(log axis), one line per cell through the mean over seeds, a band from the
worst to the best seed, the chance level (1/K) or the mean predictor's MSE (1/6)
dashed and the solved threshold dotted. Right: ||dL/dh_0|| / ||dL/dh_T|| at
initialisation (dashed) and at the end of training (solid), geometric mean over
seeds, log axes: how much of the loss's gradient reaches the step before the
context, the mechanism `nbnets grad-decay` measures.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from runner.common.plots import PLOT_HINT, pyplot, save_png
from runner.memory.tasks import ADDING_MEAN_MSE
from runner.memory.train import ADDING_SOLVED


def plot(summary: pd.DataFrame, evals: pd.DataFrame, o, path: Path) -> str | None:
    """Write memory.png; None when done, else why not (matplotlib missing)."""
    plt = pyplot()
    if plt is None:
        return f"memory.png not written: matplotlib is not installed (get the plot with {PLOT_HINT})"
    save_png(plt, _figure(plt, summary, o), path)
    return None


def _geomean(values) -> float:
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values) & (values > 0)]
    return float(np.exp(np.mean(np.log(values)))) if len(values) else np.nan


def _figure(plt, summary: pd.DataFrame, o):
    from matplotlib import colormaps  # matplotlib is installed: pyplot() returned it

    recall = o.task == "recall"
    metric = "final_test_accuracy" if recall else "final_test_mse"
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.6))
    colors = colormaps["tab10"]
    cells = list(dict.fromkeys(summary["cell"]))
    for i, cell in enumerate(cells):
        part = summary[summary["cell"] == cell].groupby("distance")
        d = np.array(sorted(part.groups))
        mean, low, high = (part[metric].agg(f).reindex(d).to_numpy() for f in ("mean", "min", "max"))
        color = colors(i % 10)
        label = cell + (f" (forget bias {o.forget_bias:g})" if cell == "lstm" else
                        " (identity init)" if cell == "rnn-relu" else "")
        left.plot(d, mean, marker="o", color=color, label=label)
        left.fill_between(d, low, high, color=color, alpha=0.15)
        init = part["grad_ratio_init"].agg(_geomean).reindex(d).to_numpy()
        final = part["grad_ratio_final"].agg(_geomean).reindex(d).to_numpy()
        right.plot(d, init, marker="o", ls="--", color=color, alpha=0.7, label=f"{cell}, at initialisation")
        right.plot(d, final, marker="s", ls="-", color=color, label=f"{cell}, after training")
    if recall:
        left.axhline(1.0 / o.symbols, ls="--", color="0.5", label=f"chance 1/{o.symbols}")
        left.axhline(o.solved, ls=":", color="0.3", label=f"solved ({o.solved:g})")
        left.set_ylabel("test accuracy at the end of training")
        left.set_ylim(0, 1.05)
    else:
        left.axhline(ADDING_MEAN_MSE, ls="--", color="0.5", label="predicting the mean (1/6)")
        left.axhline(ADDING_SOLVED, ls=":", color="0.3", label=f"solved ({ADDING_SOLVED:g})")
        left.set_yscale("log")
        left.set_ylabel("test MSE at the end of training")
    from matplotlib.ticker import NullFormatter  # matplotlib is installed: pyplot() returned it

    distances = sorted(summary["distance"].unique())
    for ax in (left, right):
        ax.set_xscale("log")
        ax.set_xticks(distances, [str(d) for d in distances])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("distance (steps between the context and the query)" if recall else
                      "distance (sequence length)")
        ax.grid(alpha=0.3, which="both")
    right.set_yscale("log")
    right.set_ylabel("||dL/dh_0|| / ||dL/dh_T||")
    left.set_title("what is remembered (mean over seeds; band: worst to best seed)", fontsize=10)
    right.set_title("gradient reaching the context step (geometric mean over seeds)", fontsize=10)
    left.legend(fontsize=8, loc="lower left")
    right.legend(fontsize=7, loc="lower left", ncol=2)
    seeds = summary["seed"].nunique()
    fig.suptitle(f"nbnets memory --task {o.task}{' --forget' if o.forget else ''}: H = {o.hidden}, "
                 f"{seeds} seeds, Adam lr {o.lr:g}, clip {o.clip:g}, batch {o.batch_size}, at most "
                 f"{o.max_steps} steps", fontsize=11)
    fig.tight_layout()
    return fig
