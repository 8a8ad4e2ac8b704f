"""`nbnets analyse`: read run folders and CSV tables back, summarise and compare them.

A PATH is a run folder (config.json and its CSVs), a folder holding run folders
at any depth (results/, results/train-charlm/), or one CSV recognised by its
columns. A run's kind is config.json's "command", else what its CSVs are:

    train-charlm  metrics.csv (CHARLM_COLUMNS)       one row per run
    train-cnn     metrics.csv (CNN_COLUMNS)          one row per run
    grad-decay    summary.csv and/or grad_decay.csv  one row per run, seed, phase and cell
    bench         bench.csv (BENCH_COLUMNS)          one row per numbanets case; several runs side by side
    sweep         a sweep folder's sweep.csv         one row per grid point, each metric's mean, std and
                                                     95 % interval over the seeds (sweep.py)

Every kind present becomes a Section, a pandas DataFrame with a title and a
note, printed as aligned text, markdown or CSV. The CSV form is ONE table whose
first column `section` names the kind, followed by the union of the sections'
columns, so pandas reads it back in one call:

    frame = pd.read_csv(path)
    cnn = frame[frame["section"] == "train-cnn"].dropna(axis=1, how="all")

Finding and identifying the tables is read.py; the text forms are format.py;
the figures (--plot DIR) are plots.py.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from numbanets.gradstats import decay_fit
from runner.analyse import format as analyse_format
from runner.analyse import plots as analyse_plots
from runner.analyse import sweep as analyse_sweep
from runner.analyse.read import DECAY_METRICS, KINDS, collect_all

FORMATS = ("table", "markdown", "csv")
IGNORED_OPTIONS = {"out", "quiet", "plot"}  # options that do not change a run's numbers


@dataclass
class Section:
    kind: str
    title: str
    note: str
    table: pd.DataFrame                     # long form: what --group-by and --format csv see
    metrics: list                           # the numeric columns --group-by aggregates
    runs: list
    hide_if_constant: tuple = ()            # identity columns left out of the display when constant
    grouped_by: str | None = None
    display: pd.DataFrame | None = None
    csv: pd.DataFrame | None = None         # what --format csv writes when not the display (sweep)
    figure: tuple | None = None             # sweep: (metric, x, hue) of its figure


# --------------------------------------------------------------------------- summaries

def _last(frame: pd.DataFrame, column: str):
    return frame[column].iloc[-1] if len(frame) else math.nan


def _best(frame: pd.DataFrame, column: str, at: str, largest: bool = False):
    """(best value of `column`, the `at` value of its first row); NaNs when none is finite."""
    values = frame[column]
    if not values.notna().any():
        return math.nan, math.nan
    index = values.idxmax() if largest else values.idxmin()
    return values.loc[index], frame[at].loc[index]


def _charlm(runs):
    rows = []
    for r in runs:
        m = r.tables["metrics"]
        val = m.dropna(subset=["val_loss"])
        best, best_step = _best(m, "val_loss", "step")
        rows.append({"run": r.label, "steps": _last(m, "step"), "epochs": _last(m, "epoch"),
                     "final_train_loss": _last(m, "train_loss"), "final_val_loss": _last(val, "val_loss"),
                     "best_val_loss": best, "best_step": best_step,
                     "chars_per_s": m["chars_per_s"].median(), "elapsed_s": _last(m, "elapsed_s")})
    metrics = ["final_train_loss", "final_val_loss", "best_val_loss", "chars_per_s", "elapsed_s"]
    note = ("losses in nats per character (final_val_loss: at the last evaluation); chars_per_s: median over "
            "steps; elapsed_s: run time at the last step")
    return pd.DataFrame(rows), metrics, note, ()


def _cnn(runs):
    rows = []
    for r in runs:
        m = r.tables["metrics"]
        best_loss, loss_epoch = _best(m, "test_loss", "epoch")
        best_acc, acc_epoch = _best(m, "test_acc", "epoch", largest=True)
        rows.append({"run": r.label, "epochs": _last(m, "epoch"), "steps": _last(m, "step"),
                     "final_train_loss": _last(m, "train_loss"), "final_train_acc": _last(m, "train_acc"),
                     "final_test_loss": _last(m, "test_loss"), "final_test_acc": _last(m, "test_acc"),
                     "best_test_loss": best_loss, "best_loss_epoch": loss_epoch,
                     "best_test_acc": best_acc, "best_acc_epoch": acc_epoch,
                     "images_per_s": m["images_per_s"].median(), "elapsed_s": _last(m, "elapsed_s")})
    metrics = ["final_train_loss", "final_train_acc", "final_test_loss", "final_test_acc", "best_test_loss",
               "best_test_acc", "images_per_s", "elapsed_s"]
    note = ("accuracies as fractions; epoch 0 is the evaluation before training; images_per_s: median over "
            "epochs; elapsed_s: run time at the last epoch")
    return pd.DataFrame(rows), metrics, note, ()


def derive_summary(steps: pd.DataFrame) -> pd.DataFrame:
    """Per (seed, phase, cell) from grad_decay.csv alone: the fitted decay and the effective rate
    ||dh_T/dh_1||^(1/(T-1)) as numbanets.gradstats computes them; rho, lambda1, gamma need the weights (NaN)."""
    rows = []
    for (seed, phase, cell), g in steps.groupby(["seed", "phase", "cell"], sort=False):
        g = g.sort_values("t")
        T = len(g)
        slope, factor, to_1e3 = decay_fit(g["grad_norm"].to_numpy(dtype=float))
        with np.errstate(divide="ignore", invalid="ignore"):
            eff = float(g["jac_spec"].iloc[0]) ** (1.0 / (T - 1)) if T > 1 else math.nan
        ident = {c: g[c].iloc[0] for c in ("init", "scale", "steps") if c in g}
        rows.append({"cell": cell, "seed": seed, "phase": phase, **ident, "rho": math.nan, "lambda1": math.nan,
                     "gamma": math.nan, "lambda1_gamma": math.nan, "effective_rate": eff, "decay_slope": slope,
                     "decay_factor": factor, "steps_to_1e-3": to_1e3})
    return pd.DataFrame(rows)


def _graddecay(runs):
    frames = []
    for r in runs:
        s = r.tables.get("summary")
        if s is None:
            s = derive_summary(r.tables["grad_decay"])
        ident = [c for c in ("cell", "seed", "phase", "init", "scale", "steps") if c in s]
        extra = ["train_loss"] if "train_loss" in s else []
        part = s[ident + DECAY_METRICS + extra].copy()
        part.insert(0, "run", r.label)
        frames.append(part)
    metrics = ["rho", "lambda1", "lambda1_gamma", "effective_rate", "decay_factor", "steps_to_1e-3"]
    note = ("rho: spectral radius of W_hh; lambda1: its largest singular value; gamma: bound on |phi'|; "
            "effective_rate: ||dh_T/dh_1||^(1/(T-1)); decay_factor: fitted per-step factor of ||dL/dh_t||; "
            "rho, lambda1, gamma blank when read from grad_decay.csv alone")
    hide = ("seed", "phase", "init", "scale", "steps") + (("run",) if len(runs) == 1 else ())
    return pd.concat(frames, ignore_index=True), metrics, note, hide


BENCH_SHOWN = ["case", "shape", "device", "threads", "median_ms", "speedup_vs_torch", "speedup_vs_numpy",
               "gflops", "fraction_of_peak"]
BENCH_SIDE_BY_SIDE = ["median_ms", "speedup_vs_torch", "speedup_vs_numpy"]


def _bench(runs):
    frames = []
    for r in runs:
        b = r.tables["bench"]
        part = b.loc[b["impl"] == "numbanets", BENCH_SHOWN].copy()
        part.insert(0, "run", r.label)
        frames.append(part)
    metrics = ["median_ms", "speedup_vs_torch", "speedup_vs_numpy", "gflops", "fraction_of_peak"]
    note = ("numbanets rows; speedup_vs_X = X's median time / numbanets' (above 1: numbanets is faster); "
            "fraction_of_peak: of the measured sgemm rate")
    return pd.concat(frames, ignore_index=True), metrics, note, (("run",) if len(runs) == 1 else ())


BUILDERS = {"train-charlm": _charlm, "train-cnn": _cnn, "grad-decay": _graddecay, "bench": _bench}


def _display_value(value):
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return value


def add_options(table: pd.DataFrame, runs, force: str | None = None) -> list[str]:
    """The options that differ between the runs; each (and `force`) becomes a column after `run`
    unless the table has that column already (grad-decay's scale, init, steps)."""
    configured = [r for r in runs if r.config]
    keys = dict.fromkeys(k for r in configured for k in r.options)
    differing, inserted = [], 0
    for key in keys:
        if key in IGNORED_OPTIONS:
            continue
        canon = {json.dumps(r.options.get(key), sort_keys=True, default=str) for r in configured}
        if len(canon) > 1:
            differing.append(key)
        if (len(canon) > 1 or key == force) and key not in table.columns:
            values = {r.label: _display_value(r.options.get(key)) for r in configured}
            table.insert(1 + inserted, key, table["run"].map(values))
            inserted += 1
    return differing


def legend_value(value, width: int = 24) -> str:
    """An option's value as a figure's legend shows it: a path by its file name, anything longer than
    `width` characters cut with an ellipsis (the table keeps the whole value)."""
    text = str(_display_value(value))
    if isinstance(value, str) and ("/" in value or "\\" in value):
        text = Path(value).name or text
    return text if len(text) <= width else text[:width - 1] + "\u2026"


def build_sections(runs, group_by: str | None = None) -> list[Section]:
    sections = []
    for kind in KINDS:
        rs = [r for r in runs if r.kind == kind]
        if not rs:
            continue
        table, metrics, note, hide = BUILDERS[kind](rs)
        differing = add_options(table, rs, force=group_by)
        short = _short_names(rs)
        for r in rs:
            diff = ", ".join(f"{k}={legend_value(r.options.get(k))}" for k in differing)
            r.legend = f"{short[r.label]} ({diff})" if diff else short[r.label]
        title = f"{kind}: {len(rs)} run{'s' if len(rs) != 1 else ''}"
        if "run" in hide:
            title += f" ({rs[0].label})"
        sections.append(Section(kind, title, note, table, metrics, rs, hide))
    if group_by:
        _group(sections, group_by)
    for s in sections:
        if s.display is None and s.kind == "bench" and len(s.runs) > 1:
            s.display = _side_by_side(s)
            s.title += " (" + ", ".join(v if v == k else f"{v} = {k}" for k, v in _short_names(s.runs).items()) + ")"
        elif s.display is None:
            s.display = s.table.drop(columns=[c for c in s.hide_if_constant
                                              if c in s.table and s.table[c].nunique(dropna=False) <= 1])
    return sections


def _short_names(runs) -> dict:
    """label -> the id after the last '-' of a run folder name (the whole label when ids would clash)."""
    short = {r.label: r.label.rsplit("-", 1)[-1] for r in runs}
    return short if len(set(short.values())) == len(short) else {r.label: r.label for r in runs}


def _side_by_side(s: Section) -> pd.DataFrame:
    """bench with several runs: one row per (case, shape, device, threads); columns METRIC@RUN_ID
    (RUN_ID: the hex id ending the run folder's name), the runs side by side under each metric."""
    keys = ["case", "shape", "device", "threads"]
    short = _short_names(s.runs)
    out = s.table[keys].drop_duplicates().reset_index(drop=True)
    for r in s.runs:
        part = s.table.loc[s.table["run"] == r.label, keys + BENCH_SIDE_BY_SIDE].drop_duplicates(subset=keys)
        out = out.merge(part.rename(columns={m: f"{m}@{short[r.label]}" for m in BENCH_SIDE_BY_SIDE}),
                        on=keys, how="left")
    ordered = [f"{m}@{short[r.label]}" for m in BENCH_SIDE_BY_SIDE for r in s.runs]
    return out[keys + ordered]


def _group(sections, column: str) -> None:
    having = [s for s in sections if column in s.table.columns]
    if not having:
        available = sorted({c for s in sections for c in s.table.columns})
        raise ValueError(f"--group-by {column}: no such column; available: {', '.join(available)} "
                         "(or any option in the runs' config.json)")
    for s in having:
        metrics = [m for m in s.metrics if m in s.table.columns and m != column]
        mixed = not analyse_format.is_numeric(s.table[column]) and s.table[column].map(type).nunique() > 1
        groups = s.table.groupby(column, dropna=False, sort=not mixed)  # mixed types do not sort
        out = groups.size().rename("count").to_frame()
        for m in metrics:
            agg = groups[m].agg(["mean", "min", "max"])
            for stat in ("mean", "min", "max"):
                out[f"{m}_{stat}"] = agg[stat]
        s.display = s.table = out.reset_index()
        s.grouped_by = column
        s.title += f", grouped by {column} (count: rows per group)"


# --------------------------------------------------------------------------- sweeps

FIGURE_FLAGS = ("--metric", "--x", "--hue")


def sweep_sections(sweeps, metric=None, x=None, hue=None) -> list[Section]:
    """One Section per experiment among the sweeps (see sweep.py), with its figure's (metric, x, hue)."""
    sections = []
    for experiment, same, table, display, metrics, keys in analyse_sweep.build(sweeps):
        where = (str(same[0].path) if len(same) == 1 else
                 f"{len(same)} sweeps side by side ({', '.join(s.label for s in same)})")
        note = ("one row per grid point; runs: done runs n, failed: failed runs (errors in failures.csv); each "
                "metric: mean ± ci95 over the n done runs with a value, ci95 = t(0.975, n-1) * std / sqrt(n), the "
                "half-width of the 95 % interval (none for n < 2); --format csv: <metric>_mean, <metric>_std (ddof 1), <metric>_ci95")
        section = Section("sweep", f"sweep {experiment}: {where}", note, table, metrics, same, display=display)
        section.csv = table
        section.figure = analyse_sweep.choose(experiment, metrics, keys, metric, x, hue)
        sections.append(section)
    return sections


# --------------------------------------------------------------------------- the command

def analyse(paths, fmt: str = "table", plot_dir=None, group_by: str | None = None, note=print,
            metric: str | None = None, x: str | None = None, hue: str | None = None):
    """Read `paths`, return (the summary text in `fmt`, the figure files written to `plot_dir`).
    metric, x, hue: the sweep figure's (sweep folders and plot_dir only)."""
    if fmt not in FORMATS or not paths:
        raise ValueError(f"give at least one PATH and a --format of {', '.join(FORMATS)}")
    chosen = [flag for flag, value in zip(FIGURE_FLAGS, (metric, x, hue)) if value is not None]
    if chosen and plot_dir is None:
        raise ValueError(f"{', '.join(chosen)} choose{'s' if len(chosen) == 1 else ''} the sweep figure; "
                         "give --plot DIR too")
    if plot_dir is not None:
        analyse_plots.pyplot()  # a missing matplotlib is an error before any work
    runs, sweeps = collect_all(paths, note=note)
    if chosen and not sweeps:
        raise ValueError(f"{', '.join(chosen)}: for sweep folders (with sweep.json), and none was found")
    if group_by and not runs:
        raise ValueError(f"--group-by {group_by}: groups runs; a sweep's table is already one row per grid point")
    sections = build_sections(runs, group_by=group_by) + sweep_sections(sweeps, metric, x, hue)
    written = analyse_plots.write_all(sections, Path(plot_dir), note=note) if plot_dir is not None else []
    return analyse_format.render(sections, fmt), written
