"""The figures of `nbnets analyse --plot DIR` (matplotlib, Agg backend).

    train-charlm_loss.png  train and validation loss against step and against seconds, every run
    train-cnn_loss.png     train and test loss against step and seconds, test accuracy against step
    grad-decay.png         ||dL/dh_t|| / ||dL/dh_T|| against t per cell (log y), one panel per run
    grad-decay_rates.png   effective rate and lambda1 * gamma against rho(W_hh), when rho varies
    bench_speedup.png      speedup of numbanets over torch and numpy per case (log y), runs side by side
    sweep_M_vs_X.png       a sweep's mean of metric M against grid key X, one line per value of the hue
                           key (and per sweep), error bars the 95 % interval; a panel per value of the
                           other grid keys

Each file is drawn into memory and written atomically (temporary name, rename).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from runner.common import plots as common_plots
from runner.common.plots import PLOT_HINT, save_png

def pyplot():
    """matplotlib.pyplot on the Agg backend; ValueError (one line) when matplotlib is missing."""
    plt = common_plots.pyplot()
    if plt is None:
        raise ValueError(f"--plot needs matplotlib, which is not installed: {PLOT_HINT}")
    return plt


def write_all(sections, out_dir: Path, note=print) -> list[Path]:
    """Draw every figure the sections allow into out_dir; the paths written."""
    plt = pyplot()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"cannot write to --plot {out_dir}: {exc.strerror or exc}") from None
    drawers = {
        "train-charlm": [("train-charlm_loss.png", _charlm)],
        "train-cnn": [("train-cnn_loss.png", _cnn)],
        "grad-decay": [("grad-decay.png", _grad_ratio), ("grad-decay_rates.png", _rates)],
        "bench": [("bench_speedup.png", _bench)],
    }
    written = []
    for section in sections:
        if section.kind == "sweep":
            metric, x, _ = section.figure
            name = f"sweep_{metric}_vs_{x}.png"
            if out_dir / name in written:  # two experiments, the same metric and key
                name = f"sweep_{section.runs[0].experiment}_{metric}_vs_{x}.png"
            fig = _sweep(plt, section, note)
            if fig is not None:
                written.append(save_png(plt, fig, out_dir / name))
            continue
        for name, draw in drawers[section.kind]:
            fig = draw(plt, section, note)
            if fig is not None:
                written.append(save_png(plt, fig, out_dir / name))
    return written


def _legend(ax, n):
    ax.legend(fontsize=7 if n > 4 else 8, loc="best")


def _legend_below(fig, ax, n):
    """The runs' legend under the axes, across the figure, with room made for it: a long label (a run
    with many differing options) widens the legend, never pushes it off the figure's left edge."""
    handles, labels = ax.get_legend_handles_labels()
    if not handles:
        fig.tight_layout()
        return
    columns = 1 if max(map(len, labels)) > 60 else min(n, 3)
    rows = -(-len(labels) // columns)
    height = fig.get_figheight()
    band = min(0.45, (0.25 + 0.22 * rows) / height)  # inches of legend, as a fraction of the figure
    fig.legend(handles, labels, loc="lower center", ncol=columns, fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, 0.0))
    fig.tight_layout(rect=(0, band, 1, 1))


def _charlm(plt, section, note):
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8), sharey=True)
    for i, run in enumerate(section.runs):
        m = run.tables["metrics"]
        val = m.dropna(subset=["val_loss"])
        for ax, x in zip(axes, ("step", "elapsed_s")):
            ax.plot(m[x], m["train_loss"], color=f"C{i % 10}", lw=0.8, alpha=0.35)
            ax.plot(val[x], val["val_loss"], color=f"C{i % 10}", lw=1.8, marker="o", ms=3,
                    label=run.legend if x == "step" else None)
    axes[0].set_xlabel("step")
    axes[1].set_xlabel("seconds (elapsed_s)")
    axes[0].set_ylabel("loss (nats per character)")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle("train-charlm: validation loss (thick, markers) and train loss per step (thin)", fontsize=11)
    _legend_below(fig, axes[0], len(section.runs))
    return fig


def _cnn(plt, section, note):
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    for i, run in enumerate(section.runs):
        m = run.tables["metrics"]
        color = f"C{i % 10}"
        for ax, x in zip(axes[:2], ("step", "elapsed_s")):
            ax.plot(m[x], m["test_loss"], color=color, lw=1.8, marker="o", ms=3,
                    label=run.legend if x == "step" else None)
            ax.plot(m[x], m["train_loss"], color=color, lw=1.0, ls="--", marker=".", alpha=0.6)
        axes[2].plot(m["step"], m["test_acc"], color=color, lw=1.8, marker="o", ms=3)
    axes[0].set_xlabel("step")
    axes[1].set_xlabel("seconds (elapsed_s)")
    axes[2].set_xlabel("step")
    axes[0].set_ylabel("loss")
    axes[1].sharey(axes[0])
    axes[2].set_ylabel("test accuracy")
    axes[2].set_ylim(-0.02, 1.02)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle("train-cnn: test loss (solid) and train loss (dashed) per epoch; test accuracy", fontsize=11)
    _legend_below(fig, axes[0], len(section.runs))
    return fig


def _grad_ratio(plt, section, note):
    from matplotlib.ticker import MaxNLocator  # optional dependency: only here once pyplot() found matplotlib

    runs = [r for r in section.runs if "grad_decay" in r.tables]
    if not runs:
        note("grad-decay.png not written: it needs grad_decay.csv, and only summary.csv was given")
        return None
    ncols = min(3, len(runs))
    nrows = math.ceil(len(runs) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(max(7.0, 5.2 * ncols), 3.9 * nrows + 0.4), squeeze=False)
    for ax, run in zip(axes.flat, runs):
        steps = run.tables["grad_decay"]
        with np.errstate(divide="ignore", invalid="ignore"):
            logs = steps.assign(v=np.log10(steps["grad_ratio"].astype(float)))
        mean = logs.groupby(["phase", "cell", "t"], sort=False)["v"].mean()  # geometric mean over seeds
        phases = list(dict.fromkeys(steps["phase"]))
        cells = list(dict.fromkeys(steps["cell"]))
        for p_index, phase in enumerate(phases):
            last = p_index == len(phases) - 1
            for c_index, cell in enumerate(cells):
                part = mean.loc[(phase, cell)].sort_index()
                label = cell if len(phases) == 1 else f"{cell} @step {phase}" if last or p_index == 0 else None
                ax.plot(part.index, 10.0 ** part.to_numpy(), marker="o", ms=3, color=f"C{c_index % 10}",
                        ls="-" if last else "--", alpha=1.0 if last else 0.4, label=label)
        ax.set_yscale("log")
        ax.set_xlabel("time step t")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("||dL/dh_t|| / ||dL/dh_T||")
        ax.set_title(run.legend, fontsize=9)
        ax.grid(alpha=0.3, which="both")
        _legend(ax, len(cells) * len(phases))
    for ax in list(axes.flat)[len(runs):]:
        ax.set_visible(False)
    fig.suptitle("grad-decay: gradient ratio against time step\n(geometric mean over seeds)", fontsize=10)
    fig.tight_layout()
    return fig


def _rates(plt, section, note):
    table = section.table if section.grouped_by is None else None
    if table is None or table["rho"].dropna().nunique() < 2:
        return None  # one rho: nothing to draw against
    fig, ax = plt.subplots(figsize=(7, 4.8))
    for c_index, (cell, part) in enumerate(table.groupby("cell", sort=False)):
        color = f"C{c_index % 10}"
        part = part.dropna(subset=["rho"]).sort_values("rho")
        if part.empty:
            continue
        ax.plot(part["rho"], part["effective_rate"], marker="o", ls="none", color=color,
                label=f"{cell}: effective rate")
        if part["lambda1_gamma"].notna().any():
            ax.plot(part["rho"], part["lambda1_gamma"], marker="s", mfc="none", ls="none", color=color,
                    label=f"{cell}: lambda1 * gamma")
    ax.axhline(1.0, color="0.4", lw=0.8)
    ax.set_xlabel("rho(W_hh)")
    ax.set_ylabel("per-step factor")
    ax.grid(alpha=0.3)
    _legend(ax, 8)
    fig.suptitle("grad-decay: per-step factors against the spectral radius, one point per run, seed, phase\n"
                 "and cell (the LSTM has no rho)", fontsize=10)
    fig.tight_layout()
    return fig


def _bench(plt, section, note):
    from matplotlib.ticker import FuncFormatter, NullFormatter  # optional dependency, as above

    table = section.table if section.grouped_by is None else None
    if table is None:
        return None
    panels = [c for c in ("speedup_vs_torch", "speedup_vs_numpy") if table[c].notna().any()]
    if not panels:
        note("bench_speedup.png not written: no speedup in the bench tables")
        return None
    keys = ["case", "shape", "device", "threads"]
    cases = table[keys].drop_duplicates()
    names = [f"{c} {s}\n{d}" + ("" if _missing(t) else f", {float(t):g} threads")
             for c, s, d, t in cases.itertuples(index=False, name=None)]
    runs = section.runs
    width = 0.8 / len(runs)
    x = np.arange(len(names))
    fig, axes = plt.subplots(len(panels), 1, figsize=(max(7.0, 0.9 * len(names) * max(1, len(runs) / 2)),
                                                      3.6 * len(panels)), squeeze=False)
    for ax, column in zip(axes[:, 0], panels):
        shown = [1.0]
        for i, run in enumerate(runs):
            part = table[table["run"] == run.label].drop_duplicates(subset=keys)
            values = cases.merge(part, on=keys, how="left")[column].to_numpy(dtype=float)
            ok = np.isfinite(values) & (values > 0)
            where = x[ok] + (i - (len(runs) - 1) / 2) * width
            ax.bar(where, values[ok] - 1.0, width, bottom=1.0, color=f"C{i % 10}",
                   label=run.legend if len(runs) > 1 else None)  # bars grow from 1: up faster, down slower
            for xi, v in zip(where, values[ok]):
                ax.annotate(f"{v:.3g}x", (xi, v), ha="center", va="bottom" if v >= 1 else "top", fontsize=7)
            shown += list(values[ok])
        ax.axhline(1.0, color="0.3", lw=0.8)
        ax.set_yscale("log")
        ax.set_ylim(min(shown) / 1.6, max(shown) * 1.6)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xticks(x, names, fontsize=7)
        ax.set_ylabel(column.replace("_", " "))
        ax.grid(alpha=0.3, axis="y", which="both")
        if len(runs) > 1 and column == panels[0]:
            _legend(ax, len(runs))
    fig.suptitle("bench: numbanets speedup per case (above 1: numbanets faster)", fontsize=11)
    fig.tight_layout()
    return fig


def _missing(value) -> bool:
    try:
        return value is None or math.isnan(float(value))
    except (TypeError, ValueError):
        return True


def _numbers(values) -> np.ndarray | None:
    """The values as floats when every one parses as a number (else None: a categorical axis)."""
    try:
        return np.array([float(v) for v in values], dtype=float)
    except (TypeError, ValueError):
        return None


def _sweep(plt, section, note):
    metric, x, hue = section.figure
    experiment = section.runs[0].experiment
    if metric is None or x is None:
        note(f"sweep {experiment}: no figure (it needs a grid key and a metric; the sweep has "
             f"{'no grid' if x is None else 'no done run'})")
        return None
    table = section.table
    sweeps = list(dict.fromkeys(table["sweep"])) if "sweep" in table else [None]
    others = [k for k in table.columns[:list(table.columns).index("runs")] if k not in ("sweep", x, hue)]
    others = [k for k in others if table[k].nunique(dropna=False) > 1]
    text = table.astype(str)  # compared as text: NaN (a key a sweep left unknown) equals NaN
    panels = list(dict.fromkeys(text[others].itertuples(index=False, name=None))) if others else [()]
    hues = list(dict.fromkeys(text[hue])) if hue else [None]
    xs = list(dict.fromkeys(table[x].dropna()))
    numeric = _numbers(xs)
    position = dict(zip(xs, numeric if numeric is not None else range(len(xs))))
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(max(7.0, 5.2 * ncols), 3.9 * nrows + 0.8), squeeze=False)
    lines = len(hues) * len(sweeps)
    styles = ["-", "--", ":", "-."]
    for ax, panel in zip(axes.flat, panels):
        part = table[(text[others] == pd.Series(panel, index=others)).all(axis=1)] if others else table
        for i, (sweep, value) in enumerate((s, v) for s in sweeps for v in hues):
            mask = pd.Series(True, index=part.index)
            if sweep is not None:
                mask &= part["sweep"] == sweep
            if hue:
                mask &= text.loc[part.index, hue] == value
            rows = part[mask & np.isfinite(part[f"{metric}_mean"].to_numpy(dtype=float))].dropna(subset=[x])
            if rows.empty:
                continue
            where = np.array([position[v] for v in rows[x]], dtype=float)
            if numeric is None and lines > 1:  # categories: the lines side by side, not on top of each other
                where = where + (i - (lines - 1) / 2) * 0.3 / lines
            order = np.argsort(where, kind="stable")
            label = ", ".join(([f"{hue}={value}"] if hue else []) + ([str(sweep)] if sweep is not None else []))
            ax.errorbar(where[order], rows[f"{metric}_mean"].to_numpy(dtype=float)[order],
                        yerr=np.nan_to_num(rows[f"{metric}_ci95"].to_numpy(dtype=float)[order]),
                        color=f"C{hues.index(value) % 10}", ls=styles[sweeps.index(sweep) % 4], marker="o", ms=4,
                        capsize=3, label=label or None)
        if numeric is None:
            ax.set_xticks(range(len(xs)), [str(v) for v in xs], fontsize=8)
        else:
            if numeric.min() > 0 and numeric.max() / numeric.min() >= 50:
                ax.set_xscale("log")
            ticks = dict(zip(numeric, map(str, xs)))  # the grid's values, spelled as in sweep.json
            if len(ticks) <= 8:
                ax.set_xticks(list(ticks), list(ticks.values()), fontsize=8)
                ax.minorticks_off()
        ax.set_xlabel(x)
        ax.set_ylabel(f"{metric} (mean)")
        if others:
            ax.set_title(", ".join(f"{k}={v}" for k, v in zip(others, panel)), fontsize=9)
        ax.grid(alpha=0.3)
        if lines > 1 and ax.get_legend_handles_labels()[0]:
            _legend(ax, lines)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(f"sweep {experiment}: {metric} against {x}" + (f", one line per {hue}" if hue else "") +
                 "\nmean over the seeds; error bars: 95 % interval (Student t)", fontsize=10)
    fig.tight_layout()
    return fig
