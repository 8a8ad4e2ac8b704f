"""`nbnets analyse SWEEP_DIR`: one row per grid point of a sweep, its metrics over the seeds.

A sweep folder's sweep.csv has one row per run: the run's grid values, its seed,
its status (done or failed) and its headline numbers (runner/analyse/headline.py).
The section "sweep" groups the done rows by the grid keys, in sweep.json's order;
the rows are the grid's points in the order the sweep ran them (the product of
the grid's values, the first key outermost), every point kept:

    <grid keys>     the point (the values as sweep.json spells them)
    runs            done runs at the point (n); 0 when every run failed or none has run yet
    failed          failed runs at the point (their errors are in failures.csv)
    <m>_mean        mean of metric m over the done runs that have it (n of them); inf when
                    one of them is inf (steps_to_1e-3 of a gradient that never decays)
    <m>_std         sample standard deviation (ddof 1)
    <m>_ci95        half-width of the 95 % Student-t interval of the mean:
                    t.ppf(0.975, n - 1) * std / sqrt(n); NaN for n < 2

The text and markdown forms show one column per metric, "mean ± ci95"; the CSV
form has the three numeric columns. Sweeps of the same experiment given
together make one section with a first column `sweep` (the folder name); a grid
key one sweep does not vary takes that sweep's fixed value (sweep.json "fixed"),
else the value its first run's config.json has, else NaN. A metric that no done
run has (rho of an LSTM) is left out.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
from scipy import stats

from runner.analyse.format import format_value

# sweep.csv's columns that are not metrics
BOOKKEEPING = {"run", "seed", "status", "resumed_at", "wall_s", "worker", "error"}
DEFAULT_METRIC = {"train-charlm": "final_val_loss", "train-cnn": "final_test_acc", "grad-decay": "decay_factor"}
STATS = ("mean", "std", "ci95")


def canonical(value):
    """A grid value for matching: 0.001, "1e-3" and "0.001" are one value; text stays text."""
    if isinstance(value, (bool, np.bool_)):
        return str(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return number if not math.isnan(number) else str(value)


def metrics_of(sweep) -> list[str]:
    """The numeric headline columns of sweep.csv that some done run has, in the file's order."""
    done = sweep.table[sweep.table["status"] == "done"]
    out = []
    for column in sweep.table.columns:
        if column in BOOKKEEPING or column in sweep.grid:
            continue
        values = pd.to_numeric(sweep.table[column], errors="coerce")
        if values.notna().sum() == sweep.table[column].notna().sum() and done[column].notna().any():
            out.append(column)
    return out


def ci95(values) -> tuple[float, float, float]:
    """(mean, std with ddof 1, half-width of the 95 % Student-t interval) of the values that are not NaN;
    an infinite value (steps_to_1e-3 of a gradient that never decays) makes the mean infinite, std NaN."""
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    n = len(x)
    if n == 0:
        return math.nan, math.nan, math.nan
    if n == 1 or not np.isfinite(x).all():
        return float(np.mean(x)), math.nan, math.nan
    std = float(np.std(x, ddof=1))
    return float(np.mean(x)), std, float(stats.t.ppf(0.975, n - 1) * std / math.sqrt(n))


def _row_points(sweep, keys: list[str]) -> list[tuple]:
    """Each sweep.csv row's point, canonical values in `keys` order."""
    return [tuple(canonical(row[k] if k in sweep.grid else sweep.value(k)) for k in keys)
            for row in sweep.table.to_dict("records")]


def _points(sweep, keys: list[str], rows: list[tuple]) -> list[tuple]:
    """The grid's points in run order (the product, first key outermost), then any other point of `rows`."""
    values = [sweep.grid[k] if k in sweep.grid else [sweep.value(k)] for k in keys]
    points = [tuple(canonical(v) for v in combo) for combo in itertools.product(*values)]
    return list(dict.fromkeys(points + rows))


def sweep_table(sweep, keys: list[str], metrics: list[str]) -> pd.DataFrame:
    """One row per point of `sweep`: the grid keys, runs, failed, and <m>_mean, <m>_std, <m>_ci95."""
    table = sweep.table
    rows = _row_points(sweep, keys)
    spelled = {(k, canonical(v)): v for k in keys for v in sweep.grid.get(k, [sweep.value(k)])}
    out = []
    for point in _points(sweep, keys, rows):
        mine = table.loc[np.array([p == point for p in rows], dtype=bool)]
        done = mine[mine["status"] == "done"]
        row = {k: spelled.get((k, v), v) for k, v in zip(keys, point)}
        row["runs"], row["failed"] = len(done), int((mine["status"] == "failed").sum())
        for m in metrics:
            column = pd.to_numeric(done[m], errors="coerce") if m in done else pd.Series(dtype=float)
            for stat, value in zip(STATS, ci95(column)):
                row[f"{m}_{stat}"] = value
        out.append(row)
    return pd.DataFrame(out, columns=keys + ["runs", "failed"] + [f"{m}_{s}" for m in metrics for s in STATS])


def compact(table: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """The display form: one "mean ± ci95" column per metric, the means aligned on the ±."""
    out = table.drop(columns=[f"{m}_{s}" for m in metrics for s in STATS])
    for m in metrics:
        means = [format_value(v) for v in table[f"{m}_mean"]]
        cis = [format_value(v) for v in table[f"{m}_ci95"]]
        width = max(map(len, means), default=0)
        out[m] = [("-" if mean == "-" else mean.rjust(width) + ("" if ci == "-" else f" ± {ci}"))
                  for mean, ci in zip(means, cis)]
    return out


def build(sweeps) -> list:
    """(experiment, its sweeps, table, display, metrics, grid keys) per experiment among `sweeps`, in order;
    the grid keys and metrics are the union over that experiment's sweeps, in order of appearance."""
    out = []
    for experiment in dict.fromkeys(s.experiment for s in sweeps):
        same = [s for s in sweeps if s.experiment == experiment]
        keys = list(dict.fromkeys(k for s in same for k in s.grid))
        metrics = list(dict.fromkeys(m for s in same for m in metrics_of(s)))
        frames = []
        for s in same:
            part = sweep_table(s, keys, metrics)
            if len(same) > 1:
                part.insert(0, "sweep", s.label)
            frames.append(part)
        table = pd.concat(frames, ignore_index=True)
        out.append((experiment, same, table, compact(table, metrics), metrics, keys))
    return out


def default_metric(experiment: str, metrics: list[str]) -> str | None:
    """The figure's metric when --metric is not given: DEFAULT_METRIC, else its first suffixed form
    (grad-decay's decay_factor.lstm), else the first metric."""
    wanted = DEFAULT_METRIC.get(experiment)
    if wanted in metrics:
        return wanted
    suffixed = [m for m in metrics if wanted and m.startswith(wanted + ".")]
    return (suffixed or metrics or [None])[0]


def choose(experiment: str, metrics: list[str], keys: list[str], metric=None, x=None, hue=None) -> tuple:
    """(metric, x, hue) of a sweep figure: the ones given, checked, else the defaults: the experiment's
    headline metric, the first grid key, the second grid key (None: one line)."""
    if metric is not None and metric not in metrics:
        raise ValueError(f"--metric {metric}: not a metric of the {experiment} sweep; available: "
                         f"{', '.join(metrics) or 'none (no run done)'}")
    for flag, key in (("--x", x), ("--hue", hue)):
        if key is not None and key not in keys:
            raise ValueError(f"{flag} {key}: not a grid key of the {experiment} sweep; available: {', '.join(keys)}")
    if x is not None and x == hue:
        raise ValueError(f"--x and --hue are both {x}; give two different grid keys")
    metric = metric or default_metric(experiment, metrics)
    if x is None:
        x = next((k for k in keys if k != hue), None)
    if hue is None and len(keys) > 1:
        hue = keys[1] if keys[1] != x else next(k for k in keys if k != x)
    return metric, x, hue
