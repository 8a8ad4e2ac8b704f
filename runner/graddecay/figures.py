"""grad_decay.png: the per-step sensitivity of every cell, shaded on a log scale."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from runner.common.plots import PLOT_HINT, pyplot, save_png
from runner.graddecay.options import Options
from runner.graddecay.table import columns_to_show, fmt


def plot(steps: pd.DataFrame, o: Options, path: Path) -> str | None:
    """Write grad_decay.png; None when done, else why not (matplotlib missing)."""
    plt = pyplot()
    if plt is None:
        return f"grad_decay.png not written: matplotlib is not installed (get the plot with {PLOT_HINT})"
    save_png(plt, _figure(plt, steps, o), path)
    return None


SHADE_DECADES = 3.0  # white at a thousandth of the t = 1 sensitivity, black at it (or above)


def _log_mean(frame, column):
    """log10 of `column` per (cell, t), averaged over seeds (a geometric mean)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = frame.assign(v=np.log10(frame[column].astype(float)))
    return logs.groupby(["cell", "t"])["v"].mean()


def _figure(plt, steps: pd.DataFrame, o: Options):
    """Left: the unrolled network of every cell, nodes shaded by their sensitivity to x_1
    (Graves 2012, fig. 4.1); right: log10 grad_norm against k = T - t."""
    from matplotlib import cm, colormaps  # optional dependency: only reached once pyplot() found matplotlib
    from matplotlib.colors import Normalize  # optional dependency, as above

    T, cells = o.steps, list(o.cells)
    phases = list(dict.fromkeys(steps["phase"]))
    first = steps[steps["phase"] == phases[0]]
    hidden, output = _log_mean(first, "sens_hidden"), _log_mean(first, "sens_out")
    norm = Normalize(vmin=-SHADE_DECADES, vmax=0.0)
    cmap = colormaps["Greys"]
    ts = np.arange(1, T + 1)
    size = float(np.clip(9000.0 / (T * T), 12, 380))
    fig = plt.figure(figsize=(13, 1.55 * len(cells) + 1.6))
    grid = fig.add_gridspec(len(cells) + 1, 2, width_ratios=(1.25, 1), height_ratios=[1] * len(cells) + [0.12],
                            hspace=0.55, wspace=0.18, left=0.08, right=0.98, top=0.88, bottom=0.07)
    for row, cell in enumerate(cells):
        ax = fig.add_subplot(grid[row, 0])
        rel_h = np.array([hidden.get((cell, t), np.nan) for t in ts]) - hidden.get((cell, 1), np.nan)
        rel_o = np.array([output.get((cell, t), np.nan) for t in ts]) - output.get((cell, 1), np.nan)
        ax.plot(np.vstack([ts, ts]), np.vstack([np.zeros(T), np.ones(T)]), color="0.7", lw=0.8, zorder=1)
        ax.plot(np.vstack([ts, ts]), np.vstack([np.ones(T), 2 * np.ones(T)]), color="0.7", lw=0.8, zorder=1)
        ax.plot(ts, np.ones(T), color="0.7", lw=0.8, zorder=1)
        inputs = np.where(ts == 1, 0.0, -SHADE_DECADES)
        for y, rel in ((0, inputs), (1, rel_h), (2, rel_o)):
            shade = cmap(norm(np.nan_to_num(np.clip(rel, -SHADE_DECADES, 0.0), nan=-SHADE_DECADES)))
            ax.scatter(ts, np.full(T, y), s=size, c=shade, edgecolors="black", linewidths=0.8, zorder=2)
        if T <= 12:
            for y, rel in ((1, rel_h), (2, rel_o)):
                for t, v in zip(ts[1:], rel[1:]):
                    ax.annotate(fmt(v, 1), (t, y), xytext=(10, 0), textcoords="offset points",
                                ha="left", va="center", fontsize=7, color="0.2",
                                bbox=dict(fc="white", ec="none", pad=0.3))
        ax.set_yticks([0, 1, 2], ["input", "hidden", "output"], fontsize=8)
        ax.set_ylim(-0.5, 2.5)
        ax.set_xlim(0.4, T + 0.6)
        ax.set_xticks(ts if T <= 20 else columns_to_show(T, 10))
        ax.tick_params(axis="x", labelsize=8, length=0)
        for side in ("top", "right", "left", "bottom"):
            ax.spines[side].set_visible(False)
        ax.set_title(cell, loc="left", fontsize=10, fontweight="bold", pad=4)
    ax.set_xlabel("time step t", fontsize=9)
    bar = fig.add_subplot(grid[len(cells), 0])
    fig.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), cax=bar, orientation="horizontal")
    bar.set_xlabel("log10 sensitivity to the input at t = 1, relative to t = 1 (darker = more sensitive; "
                   "numbers beside the nodes)", fontsize=8)
    bar.tick_params(labelsize=8)

    ax = fig.add_subplot(grid[:len(cells), 1])
    colors = colormaps["tab10"]
    for p_index, phase in enumerate(phases):
        part = steps[steps["phase"] == phase]
        logs = _log_mean(part, "grad_norm")
        last = p_index == len(phases) - 1
        for c_index, cell in enumerate(cells):
            y = np.array([logs.get((cell, t), np.nan) for t in ts])
            label = cell if len(phases) == 1 else f"{cell} @step {phase}"
            ax.plot(T - ts, y, marker="o", ms=4, color=colors(c_index % 10),
                    alpha=1.0 if last else 0.25 + 0.5 * p_index / max(1, len(phases) - 1),
                    ls="-" if last else "--", label=label if (last or p_index == 0) else None)
    ax.set_xlabel("k = T - t (steps back from the loss)", fontsize=9)
    ax.set_ylabel("log10 ||dL/dh_t||", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    ax.set_title("gradient norm against steps back", fontsize=10)
    seeds = f"geometric mean of {o.seeds} seeds" + (f" from {o.seed}" if o.seed else "") if o.seeds > 1 else f"seed {o.seed}"
    phase_note = f", training step {phases[0]} on the left" if len(phases) > 1 else ""
    fig.suptitle(f"grad-decay: T = {T}, H = {o.hidden}, W_hh = {o.scale:g} x {o.init}, input {o.input}, "
                 f"{seeds}{phase_note}", fontsize=11)
    return fig
